"""Partitioned asset checks on every lake table. Blocking checks guard against corrupt data, so
downstream assets never read a partition that failed one; WARN checks flag what needs a look."""


import contextlib
import functools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Self

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from ecomm_assets.assets import analytics, engagement, purchases
from ecomm_assets.assets import lake as lake_assets
from ecomm_assets.assets.days import (
    day_batches,
    days_as_files,
    input_files,
    run_days,
)
from ecomm_assets.assets.landing import FORMATS
from ecomm_assets.assets.metadata import BUILT_DAYS
from ecomm_assets.assets.purchases import raw_profile_files
from ecomm_assets.core import duck, quality
from ecomm_assets.core.engagement import COLLECTION, snapshot_records
from ecomm_assets.core.landing import count_json_lines_in
from ecomm_assets.core.layout import (
    COUNTS_FILE,
    ORDERS_FEED,
    PART_FILE,
    PURCHASES_FEED,
    USER_PROFILES_FEED,
    Feed,
    collection_path,
    counts_path,
    partition_day,
    quarantine_path,
    table_dir,
    table_path,
    unpartitioned_quarantine_path,
    unpartitioned_table_path,
    withdrawn_path,
)
from ecomm_assets.core.schemas import (
    DIM_USER_PROFILES,
    LAKE_TABLES,
    PURCHASE_DIMENSIONS,
)
from ecomm_assets.core.storage import (
    LakeFile,
    LakeStore,
    opened,
    parquet_footer,
    records_as_read,
    records_in,
)
from ecomm_assets.partitions import DAILY_PARTITIONS
from ecomm_assets.resources import LakeResource

TRAILING_DAYS = 7
# Parquet a step's queries read at once (on S3, downloaded to local disk first). The queries run on
# the bounded database, so this bounds the staged files, not memory; each query has a fixed cost, so
# a backfill's batches are few.
BATCH_BYTES = 64 * 2**20
_ASSETS = {key: assets for assets in dg.load_assets_from_modules([lake_assets, engagement, purchases, analytics])
           for key in assets.keys}


@dataclass(frozen=True)
class DayFile:
    """What a day's file says without its rows: its schema and row count."""

    schema: pa.Schema
    rows: int

    @classmethod
    def of(cls, parquet: pq.ParquetFile) -> Self:
        return cls(parquet.schema_arrow, parquet.metadata.num_rows)


def _local_footer(path: str) -> DayFile:
    with pq.ParquetFile(path) as parquet:
        return DayFile.of(parquet)


def _footer(store: LakeStore, rel: str) -> DayFile:
    """A Parquet file's schema and row count from its footer, without the data."""
    return DayFile.of(parquet_footer(store, rel))


def _as_rows(table: str, paths: dict[date, str], schemas: dict[date, pa.Schema],
             columns: Sequence[str]) -> list[tuple[list[date], duck.ParquetFiles]]:
    """Days' files of `table` as the rows a rule queries, `columns` of them, each row's day its
    position (quality.DAY): a batch per schema (quality.same_schema), read as the query goes."""
    return [(days, duck.ParquetFiles([paths[day] for day in days], LAKE_TABLES[table], list(columns), quality.DAY))
            for days in quality.same_schema(schemas)]


@dataclass(frozen=True)
class StepDays:
    """What a checks step's days share: the days, the row counts known (days checked, footers read
    once), raw listings."""

    store: LakeStore
    table: str
    days: list[date]  # every day the step checks
    row_counts: dict[date, int | None]
    raw_listed: dict[str, dict[str, list[LakeFile]]]  # feed -> day folder -> files, shared by the step's days

    def row_count(self, day: date) -> int | None:
        """Rows of a day: known in this step, else from the file's footer (one GET, once per day);
        None without a file."""
        if day not in self.row_counts:
            try:
                self.row_counts[day] = _footer(self.store, table_path(self.table, day)).rows
            except FileNotFoundError:
                self.row_counts[day] = None
        return self.row_counts[day]

    def raw_files(self, feed: Feed, day: date) -> list[LakeFile]:
        """A feed's raw files of a day of the step, from one listing of the feed for all its days
        (not a LIST per day)."""
        if feed.raw_root not in self.raw_listed:
            by_folder: dict[str, list[LakeFile]] = {}
            for file in input_files(self.store, feed.raw_root, self.days):
                by_folder.setdefault(file.path.rpartition("/")[0], []).append(file)
            self.raw_listed[feed.raw_root] = by_folder
        return self.raw_listed[feed.raw_root].get(feed.raw_dir(day), [])


