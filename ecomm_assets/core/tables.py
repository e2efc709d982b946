"""Tables derived from order lines and collection snapshots: orders and the two dimensions.

Each builder takes any number of days at once (a backfill is one query, not one per day) and
returns rows carrying their day (order_date or snapshot_date), ready to split into partitions."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ecomm_assets.core import duck
from ecomm_assets.core.schemas import DIM_CUSTOMERS, DIM_PRODUCTS, ORDERS

# One row per order and day (an id is unique within a day: a range must give what its days give
# one by one), day after day; `reconciles` says whether the reported total equals the line totals.
_ORDERS = """
SELECT order_id, any_value(order_ts) AS order_ts, order_date,
       any_value(customer_id) AS customer_id, any_value(customer_name) AS customer_name,
       any_value(customer_email) AS customer_email, any_value(customer_country) AS customer_country,
       count(*)::INTEGER AS items, sum(quantity)::BIGINT AS units,
       sum(line_total)::DECIMAL(18,2) AS items_total, any_value(order_total) AS reported_total,
       (any_value(order_total) - sum(line_total))::DECIMAL(18,2) AS total_difference,
       any_value(order_total) = sum(line_total) AS reconciles,
       any_value(source) AS source
FROM order_lines GROUP BY order_date, order_id ORDER BY order_date, order_ts, order_id
"""


def build_orders(order_lines: pa.Table) -> pa.Table:
    """The orders of `order_lines` (any number of days), one row per order and day."""
    return duck.query(_ORDERS, order_lines=order_lines).cast(ORDERS)


@dataclass
class OrderTotals:
    """A day's orders: how many, their revenue (the sum of their lines), and how many do not reconcile."""

    orders: int = 0
    revenue: Decimal = field(default_factory=lambda: Decimal("0.00"))
    not_reconciling: int = 0

    def add(self, orders: pa.RecordBatch) -> None:
        self.orders += orders.num_rows
        self.revenue += pc.sum(orders["items_total"]).as_py() or 0
        self.not_reconciling += pc.sum(pc.invert(orders["reconciles"])).as_py() or 0


def write_orders(order_lines_files: dict[date, str], out_dir: str) -> dict[date, tuple[Path, OrderTotals]]:
    """Each day's orders computed from its order lines Parquet file, into a Parquet file of
    `out_dir` with exactly the ORDERS contract (moved into the lake as it is), and its totals: one
    DuckDB query over all the days, which spills past its memory limit, so any number of days of
    any size fits in bounded memory. A day without lines gets a file without rows."""
    totals = {day: OrderTotals() for day in order_lines_files}
    with (tempfile.TemporaryDirectory(prefix="spill-", dir=out_dir) as spill, duck.bounded(spill) as con,
          duck.DayFiles(out_dir, "orders", ORDERS) as written):
        con.read_parquet(list(order_lines_files.values())).create_view("order_lines")
        for day, orders in duck.by_day(duck.rows(con, _ORDERS), "order_date"):
            if day not in totals:
                raise ValueError(f"order lines of {day} in the order lines files of other days")
            written.write(day, orders)
            totals[day].add(orders)
        for day in sorted(set(totals) - set(written.paths)):
            written.empty(day)
    return {day: (written.paths[day], totals[day]) for day in sorted(totals)}


# Each day's snapshot records, plus ids seen only in that day's orders (with the attributes of their
# latest order line).
_DIM_PRODUCTS = """
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
"""

_DIM_CUSTOMERS = """
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
"""

def build_dim_products(products: dict[date, list[dict]], order_lines: pa.Table | duck.ParquetFiles) -> pa.Table:
    """Each day's products snapshot, plus products seen only in that day's orders (landed files may
    sell products the snapshot does not list yet), with the attributes of their latest order line
    (`order_lines`: the days' order lines, a table or its files)."""
    products_table = _snapshots(
        products,
        {"id": pa.string(), "title": pa.string(), "category": pa.string(), "brand": pa.string(),
         "price": pa.float64(), "discountPercentage": pa.float64(), "rating": pa.float64(), "stock": pa.int64()},
    )
    return duck.query(_DIM_PRODUCTS, products=products_table, order_lines=order_lines).cast(DIM_PRODUCTS)


def build_dim_customers(users: dict[date, list[dict]], order_lines: pa.Table | duck.ParquetFiles) -> pa.Table:
    """Each day's users with their address flattened, plus customers seen only in that day's orders
    (`order_lines`: the days' order lines, a table or its files)."""
    address = pa.struct(
        {"address": pa.string(), "city": pa.string(), "state": pa.string(), "postalCode": pa.string(), "country": pa.string()}
    )
    users_table = _snapshots(
        users,
        {"id": pa.string(), "firstName": pa.string(), "lastName": pa.string(), "email": pa.string(), "address": address},
    )
    return duck.query(_DIM_CUSTOMERS, users=users_table, order_lines=order_lines).cast(DIM_CUSTOMERS)


def _snapshots(snapshots: dict[date, list[dict]], fields: dict[str, pa.DataType]) -> pa.Table:
    """Days of collection records as one typed table with a snapshot_date column. A snapshot equal to
    the previous day's (the usual case) is converted once and repeated."""
    tables, previous, previous_table = [], None, None
    for day, records in sorted(snapshots.items()):
        table = previous_table if records == previous else _collection_table(records, fields)
        previous, previous_table = records, table
        tables.append(table.append_column("snapshot_date", pa.repeat(pa.scalar(day, pa.date32()), table.num_rows)))
    if not tables:
        return pa.schema([*(pa.field(n, t) for n, t in fields.items()), pa.field("snapshot_date", pa.date32())]).empty_table()
    return pa.concat_tables(tables)


def _collection_table(records: list[dict], fields: dict[str, pa.DataType]) -> pa.Table:
    """Collection records (JSON-shaped dicts) as a typed table of the fields the dimension uses;
    ids become strings, as in the order lines, and absent keys become nulls. The fields but the id
    are converted by Arrow at once (as a struct of them: other keys are ignored)."""
    typed = pa.struct([pa.field(name, dtype) for name, dtype in fields.items() if name != "id"])
    columns = dict(zip(typed.names, pa.array(records, type=typed).flatten()))
    columns["id"] = pa.array([None if (v := record.get("id")) is None else str(v) for record in records], pa.string())
    return pa.table({name: columns[name] for name in fields})
