"""Tables derived from order lines and collection snapshots: orders and the two dimensions.

Each builder takes any number of days at once (a backfill is one query, not one per day) and
returns rows carrying their day (order_date or snapshot_date), ready to split into partitions."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from ecomm_assets.core import duck
from ecomm_assets.core.flatten import PARQUET_COPY_OPTIONS
from ecomm_assets.core.schemas import DIM_CUSTOMERS, DIM_PRODUCTS, ORDERS


def _query(sql: str, **tables: pa.Table) -> pa.Table:
    con = duck.connect()
    for name, table in tables.items():
        con.register(name, table)
    result = con.sql(sql).to_arrow_table()
    con.close()
    return result


# One row per order and day (an id is unique within a day: a range must give what its days give
# one by one); `reconciles` says whether the reported total equals the line totals.
_ORDERS = """
SELECT order_id, any_value(order_ts) AS order_ts, order_date,
       any_value(customer_id) AS customer_id, any_value(customer_name) AS customer_name,
       any_value(customer_email) AS customer_email, any_value(customer_country) AS customer_country,
       count(*)::INTEGER AS items, sum(quantity)::BIGINT AS units,
       sum(line_total)::DECIMAL(18,2) AS items_total, any_value(order_total) AS reported_total,
       (any_value(order_total) - sum(line_total))::DECIMAL(18,2) AS total_difference,
       any_value(order_total) = sum(line_total) AS reconciles,
       any_value(source) AS source
FROM order_lines GROUP BY order_date, order_id ORDER BY order_ts, order_id
"""


def build_orders(order_lines: pa.Table) -> pa.Table:
    """The orders of `order_lines` (any number of days), one row per order and day."""
    return _query(_ORDERS, order_lines=order_lines).cast(ORDERS)


@dataclass(frozen=True)
class OrderTotals:
    """A day's orders: how many, their revenue (the sum of their lines), and how many do not reconcile."""

    orders: int
    revenue: Decimal
    not_reconciling: int


def write_orders(order_lines_files: dict[date, str], out_dir: str) -> dict[date, tuple[Path, OrderTotals]]:
    """Each day's orders computed from its order lines Parquet file into a Parquet file of
    `out_dir` by DuckDB, which spills past its memory limit, so a day of any size fits in bounded
    memory; per day, the file and its totals."""
    written = {}
    with tempfile.TemporaryDirectory(prefix="spill-", dir=out_dir) as spill, duck.bounded(spill) as con:
        for day, lines_file in sorted(order_lines_files.items()):
            con.read_parquet(lines_file).create_view("order_lines")
            out = Path(out_dir, f"orders-{day}.parquet")
            con.execute(f"COPY ({_ORDERS}) TO $out ({PARQUET_COPY_OPTIONS})", {"out": str(out)})
            [totals] = con.execute(
                "SELECT count(*), coalesce(sum(items_total), 0), count(*) FILTER (WHERE NOT reconciles) "
                "FROM read_parquet($out)", {"out": str(out)}
            ).fetchall()
            written[day] = (out, OrderTotals(*totals))
    return written


def build_dim_products(products: dict[date, list[dict]], order_lines: pa.Table) -> pa.Table:
    """Each day's products snapshot, plus products seen only in that day's orders (landed files may
    sell products the snapshot does not list yet), with the attributes of their latest order line."""
    products_table = _snapshots(
        products,
        {"id": pa.string(), "title": pa.string(), "category": pa.string(), "brand": pa.string(),
         "price": pa.float64(), "discountPercentage": pa.float64(), "rating": pa.float64(), "stock": pa.int64()},
    )
    return _query(
        """
        SELECT id AS product_id, title AS name, category, brand, price::DECIMAL(18,2) AS price,
               "discountPercentage"::DECIMAL(9,2) AS discount_percent, rating, stock,
               'snapshot' AS origin, snapshot_date
        FROM products
        UNION ALL
        SELECT product_id, arg_max(product_name, order_ts), arg_max(category, order_ts), arg_max(brand, order_ts),
               arg_max(unit_price, order_ts)::DECIMAL(18,2), arg_max(discount_percent, order_ts), NULL, NULL,
               'orders', order_date
        FROM order_lines l
        WHERE NOT EXISTS (SELECT 1 FROM products c WHERE c.id = l.product_id AND c.snapshot_date = l.order_date)
        GROUP BY order_date, product_id
        ORDER BY snapshot_date, origin = 'orders', product_id
        """,
        products=products_table,
        order_lines=order_lines,
    ).cast(DIM_PRODUCTS)


def build_dim_customers(users: dict[date, list[dict]], order_lines: pa.Table) -> pa.Table:
    """Each day's users with their address flattened, plus customers seen only in that day's orders."""
    address = pa.struct(
        {"address": pa.string(), "city": pa.string(), "state": pa.string(), "postalCode": pa.string(), "country": pa.string()}
    )
    users_table = _snapshots(
        users,
        {"id": pa.string(), "firstName": pa.string(), "lastName": pa.string(), "email": pa.string(), "address": address},
    )
    return _query(
        """
        SELECT id AS customer_id, concat_ws(' ', "firstName", "lastName") AS name, email,
               address.address AS address, address.city, address.state, address."postalCode" AS postal_code,
               address.country, 'snapshot' AS origin, snapshot_date
        FROM users
        UNION ALL
        SELECT customer_id, arg_max(customer_name, order_ts), arg_max(customer_email, order_ts),
               arg_max(customer_address, order_ts), arg_max(customer_city, order_ts),
               arg_max(customer_state, order_ts), NULL, arg_max(customer_country, order_ts),
               'orders', order_date
        FROM order_lines l
        WHERE customer_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = l.customer_id AND u.snapshot_date = l.order_date)
        GROUP BY order_date, customer_id
        ORDER BY snapshot_date, origin = 'orders', customer_id
        """,
        users=users_table,
        order_lines=order_lines,
    ).cast(DIM_CUSTOMERS)


def _snapshots(snapshots: dict[date, list[dict]], fields: dict[str, pa.DataType]) -> pa.Table:
    """Days of collection records as one typed table with a snapshot_date column. A snapshot equal to
    the previous day's (the usual case) is converted once and repeated."""
    tables, previous, previous_table = [], None, None
    for day, records in sorted(snapshots.items()):
        table = previous_table if records == previous else _collection_table(records, fields)
        previous, previous_table = records, table
        tables.append(table.append_column("snapshot_date", pa.array([day] * table.num_rows, pa.date32())))
    if not tables:
        return pa.schema([*(pa.field(n, t) for n, t in fields.items()), pa.field("snapshot_date", pa.date32())]).empty_table()
    return pa.concat_tables(tables)


def _collection_table(records: list[dict], fields: dict[str, pa.DataType]) -> pa.Table:
    """Collection records (JSON-shaped dicts) as a typed table of the fields the dimension uses;
    ids become strings, as in the order lines, and absent keys become nulls."""
    columns = {}
    for name, dtype in fields.items():
        values = [record.get(name) for record in records]
        if name == "id":
            values = [None if v is None else str(v) for v in values]
        columns[name] = pa.array(values, type=dtype)
    return pa.table(columns)
