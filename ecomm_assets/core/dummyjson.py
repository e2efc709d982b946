"""A client for the DummyJSON REST API, and the conversion of its carts to canonical orders."""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime

import numpy as np
import requests
import urllib3

RETRY_STATUSES = {429, 500, 502, 503, 504}
CHUNK_BYTES = 64 * 1024

logger = logging.getLogger(__name__)


class DummyJSONError(RuntimeError):
    """The API could not be read: the message names the URL and the last status or error."""


class DummyJSONClient:
    """A client that never hangs and never returns a partial collection.

    Time limits (seconds; `clock` is monotonic, `sleep` waits, both injectable for tests):
    - `timeout_seconds`: one response, from sending the request to its last byte (requests' own
      timeout holds each read, so a server trickling bytes would otherwise never time out);
    - `max_retry_wait_seconds`: one wait before a retry. Exponential backoff is capped at it; a
      Retry-After (seconds or an HTTP date) asking for longer fails the call at once;
    - `deadline_seconds`: one call of `get_json`, every attempt and wait included. A wait that
      would end past it fails the call at once; a response is cut off at it.
    """

    def __init__(
        self,
        base_url: str = "https://dummyjson.com",
        timeout_seconds: float = 10.0,
        max_retries: int = 5,
        backoff_seconds: float = 0.5,
        page_size: int = 100,
        sleep: Callable[[float], None] = time.sleep,
        max_retry_wait_seconds: float = 30.0,
        deadline_seconds: float = 120.0,
        max_pages: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.page_size = page_size
        self.max_retry_wait_seconds = max_retry_wait_seconds
        self.deadline_seconds = deadline_seconds
        self.max_pages = max_pages
        self._sleep = sleep
        self._clock = clock
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json"
        self.requests_made = 0

    def get_json(self, path: str, params: dict | None = None) -> dict:
        """GET one resource; retries 429, 5xx, connection errors, timeouts and cut-off bodies with
        capped exponential backoff or the server's Retry-After, within `deadline_seconds`."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        deadline = self._clock() + self.deadline_seconds
        last_problem, last_response = "", None
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._wait_before_retry(url, attempt, last_response, last_problem, deadline)
            last_response = None
            try:
                self.requests_made += 1
                response, body = self._get(url, params, deadline)
            except (requests.ConnectionError, requests.Timeout, urllib3.exceptions.HTTPError, TimeoutError) as error:
                last_problem = f"{type(error).__name__}: {error}"
                continue
            if response.status_code in RETRY_STATUSES:
                last_problem, last_response = f"HTTP {response.status_code}", response
                continue
            if response.status_code != 200:
                text = body[:200].decode("utf-8", "replace")
                raise DummyJSONError(f"GET {response.url} answered HTTP {response.status_code}: {text}")
            try:
                return json.loads(body)
            except ValueError as error:
                raise DummyJSONError(f"GET {response.url} answered invalid JSON: {error}") from error
        raise DummyJSONError(f"GET {url} failed after {self.max_retries + 1} attempts; last: {last_problem}")

    def _get(self, url: str, params: dict | None, deadline: float) -> tuple[requests.Response, bytes]:
        """One GET and its whole body, read as it arrives so that the response as a whole is held
        to its time limit, checked after every read (each read waits at most `timeout_seconds`)."""
        started = self._clock()
        limit = min(started + self.timeout_seconds, deadline)
        with self.session.get(url, params=params, timeout=self.timeout_seconds, stream=True) as response:
            body = bytearray()
            while chunk := response.raw.read1(CHUNK_BYTES, decode_content=True):
                body += chunk
                if self._clock() > limit:
                    raise TimeoutError(
                        f"response not complete after {self._clock() - started:.1f} s "
                        f"(limit {limit - started:.1f} s) from {response.url}"
                    )
        return response, bytes(body)

    def _wait_before_retry(self, url: str, attempt: int, last_response: requests.Response | None,
                           last_problem: str, deadline: float) -> None:
        retry_after = _retry_after(last_response) if last_response is not None else None
        url = last_response.url if last_response is not None else url
        if retry_after is None:
            wait, reason = min(self.backoff_seconds * 2 ** (attempt - 1), self.max_retry_wait_seconds), "backoff"
        else:
            asked, wait = retry_after
            reason = f"Retry-After: {asked}"
            if wait > self.max_retry_wait_seconds:
                raise DummyJSONError(
                    f"GET {url} answered {last_problem} with {reason} ({wait:.0f} s), "
                    f"more than the {self.max_retry_wait_seconds:g} s a retry may wait"
                )
        if wait > deadline - self._clock():
            raise DummyJSONError(
                f"GET {url}: waiting {wait:g} s to retry ({reason}) would pass the call's "
                f"{self.deadline_seconds:g} s deadline; last: {last_problem}"
            )
        self._sleep(wait)

    def get_all(self, collection: str) -> list[dict]:
        """Every record of a collection, page by page with limit/skip.

        The first page's `total` is the number of records read, never more (the last page asks
        only for what remains), in at most `max_pages` pages. A total that changes on a later page
        is logged as a warning and the first total kept: a collection that grows while it is read
        is read as it was at the first page. Anything else fails with DummyJSONError: an empty
        page before the total, a count that is not the total, or an id seen twice (records that
        shifted between pages, so others were missed).
        """
        url = f"{self.base_url}/{collection}"
        records: list[dict] = []
        total = page_total = None
        for _ in range(self.max_pages):
            skip = len(records)
            limit = self.page_size if total is None else min(self.page_size, total - skip)
            previous_total = page_total
            page_total, items = self._page(collection, skip, limit)
            if total is None:
                total, pages_needed = page_total, math.ceil(page_total / self.page_size)
                if pages_needed > self.max_pages:  # fail now, not after max_pages pages
                    raise DummyJSONError(
                        f"GET {url}: total {total} needs {pages_needed} pages of {self.page_size}, "
                        f"more than max_pages={self.max_pages}"
                    )
            elif page_total != previous_total:
                logger.warning("GET %s: total changed from %d to %d at skip=%d; reading the first %d records",
                               url, previous_total, page_total, skip, total)
            if not items and total:
                raise DummyJSONError(f"GET {url}: page at skip={skip} was empty; expected total {total}")
            records.extend(items)
            if len(records) >= total:
                break
        else:
            raise DummyJSONError(
                f"GET {url}: read {len(records)} of {total} records in {self.max_pages} pages (max_pages={self.max_pages})"
            )
        if len(records) != total:
            raise DummyJSONError(f"GET {url} answered {len(records)} records; expected total {total}")
        duplicates = [key for key, count in Counter(record.get("id") for record in records).items() if count > 1]
        if duplicates:
            raise DummyJSONError(f"GET {url} answered duplicate ids {duplicates[:10]}: records shifted between pages")
        return records

    def _page(self, collection: str, skip: int, limit: int) -> tuple[int, list]:
        page = self.get_json(collection, {"limit": limit, "skip": skip})
        if not isinstance(page, dict) or not isinstance(page.get(collection), list) or not isinstance(page.get("total"), int):
            raise DummyJSONError(f"GET {self.base_url}/{collection} answered no '{collection}' list with a total")
        return page["total"], page[collection]


def _retry_after(response: requests.Response) -> tuple[str, float] | None:
    """The Retry-After header as asked and in seconds, or None when absent or unreadable. An HTTP
    date is measured from the response's own Date (the server's clock, so clock skew cancels out)."""
    asked = response.headers.get("Retry-After", "").strip()
    if asked.isdigit():
        return asked, float(asked)
    try:
        until = _utc(parsedate_to_datetime(asked))
    except ValueError:
        return None
    try:
        now = _utc(parsedate_to_datetime(response.headers.get("Date", "")))
    except ValueError:
        now = datetime.now(UTC)
    return asked, max((until - now).total_seconds(), 0.0)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def carts_to_orders(carts: list[dict], users: list[dict], products: list[dict], day: date, seed: int) -> list[dict]:
    """DummyJSON carts as the canonical orders of `day`: carts have no date, so each gets a
    deterministic time of that day; customer and category come from users and products."""
    users_by_id = {u["id"]: u for u in users}
    categories = {p["id"]: p.get("category") for p in products}
    brands = {p["id"]: p.get("brand") for p in products}
    rng = np.random.default_rng([seed, 4, day.toordinal()])
    seconds = np.sort(rng.integers(0, 86400, len(carts)))
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    orders = []
    for cart, second in zip(carts, seconds):
        user = users_by_id.get(cart.get("userId"), {})
        orders.append(
            {
                "order_id": f"DJ-{day:%Y%m%d}-{cart['id']}",
                "order_date": (midnight + timedelta(seconds=int(second))).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "total_amount": cart.get("total"),
                "customer": {
                    "customer_id": str(cart.get("userId")),
                    "name": " ".join(filter(None, [user.get("firstName"), user.get("lastName")])) or None,
                    "email": user.get("email"),
                    "address": user.get("address"),
                },
                "products": [
                    {
                        "product_id": str(line["id"]),
                        "name": line.get("title"),
                        "category": categories.get(line["id"]),
                        "brand": brands.get(line["id"]),
                        "price": line.get("price"),
                        "quantity": line.get("quantity"),
                        "discount_percent": line.get("discountPercentage"),
                    }
                    for line in cart.get("products", [])
                ],
            }
        )
    return orders