@dataclass(frozen=True)
class Batch:
    """Consecutive days of a table checked together: each day's file (schema, row count), and, when
    a selected check reads rows, each day's file as a local path and the columns read of it."""

    step: StepDays
    files: dict[date, DayFile]
    paths: dict[date, str]
    columns: Sequence[str]

    @property
    def days(self) -> list[date]:
        return list(self.files)

    @functools.cached_property
    def rows(self) -> list[tuple[list[date], duck.ParquetFiles]]:
        """The batch's rows, a query's input per schema (_as_rows)."""
        return _as_rows(self.step.table, self.paths, {day: file.schema for day, file in self.files.items()}, self.columns)

    def evaluate(self, rule: Callable[[quality.Rows, int], list[quality.CheckOutcome]]) -> dict[date, quality.CheckOutcome]:
        """A quality rule's outcome of each day, from its queries over the batch's rows (one set per schema)."""
        return {day: outcome for days, rows in self.rows for day, outcome in zip(days, rule(rows, len(days)))}

    def figures(self, aggregations: dict[str, str]) -> dict[date, dict]:
        """Each day's aggregations of the batch's rows (quality.per_day)."""
        return _figures(self.rows, aggregations)

    def input_figures(self, table: str, columns: Sequence[str], aggregations: dict[str, str]) -> dict[date, dict]:
        """Each day's aggregations of another table's rows of the batch's days (a file per day)."""
        with days_as_files(self.step.store, table, self.days) as files:
            paths = dict(zip(self.days, files.paths))
            schemas = {day: _local_footer(path).schema for day, path in paths.items()}
            return _figures(_as_rows(table, paths, schemas, columns), aggregations)


def _figures(rows: Iterable[tuple[list[date], quality.Rows]], aggregations: dict[str, str]) -> dict[date, dict]:
    """Each day's aggregations of days' rows (quality.per_day)."""
    return {day: figures for days, batch in rows for day, figures in zip(days, quality.per_day(batch, len(days), aggregations))}


Rule = Callable[[Batch], dict[date, quality.CheckOutcome]]


def _schema(batch: Batch) -> dict[date, quality.CheckOutcome]:
    """Each day's file against the contract, compared once per distinct schema."""
    contract, outcomes = LAKE_TABLES[batch.step.table], {}
    by_schema: dict[pa.Schema, quality.CheckOutcome] = {}
    for day, file in batch.files.items():
        if file.schema not in by_schema:
            by_schema[file.schema] = quality.schema_matches(file.schema, contract)
        outcomes[day] = by_schema[file.schema]
    return outcomes


def _quarantined(store: LakeStore, table: str, day: date) -> int:
    return records_in(store, quarantine_path(table, day), count_json_lines_in)


def _raw_records(store: LakeStore, feed: Feed, read: list[dict], listed: Sequence[LakeFile]) -> tuple[int, dict]:
    """Records of the raw files a build read (its counts name them, lake.raw_files_read): a file
    still there as it was read is parsed again here; one rewritten or removed since is the next
    build's, its records as counted when the build read it. The figures say how many of each."""
    present, records, replaced = {f.path for f in listed}, 0, 0
    for entry in read:
        # Read a chunk at a time: a raw day file may be larger than memory.
        with opened(store, entry["path"]) if entry["path"] in present else contextlib.nullcontext() as source:
            counted, same = records_as_read(source, entry, FORMATS[feed.name].count_records)
        records, replaced = records + counted, replaced + (not same)
    return records, {"raw_files_read": len(read), "raw_files_replaced_since_build": replaced,
                     "raw_files_landed_since_build": len(present - {entry["path"] for entry in read})}


