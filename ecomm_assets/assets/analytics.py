"""Analytics tables (DuckDB over the lake, one Parquet partition per day) and the dashboard."""

import contextlib
from datetime import date, timedelta

import dagster as dg

from ecomm_assets.assets.days import (
    Derivation,
    days_as_files,
    derived_build,
    read_days_present,
    read_table,
    split_by_day,
)
from ecomm_assets.assets.lake import order_lines, orders
from ecomm_assets.assets.metadata import column_schema, with_usage
from ecomm_assets.assets.purchases import dim_user_profiles, purchase_events
from ecomm_assets.core.analytics import (
    build_analytics,
    build_purchase_analytics,
    columns_read_by,
)
from ecomm_assets.core.dashboard import html_report, render_charts
from ecomm_assets.core.layout import (
    DASHBOARD_DIR,
    PART_FILE,
    partition_day,
    table_dir,
    unpartitioned_table_path,
)
from ecomm_assets.core.schemas import ANALYTICS, DIM_USER_PROFILES, PURCHASE_ANALYTICS
from ecomm_assets.core.storage import LakeStore
from ecomm_assets.partitions import BACKFILL_POLICY, DAILY_FRESHNESS
from ecomm_assets.resources import LakeResource

DASHBOARD_DAYS = 30
DASHBOARD_INPUTS = ("daily_order_summary", "sales_by_category", "product_performance")
# Derived tables: the lake keeps them per day, Dagster does not partition them (see README, "Which
# assets are partitioned"); a materialization builds every day whose inputs are newer than it.
ANALYTICS_ASSET = {"backfill_policy": BACKFILL_POLICY, "freshness_policy": DAILY_FRESHNESS,
                       "group_name": "analytics",
                       "owners": ["team:analytics"], "kinds": {"duckdb", "parquet"}, "deps": [order_lines, orders]}


ORDER_ANALYTICS_INPUTS = (table_dir("order_lines"), table_dir("orders"))


def _analytics(context: dg.AssetExecutionContext, lake: LakeResource, name: str) -> dict:
    """Builds the stale days of an analytics table; its metadata."""
    store = lake.store()
    with derived_build(context, store, Derivation(name, ORDER_ANALYTICS_INPUTS), ANALYTICS[name]) as build:
        for days in build.batches():
            with contextlib.ExitStack() as stack:
                inputs = {table: stack.enter_context(days_as_files(store, table, days)) for table in columns_read_by(name)}
                table = build_analytics(name, inputs, days)
            build.write(split_by_day(table, "order_date", days))
    return build.metadata()


def _analytics_description(text: str, name: str) -> str:
    return f"{text} ({table_dir(name)}/dt=YYYY-MM-DD/)"


@dg.asset(
    **ANALYTICS_ASSET,
    metadata={"dagster/column_schema": column_schema(ANALYTICS["sales_by_category"])},
    description=_analytics_description(
        "Orders, units and revenue per category, with each category's share of the day's revenue.", "sales_by_category"
    ),
)
@with_usage
def sales_by_category(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=_analytics(context, lake, "sales_by_category"))


@dg.asset(
    **ANALYTICS_ASSET,
    metadata={"dagster/column_schema": column_schema(ANALYTICS["product_performance"])},
    description=_analytics_description(
        "Per product: orders, units, revenue and average unit price.", "product_performance"
    ),
)
@with_usage
def product_performance(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=_analytics(context, lake, "product_performance"))


@dg.asset(
    **ANALYTICS_ASSET,
    metadata={"dagster/column_schema": column_schema(ANALYTICS["top_customers"])},
    description=_analytics_description("The day's top customers by revenue, ranked.", "top_customers"),
)
@with_usage
def top_customers(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=_analytics(context, lake, "top_customers"))


@dg.asset(
    **ANALYTICS_ASSET,
    metadata={"dagster/column_schema": column_schema(ANALYTICS["daily_order_summary"])},
    description=_analytics_description(
        "Orders, customers, units, revenue, average order value, and the share of orders whose reported "
        "total does not match their lines (the same figures are numbers on each day's materialization of "
        "`orders`, which Dagster plots).",
        "daily_order_summary",
    ),
)
@with_usage
def daily_order_summary(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=_analytics(context, lake, "daily_order_summary"))


