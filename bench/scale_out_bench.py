"""What a 5-year backfill at 100,000 orders a day takes on N workers, from measured days.

    python bench/scale_out_bench.py [--orders-per-day 100000] [--days 8] [--years-days 1826]
                                    [--days-per-run 7,14,30] [--workers 1,4,16,64]
                                    [--task-vcpu 1] [--task-memory-gb 4] [--task-start-seconds 60]

Measures, one CLI run each (bench/backfill_bench.py's `run`: the command a user types, a fresh
folder and instance, the project's dagster.yaml), the whole graph over 1 day and over `--days`
days, and the same on bench/noop_graph.py (the graph doing nothing). The two range lengths give a
run's fixed part (process start, loading the definitions, the unpartitioned assets) and each day's
part; the control splits a day into data work and Dagster's bookkeeping. Measured: CPU seconds
(user + system of the run's process: unlike wall time on this shared machine, they do not grow
with other processes' load), the run's peak memory, and the lake's bytes and S3 requests per day
(the assets' `usage/...` metadata, counted as S3 would see them).

Then prints the expected wall time and cost of a backfill of `--years-days` days in runs of each
`--days-per-run` (ECOMM_BACKFILL_DAYS_PER_RUN) on N workers (the runs of a backfill the run queue
starts at once, one Fargate task each; see `Plan` for how Dagster splits the graph into runs),
with what is assumed printed next to it: the Fargate prices below (from memory, not fetched: check
them), a task's start, a run's CPU seconds spread over the task's vCPUs. S3 and Glue prices are
core/costs.py's dated table.
"""

import argparse
import contextlib
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg
from backfill_bench import DEFAULT_INSTANCE, FIRST, NOOP_GRAPH, run

from ecomm_assets.core.costs import GB, PriceTable
from ecomm_assets.core.usage import PREFIX, Request

# AWS Fargate on-demand list prices, Linux/x86, us-east-1, as this project knew them on AS_OF:
# written from memory (this machine has no internet), not fetched: check them before quoting.
FARGATE_AS_OF = date(2024, 6, 1)
FARGATE_PER_VCPU_HOUR = 0.04048
FARGATE_PER_GB_HOUR = 0.004445
FARGATE_MINIMUM_SECONDS = 60  # a task is billed for at least a minute
# Glue calls a day of the graph with ECOMM_CATALOG=glue, from bench/usage_bench.py (README: 2,810
# requests in 30 days at 100,000 orders a day); the local lake measured here makes none.
GLUE_REQUESTS_PER_DAY = 2810 / 30
PUT_CLASS = {Request.PUT, Request.COPY, Request.LIST}


@dataclass(frozen=True)
class Measured:
    wall: float
    cpu: float
    peak_mib: float
    usage: dict[str, float]


def lake_usage(folder: str) -> dict[str, float]:
    """The usage/... figures of every asset in the run's instance, summed: once per asset and run
    (each day of a range run carries the whole range's figures, usage/days says how many days)."""
    totals: dict[str, float] = {}
    with contextlib.chdir(folder), dg.DagsterInstance.from_config(folder) as instance:
        for key in instance.get_asset_keys():
            records = {record.run_id: record for record in instance.fetch_materializations(key, limit=10_000).records}
            for record in records.values():
                for name, entry in record.asset_materialization.metadata.items():
                    if name.startswith(f"{PREFIX}/") and isinstance(entry.value, int | float):
                        totals[name] = totals.get(name, 0) + entry.value
    return totals


def measure(target: list[str], folder: str, days: int, orders_per_day: int) -> Measured:
    before = os.times()
    # Empty is unset: the CLI runs a range in one run only under the single-run policy.
    wall, peak = run(target, folder, FIRST + timedelta(days=days - 1), orders_per_day, DEFAULT_INSTANCE,
                     {"ECOMM_BACKFILL_DAYS_PER_RUN": ""})
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return Measured(wall, cpu, peak, lake_usage(folder) if target[0] == "-m" else {})


