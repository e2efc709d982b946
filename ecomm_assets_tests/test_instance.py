"""The project's local Dagster instance (dagster.yaml at the project root), as a user meets it in
their clone with no settings: `dagster asset materialize` and `dagster dev`, each run from the
project folder with DAGSTER_HOME unset, record into the same `.dagster/` folder. Then the opt-in
fast event log (deploy/opt_in/fast_sqlite_storage.py, deploy/dagster-fast-local.yaml)."""

import contextlib
import functools
import importlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from ecomm_assets.definitions import defs
from ecomm_assets_tests.conftest import (
    DAGSTER,
    PROJECT,
    graphql,
    running_dagster_dev,
    wait_for,
)

FAST_LOCAL_YAML = PROJECT / "deploy" / "dagster-fast-local.yaml"
OPT_IN = PROJECT / "deploy" / "opt_in"  # outside the package: the opt-in's users put it on PYTHONPATH
sys.path.insert(0, str(OPT_IN))
FastSqliteEventLogStorage = importlib.import_module("fast_sqlite_storage").FastSqliteEventLogStorage
LOCATION = {"repositoryLocationName": "ecomm_assets", "repositoryName": "__repository__"}


# --- the default: one persistent instance for the CLI and `dagster dev` ---------------------------


def clone_of_the_project(folder: Path, config: Path = PROJECT / "dagster.yaml") -> tuple[Path, dict]:
    """What Dagster sees of a user's clone: the project folder with its dagster.yaml and
    workspace.yaml (telemetry off), and an environment without DAGSTER_HOME. The package itself is
    imported from this worktree (PYTHONPATH); the lake and the alerts go to `folder`."""
    clone = folder / "clone"
    clone.mkdir(parents=True)
    shutil.copy(PROJECT / "workspace.yaml", clone)
    (clone / "dagster.yaml").write_text(config.read_text() + "\ntelemetry:\n  enabled: false\n")
    env = {name: value for name, value in os.environ.items() if name != "DAGSTER_HOME"} | {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT), str(OPT_IN), os.environ.get("PYTHONPATH")])),
        "ECOMM_LAKE_URI": str(folder / "lake"), "ECOMM_DUCKDB_CATALOG": str(folder / "catalog.duckdb"),
        "ECOMM_ALERTS_PATH": str(folder / "alerts.jsonl"), "ECOMM_ORDERS_PER_DAY": "20",
        "ECOMM_LANDING_SENSOR": "off",
    }
    return clone, env


def materialize(clone: Path, env: dict, select: str, partitions: str) -> subprocess.CompletedProcess:
    option = "--partition-range" if "..." in partitions else "--partition"
    return subprocess.run([DAGSTER, "asset", "materialize", "-m", "ecomm_assets", "--select", select, option, partitions],
                          cwd=clone, env=env, capture_output=True, text=True, timeout=300, check=False)


def run_id_of(cli: subprocess.CompletedProcess) -> str:
    return re.search(r"__ASSET_JOB - ([0-9a-f-]{36}) - ", cli.stderr).group(1)


@contextlib.contextmanager
def dagster_dev(clone: Path, env: dict):
    """`dagster dev` as a user starts it in the project folder (no -w, no DAGSTER_HOME); yields a
    GraphQL client."""
    with running_dagster_dev(clone, env, log=clone.parent / "dagster-dev.log") as url:
        yield functools.partial(graphql, url)


RUNS = "{ runsOrError { ... on Runs { results { runId status } } } }"
PARTITION_STATS = "query($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) { ... on AssetNode { partitionStats { numMaterialized } } } }"
LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
SENSOR_TICKS = """query($sensor: SensorSelector!) { sensorOrError(sensorSelector: $sensor) {
  ... on Sensor { sensorState { ticks(limit: 1) { status } } } } }"""


