"""Partitioned asset checks on every lake table. Blocking checks guard against corrupt data, so
downstream assets never read a partition that failed one; WARN checks flag what needs a look."""


import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from ecomm_assets.assets import analytics, engagement, purchases
from ecomm_assets.assets import lake as lake_assets
from ecomm_assets.assets.days import input_files, read_table, run_days
from ecomm_assets.assets.metadata import BUILT_DAYS
from ecomm_assets.core import quality
from ecomm_assets.core.engagement import COLLECTION
from ecomm_assets.core.landing import count_json_lines
from ecomm_assets.core.layout import (
    COUNTS_FILE,
    ORDERS_FEED,
    PURCHASES_FEED,
    Feed,
    collection_path,
    counts_path,
    quarantine_path,
    table_dir,
    table_path,
    unpartitioned_quarantine_path,
    unpartitioned_table_path,
    withdrawn_path,
)
from ecomm_assets.core.purchases import count_csv_records
from ecomm_assets.core.schemas import (
    DIM_USER_PROFILES,
    LAKE_TABLES,
    PURCHASE_DIMENSIONS,
)
from ecomm_assets.core.storage import LakeFile, LakeStore, parquet_row_count
from ecomm_assets.partitions import DAILY_PARTITIONS
from ecomm_assets.resources import LakeResource

TRAILING_DAYS = 7
_ASSETS = {key: assets for assets in dg.load_assets_from_modules([lake_assets, engagement, purchases, analytics])
           for key in assets.keys}


@dataclass(frozen=True)
class TableDays:
    """A table's rows of the day being checked, read once for all of the table's checks, and what
    the step's days share: row counts known, raw listings."""

    store: LakeStore
    table: str
    rows: dict[date, pa.Table]
    days: list[date]  # every day the step checks
    footer_rows: dict[date, int | None]  # the row counts known: days checked before, footers read once
    raw_listed: dict[str, dict[str, list[LakeFile]]]  # feed -> day folder -> files, shared by the step's days

    def row_count(self, day: date) -> int | None:
        """Rows of a day: from its rows, else known in this step, else from the file's footer (one
        GET, once per day); None without a file."""
        if day in self.rows:
            return self.rows[day].num_rows
        if day not in self.footer_rows:
            try:
                self.footer_rows[day] = parquet_row_count(self.store, table_path(self.table, day))
            except FileNotFoundError:
                self.footer_rows[day] = None
        return self.footer_rows[day]

    def raw_files(self, feed: Feed, day: date) -> list[LakeFile]:
        """A feed's raw files of a day of the step, from one listing of the feed for all its days
        (not a LIST per day)."""
        if feed.raw_root not in self.raw_listed:
            by_folder: dict[str, list[LakeFile]] = {}
            for file in input_files(self.store, feed.raw_root, self.days):
                by_folder.setdefault(file.path.rpartition("/")[0], []).append(file)
            self.raw_listed[feed.raw_root] = by_folder
        return self.raw_listed[feed.raw_root].get(feed.raw_dir(day), [])


Rule = Callable[[TableDays, date], quality.CheckOutcome]


def _schema(days: TableDays, day: date) -> quality.CheckOutcome:
    return quality.schema_matches(days.rows[day], LAKE_TABLES[days.table])


def _keys(keys: list[str]) -> Rule:
    return lambda days, day: quality.keys_not_null_and_unique(days.rows[day], keys)


def _order_lines_conservation(lines: TableDays, day: date) -> quality.CheckOutcome:
    """Recounts every side independently: lines of the raw files, distinct orders in the table,
    records in quarantine; only the duplicates come from the run's own counts."""
    store = lines.store
    records_read = sum(count_json_lines(store.read_bytes(f.path)) for f in lines.raw_files(ORDERS_FEED, day))
    loaded = pc.count_distinct(lines.rows[day]["order_id"]).as_py()
    quarantined = count_json_lines(store.read_if_exists(quarantine_path("order_lines", day)) or b"")
    duplicates = json.loads(store.read_bytes(counts_path("order_lines", day)))["duplicates_dropped"]
    return quality.conservation(records_read, loaded, quarantined, duplicates)


def _engagement_conservation(table_days: TableDays, day: date) -> quality.CheckOutcome:
    """Recounts both sides independently: records of the raw snapshot (reviews, for product_reviews)
    against the rows of the table and the records in quarantine."""
    store, table = table_days.store, table_days.table
    snapshot = store.read_if_exists(collection_path(COLLECTION[table], day))
    records = json.loads(snapshot) if snapshot is not None else []
    if table == "product_reviews":  # a reviews value that is not a list is one record; a product that is no object has none
        read = sum(len(r["reviews"]) if isinstance(r.get("reviews"), list) else r.get("reviews") is not None
                   for r in records if isinstance(r, dict))
    else:
        read = len(records)
    rejected = count_json_lines(store.read_if_exists(quarantine_path(table, day)) or b"")
    return quality.conservation(read, table_days.rows[day].num_rows, rejected, 0)


