"""deploy/dagster.yaml is valid for Dagster's own instance schema and each class's config schema."""

import importlib
from pathlib import Path

import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config

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
