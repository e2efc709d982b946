"""The lake tables' checks over a range of days (a backfill checks it in one run, in batches of
days): each day's outcome must be the one a run of that day alone gives, whichever day of the range
a corruption is on and however the days fall into batches. Five days are materialized once; each
test corrupts a copy, runs the checks of the whole range, then of the days that failed, alone."""

import re
import shutil
from datetime import date, timedelta

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ecomm_assets import checks
from ecomm_assets.core.storage import FOOTER_READ, LakeStore
from ecomm_assets_tests.conftest import make_definitions
from ecomm_assets_tests.test_checks import first_order_with_two_lines, replace

FIRST = date(2024, 1, 15)
DAYS = [FIRST + timedelta(days=n) for n in range(5)]
TABLES = ("order_lines", "orders", "dim_products", "dim_customers")
DERIVED = {"dim_products", "dim_customers"}
RANGE = {"dagster/asset_partition_range_start": str(DAYS[0]), "dagster/asset_partition_range_end": str(DAYS[-1])}


@pytest.fixture(scope="module")
def materialized_lake(tmp_path_factory):
    lake = tmp_path_factory.mktemp("checks_range") / "lake"
    defs = make_definitions(lake, orders_per_day=40)
    with dg.DagsterInstance.ephemeral() as instance:
        job = defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_selection={dg.AssetKey(name) for name in ("snapshots", "orders_raw", *TABLES)}, asset_check_selection=set())
        assert job.execute_in_process(instance=instance, tags=RANGE).success
    return lake


@pytest.fixture
def lake(materialized_lake, tmp_path):
    return shutil.copytree(materialized_lake, tmp_path / "lake")


def part_file(lake, table, day):
    return lake / "processed" / table / f"dt={day}" / "part-00000.parquet"


def rewrite(table, change):
    def corrupt(lake, day):
        path = part_file(lake, table, day)
        pq.write_table(change(pq.ParquetFile(path).read()), path)
    return corrupt


def duplicate_line_key(lines):
    _, second = first_order_with_two_lines(lines)
    numbers = lines["line_number"].to_pylist()
    numbers[second] = numbers[second - 1]
    return replace(lines, "line_number", numbers)


def null_line_number(lines):
    numbers = lines["line_number"].to_pylist()
    numbers[0] = None
    index = lines.schema.get_field_index("line_number")
    return lines.set_column(index, pa.field("line_number", pa.int32()), pa.array(numbers, pa.int32()))


def retyped_quantity(lines):
    index = lines.schema.get_field_index("quantity")
    return lines.set_column(index, pa.field("quantity", pa.int64(), nullable=False), lines["quantity"].cast(pa.int64()))


def lines_of_an_order_deleted(lines):
    return lines.filter(pc.not_equal(lines["order_id"], lines["order_id"][0]))


def run_checks(lake, days: list[date]) -> tuple[dict[tuple[str, str], dg.AssetCheckEvaluation], set[tuple[str, str]]]:
    """Every check of the lake tables on `days` (one run; a range run when several), alone: the
    evaluations, and the checks that failed the run as blocking checks."""
    defs = make_definitions(lake, orders_per_day=40)
    keys = {key for key in defs.resolve_asset_graph().asset_check_keys if key.asset_key.path[-1] in TABLES}
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection=set(), asset_check_selection=keys)
    with dg.DagsterInstance.ephemeral() as instance:
        for table in DERIVED:  # a derived table's checks evaluate the days its latest build wrote
            instance.report_runless_asset_event(dg.AssetMaterialization(table, metadata={"built_days": [str(d) for d in days]}))
        tags = {"dagster/asset_partition_range_start": str(days[0]), "dagster/asset_partition_range_end": str(days[-1])}
        result = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
    blocked = {
        (table, name)
        for failure in result.get_step_failure_events()
        for table, names in re.findall(r"^(\w+): ([\w,]+)$", failure.step_failure_data.error.message, re.MULTILINE)
        for name in names.split(",")
    }
    return {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}, blocked


def metadata(evaluation: dg.AssetCheckEvaluation) -> dict:
    return {key: value.value for key, value in evaluation.metadata.items()}


THIRD, LAST = DAYS[2], DAYS[-1]
CORRUPTIONS = [
    # (label, corruption of a day, the day, the checks it fails on that day only)
    ("duplicate key on one day of several", rewrite("order_lines", duplicate_line_key), THIRD,
     {("order_lines", "keys_not_null_and_unique")}),
    ("null key (nullable column) on one day", rewrite("order_lines", null_line_number), THIRD,
     {("order_lines", "keys_not_null_and_unique"), ("order_lines", "schema_matches_contract")}),
    ("schema drift on one day", rewrite("order_lines", retyped_quantity), DAYS[1],
     {("order_lines", "schema_matches_contract")}),
    ("conservation mismatch on one day", rewrite("order_lines", lines_of_an_order_deleted), THIRD,
     {("order_lines", "records_conserved")}),
    ("row-count anomaly on the last day", rewrite("orders", lambda orders: orders.slice(0, 3)), LAST,
     {("orders", "row_count_not_anomalous"), ("orders", "orders_match_lines")}),
    ("duplicate customer on one day: only that day is withdrawn", rewrite(
        "dim_customers", lambda customers: pa.concat_tables([customers, customers.slice(0, 1)])), DAYS[1],
     {("dim_customers", "keys_not_null_and_unique")}),
]
BATCH_BYTES = {"one batch": checks.BATCH_BYTES, "a day per batch": 1}


