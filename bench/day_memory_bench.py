"""Peak memory of each step of the asset graph for one very large day, each step in a fresh process.

    python bench/day_memory_bench.py [--orders-per-day 2000000] [--day 2024-01-15] [--keep FOLDER]
                                     [--steps snapshots,orders_raw,...]

A fresh local lake (a temporary folder, or FOLDER with --keep, kept afterwards) and a Dagster
instance in the same folder (SQLite: the derived tables' checks read the days of their latest
build, and `usage` the materializations, from it). The project's settings are the environment's,
except the lake, the catalog file and the alerts file (in the folder), ECOMM_ORDERS_PER_DAY (the
synthetic shop's mean orders a day; the day's own count is the mean times its weekday's factor,
0.9 on a Monday) and ECOMM_SOURCE=synthetic, ECOMM_CATALOG=duckdb (nothing leaves the machine).

The steps, by default: every materializable asset that has the day's data in its lineage (the
daily assets with no input, `snapshots`, and everything downstream of them), upstream first, and
after each asset its checks as a step of their own (`<table>_checks`) where it has checks. Each
step is one run of the global asset job's subset in its own process: a daily asset (or its checks)
for the day's partition, a derived table (not partitioned) with no partition, building the days
whose inputs are newer, that is the day. `--steps` picks some of them (run in the graph's order).

Prints, per step, the process's peak memory (VmHWM: max RSS, the imports' included), the peak
above the baseline, the seconds of the step's run (imports and definitions loaded before the clock
starts) and issue 13's target, "memory does not grow with the day: a day of 10,000,000 orders
processed with peak <= 1 GiB": met or MISSED per step against 1024 MiB. The baseline is a process
that loads the same and runs nothing. Then the largest step.
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DAY = date(2024, 1, 15)
PEAK_TARGET_MIB = 1024
TARGET = "memory does not grow with the day: a day of 10,000,000 orders processed with peak <= 1 GiB"
BASELINE = "baseline"
CHECKS_SUFFIX = "_checks"
MARKER = "day_memory_bench.json"  # in a kept folder: the day and orders its lake holds
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}  # the table, not the run's log
INSTANCE_YAML = "storage:\n  sqlite:\n    base_dir: {folder}/dagster\ntelemetry:\n  enabled: false\n"


def plan(defs) -> list[str]:
    """Every step of the day: the materializable assets that have a daily input-less asset (the
    day's data) in their lineage, upstream first, each followed by its checks' step if it has checks."""
    graph = defs.resolve_asset_graph()
    in_day: set = set()
    steps = []
    for key in graph.toposorted_asset_keys:
        node = graph.get(key)
        if not node.is_materializable:
            continue
        if (node.partitions_def is not None and not node.parent_keys) or in_day & set(node.parent_keys):
            in_day.add(key)
            steps.append(key.to_user_string())
            if node.check_keys:
                steps.append(key.to_user_string() + CHECKS_SUFFIX)
    return steps


def _selection(defs, step: str):
    """(asset keys, asset check keys, partitioned) of a step."""
    import dagster as dg

    graph = defs.resolve_asset_graph()
    key = dg.AssetKey(step)
    if graph.has(key):
        return {key}, set(), graph.get(key).partitions_def is not None
    key = dg.AssetKey(step.removesuffix(CHECKS_SUFFIX))
    return set(), set(graph.get(key).check_keys), graph.get(key).partitions_def is not None


def _peak_rss_kib() -> int:
    """This process's own peak resident memory (ru_maxrss would keep the parent's peak across
    fork + exec; see bench/flatten_bench.py)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def child(step: str, folder: str, day: str) -> None:
    """One step in this process (or, for the baseline, the same loading and nothing run); prints a
    JSON line: peak MiB, seconds, success, failed checks (the baseline: the plan of steps)."""
    sys.path.insert(0, ROOT)
    import dagster as dg

    from ecomm_assets.definitions import defs

    job = defs.resolve_implicit_global_asset_job_def()
    figures: dict = {}
    with dg.DagsterInstance.from_config(folder) as instance:
        if step == BASELINE:
            figures = {"plan": plan(defs), "day_is_a_partition": job.partitions_def.has_partition_key(day)}
        else:
            assets, checks, partitioned = _selection(defs, step)
            start = time.perf_counter()
            result = job.get_subset(asset_selection=assets, asset_check_selection=checks).execute_in_process(
                partition_key=day if partitioned else None, instance=instance, run_config=QUIET, raise_on_error=False)
            seconds = time.perf_counter() - start
            evaluations = [e.event_specific_data for e in result.all_events
                           if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]
            errors = [e.event_specific_data.error.message.strip().splitlines()[0] for e in result.all_events
                      if e.event_type == dg.DagsterEventType.STEP_FAILURE]
            figures = {"success": result.success, "seconds": seconds, "errors": errors, "checks": len(evaluations),
                       "failed_checks": sorted(e.check_name for e in evaluations if not e.passed)}
    print(json.dumps({"peak_mib": _peak_rss_kib() / 1024} | figures))