def _raw_records_conserved(batch: Batch, feed: Feed, loaded: dict[date, int], loaded_name: str) -> dict[date, quality.CheckOutcome]:
    """Recounts every side independently: records of the raw files the day's build read (_raw_records),
    rows loaded, records in quarantine; only the duplicates come from the run's own counts."""
    step = batch.step
    outcomes = {}
    for day in batch.days:
        counts = json.loads(step.store.read_bytes(counts_path(step.table, day)))
        listed = step.raw_files(feed, day)
        # Counts of an earlier release name no files: the folder as listed, recounted.
        read = counts.get("files") or [{"path": f.path} for f in listed]
        records, files = _raw_records(step.store, feed, read, listed)
        passed, metadata = quality.conservation(records, loaded[day], _quarantined(step.store, step.table, day),
                                                counts["duplicates_dropped"], loaded_name)
        outcomes[day] = passed, metadata | files
    return outcomes


def _order_lines_conservation(lines: Batch) -> dict[date, quality.CheckOutcome]:
    loaded = lines.figures({"orders": "count(DISTINCT order_id)"})
    return _raw_records_conserved(lines, ORDERS_FEED, {day: loaded[day]["orders"] for day in lines.days}, "orders_loaded")


def _engagement_conservation(batch: Batch) -> dict[date, quality.CheckOutcome]:
    """Recounts both sides independently: records of the snapshot the build read (reviews, for
    product_reviews) against the rows of the table and the records in quarantine. A snapshot
    fetched again or removed since the build is the next build's: its records as counted when the
    build read it stand in, and the metadata says so."""
    store, table = batch.step.store, batch.step.table
    outcomes = {}
    for day, file in batch.files.items():
        counts = json.loads(store.read_bytes(counts_path(table, day)))
        with opened(store, collection_path(COLLECTION[table], day)) as snapshot:  # a chunk at a time: a day may be large
            read, same = records_as_read(snapshot, counts.get("snapshot", {}), functools.partial(snapshot_records, table))
        passed, metadata = quality.conservation(read, file.rows, _quarantined(store, table, day), 0, "rows_loaded")
        outcomes[day] = passed, metadata | {"snapshot_replaced_since_build": not same}
    return outcomes


def _ratings_in_range(rows: quality.Rows, days: int) -> list[quality.CheckOutcome]:
    counted = quality.count_true(rows, days, outside="NOT coalesce(rating BETWEEN 1 AND 5, false)")
    return [(day["outside"] == 0, {"ratings_outside_1_to_5": day["outside"], "reviews": day["rows"]}) for day in counted]


def _purchase_events_conservation(events: Batch) -> dict[date, quality.CheckOutcome]:
    return _raw_records_conserved(events, PURCHASES_FEED, {day: file.rows for day, file in events.files.items()},
                                  "events_loaded")


def _part_file_times(store: LakeStore, table: str, days: list[date]) -> dict[date, datetime]:
    """When each day's file of `table` was written, from one listing of the days."""
    return {partition_day(f.path): f.mtime for f in input_files(store, table_dir(table), days) if f.name == PART_FILE}


def _input_newer(batch: Batch, input_table: str) -> dict[date, bool]:
    """Days whose file of `input_table` was written after the batch's table's own: rebuilt by a run
    that took the day between this build and its checks, so the table's day is the next build's. A
    check comparing the two then fails no build for rows it never read (the input's own checks
    judge the input), and its metadata says so."""
    store, days = batch.step.store, batch.days
    inputs, own = _part_file_times(store, input_table, days), _part_file_times(store, batch.step.table, days)
    return {day: inputs[day] > own[day] for day in days}


def _breakdown_adds_up(breakdown: Batch) -> dict[date, quality.CheckOutcome]:
    """Every dimension's rows add up to the day's purchase events: purchases, revenue and margin
    (unless purchase_events is newer: _input_newer)."""
    events = breakdown.input_figures("purchase_events", ["revenue", "margin"],
                                     {"purchases": "count(*)", "revenue": "sum(revenue)", "margin": "sum(margin)"})
    newer = _input_newer(breakdown, "purchase_events")
    sums: dict[date, list[dict]] = {day: [] for day in breakdown.days}
    for days, rows in breakdown.rows:
        for row in duck.query(f"SELECT {quality.DAY}, dimension, sum(purchases)::BIGINT AS purchases, sum(revenue) AS revenue, "
                              f"sum(margin) AS margin FROM rows GROUP BY ALL", rows=rows).to_pylist():
            sums[days[row[quality.DAY]]].append(row)
    outcomes = {}
    for day in breakdown.days:
        totals = {measure: figure or 0 for measure, figure in events[day].items()}
        wrong = {row["dimension"]: {c: row[c] for c in totals} for row in sums[day]
                 if any((row[c] or 0) != totals[c] for c in totals)}
        missing = sorted(set(PURCHASE_DIMENSIONS) - {row["dimension"] for row in sums[day]}) if totals["purchases"] else []
        outcomes[day] = (not wrong and not missing) or newer[day], {
            "day_totals": {k: str(v) for k, v in totals.items()},
            "dimensions_not_adding_up": {d: {k: str(v) for k, v in t.items()} for d, t in wrong.items()},
            "dimensions_missing": missing, "purchase_events_newer_than_build": newer[day]}
    return outcomes


