import json
from datetime import date

import pytest

from ecomm_assets.core.dummyjson import DummyJSONClient, DummyJSONError, carts_to_orders
from ecomm_assets_tests.conftest import DUMMYJSON_DATA, DummyJSONStandIn


def client(url, **kwargs):
    return DummyJSONClient(url, timeout_seconds=5, backoff_seconds=0, page_size=50, **kwargs)


def test_pages_through_every_record(dummyjson):
    products = client(dummyjson.url).get_all("products")
    expected = json.loads((DUMMYJSON_DATA / "products.json").read_text())
    assert products == expected and len(products) == 194
    assert [p for p in dummyjson.requests if p.startswith("/products")][-1] == "/products?limit=50&skip=150"


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