def _ratings_in_range(reviews: TableDays, day: date) -> quality.CheckOutcome:
    ratings = reviews.rows[day]["rating"]
    outside = pc.sum(pc.invert(pc.fill_null(pc.and_(pc.greater_equal(ratings, 1), pc.less_equal(ratings, 5)), False))).as_py() or 0
    return outside == 0, {"ratings_outside_1_to_5": outside, "reviews": len(ratings)}


def _purchase_events_conservation(events: TableDays, day: date) -> quality.CheckOutcome:
    """Recounts every side independently: records of the raw CSV files (parsed again), rows in the
    table, records in quarantine; only the duplicates come from the run's own counts."""
    store = events.store
    records_read = sum(count_csv_records(store.read_bytes(f.path)) for f in events.raw_files(PURCHASES_FEED, day))
    quarantined = count_json_lines(store.read_if_exists(quarantine_path("purchase_events", day)) or b"")
    duplicates = json.loads(store.read_bytes(counts_path("purchase_events", day)))["duplicates_dropped"]
    return quality.conservation(records_read, events.rows[day].num_rows, quarantined, duplicates, "events_loaded")


def _breakdown_adds_up(breakdown_days: TableDays, day: date) -> quality.CheckOutcome:
    """Every dimension's rows add up to the day's purchase events: purchases, revenue and margin."""
    events = read_table(breakdown_days.store, "purchase_events", day)
    totals = {"purchases": events.num_rows, "revenue": pc.sum(events["revenue"]).as_py() or 0,
              "margin": pc.sum(events["margin"]).as_py() or 0}
    sums = breakdown_days.rows[day].group_by("dimension").aggregate([(c, "sum") for c in totals]).to_pylist()
    wrong = {row["dimension"]: {c: row[f"{c}_sum"] for c in totals} for row in sums
             if any((row[f"{c}_sum"] or 0) != totals[c] for c in totals)}
    missing = sorted(set(PURCHASE_DIMENSIONS) - {row["dimension"] for row in sums}) if events.num_rows else []
    return not wrong and not missing, {"day_totals": {k: str(v) for k, v in totals.items()},
                                       "dimensions_not_adding_up": {d: {k: str(v) for k, v in t.items()} for d, t in wrong.items()},
                                       "dimensions_missing": missing}


def _orders_match_lines(orders_days: TableDays, day: date) -> quality.CheckOutcome:
    orders = orders_days.rows[day]
    lines = read_table(orders_days.store, "order_lines", day)
    line_orders = pc.count_distinct(lines["order_id"]).as_py()
    units_match = pc.sum(orders["units"]).as_py() == pc.sum(lines["quantity"]).as_py()
    totals_match = pc.sum(orders["items_total"]).as_py() == pc.sum(lines["line_total"]).as_py()
    passed = orders.num_rows == line_orders and units_match and totals_match
    return passed, {"orders": orders.num_rows, "orders_in_lines": line_orders, "units_match": units_match, "totals_match": totals_match}


def _row_count(days: TableDays, day: date) -> quality.CheckOutcome:
    trailing = [days.row_count(day - timedelta(days=n)) for n in range(1, TRAILING_DAYS + 1)]
    return quality.row_count_normal(days.rows[day].num_rows, [n for n in trailing if n is not None])


@dataclass(frozen=True)
class Check:
    name: str
    rule: Rule
    description: str
    blocking: bool


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
    return {"specs": specs, "can_subset": True, "description": f"The checks of {table}, evaluated on {what}, one day at a time."}


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


def _evaluate(context: dg.AssetCheckExecutionContext, lake: LakeResource, table: str) -> Iterator[dg.AssetCheckResult]:
    """The selected checks of a table, each day read once for all of them (memory: one day)."""
    selected = [check for check in CHECKS[table] if dg.AssetCheckKey(dg.AssetKey(table), check.name) in context.selected_asset_check_keys]
    store = lake.store()
    outcomes: dict[str, dict[date, quality.CheckOutcome]] = {check.name: {} for check in selected}
    days = sorted(_days(context, table))
    counted: dict[date, int | None] = {}
    raw_listed: dict[str, dict[str, list[LakeFile]]] = {}
    for day in days:
        table_days = TableDays(store, table, {day: read_table(store, table, day)}, days, counted, raw_listed)
        counted[day] = table_days.rows[day].num_rows
        failed_blocking = False
        for check in selected:
            outcomes[check.name][day] = outcome = check.rule(table_days, day)
            failed_blocking |= check.blocking and not outcome[0]
        if failed_blocking and not _partitioned(table):
            _withdraw(store, table, day)
    for check in sorted(selected, key=lambda c: c.name):
        yield _result(check, table, outcomes[check.name])


