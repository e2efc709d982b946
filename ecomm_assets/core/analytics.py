"""Daily analytics from order lines and orders: what the tutorials' QuickSight dashboards show.

Pure functions over Arrow tables or Parquet files of any number of days, computed in DuckDB in one
query; each row carries its order_date, and each result has a contract in core/schemas.py
(ANALYTICS).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import date

import pyarrow as pa

from ecomm_assets.core import duck
from ecomm_assets.core.scans import columns_read
from ecomm_assets.core.schemas import (
    ANALYTICS,
    ENGAGEMENT_ANALYTICS,
    LAKE_TABLES,
    PURCHASE_ANALYTICS,
    PURCHASE_DIMENSIONS,
    TOP_CUSTOMERS,
)

_SQL = {
    "sales_by_category": """
        SELECT order_date, category, count(DISTINCT order_id) AS orders, sum(quantity) AS units,
               sum(line_total) AS revenue,
               sum(line_total) / nullif(sum(sum(line_total)) OVER (PARTITION BY order_date), 0) AS revenue_share
        FROM order_lines GROUP BY order_date, category ORDER BY order_date, revenue DESC, category
    """,
    "product_performance": """
        SELECT order_date, product_id, any_value(product_name) AS product_name, any_value(category) AS category,
               count(DISTINCT order_id) AS orders, sum(quantity) AS units, sum(line_total) AS revenue,
               CAST(sum(line_total) / sum(quantity) AS DECIMAL(18,2)) AS average_unit_price
        FROM order_lines GROUP BY order_date, product_id ORDER BY order_date, revenue DESC, product_id
    """,
    "top_customers": f"""
        SELECT order_date,
               row_number() OVER (PARTITION BY order_date ORDER BY sum(line_total) DESC, customer_id) AS rank,
               customer_id, any_value(customer_name) AS customer_name,
               count(DISTINCT order_id) AS orders, sum(quantity) AS units, sum(line_total) AS revenue
        FROM order_lines WHERE customer_id IS NOT NULL GROUP BY order_date, customer_id
        QUALIFY rank <= {TOP_CUSTOMERS}
        ORDER BY order_date, rank
    """,
    # Every day gets a row, with zeros when it had no orders.
    "daily_order_summary": """
        SELECT d.day AS order_date, count(o.order_id) AS orders, count(DISTINCT o.customer_id) AS customers,
               coalesce(sum(o.units), 0) AS units, coalesce(sum(o.items_total), 0) AS revenue,
               coalesce(CAST(sum(o.items_total) / nullif(count(o.order_id), 0) AS DECIMAL(18,2)), 0) AS average_order_value,
               count(o.order_id) FILTER (WHERE NOT o.reconciles) AS orders_not_reconciling,
               coalesce(count(o.order_id) FILTER (WHERE NOT o.reconciles) / nullif(count(o.order_id), 0), 0)
                   AS share_not_reconciling
        FROM days d LEFT JOIN orders o ON o.order_date = d.day
        GROUP BY d.day ORDER BY d.day
    """,
}


def build_analytics(name: str, inputs: Mapping[str, pa.Table | duck.ParquetFiles], days: list[date]) -> pa.Table:
    """The analytics table `name` for `days` from its inputs (see `columns_read_by`). Revenue is
    the sum of line totals (what was sold)."""
    return _query(_SQL[name], ANALYTICS[name], days, **inputs)


def _query(sql: str, contract: pa.Schema, days: list[date], **tables: pa.Table | duck.ParquetFiles) -> pa.Table:
    """`sql` over `tables` (by name) and `days` (a table of column `day`), as `contract`."""
    return duck.query(sql, days=pa.table({"day": pa.array(sorted(days), pa.date32())}), **tables).cast(contract)


_RATING_COUNTS = ", ".join(f"count(*) FILTER (WHERE rating = {n}) AS rating_{n}" for n in range(1, 6))

# Engagement analytics, per snapshot day, from the engagement tables and the day's order lines.
_ENGAGEMENT_SQL = {
    "rating_distribution": f"""
        SELECT snapshot_date, CASE WHEN grouping(product_id) = 1 THEN 'category' ELSE 'product' END AS level,
               product_id, category, count(*) AS reviews, {_RATING_COUNTS}, avg(rating) AS average_rating
        FROM (SELECT snapshot_date, product_id, any_value(category) OVER (PARTITION BY snapshot_date, product_id) AS category,
                     rating FROM product_reviews)
        GROUP BY GROUPING SETS ((snapshot_date, product_id, category), (snapshot_date, category))
        ORDER BY snapshot_date, level, category, product_id
    """,
    "rating_vs_sales": """
        WITH rated AS (
            SELECT snapshot_date, product_id, any_value(category) AS category, count(*) AS reviews, avg(rating) AS average_rating
            FROM product_reviews GROUP BY ALL
        ), sold AS (
            SELECT order_date AS snapshot_date, product_id, any_value(category) AS category, sum(quantity) AS units,
                   sum(line_total) AS revenue
            FROM order_lines GROUP BY ALL
        )
        SELECT snapshot_date, product_id, coalesce(r.category, s.category) AS category, coalesce(r.reviews, 0) AS reviews,
               r.average_rating, coalesce(s.units, 0) AS units, coalesce(s.revenue, 0) AS revenue
        FROM rated r FULL JOIN sold s USING (snapshot_date, product_id)
        ORDER BY snapshot_date, revenue DESC, product_id
    """,
    "engaged_users": """
        WITH activity AS (
            SELECT snapshot_date, user_id, 1 AS posts, 0 AS comments, coalesce(likes, 0) AS likes_received,
                   coalesce(dislikes, 0) AS dislikes_received, coalesce(views, 0) AS views_received,
                   (SELECT count(*) FROM comments c WHERE c.post_id = p.post_id AND c.snapshot_date = p.snapshot_date
                        AND c.user_id <> p.user_id) AS comments_received
            FROM posts p
            UNION ALL
            SELECT snapshot_date, user_id, 0, 1, coalesce(likes, 0), 0, 0, 0 FROM comments
        )
        SELECT snapshot_date, user_id, sum(posts) AS posts, sum(comments) AS comments,
               sum(likes_received) AS likes_received, sum(dislikes_received) AS dislikes_received,
               sum(views_received) AS views_received, sum(comments_received) AS comments_received,
               row_number() OVER (PARTITION BY snapshot_date
                                  ORDER BY sum(posts) + sum(comments) + sum(likes_received) DESC, user_id) AS rank
        FROM activity GROUP BY snapshot_date, user_id
        ORDER BY snapshot_date, rank
    """,
    "tag_engagement": """
        WITH tagged AS (
            SELECT DISTINCT snapshot_date, post_id, unnest(tags) AS tag, views, likes, dislikes FROM posts
        ), commented AS (
            SELECT snapshot_date, post_id, count(*) AS comments FROM comments GROUP BY ALL
        )
        SELECT t.snapshot_date, tag, count(*) AS posts, coalesce(sum(views), 0) AS views, coalesce(sum(likes), 0) AS likes,
               coalesce(sum(dislikes), 0) AS dislikes, coalesce(sum(c.comments), 0) AS comments
        FROM tagged t LEFT JOIN commented c USING (snapshot_date, post_id)
        GROUP BY t.snapshot_date, tag
        ORDER BY t.snapshot_date, views DESC, tag
    """,
}

# Purchase analytics: revenue is what buyers paid (selling_price - discount), margin what the shop kept.
_PURCHASE_SQL = {
    # One row per (day, dimension, value): the event's own columns, and the buyer's profile (the
    # profile dimensions of a user without one are null).
    "purchase_breakdown": f"""
        WITH events AS (
            SELECT e.event_date, e.session_id, e.user_id, e.revenue, e.margin,
                   {", ".join(f"e.{d}" for d in PURCHASE_DIMENSIONS[:-3])}, p.age_band, p.occupation, p.city
            FROM purchase_events e LEFT JOIN dim_user_profiles p USING (user_id)
        )
        SELECT event_date, dimension, value, count(*) AS purchases, count(DISTINCT session_id) AS sessions,
               count(DISTINCT user_id) AS users, sum(revenue) AS revenue, sum(margin) AS margin
        FROM events UNPIVOT INCLUDE NULLS (value FOR dimension IN ({", ".join(PURCHASE_DIMENSIONS)}))
        GROUP BY event_date, dimension, value
        ORDER BY event_date, dimension, revenue DESC, value NULLS LAST
    """,
    "purchase_sessions_daily": """
        SELECT d.day AS event_date, count(e.session_id) AS purchases, count(DISTINCT e.session_id) AS sessions,
               count(DISTINCT e.user_id) AS users,
               coalesce(count(e.session_id) / nullif(count(DISTINCT e.session_id), 0), 0) AS purchases_per_session,
               coalesce(sum(e.revenue), 0) AS revenue, coalesce(sum(e.margin), 0) AS margin,
               coalesce(CAST(sum(e.revenue) / nullif(count(e.session_id), 0) AS DECIMAL(18,2)), 0) AS average_purchase_value
        FROM days d LEFT JOIN purchase_events e ON e.event_date = d.day
        GROUP BY d.day ORDER BY d.day
    """,
}


@functools.cache
def columns_read_by(name: str) -> dict[str, list[str]]:
    """The lake tables the query of analytics table `name` reads, each with the columns it reads:
    the inputs a build reads (a query decodes only these columns of a day's files)."""
    return columns_read({**_SQL, **_ENGAGEMENT_SQL, **_PURCHASE_SQL}[name], LAKE_TABLES)


def build_engagement_analytics(name: str, inputs: Mapping[str, pa.Table | duck.ParquetFiles]) -> pa.Table:
    """The engagement analytics table `name` from the days' product_reviews, posts, comments and
    order_lines (each table of `inputs`, by name)."""
    return duck.query(_ENGAGEMENT_SQL[name], **inputs).cast(ENGAGEMENT_ANALYTICS[name])


def build_purchase_analytics(name: str, purchase_events: pa.Table | duck.ParquetFiles, dim_user_profiles: pa.Table,
                             days: list[date]) -> pa.Table:
    """The purchase analytics table `name` for `days`, from their purchase events and the profiles."""
    return _query(_PURCHASE_SQL[name], PURCHASE_ANALYTICS[name], days,
                  purchase_events=purchase_events, dim_user_profiles=dim_user_profiles)
