import gzip
import json
import threading
import time
from datetime import date
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from ecomm_assets.core.dummyjson import DummyJSONClient, DummyJSONError, carts_to_orders
from ecomm_assets_tests.conftest import DUMMYJSON_DATA, DummyJSONStandIn


def client(url, **kwargs):
    return DummyJSONClient(url, timeout_seconds=5, backoff_seconds=0, page_size=50, **kwargs)


def test_pages_through_every_record(dummyjson):
    products = client(dummyjson.url).get_all("products")
    expected = json.loads((DUMMYJSON_DATA / "products.json").read_text())
    assert products == expected and len(products) == 194
    assert [p for p in dummyjson.requests if p.startswith("/products")][-1] == "/products?limit=44&skip=150"  # no more than the total


@pytest.mark.parametrize(("collection", "total", "last_page"), [
    ("posts", 251, "/posts?limit=1&skip=250"), ("comments", 340, "/comments?limit=40&skip=300"),
])
def test_pages_through_every_post_and_comment(dummyjson, collection, total, last_page):
    records = client(dummyjson.url).get_all(collection)
    assert records == json.loads((DUMMYJSON_DATA / f"{collection}.json").read_text()) and len(records) == total
    pages = [p for p in dummyjson.requests if p.startswith(f"/{collection}")]
    assert pages == [f"/{collection}?limit={min(50, total - skip)}&skip={skip}" for skip in range(0, total, 50)]
    assert pages[-1] == last_page


def test_retries_after_429():
    stand_in = DummyJSONStandIn(rate_limited_requests=1)
    try:
        api = client(stand_in.url)
        users = api.get_all("users")
        assert len(users) == 208
        assert api.requests_made == len(stand_in.requests) == 1 + 5  # one 429, then 5 pages of 50
    finally:
        stand_in.close()


def test_gives_up_after_retries_naming_the_url_and_status():
    stand_in = DummyJSONStandIn(rate_limited_requests=100)
    try:
        with pytest.raises(DummyJSONError, match=r"/carts failed after 3 attempts; last: HTTP 429"):
            client(stand_in.url, max_retries=2).get_all("carts")
    finally:
        stand_in.close()


def test_a_404_is_an_error_with_url_and_status(dummyjson):
    with pytest.raises(DummyJSONError, match=r"products/9999 answered HTTP 404.*not found"):
        client(dummyjson.url).get_json("products/9999")


def test_connection_errors_are_retried_then_reported():
    sleeps = []
    api = DummyJSONClient("http://127.0.0.1:9", timeout_seconds=1, max_retries=2, backoff_seconds=0.25, sleep=sleeps.append)
    with pytest.raises(DummyJSONError, match="ConnectionError"):
        api.get_all("products")
    assert sleeps == [0.25, 0.5]  # exponential backoff


def test_carts_become_orders_of_the_day(dummyjson):
    api = client(dummyjson.url)
    carts, users, products = api.get_all("carts"), api.get_all("users"), api.get_all("products")
    orders = carts_to_orders(carts, users, products, date(2024, 1, 15), seed=1)
    assert len(orders) == 208
    first = orders[0]
    assert first["order_id"] == "DJ-20240115-1" and first["order_date"].startswith("2024-01-15T")
    assert first["customer"]["email"] == "emily.johnson@x.dummyjson.com"
    assert first["products"][0] == {
        "product_id": "162", "name": "Blue Frock", "category": "tops", "brand": None,
        "price": 29.99, "quantity": 4, "discount_percent": 12.13,
    }


class LocalAPI:
    """A real HTTP server on 127.0.0.1 (port 0) whose every GET is answered by
    `respond(handler, query, number)`, `number` counting requests from 1: each test's misbehaving
    API is one small function. Past `max_requests` it answers 500, so a client that pages forever
    fails the test instead of hanging it."""

    def __init__(self, respond, max_requests: int = 100):
        self.requests: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                api.requests.append(self.path)
                if len(api.requests) > max_requests:
                    return send(self, 500, b"too many requests to this test server")
                query = {key: int(values[0]) for key, values in parse_qs(urlparse(self.path).query).items()}
                try:
                    respond(self, query, len(api.requests))
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on a slow answer, as it should

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def send(handler, status: int, body: bytes, headers: dict | None = None) -> None:
    handler.send_response_only(status)  # no automatic Date header: the tests choose it
    for key, value in ({"Content-Length": str(len(body))} | (headers or {})).items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(body)


class FakeClock:
    """A monotonic clock that moves only when the client sleeps; records the sleeps asked for."""

    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


SERVER_TIME = time.time()


def http_date(offset_seconds: float) -> str:
    return formatdate(SERVER_TIME + offset_seconds, usegmt=True)