@pytest.mark.slow
def test_a_cli_backfill_is_what_dagster_dev_shows_and_both_keep_it_in_the_project(tmp_path):
    clone, env = clone_of_the_project(tmp_path)
    cli = materialize(clone, env, "*", "2024-01-01...2024-01-02")
    assert cli.returncode == 0, cli.stderr[-3000:]
    backfill = run_id_of(cli)

    with dagster_dev(clone, env) as graphql:
        # The UI, started after the CLI has exited, shows its run and its days.
        assert {"runId": backfill, "status": "SUCCESS"} in graphql(RUNS)["runsOrError"]["results"]
        stats = graphql(PARTITION_STATS, path=["orders"])["assetNodeOrError"]["partitionStats"]
        assert stats["numMaterialized"] == 2
        # A run launched from the UI: the code server's run worker records into the same folder.
        launched = graphql(LAUNCH, params={
            "selector": LOCATION | {"jobName": "__ASSET_JOB", "assetSelection": [{"path": ["snapshots"]}]},
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "2024-01-03"}]},
        })["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        wait_for("the launched run", lambda: {"runId": run_id, "status": "SUCCESS"} in graphql(RUNS)["runsOrError"]["results"])

    # Everything is in the clone's .dagster/ (Dagster's usual layout: a DAGSTER_HOME opens it too),
    # nothing was left in temporary folders.
    assert not list(clone.glob(".tmp_dagster_home_*"))
    with dg.DagsterInstance.from_config(str(clone / ".dagster")) as instance:
        assert {run.run_id for run in instance.get_runs()} == {backfill, run_id}
        assert instance.get_materialized_partitions(dg.AssetKey("snapshots")) == {"2024-01-01", "2024-01-02", "2024-01-03"}


@pytest.mark.slow
def test_run_failure_alerts_under_dagster_dev_reports_a_failed_cli_run(tmp_path):
    clone, env = clone_of_the_project(tmp_path)
    alerts = tmp_path / "alerts.jsonl"
    with dagster_dev(clone, env) as graphql:
        # The sensor's first tick only sets its cursor: failures before it are not reported.
        sensor = LOCATION | {"sensorName": "run_failure_alerts"}
        wait_for("run_failure_alerts' first tick", lambda: graphql(SENSOR_TICKS, sensor=sensor)["sensorOrError"]["sensorState"]["ticks"])
        (tmp_path / "a-file").write_text("")
        cli = materialize(clone, env | {"ECOMM_LAKE_URI": str(tmp_path / "a-file" / "lake")}, "snapshots", "2024-01-05")
        assert cli.returncode != 0 and "RUN_FAILURE" in cli.stderr, cli.stderr[-3000:]
        failed = run_id_of(cli)

        def alerted() -> list:
            lines = alerts.read_text().splitlines() if alerts.exists() else []
            return [alert for alert in map(json.loads, lines) if alert["run_id"] == failed]

        # The sensor evaluates at most every 10 s.
        [alert] = wait_for("the alert of the CLI's failed run", alerted, timeout=30)
    assert (alert["job"], alert["assets"], alert["partition"]) == ("__ASSET_JOB", ["snapshots"], "2024-01-05")
    assert "NotADirectoryError" in alert["error"]


def _modules(config) -> list[str]:
    if isinstance(config, dict):
        return [*([config["module"]] if "module" in config else []), *(m for value in config.values() for m in _modules(value))]
    if isinstance(config, list):
        return [m for value in config for m in _modules(value)]
    return []


def test_the_default_instance_is_dagster_s_public_settings_only():
    config = yaml.safe_load((PROJECT / "dagster.yaml").read_text())
    assert "instance_class" not in config
    # Only classes Dagster exports (`dagster.QueuedRunCoordinator`): none of the project's, none
    # of Dagster's private modules (`dagster._core...`), which can change in any release.
    assert all(module == "dagster" for module in _modules(config)), _modules(config)
    assert "custom" not in config.get("storage", {})
    # Dagster's own SQLite storage, in a folder of the project that git ignores.
    base_dir = config["storage"]["sqlite"]["base_dir"]
    assert base_dir == ".dagster"
    ignored = subprocess.run(["git", "check-ignore", "-q", f"{base_dir}/history/runs.db"], cwd=PROJECT, check=False)
    assert ignored.returncode == 0, f"{base_dir}/ is not in .gitignore"


def test_the_local_instance_queues_one_run_per_day_and_monitors_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # its storage, .dagster/, is relative to the working directory
    shutil.copy(PROJECT / "dagster.yaml", tmp_path)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
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


# --- the opt-in: deploy/dagster-fast-local.yaml, deploy/opt_in/fast_sqlite_storage.py -----------


def test_the_opt_in_is_the_default_with_another_storage_in_the_same_folder():
    default, opt_in = (yaml.safe_load(path.read_text()) for path in (PROJECT / "dagster.yaml", FAST_LOCAL_YAML))
    assert {k: v for k, v in opt_in.items() if k != "storage"} == {k: v for k, v in default.items() if k != "storage"}
    assert opt_in["storage"] == {"custom": {"module": "fast_sqlite_storage", "class": "FastSqliteStorage",
                                            "config": {"base_dir": default["storage"]["sqlite"]["base_dir"]}}}


def test_a_range_run_on_the_opt_in_reads_the_same_with_dagster_s_own_storage(tmp_path, monkeypatch):
    clone, env = clone_of_the_project(tmp_path, config=FAST_LOCAL_YAML)
    cli = materialize(clone, env, "*", "2024-02-28...2024-02-29")
    assert cli.returncode == 0, cli.stderr[-3000:]
    # Closing the instance checkpointed every write-ahead log into its database file.
    assert not list((clone / ".dagster" / "history" / "runs").glob("*.db-wal"))

    def recorded(instance: dg.DagsterInstance) -> dict:
        [run] = instance.get_runs()
        keys = instance.get_asset_keys()
        checks = instance.event_log_storage.get_asset_check_execution_history
        return {
            "run": (run.status, [(e.dagster_event_type, e.message) for e in instance.all_logs(run.run_id)]),
            "partitions": {key: instance.get_materialized_partitions(key) for key in keys},
            "checks": {key: [(r.status, r.partition) for r in checks(key, limit=100)] for key in _check_keys()},
        }

    monkeypatch.chdir(clone)  # the instance the CLI opens there: the opt-in's storage
    with dg.DagsterInstance.from_config(str(clone)) as instance:
        assert type(instance.event_log_storage) is FastSqliteEventLogStorage
        ours = recorded(instance)
    with dg.DagsterInstance.from_config(str(clone / ".dagster")) as instance:  # Dagster's default storage
        # Dagster's SqliteEventLogStorage (not public API), which the opt-in's class extends.
        assert type(instance.event_log_storage) is FastSqliteEventLogStorage.__base__
        assert type(instance.event_log_storage).__name__ == "SqliteEventLogStorage"
        assert recorded(instance) == ours

    status, events = ours["run"]
    days = {"2024-02-28", "2024-02-29"}
    assert status == dg.DagsterRunStatus.SUCCESS
    # The 5 daily assets, each day; the unpartitioned ones (derived tables, the dashboard, ...) once each.
    graph = defs.resolve_asset_graph()
    daily = {key.to_user_string() for key in graph.materializable_asset_keys if graph.get(key).partitions_def}
    unpartitioned = len(graph.materializable_asset_keys) - len(daily)
    assert len(daily) == 5
    assert sum(event_type == dg.DagsterEventType.ASSET_MATERIALIZATION for event_type, _ in events) == 5 * len(days) + unpartitioned
    partitions = {key.to_user_string(): found for key, found in ours["partitions"].items()}
    assert {name: found for name, found in partitions.items() if name in daily} == dict.fromkeys(daily, days)
    assert all(found == set() for name, found in partitions.items() if name not in daily)
    assert len(ours["checks"]) == 42 and all(ours["checks"].values())


def _check_keys() -> list[dg.AssetCheckKey]:
    return list(defs.resolve_asset_graph().asset_check_keys)


def _message(run_id: str, text: str) -> dg.EventLogEntry:
    return dg.EventLogEntry(error_info=None, level=logging.INFO, user_message=text, run_id=run_id,
                            timestamp=time.time(), step_key=None, job_name=None, dagster_event=None)


def test_a_watcher_sees_each_event_of_a_writer_that_keeps_its_connection_open(tmp_path):
    runs = tmp_path / "runs"
    reader, writer = FastSqliteEventLogStorage(str(runs)), FastSqliteEventLogStorage(str(runs))
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