PURCHASE_ANALYTICS_ASSET = ANALYTICS_ASSET | {"deps": [purchase_events, dim_user_profiles]}


def _purchase_analytics(context: dg.AssetExecutionContext, lake: LakeResource, name: str) -> dict:
    """Builds the stale days of a purchase analytics table; its metadata."""
    store = lake.store()
    derivation = Derivation(name, (table_dir("purchase_events"),))
    with derived_build(context, store, derivation, PURCHASE_ANALYTICS[name]) as build:
        profiles_path = unpartitioned_table_path("dim_user_profiles")
        if store.exists(profiles_path):
            profiles = store.read_parquet([profiles_path])
        else:
            context.log.warning("no dim_user_profiles yet: the profile dimensions (age band, occupation, city) are null")
            profiles = DIM_USER_PROFILES.empty_table()
        for days in build.batches():
            with days_as_files(store, "purchase_events", days) as events:
                table = build_purchase_analytics(name, events, profiles, days)
            build.write(split_by_day(table, "event_date", days))
    return build.metadata()


@dg.asset(
    **PURCHASE_ANALYTICS_ASSET,
    metadata={"dagster/column_schema": column_schema(PURCHASE_ANALYTICS["purchase_breakdown"])},
    description=_analytics_description(
        "Purchases, sessions, users, revenue and margin of the day by each of category, brand, device type, OS, "
        "browser, referrer and payment method, and by the buyers' age band, occupation and city (from "
        "dim_user_profiles as it was when the day was computed; sql/revenue_by_user_segment.sql joins the "
        "current profiles instead): one row per (dimension, value).",
        "purchase_breakdown",
    ),
)
@with_usage
def purchase_breakdown(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=_purchase_analytics(context, lake, "purchase_breakdown"))


@dg.asset(
    **PURCHASE_ANALYTICS_ASSET,
    metadata={"dagster/column_schema": column_schema(PURCHASE_ANALYTICS["purchase_sessions_daily"])},
    description=_analytics_description(
        "The day's purchases, sessions, purchases per session, users, revenue, margin and average purchase value.",
        "purchase_sessions_daily",
    ),
)
@with_usage
def purchase_sessions_daily(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=_purchase_analytics(context, lake, "purchase_sessions_daily"))


@dg.asset(
    group_name="analytics",
    owners=["team:analytics"],
    kinds={"matplotlib", "html"},
    # Not partitioned, but it runs in a range's single run (the CLI's --partition-range asks every asset for this).
    backfill_policy=BACKFILL_POLICY,
    deps=[sales_by_category, product_performance, top_customers, daily_order_summary],
    description=f"A self-contained HTML report of the {DASHBOARD_DAYS} days up to the newest day the "
    "analytics tables all hold: revenue per day, revenue by category and top products of the newest day, and the daily "
    f"figures ({DASHBOARD_DIR}/dashboard.html). Not partitioned: it describes the lake as it is, and "
    "runs once after the analytics of any day or range.",
)
@with_usage
def dashboard(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    store = lake.store()
    newest = _newest_day(store)
    if newest is None:
        raise dg.Failure(f"no day of the lake has all of {', '.join(DASHBOARD_INPUTS)} yet: materialize a day first")
    trailing = [newest - timedelta(days=n) for n in range(DASHBOARD_DAYS - 1, -1, -1)]
    daily = read_days_present(store, "daily_order_summary", trailing)
    categories = read_table(store, "sales_by_category", newest)
    products = read_table(store, "product_performance", newest)
    charts = render_charts(daily, categories, products)
    report = html_report(newest, charts, daily, categories, products).encode()
    store.replace_partition(DASHBOARD_DIR, {**charts, "dashboard.html": report})
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.path(store.full_uri(f"{DASHBOARD_DIR}/dashboard.html")),
            "newest_day": str(newest),
            "days_charted": daily.num_rows,
            "report_bytes": len(report),
        }
    )


def _newest_day(store: LakeStore) -> date | None:
    """The newest day that every table the report reads holds."""
    held = [
        {partition_day(f.path) for f in store.list_files(table_dir(table), recursive=True) if f.name == PART_FILE}
        for table in DASHBOARD_INPUTS
    ]
    return max(set.intersection(*held) - {None}, default=None)
