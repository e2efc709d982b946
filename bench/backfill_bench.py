"""A year of backfill in one command: 365 days x 1,000 synthetic orders, the whole graph.

    python bench/backfill_bench.py [--days 365] [--orders-per-day 1000] [--instances default,fast-local]
                                   [--postgres-url postgresql://user@host:port/database]
                                   [--pooler-url postgresql://user@host:port/database]

Runs exactly what a user types in the project folder, with DAGSTER_HOME unset:
    dagster asset materialize -m ecomm_assets --select '*' --partition-range FIRST...LAST
in a fresh folder holding the instance's dagster.yaml (so a fresh .dagster/ storage), and prints
the wall time (CLI start to exit), the peak memory of the run and the events it recorded in the
instance. Then it runs the same command on bench/noop_graph.py, the same asset graph and check steps doing nothing:
the time Dagster's own bookkeeping takes (events per asset and day in the instance's storage). The
difference is the data work, which is set against the engine's limit measured in the same
invocation: bench/flatten_bench.py's DuckDB same-columns pipeline flattening all the run's raw
orders as one file (median of 3 runs, each in its own process).

Targets (issue 13): data work <= 5x that DuckDB time; at most 5,000 events in the instance; peak
<= 500 MiB (also for `--days 1096 --orders-per-day 5000`); on Postgres, <= 30 s wall for the year.

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
- with --pooler-url too: postgres+pooler, the postgres instance reaching the same server through a
  connection pooler (PgBouncer in transaction mode, RDS Proxy): dagster-postgres opens a connection
  per storage call in a run's process, which a pooler makes cheap.
"""

import argparse
import contextlib
import functools
import glob
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from urllib.parse import urlsplit, urlunsplit

import pyarrow.parquet as pq
import yaml

from ecomm_assets.core.layout import raw_orders_root, table_dir

FIRST = date(2024, 1, 1)  # the first day, unless the range would reach today (then it ends yesterday)
BENCH = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(BENCH)
NOOP_GRAPH = os.path.join(BENCH, "noop_graph.py")
FLATTEN_BENCH = os.path.join(BENCH, "flatten_bench.py")
ENGINE_RUNS = 3
TARGET_DATA_WORK_RATIO = 5
TARGET_EVENTS = 5_000
TARGET_PEAK_MIB = 500
TARGET_POSTGRES_WALL_S = 30


def instance_config(path: str) -> dict:
    with open(os.path.join(PROJECT, path)) as config:
        return yaml.safe_load(config)


DEFAULT_INSTANCE = instance_config("dagster.yaml")
FAST_LOCAL_INSTANCE = instance_config("deploy/dagster-fast-local.yaml")
OPT_IN = os.path.join(PROJECT, "deploy", "opt_in")
BATCHED = {"DAGSTER_EVENT_BATCH_SIZE": "1000"}
SUBSET_PLANNED = {"DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1"}


def run(target: list[str], folder: str, first: date, last: date, orders_per_day: int, instance: dict,
        env_extra: dict) -> tuple[float, float, int]:
    """Wall seconds, peak MiB and events recorded of one CLI backfill run in `folder` (new), which
    holds the instance's dagster.yaml, with DAGSTER_HOME unset: what a user's clone gets."""
    os.makedirs(folder)
    env = {name: value for name, value in os.environ.items() if name != "DAGSTER_HOME"} | env_extra | {
        # this checkout's code, and the opt-in storage (imported only by the fast-local instance)
        "PYTHONPATH": os.pathsep.join(filter(None, [PROJECT, OPT_IN, os.environ.get("PYTHONPATH")])),
        "ECOMM_LAKE_URI": os.path.join(folder, "lake"),
        "ECOMM_DUCKDB_CATALOG": os.path.join(folder, "catalog.duckdb"),
        "ECOMM_ALERTS_PATH": os.path.join(folder, "alerts.jsonl"),
        "ECOMM_ORDERS_PER_DAY": str(orders_per_day),
        "ECOMM_START_DATE": str(first),
    }
    with open(os.path.join(folder, "dagster.yaml"), "w") as config:
        yaml.safe_dump(instance | {"telemetry": {"enabled": False}}, config)
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    command = [dagster, "asset", "materialize", *target, "--select", "*", "--partition-range", f"{first}...{last}"]
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
    return seconds, usage.ru_maxrss / 1024, recorded_events(folder)


