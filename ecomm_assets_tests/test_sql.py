"""Every query in sql/ runs on the DuckDB catalog of a generated lake, and its numbers match an
independent computation with pyarrow straight from the Parquet files."""

from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from ecomm_assets_tests.conftest import make_definitions, materialize_day

SQL_DIR = Path(__file__).resolve().parents[1] / "sql"
DAYS = ["2024-01-14", "2024-01-15", "2024-01-16"]


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    lake_dir = tmp_path_factory.mktemp("sql") / "lake"
    defs = make_definitions(lake_dir)
    with dg.DagsterInstance.ephemeral() as instance:
        for day in DAYS:
            assert materialize_day(defs, day, instance).success
    return lake_dir


def run_sql(lake_dir, name):
    with duckdb.connect(str(lake_dir.parent / "catalog.duckdb"), read_only=True) as con:
        relation = con.sql((SQL_DIR / name).read_text())
        return [dict(zip(relation.columns, row)) for row in relation.fetchall()]


def table(lake_dir, name):
    return ds.dataset(lake_dir / "processed" / name, format="parquet", partitioning="hive").to_table()


def grouped(lines, key, aggregations):
    result = lines.group_by(key).aggregate(aggregations).to_pylist()
    return {row[key]: row for row in result}


def cents(value):
    return Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def test_every_sql_file_is_checked():
    # The purchase log's queries are checked on a purchase lake: assets/test_purchase_assets.py.
    assert sorted(p.name for p in SQL_DIR.glob("*.sql")) == sorted(
        ["total_sales_by_category.sql", "top_customers_by_revenue.sql", "product_performance.sql", "daily_order_trends.sql",
         "rating_distribution.sql", "rating_vs_sales.sql", "most_engaged_users.sql",
         "tag_engagement.sql", "purchase_revenue_by_dimension.sql", "purchase_sessions.sql", "revenue_by_user_segment.sql",
         # on the usage asset's tables: test_usage.py
         "monthly_cost_by_service.sql", "bytes_written_by_asset.sql"]
    )


def test_total_sales_by_category(lake):
    expected = grouped(table(lake, "order_lines"), "category",
                       [("order_id", "count_distinct"), ("quantity", "sum"), ("line_total", "sum")])
    rows = run_sql(lake, "total_sales_by_category.sql")
    assert {r["category"]: (r["orders"], r["units"], r["revenue"]) for r in rows} == {
        c: (e["order_id_count_distinct"], e["quantity_sum"], e["line_total_sum"]) for c, e in expected.items()
    }
    assert [r["revenue"] for r in rows] == sorted((r["revenue"] for r in rows), reverse=True)


def test_top_customers_by_revenue(lake):
    expected = grouped(table(lake, "order_lines"), "customer_id", [("line_total", "sum"), ("order_id", "count_distinct")])
    ranking = sorted(expected.values(), key=lambda e: (-e["line_total_sum"], e["customer_id"]))[:10]
    rows = run_sql(lake, "top_customers_by_revenue.sql")
    assert [(r["customer_id"], r["orders"], r["revenue"]) for r in rows] == [
        (e["customer_id"], e["order_id_count_distinct"], e["line_total_sum"]) for e in ranking
    ]


def test_product_performance(lake):
    expected = grouped(table(lake, "order_lines"), "product_id", [("quantity", "sum"), ("line_total", "sum")])
    rows = run_sql(lake, "product_performance.sql")
    assert len(rows) == len(expected)
    for row in rows:
        e = expected[row["product_id"]]
        assert (row["units"], row["revenue"]) == (e["quantity_sum"], e["line_total_sum"])
        assert row["average_unit_price"] == cents(e["line_total_sum"] / e["quantity_sum"])


def test_daily_order_trends(lake):
    orders = table(lake, "orders")
    rows = run_sql(lake, "daily_order_trends.sql")
    assert [str(r["dt"]) for r in rows] == DAYS
    for row in rows:
        day = orders.filter(pc.equal(orders["order_date"], row["dt"]))
        revenue = pc.sum(day["items_total"]).as_py()
        assert (row["orders"], row["units"], row["revenue"]) == (day.num_rows, pc.sum(day["units"]).as_py(), revenue)
        assert row["average_order_value"] == cents(revenue / day.num_rows)
        assert row["orders_not_reconciling"] == pc.sum(pc.invert(day["reconciles"]).cast("int64")).as_py()


def test_rating_distribution(lake):
    reviews = table(lake, "product_reviews")
    expected = {}
    for level, keys in (("category", ["category"]), ("product", ["category", "product_id"])):
        by_key = reviews.group_by(keys).aggregate([("rating", "list")]).to_pylist()
        for row in by_key:
            ratings = row["rating_list"]
            expected[(level, row["category"], row.get("product_id"))] = (
                len(ratings), [ratings.count(n) for n in range(1, 6)], round(sum(ratings) / len(ratings), 2))
    rows = run_sql(lake, "rating_distribution.sql")
    assert sum(r["reviews"] for r in rows if r["level"] == "category") == reviews.num_rows > 0
    assert {(r["level"], r["category"], r["product_id"]): (r["reviews"], [r[f"rating_{n}"] for n in range(1, 6)],
                                                           r["average_rating"]) for r in rows} == expected
    assert len(rows) == len(expected)


def test_rating_vs_sales(lake):
    reviews = grouped(table(lake, "product_reviews"), "product_id", [("rating", "mean"), ("rating", "count")])
    sales = grouped(table(lake, "order_lines"), "product_id", [("quantity", "sum"), ("line_total", "sum")])
    rows = {r["product_id"]: r for r in run_sql(lake, "rating_vs_sales.sql")}
    assert rows.keys() == reviews.keys() | sales.keys()
    for product_id, row in rows.items():
        rated, sold = reviews.get(product_id), sales.get(product_id)
        assert row["reviews"] == (rated["rating_count"] if rated else 0)
        assert row["average_rating"] == (round(rated["rating_mean"], 2) if rated else None)
        assert (row["units"], row["revenue"]) == ((sold["quantity_sum"], sold["line_total_sum"]) if sold else (0, 0))


def test_most_engaged_users(lake):
    posts, comments = table(lake, "posts").to_pylist(), table(lake, "comments").to_pylist()
    users: dict[str, list[int]] = {}
    for post in posts:
        figures = users.setdefault(post["user_id"], [0, 0, 0, 0])
        figures[0] += 1
        figures[2] += post["likes"] or 0
        figures[3] += post["views"] or 0
    for comment in comments:
        figures = users.setdefault(comment["user_id"], [0, 0, 0, 0])
        figures[1] += 1
        figures[2] += comment["likes"] or 0
    ranking = sorted(users.items(), key=lambda kv: (-(kv[1][0] + kv[1][1] + kv[1][2]), kv[0]))[:10]
    rows = run_sql(lake, "most_engaged_users.sql")
    assert [(r["user_id"], [r["posts"], r["comments"], r["likes_received"], r["views_received"]]) for r in rows] == ranking


def test_tag_engagement(lake):
    tags: dict[str, list[int]] = {}
    for post in table(lake, "posts").to_pylist():
        for tag in post["tags"]:
            figures = tags.setdefault(tag, [0, 0, 0, 0])
            for n, value in enumerate((1, post["views"], post["likes"], post["dislikes"])):
                figures[n] += value
    rows = run_sql(lake, "tag_engagement.sql")
    assert {r["tag"]: [r["posts"], r["views"], r["likes"], r["dislikes"]] for r in rows} == tags
    assert [r["views"] for r in rows] == sorted((r["views"] for r in rows), reverse=True)