def run_step(step: str, folder: str, day: str, env: dict) -> dict:
    """A step in a fresh process; its figures (peak from the child's own VmHWM; if the child died
    before reporting, from wait4's max RSS, with the exit code)."""
    logs = os.path.join(folder, "logs")
    os.makedirs(logs, exist_ok=True)
    out_path = os.path.join(logs, f"{step}.out")
    with open(out_path, "w") as out, open(os.path.join(logs, f"{step}.log"), "w") as log:
        process = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", step, folder, day],
                                   env=env, cwd=folder, stdout=out, stderr=log)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    with open(out_path) as out:
        reported = [line for line in out.read().splitlines() if line.startswith("{")]
    if process.returncode or not reported:
        return {"success": False, "peak_mib": usage.ru_maxrss / 1024, "seconds": None, "checks": 0, "failed_checks": [],
                "errors": [f"the process exited with {process.returncode}: see {os.path.join(logs, step + '.log')}"]}
    return json.loads(reported[-1])


def _prepared(folder: str, day: str, orders_per_day: int) -> None:
    """The folder's instance configuration and marker; a kept folder is reused only for the same day
    and orders (its lake then holds what earlier runs wrote)."""
    marker = os.path.join(folder, MARKER)
    wanted = {"day": day, "orders_per_day": orders_per_day}
    if os.path.exists(marker):
        with open(marker) as held:
            if json.load(held) != wanted:
                sys.exit(f"{folder} holds a lake of another day or size ({marker}): use another folder")
    elif os.path.isdir(folder) and os.listdir(folder):
        sys.exit(f"{folder} is not empty and not this bench's: give an empty or new folder")
    os.makedirs(folder, exist_ok=True)
    with open(marker, "w") as out:
        json.dump(wanted, out)
    with open(os.path.join(folder, "dagster.yaml"), "w") as out:
        out.write(INSTANCE_YAML.format(folder=folder))


def _environment(folder: str, orders_per_day: int) -> dict:
    return {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"} | {
        "ECOMM_LAKE_URI": os.path.join(folder, "lake"), "ECOMM_DUCKDB_CATALOG": os.path.join(folder, "catalog.duckdb"),
        "ECOMM_ALERTS_PATH": os.path.join(folder, "alerts.jsonl"), "ECOMM_ORDERS_PER_DAY": str(orders_per_day),
        "ECOMM_SOURCE": "synthetic", "ECOMM_CATALOG": "duckdb", "DAGSTER_HOME": folder,
    }


def _day_orders(day: str, orders_per_day: int) -> int:
    sys.path.insert(0, ROOT)
    from ecomm_assets.core import synthetic

    return synthetic.orders_for_day(date.fromisoformat(day), orders_per_day)