def recorded_events(folder: str) -> int:
    """Every event the instance in `folder` holds, over all its runs."""
    import dagster as dg

    with contextlib.chdir(folder):  # the SQLite storage's base_dir is relative to the working directory
        instance = dg.DagsterInstance.from_config(folder)
        try:
            return sum(len(instance.all_logs(record.dagster_run.run_id)) for record in instance.get_run_records())
        finally:
            instance.dispose()


def engine_seconds(folder: str) -> tuple[float, int]:
    """The engine's limit for the same data: the median seconds of bench/flatten_bench.py's DuckDB
    same-columns pipeline over every raw order file of the lake in `folder` as one file; its orders."""
    raw = os.path.join(folder, "lake", raw_orders_root())
    source = os.path.join(folder, "all_orders.jsonl")
    with open(source, "wb") as out:
        for day in sorted(os.listdir(raw)):
            for name in sorted(os.listdir(os.path.join(raw, day))):
                with open(os.path.join(raw, day, name), "rb") as day_file:
                    out.write(day_file.read())
    with open(source, "rb") as count:
        orders = sum(1 for _ in count)
    seconds = []
    for _ in range(ENGINE_RUNS):
        output = subprocess.run([sys.executable, FLATTEN_BENCH, "--child", "duckdb_same_columns", "--src", source],
                                check=True, capture_output=True, text=True).stdout
        seconds.append(json.loads(output.strip().splitlines()[-1])["seconds"])
    os.remove(source)
    return statistics.median(seconds), orders


def file_floor_seconds(folder: str) -> tuple[float, int]:
    """What the lake's layout alone costs, in the same invocation: reading every Parquet file the
    run wrote once and writing it once more (to memory, the project's compression), file by file
    as pyarrow does it; median of ENGINE_RUNS passes, and the number of files. Data work cannot go
    below this while each table keeps a file per day."""
    from ecomm_assets.core.storage import PARQUET_COMPRESSION, PARQUET_COMPRESSION_LEVEL

    paths = sorted(glob.glob(os.path.join(folder, "lake", "**", "*.parquet"), recursive=True))
    seconds = []
    for _ in range(ENGINE_RUNS):
        start = time.perf_counter()
        for path in paths:
            pq.write_table(pq.ParquetFile(path).read(), io.BytesIO(), compression=PARQUET_COMPRESSION,
                           compression_level=PARQUET_COMPRESSION_LEVEL)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), len(paths)


class PostgresDatabase:
    """A new database on the given server for one measured run, dropped afterwards; the instance
    reaches it directly, or through a connection pooler at `pooler_url` (which forwards any
    database name to that server)."""

    def __init__(self, server_url: str, pooler_url: str | None = None):
        self.server_url, self.instance_url = server_url, pooler_url or server_url
        self.name = f"ecomm_bench_{uuid.uuid4().hex[:12]}"

    def _admin(self, statement: str) -> None:
        import psycopg2

        connection = psycopg2.connect(self.server_url)
        connection.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
        connection.cursor().execute(statement)
        connection.close()

    def __enter__(self) -> dict:
        self._admin(f"CREATE DATABASE {self.name}")
        parts = urlsplit(self.instance_url)
        # dagster-postgres needs psycopg2 named (see deploy/dagster.yaml).
        url = urlunsplit(("postgresql+psycopg2", parts.netloc, f"/{self.name}", parts.query, ""))
        return {"storage": {"postgres": {"postgres_url": url}}}

    def __exit__(self, *exc) -> None:
        self._admin(f"DROP DATABASE {self.name} WITH (FORCE)")  # a pooler may still hold a connection


