"""A year of backfill in one command: 365 days x 1,000 synthetic orders, the whole graph.

    python bench/backfill_bench.py [--days 365] [--orders-per-day 1000] [--instances default,fast-local]
                                   [--postgres-url postgresql://user@host:port/database]

Runs exactly what a user types in the project folder, with DAGSTER_HOME unset:
    dagster asset materialize -m ecomm_assets --select '*' --partition-range FIRST...LAST
in a fresh folder holding the instance's dagster.yaml (so a fresh .dagster/ storage), and prints
the wall time (CLI start to exit) and the peak memory of the run. Then it runs the same command on
bench/noop_graph.py, the same asset graph doing nothing: the time Dagster's own bookkeeping takes
(events per asset and day in the instance's storage). The difference is the data work.

Instances measured:
- default: the project's dagster.yaml, what `dagster dev` and the CLI use when run from the project
  folder: Dagster's own SQLite storage; default+subset: the same with
  DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=1 (below);
- fast-local (opt-in): deploy/dagster-fast-local.yaml, the same with the event log of
  deploy/opt_in/fast_sqlite_storage.py (Dagster's private classes, see there), on PYTHONPATH; fast-local+subset;
- with --postgres-url (a server you run; each measured run gets a new database, dropped after):
  postgres: deploy/dagster.yaml's storage with DAGSTER_EVENT_BATCH_SIZE=1000, as deploy/README.md
  recommends; postgres+subset: also DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=1 (one planned
  event per asset instead of one per asset and day; see deploy/README.md for its caveat).
"""

import argparse
import contextlib
import functools
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from urllib.parse import urlsplit, urlunsplit

import yaml

from ecomm_assets.core.layout import table_dir

FIRST = date(2024, 1, 1)
BENCH = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(BENCH)
NOOP_GRAPH = os.path.join(BENCH, "noop_graph.py")


def instance_config(path: str) -> dict:
    with open(os.path.join(PROJECT, path)) as config:
        return yaml.safe_load(config)


DEFAULT_INSTANCE = instance_config("dagster.yaml")
FAST_LOCAL_INSTANCE = instance_config("deploy/dagster-fast-local.yaml")
OPT_IN = os.path.join(PROJECT, "deploy", "opt_in")
BATCHED = {"DAGSTER_EVENT_BATCH_SIZE": "1000"}
SUBSET_PLANNED = {"DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1"}


def run(target: list[str], folder: str, last: date, orders_per_day: int, instance: dict, env_extra: dict) -> tuple[float, float]:
    """Wall seconds and peak MiB of one CLI backfill run in `folder` (new), which holds the
    instance's dagster.yaml, with DAGSTER_HOME unset: what a user's clone gets."""
    os.makedirs(folder)
    env = {name: value for name, value in os.environ.items() if name != "DAGSTER_HOME"} | env_extra | {
        # this checkout's code, and the opt-in storage (imported only by the fast-local instance)
        "PYTHONPATH": os.pathsep.join(filter(None, [PROJECT, OPT_IN, os.environ.get("PYTHONPATH")])),
        "ECOMM_LAKE_URI": os.path.join(folder, "lake"),
        "ECOMM_DUCKDB_CATALOG": os.path.join(folder, "catalog.duckdb"),
        "ECOMM_ALERTS_PATH": os.path.join(folder, "alerts.jsonl"),
        "ECOMM_ORDERS_PER_DAY": str(orders_per_day),
        "ECOMM_START_DATE": str(FIRST),
    }
    with open(os.path.join(folder, "dagster.yaml"), "w") as config:
        yaml.safe_dump(instance | {"telemetry": {"enabled": False}}, config)
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    command = [dagster, "asset", "materialize", *target, "--select", "*", "--partition-range", f"{FIRST}...{last}"]
    log_path = os.path.join(folder, "cli.log")
    with open(log_path, "w") as log:
        start = time.perf_counter()
        process = subprocess.Popen(command, env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)  # this run's own peak memory
        seconds = time.perf_counter() - start
    with open(log_path) as log:
        output = log.read()
    if os.waitstatus_to_exitcode(status) != 0 or "RUN_SUCCESS" not in output:
        print(output[-5000:])
        sys.exit(f"backfill of {target} failed (exit {os.waitstatus_to_exitcode(status)})")
    return seconds, usage.ru_maxrss / 1024


