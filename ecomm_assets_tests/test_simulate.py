"""`python -m ecomm_assets.simulate`: what the live feed drops ingests whole through the real ingest
and recompute (nothing quarantined, records conserved, a resent order one order of its newest
version, a late one in its own day), and the command end to end, then `python -m ecomm_assets.catch_up`."""

import gzip
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import duckdb
import pytest

from ecomm_assets import simulate as simulate_module
from ecomm_assets.core.simulator import LiveFeed, tick_at_or_before
from ecomm_assets.core.storage import LakeStore
from ecomm_assets.settings import SETTINGS
from ecomm_assets.simulate import main, simulate, tick_times
from ecomm_assets_tests.conftest import PROJECT


def dropped_orders(lake_dir) -> list[dict]:
    """The orders of every file the feed dropped, oldest file first, in their order in it."""
    folders = [lake_dir / "landing" / "orders", lake_dir / "landing" / "_ingested" / "orders"]
    files = sorted((path for folder in folders for path in folder.glob("simulated-orders-*.json.gz")), key=lambda p: p.name)
    return [order for path in files for order in json.loads(gzip.decompress(path.read_bytes()))["orders"]]


def loaded_lines(lake_dir) -> list[tuple]:
    return duckdb.sql(f"""SELECT order_id, order_date::VARCHAR, dt::VARCHAR, product_id, quantity, order_total::DOUBLE
                          FROM read_parquet('{lake_dir}/processed/order_lines/*/*.parquet', hive_partitioning=true)
                          ORDER BY ALL""").fetchall()


