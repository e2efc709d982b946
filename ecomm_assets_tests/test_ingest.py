"""The landing ingest end to end: a file's failure never stops the others, the lake's day window,
the newest landed version wins, hostile names are refused, hidden names are logged, gzip."""

import gzip
import json
import os
from datetime import datetime, timedelta, timezone

import dagster as dg
import duckdb
import pytest

from ecomm_assets.assets.landing import landing_raw_name
from ecomm_assets.core.landing import file_id
from ecomm_assets_tests.conftest import make_definitions
from ecomm_assets_tests.test_definitions import land, landed_order, recompute_tick, run_requests

TODAY = datetime.now(timezone.utc).date()


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


LANDED_AT = datetime(2024, 2, 1, 9, 0, tzinfo=timezone.utc)
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


def named_but_missing(lake_dir) -> str:
    return "b_gone.jsonl"


@pytest.mark.parametrize("make_fault", [nested_10000_deep, raw_path_taken_by_a_folder, named_but_missing])
def test_one_file_failing_never_stops_the_others(lake_dir, instance, make_fault):
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
    if fault == "b_gone.jsonl":  # nothing to quarantine: reported, alerted, and still pending for a later run
        assert (metadata["files_ingested"], metadata["files_not_ingested"]) == (2, 1)
        assert [fault in alert["error"] for alert in alerts(lake_dir)] == [True]
        return
    reports = {json.loads(p.read_text())["file"]: p.parent for p in (lake_dir / "quarantine/landing").glob("*/reason.json")}
    assert metadata["files_ingested"] == 3 and metadata["conservation_holds"] is True
    if fault not in reports:  # the parser read the deep record: order_lines quarantined it, with its reason
        quarantined = (lake_dir / "quarantine/order_lines/dt=2024-01-15/part-00000.jsonl").read_text()
        assert [json.loads(line)["source"].endswith(file_id(DEEP)) for line in quarantined.splitlines()] == [True]
        return
    report = json.loads((reports[fault] / "reason.json").read_text())
    if not report["file_error"]:  # the parser quarantined the deep record by itself: the file went through
        assert [r["record_number"] for r in report["records"]] == [1] and metadata["records_quarantined"] == 1
        return
    original = (lake_dir / "landing/orders" / fault).read_bytes()
    assert (reports[fault] / f"file-{fault}").read_bytes() == original
    assert metadata["files_quarantined_whole"] == 1
    assert [fault in alert["error"] and alert["run_id"] == result.run_id for alert in alerts(lake_dir)] == [True]
    # Nothing of a file quarantined whole stays in raw: its records are never counted twice.
    assert not [p for p in (lake_dir / "raw/orders").glob(f"*/*{file_id(original)}.jsonl") if p.is_file()]


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
    defs = make_definitions(lake_dir, orders_per_day=0, start_date=recompute_start)

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