def _orders_match_lines(orders: Batch) -> dict[date, quality.CheckOutcome]:
    """orders against order_lines as they are now (unless order_lines is newer: _input_newer)."""
    newer = _input_newer(orders, "order_lines")
    lines = orders.input_figures("order_lines", ["order_id", "quantity", "line_total"],
                                 {"orders": "count(DISTINCT order_id)", "units": "sum(quantity)::BIGINT", "total": "sum(line_total)"})
    own = orders.figures({"orders": "count(*)", "units": "sum(units)::BIGINT", "total": "sum(items_total)"})
    outcomes = {}
    for day in orders.days:
        line_orders = lines[day]["orders"]
        units_match = own[day]["units"] == lines[day]["units"]
        totals_match = own[day]["total"] == lines[day]["total"]
        passed = (own[day]["orders"] == line_orders and units_match and totals_match) or newer[day]
        outcomes[day] = passed, {"orders": own[day]["orders"], "orders_in_lines": line_orders,
                                 "units_match": units_match, "totals_match": totals_match,
                                 "order_lines_newer_than_build": newer[day]}
    return outcomes


def _row_count(batch: Batch) -> dict[date, quality.CheckOutcome]:
    step = batch.step
    return {day: quality.row_count_normal(file.rows, [n for n in (step.row_count(day - timedelta(days=back))
                                                                 for back in range(1, TRAILING_DAYS + 1)) if n is not None])
            for day, file in batch.files.items()}


@dataclass(frozen=True)
class Check:
    """A check of a table: its rule gives each day of a batch its outcome. `columns` are what it
    reads of each day's rows (a step's files are staged once, and each rule's queries read its columns); a
    check without columns needs only each day's footer (schema, row count)."""

    name: str
    rule: Rule
    description: str
    blocking: bool
    columns: tuple[str, ...] = ()


def _result(check: Check, table: str, outcomes: dict[date, quality.CheckOutcome]) -> dg.AssetCheckResult:
    failed = [day for day, (passed, _) in outcomes.items() if not passed]
    if len(outcomes) == 1:
        passed, metadata = next(iter(outcomes.values()))
    else:  # a backfill range: one result for the range, naming the days that failed
        passed = not failed
        metadata = {"days_checked": len(outcomes), "days_failed": [str(day) for day in failed]}
        if failed:
            metadata["first_failure"] = outcomes[failed[0]][1]
    return dg.AssetCheckResult(
        asset_key=table,
        check_name=check.name,
        passed=passed,
        metadata={key: dg.MetadataValue.json(v) if isinstance(v, (dict, list)) else v for key, v in metadata.items()},
        severity=dg.AssetCheckSeverity.ERROR if check.blocking else dg.AssetCheckSeverity.WARN,
    )


def _partitioned(table: str) -> bool:
    return _ASSETS[dg.AssetKey(table)].partitions_def is not None


def _step(table: str) -> dict:
    """The decorator arguments of a table's checks step: one spec per check, each runnable alone;
    partitioned like the table's asset."""
    partitions = {"partitions_def": DAILY_PARTITIONS} if _partitioned(table) else {}
    specs = [dg.AssetCheckSpec(c.name, asset=table, description=c.description, blocking=c.blocking, **partitions)
             for c in CHECKS[table]]
    what = "its partitions of the run" if partitions else "the days its latest build wrote"
    return {"specs": specs, "can_subset": True, "description": f"The checks of {table}, evaluated on {what}, in batches of days."}


def _days(context: dg.AssetCheckExecutionContext, table: str) -> list[date]:
    """A daily table's days of the run; a derived table's days of its latest build."""
    if _partitioned(table):
        return run_days(context)
    event = context.instance.get_latest_materialization_event(dg.AssetKey(table))
    built = event.asset_materialization.metadata.get(BUILT_DAYS) if event else None
    return [date.fromisoformat(day) for day in built.value] if built else []