@pytest.mark.parametrize(
    "headers, limited, settings, expected_sleeps, error",
    [
        pytest.param({"Retry-After": "3600"}, 100, {}, [],
                     r"/things\?x=1 answered HTTP 429 with Retry-After: 3600 \(3600 s\), more than the 30 s", id="seconds-beyond-cap"),
        pytest.param({"Retry-After": http_date(3600), "Date": http_date(0)}, 100, {}, [],
                     rf"HTTP 429 with Retry-After: {http_date(3600)} \(3600 s\), more than the 30 s", id="http-date-beyond-cap"),
        # an hour from when the server answers (not from when the tests were collected, minutes earlier on a busy machine)
        pytest.param({"Retry-After": lambda: formatdate(time.time() + 3600, usegmt=True)}, 100, {}, [],
                     r"HTTP 429 with Retry-After: .* GMT \(3[56]\d\d s\)", id="http-date-no-date-header"),
        pytest.param({"Retry-After": "20"}, 2, {}, [20, 20], None, id="seconds-within-cap"),
        pytest.param({"Retry-After": http_date(7), "Date": http_date(0)}, 1, {}, [7], None, id="http-date-within-cap"),
        pytest.param({"Retry-After": http_date(-60), "Date": http_date(0)}, 1, {}, [0], None, id="http-date-in-the-past"),
        pytest.param({"Retry-After": "soon"}, 1, {"backoff_seconds": 1}, [1], None, id="unparseable-means-backoff"),
        pytest.param({"Retry-After": "20"}, 100, {"deadline_seconds": 50}, [20, 20],
                     r"/things\?x=1: waiting 20 s to retry \(Retry-After: 20\) would pass the call's 50 s deadline; last: HTTP 429",
                     id="within-cap-past-deadline"),
        pytest.param({}, 100, {"backoff_seconds": 10, "max_retries": 4}, [10, 20, 30, 30],
                     r"/things failed after 5 attempts; last: HTTP 429", id="backoff-capped"),
    ],
)
def test_retry_waits_are_capped_and_bounded_by_the_call_deadline(headers, limited, settings, expected_sleeps, error):
    def respond(handler, query, number):
        if number <= limited:
            answered = {name: value() if callable(value) else value for name, value in headers.items()}
            return send(handler, 429, b'{"message": "slow down"}', answered)
        send(handler, 200, b'{"ok": true}')

    clock = FakeClock()
    with LocalAPI(respond) as api:
        client = DummyJSONClient(api.url, sleep=clock.sleep, clock=clock, max_retry_wait_seconds=30,
                                 **({"deadline_seconds": 120} | settings))
        if error:
            with pytest.raises(DummyJSONError, match=error):
                client.get_json("things", {"x": 1})
        else:
            assert client.get_json("things", {"x": 1}) == {"ok": True}
        assert clock.sleeps == expected_sleeps and sum(clock.sleeps) <= client.deadline_seconds
        assert len(api.requests) == len(expected_sleeps) + 1


def ids(first: int, count: int) -> list[int]:
    return list(range(first, first + max(count, 0)))


@pytest.mark.parametrize(
    "page, settings, expected_ids, error, warning, expected_requests",
    [
        # page(skip, limit, number) -> (total, the ids of the records on the page)
        pytest.param(lambda skip, limit, n: (20 + 100 * n, ids(skip + 1, limit)), {}, ids(1, 120), None,
                     "total changed from 120 to 220 at skip=50; reading the first 120", 3, id="total-grows-every-page"),
        pytest.param(lambda skip, limit, n: (120, ids(skip + 1, min(limit, 30, 120 - skip))), {}, ids(1, 120), None, None, 4,
                     id="server-caps-page-size"),
        pytest.param(lambda skip, limit, n: (120, ids(skip + 1, limit) if skip < 100 else []), {}, None,
                     r"page at skip=100 was empty; expected total 120", None, 3, id="empty-page-before-total"),
        pytest.param(lambda skip, limit, n: (120 if n == 1 else 60, ids(skip + 1, min(limit, (120 if n == 1 else 60) - skip))),
                     {}, None, r"page at skip=60 was empty; expected total 120", "total changed from 120 to 60", 3,
                     id="total-shrinks"),
        pytest.param(lambda skip, limit, n: (120, ids(skip, limit) if skip else ids(1, limit)), {}, None,
                     r"duplicate ids \[50\]", None, 3, id="records-repeat-across-pages"),
        pytest.param(lambda skip, limit, n: (120, ids(skip + 1, 50)), {}, None,
                     r"/things answered 150 records; expected total 120", None, 3, id="last-page-longer-than-asked"),
        pytest.param(lambda skip, limit, n: (10**9, ids(skip + 1, limit)), {}, None,
                     r"total 1000000000 needs 20000000 pages of 50, more than max_pages=1000", None, 1,
                     id="total-beyond-page-cap"),
        pytest.param(lambda skip, limit, n: (120, ids(skip + 1, 1)), {"max_pages": 4}, None,
                     r"read 4 of 120 records in 4 pages \(max_pages=4\)", None, 4, id="pages-too-short-for-page-cap"),
    ],
)
def test_paging_reads_exactly_the_first_total_or_fails(page, settings, expected_ids, error, warning, expected_requests, caplog):
    def respond(handler, query, number):
        total, page_ids = page(query["skip"], query["limit"], number)
        send(handler, 200, json.dumps({"things": [{"id": i} for i in page_ids], "total": total}).encode())

    with LocalAPI(respond) as api:
        client = DummyJSONClient(api.url, timeout_seconds=5, backoff_seconds=0, page_size=50, **settings)
        if error:
            with pytest.raises(DummyJSONError, match=error):
                client.get_all("things")
        else:
            assert [record["id"] for record in client.get_all("things")] == expected_ids
        assert len(api.requests) == expected_requests
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(warning in message for message in warnings) if warning else not warnings