@pytest.fixture(scope="module")
def intact(materialized_lake, tmp_path_factory):
    """What the range run gives on the intact lake: which checks fail on which days (the WARN
    totals_reconcile does on some)."""
    copy = tmp_path_factory.mktemp("intact") / "lake"
    shutil.copytree(materialized_lake, copy)
    evaluations, blocked = run_checks(copy, DAYS)
    assert blocked == set()
    return {key: metadata(e).get("days_failed", []) for key, e in evaluations.items()}


@pytest.mark.parametrize("batch_bytes", BATCH_BYTES.values(), ids=BATCH_BYTES.keys())
@pytest.mark.parametrize("label, corrupt, day, failures", CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_a_range_fails_on_the_corrupted_day_with_that_days_own_outcome(lake, intact, monkeypatch, batch_bytes,
                                                                         label, corrupt, day, failures):
    monkeypatch.setattr(checks, "BATCH_BYTES", batch_bytes)
    corrupt(lake, day)
    evaluations, blocked = run_checks(lake, DAYS)
    assert set(evaluations) == set(intact)
    days_failed = {key: metadata(e)["days_failed"] for key, e in evaluations.items()}
    assert days_failed == {key: sorted({*failed, *([str(day)] if key in failures else [])}) for key, failed in intact.items()}
    assert all(metadata(e)["days_checked"] == len(DAYS) for e in evaluations.values())
    assert blocked == {key for key in failures if evaluations[key].blocking}
    # A derived table's day failing a blocking check is withdrawn, that day only.
    for table in DERIVED:
        withdrawn = {d for d in DAYS if (lake / "quarantine" / table / f"dt={d}" / "withdrawn.parquet").exists()}
        assert withdrawn == ({day} if any(t == table for t, _ in failures) else set()), table
    if any(t in DERIVED for t, _ in failures):
        return  # the day is withdrawn: a run of it alone has nothing to read
    alone, _ = run_checks(lake, [day])
    for key in failures:  # the range names the corrupted day's own outcome: what a run of that day alone says
        assert metadata(evaluations[key])["first_failure"] == metadata(alone[key]), key
        assert not alone[key].passed


SELECTIONS = [
    # (label, the checks selected, each table's columns read of each day: none for a footer alone)
    ("schema and row count: footers only", {("order_lines", "schema_matches_contract"), ("orders", "row_count_not_anomalous"),
                                           ("orders", "schema_matches_contract")}, {}),
    ("keys: the key columns only", {("orders", "keys_not_null_and_unique"), ("orders", "schema_matches_contract")},
     {"orders": ("order_id",)}),
    ("several checks: their columns read once", {("order_lines", "keys_not_null_and_unique"), ("order_lines", "records_conserved"),
                                                ("order_lines", "quantities_positive_prices_non_negative")},
     {"order_lines": ("order_id", "line_number", "quantity", "unit_price")}),
]


@pytest.mark.parametrize("label, selected, columns", SELECTIONS, ids=[s[0] for s in SELECTIONS])
def test_a_step_reads_of_each_day_only_what_its_selected_checks_need(lake, monkeypatch, label, selected, columns):
    read = []
    as_rows = checks._as_rows

    def recorded(table, paths, schemas, wanted):
        read.extend((table, day, tuple(wanted)) for day in paths)
        return as_rows(table, paths, schemas, wanted)

    monkeypatch.setattr(checks, "_as_rows", recorded)
    defs = make_definitions(lake, orders_per_day=40)
    keys = {dg.AssetCheckKey(dg.AssetKey(table), name) for table, name in selected}
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection=set(), asset_check_selection=keys)
    with dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(instance=instance, tags=RANGE)
    assert result.success
    assert sorted(read) == sorted((table, day, wanted) for table, wanted in columns.items() for day in DAYS)
    evaluations = {(e.asset_key.path[-1], e.check_name): metadata(e) for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == selected
    assert all(m == {"days_checked": len(DAYS), "days_failed": []} for m in evaluations.values()), evaluations


@pytest.mark.parametrize("columns", [3, 3000], ids=["a footer in the first read", "a footer larger than the first read"])
def test_a_footer_gives_the_files_schema_and_row_count(tmp_path, columns):
    table = pa.table({f"c{n}": pa.array([n, None], pa.int32()) for n in range(columns)})
    store = LakeStore.from_uri(str(tmp_path))
    store.write_parquet("processed/t/dt=2024-01-15/part-00000.parquet", table)
    footer = checks._footer(store, "processed/t/dt=2024-01-15/part-00000.parquet")
    assert (footer.schema, footer.rows) == (table.schema, 2)
    assert (pq.ParquetFile(store.full_path("processed/t/dt=2024-01-15/part-00000.parquet")).metadata.serialized_size
            > FOOTER_READ) == (columns > 3)
    with pytest.raises(FileNotFoundError):
        checks._footer(store, "processed/t/dt=2024-01-16/part-00000.parquet")