def _withdraw(store: LakeStore, table: str, day: date) -> None:
    """Take a derived table's day that failed a blocking check out of the lake (into quarantine):
    readers and the catalog no longer see it, and the next build makes it again (and checks it)."""
    store.write_bytes(withdrawn_path(table, day), store.read_bytes(table_path(table, day)))
    store.delete(table_path(table, day))


def _batches(store: LakeStore, table: str, days: list[date],
             columns: list[str]) -> Iterator[tuple[dict[date, DayFile], dict[date, str]]]:
    """The days' files in batches: without columns, their footers, in one batch; else the files
    themselves as local paths (on S3 each downloaded: one GET), with their footers, in batches of
    consecutive days of at most BATCH_BYTES of Parquet (sizes from one listing)."""
    if not days:
        return
    if not columns:
        yield {day: _footer(store, table_path(table, day)) for day in days}, {}
        return
    sizes = {file.path: file.size for file in input_files(store, table_dir(table), days)}
    for batch in day_batches(days, {day: sizes.get(table_path(table, day), 0) for day in days}, BATCH_BYTES):
        with days_as_files(store, table, batch) as files:
            paths = dict(zip(batch, files.paths))
            yield {day: _local_footer(path) for day, path in paths.items()}, paths


def _evaluate(context: dg.AssetCheckExecutionContext, lake: LakeResource, table: str) -> Iterator[dg.AssetCheckResult]:
    """The selected checks of a table over batches of its days, reading of each day only what they
    need (its footer, or its file, staged once for all of them); each rule gives every day of a batch its
    own outcome, the one that day alone would get."""
    selected = [check for check in CHECKS[table] if dg.AssetCheckKey(dg.AssetKey(table), check.name) in context.selected_asset_check_keys]
    columns = list(dict.fromkeys(column for check in selected for column in check.columns))
    store = lake.store()
    outcomes: dict[str, dict[date, quality.CheckOutcome]] = {check.name: {} for check in selected}
    step = StepDays(store, table, sorted(_days(context, table)), {}, {})
    for files, paths in _batches(store, table, step.days, columns):
        step.row_counts.update({day: file.rows for day, file in files.items()})
        batch = Batch(step, files, paths, columns)
        failed_blocking: set[date] = set()
        for check in selected:
            got = check.rule(batch)
            outcomes[check.name].update((day, got[day]) for day in batch.days)
            failed_blocking.update(day for day in batch.days if check.blocking and not got[day][0])
        if not _partitioned(table):
            for day in sorted(failed_blocking):
                _withdraw(store, table, day)
    for check in sorted(selected, key=lambda c: c.name):
        yield _result(check, table, outcomes[check.name])


def _schema_check(table: str) -> Check:
    return Check("schema_matches_contract", _schema, f"{table} has exactly the contract's columns and types.", True)


def _keys_check(keys: tuple[str, ...], description: str) -> Check:
    def rule(batch: Batch) -> dict[date, quality.CheckOutcome]:
        return batch.evaluate(lambda rows, days: quality.keys_not_null_and_unique(rows, list(keys), days))
    return Check("keys_not_null_and_unique", rule, description, True, keys)


ROW_COUNT = Check("row_count_not_anomalous", _row_count,
                  f"Row count within 0.5x-2x of the median of the trailing {TRAILING_DAYS} days.", False)
