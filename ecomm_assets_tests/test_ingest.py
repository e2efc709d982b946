"""The landing ingest end to end: a file's failure never stops the others, the lake's day window,
the newest landed version wins, hostile names and symlinks are refused, hidden names are logged, gzip,
and each handled file moves to landing/_ingested/orders/ without ever losing a version written meanwhile."""

import gzip
import importlib
import json
import os
import re
import threading
import time
from datetime import UTC, datetime, timedelta

import boto3
import dagster as dg
import duckdb
import pytest

from ecomm_assets.assets import landing as landing_module
from ecomm_assets.assets.landing import unsafe_name_problem
from ecomm_assets.core import storage
from ecomm_assets.core.landing import file_id
from ecomm_assets.core.layout import landing_raw_name
from ecomm_assets.core.locks import day_locks
from ecomm_assets.core.storage import LakeStore
from ecomm_assets.definitions import definitions_with, resources_from
from ecomm_assets.resources import LakeResource
from ecomm_assets.settings import CatalogBackend, Settings
from ecomm_assets_tests.conftest import make_definitions, project_loaded_with
from ecomm_assets_tests.core.test_storage import RacingClient, RacingOs
from ecomm_assets_tests.test_automation import sensor_requests
from ecomm_assets_tests.test_definitions import (
    land,
    landed_order,
    recompute_tick,
    run_requests,
)
from lambda_bridge.handler import unsafe_key_reason

TODAY = datetime.now(UTC).date()


def jsonl(*orders) -> bytes:
    return "".join(json.dumps(order) + "\n" for order in orders).encode()


def ingest(defs, instance, **config) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def("ingest_landing_job").execute_in_process(
        instance=instance, run_config={"ops": {"ingest_landing_files": {"config": config}}}, raise_on_error=False
    )


def loaded(lake_dir) -> list[tuple]:
    return duckdb.sql(
        f"SELECT order_id, order_date::VARCHAR, unit_price::DOUBLE FROM '{lake_dir}/processed/order_lines/*/*.parquet' ORDER BY 1"
    ).fetchall()


def landed_files_metadata(instance) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey("landed_files"))
    return {key: value.value for key, value in event.asset_materialization.metadata.items()}


def alerts(lake_dir) -> list[dict]:
    path = lake_dir.parent / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def set_landed_at(lake_dir, name: str, moment: datetime) -> None:
    os.utime(lake_dir / "landing" / "orders" / name, (moment.timestamp(), moment.timestamp()))


LANDED_AT = datetime(2024, 2, 1, 9, 0, tzinfo=UTC)
DEEP = b'{"order_id": "B1", "order_date": "2024-01-15T10:00:00Z", "x": ' + b"[" * 10_000 + b"]" * 10_000 + b"}\n"


def nested_10000_deep(lake_dir) -> str:
    land(lake_dir, "b_fault.jsonl", DEEP)
    return "b_fault.jsonl"


def raw_path_taken_by_a_folder(lake_dir) -> str:
    data = jsonl(landed_order("B1", "2024-01-15T11:00:00Z"), landed_order("B2", "2024-01-17T11:00:00Z"))
    land(lake_dir, "b_fault.jsonl", data)
    set_landed_at(lake_dir, "b_fault.jsonl", LANDED_AT)
    blocker = lake_dir / "raw/orders/dt=2024-01-17" / landing_raw_name(LANDED_AT, file_id(data))
    blocker.mkdir(parents=True)
    (blocker / "occupied").write_text("a folder where the ingest writes a file")
    return "b_fault.jsonl"


def test_the_landed_files_materialization_shows_what_became_of_each_file(lake_dir, instance):
    """The feed's bookmark in the UI: each file of the run with its state and counts, one table."""
    defs = make_definitions(lake_dir, orders_per_day=0)
    land(lake_dir, "good|one.jsonl", jsonl(landed_order("A1", "2024-01-15T09:00:00Z"), landed_order("A2", "2024-01-16T09:00:00Z")))
    land(lake_dir, "empty.json", b"  \n")
    assert not ingest(defs, instance, files=["good|one.jsonl", "empty.json", "missing.jsonl"]).success  # missing: retried
    table = landed_files_metadata(instance)["files"]
    header, _, *rows = table.splitlines()
    assert header == "| file | state | file_id | records_read | records_routed | records_quarantined | days |"
    cells = [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]
    assert [(c[0], c[1].split(":")[0], c[3:]) for c in cells] == [
        ("good\\|one.jsonl", "ingested", ["2", "2", "0", "2024-01-15, 2024-01-16"]),
        ("empty.json", "quarantined whole", ["0", "0", "0", ""]),
        ("missing.jsonl", "not ingested, still pending", ["", "", "", ""]),
    ]
    assert cells[1][1] == "quarantined whole: empty file" and cells[0][2] == file_id((lake_dir / "landing/_ingested/orders/good|one.jsonl").read_bytes())


