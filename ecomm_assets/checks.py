"""Partitioned asset checks on every lake table. Blocking checks guard against corrupt data, so
downstream assets never read a partition that failed one; WARN checks flag what needs a look."""


import json
from collections.abc import Callable
from datetime import date, timedelta

import dagster as dg
import pyarrow.compute as pc

from ecomm_assets.assets.catalog import CATALOG_TABLES
from ecomm_assets.assets.lake import counts_path, quarantine_path, raw_order_files, read_table, run_days, table_path
from ecomm_assets.core import quality
from ecomm_assets.core.storage import LakeStore, parquet_row_count
from ecomm_assets.resources import LakeResource

TRAILING_DAYS = 7
Rule = Callable[[LakeStore, date], quality.CheckOutcome]


def _schema(table: str) -> Rule:
    return lambda store, day: quality.schema_matches(read_table(store, table, day), CATALOG_TABLES[table])


def _keys(table: str, keys: list[str]) -> Rule:
    return lambda store, day: quality.keys_not_null_and_unique(read_table(store, table, day), keys)


def _order_lines_conservation(store: LakeStore, day: date) -> quality.CheckOutcome:
    """Recounts every side independently: lines of the raw files, distinct orders in the table,
    records in quarantine; only the duplicates come from the run's own counts."""
    records_read = sum(_count_lines(store.read_bytes(f.path)) for f in raw_order_files(store, day))
    loaded = pc.count_distinct(read_table(store, "order_lines", day)["order_id"]).as_py()
    rel = quarantine_path("order_lines", day)
    quarantined = _count_lines(store.read_bytes(rel)) if store.exists(rel) else 0
    duplicates = json.loads(store.read_bytes(counts_path("order_lines", day)))["duplicates_dropped"]
    return quality.conservation(records_read, loaded, quarantined, duplicates)


def _orders_match_lines(store: LakeStore, day: date) -> quality.CheckOutcome:
    orders = read_table(store, "orders", day)
    lines = read_table(store, "order_lines", day)
    line_orders = pc.count_distinct(lines["order_id"]).as_py()
    units_match = pc.sum(orders["units"]).as_py() == pc.sum(lines["quantity"]).as_py()
    totals_match = pc.sum(orders["items_total"]).as_py() == pc.sum(lines["line_total"]).as_py()
    passed = orders.num_rows == line_orders and units_match and totals_match
    return passed, {"orders": orders.num_rows, "orders_in_lines": line_orders, "units_match": units_match, "totals_match": totals_match}


def _row_count(table: str) -> Rule:
    def rule(store: LakeStore, day: date) -> quality.CheckOutcome:
        trailing = [
            parquet_row_count(store, table_path(table, previous))
            for previous in (day - timedelta(days=n) for n in range(1, TRAILING_DAYS + 1))
            if store.exists(table_path(table, previous))
        ]
        return quality.row_count_normal(parquet_row_count(store, table_path(table, day)), trailing)

    return rule


def _count_lines(data: bytes) -> int:
    return sum(1 for line in data.split(b"\n") if line.strip())


def _check(
    partitions: dg.PartitionsDefinition, asset: str, name: str, rule: Rule, description: str, blocking: bool
) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset, name=name, description=description, blocking=blocking, partitions_def=partitions
    )
    def check(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
        store = lake.store()
        outcomes = {day: rule(store, day) for day in run_days(context)}
        failed = [day for day, (passed, _) in outcomes.items() if not passed]
        if len(outcomes) == 1:
            passed, metadata = next(iter(outcomes.values()))
        else:  # a backfill range: one result for the range, naming the days that failed
            passed = not failed
            metadata = {"days_checked": len(outcomes), "days_failed": [str(day) for day in failed]}
            if failed:
                metadata["first_failure"] = outcomes[failed[0]][1]
        return dg.AssetCheckResult(
            passed=passed,
            metadata={key: dg.MetadataValue.json(v) if isinstance(v, (dict, list)) else v for key, v in metadata.items()},
            severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
        )

    return check


def build_checks(partitions: dg.PartitionsDefinition) -> list[dg.AssetChecksDefinition]:
    specs = [
        (table, "schema_matches_contract", _schema(table), f"{table} has exactly the contract's columns and types.", True)
        for table in CATALOG_TABLES
    ]
    specs += [
        ("order_lines", "keys_not_null_and_unique", _keys("order_lines", ["order_id", "line_number"]),
         "order_id and line_number are never null, and unique together.", True),
        ("order_lines", "quantities_positive_prices_non_negative",
         lambda store, day: quality.quantities_and_prices_valid(read_table(store, "order_lines", day)),
         "Every quantity is > 0 and every unit price >= 0.", True),
        ("order_lines", "records_conserved", _order_lines_conservation,
         "records read = orders loaded + records quarantined + duplicates dropped.", True),
        ("order_lines", "row_count_not_anomalous", _row_count("order_lines"),
         f"Row count within 0.5x-2x of the median of the trailing {TRAILING_DAYS} days.", False),
        ("orders", "keys_not_null_and_unique", _keys("orders", ["order_id"]), "order_id is never null and unique.", True),
        ("orders", "orders_match_lines", _orders_match_lines,
         "Every order of order_lines is here once, with the same units and line totals.", True),
        ("orders", "totals_reconcile",
         lambda store, day: quality.totals_reconcile(read_table(store, "orders", day)),
         "Reported order totals equal the sum of their lines (WARN: feeds add shipping and tax).", False),
        ("orders", "row_count_not_anomalous", _row_count("orders"),
         f"Row count within 0.5x-2x of the median of the trailing {TRAILING_DAYS} days.", False),
        ("dim_products", "keys_not_null_and_unique", _keys("dim_products", ["product_id"]), "product_id is unique.", True),
        ("dim_customers", "keys_not_null_and_unique", _keys("dim_customers", ["customer_id"]), "customer_id is unique.", True),
    ]
    return [_check(partitions, *spec) for spec in specs]
