"""Nothing lost, nothing stalls: empty days keep the contract, overlapping runs never lose an
update, killed runs leave nothing behind, and catalog readers never block the writer."""

import json
import signal
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timedelta

import dagster as dg
import pyarrow.parquet as pq
import pytest

from ecomm_assets.assets import lake
from ecomm_assets.core.catalog import sync_lock_path
from ecomm_assets.core.purchase_log import purchase_log_csv
from ecomm_assets.core.schemas import LAKE_TABLES
from ecomm_assets_tests.conftest import PROJECT, make_definitions

RANGE_TAGS = {"dagster/asset_partition_range_start": "2024-01-10", "dagster/asset_partition_range_end": "2024-01-22"}
RANGE_DAYS = [str(date(2024, 1, 10) + timedelta(days=n)) for n in range(13)]


def landed_order(order_id: str, when: str, customer: str | None = "c1") -> dict:
    return {"order_id": order_id, "order_date": when, "total_amount": 10.0,
            "customer": {"customer_id": customer, "name": "Ann", "email": "a@x", "address": "1 Main St"},
            "products": [{"product_id": "p1", "name": "Pen", "category": "office", "price": 10.0, "quantity": 1}]}


def land(lake_dir, name: str, orders: list[dict]) -> None:
    path = lake_dir / "landing" / "orders" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(order) for order in orders) + "\n")


def described(schema) -> list[tuple]:
    return [(f.name, str(f.type), f.nullable) for f in schema]


def test_a_range_over_days_without_orders_writes_every_file_with_its_contract(lake_dir, instance):
    """A landing-only lake (no generated orders): some days of the range have landed orders, the
    others none. Every table's file of every day, empty or not, has exactly its contract's schema."""
    defs = make_definitions(lake_dir, orders_per_day=0)
    land(lake_dir, "drop.jsonl", [landed_order("L1", "2024-01-12T08:00:00Z"), landed_order("L2", "2024-01-15T09:00:00Z"),
                                  landed_order("L3", "2024-01-15T10:00:00Z", customer=None)])
    assert defs.resolve_job_def("ingest_landing_job").execute_in_process(instance=instance).success

    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(instance=instance, tags=RANGE_TAGS, raise_on_error=False)

    assert result.success, [e.message for e in result.all_events if e.is_failure]
    for table, contract in LAKE_TABLES.items():
        files = sorted((lake_dir / "processed" / table).glob("dt=*/part-00000.parquet"))
        assert [f.parent.name for f in files] == [f"dt={day}" for day in RANGE_DAYS], table
        for path in files:
            assert described(pq.read_schema(path)) == described(contract), path
    lines = pq.read_table(lake_dir / "processed" / "order_lines").to_pydict()
    assert sorted(lines["order_id"]) == ["L1", "L2", "L3"]


def ingested(defs, lake_dir, day):
    """New orders the way producers deliver them: landed, then ingested (under the days' locks)."""
    land(lake_dir, "second.jsonl", [landed_order(f"NEW{n}", f"{day}T1{n}:00:00Z") for n in range(3)])
    return defs.resolve_job_def("ingest_landing_job").execute_in_process(raise_on_error=False).success


def written_without_lock(defs, lake_dir, day):
    """New orders written into the day's raw folder by a writer that takes no lock."""
    lines = "".join(json.dumps(landed_order(f"NEW{n}", f"{day}T1{n}:00:00Z")) + "\n" for n in range(3))
    (lake_dir / f"raw/orders/dt={day}/zz-unlocked.jsonl").write_text(lines)
    return True


