"""The lake tables' asset checks, through the project's definitions: a day is materialized once,
then each test corrupts a copy of its lake files on purpose and runs the checks alone. The check
the corruption breaks must fail, with metadata that says how; every other check must give what it
gives on the intact day."""

import json
import os
import re
import shutil
import tracemalloc
from decimal import Decimal

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ecomm_assets_tests.conftest import arrow_peak, make_definitions, materialize_day

DAY = "2024-01-15"
LAKE_TABLES = ("order_lines", "orders", "dim_products", "dim_customers")
DERIVED = {"dim_products", "dim_customers"}  # kept per day in the lake, not partitioned by Dagster
ORDERS = 180  # synthetic orders of 2024-01-15 at 200 a day (a Monday: 0.9x)

# Every check of the lake tables: (blocking, severity). A blocking check keeps a bad day away from
# everything downstream (the catalog among them), so a blocking check must stay blocking.
ERROR, WARN = (True, dg.AssetCheckSeverity.ERROR), (False, dg.AssetCheckSeverity.WARN)
CHECKS = {
    ("order_lines", "schema_matches_contract"): ERROR,
    ("order_lines", "keys_not_null_and_unique"): ERROR,
    ("order_lines", "quantities_positive_prices_non_negative"): ERROR,
    ("order_lines", "records_conserved"): ERROR,
    ("order_lines", "row_count_not_anomalous"): WARN,
    ("orders", "schema_matches_contract"): ERROR,
    ("orders", "keys_not_null_and_unique"): ERROR,
    ("orders", "orders_match_lines"): ERROR,
    ("orders", "totals_reconcile"): WARN,
    ("orders", "row_count_not_anomalous"): WARN,
    ("dim_products", "schema_matches_contract"): ERROR,
    ("dim_products", "keys_not_null_and_unique"): ERROR,
    ("dim_customers", "schema_matches_contract"): ERROR,
    ("dim_customers", "keys_not_null_and_unique"): ERROR,
}
# Synthetic feeds add shipping to a few percent of order totals: the WARN check says so every day.
FAILING_ON_THE_INTACT_DAY = {("orders", "totals_reconcile")}
CONSERVED = {"records_read": ORDERS + 3, "orders_loaded": ORDERS, "records_quarantined": 2, "duplicates_dropped": 1,
             "unaccounted": 0, "raw_files_read": 1, "raw_files_replaced_since_build": 0, "raw_files_landed_since_build": 0}


@pytest.fixture(scope="module")
def materialized_lake(tmp_path_factory):
    """A lake with one materialized day whose raw orders also hold two records to quarantine and
    a re-sent order, so that every term of the conservation check is at work."""
    lake = tmp_path_factory.mktemp("checks") / "lake"
    with dg.DagsterInstance.ephemeral() as instance:  # in memory: several times faster runs than on SQLite
        defs = make_definitions(lake)
        assert materialize_day(defs, DAY, instance).success
        raw = raw_orders_file(lake)
        first = json.loads(raw.read_text().splitlines()[0])
        extra = [
            first | {"order_id": "NO-PRICE", "products": [{"product_id": "1", "quantity": 1}]},
            first | {"order_id": "NO-QUANTITY", "products": [{"product_id": "1", "price": 2.5, "quantity": 0}]},
            first,  # sent again: the newest version wins, the other is a duplicate dropped
        ]
        with raw.open("a") as out:
            out.write("".join(json.dumps(record) + "\n" for record in extra))
        lake_job = defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_selection={dg.AssetKey("order_lines"), dg.AssetKey("orders")}
        )
        assert lake_job.execute_in_process(partition_key=DAY, instance=instance).success
    assert len(quarantine_file(lake).read_text().splitlines()) == 2
    return lake


@pytest.fixture
def lake(materialized_lake, tmp_path):
    """A copy of what the checks read."""
    copy = tmp_path / "lake"
    for folder in ["raw/orders", "quarantine/order_lines", *(f"processed/{table}" for table in LAKE_TABLES)]:
        shutil.copytree(materialized_lake / folder, copy / folder)
    return copy