# Each table's checks, evaluated in one step (`<table>_checks`) that reads the table's files once.
CHECKS: dict[str, list[Check]] = {
    "order_lines": [
        _schema_check("order_lines"),
        _keys_check(("order_id", "line_number"), "order_id and line_number are never null, and unique together."),
        Check("quantities_positive_prices_non_negative",
              lambda lines: lines.evaluate(quality.quantities_and_prices_valid),
              "Every quantity is > 0 and every unit price >= 0.", True, ("quantity", "unit_price")),
        Check("records_conserved", _order_lines_conservation,
              "records of the raw files the build read = orders loaded + records quarantined + duplicates dropped.", True, ("order_id",)),
        ROW_COUNT,
    ],
    "orders": [
        _schema_check("orders"),
        _keys_check(("order_id",), "order_id is never null and unique."),
        Check("orders_match_lines", _orders_match_lines,
              "Every order of order_lines is here once, with the same units and line totals.", True, ("units", "items_total")),
        Check("totals_reconcile", lambda orders: orders.evaluate(quality.totals_reconcile),
              "Reported order totals equal the sum of their lines (WARN: feeds add shipping and tax).", False, ("reconciles",)),
        ROW_COUNT,
    ],
    "dim_products": [
        _schema_check("dim_products"),
        _keys_check(("product_id",), "product_id is unique."),
    ],
    "dim_customers": [
        _schema_check("dim_customers"),
        _keys_check(("customer_id",), "customer_id is unique."),
    ],
    "purchase_events": [
        _schema_check("purchase_events"),
        Check("values_valid", lambda events: events.evaluate(quality.purchase_values_valid),
              "Prices and discounts >= 0, revenue = selling_price - discount, margin = selling_price - cost_price - "
              "discount, user_id and session_id never empty.", True,
              ("cost_price", "selling_price", "discount", "revenue", "margin", "user_id", "session_id")),
        Check("records_conserved", _purchase_events_conservation,
              "records of the raw files the build read = events loaded + records quarantined + duplicates dropped.", True),
        ROW_COUNT,
    ],
    "purchase_breakdown": [
        _schema_check("purchase_breakdown"),
        Check("adds_up_to_the_days_purchases", _breakdown_adds_up,
              "Each dimension's purchases, revenue and margin add up to the day's purchase_events.", True,
              ("dimension", "purchases", "revenue", "margin")),
    ],
    **{table: [_schema_check(table)] for table in ("sales_by_category", "product_performance", "top_customers",
                                                   "daily_order_summary", "rating_distribution", "rating_vs_sales",
                                                   "engaged_users", "tag_engagement", "purchase_sessions_daily")},
    "product_reviews": [
        _schema_check("product_reviews"),
        _keys_check(("product_id", "review_number"), "product_id and review_number are never null, and unique together."),
        Check("ratings_in_range", lambda reviews: reviews.evaluate(_ratings_in_range),
              "Every rating is a whole number from 1 to 5.", True, ("rating",)),
        Check("records_conserved", _engagement_conservation,
              "reviews in the products snapshot = rows loaded + records quarantined.", True),
    ],
    "posts": [
        _schema_check("posts"),
        _keys_check(("post_id",), "post_id is never null and unique."),
        Check("records_conserved", _engagement_conservation,
              "posts in the snapshot = rows loaded + records quarantined.", True),
    ],
    "comments": [
        _schema_check("comments"),
        _keys_check(("comment_id",), "comment_id is never null and unique."),
        Check("records_conserved", _engagement_conservation,
              "comments in the snapshot = rows loaded + records quarantined.", True),
    ],
}