def test_the_command_drops_ticks_that_catch_up_ingests_whole_the_newest_version_of_each_order_winning(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(PROJECT / "dagster.yaml", project)
    lake = tmp_path / "lake"
    env = {name: value for name, value in os.environ.items() if name != "DAGSTER_HOME"} | {
        "PYTHONPATH": str(PROJECT), "ECOMM_LAKE_URI": str(lake), "ECOMM_ORDERS_PER_DAY": "0",
        "ECOMM_DUCKDB_CATALOG": str(tmp_path / "catalog.duckdb"), "ECOMM_ALERTS_PATH": str(tmp_path / "alerts.jsonl"),
    }
    command = [sys.executable, "-m", "ecomm_assets.simulate", "--every", "15", "--orders-per-tick", "6",
               "--late-rate", "0.3", "--duplicate-rate", "0.5", "--from", "2024-01-15T19:58:00Z", "--ticks", "16"]
    done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[1].startswith("tick 2024-01-15T20:00:00Z: dropped landing/orders/simulated-orders-20240115T200000Z.json.gz: ")
    # Each tick: its orders, the profiles (dropped once, then left alone) and its purchase log.
    assert len(lines) == 2 + 16 * 3 and lines[-1] == "33 files dropped"
    sent = dropped_orders(lake)
    versions: dict[str, list[dict]] = {}
    for order in sent:
        versions.setdefault(order["order_id"], []).append(order)
    late_days = {order["order_date"][:10] for order in sent} - {"2024-01-15"}
    assert late_days and any(len(v) == 2 and v[0] != v[1] for v in versions.values())  # late ones, updated ones

    caught_up = subprocess.run([sys.executable, "-m", "ecomm_assets.catch_up"], cwd=project, env=env,
                               capture_output=True, text=True, timeout=300, check=False)
    assert caught_up.returncode == 0, caught_up.stderr[-2000:]
    assert "ingest_landing_job run" in caught_up.stdout and "2024-01-15: succeeded" in caught_up.stdout
    assert not list((lake / "landing" / "orders").iterdir())  # every file ingested and archived
    ingested = duckdb.sql(f"""SELECT count(*), sum(records_read), sum(records_routed), sum(records_quarantined),
                                     count(file_error) FROM '{lake}/processed/landed_files/*/*.parquet'""").fetchall()
    assert ingested == [(16, len(sent), len(sent), 0, 0)]
    assert not (lake / "quarantine").exists() and not (tmp_path / "alerts.jsonl").exists()  # nothing quarantined or alerted
    # The purchase logs: every event routed, its exact repeats dropped once loaded; the profiles loaded once.
    assert not list((lake / "landing" / "purchases").iterdir())
    logs = sorted((lake / "landing" / "_ingested" / "purchases").iterdir())
    events = [line for log in logs for line in log.read_bytes().split(b"\r\n")[1:] if line]
    purchases = duckdb.sql(f"""SELECT count(*), sum(records_read), sum(records_quarantined), count(file_error)
                               FROM '{lake}/processed/landed_purchase_files/*/*.parquet'""").fetchall()
    assert purchases == [(16, len(events), 0, 0)]
    loaded = duckdb.sql(f"SELECT count(*) FROM '{lake}/processed/purchase_events/*/*.parquet'").fetchall()[0][0]
    assert len(set(events)) < len(events) and loaded == len(set(events))
    assert duckdb.sql(f"SELECT count(*) FROM '{lake}/processed/dim_user_profiles/*.parquet'").fetchall()[0][0] == 500

    # One order per id, of its newest version (the later file), in the day of its own date (late ones too).
    expected = sorted(
        (order_id, newest["order_date"][:10], newest["order_date"][:10], line["product_id"], line["quantity"],
         newest["total_amount"])
        for order_id, orders in versions.items() for newest in [orders[-1]] for line in newest["products"]
    )
    assert loaded_lines(lake) == expected
    assert {day for _, _, day, *_ in expected} == late_days | {"2024-01-15"}


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--every", "7"], "argument --every: 7: must divide an hour"),
        (["--late-rate", "2"], "argument --late-rate: 2: must be a share of the orders"),
        (["--duplicate-rate", "x"], "argument --duplicate-rate: x: must be a decimal number written with ASCII digits"),
        (["--late-rate", "5%"], "argument --late-rate: 5%: must be a decimal number"),
        (["--orders-per-tick", "-1"], "argument --orders-per-tick: -1: must be a whole number of ASCII digits, not negative"),
        (["--every", "1", "--orders-per-tick", "1000"], "1,440,000 a day, over 1,000,000"),
        (["--ticks", "0"], "argument --ticks: 0: must be a whole number, at least 1"),
        (["--once", "--ticks", "2"], "not allowed with argument --once"),
        (["--from", "yesterday"], "argument --from: not an ISO 8601 time: 'yesterday'"),
        (["--from", "2024-01-15T10:00Z", "--until", "2024-01-15T09:00Z"], "is before the first tick"),
    ],
    ids=["interval", "rate", "not-a-number", "percent", "negative", "too-many", "no-ticks", "once-and-ticks", "time",
         "until-first"],
)
def test_bad_arguments_stop_the_command_naming_them(arguments, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(arguments)
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_ticks_wait_for_their_time_and_stop_at_until(tmp_path):
    """A tick to come is waited for (never dated ahead of the clock); the last is at or before --until."""
    feed = LiveFeed(every_minutes=60, orders_per_tick=5, late_rate=0, duplicate_rate=0, seed=1, first_day=date(2024, 1, 1))
    clock = [datetime(2024, 1, 15, 10, 30, tzinfo=UTC)]
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        clock[0] += timedelta(seconds=seconds)

    times = tick_times(datetime(2024, 1, 15, 10, tzinfo=UTC), feed.every, None, datetime(2024, 1, 15, 12, 59, tzinfo=UTC))
    said = []
    simulate(LakeStore.from_uri(str(tmp_path / "lake")), feed, times, say=said.append, sleep=sleep, now=lambda: clock[0])
    assert waits == [1800, 3600]  # 10:00 at once, then 11:00 and 12:00 at their time
    assert sorted({line[5:25] for line in said}) == ["2024-01-15T10:00:00Z", "2024-01-15T11:00:00Z", "2024-01-15T12:00:00Z"]


def test_the_shop_clock_runs_the_days_behind_asked(tmp_path, monkeypatch, capsys):
    """ECOMM_FEED_DAYS_BEHIND=1: the tick of now, a day earlier (a day that is a partition already)."""
    monkeypatch.setattr(simulate_module, "SETTINGS", replace(SETTINGS, lake_uri=str(tmp_path / "lake"), feed_days_behind=1))
    before = tick_at_or_before(datetime.now(UTC) - timedelta(days=1), timedelta(minutes=60))
    main(["--once", "--every", "60", "--orders-per-tick", "50"])
    after = tick_at_or_before(datetime.now(UTC) - timedelta(days=1), timedelta(minutes=60))
    [name] = [path.name for path in (tmp_path / "lake" / "landing" / "orders").iterdir()]
    assert name in {f"simulated-orders-{at:%Y%m%dT%H%M%SZ}.json.gz" for at in (before, after)}
    assert "(the shop 1 day(s) behind)" in capsys.readouterr().out
