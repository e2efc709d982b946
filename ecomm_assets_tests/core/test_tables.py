"""The derived tables (core/tables.py): orders and the two dimensions, exact rows for each case."""

from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ecomm_assets.core.schemas import DIM_CUSTOMERS, DIM_PRODUCTS, ORDER_LINES, ORDERS
from ecomm_assets.core.tables import (
    build_dim_customers,
    build_dim_products,
    build_orders,
    write_orders,
)

DAY, NEXT = date(2024, 1, 15), date(2024, 1, 16)


def line(order_id="O1", line_number=1, at=(DAY, 10), product="P1", price="10", quantity=1, order_total="10", **extra):
    day, hour = at
    ts = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
    row = {name: None for name in ORDER_LINES.names} | {
        "order_id": order_id, "line_number": line_number, "order_ts": ts, "order_date": day,
        "customer_id": "C1", "customer_name": "Ann", "customer_email": "ann@x", "customer_country": "France",
        "product_id": product, "product_name": f"name of {product}", "category": "office", "brand": "Acme",
        "unit_price": Decimal(price), "quantity": quantity, "line_total": (Decimal(price) * quantity).quantize(Decimal("0.01"), ROUND_HALF_UP),
        "order_total": None if order_total is None else Decimal(order_total),
        "year": day.year, "month": day.month, "day": day.day, "hour": hour, "day_of_week": day.weekday(),
        "source": "feed",
    }
    return row | extra


def lines_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=ORDER_LINES)


def order_summary(row: dict) -> tuple:
    return (row["order_id"], row["order_date"], row["items"], row["units"], row["items_total"], row["reported_total"],
            row["total_difference"], row["reconciles"])


ORDERS_CASES = [
    ("lines of one order are summed",
     [line(line_number=1, price="2.50", quantity=2, order_total="15.00"), line(line_number=2, price="10", quantity=1, order_total="15.00")],
     [("O1", DAY, 2, 3, Decimal("15.00"), Decimal("15.00"), Decimal("0.00"), True)]),
    ("a reported total with shipping does not reconcile",
     [line(price="10", quantity=1, order_total="14.99")],
     [("O1", DAY, 1, 1, Decimal("10.00"), Decimal("14.99"), Decimal("4.99"), False)]),
    ("no reported total: nothing to reconcile",
     [line(order_total=None)],
     [("O1", DAY, 1, 1, Decimal("10.00"), None, None, None)]),
    ("one id on two days is an order of each day",
     [line(at=(DAY, 9), quantity=1, order_total="10"), line(at=(NEXT, 9), quantity=3, order_total="30")],
     [("O1", DAY, 1, 1, Decimal("10.00"), Decimal("10.00"), Decimal("0.00"), True),
      ("O1", NEXT, 1, 3, Decimal("30.00"), Decimal("30.00"), Decimal("0.00"), True)]),
    ("ordered by time, then id",
     [line("B", at=(DAY, 8)), line("A", at=(DAY, 9)), line("C", at=(DAY, 8))],
     [(o, DAY, 1, 1, Decimal("10.00"), Decimal("10.00"), Decimal("0.00"), True) for o in ("B", "C", "A")]),
    ("no lines, no orders", [], []),
]


@pytest.mark.parametrize("label, rows, expected", ORDERS_CASES, ids=[c[0] for c in ORDERS_CASES])
def test_build_orders(label, rows, expected):
    orders = build_orders(lines_table(rows))
    assert orders.schema == ORDERS
    assert [order_summary(row) for row in orders.to_pylist()] == expected


@pytest.mark.parametrize("label, rows, expected", ORDERS_CASES, ids=[c[0] for c in ORDERS_CASES])
def test_orders_written_day_by_day_from_files_are_the_orders_built_in_memory(tmp_path, label, rows, expected):
    """The orders asset's path (the days' order lines files to an orders file per day, with exactly
    the contract, by one query in DuckDB with bounded memory) gives each day exactly the rows of
    build_orders, in the same order; a day without lines, a file without rows."""
    lines = lines_table(rows)
    files = {}
    for day in (DAY, NEXT):
        files[day] = str(tmp_path / f"lines-{day}.parquet")
        pq.write_table(lines.filter(pc.equal(lines["order_date"], day)), files[day])
    written = write_orders(files, str(tmp_path))
    built = build_orders(lines)
    for day, (path, totals) in written.items():
        day_orders = built.filter(pc.equal(built["order_date"], day))
        assert pq.read_schema(path).equals(ORDERS, check_metadata=True)  # moved into the lake as it is
        assert pq.read_table(path).to_pylist() == day_orders.to_pylist()
        assert totals.not_reconciling == day_orders.filter(pc.invert(day_orders["reconciles"])).num_rows
        assert (totals.orders, totals.revenue) == (day_orders.num_rows, pc.sum(day_orders["items_total"]).as_py() or 0)
    assert sum(pq.read_metadata(path).num_rows for path, _ in written.values()) == len(expected)


def test_an_order_keeps_its_customer_time_and_source():
    [order] = build_orders(lines_table([line(at=(DAY, 7), customer_id="C9", customer_name="Bo", source="s3")])).to_pylist()
    assert (order["order_ts"], order["customer_id"], order["customer_name"], order["customer_email"], order["customer_country"],
            order["source"]) == (datetime(2024, 1, 15, 7, tzinfo=UTC), "C9", "Bo", "ann@x", "France", "s3")


