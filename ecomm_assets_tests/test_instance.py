"""The project's local instance (dagster.yaml, ecomm_assets/instance.py): what the CLI records
there is what Dagster's own SQLite storage reads from the same files, and a run's events reach a
watcher (the UI's live run view) although the writer keeps its connection open."""

import logging
import os
import subprocess
import sys
import time

import dagster as dg
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.event_log import SqliteEventLogStorage

from ecomm_assets.definitions import defs
from ecomm_assets.instance import LocalEventLogStorage, LocalInstance
from ecomm_assets_tests.conftest import PROJECT, local_instance_home

DAGSTER = os.path.join(os.path.dirname(sys.executable), "dagster")
DAYS = {"2024-02-28", "2024-02-29"}


def test_without_dagster_home_dagster_dev_and_the_cli_use_the_local_instance(tmp_path):
    # What `dagster dev` and `dagster asset materialize` do when DAGSTER_HOME is unset: a
    # temporary storage folder, configured by the dagster.yaml of the working directory.
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path), config_dir=str(PROJECT))) as instance:
        assert type(instance) is LocalInstance
        assert type(instance.event_log_storage) is LocalEventLogStorage
        assert instance.event_log_storage._base_dir == str(tmp_path / "history" / "runs")


def test_a_range_run_on_the_local_instance_reads_the_same_with_dagster_s_own_storage(tmp_path):
    home = local_instance_home(tmp_path / "home")
    env = os.environ | {
        "DAGSTER_HOME": str(home), "ECOMM_LAKE_URI": str(tmp_path / "lake"), "ECOMM_ORDERS_PER_DAY": "20",
        "ECOMM_DUCKDB_CATALOG": str(tmp_path / "catalog.duckdb"), "ECOMM_ALERTS_PATH": str(tmp_path / "alerts.jsonl"),
    }
    cli = subprocess.run(
        [DAGSTER, "asset", "materialize", "-m", "ecomm_assets", "--select", "*", "--partition-range", "2024-02-28...2024-02-29"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert cli.returncode == 0, cli.stderr[-3000:]
    # Closing the instance checkpointed every write-ahead log into its database file.
    assert not list((home / "history" / "runs").glob("*.db-wal"))

    def recorded(instance: dg.DagsterInstance) -> dict:
        [run] = instance.get_runs()
        keys = instance.get_asset_keys()
        checks = instance.event_log_storage.get_asset_check_execution_history
        return {
            "run": (run.status, [(e.dagster_event_type, e.message) for e in instance.all_logs(run.run_id)]),
            "partitions": {key: instance.get_materialized_partitions(key) for key in keys},
            "checks": {key: [(r.status, r.partition) for r in checks(key, limit=100)] for key in _check_keys()},
        }

    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        assert type(instance.event_log_storage) is LocalEventLogStorage
        ours = recorded(instance)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")  # Dagster's default instance
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        assert type(instance.event_log_storage) is SqliteEventLogStorage
        assert recorded(instance) == ours

    status, events = ours["run"]
    assert status == dg.DagsterRunStatus.SUCCESS
    # 13 daily assets, each day; the dashboard (not partitioned) once.
    assert sum(event_type == dg.DagsterEventType.ASSET_MATERIALIZATION for event_type, _ in events) == 13 * len(DAYS) + 1
    partitions = {key.to_user_string(): days for key, days in ours["partitions"].items()}
    assert partitions.pop("dashboard") == set() and len(partitions) == 13 and all(days == DAYS for days in partitions.values())
    assert len(ours["checks"]) == 18 and all(ours["checks"].values())


def _check_keys() -> list[dg.AssetCheckKey]:
    return list(defs.resolve_asset_graph().asset_check_keys)


def _message(run_id: str, text: str) -> dg.EventLogEntry:
    return dg.EventLogEntry(error_info=None, level=logging.INFO, user_message=text, run_id=run_id,
                            timestamp=time.time(), step_key=None, job_name=None, dagster_event=None)


def test_a_watcher_sees_each_event_of_a_writer_that_keeps_its_connection_open(tmp_path):
    runs = tmp_path / "runs"
    reader, writer = LocalEventLogStorage(str(runs)), LocalEventLogStorage(str(runs))
    seen = []

    def on_event(event, cursor):
        seen.append(event.user_message)

    reader.watch("run-1", None, on_event)
    try:
        for n in range(3):
            writer.store_event(_message("run-1", f"event {n}"))
            deadline = time.monotonic() + 10
            while len(seen) <= n and time.monotonic() < deadline:
                time.sleep(0.05)
        # The commits sit in the write-ahead log, not yet in run-1.db: the file Dagster's own
        # watcher waits on is untouched.
        assert (runs / "run-1.db-wal").stat().st_size > 0
    finally:
        reader.end_watch("run-1", on_event)
        reader.dispose()
        writer.dispose()
    assert seen == ["event 0", "event 1", "event 2"]


def test_the_local_instance_queues_one_run_per_day_and_monitors_runs(tmp_path):
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path), config_dir=str(PROJECT))) as instance:
        limits = instance.run_coordinator.get_run_queue_config().tag_concurrency_limits
        assert limits == [
            {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
            {"key": "ecomm/landing-file", "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
        ]
        assert instance.run_monitoring_enabled and instance.run_monitoring_start_timeout_seconds == 180
        # Only runs tagged dagster/max_retries (the requested ingest runs) are retried by the daemon.
        assert (instance.run_retries_enabled, instance.run_retries_max_retries) == (True, 0)
        # What dagster.yaml says: the local launcher cannot see a killed run worker.
        assert not instance.run_launcher.supports_check_run_worker_health
