"""`python -m ecomm_assets.catch_up`: every pending landed file ingested, exactly its days recomputed,
consecutive days in one run, without the daemon."""

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime

import dagster as dg
import duckdb

from ecomm_assets.catch_up import catch_up
from ecomm_assets_tests.conftest import PROJECT, make_definitions
from ecomm_assets_tests.test_definitions import land, landed_order


def lake_job_days(instance) -> list[tuple[str, str]]:
    runs = instance.get_runs(filters=dg.RunsFilter(job_name="lake_job"))
    return sorted(
        (run.tags["dagster/partition"],) * 2 if "dagster/partition" in run.tags
        else (run.tags["dagster/asset_partition_range_start"], run.tags["dagster/asset_partition_range_end"])
        for run in runs
    )


def test_catch_up_ingests_and_recomputes_each_range_of_days_once(lake_dir, instance):
    days = ["2024-01-14", "2024-01-15", "2024-01-17"]
    land(lake_dir, "drop.jsonl", "".join(json.dumps(landed_order(f"C{n}", f"{day}T10:00:00Z")) + "\n"
                                         for n, day in enumerate(days)).encode())
    defs, said = make_definitions(lake_dir, orders_per_day=0), []
    assert catch_up(defs, instance, say=said.append)
    assert lake_job_days(instance) == [("2024-01-14", "2024-01-15"), ("2024-01-17", "2024-01-17")]
    loaded = duckdb.sql(f"SELECT order_id, order_date::VARCHAR FROM '{lake_dir}/processed/order_lines/*/*.parquet' ORDER BY 1").fetchall()
    assert loaded == [("C0", "2024-01-14"), ("C1", "2024-01-15"), ("C2", "2024-01-17")]
    orders = next(n for n, line in enumerate(said) if line.startswith("ingest_landing_job run"))
    assert "2024-01-14...2024-01-15: succeeded" in said[orders + 1]
    assert "orders: no day to recompute" not in said and "purchases: no day to recompute" in said

    said.clear()  # nothing pending any more: no run of the lake
    assert catch_up(defs, instance, say=said.append)
    assert lake_job_days(instance) == [("2024-01-14", "2024-01-15"), ("2024-01-17", "2024-01-17")]
    assert "orders: no day to recompute" in said


def test_the_command_uses_the_project_instance_and_fails_elsewhere(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(PROJECT / "dagster.yaml", project)
    lake = tmp_path / "lake"
    land(lake, "a.jsonl", (json.dumps(landed_order("A1", "2024-01-15T10:00:00Z")) + "\n").encode())
    env = {name: value for name, value in os.environ.items() if name != "DAGSTER_HOME"} | {
        "PYTHONPATH": str(PROJECT), "ECOMM_LAKE_URI": str(lake), "ECOMM_ORDERS_PER_DAY": "0",
        "ECOMM_DUCKDB_CATALOG": str(tmp_path / "catalog.duckdb"), "ECOMM_ALERTS_PATH": str(tmp_path / "alerts.jsonl"),
    }
    command = [sys.executable, "-m", "ecomm_assets.catch_up"]
    done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "lake_job run" in done.stdout and "2024-01-15: succeeded" in done.stdout
    # A day known only from the landed file: its sales beside its ratings (no snapshot, so no reviews).
    assert duckdb.sql(f"SELECT product_id, reviews, units FROM '{lake}/processed/rating_vs_sales/*/*.parquet'").fetchall() == [
        ("p1", 0, 1)]
    monkeypatch.chdir(project)  # the instance's storage path is relative to the project folder
    with dg.DagsterInstance.from_config(str(project)) as instance:  # the runs are in the project's instance
        # Every feed's ingest ran; only the orders had files, so only their days were recomputed.
        assert {run.job_name for run in instance.get_runs()} == {
            "ingest_landing_job", "ingest_purchases_job", "ingest_user_profiles_job", "lake_job"}
    elsewhere = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert elsewhere.returncode == 1 and "run it from the project folder" in elsewhere.stderr


def test_catch_up_ingests_every_feed_and_recomputes_the_purchase_days_and_profiles(lake_dir, instance):
    from ecomm_assets.core.purchase_log import purchase_log_csv, user_profiles_csv
    from ecomm_assets_tests.assets.test_purchase_assets import land as land_in

    land_in(lake_dir, "purchases", "a.csv", purchase_log_csv(200, seed=1, start=datetime(2024, 1, 14, 1), hours=40, users=100))
    land_in(lake_dir, "purchases", "b.csv", purchase_log_csv(50, seed=2, start=datetime(2024, 1, 17, 1), hours=2, users=100))
    land_in(lake_dir, "user_profiles", "users.csv", user_profiles_csv(100, seed=1))
    defs, said = make_definitions(lake_dir, orders_per_day=0), []
    assert catch_up(defs, instance, say=said.append)
    purchase_runs = sorted(
        (run.tags.get("dagster/partition") or run.tags["dagster/asset_partition_range_start"],
         run.tags.get("dagster/partition") or run.tags["dagster/asset_partition_range_end"])
        for run in instance.get_runs(filters=dg.RunsFilter(job_name="purchases_job")))
    assert purchase_runs == [("2024-01-14", "2024-01-15"), ("2024-01-17", "2024-01-17")]
    assert len(instance.get_runs(filters=dg.RunsFilter(job_name="user_profiles_job"))) == 1
    events = duckdb.sql(f"SELECT count(*), count(DISTINCT dt) FROM read_parquet('{lake_dir}/processed/purchase_events/*/*.parquet', "
                        "hive_partitioning = true)").fetchall()
    assert events == [(250, 3)]
    assert "orders: no day to recompute" in said and not list((lake_dir / "landing" / "purchases").glob("*.csv"))
    # The profiles were ingested before the purchase days were computed: every buyer's segment is known.
    segments = duckdb.sql(f"""SELECT count(*) FILTER (WHERE value IS NULL), count(*) FROM
                              '{lake_dir}/processed/purchase_breakdown/*/*.parquet' WHERE dimension = 'age_band'""").fetchall()
    assert segments[0][0] == 0 and segments[0][1] > 0
