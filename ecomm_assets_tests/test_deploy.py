"""deploy/dagster.yaml is valid for Dagster's own instance schema and each class's config schema."""

import importlib
import os
import re
import subprocess
from pathlib import Path

import dagster as dg
import pytest
import yaml

from ecomm_assets_tests.conftest import DAGSTER

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
SECRETS = {
    "DAGSTER_PG_HOST": "db.internal", "DAGSTER_PG_USERNAME": "dagster", "DAGSTER_PG_PASSWORD": "from-secrets-manager",
    "DAGSTER_PG_DB": "dagster", "DAGSTER_COMPUTE_LOG_BUCKET": "logs-bucket",
}


def deploy_instance() -> dict:
    return yaml.safe_load((DEPLOY / "dagster.yaml").read_text())


def test_instance_yaml_passes_dagster_schema(tmp_path):
    """A real instance is made from deploy/dagster.yaml, Dagster checking every section against its
    instance schema, the sections that would reach AWS or PostgreSQL replaced by local ones."""
    config = deploy_instance()
    assert config["run_launcher"]["class"] == "EcsRunLauncher"
    assert config["compute_logs"]["class"] == "S3ComputeLogManager"
    assert "postgres" in config["storage"]
    # These sections' classes reach AWS or PostgreSQL when an instance is made: each is checked
    # against its own class's schema in test_each_configured_class_accepts_its_config.
    local = {"storage": {"sqlite": {"base_dir": str(tmp_path / "storage")}},
             "run_launcher": {"module": "dagster", "class": "DefaultRunLauncher"},
             "compute_logs": {"module": "dagster", "class": "LocalComputeLogManager", "config": {"base_dir": str(tmp_path / "logs")}}}
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config | local))
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
        assert instance.run_monitoring_enabled and instance.run_retries_enabled


def config_errors(schema, config: dict) -> list[str]:
    """What Dagster finds wrong with `config` against a config schema: checked as an op's config."""
    @dg.op(config_schema=schema, name="configured")
    def configured() -> None: ...

    @dg.job(name="accepts")
    def accepts() -> None:
        configured()

    try:
        dg.validate_run_config(accepts, {"ops": {"configured": {"config": config}}})
    except dg.DagsterInvalidConfigError as error:
        return [e.message for e in error.errors]
    return []


def test_each_configured_class_accepts_its_config(monkeypatch):
    for name, value in SECRETS.items():  # the values deploy/dagster.yaml reads from the environment
        monkeypatch.setenv(name, value)
    raw = deploy_instance()
    sections = [raw[key] for key in ("run_launcher", "run_coordinator", "compute_logs")]
    sections.append({"module": "dagster_postgres", "class": "DagsterPostgresStorage", "config": raw["storage"]["postgres"]})
    for section in sections:
        schema = getattr(importlib.import_module(section["module"]), section["class"]).config_type()
        assert config_errors(schema, section["config"]) == [], section["class"]
        assert config_errors(schema, section["config"] | {"not_a_setting": 1}), section["class"]  # a wrong key is refused


# A key names a credential when one of its words (split on _, - and camelCase) is one of these,
# or when "key" is one of several words (access_key_id, apiKey, private_key); a bare "key" (a
# tag's key in tag_concurrency_limits) does not.
CREDENTIAL_WORDS = {"password", "passwd", "pwd", "username", "user", "hostname", "host", "secret", "token", "credential",
                    "credentials", "passphrase"}
ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
URL_WITH_USERINFO = re.compile(r"\w+://[^/@\s]+@")