def raw_orders_file(lake):
    [raw] = (lake / "raw" / "orders" / f"dt={DAY}").iterdir()
    return raw


def quarantine_file(lake):
    return lake / "quarantine" / "order_lines" / f"dt={DAY}" / "part-00000.jsonl"


def part_file(lake, table):
    return lake / "processed" / table / f"dt={DAY}" / "part-00000.parquet"


def run_checks(lake) -> tuple[dict[tuple[str, str], dg.AssetCheckEvaluation], set[tuple[str, str]]]:
    """Every check of the lake tables on DAY, alone (no asset is materialized): the evaluations,
    and the checks that failed the run as blocking checks (Dagster fails their step, naming them)."""
    defs = make_definitions(lake)
    keys = {key for key in defs.resolve_asset_graph().asset_check_keys if key.asset_key.path[-1] in LAKE_TABLES}
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection=set(), asset_check_selection=keys)
    graph = defs.resolve_asset_graph()
    with dg.DagsterInstance.ephemeral() as instance:
        for table in LAKE_TABLES:  # a derived table's checks evaluate the days its latest build wrote
            if graph.get(dg.AssetKey(table)).partitions_def is None:
                instance.report_runless_asset_event(dg.AssetMaterialization(table, metadata={"built_days": [DAY]}))
        result = job.execute_in_process(partition_key=DAY, instance=instance, raise_on_error=False)
    evaluations = {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == set(CHECKS)
    blocked = {
        (table, name)
        for failure in result.get_step_failure_events()
        for table, names in re.findall(r"^(\w+): ([\w,]+)$", failure.step_failure_data.error.message, re.MULTILINE)
        for name in names.split(",")
    }
    assert result.success == (not blocked)
    return evaluations, blocked


def metadata(evaluation: dg.AssetCheckEvaluation) -> dict:
    return {key: value.value for key, value in evaluation.metadata.items()}


def rewrite(lake, table, change) -> None:
    path = part_file(lake, table)
    pq.write_table(change(pq.ParquetFile(path).read()), path)


def replace(table: pa.Table, column: str, values: list) -> pa.Table:
    index = table.schema.get_field_index(column)
    return table.set_column(index, table.schema.field(index), pa.array(values, table.schema.field(index).type))


def first_order_with_two_lines(lines: pa.Table) -> list[int]:
    """Row indices of the first two lines of the first order that has two."""
    ids = lines["order_id"].to_pylist()
    for index in range(len(ids) - 1):
        if ids[index] == ids[index + 1]:
            return [index, index + 1]
    raise AssertionError("no order with two lines")


def duplicate_line_key(lake):
    def change(lines):
        _, second = first_order_with_two_lines(lines)
        numbers = lines["line_number"].to_pylist()
        numbers[second] = numbers[second - 1]  # the order's second line numbered like its first
        return replace(lines, "line_number", numbers)
    rewrite(lake, "order_lines", change)


def null_line_number(lake):
    def change(lines):
        numbers = lines["line_number"].to_pylist()
        numbers[0] = None
        index = lines.schema.get_field_index("line_number")
        return lines.set_column(index, pa.field("line_number", pa.int32()), pa.array(numbers, pa.int32()))
    rewrite(lake, "order_lines", change)


def duplicate_first_row(table):
    return lambda lake: rewrite(lake, table, lambda t: pa.concat_tables([t, t.slice(0, 1)]))


def zero_quantity(lake):
    """A line's quantity moved to its order's next line: the order's units stay the same."""
    def change(lines):
        first, second = first_order_with_two_lines(lines)
        quantities = lines["quantity"].to_pylist()
        quantities[first], quantities[second] = 0, quantities[second] + quantities[first]
        return replace(lines, "quantity", quantities)
    rewrite(lake, "order_lines", change)


def negative_price(lake):
    def change(lines):
        prices = lines["unit_price"].to_pylist()
        prices[0] = -prices[0]
        return replace(lines, "unit_price", prices)
    rewrite(lake, "order_lines", change)


def retyped_quantity(lake):
    rewrite(lake, "order_lines", lambda t: t.set_column(t.schema.get_field_index("quantity"),
                                                         pa.field("quantity", pa.int64(), nullable=False), t["quantity"].cast(pa.int64())))


def dropped_column(table, column):
    return lambda lake: rewrite(lake, table, lambda t: t.drop_columns([column]))


def added_column(lake):
    rewrite(lake, "dim_customers", lambda t: t.append_column("loyalty", pa.array(["gold"] * t.num_rows)))


def deleted_quarantine_line(lake):
    path = quarantine_file(lake)
    path.write_text(path.read_text().splitlines(keepends=True)[0])


def duplicates_not_counted(lake):
    path = lake / "processed" / "order_lines" / f"dt={DAY}" / "_counts.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"duplicates_dropped": 0}))


def lines_of_an_order_deleted(lake):
    """As if orders had been built from lines that lack an order: the lines file keeps its time."""
    written = part_file(lake, "order_lines").stat()
    lines_of_an_order_deleted_since_orders(lake)
    os.utime(part_file(lake, "order_lines"), ns=(written.st_atime_ns, written.st_mtime_ns))


def lines_of_an_order_deleted_since_orders(lake):
    rewrite(lake, "order_lines", lambda t: t.filter(pc.not_equal(t["order_id"], t["order_id"][0])))


def order_deleted(lake):
    rewrite(lake, "orders", lambda t: t.slice(1))


def units_changed(lake):
    rewrite(lake, "orders", lambda t: replace(t, "units", [t["units"][0].as_py() + 1, *t["units"].to_pylist()[1:]]))


def total_changed(lake):
    rewrite(lake, "orders", lambda t: replace(
        t, "items_total", [t["items_total"][0].as_py() + Decimal("0.01"), *t["items_total"].to_pylist()[1:]]))


NO_BAD_KEYS = {"order_id": 0, "line_number": 0}
CORRUPTIONS = [
    # (label, corruption, {failing check: its exact metadata})
    ("duplicate order line key", duplicate_line_key,
     {("order_lines", "keys_not_null_and_unique"): {"null_keys": NO_BAD_KEYS, "duplicate_keys": 1}}),
    ("null order line key", null_line_number, {
        ("order_lines", "keys_not_null_and_unique"): {"null_keys": {"order_id": 0, "line_number": 1}, "duplicate_keys": 0},
        ("order_lines", "schema_matches_contract"): {
            "problems": ["column line_number is nullable, contract says not nullable"], "columns": 26},
    }),
    ("duplicate product", duplicate_first_row("dim_products"),
     {("dim_products", "keys_not_null_and_unique"): {"null_keys": {"product_id": 0}, "duplicate_keys": 1}}),
    ("duplicate customer", duplicate_first_row("dim_customers"),
     {("dim_customers", "keys_not_null_and_unique"): {"null_keys": {"customer_id": 0}, "duplicate_keys": 1}}),
    ("duplicate order", duplicate_first_row("orders"), {
        ("orders", "keys_not_null_and_unique"): {"null_keys": {"order_id": 0}, "duplicate_keys": 1},
        ("orders", "orders_match_lines"): {"orders": ORDERS + 1, "orders_in_lines": ORDERS, "units_match": False,
                                           "totals_match": False, "order_lines_newer_than_build": False},
    }),
    ("zero quantity", zero_quantity,
     {("order_lines", "quantities_positive_prices_non_negative"): {"quantity_not_positive": 1, "negative_unit_price": 0}}),
    ("negative price", negative_price,
     {("order_lines", "quantities_positive_prices_non_negative"): {"quantity_not_positive": 0, "negative_unit_price": 1}}),
    ("retyped column", retyped_quantity,
     {("order_lines", "schema_matches_contract"): {"problems": ["column quantity is int64, contract says int32"], "columns": 26}}),
    ("missing column", dropped_column("orders", "customer_email"),
     {("orders", "schema_matches_contract"): {"problems": ["missing column customer_email (string)"], "columns": 13}}),
    ("unexpected column", added_column,
     {("dim_customers", "schema_matches_contract"): {"problems": ["unexpected column loyalty (string)"], "columns": 11}}),
    ("deleted quarantine line", deleted_quarantine_line,
     {("order_lines", "records_conserved"): CONSERVED | {"records_quarantined": 1, "unaccounted": 1}}),
    ("duplicates not counted", duplicates_not_counted,
     {("order_lines", "records_conserved"): CONSERVED | {"duplicates_dropped": 0, "unaccounted": 1}}),
    ("lines of an order deleted", lines_of_an_order_deleted, {
        ("order_lines", "records_conserved"): CONSERVED | {"orders_loaded": ORDERS - 1, "unaccounted": 1},
        ("orders", "orders_match_lines"): {"orders": ORDERS, "orders_in_lines": ORDERS - 1, "units_match": False,
                                           "totals_match": False, "order_lines_newer_than_build": False},
    }),
    # order_lines written after orders (as a rebuild for newly landed orders is): orders is the
    # next build's, and only order_lines' own check judges the lines.
    ("lines of an order deleted since orders was built", lines_of_an_order_deleted_since_orders,
     {("order_lines", "records_conserved"): CONSERVED | {"orders_loaded": ORDERS - 1, "unaccounted": 1}}),
    ("order deleted", order_deleted,
     {("orders", "orders_match_lines"): {"orders": ORDERS - 1, "orders_in_lines": ORDERS, "units_match": False,
                                         "totals_match": False, "order_lines_newer_than_build": False}}),
    ("units changed", units_changed,
     {("orders", "orders_match_lines"): {"orders": ORDERS, "orders_in_lines": ORDERS, "units_match": False, "totals_match": True,
                                         "order_lines_newer_than_build": False}}),
    ("total changed", total_changed,
     {("orders", "orders_match_lines"): {"orders": ORDERS, "orders_in_lines": ORDERS, "units_match": True, "totals_match": False,
                                         "order_lines_newer_than_build": False}}),
]


def test_the_intact_day_passes_every_blocking_check_with_exact_counts(lake):
    evaluations, blocked = run_checks(lake)
    assert {key for key, e in evaluations.items() if not e.passed} == FAILING_ON_THE_INTACT_DAY
    assert blocked == set()
    assert {key: (e.blocking, e.severity) for key, e in evaluations.items()} == CHECKS
    assert metadata(evaluations["order_lines", "records_conserved"]) == CONSERVED
    assert metadata(evaluations["order_lines", "keys_not_null_and_unique"]) == {"null_keys": NO_BAD_KEYS, "duplicate_keys": 0}
    assert metadata(evaluations["orders", "orders_match_lines"]) == {
        "orders": ORDERS, "orders_in_lines": ORDERS, "units_match": True, "totals_match": True,
        "order_lines_newer_than_build": False}


@pytest.mark.parametrize("label, corrupt, failures", CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_a_corruption_fails_its_check_and_only_it(lake, label, corrupt, failures):
    corrupt(lake)
    evaluations, blocked = run_checks(lake)
    failed = {key for key, e in evaluations.items() if not e.passed}
    assert failed == FAILING_ON_THE_INTACT_DAY | set(failures)
    assert blocked == set(failures)  # every check a corruption breaks is blocking: the run fails, naming it
    for key, expected in failures.items():
        evaluation = evaluations[key]
        assert metadata(evaluation) == expected, key
        assert (evaluation.blocking, evaluation.severity) == CHECKS[key] == ERROR
    # A derived table's day that fails a blocking check leaves the lake for quarantine (its next
    # build makes it again); a daily table's day stays, its run failed.
    for table in LAKE_TABLES:
        withdrawn = lake / "quarantine" / table / f"dt={DAY}" / "withdrawn.parquet"
        failed_here = any(failed_table == table for failed_table, _ in failures)
        assert withdrawn.exists() == (failed_here and table in DERIVED), table
        assert part_file(lake, table).exists() == (not withdrawn.exists()), table


def extra_raw_record(lake):
    raw = raw_orders_file(lake)
    record = json.loads(raw.read_text().splitlines()[0]) | {"order_id": "NEVER-LOADED"}
    with raw.open("a") as out:
        out.write(json.dumps(record) + "\n")


def rewritten_as_it_was(lake):
    raw = raw_orders_file(lake)
    raw.write_bytes(raw.read_bytes())


def another_raw_file(lake):
    raw = raw_orders_file(lake)
    (raw.parent / "zz-later.jsonl").write_bytes(raw.read_bytes())


RAW_CHANGES = [
    # (label, change of the day's raw files after the build, the conservation figures that change)
    ("a record appended to the raw file", extra_raw_record, {"raw_files_replaced_since_build": 1}),
    ("the raw file written again as it was (its content the same: recounted)", rewritten_as_it_was, {}),
    ("the raw file removed (delivered again under a new name)", lambda lake: raw_orders_file(lake).unlink(),
     {"raw_files_replaced_since_build": 1}),
    ("a raw file landed", another_raw_file, {"raw_files_landed_since_build": 1}),
]


@pytest.mark.parametrize("label, change, figures", RAW_CHANGES, ids=[c[0] for c in RAW_CHANGES])
def test_raw_files_changed_since_the_build_are_the_next_builds(lake, label, change, figures):
    """Raw files change after a build (an ingest or a source run that waited for the day's lock):
    the conservation check evaluates the build with the raw files it read, each counted as it was
    read (recounted when its content is unchanged, else the count taken then by the check's own
    counter), and says which changed; nothing fails."""
    change(lake)
    evaluations, blocked = run_checks(lake)
    assert blocked == set()
    assert {key for key, e in evaluations.items() if not e.passed} == FAILING_ON_THE_INTACT_DAY
    assert metadata(evaluations["order_lines", "records_conserved"]) == CONSERVED | figures


def test_the_checks_read_a_large_raw_file_a_batch_at_a_time(tmp_path):
    """A day's raw orders of some 20 MiB: the checks digest and recount the raw file a batch at a
    time, so the memory they hold does not grow with the day (one of 10,000,000 orders is about
    5 GB of JSON Lines). Python's own allocations are traced: the file read whole is one of them."""
    lake = tmp_path / "lake"
    defs = make_definitions(lake, orders_per_day=40_000)
    job, key = defs.resolve_implicit_global_asset_job_def(), dg.AssetKey("order_lines")
    checks = {check for check in defs.resolve_asset_graph().asset_check_keys if check.asset_key == key}
    with dg.DagsterInstance.ephemeral() as instance:
        built = job.get_subset(asset_selection={dg.AssetKey("snapshots"), dg.AssetKey("orders_raw"), key},
                               asset_check_selection=set()).execute_in_process(partition_key=DAY, instance=instance)
        assert built.success
        size = raw_orders_file(lake).stat().st_size
        tracemalloc.start()
        try:
            checked = job.get_subset(asset_selection=set(), asset_check_selection=checks).execute_in_process(
                partition_key=DAY, instance=instance)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert checked.success and {e.check_name for e in checked.get_asset_check_evaluations() if e.passed} >= {"records_conserved"}
    assert size > 16 * 2**20
    assert peak < size / 4, (peak, size)


def test_the_checks_query_a_days_files_without_holding_its_columns(tmp_path):
    """A day of 36,000 orders: the checks of order_lines and orders read the day's files as their
    queries go (bounded, spilling past the memory limit), so the Arrow memory they take stays far
    below the day's order lines, whatever the day's size. Before, each step decoded the columns its
    checks read, whole (1 GiB for the order lines of a day of 1,800,000 orders)."""
    lake = tmp_path / "lake"
    arrow_peak(lake, 40_000, DAY, assets=["snapshots", "orders_raw", "order_lines", "orders"])
    lines = (lake / "processed" / "order_lines" / f"dt={DAY}" / "part-00000.parquet").stat().st_size
    peak = arrow_peak(lake, 40_000, DAY, checks_of=["order_lines", "orders"])
    assert peak < lines / 2, (peak, lines)
