"""deploy/dagster.yaml is valid for Dagster's own instance schema and each class's config schema."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config

DAGSTER = os.path.join(os.path.dirname(sys.executable), "dagster")
DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
SECRETS = {
    "DAGSTER_PG_HOST": "db.internal", "DAGSTER_PG_USERNAME": "dagster", "DAGSTER_PG_PASSWORD": "from-secrets-manager",
    "DAGSTER_PG_DB": "dagster", "DAGSTER_COMPUTE_LOG_BUCKET": "logs-bucket",
}


def test_instance_yaml_passes_dagster_schema(monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    config, _ = dagster_instance_config(str(DEPLOY), "dagster.yaml")
    assert config["run_launcher"]["class"] == "EcsRunLauncher"
    assert config["compute_logs"]["class"] == "S3ComputeLogManager"
    assert "postgres" in config["storage"]


def test_each_configured_class_accepts_its_config(monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    raw = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    sections = [raw[key] for key in ("run_launcher", "run_coordinator", "compute_logs")]
    sections.append({"module": "dagster_postgres", "class": "DagsterPostgresStorage", "config": raw["storage"]["postgres"]})
    for section in sections:
        klass = getattr(importlib.import_module(section["module"]), section["class"])
        result = process_config(klass.config_type(), section["config"])
        assert result.success, (section["class"], [e.message for e in result.errors])


def test_no_secret_is_written_in_the_yaml():
    text = (DEPLOY / "dagster.yaml").read_text()
    assert "password:\n        env: DAGSTER_PG_PASSWORD" in text
    assert all(value not in text for value in SECRETS.values() if value != "dagster")


def test_a_backfill_runs_on_the_production_storage(tmp_path, postgres):
    """deploy/dagster.yaml's storage section, unchanged, on a real PostgreSQL server: a range run
    through the CLI with the event batching deploy/README.md recommends. Dagster records every
    partition, and the run's events and asset status are readable back from Postgres."""
    import psycopg2

    admin = psycopg2.connect(dbname="postgres", **postgres)
    admin.autocommit = True  # CREATE DATABASE cannot run in a transaction
    admin.cursor().execute("CREATE DATABASE ecomm_deploy")
    admin.close()
    home = tmp_path / "home"
    home.mkdir()
    storage = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())["storage"]
    (home / "dagster.yaml").write_text(yaml.safe_dump({"storage": storage, "telemetry": {"enabled": False}}))
    env = os.environ | {
        "DAGSTER_HOME": str(home), "DAGSTER_PG_HOST": postgres["host"], "DAGSTER_PG_USERNAME": postgres["user"],
        "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": "ecomm_deploy", "DAGSTER_EVENT_BATCH_SIZE": "1000",
        "ECOMM_LAKE_URI": str(tmp_path / "lake"), "ECOMM_DUCKDB_CATALOG": str(tmp_path / "catalog.duckdb"),
        "ECOMM_ALERTS_PATH": str(tmp_path / "alerts.jsonl"), "ECOMM_ORDERS_PER_DAY": "100",
    }
    # deploy/dagster.yaml names port 5432; the test server listens elsewhere.
    (home / "dagster.yaml").write_text((home / "dagster.yaml").read_text().replace("port: 5432", f"port: {postgres['port']}"))
    cli = subprocess.run(
        [DAGSTER, "asset", "materialize", "-m", "ecomm_assets", "--select", "*", "--partition-range", "2024-01-14...2024-01-16"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert cli.returncode == 0, cli.stderr[-3000:]

    with psycopg2.connect(dbname="ecomm_deploy", **postgres) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT status FROM runs")
        assert cursor.fetchall() == [("SUCCESS",)]
        cursor.execute(
            "SELECT partition, count(*) FROM event_logs WHERE asset_key = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'"
            " GROUP BY partition ORDER BY partition", ('["order_lines"]',),
        )
        assert cursor.fetchall() == [("2024-01-14", 1), ("2024-01-15", 1), ("2024-01-16", 1)]
    conn.close()


def test_production_run_monitoring_sees_dead_run_tasks_and_one_run_writes_a_day(monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    config, _ = dagster_instance_config(str(DEPLOY), "dagster.yaml")
    assert config["run_monitoring"]["enabled"] and config["run_monitoring"]["start_timeout_seconds"] == 300
    assert config["run_retries"]["enabled"]  # the ingest runs' dagster/max_retries tag needs it
    launcher = getattr(importlib.import_module(config["run_launcher"]["module"]), config["run_launcher"]["class"])
    assert launcher.supports_check_run_worker_health.fget(None) is True  # the property the monitor asks
    assert config["run_coordinator"]["config"]["tag_concurrency_limits"] == [
        {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
        {"key": "ecomm/landing-file", "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
    ]
