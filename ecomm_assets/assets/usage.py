"""What running the lake costs: the usage every asset recorded on its materializations (core/usage.py),
the Athena bytes of each sql/ query, priced for a month (core/costs.py)."""

from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pyarrow as pa

from ecomm_assets.assets import analytics, engagement, purchases, sources
from ecomm_assets.assets import catalog as catalog_assets
from ecomm_assets.assets import lake as lake_assets
from ecomm_assets.assets.analytics import dashboard
from ecomm_assets.assets.catalog import catalog
from ecomm_assets.assets.metadata import column_schema, with_usage
from ecomm_assets.automation import landing_files_sensor
from ecomm_assets.core.catalog import CatalogTable
from ecomm_assets.core.costs import DAYS_PER_MONTH, markdown, monthly_estimate, total
from ecomm_assets.core.layout import (
    FEEDS,
    PART_FILE,
    PROCESSED,
    partition_day,
    partition_dir,
    table_dir,
)
from ecomm_assets.core.scans import FooterSizes, scanned_bytes
from ecomm_assets.core.schemas import LAKE_TABLES, UNPARTITIONED_TABLES, USAGE_TABLES
from ecomm_assets.core.usage import PREFIX, StepUsage
from ecomm_assets.partitions import BACKFILL_POLICY, DAILY_PARTITIONS
from ecomm_assets.resources import (
    LakeResource,
    OrderSourceResource,
    PricingResource,
    SqlCatalogResource,
)
from ecomm_assets.settings import SETTINGS, Switch

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
MEASURED_MATERIALIZATIONS = 30  # the newest materializations of each asset that a day's figures come from
SECONDS_PER_DAY = 24 * 3600
# Every asset that records usage (assets/metadata.py: with_usage; each feed's ingest, on its landed-files table).
MEASURED_ASSETS = sorted([*(dg.AssetKey(feed.landed_files_table) for feed in FEEDS), *(
    key for assets in dg.load_assets_from_modules([sources, lake_assets, engagement, purchases, analytics, catalog_assets])
    for key in assets.keys)])


def per_day_figures(instance: dg.DagsterInstance, assets: list[dg.AssetKey]) -> dict[str, tuple[dict[str, float], int]]:
    """Each asset's figures for one day, (figures, days measured), from its newest materializations
    that carry usage: their sum over the days they cover (a range run's figures, for all its days,
    are on its newest day's materialization). An unpartitioned asset
    (the dashboard, the ingest's landed_files) covers no day of data: its figures are summed over
    the UTC days its materializations happened on."""
    measured = {}
    for key in assets:
        records = instance.fetch_materializations(key, limit=MEASURED_MATERIALIZATIONS).records
        steps = {
            record.storage_id: (step, datetime.fromtimestamp(record.timestamp, UTC).date()) for record in records
            if (step := StepUsage.from_metadata(key.to_user_string(), {
                name: entry.value for name, entry in record.asset_materialization.metadata.items()
                if isinstance(entry.value, int | float)
            }))
        }
        if not steps:
            continue
        sums = sum((Counter(step.figures) for step, _ in steps.values()), Counter())
        days = sum(step.days for step, _ in steps.values())
        divisor = days or len({day for _, day in steps.values()})
        measured[key.to_user_string()] = ({figure: value / divisor for figure, value in sums.items()}, divisor)
    return measured


def query_scans(context: dg.AssetExecutionContext, store, tables: Mapping[str, pa.Schema]) -> tuple[dict[str, float], int]:
    """Each sql/ query's Athena bytes per day of data (its bytes over the whole lake / the days its
    tables hold), and the days the lake holds. A query of a table the lake does not hold yet (the
    usage tables, before their first estimate) is left out, with a warning."""
    listed = {name: store.list_files(table_dir(name), recursive=True) for name in tables}
    days = len({partition_day(f.path) for files in listed.values() for f in files} - {None})
    if not SQL_DIR.is_dir():
        context.log.warning(f"no {SQL_DIR}: the estimate has no Athena lines (run from a clone of the project)")
    if not days or not SQL_DIR.is_dir():
        return {}, days
    queries = {path.name: path.read_text() for path in sorted(SQL_DIR.glob("*.sql"))}
    parquet = {name: found for name, files in listed.items() if (found := [f for f in files if f.path.endswith(".parquet")])}
    footers = FooterSizes(store, [f for found in parquet.values() for f in found])
    scans = {}
    paths = {name: [f.path for f in found] for name, found in parquet.items()}
    measured = scanned_bytes(queries, store, paths, tables, UNPARTITIONED_TABLES, footers)
    footers.save()
    for name, scanned in measured.items():
        if isinstance(scanned, str):
            context.log.warning(f"sql/{name} left out of the estimate: {scanned}")
        else:
            read, _, query_days = scanned
            # Per day of the data it reads (a query of an unpartitioned table alone scans it whole each run).
            scans[name] = read / (query_days or DAYS_PER_MONTH)
    return scans, days


