"""Lake tables: typed, validated, one compact Parquet file per table and UTC day."""

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path

import dagster as dg

from ecomm_assets.assets.days import (
    BATCH_INPUT_BYTES,
    Derivation,
    day_batches,
    day_files,
    day_metadata,
    days_as_files,
    derived_build,
    run_days,
    split_by_day,
    write_days,
    write_days_rejects,
    writing_days,
)
from ecomm_assets.assets.landing import FORMATS, raw_file_age
from ecomm_assets.assets.metadata import column_schema, reasons_table, with_usage
from ecomm_assets.assets.sources import (
    orders_raw,
    read_collections,
    snapshots,
)
from ecomm_assets.core.dashboard import headline_figures
from ecomm_assets.core.flatten import (
    DayCounts,
    FlattenResult,
    RawOrderFile,
    flatten_orders,
)
from ecomm_assets.core.layout import (
    ORDERS_FEED,
    Feed,
    collection_dir,
    quarantine_path,
    raw_orders_root,
    source_label,
    table_dir,
)
from ecomm_assets.core.schemas import (
    CONTRACTS,
    DIM_CUSTOMERS,
    DIM_PRODUCTS,
    ORDER_LINES,
    ORDERS,
)
from ecomm_assets.core.storage import LakeFile, LakeStore, input_read
from ecomm_assets.core.tables import (
    build_dim_customers,
    build_dim_products,
    write_orders,
)
from ecomm_assets.partitions import (
    BACKFILL_POLICY,
    DAILY_BACKFILL_POLICY,
    DAILY_FRESHNESS,
    DAILY_PARTITIONS,
)
from ecomm_assets.resources import LakeResource

# Derived lake tables: kept per day in the lake, not partitioned by Dagster (see README, "Which assets
# are partitioned"); a materialization builds every day whose inputs are newer than it.
DERIVED_LAKE = {"backfill_policy": BACKFILL_POLICY, "freshness_policy": DAILY_FRESHNESS,
                "group_name": "lake", "owners": ["team:data-platform"], "kinds": {"duckdb", "parquet"}}
LAKE = DERIVED_LAKE | {"partitions_def": DAILY_PARTITIONS, "backfill_policy": DAILY_BACKFILL_POLICY}


def raw_day_files(store: LakeStore, day: date | str, feed: Feed = ORDERS_FEED) -> list[LakeFile]:
    """A feed's raw files of a day, oldest first: the order in which versions of a record win.
    A landed file's age is when it landed (in its name), not when an ingest run wrote it."""
    return _oldest_first(store.list_files(feed.raw_dir(day)))


def raw_days_files(store: LakeStore, days: list[date], feed: Feed = ORDERS_FEED) -> dict[date, list[LakeFile]]:
    """A feed's raw files of each of `days`, oldest first (raw_day_files), found with one listing of
    the feed's folder rather than one per day (a single day: of its own folder)."""
    if len(days) == 1:
        return {days[0]: raw_day_files(store, days[0], feed)}
    folders = {feed.raw_dir(day): day for day in days}
    files: dict[date, list[LakeFile]] = {day: [] for day in days}
    for f in store.list_files(feed.raw_root, recursive=True):
        if (folder := f.path.rpartition("/")[0]) in folders:  # the day's folder itself, not one below it
            files[folders[folder]].append(f)
    return {day: _oldest_first(day_files) for day, day_files in files.items()}


def _oldest_first(files: list[LakeFile]) -> list[LakeFile]:
    return sorted(files, key=lambda f: (raw_file_age(f), f.name))


def raw_files_read(files: Sequence[LakeFile], local: Mapping[str, str], feed: Feed) -> dict[str, list[dict]]:
    """The raw files a build read, as its counts name them (storage.input_read, with the feed's
    recount): a file delivered or generated again since is the next build's, one landed since
    counts in neither."""
    entries = []
    for f in files:
        with open(local[f.path], "rb") as source:
            entries.append({"path": f.path} | input_read(source, FORMATS[feed.name].count_records))
    return {"files": entries}


def _write_order_lines(context: dg.AssetExecutionContext, store: LakeStore, raw: dict[date, list[LakeFile]],
                       local: Mapping[str, str], result: FlattenResult) -> dict:
    """Each day's quarantine, counts (naming the raw files read) and order lines (a day without
    input gets an empty partition)."""
    days = list(raw)
    write_days_rejects(store, "order_lines", {day: result.counts.get(day, DayCounts()).as_dict()
                                              | raw_files_read(raw[day], local, ORDERS_FEED) for day in days},
                       result.quarantined)
    return write_days(context, store, "order_lines", ORDER_LINES,
                      {day: Path(result.line_files[day]) if day in result.line_files else ORDER_LINES.empty_table()
                       for day in days})