@pytest.mark.parametrize(
    "make_fault, quarantined_whole",
    [(nested_10000_deep, False), (raw_path_taken_by_a_folder, True)],
    ids=["a record nested 10,000 deep (once a RecursionError)", "a raw day file that cannot be written"],
)
def test_one_file_failing_never_stops_the_others(lake_dir, instance, make_fault, quarantined_whole):
    defs = make_definitions(lake_dir, orders_per_day=0)
    land(lake_dir, "a_before.jsonl", jsonl(landed_order("A1", "2024-01-15T09:00:00Z")))
    fault = make_fault(lake_dir)
    land(lake_dir, "c_after.jsonl", jsonl(landed_order("C1", "2024-01-16T09:00:00Z")))

    result = None

    def run_ingest():
        nonlocal result
        result = ingest(defs, instance, files=["a_before.jsonl", fault, "c_after.jsonl"])

    tick = recompute_tick(defs, instance, run_ingest)
    assert result.success
    run_requests(defs, instance, tick.run_requests)
    assert [(order_id, day) for order_id, day, _ in loaded(lake_dir)] == [("A1", "2024-01-15"), ("C1", "2024-01-16")]

    metadata = landed_files_metadata(instance)
    reports = {json.loads(p.read_text())["file"]: p.parent for p in (lake_dir / "quarantine/landing").glob("*/reason.json")}
    assert metadata["files_ingested"] == 3 and metadata["conservation_holds"] is True
    report = json.loads((reports[fault] / "reason.json").read_text())
    if not quarantined_whole:  # the record with its reason; the file itself went through
        assert report["file_error"] is None and metadata["files_quarantined_whole"] == 0
        assert [(r["record_number"], r["reason"]) for r in report["records"]] == [(1, "JSON nested too deeply")]
        assert metadata["records_quarantined"] == 1
        return
    # The file as it landed, byte for byte, with the error; the file itself is handled: moved to the archive.
    original = (lake_dir / "landing/_ingested/orders" / fault).read_bytes()
    assert not (lake_dir / "landing/orders" / fault).exists()
    assert report["file_error"] and metadata["files_quarantined_whole"] == 1
    assert (reports[fault] / f"file-{fault}").read_bytes() == original
    assert [fault in alert["error"] and alert["run_id"] == result.run_id for alert in alerts(lake_dir)] == [True]
    # Nothing of a file quarantined whole stays in raw: its records are never counted twice.
    assert not [p for p in (lake_dir / "raw/orders").glob(f"*/*{file_id(original)}.jsonl") if p.is_file()]


def named_but_missing(lake_dir, monkeypatch) -> dict:
    return {"files": ["a_before.jsonl", "b_gone.jsonl", "c_after.jsonl"]}


def vanished_after_the_listing(lake_dir, monkeypatch) -> dict:
    land(lake_dir, "b_gone.jsonl", jsonl(landed_order("B1", "2024-01-15T11:00:00Z")))
    read_confined = LakeStore.read_confined

    def producer_moves_it_away_first(store, folder, name):  # between the listing and the read
        if name == "b_gone.jsonl":
            (lake_dir / "landing/orders/b_gone.jsonl").unlink(missing_ok=True)
        return read_confined(store, folder, name)

    monkeypatch.setattr(LakeStore, "read_confined", producer_moves_it_away_first)
    return {}  # every pending file


@pytest.mark.parametrize("make_fault", [named_but_missing, vanished_after_the_listing])
def test_a_file_not_ingested_fails_the_run_after_the_others_went_in(lake_dir, instance, make_fault, monkeypatch):
    """Not ingested (unreadable, vanished, a day lock timeout) is no verdict about the file: the run
    fails after the others, so it alerts and can be retried, and the days it touched are recomputed."""
    defs = make_definitions(lake_dir, orders_per_day=0)
    land(lake_dir, "a_before.jsonl", jsonl(landed_order("A1", "2024-01-15T09:00:00Z")))
    land(lake_dir, "c_after.jsonl", jsonl(landed_order("C1", "2024-01-16T09:00:00Z")))
    result = ingest(defs, instance, **make_fault(lake_dir, monkeypatch))

    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "b_gone.jsonl: not ingested" in failure.event_specific_data.error.message
    metadata = landed_files_metadata(instance)
    assert (metadata["files_ingested"], metadata["files_not_ingested"]) == (2, 1)
    context = dg.build_run_status_sensor_context(
        sensor_name="recompute_landed_days_after_failure", dagster_instance=instance,
        dagster_run=instance.get_run_by_id(result.run_id), dagster_event=result.get_run_failure_event(),
        resources={"alerts": defs.resources["alerts"]},
    )
    requests = list(defs.resolve_sensor_def("recompute_landed_days_after_failure")(context))
    run_requests(defs, instance, requests)
    assert [(order_id, day) for order_id, day, _ in loaded(lake_dir)] == [("A1", "2024-01-15"), ("C1", "2024-01-16")]
    defs.resolve_sensor_def("run_failure_alerts")(context.for_run_failure())
    assert ["b_gone.jsonl: not ingested" in alert["error"] for alert in alerts(lake_dir)] == [True]