@dg.asset(
    group_name="usage",
    owners=["team:data-platform"],
    kinds={"parquet", "duckdb", "athena"},
    # Not partitioned; it runs in a range's single run, after the catalog and the dashboard.
    backfill_policy=BACKFILL_POLICY,
    deps=[catalog, dashboard],
    metadata={"dagster/column_schema": column_schema(USAGE_TABLES["usage_estimate"])},
    description="What running the lake costs on AWS: every asset's recorded usage for one day (objects and "
    "bytes written and read per area, S3 requests by class, Glue calls), the Athena bytes each sql/ query scans "
    "after partition and column pruning, and a monthly estimate priced with a dated price table "
    "(ECOMM_PRICE_TABLE). Tables usage_by_asset and usage_estimate (processed/<table>/dt=<day estimated>/), "
    "registered in the SQL catalog.",
)
@with_usage
def usage(context: dg.AssetExecutionContext, lake: LakeResource, sql_catalog: SqlCatalogResource,
          pricing: PricingResource, order_source: OrderSourceResource) -> dg.MaterializeResult:
    store = lake.store()
    today = datetime.now(UTC).date()
    measured = per_day_figures(context.instance, MEASURED_ASSETS)
    if not measured:
        raise dg.Failure("no materialization records usage yet: materialize a day first")
    per_day = sum((Counter(figures) for figures, _ in measured.values()), Counter())
    scans, days_of_data = query_scans(context, store, {**LAKE_TABLES, **UNPARTITIONED_TABLES, **USAGE_TABLES})
    prices = pricing.prices()
    # The sensor lists every feed's landing folder on each tick.
    polls = (len(FEEDS) * SECONDS_PER_DAY / landing_files_sensor.minimum_interval_seconds
             if SETTINGS.landing_sensor is Switch.ON else 0)
    lines = monthly_estimate(per_day, prices, query_scans=scans, queries_per_day=pricing.athena_queries_per_day,
                             listings_per_day=polls)
    by_asset = pa.Table.from_pylist(
        [
            {"estimated_on": today, "asset": asset, "figure": figure.removeprefix(f"{PREFIX}/"), "per_day": value,
             "days_measured": days}
            for asset, (figures, days) in sorted(measured.items()) for figure, value in sorted(figures.items())
        ],
        USAGE_TABLES["usage_by_asset"],
    )
    estimate = pa.Table.from_pylist(
        [{**vars(line), "estimated_on": today, "prices_as_of": prices.as_of, "orders_per_day": order_source.orders_per_day}
         for line in lines],
        USAGE_TABLES["usage_estimate"],
    ).select(USAGE_TABLES["usage_estimate"].names)
    for name, table in (("usage_by_asset", by_asset), ("usage_estimate", estimate)):
        store.replace_partition(partition_dir(PROCESSED, name, today), {PART_FILE: table})
    registered = sql_catalog.catalog(projection_start=DAILY_PARTITIONS.start.date()).sync(
        [CatalogTable(name, schema, store.full_uri(table_dir(name))) for name, schema in USAGE_TABLES.items()], [today]
    )
    return dg.MaterializeResult(
        metadata={
            "monthly_usd": round(total(lines), 4),
            "estimate": dg.MetadataValue.md(markdown(lines, prices, f"{order_source.orders_per_day:,} orders a day")),
            "prices": dg.MetadataValue.json(prices.as_dict()),
            "query_bytes_per_day_of_data": dg.MetadataValue.json({name: round(b) for name, b in scans.items()}),
            "days_of_data": days_of_data,
            "assets_measured": len(measured),
            "tables_created": dg.MetadataValue.json(registered.tables_created),
            "path": dg.MetadataValue.path(store.full_uri(table_dir("usage_estimate"))),
        }
    )