def measure(name: str, folder: str, first: date, last: date, orders_per_day: int, new_instance, env_extra: dict) -> dict:
    """`new_instance()`: a context giving a fresh instance's dagster.yaml settings."""
    results = {}
    for label, target in (("ours", ["-m", "ecomm_assets"]), ("control", ["-f", NOOP_GRAPH])):
        run_folder = os.path.join(folder, name, label)
        with new_instance() as instance:
            results[label] = run(target, run_folder, first, last, orders_per_day, instance, env_extra)
        if label == "ours":
            lake = os.path.join(run_folder, "lake", table_dir("order_lines"))
            results["partitions"] = sum(1 for _ in os.scandir(lake))
            results["folder"] = run_folder
    return results


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--orders-per-day", type=int, default=1000)
    parser.add_argument("--postgres-url", help="a PostgreSQL server (libpq URL) for the postgres instances")
    parser.add_argument("--pooler-url", help="a connection pooler (PgBouncer, RDS Proxy) in front of --postgres-url's "
                        "server, forwarding any database name: adds the postgres+pooler instance")
    parser.add_argument("--instances", help="comma-separated names of the instances to measure (default: all)")
    args = parser.parse_args()
    first = min(FIRST, date.today() - timedelta(days=args.days))  # days exist up to yesterday (UTC)
    last = first + timedelta(days=args.days - 1)
    default = functools.partial(contextlib.nullcontext, DEFAULT_INSTANCE)
    fast_local = functools.partial(contextlib.nullcontext, FAST_LOCAL_INSTANCE)
    setups = [("default", default, {}), ("default+subset", default, SUBSET_PLANNED),
              ("fast-local", fast_local, {}), ("fast-local+subset", fast_local, SUBSET_PLANNED)]
    if args.postgres_url:
        postgres = functools.partial(PostgresDatabase, args.postgres_url)
        setups += [("postgres", postgres, BATCHED), ("postgres+subset", postgres, BATCHED | SUBSET_PLANNED)]
        if args.pooler_url:
            setups.append(("postgres+pooler", functools.partial(PostgresDatabase, args.postgres_url, args.pooler_url), BATCHED))
    if args.instances:
        wanted = args.instances.split(",")
        unknown = set(wanted) - {name for name, _, _ in setups}
        if unknown:
            parser.error(f"unknown instances {sorted(unknown)}: choose from {[name for name, _, _ in setups]}")
        setups = [setup for setup in setups if setup[0] in wanted]
    print(f"{args.days} days x {args.orders_per_day} orders/day, whole graph, one CLI run per line; "
          "control = the same graph and checks doing nothing; engine = DuckDB same-columns flatten of the same orders as one file")
    print(f"{'instance':<18} {'wall':>8} {'peak MiB':>9} {'control':>8} {'data work':>10} {'engine':>7} "
          f"{'work/engine':>11} {'events':>7} {'control events':>14}")
    engine = None
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="ecomm-backfill-") as folder:
        for name, new_instance, env_extra in setups:
            r = measure(name, folder, first, last, args.orders_per_day, new_instance, env_extra)
            (ours, peak, events), (control, _, control_events) = r["ours"], r["control"]
            assert r["partitions"] == args.days, r["partitions"]
            if engine is None:  # the same orders for every instance: measured once
                engine, orders = engine_seconds(r["folder"])
                floor, files = file_floor_seconds(r["folder"])
                print(f"(engine: {orders} orders, median of {ENGINE_RUNS} runs; file floor: reading and writing the "
                      f"run's {files} Parquet files once takes {floor:.1f} s = {floor / engine:.1f}x the engine)")
            work = ours - control
            print(f"{name:<18} {ours:7.1f}s {peak:9.0f} {control:7.1f}s {work:9.1f}s {engine:6.1f}s "
                  f"{work / engine:10.1f}x {events:7d} {control_events:14d}", flush=True)
            verdicts.append(f"{name}: data work {work / engine:.1f}x engine (target <= {TARGET_DATA_WORK_RATIO}x) "
                            f"{verdict(work <= TARGET_DATA_WORK_RATIO * engine)}; events {events} (target <= "
                            f"{TARGET_EVENTS:,}) {verdict(events <= TARGET_EVENTS)}; peak {peak:.0f} MiB (target <= "
                            f"{TARGET_PEAK_MIB}) {verdict(peak <= TARGET_PEAK_MIB)}"
                            + (f"; wall {ours:.1f} s (target <= {TARGET_POSTGRES_WALL_S} s) "
                               f"{verdict(ours <= TARGET_POSTGRES_WALL_S)}" if name.startswith("postgres") else ""))
    print("\n".join(verdicts))

if __name__ == "__main__":
    main()