def measure(orders_per_day: int, day: str, folder: str, steps: list[str] | None) -> int:
    """Runs the baseline and the steps in `folder`, printing a row each as it ends, then the largest
    step; returns the number of steps that did not run to success."""
    folder = os.path.abspath(folder)
    _prepared(folder, day, orders_per_day)
    env = _environment(folder, orders_per_day)
    started = time.perf_counter()
    baseline = run_step(BASELINE, folder, day, env)
    if "plan" not in baseline:
        sys.exit(f"the baseline process failed: {baseline['errors']}")
    if not baseline["day_is_a_partition"]:
        sys.exit(f"{day} is not a daily partition (before ECOMM_START_DATE, or not a day)")
    graph_steps = baseline["plan"]
    if steps:
        if unknown := [s for s in steps if s not in graph_steps]:
            sys.exit(f"unknown steps {unknown}: choose from {graph_steps}")
        graph_steps = [s for s in graph_steps if s in steps]
    print(f"a day of {_day_orders(day, orders_per_day):,} orders ({day}, ECOMM_ORDERS_PER_DAY={orders_per_day:,}), "
          f"synthetic source, a fresh local lake in {folder}; each step in a fresh process; {os.cpu_count()} cores")
    print(f"target (issue 13): {TARGET}: each step's peak <= {PEAK_TARGET_MIB} MiB")
    print(f"{'step':<28} {'peak MiB':>9} {'above baseline':>15} {'seconds':>8}  target")
    print(f"{BASELINE + ' (loading only)':<28} {baseline['peak_mib']:9.0f} {'':>15} {'':>8}", flush=True)
    peaks, failed = {}, []
    for step in graph_steps:
        figures = run_step(step, folder, day, env)
        peak = peaks[step] = figures["peak_mib"]
        seconds = f"{figures['seconds']:8.1f}" if figures["seconds"] is not None else f"{'-':>8}"
        notes = []
        if not figures["success"]:
            failed.append(step)
            notes.append("FAILED: " + "; ".join(figures["errors"])[:300])
        if figures["failed_checks"]:
            notes.append(f"checks failed {len(figures['failed_checks'])} of {figures['checks']}: "
                         + ", ".join(figures["failed_checks"]))
        print(f"{step:<28} {peak:9.0f} {peak - baseline['peak_mib']:15.0f} {seconds}  "
              f"{'met' if peak <= PEAK_TARGET_MIB else 'MISSED'}" + "".join(f" ({note})" for note in notes), flush=True)
    if peaks:
        largest = max(peaks, key=peaks.__getitem__)
        missed = [s for s, p in peaks.items() if p > PEAK_TARGET_MIB]
        print(f"largest step: {largest}, {peaks[largest]:,.0f} MiB "
              f"({'met' if peaks[largest] <= PEAK_TARGET_MIB else 'MISSED'}); "
              f"{len(peaks) - len(missed)} of {len(peaks)} steps within {PEAK_TARGET_MIB} MiB"
              + (f", MISSED by {', '.join(missed)}" if missed else ""))
    if failed:
        print(f"steps that failed: {', '.join(failed)} (their logs: {os.path.join(folder, 'logs')})")
    print(f"{time.perf_counter() - started:.0f} s in all")
    return len(failed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders-per-day", type=int, default=2_000_000, help="ECOMM_ORDERS_PER_DAY, the mean a day")
    parser.add_argument("--day", default=str(DAY), type=lambda text: str(date.fromisoformat(text)))
    parser.add_argument("--keep", metavar="FOLDER", help="make the lake (and logs, instance) here and keep it")
    parser.add_argument("--steps", help="comma-separated steps (assets, <table>_checks); default: every step of the day")
    parser.add_argument("--child", nargs=3, metavar=("STEP", "FOLDER", "DAY"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    steps = [s.strip() for s in args.steps.split(",") if s.strip()] if args.steps else None
    with contextlib.ExitStack() as stack:
        folder = args.keep or stack.enter_context(tempfile.TemporaryDirectory(prefix="ecomm-day-memory-"))
        return 1 if measure(args.orders_per_day, args.day, folder, steps) else 0


if __name__ == "__main__":
    sys.exit(main())