def product(pid, **extra):
    return {"id": pid, "title": f"T{pid}", "category": "beauty", "brand": "Acme", "price": 9.99,
            "discountPercentage": 12.5, "rating": 4.5, "stock": 3} | extra


def product_rows(table: pa.Table) -> list[tuple]:
    return [(r["snapshot_date"], r["origin"], r["product_id"], r["name"], r["brand"], r["price"]) for r in table.to_pylist()]


PRODUCT_CASES = [
    ("snapshot only", {DAY: [product(1), product(2, brand=None)]}, [],
     [(DAY, "snapshot", "1", "T1", "Acme", Decimal("9.99")), (DAY, "snapshot", "2", "T2", None, Decimal("9.99"))]),
    ("a snapshot record without a key gets nulls", {DAY: [{"id": 3, "title": "bare"}]}, [],
     [(DAY, "snapshot", "3", "bare", None, None)]),
    ("a sold product the snapshot lists is not added again", {DAY: [product(1)]}, [line(product="1", price="5")],
     [(DAY, "snapshot", "1", "T1", "Acme", Decimal("9.99"))]),
    ("a product seen only in orders, from its latest line",
     {DAY: [product(1)]},
     [line("O1", at=(DAY, 9), product="P9", price="3.50", brand="Old"),
      line("O2", at=(DAY, 11), product="P9", price="4.125", brand="New")],
     [(DAY, "snapshot", "1", "T1", "Acme", Decimal("9.99")), (DAY, "orders", "P9", "name of P9", "New", Decimal("4.13"))]),
    ("listed yesterday, sold today without a snapshot of today",
     {DAY: [product(1)]}, [line(at=(NEXT, 9), product="1", price="5")],
     [(DAY, "snapshot", "1", "T1", "Acme", Decimal("9.99")), (NEXT, "orders", "1", "name of 1", "Acme", Decimal("5.00"))]),
    ("the same snapshot on two days gives rows on each", {DAY: [product(1)], NEXT: [product(1)]}, [],
     [(DAY, "snapshot", "1", "T1", "Acme", Decimal("9.99")), (NEXT, "snapshot", "1", "T1", "Acme", Decimal("9.99"))]),
    ("nothing at all", {}, [], []),
]


@pytest.mark.parametrize("label, snapshots, rows, expected", PRODUCT_CASES, ids=[c[0] for c in PRODUCT_CASES])
def test_build_dim_products(label, snapshots, rows, expected):
    dim = build_dim_products(snapshots, lines_table(rows))
    assert dim.schema == DIM_PRODUCTS
    assert product_rows(dim) == expected


def test_a_snapshot_product_keeps_its_typed_attributes():
    [row] = build_dim_products({DAY: [product(1, discountPercentage=7.255)]}, lines_table([])).to_pylist()
    assert (row["discount_percent"], row["rating"], row["stock"]) == (Decimal("7.26"), 4.5, 3)


def user(uid, **extra):
    address = {"address": "1 Main", "city": "Lyon", "state": "ARA", "postalCode": "69001", "country": "France"}
    return {"id": uid, "firstName": "Ann", "lastName": "Lee", "email": f"{uid}@x", "address": address} | extra


def customer_rows(table: pa.Table) -> list[tuple]:
    return [(r["snapshot_date"], r["origin"], r["customer_id"], r["name"], r["email"], r["city"], r["postal_code"])
            for r in table.to_pylist()]


CUSTOMER_CASES = [
    ("users with their address flattened", {DAY: [user(1), user(2, lastName=None)]}, [],
     [(DAY, "snapshot", "1", "Ann Lee", "1@x", "Lyon", "69001"), (DAY, "snapshot", "2", "Ann", "2@x", "Lyon", "69001")]),
    ("a user without an address", {DAY: [{"id": 5, "firstName": "Bo"}]}, [], [(DAY, "snapshot", "5", "Bo", None, None, None)]),
    ("a buyer the users list is not added again", {DAY: [user(1)]}, [line(customer_id="1")],
     [(DAY, "snapshot", "1", "Ann Lee", "1@x", "Lyon", "69001")]),
    ("a customer seen only in orders, from the latest line",
     {DAY: [user(1)]},
     [line("O1", at=(DAY, 8), customer_id="C7", customer_email="old@x", customer_city="Nice"),
      line("O2", at=(DAY, 12), customer_id="C7", customer_email="new@x", customer_city="Metz")],
     [(DAY, "snapshot", "1", "Ann Lee", "1@x", "Lyon", "69001"), (DAY, "orders", "C7", "Ann", "new@x", "Metz", None)]),
    ("an order without a customer adds no customer", {}, [line(customer_id=None)], []),
    ("nothing at all", {}, [], []),
]


@pytest.mark.parametrize("label, users, rows, expected", CUSTOMER_CASES, ids=[c[0] for c in CUSTOMER_CASES])
def test_build_dim_customers(label, users, rows, expected):
    dim = build_dim_customers(users, lines_table(rows))
    assert dim.schema == DIM_CUSTOMERS
    assert customer_rows(dim) == expected