def _schema_check(table: str) -> Check:
    return Check("schema_matches_contract", _schema, f"{table} has exactly the contract's columns and types.", True)


ROW_COUNT = Check("row_count_not_anomalous", _row_count,
                  f"Row count within 0.5x-2x of the median of the trailing {TRAILING_DAYS} days.", False)
# Each table's checks, evaluated in one step (`<table>_checks`) that reads the table's files once.
CHECKS: dict[str, list[Check]] = {
    "order_lines": [
        _schema_check("order_lines"),
        Check("keys_not_null_and_unique", _keys(["order_id", "line_number"]),
              "order_id and line_number are never null, and unique together.", True),
        Check("quantities_positive_prices_non_negative",
              lambda lines, day: quality.quantities_and_prices_valid(lines.rows[day]),
              "Every quantity is > 0 and every unit price >= 0.", True),
        Check("records_conserved", _order_lines_conservation,
              "records read = orders loaded + records quarantined + duplicates dropped.", True),
        ROW_COUNT,
    ],
    "orders": [
        _schema_check("orders"),
        Check("keys_not_null_and_unique", _keys(["order_id"]), "order_id is never null and unique.", True),
        Check("orders_match_lines", _orders_match_lines,
              "Every order of order_lines is here once, with the same units and line totals.", True),
        Check("totals_reconcile", lambda orders, day: quality.totals_reconcile(orders.rows[day]),
              "Reported order totals equal the sum of their lines (WARN: feeds add shipping and tax).", False),
        ROW_COUNT,
    ],
    "dim_products": [
        _schema_check("dim_products"),
        Check("keys_not_null_and_unique", _keys(["product_id"]), "product_id is unique.", True),
    ],
    "dim_customers": [
        _schema_check("dim_customers"),
        Check("keys_not_null_and_unique", _keys(["customer_id"]), "customer_id is unique.", True),
    ],
    "purchase_events": [
        _schema_check("purchase_events"),
        Check("values_valid", lambda events, day: quality.purchase_values_valid(events.rows[day]),
              "Prices and discounts >= 0, revenue = selling_price - discount, margin = selling_price - cost_price - "
              "discount, user_id and session_id never empty.", True),
        Check("records_conserved", _purchase_events_conservation,
              "records read = events loaded + records quarantined + duplicates dropped.", True),
        ROW_COUNT,
    ],
    "purchase_breakdown": [
        _schema_check("purchase_breakdown"),
        Check("adds_up_to_the_days_purchases", _breakdown_adds_up,
              "Each dimension's purchases, revenue and margin add up to the day's purchase_events.", True),
    ],
    **{table: [_schema_check(table)] for table in ("sales_by_category", "product_performance", "top_customers",
                                                   "daily_order_summary", "rating_distribution", "rating_vs_sales",
                                                   "engaged_users", "tag_engagement", "purchase_sessions_daily")},
    "product_reviews": [
        _schema_check("product_reviews"),
        Check("keys_not_null_and_unique", _keys(["product_id", "review_number"]),
              "product_id and review_number are never null, and unique together.", True),
        Check("ratings_in_range", _ratings_in_range, "Every rating is a whole number from 1 to 5.", True),
        Check("records_conserved", _engagement_conservation,
              "reviews in the products snapshot = rows loaded + records quarantined.", True),
    ],
    "posts": [
        _schema_check("posts"),
        Check("keys_not_null_and_unique", _keys(["post_id"]), "post_id is never null and unique.", True),
        Check("records_conserved", _engagement_conservation,
              "posts in the snapshot = rows loaded + records quarantined.", True),
    ],
    "comments": [
        _schema_check("comments"),
        Check("keys_not_null_and_unique", _keys(["comment_id"]), "comment_id is never null and unique.", True),
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
    """Records of the raw profile files the table was built from (parsed again; a file landed since
    is the next build's) = profiles loaded + quarantined + replaced by newer."""
    counts = json.loads(store.read_bytes(f"{table_dir('dim_user_profiles')}/{COUNTS_FILE}"))
    records_read = sum(count_csv_records(store.read_bytes(path)) for path in counts["files"])
    quarantined = count_json_lines(store.read_if_exists(unpartitioned_quarantine_path("dim_user_profiles")) or b"")
    replaced = counts["replaced_by_newer"]
    return quality.conservation(records_read, profiles.num_rows, quarantined, replaced, "profiles_loaded", "replaced_by_newer")


PROFILE_CHECKS = {
    "schema_matches_contract": ("dim_user_profiles has exactly the contract's columns and types.",
                                lambda store, profiles: quality.schema_matches(profiles, DIM_USER_PROFILES)),
    "keys_not_null_and_unique": ("user_id is never null and unique.",
                                 lambda store, profiles: quality.keys_not_null_and_unique(profiles, ["user_id"])),
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