@dg.multi_asset_check(**_step("order_lines"))
def order_lines_checks(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> Iterator[dg.AssetCheckResult]:
    yield from _evaluate(context, lake, "order_lines")


@dg.multi_asset_check(**_step("orders"))
def orders_checks(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> Iterator[dg.AssetCheckResult]:
    yield from _evaluate(context, lake, "orders")


@dg.multi_asset_check(**_step("dim_products"))
def dim_products_checks(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> Iterator[dg.AssetCheckResult]:
    yield from _evaluate(context, lake, "dim_products")


@dg.multi_asset_check(**_step("dim_customers"))
def dim_customers_checks(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> Iterator[dg.AssetCheckResult]:
    yield from _evaluate(context, lake, "dim_customers")


@dg.multi_asset_check(**_step("sales_by_category"))
def sales_by_category_checks(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> Iterator[dg.AssetCheckResult]:
    yield from _evaluate(context, lake, "sales_by_category")


@dg.multi_asset_check(**_step("product_performance"))
def product_performance_checks(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> Iterator[dg.AssetCheckResult]:
    yield from _evaluate(context, lake, "product_performance")


@dg.multi_asset_check(**_step("top_customers"))
def top_customers_checks(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> Iterator[dg.AssetCheckResult]:
    yield from _evaluate(context, lake, "top_customers")


@dg.multi_asset_check(**_step("daily_order_summary"))
def daily_order_summary_checks(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> Iterator[dg.AssetCheckResult]:
    yield from _evaluate(context, lake, "daily_order_summary")


@dg.multi_asset_check(**_step("product_reviews"))
def product_reviews_checks(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> Iterator[dg.AssetCheckResult]:
    yield from _evaluate(context, lake, "product_reviews")


@dg.multi_asset_check(**_step("posts"))
def posts_checks(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> Iterator[dg.AssetCheckResult]:
    yield from _evaluate(context, lake, "posts")


@dg.multi_asset_check(**_step("comments"))
def comments_checks(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> Iterator[dg.AssetCheckResult]:
    yield from _evaluate(context, lake, "comments")


@dg.multi_asset_check(**_step("rating_distribution"))
def rating_distribution_checks(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> Iterator[dg.AssetCheckResult]:
    yield from _evaluate(context, lake, "rating_distribution")


@dg.multi_asset_check(**_step("rating_vs_sales"))
def rating_vs_sales_checks(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> Iterator[dg.AssetCheckResult]:
    yield from _evaluate(context, lake, "rating_vs_sales")


@dg.multi_asset_check(**_step("engaged_users"))
def engaged_users_checks(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> Iterator[dg.AssetCheckResult]:
    yield from _evaluate(context, lake, "engaged_users")


@dg.multi_asset_check(**_step("tag_engagement"))
def tag_engagement_checks(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> Iterator[dg.AssetCheckResult]:
    yield from _evaluate(context, lake, "tag_engagement")


@dg.multi_asset_check(**_step("purchase_events"))
def purchase_events_checks(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> Iterator[dg.AssetCheckResult]:
    yield from _evaluate(context, lake, "purchase_events")


@dg.multi_asset_check(**_step("purchase_breakdown"))
def purchase_breakdown_checks(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> Iterator[dg.AssetCheckResult]:
    yield from _evaluate(context, lake, "purchase_breakdown")


@dg.multi_asset_check(**_step("purchase_sessions_daily"))
def purchase_sessions_daily_checks(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> Iterator[dg.AssetCheckResult]:
    yield from _evaluate(context, lake, "purchase_sessions_daily")


def _profiles_conserved(store: LakeStore, profiles: pa.Table) -> quality.CheckOutcome:
    """Records of the raw profile files the table was built from (_raw_records) = profiles loaded +
    quarantined + replaced by newer."""
    counts = json.loads(store.read_bytes(f"{table_dir('dim_user_profiles')}/{COUNTS_FILE}"))
    records_read, files = _raw_records(store, USER_PROFILES_FEED, counts["files"], raw_profile_files(store))
    quarantined = records_in(store, unpartitioned_quarantine_path("dim_user_profiles"), count_json_lines_in)
    replaced = counts["replaced_by_newer"]
    passed, metadata = quality.conservation(records_read, profiles.num_rows, quarantined, replaced, "profiles_loaded",
                                            "replaced_by_newer")
    return passed, metadata | files


PROFILE_CHECKS = {
    "schema_matches_contract": ("dim_user_profiles has exactly the contract's columns and types.",
                                lambda store, profiles: quality.schema_matches(profiles.schema, DIM_USER_PROFILES)),
    "keys_not_null_and_unique": ("user_id is never null and unique.",
                                 lambda store, profiles: quality.keys_not_null_and_unique(profiles, ["user_id"])[0]),
    "records_conserved": ("records read = profiles loaded + records quarantined + profiles replaced by newer ones.",
                          _profiles_conserved),
}


@dg.multi_asset_check(
    specs=[dg.AssetCheckSpec(name, asset="dim_user_profiles", description=text, blocking=True)
           for name, (text, _) in PROFILE_CHECKS.items()],
    can_subset=True,
    description="The checks of dim_user_profiles (not partitioned), evaluated on one read of its file.",
)
def dim_user_profiles_checks(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> Iterator[dg.AssetCheckResult]:
    store = lake.store()
    profiles = store.read_parquet([unpartitioned_table_path("dim_user_profiles")])
    for key in sorted(context.selected_asset_check_keys, key=lambda k: k.name):
        passed, metadata = PROFILE_CHECKS[key.name][1](store, profiles)
        yield dg.AssetCheckResult(
            asset_key="dim_user_profiles", check_name=key.name, passed=passed,
            metadata={k: dg.MetadataValue.json(v) if isinstance(v, (dict, list)) else v for k, v in metadata.items()},
        )
