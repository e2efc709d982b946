"""Daily analytics from order lines and orders: what the tutorials' QuickSight dashboards show.

Pure functions over Arrow tables, computed in DuckDB; each result has a contract in ANALYTICS.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from ecomm_assets.core.schemas import MONEY

TOP_CUSTOMERS = 20

ANALYTICS: dict[str, pa.Schema] = {
    "sales_by_category": pa.schema(
        [
            ("category", pa.string()),
            ("orders", pa.int64()),
            ("units", pa.int64()),
            ("revenue", MONEY),
            ("revenue_share", pa.float64()),
        ]
    ),
    "product_performance": pa.schema(
        [
            ("product_id", pa.string()),
            ("product_name", pa.string()),
            ("category", pa.string()),
            ("orders", pa.int64()),
            ("units", pa.int64()),
            ("revenue", MONEY),
            ("average_unit_price", MONEY),
        ]
    ),
    "top_customers": pa.schema(
        [
            ("rank", pa.int32()),
            ("customer_id", pa.string()),
            ("customer_name", pa.string()),
            ("orders", pa.int64()),
            ("units", pa.int64()),
            ("revenue", MONEY),
        ]
    ),
    "daily_order_summary": pa.schema(
        [
            ("order_date", pa.date32()),
            ("orders", pa.int64()),
            ("customers", pa.int64()),
            ("units", pa.int64()),
            ("revenue", MONEY),
            ("average_order_value", MONEY),
            ("orders_not_reconciling", pa.int64()),
            ("share_not_reconciling", pa.float64()),
        ]
    ),
}

_SQL = {
    "sales_by_category": """
        SELECT category, count(DISTINCT order_id) AS orders, sum(quantity) AS units, sum(line_total) AS revenue,
               sum(line_total) / nullif(sum(sum(line_total)) OVER (), 0) AS revenue_share
        FROM order_lines GROUP BY category ORDER BY revenue DESC, category
    """,
    "product_performance": """
        SELECT product_id, any_value(product_name) AS product_name, any_value(category) AS category,
               count(DISTINCT order_id) AS orders, sum(quantity) AS units, sum(line_total) AS revenue,
               CAST(sum(line_total) / sum(quantity) AS DECIMAL(18,2)) AS average_unit_price
        FROM order_lines GROUP BY product_id ORDER BY revenue DESC, product_id
    """,
    "top_customers": f"""
        SELECT row_number() OVER (ORDER BY sum(line_total) DESC, customer_id) AS rank,
               customer_id, any_value(customer_name) AS customer_name,
               count(DISTINCT order_id) AS orders, sum(quantity) AS units, sum(line_total) AS revenue
        FROM order_lines WHERE customer_id IS NOT NULL GROUP BY customer_id
        ORDER BY rank LIMIT {TOP_CUSTOMERS}
    """,
    "daily_order_summary": """
        SELECT $day::DATE AS order_date, count(*) AS orders, count(DISTINCT customer_id) AS customers,
               coalesce(sum(units), 0) AS units, coalesce(sum(items_total), 0) AS revenue,
               coalesce(CAST(sum(items_total) / nullif(count(*), 0) AS DECIMAL(18,2)), 0) AS average_order_value,
               count(*) FILTER (WHERE NOT reconciles) AS orders_not_reconciling,
               coalesce(count(*) FILTER (WHERE NOT reconciles) / nullif(count(*), 0), 0) AS share_not_reconciling
        FROM orders
    """,
}


def build_analytics(name: str, order_lines: pa.Table, orders: pa.Table, day) -> pa.Table:
    """The analytics table `name` of one day. Revenue is the sum of line totals (what was sold)."""
    con = duckdb.connect()
    con.register("order_lines", order_lines)
    con.register("orders", orders)
    params = {"day": day} if "$day" in _SQL[name] else None
    result = con.sql(_SQL[name], params=params).to_arrow_table().cast(ANALYTICS[name])
    con.close()
    return result
