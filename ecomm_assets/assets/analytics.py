"""Analytics tables (DuckDB over the lake, one Parquet partition per day) and the dashboard."""

from datetime import timedelta

import dagster as dg

from ecomm_assets.assets.lake import (
    BACKFILL,
    read_days,
    read_table,
    run_days,
    split_by_day,
    write_days,
    writing_days,
)
from ecomm_assets.core.analytics import ANALYTICS, build_analytics
from ecomm_assets.core.dashboard import data_uri, html_report, render_charts
from ecomm_assets.core.storage import partition_dir
from ecomm_assets.resources import LakeResource

DASHBOARD_DAYS = 30

DESCRIPTIONS = {
    "sales_by_category": "Orders, units and revenue per category, with each category's share of the day's revenue.",
    "product_performance": "Per product: orders, units, revenue and average unit price.",
    "top_customers": "The day's top customers by revenue, ranked.",
    "daily_order_summary": "Orders, customers, units, revenue, average order value, and the share of "
    "orders whose reported total does not match their lines.",
}


def _analytics_asset(name: str, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        name=name,
        partitions_def=partitions,
        backfill_policy=BACKFILL,
        group_name="analytics",
        owners=["team:analytics"],
        kinds={"duckdb", "parquet"},
        deps=["order_lines", "orders"],
        description=DESCRIPTIONS[name] + f" (processed/{name}/dt=YYYY-MM-DD/)",
    )
    def analytics(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        days = run_days(context)
        store = lake.store()
        with writing_days(context, store, days, {"processed/order_lines": days, "processed/orders": days}) as ensure_inputs_unchanged:
            table = build_analytics(name, read_days(store, "order_lines", days), read_days(store, "orders", days), days)
            ensure_inputs_unchanged()
            metadata = write_days(store, name, ANALYTICS[name], split_by_day(table, "order_date", days))
        return dg.MaterializeResult(metadata=metadata)

    return analytics


def build_analytics_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        partitions_def=partitions,
        backfill_policy=BACKFILL,
        group_name="analytics",
        owners=["team:analytics"],
        kinds={"matplotlib", "html"},
        deps=list(ANALYTICS),
        description=f"Charts of revenue per day (trailing {DASHBOARD_DAYS} days), revenue by category "
        "and top products, shown here and written with a self-contained HTML report to "
        "reports/dashboard/dt=YYYY-MM-DD/. A backfill renders the report of its last day only.",
    )
    def dashboard(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        day = run_days(context)[-1]
        store = lake.store()
        trailing = [day - timedelta(days=n) for n in range(DASHBOARD_DAYS - 1, -1, -1)]
        reads = {"processed/daily_order_summary": trailing, "processed/sales_by_category": [day],
                 "processed/product_performance": [day]}
        with writing_days(context, store, [day], reads) as ensure_inputs_unchanged:
            daily = read_days(store, "daily_order_summary", trailing)
            categories = read_table(store, "sales_by_category", day)
            products = read_table(store, "product_performance", day)
            charts = render_charts(daily, categories, products)
            folder = partition_dir("reports", "dashboard", day)
            report = html_report(day, charts, daily, categories, products).encode()
            ensure_inputs_unchanged()
            store.replace_partition(folder, {**charts, "dashboard.html": report})
        markdown = "\n\n".join(f"![{name}]({data_uri(png)})" for name, png in charts.items())
        return dg.MaterializeResult(
            metadata={
                "charts": dg.MetadataValue.md(markdown),
                "report": dg.MetadataValue.path(store.full_uri(f"{folder}/dashboard.html")),
                "days_charted": daily.num_rows,
            }
        )

    return [*(_analytics_asset(name, partitions) for name in ANALYTICS), dashboard]