@dg.asset(
    **LAKE,
    deps=[orders_raw],
    metadata={"dagster/column_schema": column_schema(ORDER_LINES)},
    description="One row per product line of every order of the day: flattened, typed with an "
    "explicit Arrow schema (money as decimal(18,2)), validated and de-duplicated (the newest "
    "version of an order wins). Rejected records go to quarantine/order_lines/ with a reason.",
)
@with_usage
def order_lines(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    days = run_days(context)
    store = lake.store()
    with writing_days(context, store, days, {raw_orders_root(): days}) as ensure_inputs_unchanged:
        raw = raw_days_files(store, days)
        for day in (d for d, files in raw.items() if not files):
            context.log.warning(f"no raw order files for {day}: writing an empty partition")
        listed = [(day, f) for day, files in raw.items() for f in files]
        with store.local_paths([f.path for _, f in listed]) as paths, store.staging_dir() as staging:
            result = flatten_orders(
                [RawOrderFile(path, day, source_label(f.name)) for path, (day, f) in zip(paths, listed)], staging
            )
            ensure_inputs_unchanged()
            metadata = _write_order_lines(context, store, raw, {f.path: path for (_, f), path in zip(listed, paths)}, result)
    totals = [result.counts.get(day, DayCounts()) for day in days]
    reasons = sum((c.reasons for c in totals), Counter())
    metadata.update(
        {
            "orders_loaded": sum(c.orders_loaded for c in totals),
            "records_read": sum(c.records_read for c in totals),
            "records_quarantined": sum(c.quarantined for c in totals),
            "duplicates_dropped": sum(c.duplicates_dropped for c in totals),
            "conservation_holds": all(c.conserved for c in totals),
            "top_reject_reasons": reasons_table(dict(reasons.most_common(10))),
            "raw_files": sum(len(files) for files in raw.values()),
            "read_mode": dg.MetadataValue.json(dict(Counter(result.read_modes.get(day, "no input") for day in days))),
        }
    )
    quarantined_days = [day for day, c in zip(days, totals) if c.quarantined]
    if quarantined_days:
        metadata["quarantine_path"] = dg.MetadataValue.path(store.full_uri(quarantine_path("order_lines", quarantined_days[0])))
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    **LAKE,
    deps=[order_lines],
    metadata={"dagster/column_schema": column_schema(ORDERS)},
    description="One row per order: items, units, the sum of its lines, the total the source "
    "reported, and whether the two reconcile (real feeds add shipping and tax).",
)
@with_usage
def orders(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    days = run_days(context)
    store = lake.store()
    with writing_days(context, store, days, {table_dir("order_lines"): days}) as ensure_inputs_unchanged:
        lines_files = day_files(store, "order_lines", days)
        with store.local_paths(list(lines_files.values())) as paths, store.staging_dir() as staging:
            local = dict(zip(lines_files, paths))
            written = {}
            # A query per batch of bounded input: one over the range would hold every order of it.
            for batch in day_batches(days, {day: os.path.getsize(path) for day, path in local.items()}, BATCH_INPUT_BYTES):
                written |= write_orders({day: local[day] for day in batch}, staging)
            ensure_inputs_unchanged()
            metadata = write_days(context, store, "orders", ORDERS, {day: out for day, (out, _) in written.items()})
    day_metadata(context, headline_figures({day: totals for day, (_, totals) in written.items()}))
    metadata["orders_not_reconciling"] = sum(totals.not_reconciling for _, totals in written.values())
    return dg.MaterializeResult(metadata=metadata)


def _dimension(context: dg.AssetExecutionContext, lake: LakeResource, name: str, collection: str, builder) -> dg.MaterializeResult:
    """A dimension's stale days: each day's snapshot of its collection, plus ids seen only in that day's orders."""
    store = lake.store()
    derivation = Derivation(name, (table_dir("order_lines"),), (collection_dir(collection),))
    with derived_build(context, store, derivation, CONTRACTS[name]) as build:
        for days in build.batches():
            # which days hold a snapshot: the build's own listing says (a batch lists none of its own)
            snapshots = read_collections(lake, collection, days, held=build.stale.held[collection_dir(collection)])
            missing = [str(day) for day, records in snapshots.items() if records is None]
            if missing:
                context.log.warning(f"no {collection} snapshot for {', '.join(missing)}: rows come from orders only")
            with days_as_files(store, "order_lines", days) as lines:
                table = builder({day: records or [] for day, records in snapshots.items()}, lines)
            build.write(split_by_day(table, "snapshot_date", days))
    return dg.MaterializeResult(metadata=build.metadata())


@dg.asset(
    **DERIVED_LAKE,
    deps=[snapshots, order_lines],
    metadata={"dagster/column_schema": column_schema(DIM_PRODUCTS)},
    description="Products of the day's products snapshot, plus products seen only in orders (origin 'orders').",
)
@with_usage
def dim_products(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    return _dimension(context, lake, "dim_products", "products", build_dim_products)


@dg.asset(
    **DERIVED_LAKE,
    deps=[snapshots, order_lines],
    metadata={"dagster/column_schema": column_schema(DIM_CUSTOMERS)},
    description="Customers (DummyJSON users) with address, city, state and country flattened, plus "
    "customers seen only in orders (origin 'orders').",
)
@with_usage
def dim_customers(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    return _dimension(context, lake, "dim_customers", "users", build_dim_customers)