def trickle(body: bytes, chunked: bool):
    """Answers 200 with `body`, one byte every half second."""

    def respond(handler, query, number):
        handler.send_response_only(200)
        handler.send_header(*(("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(len(body)))))
        handler.end_headers()
        for byte in body:
            handler.wfile.write(b"1\r\n%c\r\n" % byte if chunked else bytes([byte]))
            handler.wfile.flush()
            time.sleep(0.5)
        if chunked:
            handler.wfile.write(b"0\r\n\r\n")

    return respond


def cut_short(handler, query, number):
    handler.send_response_only(200)
    handler.send_header("Content-Length", "100")
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.wfile.write(b'{"ok": tr')
    handler.close_connection = True


def stall_after_headers(handler, query, number):
    handler.send_response_only(200)
    handler.send_header("Content-Length", "12")
    handler.end_headers()
    handler.wfile.flush()
    time.sleep(3)


BODY = b'{"ok": true}'


@pytest.mark.parametrize(
    "respond, settings, error",
    [
        pytest.param(trickle(BODY, chunked=False), {"timeout_seconds": 1}, r"TimeoutError: response not complete after \d\.\d s \(limit 1\.0 s\)",
                     id="trickled-body"),
        pytest.param(trickle(BODY, chunked=True), {"timeout_seconds": 1}, r"TimeoutError: response not complete after \d\.\d s \(limit 1\.0 s\)",
                     id="trickled-chunked-body"),
        pytest.param(trickle(BODY, chunked=False), {"timeout_seconds": 5, "deadline_seconds": 1},
                     r"TimeoutError: response not complete after \d\.\d s \(limit 1\.0 s\)", id="call-deadline-cuts-the-response"),
        pytest.param(cut_short, {"timeout_seconds": 1}, r"IncompleteRead", id="body-cut-short"),
        pytest.param(stall_after_headers, {"timeout_seconds": 1}, r"Read timed out", id="stall-after-headers"),
    ],
)
def test_a_slow_or_broken_response_fails_within_its_time_limit(respond, settings, error):
    with LocalAPI(respond) as api:
        client = DummyJSONClient(api.url, max_retries=0, **settings)
        started = time.monotonic()
        with pytest.raises(DummyJSONError, match=rf"GET {api.url}/things failed after 1 attempts; last: .*{error}"):
            client.get_json("things")
        assert time.monotonic() - started < min(settings["timeout_seconds"], settings.get("deadline_seconds", 99)) + 1


def answer(body: bytes, headers: dict):
    def respond(handler, query, number):
        if headers.get("Transfer-Encoding") == "chunked":  # in two chunks, to be read as they come
            handler.send_response_only(200)
            for key, value in headers.items():
                handler.send_header(key, value)
            handler.end_headers()
            half = len(body) // 2
            handler.wfile.write(b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:half], body[half:], b"")))
        else:
            send(handler, 200, body, headers)

    return respond


@pytest.mark.parametrize(
    "body, headers",
    [
        pytest.param(BODY, {}, id="plain"),
        pytest.param(gzip.compress(BODY), {"Content-Encoding": "gzip"}, id="gzip"),
        pytest.param(gzip.compress(BODY), {"Content-Encoding": "gzip", "Transfer-Encoding": "chunked"}, id="gzip-chunked"),
        pytest.param(BODY, {"Transfer-Encoding": "chunked"}, id="chunked"),
    ],
)
def test_a_body_read_in_chunks_is_decoded_whole(body, headers):
    with LocalAPI(answer(body, headers)) as api:
        assert DummyJSONClient(api.url, max_retries=0).get_json("things") == json.loads(BODY)