@pytest.mark.parametrize(
    "recompute_start, expected_runs, alerted",
    [
        # Today and tomorrow are kept in raw and left to the daily schedule; consecutive days run as one range.
        ("2024-01-01", [("2024-01-14", "2024-01-15"), ("2024-01-17", "2024-01-17")], False),
        # The first partition moved after the ingest (a redeploy): that day can never run; it is alerted, not retried.
        ("2024-01-15", [("2024-01-15", "2024-01-15"), ("2024-01-17", "2024-01-17")], True),
    ],
)
def test_recompute_runs_what_it_can_and_never_stalls(lake_dir, instance, recompute_start, expected_runs, alerted):
    days = ["2024-01-14", "2024-01-15", "2024-01-17", str(TODAY), str(TODAY + timedelta(days=1))]
    land(lake_dir, "drop.jsonl", jsonl(*(landed_order(f"D{n}", f"{day}T10:00:00Z") for n, day in enumerate(days))))
    with project_loaded_with(ECOMM_START_DATE=recompute_start):
        defs = make_definitions(lake_dir, orders_per_day=0)

    def run_ingest():
        assert ingest(make_definitions(lake_dir, orders_per_day=0), instance).success

    tick = recompute_tick(defs, instance, run_ingest)
    runs = sorted(
        (r.partition_key, r.partition_key) if r.partition_key
        else (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
        for r in tick.run_requests
    )
    assert runs == expected_runs
    assert len({r.run_key for r in tick.run_requests}) == len(runs)
    assert (lake_dir / f"raw/orders/dt={TODAY}").is_dir()  # kept in raw for the daily schedule
    assert [("2024-01-14" in alert["error"]) for alert in alerts(lake_dir)] == ([True] if alerted else [])
    run_requests(defs, instance, tick.run_requests)
    ran = {str(datetime.fromisoformat(first).date() + timedelta(days=n)) for first, last in runs
           for n in range((datetime.fromisoformat(last) - datetime.fromisoformat(first)).days + 1)}
    assert {day for _, day, _ in loaded(lake_dir)} == ran


@pytest.mark.parametrize("ingest_order", [["original.json", "correction.json"], ["correction.json", "original.json"]])
def test_the_version_that_landed_last_wins_whatever_the_ingest_order(lake_dir, instance, ingest_order):
    defs = make_definitions(lake_dir, orders_per_day=0)
    land(lake_dir, "original.json", json.dumps([landed_order("W1", "2024-01-15T10:00:00Z", price=10.0)]).encode())
    land(lake_dir, "correction.json", json.dumps([landed_order("W1", "2024-01-15T10:00:00Z", price=12.0)]).encode())
    set_landed_at(lake_dir, "original.json", LANDED_AT)
    set_landed_at(lake_dir, "correction.json", LANDED_AT + timedelta(hours=1))

    tick = recompute_tick(defs, instance, lambda: ingest(defs, instance, files=ingest_order))
    run_requests(defs, instance, tick.run_requests)
    assert loaded(lake_dir) == [("W1", "2024-01-15", 12.0)]


@pytest.mark.parametrize("prices", [{"a.json": 10.0, "b.json": 12.0}, {"a.json": 12.0, "b.json": 10.0}])
def test_a_tie_in_landed_time_is_decided_by_content_hash_not_by_name(lake_dir, instance, prices):
    defs = make_definitions(lake_dir, orders_per_day=0)
    contents = {name: json.dumps([landed_order("W1", "2024-01-15T10:00:00Z", price=price)]).encode() for name, price in prices.items()}
    for name, data in contents.items():
        land(lake_dir, name, data)
        set_landed_at(lake_dir, name, LANDED_AT)

    run_requests(defs, instance, recompute_tick(defs, instance, lambda: ingest(defs, instance)).run_requests)
    winner = max(contents, key=lambda name: file_id(contents[name]))
    assert loaded(lake_dir) == [("W1", "2024-01-15", prices[winner])]


def test_a_new_version_of_a_landed_file_supersedes_the_old_one(lake_dir, instance):
    defs = make_definitions(lake_dir, orders_per_day=0)
    old = jsonl(landed_order("A1", "2024-01-15T10:00:00Z"))
    new = jsonl(landed_order("B1", "2024-01-16T10:00:00Z"))
    land(lake_dir, "one.jsonl", old)
    set_landed_at(lake_dir, "one.jsonl", LANDED_AT)
    run_requests(defs, instance, recompute_tick(defs, instance, lambda: ingest(defs, instance)).run_requests)
    assert [order_id for order_id, _, _ in loaded(lake_dir)] == ["A1"]

    land(lake_dir, "one.jsonl", new)  # overwritten in place
    set_landed_at(lake_dir, "one.jsonl", LANDED_AT + timedelta(hours=1))
    tick = recompute_tick(defs, instance, lambda: ingest(defs, instance))
    assert [(r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
            for r in tick.run_requests] == [("2024-01-15", "2024-01-16")]  # the old version's day is recomputed
    run_requests(defs, instance, tick.run_requests)
    assert loaded(lake_dir) == [("B1", "2024-01-16", 10.0)]
    manifest = lake_dir / "raw/_landing_manifest"
    assert json.loads((manifest / f"{file_id(old)}.json").read_text())["superseded_by"] == file_id(new)
    assert "superseded_by" not in json.loads((manifest / f"{file_id(new)}.json").read_text())


def test_two_new_versions_racing_for_the_old_version_s_day_leave_one_version(lake_dir, monkeypatch):
    """Each ingest reads the earlier versions of its name; the one that gets the locks second must
    see what the first recorded meanwhile, and supersede it too."""
    defs = make_definitions(lake_dir, orders_per_day=0)
    store = LakeResource(uri=str(lake_dir)).store()
    land(lake_dir, "one.jsonl", jsonl(landed_order("A1", "2024-01-15T10:00:00Z")))
    assert ingest(defs, dg.DagsterInstance.ephemeral()).success
    read_confined, read = LakeStore.read_confined, threading.Semaphore(0)

    def signalling_read(store, folder, name):
        try:
            return read_confined(store, folder, name)
        finally:
            read.release()

    monkeypatch.setattr(LakeStore, "read_confined", signalling_read)
    runs = []
    with day_locks(store, ["2024-01-15"], holder="another run"):  # the old version's day: both wait for it
        for order_id, day in (("B1", "2024-01-16"), ("C1", "2024-01-17")):
            land(lake_dir, "one.jsonl", jsonl(landed_order(order_id, f"{day}T10:00:00Z")))
            runs.append(threading.Thread(target=ingest, args=(defs, dg.DagsterInstance.ephemeral()), kwargs={"files": ["one.jsonl"]}))
            runs[-1].start()
            assert read.acquire(timeout=60)
        time.sleep(1)  # both have read the manifest and wait for the day
    for run in runs:
        run.join(timeout=120)
    manifest = [json.loads(p.read_text()) for p in (lake_dir / "raw/_landing_manifest").iterdir()]
    [current] = [entry for entry in manifest if "superseded_by" not in entry]
    raw = sorted(p.name for p in (lake_dir / "raw/orders").glob("*/*.jsonl"))
    assert raw == [landing_raw_name(datetime.fromisoformat(current["landed_at"]), current["file_id"])]


def test_an_ingest_stopped_while_superseding_is_repaired_by_the_next_one(lake_dir, instance, monkeypatch):
    """The run dies after removing the old version's raw files and before both manifest entries
    are written: the next ingest must finish the superseding, so that putting the old content back
    later ingests it again (it must not look ingested while its raw files are gone)."""
    defs = make_definitions(lake_dir, orders_per_day=0)
    old, new = jsonl(landed_order("A1", "2024-01-15T10:00:00Z")), jsonl(landed_order("B1", "2024-01-16T10:00:00Z"))
    land(lake_dir, "one.jsonl", old)
    set_landed_at(lake_dir, "one.jsonl", LANDED_AT)
    assert ingest(defs, instance).success
    land(lake_dir, "one.jsonl", new)
    set_landed_at(lake_dir, "one.jsonl", LANDED_AT + timedelta(hours=1))
    write_bytes = LakeStore.write_bytes

    def dies_marking_the_old_version(store, rel, data):
        if rel.endswith(f"/{file_id(old)}.json") and b"superseded_by" in data:
            raise OSError("the run worker died here")
        return write_bytes(store, rel, data)

    with monkeypatch.context() as patch:
        patch.setattr(LakeStore, "write_bytes", dies_marking_the_old_version)
        ingest(defs, instance)
    assert ingest(defs, instance).success  # the retry, or the next run
    land(lake_dir, "one.jsonl", old)  # put back
    set_landed_at(lake_dir, "one.jsonl", LANDED_AT + timedelta(hours=2))
    assert ingest(defs, instance).success
    raw = sorted(p.relative_to(lake_dir / "raw/orders").as_posix() for p in (lake_dir / "raw/orders").glob("*/*.jsonl"))
    assert raw == [f"dt=2024-01-15/{landing_raw_name(LANDED_AT + timedelta(hours=2), file_id(old))}"]
    manifest = lake_dir / "raw/_landing_manifest"
    assert json.loads((manifest / f"{file_id(new)}.json").read_text())["superseded_by"] == file_id(old)


def test_moving_the_start_date_earlier_and_reingesting_routes_what_was_before_it(lake_dir, instance):
    data = jsonl(landed_order("E1", "2024-01-05T10:00:00Z"), landed_order("E2", "2024-01-12T10:00:00Z"))
    land(lake_dir, "early.jsonl", data)
    with project_loaded_with(ECOMM_START_DATE="2024-01-10"):
        assert ingest(make_definitions(lake_dir, orders_per_day=0), instance).success
    reason = lake_dir / "quarantine/landing" / file_id(data) / "reason.json"
    [record] = json.loads(reason.read_text())["records"]
    assert record["reason"] == "before the first partition: 2024-01-05 < 2024-01-10"

    earlier = make_definitions(lake_dir, orders_per_day=0)
    assert ingest(earlier, instance).success and not list((lake_dir / "raw/orders").glob("dt=2024-01-05/*"))  # content already ingested
    tick = recompute_tick(earlier, instance, lambda: ingest(earlier, instance, reingest=True))
    assert sorted(r.partition_key for r in tick.run_requests) == ["2024-01-05", "2024-01-12"]
    assert not reason.exists()
    run_requests(earlier, instance, tick.run_requests)
    assert [(order_id, day) for order_id, day, _ in loaded(lake_dir)] == [("E1", "2024-01-05"), ("E2", "2024-01-12")]


@pytest.mark.parametrize(
    "name",
    ["../../../../proc/self/environ", "/etc/hostname", "a/../../../x.json", "a\\..\\..\\x.json", "", "a//b.json",
     "a\x00.json", "./a.json", "sub/..", "..", "a.jsonl\u0001", "a.jsonl\n", "a\x7f.json", "a\x85.json", "a\u2028.json"],
)
def test_hostile_names_are_refused_before_anything_is_read(lake_dir, instance, name):
    land(lake_dir, "a.json", b"[]")
    result = ingest(make_definitions(lake_dir, orders_per_day=0), instance, files=[name])
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "refused landed file names" in failure.event_specific_data.error.message
    assert sorted(p.relative_to(lake_dir).as_posix() for p in lake_dir.rglob("*") if p.is_file()) == ["landing/orders/a.json"]


@pytest.mark.parametrize(
    "name, reason",
    [("_tmp/a.json", "hidden"), ("a/.x/b.json", "hidden"), (".a.json", "hidden"), ("a/_b.jsonl", "hidden"),
     ("notes.txt", "not .json")],
)
def test_a_run_naming_a_file_the_ingest_skips_refuses_it(lake_dir, instance, name, reason):
    land(lake_dir, name, jsonl(landed_order("H1", "2024-01-15T10:00:00Z")))
    result = ingest(make_definitions(lake_dir, orders_per_day=0), instance, files=[name])
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "refused landed file names" in failure.event_specific_data.error.message
    assert f"{name!r}: {reason}" in failure.event_specific_data.error.message
    assert not (lake_dir / "raw").exists()


@pytest.mark.parametrize("name", [".part.json", "_tmp/orders.json", "sub/.hidden.jsonl", "notes.txt", "ctl\x01.jsonl"])
def test_skipped_landing_names_are_logged_by_the_sensor_and_the_ingest(lake_dir, instance, name, capfd):
    defs = make_definitions(lake_dir, orders_per_day=0)
    land(lake_dir, name, jsonl(landed_order("H1", "2024-01-15T10:00:00Z")))
    land(lake_dir, "visible.jsonl", jsonl(landed_order("V1", "2024-01-15T10:00:00Z")))
    sensor = defs.resolve_sensor_def("landing_files_sensor")
    with dg.build_sensor_context(resources=defs.resources) as context:
        requests = sensor.evaluate_tick(context).run_requests
    assert [r.run_config["ops"]["ingest_landing_files"]["config"]["files"] for r in requests] == [["visible.jsonl"]]
    assert f"skipped {name!r}: " in capfd.readouterr().err  # the sensor's log

    result = ingest(defs, instance)
    assert result.success and result.output_for_node("ingest_landing_files") == ["2024-01-15"]
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any(message.startswith(f"skipped {name!r}: ") for message in messages)


# Names on which the package and the Lambda bridge (which ships alone, with its own copy) must agree.
@pytest.mark.parametrize(
    "name",
    ["a.jsonl", "sub/a.jsonl", "é/ü.json", "a\xa0.json", "a\u200b.json", "", "/a.json", "a/../b.json", "./a.json",
     "a//b.json", "a\\b.json", "a\x00.json", "a\x01.json", "a.jsonl\n", "a\x1f.json", "a\x7f.json", "a\x80.json",
     "a\x9f.json", "a\u2028.json", "a\u2029.json"],
)
def test_the_package_and_the_lambda_bridge_refuse_the_same_names(name):
    assert (unsafe_name_problem(name) is None) == (unsafe_key_reason(name) is None)


def outside(lake_dir, name: str, data: bytes):
    path = lake_dir.parent / "outside" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def link(lake_dir, name: str, target) -> None:
    path = lake_dir / "landing" / "orders" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


# Each makes a symlink in the landing zone; returns (the entry a listing meets, the name a run
# could be given, bytes that must never reach the lake).
def link_to_a_file_outside(lake_dir):
    link(lake_dir, "evil.jsonl", outside(lake_dir, "orders.jsonl", jsonl(landed_order("OUT1", "2024-01-15T10:00:00Z"))))
    return "evil.jsonl", "evil.jsonl", [b"OUT1"]


def link_to_the_process_environment(lake_dir):
    link(lake_dir, "environ.jsonl", "/proc/self/environ")
    with open("/proc/self/environ", "rb") as environ:  # stands for secrets: every entry of this process's environment
        return "environ.jsonl", "environ.jsonl", [entry for entry in environ.read().split(b"\0") if len(entry) > 8]


def linked_folder(lake_dir):
    link(lake_dir, "sub", outside(lake_dir, "orders.jsonl", jsonl(landed_order("OUT1", "2024-01-15T10:00:00Z"))).parent)
    return "sub", "sub/orders.jsonl", [b"OUT1"]


def link_inside_the_zone(lake_dir):
    link(lake_dir, "alias.jsonl", "visible.jsonl")  # harmless, but one rule is simpler than telling
    return "alias.jsonl", "alias.jsonl", []


def files_holding(lake_dir, secrets: list[bytes]) -> list[str]:
    """The lake's files and the alert file (symlinks not followed) that hold any of `secrets`."""
    paths = [os.path.join(parent, name) for parent, _, names in os.walk(lake_dir) for name in names]
    found = []
    for path in paths + [str(lake_dir.parent / "alerts.jsonl")]:
        if not os.path.islink(path):
            with open(path, "rb") as file:
                data = file.read()
            found += [path for secret in secrets if secret in data]
    return found


@pytest.mark.parametrize("make_link", [link_to_a_file_outside, link_to_the_process_environment, linked_folder, link_inside_the_zone])
def test_symlinks_in_the_landing_zone_are_refused_before_anything_is_read(lake_dir, instance, make_link, capfd):
    defs = make_definitions(lake_dir, orders_per_day=0)
    visible = jsonl(landed_order("V1", "2024-01-15T10:00:00Z"))
    land(lake_dir, "visible.jsonl", visible)
    listed, named, secrets = make_link(lake_dir)

    sensor = defs.resolve_sensor_def("landing_files_sensor")
    with dg.build_sensor_context(resources=defs.resources) as context:
        requests = sensor.evaluate_tick(context).run_requests
    assert [r.run_config["ops"]["ingest_landing_files"]["config"]["files"] for r in requests] == [["visible.jsonl"]]
    assert f"skipped {listed!r}: a symbolic link" in capfd.readouterr().err

    pending = ingest(defs, instance)
    assert pending.success and pending.output_for_node("ingest_landing_files") == ["2024-01-15"]
    assert any(entry.user_message.startswith(f"skipped {listed!r}: a symbolic link") for entry in instance.all_logs(pending.run_id))

    named_run = ingest(defs, instance, files=[named])
    assert named_run.success and named_run.output_for_node("ingest_landing_files") == []
    assert [named in alert["error"] and "refused" in alert["error"] for alert in alerts(lake_dir)] == [True]
    assert sorted(p.name for p in (lake_dir / "raw/_landing_manifest").iterdir()) == [f"{file_id(visible)}.json"]
    assert not (lake_dir / "quarantine").exists()
    assert files_holding(lake_dir, secrets) == []
    # The ingested file moved to the archive; the refused link, never read, stays where it is.
    assert (lake_dir / "landing/_ingested/orders/visible.jsonl").read_bytes() == visible
    assert os.path.islink(lake_dir / "landing/orders" / listed) and not (lake_dir / "landing/orders/visible.jsonl").exists()
    assert not os.path.lexists(lake_dir / "landing/_ingested/orders" / listed)


def local_lake(lake_dir, aws):
    return make_definitions(lake_dir, orders_per_day=0), LakeResource(uri=str(lake_dir)).store()


def s3_lake(lake_dir, aws):
    boto3.client("s3", endpoint_url=aws, region_name="us-east-1").create_bucket(Bucket="lake")
    lake = LakeResource(uri="s3://lake/prefix", s3_endpoint_url=aws, s3_region="us-east-1")
    defs = definitions_with(resources_from(Settings(lake_uri="s3://lake/prefix", s3_endpoint_url=aws, aws_region="us-east-1",
                                                    orders_per_day=0, catalog=CatalogBackend.GLUE, glue_endpoint_url=aws,
                                                    alerts_path=str(lake_dir.parent / "alerts.jsonl"))))
    return defs, lake.store()


@pytest.mark.parametrize("make_lake", [local_lake, s3_lake])
def test_gzip_files_are_ingested_and_a_broken_one_is_quarantined_as_it_landed(lake_dir, instance, aws, make_lake):
    defs, store = make_lake(lake_dir, aws)
    broken = gzip.compress(jsonl(landed_order("G3", "2024-01-15T10:00:00Z")))[:-9]  # cut: no CRC, no length
    for name, data in {
        "array.json.gz": gzip.compress(json.dumps([landed_order("G1", "2024-01-15T10:00:00Z")]).encode()),
        "lines.jsonl.gz": gzip.compress(jsonl(landed_order("G2", "2024-01-16T10:00:00Z"))),
        "broken.jsonl.gz": broken,
    }.items():
        store.write_bytes(f"landing/orders/{name}", data)

    tick = recompute_tick(defs, instance, lambda: ingest(defs, instance))
    run_requests(defs, instance, tick.run_requests)
    lines = store.read_parquet([f"processed/order_lines/dt={day}/part-00000.parquet" for day in ("2024-01-15", "2024-01-16")])
    assert sorted(zip(lines["order_id"].to_pylist(), map(str, lines["order_date"].to_pylist()))) == [
        ("G1", "2024-01-15"), ("G2", "2024-01-16")]
    folder = f"quarantine/landing/{file_id(broken)}"
    assert store.read_bytes(f"{folder}/file-broken.jsonl.gz") == broken
    assert json.loads(store.read_bytes(f"{folder}/reason.json"))["file_error"].startswith("not a readable gzip file")


def test_each_day_is_written_whole_from_its_staged_file_and_no_staged_file_stays(lake_dir, instance):
    """The split appends each day's records to a local staged file as it reads; the raw day file is
    then moved into the lake whole (readers never see part of it), and nothing is left behind."""
    defs = make_definitions(lake_dir, orders_per_day=0)
    orders = [landed_order(f"S{n}", f"2024-01-{15 + n % 3}T10:00:00Z") for n in range(30)]
    land(lake_dir, "days.json.gz", gzip.compress(json.dumps(orders, indent=2).encode()))
    assert ingest(defs, instance).success
    raw = {path.parent.name: [json.loads(line)["order_id"] for line in path.read_text().splitlines()]
           for path in (lake_dir / "raw/orders").glob("dt=*/*.jsonl")}
    assert raw == {f"dt=2024-01-{15 + k}": [f"S{n}" for n in range(30) if n % 3 == k] for k in range(3)}
    assert not [path for path in (lake_dir / ".staging").rglob("*") if path.is_file()]


def test_landed_files_are_a_table_in_the_lake_and_in_sql(lake_dir, instance):
    defs = make_definitions(lake_dir, orders_per_day=0)
    data = jsonl(landed_order("T1", "2024-01-15T10:00:00Z"), landed_order("T2", "2024-01-16T10:00:00Z")) + b"{cut\n"
    land(lake_dir, "drop.jsonl", data)
    land(lake_dir, "empty.json", b"")
    for name in ("drop.jsonl", "empty.json"):
        set_landed_at(lake_dir, name, LANDED_AT)
    tick = recompute_tick(defs, instance, lambda: ingest(defs, instance))
    run_requests(defs, instance, tick.run_requests)

    metadata = landed_files_metadata(instance)
    assert (metadata["records_read"], metadata["records_routed"], metadata["records_quarantined"]) == (3, 2, 1)
    assert metadata["conservation_holds"] is True and metadata["files_quarantined_whole"] == 1
    query = ("SELECT file, file_id, landed_at, bytes, records_read, records_routed, records_quarantined, file_error IS NOT NULL, days, dt::VARCHAR "
             "FROM {landed_files} ORDER BY file")
    expected = [
        ("drop.jsonl", file_id(data), LANDED_AT, len(data), 3, 2, 1, False, '{"2024-01-15": 1, "2024-01-16": 1}', "2024-02-01"),
        ("empty.json", file_id(b""), LANDED_AT, 0, 0, 0, 0, True, "{}", "2024-02-01"),
    ]
    lake_rows = duckdb.sql(query.format(landed_files=f"read_parquet('{lake_dir}/processed/landed_files/*/*.parquet', hive_partitioning=true)")).fetchall()
    assert [row[:2] + (row[2].astimezone(UTC),) + row[3:] for row in lake_rows] == expected
    with duckdb.connect(str(lake_dir.parent / "catalog.duckdb"), read_only=True) as catalog:
        catalog_rows = catalog.sql(query.format(landed_files="landed_files")).fetchall()
    assert [row[:2] + (row[2].astimezone(UTC),) + row[3:] for row in catalog_rows] == expected


# --- handled files move to landing/_ingested/orders/ -----------------------------------------------

class Lake:
    """A lake on a local folder or on S3 (moto) seen the same way by the tests below. Definitions are
    made afresh from the modules imported now, so that `project_loaded_with` settings apply."""

    def __init__(self, lake_dir, aws, kind: str):
        self.lake_dir, self.aws, self.kind = lake_dir, aws, kind
        if kind == "local":
            self.store = LakeResource(uri=str(lake_dir)).store()
            return
        self.s3 = boto3.client("s3", endpoint_url=aws, region_name="us-east-1")
        self.s3.create_bucket(Bucket="lake")
        self.store = LakeResource(uri="s3://lake/prefix", s3_endpoint_url=aws, s3_region="us-east-1").store()

    def defs(self) -> dg.Definitions:
        if self.kind == "local":
            return make_definitions(self.lake_dir, orders_per_day=0)
        definitions, settings = importlib.import_module("ecomm_assets.definitions"), importlib.import_module("ecomm_assets.settings")
        return definitions.definitions_with(definitions.resources_from(settings.Settings(
            lake_uri="s3://lake/prefix", s3_endpoint_url=self.aws, aws_region="us-east-1", orders_per_day=0,
            catalog=settings.CatalogBackend.GLUE, glue_endpoint_url=self.aws, alerts_path=str(self.lake_dir.parent / "alerts.jsonl"))))

    def land(self, name: str, data: bytes, at: datetime | None = None) -> datetime:
        """Writes a version (a new file renamed into place, a new PUT); returns when it landed."""
        self.store.write_bytes(f"landing/orders/{name}", data)
        if self.kind == "local":
            at = at or datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
            os.utime(self.store.full_path(f"landing/orders/{name}"), (at.timestamp(), at.timestamp()))
            return at
        return self.s3.head_object(Bucket="lake", Key=f"prefix/landing/orders/{name}")["LastModified"]

    def read(self, rel: str) -> bytes | None:
        return self.store.read_bytes(rel) if self.store.exists(rel) else None

    def landing(self, name: str) -> bytes | None:
        return self.read(f"landing/orders/{name}")

    def archived(self, name: str) -> bytes | None:
        return self.read(f"landing/_ingested/orders/{name}")

    def archived_landed_at(self, name: str) -> datetime:
        if self.kind == "local":
            return datetime.fromtimestamp(os.stat(self.store.full_path(f"landing/_ingested/orders/{name}")).st_mtime, UTC)
        head = self.s3.head_object(Bucket="lake", Key=f"prefix/landing/_ingested/orders/{name}")
        return datetime.fromisoformat(head["Metadata"]["landed-at"])

    def raw(self) -> list[str]:
        return [f.path for f in self.store.list_files("raw/orders", recursive=True)]

    def manifest(self, data: bytes) -> dict:
        return json.loads(self.store.read_bytes(f"raw/_landing_manifest/{file_id(data)}.json"))


@pytest.fixture(params=["local", "s3"])
def lake(request, lake_dir):
    return Lake(lake_dir, request.getfixturevalue("aws") if request.param == "s3" else None, request.param)


def requested(requests) -> list[str]:
    return sorted(r.run_config["ops"]["ingest_landing_files"]["config"]["files"][0] for r in requests)


def test_a_handled_file_moves_to_the_archive_and_the_sensor_sees_it_no_more(lake, instance):
    defs = lake.defs()
    files = {
        "a.jsonl": jsonl(landed_order("A1", "2024-01-15T10:00:00Z")),
        "sub/b.json": json.dumps([landed_order("B1", "2024-01-16T10:00:00Z")]).encode(),  # the relative name is kept
        "empty.json": b"",  # quarantined whole: handled too
    }
    landed = {name: lake.land(name, data, LANDED_AT) for name, data in files.items()}
    first, cursor = sensor_requests(defs, "landing_files_sensor", **defs.resources)
    assert requested(first) == sorted(files)

    assert ingest(defs, instance).success
    metadata = landed_files_metadata(instance)
    assert (metadata["files_ingested"], metadata["files_quarantined_whole"], metadata["files_moved_to_ingested"]) == (3, 1, 3)
    for name, data in files.items():
        assert (lake.landing(name), lake.archived(name)) == (None, data)
        assert lake.archived_landed_at(name) == landed[name]  # kept: the rename keeps the mtime, the copy its metadata
    again, _ = sensor_requests(defs, "landing_files_sensor", cursor=cursor, **defs.resources)
    assert again == []

    # A run for a moved name (a duplicate S3 event; the sensor's run after another run took the file)
    # reads it from the archive: the same raw files, and it stays there.
    raw = lake.raw()
    assert ingest(defs, instance, files=["a.jsonl"]).success
    assert (lake.raw(), lake.landing("a.jsonl"), lake.archived("a.jsonl")) == (raw, None, files["a.jsonl"])


def test_a_file_not_ingested_stays_in_landing_for_its_retry(lake, instance, monkeypatch):
    defs = lake.defs()
    lake.land("a.jsonl", jsonl(landed_order("A1", "2024-01-15T10:00:00Z")))
    pending = jsonl(landed_order("B1", "2024-01-15T11:00:00Z"))
    lake.land("b_pending.jsonl", pending)
    ingest_file = landing_module.ingest_file

    def day_locked_too_long(store, landing, *args):
        if landing.name == "b_pending.jsonl":
            raise TimeoutError("day 2024-01-15 is locked by another run")
        return ingest_file(store, landing, *args)

    monkeypatch.setattr(landing_module, "ingest_file", day_locked_too_long)
    assert not ingest(defs, instance).success
    assert (lake.landing("b_pending.jsonl"), lake.archived("b_pending.jsonl")) == (pending, None)
    assert lake.landing("a.jsonl") is None and lake.archived("a.jsonl") is not None
    left, _ = sensor_requests(defs, "landing_files_sensor", **defs.resources)
    assert requested(left) == ["b_pending.jsonl"]


def read_then_overwritten(lake, monkeypatch, new_versions):
    """The producer writes a new version right after the op read the file."""
    read_confined = LakeStore.read_confined

    def producer_writes_after_the_read(store, folder, name):
        read = read_confined(store, folder, name)
        if new_versions and folder == "landing/orders":
            lake.land("one.jsonl", new_versions.pop(0), LANDED_AT + timedelta(hours=1))
        return read

    monkeypatch.setattr(LakeStore, "read_confined", producer_writes_after_the_read)


def overwritten_between_the_check_and_the_rename(lake, monkeypatch, new_versions):
    monkeypatch.setattr(storage, "os", RacingOs(before=lambda: lake.land("one.jsonl", new_versions.pop(0), LANDED_AT + timedelta(hours=1))))


def overwritten_before_and_after_the_rename(lake, monkeypatch, new_versions):
    """Two versions: one renamed in before the move's rename, one after it (so it cannot be put back)."""
    monkeypatch.setattr(storage, "os", RacingOs(
        before=lambda: lake.land("one.jsonl", new_versions.pop(0), LANDED_AT + timedelta(hours=1)),
        after=lambda: lake.land("one.jsonl", new_versions.pop(0), LANDED_AT + timedelta(hours=2))))


def overwritten_between_the_copy_and_the_delete(lake, monkeypatch, new_versions):
    client = LakeStore._client

    def racing(store):
        return RacingClient(client(store), after_copy=lambda: new_versions and lake.land("one.jsonl", new_versions.pop(0)))

    monkeypatch.setattr(LakeStore, "_client", racing)


@pytest.mark.parametrize(
    "kind, race, stranded",
    [
        ("local", read_then_overwritten, False),
        ("local", overwritten_between_the_check_and_the_rename, False),  # the rename takes it: put back
        ("local", overwritten_before_and_after_the_rename, True),  # cannot be put back: alerted
        ("s3", read_then_overwritten, False),
        ("s3", overwritten_between_the_copy_and_the_delete, False),
    ],
)
def test_a_version_written_while_a_file_is_ingested_is_never_lost(lake_dir, instance, aws, monkeypatch, kind, race, stranded):
    lake = Lake(lake_dir, aws, kind)
    defs = lake.defs()
    v1 = jsonl(landed_order("W1", "2024-01-15T10:00:00Z", price=10.0))
    v2 = jsonl(landed_order("W1", "2024-01-15T10:00:00Z", price=12.0))
    v3 = jsonl(landed_order("W1", "2024-01-15T10:00:00Z", price=14.0))
    lake.land("one.jsonl", v1, LANDED_AT)
    with monkeypatch.context() as patch:
        race(lake, patch, [v2, v3] if stranded else [v2])
        first = ingest(defs, instance)
    assert first.success and lake.manifest(v1)["file"] == "one.jsonl"
    newest = v3 if stranded else v2
    assert lake.landing("one.jsonl") == newest  # the new version stays, pending
    if stranded:  # the version renamed in before the move stays, unread, in the archive, and is alerted
        assert lake.archived("one.jsonl") == v2
        [alert] = alerts(lake_dir)
        assert alert["run_id"] == first.run_id and "one.jsonl" in alert["error"] and "left unread" in alert["error"]
    else:
        assert alerts(lake_dir) == []

    assert ingest(defs, instance).success  # the new version's own ingest
    assert (lake.landing("one.jsonl"), lake.archived("one.jsonl")) == (None, newest)
    assert lake.manifest(v1)["superseded_by"] == file_id(newest) and "superseded_by" not in lake.manifest(newest)


def test_a_run_stopped_between_recording_and_moving_a_file_heals_on_the_next(lake, instance, monkeypatch):
    defs = lake.defs()
    data = jsonl(landed_order("S1", "2024-01-15T10:00:00Z"))
    lake.land("stopped.jsonl", data)

    def the_worker_dies_here(*args, **kwargs):
        raise OSError("the run worker died here")

    with monkeypatch.context() as patch:
        patch.setattr(LakeStore, "move_confined", the_worker_dies_here, raising=False)
        first = ingest(defs, instance)
    assert first.success and lake.landing("stopped.jsonl") == data and lake.archived("stopped.jsonl") is None
    recorded = lake.manifest(data)
    assert ["stopped.jsonl" in alert["error"] and "not moved" in alert["error"] for alert in alerts(lake.lake_dir)] == [True]

    second = ingest(defs, instance)  # finds its content ingested: moves it, ingests nothing
    assert second.success and (lake.landing("stopped.jsonl"), lake.archived("stopped.jsonl")) == (None, data)
    assert lake.manifest(data) == recorded
    metadata = landed_files_metadata(instance)
    assert (metadata["files_ingested"], metadata["files_moved_to_ingested"]) == (0, 1)
    assert sensor_requests(defs, "landing_files_sensor", **defs.resources)[0] == []
    assert len(alerts(lake.lake_dir)) == 1


@pytest.mark.parametrize("kind, landed_at_metadata", [("local", None), ("s3", True), ("s3", False)],
                         ids=["local", "s3", "s3 archived without landed-at metadata"])
def test_reingesting_takes_the_archived_files_with_their_original_landing_time(lake_dir, instance, aws, kind, landed_at_metadata):
    lake = Lake(lake_dir, aws, kind)
    early = jsonl(landed_order("E1", "2024-01-05T10:00:00Z"), landed_order("E2", "2024-01-12T10:00:00Z"))
    v1, v2 = jsonl(landed_order("B1", "2024-01-12T11:00:00Z")), jsonl(landed_order("B2", "2024-01-13T11:00:00Z"))
    landed = lake.land("early.jsonl", early, LANDED_AT)
    lake.land("both.jsonl", v1, LANDED_AT)
    with project_loaded_with(ECOMM_START_DATE="2024-01-10"):
        assert ingest(lake.defs(), instance).success
    assert (lake.landing("early.jsonl"), lake.archived("early.jsonl")) == (None, early)
    lake.land("both.jsonl", v2, LANDED_AT + timedelta(hours=1))  # a newer version, not ingested yet
    if landed_at_metadata is False:  # e.g. archived by hand: the manifest entry's landed_at is the fallback
        time.sleep(1.1)  # a LastModified other than the landing's
        lake.s3.copy_object(Bucket="lake", Key="prefix/landing/_ingested/orders/early.jsonl", MetadataDirective="REPLACE",
                            CopySource={"Bucket": "lake", "Key": "prefix/landing/_ingested/orders/early.jsonl"}, Metadata={})

    earlier = lake.defs()
    tick = recompute_tick(earlier, instance, lambda: ingest(earlier, instance, reingest=True))
    runs = sorted((r.partition_key, r.partition_key) if r.partition_key
                  else (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"]) for r in tick.run_requests)
    assert runs == [("2024-01-05", "2024-01-05"), ("2024-01-12", "2024-01-13")]  # the newly allowed day, both.jsonl's days
    assert [p for p in lake.raw() if "dt=2024-01-05" in p] == [f"raw/orders/dt=2024-01-05/{landing_raw_name(landed, file_id(early))}"]
    assert lake.manifest(early)["landed_at"] == landed.isoformat()
    assert (lake.landing("early.jsonl"), lake.archived("early.jsonl")) == (None, early)  # it stays archived
    # A name in both folders: the one in landing/orders/ is the newer; it is ingested and moved.
    assert (lake.landing("both.jsonl"), lake.archived("both.jsonl")) == (None, v2)
    assert lake.manifest(v1)["superseded_by"] == file_id(v2) and "superseded_by" not in lake.manifest(v2)