@pytest.mark.parametrize(("new_orders", "run_a_succeeds"), [(ingested, True), (written_without_lock, False)])
def test_a_run_paused_after_listing_its_inputs_never_replaces_a_newer_day(lake_dir, monkeypatch, new_orders, run_a_succeeds):
    """Run A of order_lines lists the day's raw files and is paused; three new orders arrive and
    run B materializes the day; then A resumes. The day ends with every order, in order_lines and
    in orders alike: A either ran before the new orders (the ingest waited for its lock) or saw
    its inputs change and wrote nothing."""
    defs = make_definitions(lake_dir, orders_per_day=0)
    job = defs.resolve_implicit_global_asset_job_def()
    day = "2024-01-15"
    land(lake_dir, "first.jsonl", [landed_order("OLD1", f"{day}T08:00:00Z"), landed_order("OLD2", f"{day}T09:00:00Z")])
    assert defs.resolve_job_def("ingest_landing_job").execute_in_process().success
    both = [dg.AssetKey("order_lines"), dg.AssetKey("orders")]
    assert job.execute_in_process(partition_key=day, asset_selection=both).success

    listed, resume = threading.Event(), threading.Event()
    listing = lake.raw_day_files

    def pausing_listing(store, listed_day, *feed):
        files = listing(store, listed_day, *feed)
        if threading.current_thread().name == "run-A" and not listed.is_set():
            listed.set()
            resume.wait(120)
        return files

    monkeypatch.setattr(lake, "raw_day_files", pausing_listing)
    results = {}

    def run_a():
        results["A"] = job.execute_in_process(partition_key=day, asset_selection=[dg.AssetKey("order_lines")], raise_on_error=False)

    def run_b():
        results["new orders"] = new_orders(defs, lake_dir, day)
        results["B"] = job.execute_in_process(partition_key=day, asset_selection=both, raise_on_error=False)

    a = threading.Thread(target=run_a, name="run-A")
    a.start()
    assert listed.wait(120)
    b = threading.Thread(target=run_b, name="run-B")
    b.start()
    b.join(timeout=6)  # unguarded, B has finished by now; guarded, it waits for A's lock
    resume.set()
    a.join(120)
    b.join(120)

    assert results["new orders"] and results["B"].success
    assert results["A"].success is run_a_succeeds
    if not run_a_succeeds:
        [failure] = [e for e in results["A"].all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
        assert "raw/orders changed while this run computed from them" in failure.event_specific_data.error.cause.message
    lines = set(pq.read_table(lake_dir / f"processed/order_lines/dt={day}").column("order_id").to_pylist())
    orders = set(pq.read_table(lake_dir / f"processed/orders/dt={day}").column("order_id").to_pylist())
    assert lines == orders == {"OLD1", "OLD2", "NEW0", "NEW1", "NEW2"}


def landed_orders(lake_dir, name: str, day: str, count: int) -> None:
    land(lake_dir, f"{name}.jsonl", [landed_order(f"{name}-{n}", f"{day}T1{n}:00:00Z") for n in range(count)])


def landed_purchases(lake_dir, name: str, day: str, count: int) -> None:
    start = datetime.fromisoformat(day) + timedelta(hours=1)
    log = purchase_log_csv(count, seed=len(name), start=start, hours=10)
    (lake_dir / "landing" / "purchases").mkdir(parents=True, exist_ok=True)
    (lake_dir / "landing" / "purchases" / f"{name}.csv").write_bytes(log)


@pytest.mark.parametrize(("table", "land_records", "ingest_job", "loaded"), [
    ("order_lines", landed_orders, "ingest_landing_job", "orders_loaded"),
    ("purchase_events", landed_purchases, "ingest_purchases_job", "events_loaded"),
])
def test_records_landed_between_a_build_and_its_checks_are_the_next_builds(lake_dir, table, land_records, ingest_job, loaded):
    """A day is built, then new records land (an ingest between the build's step and its checks'
    step, as when the ingest waited for the build's day lock): the checks evaluate the build, which
    conserved what it read, and say that a file landed since; the next build takes both files."""
    defs = make_definitions(lake_dir, orders_per_day=0)
    job = defs.resolve_implicit_global_asset_job_def()
    key, day = dg.AssetKey(table), "2024-01-15"
    checks = {check for check in defs.resolve_asset_graph().asset_check_keys if check.asset_key == key}

    def ingest(name: str, count: int) -> None:
        land_records(lake_dir, name, day, count)
        assert defs.resolve_job_def(ingest_job).execute_in_process().success

    def conserved(result: dg.ExecuteInProcessResult) -> dict:
        [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == "records_conserved"]
        assert evaluation.passed, evaluation.metadata
        return {name: evaluation.metadata[name].value
                for name in ("records_read", loaded, "unaccounted", "raw_files_read", "raw_files_landed_since_build")}

    ingest("first", 4)
    assert job.get_subset(asset_selection={key}, asset_check_selection=set()).execute_in_process(partition_key=day).success
    ingest("second", 3)
    checked = job.get_subset(asset_selection=set(), asset_check_selection=checks).execute_in_process(partition_key=day)
    assert conserved(checked) == {"records_read": 4, loaded: 4, "unaccounted": 0, "raw_files_read": 1,
                                  "raw_files_landed_since_build": 1}
    rebuilt = job.get_subset(asset_selection={key}, asset_check_selection=checks).execute_in_process(partition_key=day)
    assert conserved(rebuilt) == {"records_read": 7, loaded: 7, "unaccounted": 0, "raw_files_read": 2,
                                  "raw_files_landed_since_build": 0}


@pytest.mark.parametrize(("source", "table", "land_records", "ingest_job", "check", "flag"), [
    ("order_lines", "orders", landed_orders, "ingest_landing_job", "orders_match_lines", "order_lines_newer_than_build"),
    ("purchase_events", "purchase_breakdown", landed_purchases, "ingest_purchases_job", "adds_up_to_the_days_purchases",
     "purchase_events_newer_than_build"),
])
def test_a_table_checked_after_its_input_was_rebuilt_is_the_next_builds(lake_dir, instance, source, table, land_records,
                                                                         ingest_job, check, flag):
    """A day's input table and table are built; new records land and another run rebuilds the
    day's input before this run's checks of the table: the check comparing the two does not fail
    the build for rows it never read (its metadata says why), and the table built again matches."""
    defs = make_definitions(lake_dir, orders_per_day=0)
    job = defs.resolve_implicit_global_asset_job_def()
    day, source_key, key = "2024-01-15", dg.AssetKey(source), dg.AssetKey(table)
    checks = {dg.AssetCheckKey(key, check)}

    def built(*keys: dg.AssetKey, checked: bool = False) -> dg.ExecuteInProcessResult:
        result = job.get_subset(asset_selection=set(keys), asset_check_selection=checks if checked else set()).execute_in_process(
            partition_key=day, instance=instance, raise_on_error=False)
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        return result

    def compared(result: dg.ExecuteInProcessResult) -> bool:
        [evaluation] = result.get_asset_check_evaluations()
        assert evaluation.passed
        return evaluation.metadata[flag].value

    land_records(lake_dir, "first", day, 2)
    assert defs.resolve_job_def(ingest_job).execute_in_process(instance=instance).success
    built(source_key, key)
    land_records(lake_dir, "second", day, 3)
    assert defs.resolve_job_def(ingest_job).execute_in_process(instance=instance).success
    built(source_key)
    assert compared(built(checked=True)) is True
    assert compared(built(key, checked=True)) is False


KILLING_RUN = """
import importlib, os, signal, sys
from pathlib import Path
from ecomm_assets_tests.conftest import PROJECT, make_definitions

lake_dir, target, match, nth, start, end = sys.argv[1:]
module, _, name = target.rpartition(".")
owner = importlib.import_module(module) if module in ("os",) else None
if owner is None:
    module_name, _, class_name = module.rpartition(".")
    owner = getattr(importlib.import_module(module_name), class_name)
original, calls = getattr(owner, name), []

def killing(*args, **kwargs):
    if match in " ".join(str(a) for a in args):
        calls.append(1)
        if len(calls) == int(nth):
            os.kill(os.getpid(), signal.SIGKILL)
    return original(*args, **kwargs)

setattr(owner, name, killing)
defs = make_definitions(Path(lake_dir), orders_per_day=50)
tags = {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}
defs.resolve_implicit_global_asset_job_def().execute_in_process(tags=tags)
"""
FAULT_DAYS = ("2024-01-10", "2024-01-12")


def lake_rows(lake_dir) -> dict:
    """Every table's rows, read the way a reader does (every file must be readable)."""
    return {table: sorted(map(str, pq.read_table(lake_dir / "processed" / table).to_pylist())) for table in LAKE_TABLES}


def leftovers(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.endswith(".tmp") or ".staging/" in str(p) or ".locks/" in str(p)
                  or p.name.startswith(".catalog") and str(p) != sync_lock_path(str(folder / "catalog.duckdb")))


@pytest.mark.parametrize(
    ("target", "match", "nth"),
    [
        ("ecomm_assets.core.duck.DayFiles.write", "", 2),  # while a staged file is being written
        ("os.replace", "processed/order_lines/dt=2024-01-11", 1),  # staged, not yet renamed into place
        ("os.replace", "processed/orders/dt=", 2),  # one day of the range replaced, the others not
        ("os.replace", "catalog.duckdb", 1),  # the catalog's new copy built, not yet renamed over it
    ],
)
def test_a_run_killed_mid_write_leaves_the_lake_readable_and_nothing_behind(tmp_path, target, match, nth):
    lake_dir = tmp_path / "lake"
    defs = make_definitions(lake_dir, orders_per_day=50)
    tags = {"dagster/asset_partition_range_start": FAULT_DAYS[0], "dagster/asset_partition_range_end": FAULT_DAYS[1]}
    job = defs.resolve_implicit_global_asset_job_def()
    assert job.execute_in_process(tags=tags).success
    before = lake_rows(lake_dir)

    killed = subprocess.run([sys.executable, "-c", KILLING_RUN, str(lake_dir), target, match, str(nth), *FAULT_DAYS],
                            cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert leftovers(tmp_path)  # the kill struck mid-write
    assert lake_rows(lake_dir) == before  # the previous partitions, intact and readable

    started = time.monotonic()
    assert job.execute_in_process(tags=tags).success
    assert time.monotonic() - started < 60  # no lock of the dead run to wait for
    assert lake_rows(lake_dir) == before
    assert leftovers(tmp_path) == []