def per_day(short: float, long: float, days: int) -> float:
    return (long - short) / (days - 1)


def hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds >= 3600 else f"{seconds / 60:,.0f} min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders-per-day", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=8, help="the longer measured range (the shorter is 1 day)")
    parser.add_argument("--years-days", type=int, default=1826, help="the backfill to estimate: 5 years")
    parser.add_argument("--days-per-run", default="7,14,30", help="batch sizes to compare (ECOMM_BACKFILL_DAYS_PER_RUN)")
    parser.add_argument("--workers", default="1,4,16,64")
    parser.add_argument("--task-vcpu", type=float, default=1.0)
    parser.add_argument("--task-memory-gb", type=int, default=4, help="the smallest task memory (deploy/dagster.yaml's)")
    parser.add_argument("--task-start-seconds", type=float, default=60.0,
                        help="assumed: Fargate provisioning and image pull before the run starts")
    args = parser.parse_args()
    if args.days < 2:
        parser.error("--days must be at least 2")
    cores = os.cpu_count()
    print(f"measured on {cores} cores, {args.orders_per_day:,} orders/day, whole graph, one CLI run per line "
          "(the project's dagster.yaml: SQLite)")
    results = {}
    with tempfile.TemporaryDirectory(prefix="ecomm-scale-out-") as folder:
        for label, target in (("ours", ["-m", "ecomm_assets"]), ("control", ["-f", NOOP_GRAPH])):
            for days in (1, args.days):
                measured = measure(target, os.path.join(folder, f"{label}-{days}"), days, args.orders_per_day)
                results[label, days] = measured
                print(f"  {label:<8} {days} day(s): {measured.wall:6.1f} s wall, {measured.cpu:6.1f} s CPU, "
                      f"{measured.peak_mib:5.0f} MiB peak", flush=True)
    one, many = results["ours", 1], results["ours", args.days]
    control_one, control_many = results["control", 1], results["control", args.days]
    day_wall = per_day(one.wall, many.wall, args.days)
    day_cpu = per_day(one.cpu, many.cpu, args.days)
    day_bookkeeping = per_day(control_one.cpu, control_many.cpu, args.days)
    day_peak = per_day(one.peak_mib, many.peak_mib, args.days)
    run_fixed = one.cpu - day_cpu
    day_usage = {name: per_day(one.usage.get(name, 0), value, args.days) for name, value in many.usage.items()}
    s3_put_class = sum(v for n, v in day_usage.items() if n.rpartition("/")[2] in PUT_CLASS and n.startswith(f"{PREFIX}/s3/"))
    s3_get_class = sum(day_usage.get(f"{PREFIX}/s3/{r}", 0) for r in (Request.GET, Request.HEAD))
    day_bytes = sum(v for n, v in day_usage.items() if n.endswith("/bytes_written") and not n.startswith(f"{PREFIX}/s3/"))
    print(f"\na day: {day_cpu:.1f} s CPU ({day_cpu - day_bookkeeping:.1f} s data work, {day_bookkeeping:.2f} s "
          f"Dagster bookkeeping), {day_wall:.1f} s wall here; a run's fixed part: {run_fixed:.1f} s CPU; peak memory "
          f"{one.peak_mib:.0f} MiB for 1 day, {many.peak_mib:.0f} MiB for {args.days} days; load average at the end "
          f"{os.getloadavg()[0]:.1f} on {cores} cores")
    print(f"a day's lake: {day_bytes / 2**20:.1f} MiB written, {s3_put_class:.0f} PUT/COPY/LIST and "
          f"{s3_get_class:.0f} GET/HEAD requests")

    prices = PriceTable()
    print(f"\n{args.years_days:,} days at {args.orders_per_day:,} orders/day on {args.task_vcpu:g} vCPU tasks, "
          f"{args.task_start_seconds:.0f} s to start a task (assumed); Fargate {FARGATE_PER_VCPU_HOUR}/vCPU-h, "
          f"{FARGATE_PER_GB_HOUR}/GB-h (us-east-1 on-demand as of {FARGATE_AS_OF}, from memory); S3 and Glue: "
          f"{prices.region} list prices as of {prices.as_of}")
    # S3 requests and Glue calls are per day whatever the split; the bill counts them once.
    s3_requests = args.years_days * (s3_put_class * prices.s3_put_copy_post_list_per_1000
                                     + s3_get_class * prices.s3_get_and_other_per_1000) / 1000
    glue_requests = args.years_days * GLUE_REQUESTS_PER_DAY
    # A one-off backfill's Glue requests are billed past the month's free million.
    glue = max(0.0, glue_requests - prices.glue_free_requests_per_month) * prices.glue_requests_per_million / 1e6
    print(f"S3 requests ${s3_requests:,.2f}, Glue ${glue:,.2f} ({glue_requests:,.0f} requests, the daily runs' count: "
          "an upper bound) for any split")
    print("| days per run | task memory | runs | workers | wall time | Fargate | total |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for days_per_run in (int(d) for d in args.days_per_run.split(",")):
        plan = Plan(args, days_per_run, day_cpu, run_fixed, one.peak_mib + (days_per_run - 1) * day_peak)
        for workers in (int(w) for w in args.workers.split(",")):
            print(f"| {days_per_run} | {plan.memory_gb} GB ({plan.peak_mib:,.0f} MiB peak) | {plan.runs} | {workers} | "
                  f"{hours(plan.wall_seconds(workers))} | ${plan.fargate_usd:,.2f} | ${plan.fargate_usd + s3_requests + glue:,.2f} |")
    stored_gb = args.years_days * day_bytes / GB
    print(f"then stored: {stored_gb:,.0f} GB, ${stored_gb * prices.s3_storage_per_gb_month:,.2f} a month in S3 Standard")


class Plan:
    """A backfill in batches of `days_per_run` days, as Dagster's asset backfill runs it: per batch a
    run of the daily assets upstream of dim_user_profiles and a run of those downstream of it (the
    catalog, the purchase analytics: the unpartitioned asset splits the batch's runs), then one run
    each for dim_user_profiles, the dashboard and the usage estimate. A run on a task takes the task's
    start, the run's fixed part and its days, in CPU seconds spread over the task's vCPUs (CPU time,
    unlike wall time on this shared machine, does not grow with other processes' load; waits on S3
    are not in it). The task's memory: the batch's peak (linear in its days, from the two measured)
    with a fifth to spare, in whole GB, at least --task-memory-gb."""

    def __init__(self, args: argparse.Namespace, days_per_run: int, day_cpu: float, run_fixed: float, peak_mib: float):
        self.batches = math.ceil(args.years_days / days_per_run)
        self.runs = 2 * self.batches + 3
        self.peak_mib = peak_mib
        self.memory_gb = max(args.task_memory_gb, math.ceil(peak_mib / 1024 / 0.8))
        self.bare_run = args.task_start_seconds + run_fixed / args.task_vcpu
        self.batch_run = self.bare_run + days_per_run * day_cpu / args.task_vcpu
        billed = self.batches * (max(self.batch_run, FARGATE_MINIMUM_SECONDS) + max(self.bare_run, FARGATE_MINIMUM_SECONDS))
        billed += 3 * max(self.bare_run, FARGATE_MINIMUM_SECONDS)
        self.fargate_usd = billed / 3600 * (args.task_vcpu * FARGATE_PER_VCPU_HOUR + self.memory_gb * FARGATE_PER_GB_HOUR)

    def wall_seconds(self, workers: int) -> float:
        """The upstream runs in waves of `workers`, then the downstream ones, then the dashboard and
        the usage estimate one after the other (dim_user_profiles runs beside the first wave)."""
        waves = math.ceil(self.batches / workers)
        return waves * (self.batch_run + self.bare_run) + 2 * self.bare_run

if __name__ == "__main__":
    sys.exit(main())
