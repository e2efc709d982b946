"""A client for the DummyJSON REST API, and the conversion of its carts to canonical orders."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone

import numpy as np
import requests

RETRY_STATUSES = {429, 500, 502, 503, 504}


class DummyJSONError(RuntimeError):
    """The API could not be read: the message names the URL and the last status or error."""


class DummyJSONClient:
    def __init__(
        self,
        base_url: str = "https://dummyjson.com",
        timeout_seconds: float = 10.0,
        max_retries: int = 5,
        backoff_seconds: float = 0.5,
        page_size: int = 100,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.page_size = page_size
        self._sleep = sleep
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json"
        self.requests_made = 0

    def get_json(self, path: str, params: dict | None = None) -> dict:
        """GET one resource; retries 429, 5xx and connection errors with exponential backoff."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        last_problem, last_response = "", None
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._sleep(self._delay(attempt, last_response))
            last_response = None
            try:
                self.requests_made += 1
                response = self.session.get(url, params=params, timeout=self.timeout_seconds)
            except (requests.ConnectionError, requests.Timeout) as error:
                last_problem = f"{type(error).__name__}: {error}"
                continue
            if response.status_code in RETRY_STATUSES:
                last_response = response
                last_problem = f"HTTP {response.status_code}"
                continue
            if response.status_code != 200:
                raise DummyJSONError(f"GET {response.url} answered HTTP {response.status_code}: {response.text[:200]}")
            try:
                return response.json()
            except ValueError as error:
                raise DummyJSONError(f"GET {response.url} answered invalid JSON: {error}") from error
        raise DummyJSONError(f"GET {url} failed after {self.max_retries + 1} attempts; last: {last_problem}")

    def _delay(self, attempt: int, response: requests.Response | None) -> float:
        retry_after = response.headers.get("Retry-After") if response is not None else None
        if retry_after and retry_after.isdigit():
            return float(retry_after)
        return self.backoff_seconds * 2 ** (attempt - 1)

    def get_all(self, resource: str) -> list[dict]:
        """Every record of a collection, page by page with limit/skip until `total`."""
        records: list[dict] = []
        while True:
            page = self.get_json(resource, {"limit": self.page_size, "skip": len(records)})
            items = page.get(resource)
            if not isinstance(items, list) or not isinstance(page.get("total"), int):
                raise DummyJSONError(f"GET {self.base_url}/{resource} answered no '{resource}' list with a total")
            records.extend(items)
            if not items or len(records) >= page["total"]:
                return records


def carts_to_orders(carts: list[dict], users: list[dict], products: list[dict], day: date, seed: int) -> list[dict]:
    """DummyJSON carts as the canonical orders of `day`: carts have no date, so each gets a
    deterministic time of that day; customer and category come from users and products."""
    users_by_id = {u["id"]: u for u in users}
    categories = {p["id"]: p.get("category") for p in products}
    brands = {p["id"]: p.get("brand") for p in products}
    rng = np.random.default_rng([seed, 4, day.toordinal()])
    seconds = np.sort(rng.integers(0, 86400, len(carts)))
    midnight = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
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