def key_words(key: str) -> list[str]:
    return [w.lower() for w in re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", key)]


def names_a_credential(key: str) -> bool:
    words = key_words(key)
    return bool(CREDENTIAL_WORDS.intersection(words)) or (len(words) > 1 and "key" in words) or "apikey" in words


def walk(node, path=()):
    """Every (path, key, value) of a parsed YAML document, depth first."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from walk(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from walk(item, (*path, str(index)))


def env_name(value) -> str | None:
    """NAME when `value` is Dagster's `{env: NAME}`, else None."""
    if isinstance(value, dict) and list(value) == ["env"] and isinstance(value["env"], str) and ENV_NAME.fullmatch(value["env"]):
        return value["env"]
    return None


def secret_problems(config: dict, readme: str) -> list[str]:
    """What an instance YAML gets wrong about secrets: a credential-like key given anything but
    `{env: NAME}`, a URL carrying user:password@, or an `env:` variable deploy/README.md never names."""
    problems = []
    for path, key, value in walk(config):
        where = ".".join((*path, str(key)))
        if names_a_credential(str(key)) and env_name(value) is None:
            problems.append(f"{where} is not given as {{env: NAME}}")
        if isinstance(value, str) and URL_WITH_USERINFO.search(value):
            problems.append(f"{where} holds a URL with credentials")
        if key == "env" and isinstance(value, str) and not re.search(rf"\b{re.escape(value)}\b", readme):
            problems.append(f"{where}: {value} is not documented in deploy/README.md")
    return problems


def deploy_config() -> dict:
    return yaml.safe_load((DEPLOY / "dagster.yaml").read_text())


def deploy_readme() -> str:
    return (DEPLOY / "README.md").read_text()


def test_every_credential_of_the_yaml_comes_from_a_documented_environment_variable():
    config = deploy_config()
    assert secret_problems(config, deploy_readme()) == []
    # The rule sees the credentials that are there: a walk that missed them would pass anything.
    credentials = {".".join((*path, key)): env_name(value) for path, key, value in walk(config) if names_a_credential(str(key))}
    assert credentials == {
        "storage.postgres.postgres_db.hostname": "DAGSTER_PG_HOST",
        "storage.postgres.postgres_db.username": "DAGSTER_PG_USERNAME",
        "storage.postgres.postgres_db.password": "DAGSTER_PG_PASSWORD",
    }


def mutated(change):
    config = deploy_config()
    change(config)
    return config


def postgres_db(config):
    return config["storage"]["postgres"]["postgres_db"]


MUTATIONS = [
    ("literal password", lambda c: postgres_db(c).update(password="hunter2"),
     ["storage.postgres.postgres_db.password is not given as {env: NAME}"]),
    ("empty password", lambda c: postgres_db(c).update(password=""),
     ["storage.postgres.postgres_db.password is not given as {env: NAME}"]),
    ("literal database host", lambda c: postgres_db(c).update(hostname="db.internal"),
     ["storage.postgres.postgres_db.hostname is not given as {env: NAME}"]),
    ("literal username", lambda c: postgres_db(c).update(username="dagster"),
     ["storage.postgres.postgres_db.username is not given as {env: NAME}"]),
    ("env with a default", lambda c: postgres_db(c).update(password={"env": "DAGSTER_PG_PASSWORD", "default": "x"}),
     ["storage.postgres.postgres_db.password is not given as {env: NAME}"]),
    ("undocumented variable", lambda c: postgres_db(c).update(password={"env": "PG_SECRET_PASSWORD"}),
     ["storage.postgres.postgres_db.password.env: PG_SECRET_PASSWORD is not documented in deploy/README.md"]),
    ("a documented name's prefix", lambda c: postgres_db(c).update(db_name={"env": "DAGSTER_PG"}),
     ["storage.postgres.postgres_db.db_name.env: DAGSTER_PG is not documented in deploy/README.md"]),
    ("URL with a password", lambda c: c["storage"]["postgres"].update(postgres_url="postgresql://dagster:hunter2@db:5432/d"),
     ["storage.postgres.postgres_url holds a URL with credentials"]),
    ("AWS key in the compute logs", lambda c: c["compute_logs"]["config"].update(aws_secret_access_key="abc"),
     ["compute_logs.config.aws_secret_access_key is not given as {env: NAME}"]),
    ("token in a list", lambda c: c["run_launcher"]["config"].update(env_vars=[{"apiToken": "t0k"}]),
     ["run_launcher.config.env_vars.0.apiToken is not given as {env: NAME}"]),
    ("camelCase access key", lambda c: c["run_launcher"]["config"].update(accessKeyId="AKIA"),
     ["run_launcher.config.accessKeyId is not given as {env: NAME}"]),
]


@pytest.mark.parametrize("label, change, problems", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_a_secret_written_into_the_yaml_is_caught(label, change, problems):
    assert secret_problems(mutated(change), deploy_readme()) == problems


def test_a_tags_key_and_the_secrets_tag_are_not_credentials():
    assert [k for k in ("key", "secrets_tag", "tag_concurrency_limits", "db_name", "port") if names_a_credential(k)] == []


@pytest.mark.slow
@pytest.mark.parametrize("route", ["direct", "through PgBouncer"])
def test_a_backfill_runs_on_the_production_storage(tmp_path, request, postgres, route):
    """deploy/dagster.yaml's storage section, unchanged, on a real PostgreSQL server, reached
    directly or through a connection pooler in transaction mode (deploy/README.md): a range run
    through the CLI with the event batching deploy/README.md recommends. Dagster records every
    partition, and the run's events and asset status are readable back from Postgres."""
    import psycopg2

    database = "ecomm_deploy_" + ("direct" if route == "direct" else "pooled")
    admin = psycopg2.connect(dbname="postgres", **postgres)
    admin.autocommit = True  # CREATE DATABASE cannot run in a transaction
    admin.cursor().execute(f"CREATE DATABASE {database}")
    admin.close()
    server = postgres if route == "direct" else request.getfixturevalue("pgbouncer")
    home = tmp_path / "home"
    home.mkdir()
    storage = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())["storage"]
    (home / "dagster.yaml").write_text(yaml.safe_dump({"storage": storage, "telemetry": {"enabled": False}}))
    env = os.environ | {
        "PYTHONPATH": str(DEPLOY.parent),  # this checkout's code, whatever the virtualenv installed
        "DAGSTER_HOME": str(home), "DAGSTER_PG_HOST": server["host"], "DAGSTER_PG_USERNAME": server["user"],
        "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": database, "DAGSTER_EVENT_BATCH_SIZE": "1000",
        "ECOMM_LAKE_URI": str(tmp_path / "lake"), "ECOMM_DUCKDB_CATALOG": str(tmp_path / "catalog.duckdb"),
        "ECOMM_ALERTS_PATH": str(tmp_path / "alerts.jsonl"), "ECOMM_ORDERS_PER_DAY": "100",
    }
    # deploy/dagster.yaml names port 5432; the test server listens elsewhere.
    (home / "dagster.yaml").write_text((home / "dagster.yaml").read_text().replace("port: 5432", f"port: {server['port']}"))
    cli = subprocess.run(
        [DAGSTER, "asset", "materialize", "-m", "ecomm_assets", "--select", "*", "--partition-range", "2024-01-14...2024-01-16"],
        check=False, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert cli.returncode == 0, cli.stderr[-3000:]

    with psycopg2.connect(dbname=database, **postgres) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT status FROM runs")
        assert cursor.fetchall() == [("SUCCESS",)]
        cursor.execute(
            "SELECT partition, count(*) FROM event_logs WHERE asset_key = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'"
            " GROUP BY partition ORDER BY partition", ('["order_lines"]',),
        )
        assert cursor.fetchall() == [("2024-01-14", 1), ("2024-01-15", 1), ("2024-01-16", 1)]
    conn.close()
    if route != "direct":  # the run's storage calls went through the pooler
        console = psycopg2.connect(dbname="pgbouncer", **server)
        console.autocommit = True  # the console takes no transactions
        with console.cursor() as cursor:
            cursor.execute("SHOW STATS")
            names = [column.name for column in cursor.description]
            stats = {row[names.index("database")]: dict(zip(names, row)) for row in cursor.fetchall()}
        console.close()
        assert stats[database]["total_xact_count"] > 100, stats.get(database)


def test_production_run_monitoring_sees_dead_run_tasks_and_one_run_writes_a_day():
    config = deploy_instance()
    assert config["run_monitoring"]["enabled"] and config["run_monitoring"]["start_timeout_seconds"] == 300
    assert config["run_retries"]["enabled"]  # the ingest runs' dagster/max_retries tag needs it
    launcher = getattr(importlib.import_module(config["run_launcher"]["module"]), config["run_launcher"]["class"])
    assert launcher.supports_check_run_worker_health.fget(None) is True  # the property the monitor asks
    assert config["run_coordinator"]["config"]["tag_concurrency_limits"] == [
        {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
        {"key": "dagster/backfill", "value": {"applyLimitPerUniqueValue": True}, "limit": 16},
        {"key": "ecomm/landing-file", "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
    ]


def test_a_scale_out_backfill_leaves_run_slots_for_the_daily_runs_and_its_tasks_hold_a_batch():
    """deploy/README.md's figures against deploy/dagster.yaml: one backfill's runs (its batches of
    days) never take every slot of the queue, and the task size is the one the README sizes batches for."""
    config = deploy_instance()
    coordinator = config["run_coordinator"]["config"]
    [backfill_limit] = [entry["limit"] for entry in coordinator["tag_concurrency_limits"] if entry["key"] == "dagster/backfill"]
    assert 1 <= backfill_limit < coordinator["max_concurrent_runs"]
    resources = config["run_launcher"]["config"]["run_resources"]
    readme = deploy_readme()
    assert f"max_concurrent_runs: {coordinator['max_concurrent_runs']}" in readme
    assert f"`dagster/backfill` limit {backfill_limit}" in readme
    assert f"{int(resources['cpu']) / 1024:g} vCPU / {int(resources['memory']) / 1024:g} GB" in readme
    assert "ECOMM_BACKFILL_DAYS_PER_RUN" in readme