class PostgresDatabase:
    """A new database on the given server for one measured run, dropped afterwards."""

    def __init__(self, server_url: str):
        self.server_url = server_url
        self.name = f"ecomm_bench_{uuid.uuid4().hex[:12]}"

    def _admin(self, statement: str) -> None:
        import psycopg2

        connection = psycopg2.connect(self.server_url)
        connection.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
        connection.cursor().execute(statement)
        connection.close()

    def __enter__(self) -> dict:
        self._admin(f"CREATE DATABASE {self.name}")
        parts = urlsplit(self.server_url)
        # dagster-postgres needs psycopg2 named (see deploy/dagster.yaml).
        url = urlunsplit(("postgresql+psycopg2", parts.netloc, f"/{self.name}", parts.query, ""))
        return {"storage": {"postgres": {"postgres_url": url}}}

    def __exit__(self, *exc) -> None:
        self._admin(f"DROP DATABASE {self.name}")


def measure(name: str, folder: str, last: date, orders_per_day: int, new_instance, env_extra: dict) -> dict:
    """`new_instance()`: a context giving a fresh instance's dagster.yaml settings."""
    results = {}
    for label, target in (("ours", ["-m", "ecomm_assets"]), ("control", ["-f", NOOP_GRAPH])):
        run_folder = os.path.join(folder, name, label)
        with new_instance() as instance:
            results[label] = run(target, run_folder, last, orders_per_day, instance, env_extra)
        if label == "ours":
            lake = os.path.join(run_folder, "lake", table_dir("order_lines"))
            results["partitions"] = sum(1 for _ in os.scandir(lake))
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--orders-per-day", type=int, default=1000)
    parser.add_argument("--postgres-url", help="a PostgreSQL server (libpq URL) for the postgres instances")
    parser.add_argument("--instances", help="comma-separated names of the instances to measure (default: all)")
    args = parser.parse_args()
    last = FIRST + timedelta(days=args.days - 1)
    default = functools.partial(contextlib.nullcontext, DEFAULT_INSTANCE)
    fast_local = functools.partial(contextlib.nullcontext, FAST_LOCAL_INSTANCE)
    setups = [("default", default, {}), ("default+subset", default, SUBSET_PLANNED),
              ("fast-local", fast_local, {}), ("fast-local+subset", fast_local, SUBSET_PLANNED)]
    if args.postgres_url:
        postgres = functools.partial(PostgresDatabase, args.postgres_url)
        setups += [("postgres", postgres, BATCHED), ("postgres+subset", postgres, BATCHED | SUBSET_PLANNED)]
    if args.instances:
        wanted = args.instances.split(",")
        unknown = set(wanted) - {name for name, _, _ in setups}
        if unknown:
            parser.error(f"unknown instances {sorted(unknown)}: choose from {[name for name, _, _ in setups]}")
        setups = [setup for setup in setups if setup[0] in wanted]
    print(f"{args.days} days x {args.orders_per_day} orders/day, whole graph, one CLI run per line; "
          "control = the same graph doing nothing")
    print(f"{'instance':<18} {'wall':>8} {'peak':>9} {'control':>8} {'data work':>10}  target <= 60 s")
    with tempfile.TemporaryDirectory(prefix="ecomm-backfill-") as folder:
        for name, new_instance, env_extra in setups:
            r = measure(name, folder, last, args.orders_per_day, new_instance, env_extra)
            (ours, peak), (control, _) = r["ours"], r["control"]
            assert r["partitions"] == args.days, r["partitions"]
            print(f"{name:<18} {ours:7.1f}s {peak:6.0f} MiB {control:7.1f}s {ours - control:9.1f}s  "
                  f"{'met' if ours <= 60 else 'MISSED'}", flush=True)


if __name__ == "__main__":
    main()
