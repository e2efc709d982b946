"""The requests each step sends S3, per day written: counted as moto's server served them.

    python bench/s3_requests_bench.py [--days 3,10] [--orders 1000]

For each number of days D: a fresh bucket on a moto S3 + Glue server over loopback HTTP, the whole
graph (every asset and check) run once over D days (a single-run range, as a backfill), and every
HTTP request the server answered -- pyarrow's S3 filesystem, boto3 and the Glue client alike --
attributed to the step that was running when it arrived (the in-process executor runs one step at
a time: the run's STEP_START/STEP_SUCCESS times delimit them). Lease objects of the day locks
(`.locks/`) are counted apart from the data.

With two or more D, each figure is split into what a run costs whatever its days (per run) and
what each more day costs (per day: the slope between the smallest and the largest D). Targets:
one PUT per object written (no multipart, no folder markers: for a table, one PUT per table-day),
a GET per object read at most once, and no HEAD or LIST that grows with the days (a storm: a
request per day or per file where one listing answers). Each asset step's counts are checked
against the usage it recorded (usage/s3/<class> on its materialization).
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

import boto3
import dagster as dg
from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

from ecomm_assets.definitions import definitions_with, resources_from
from ecomm_assets.settings import CatalogBackend, Settings

FIRST = date(2024, 1, 15)
LOCKS_PART = "/.locks/"
CLASSES = ("put", "get", "head", "list", "delete", "other")
OUTSIDE = "(between steps)"
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}  # the table, not the run's log


@dataclass(frozen=True)
class Served:
    """One HTTP request the server answered."""

    at: float
    method: str
    path: str
    query: str
    copy_source: bool
    target: str | None  # X-Amz-Target: a JSON API call (Glue), not S3

    @property
    def is_s3(self) -> bool:
        return not self.target

    @property
    def is_lock(self) -> bool:
        return LOCKS_PART in self.path

    @property
    def on_object(self) -> bool:
        return self.path.strip("/").count("/") >= 1

    @property
    def key(self) -> str:
        return self.path.strip("/")

    def request_class(self) -> str:
        """PUT, GET, HEAD, LIST, DELETE, or other (copies, multipart uploads, batch deletes,
        bucket operations)."""
        if not self.on_object:
            return "list" if self.method == "GET" and ("list-type" in self.query or "uploads" in self.query) else "other"
        if self.method == "PUT" and not self.copy_source and "uploadId" not in self.query:
            return "put"
        return {"GET": "get", "HEAD": "head", "DELETE": "delete"}.get(self.method, "other")

    def usage_class(self) -> str | None:
        """The class core/usage.py records it as (S3's billing classes: a multipart POST is a PUT)."""
        if not self.on_object:
            if self.method == "GET":
                return "list"
            return "delete" if self.method == "POST" and "delete" in self.query else None
        if self.copy_source:
            return "copy"
        return {"PUT": "put", "POST": "put", "GET": "get", "HEAD": "head", "DELETE": "delete"}[self.method]


class CountingMotoServer:
    """moto's S3 + Glue server on loopback that keeps every request it serves."""

    def __init__(self) -> None:
        self.served: list[Served] = []
        self._lock = threading.Lock()
        app = DomainDispatcherApplication(create_backend_app)

        def recording(environ, start_response):
            request = Served(time.time(), environ["REQUEST_METHOD"], environ["PATH_INFO"], environ.get("QUERY_STRING", ""),
                             "HTTP_X_AMZ_COPY_SOURCE" in environ, environ.get("HTTP_X_AMZ_TARGET"))
            with self._lock:
                self.served.append(request)
            return app(environ, start_response)

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
        self._server = make_server("127.0.0.1", 0, recording, threaded=True)
        self.endpoint = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def since(self, started: float) -> list[Served]:
        with self._lock:
            return [r for r in self.served if r.at >= started]

    def stop(self) -> None:
        self._server.shutdown()


@dataclass
class StepRequests:
    """What one step sent: S3 requests by class (data and lock leases apart), objects, Glue calls."""

    data: Counter = field(default_factory=Counter)
    lock: Counter = field(default_factory=Counter)
    usage_classes: Counter = field(default_factory=Counter)
    written: set = field(default_factory=set)
    read: set = field(default_factory=set)
    glue: int = 0

    def add(self, request: Served) -> None:
        if not request.is_s3:
            self.glue += 1
            return
        kind = request.request_class()
        (self.lock if request.is_lock else self.data)[kind] += 1
        if (usage_class := request.usage_class()) is not None:
            self.usage_classes[usage_class] += 1
        if not request.is_lock and kind == "put":
            self.written.add(request.key)
        if not request.is_lock and kind == "get":
            self.read.add(request.key)


def step_windows(instance: dg.DagsterInstance, run_id: str) -> list[tuple[float, float, str]]:
    """(start, end, step key) of each step of the run, from its event log."""
    starts, windows = {}, []
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or not entry.step_key:
            continue
        if event.event_type_value == "STEP_START":
            starts[entry.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            windows.append((starts[entry.step_key], entry.timestamp, entry.step_key))
    return sorted(windows)


def attribute(served: list[Served], windows: list[tuple[float, float, str]]) -> dict[str, StepRequests]:
    steps: dict[str, StepRequests] = defaultdict(StepRequests)
    for request in served:
        step = next((key for start, end, key in windows if start <= request.at <= end), OUTSIDE)
        steps[step].add(request)
    return steps


def recorded_usage(instance: dg.DagsterInstance, step: str) -> Counter | None:
    """usage/s3/<class> of the step's newest materialization (None: not an asset that records usage)."""
    event = instance.get_latest_materialization_event(dg.AssetKey(step))
    if event is None:
        return None
    metadata = event.asset_materialization.metadata
    figures = Counter({key.removeprefix("usage/s3/"): entry.value for key, entry in metadata.items()
                       if key.startswith("usage/s3/")})
    return figures if figures else None


def measure(server: CountingMotoServer, days: int, orders: int) -> tuple[dict[str, StepRequests], list[str]]:
    """Every step's requests of a run of the whole graph over `days` days on a fresh bucket, and the
    steps whose recorded usage differs from what the server served."""
    name = f"lake-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    settings = Settings(lake_uri=f"s3://{name}/ecomm", s3_endpoint_url=server.endpoint, aws_region="us-east-1",
                        catalog=CatalogBackend.GLUE, glue_endpoint_url=server.endpoint, orders_per_day=orders,
                        glue_database=f"ecomm_{name[5:]}", alerts_path=os.devnull)
    job = definitions_with(resources_from(settings)).resolve_implicit_global_asset_job_def()
    last = FIRST + timedelta(days=days - 1)
    with dg.instance_for_test() as instance:
        started = time.time()
        result = job.execute_in_process(instance=instance, run_config=QUIET, tags={
            "dagster/asset_partition_range_start": str(FIRST), "dagster/asset_partition_range_end": str(last)})
        assert result.success, "the run failed"
        steps = attribute(server.since(started), step_windows(instance, result.run_id))
        disagreeing = []
        for step, requests in steps.items():
            recorded = recorded_usage(instance, step) if step != OUTSIDE else None
            if recorded is not None and +recorded != +requests.usage_classes:
                disagreeing.append(f"{step}: recorded {dict(+recorded)}, served {dict(+requests.usage_classes)}")
    return steps, disagreeing


def _figure(small: float, large: float, few: int, many: int) -> tuple[float, float]:
    """(per run, per day) of a figure measured at `few` and `many` days."""
    if few == many:
        return 0.0, large / many
    per_day = (large - small) / (many - few)
    return large - per_day * many, per_day


def _cell(per_run: float, per_day: float) -> str:
    if not per_run and not per_day:
        return "0"
    parts = ([f"{per_day:g}/d"] if per_day else []) + ([f"{per_run:+g}" if per_day else f"{per_run:g}"] if per_run else [])
    return " ".join(parts)


def report(runs: dict[int, dict[str, StepRequests]]) -> tuple[list[str], list[str]]:
    """The table's lines (one per step) and the rows whose targets are missed."""
    few, many = min(runs), max(runs)
    small, large = runs[few], runs[many]
    header = ["step", *(f"data {c.upper()}" for c in CLASSES), "lock PUT", "lock GET", "lock DELETE", "Glue",
              "objects written", "PUT/object", "GET/object", "targets"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    missed = []
    for step in sorted(set(small) | set(large), key=lambda s: (s == OUTSIDE, s)):
        a, b = small.get(step, StepRequests()), large.get(step, StepRequests())
        fit = {c: _figure(a.data[c], b.data[c], few, many) for c in CLASSES}
        cells = [_cell(*fit[c]) for c in CLASSES]
        cells += [_cell(*_figure(a.lock[c], b.lock[c], few, many)) for c in ("put", "get", "delete")]
        cells.append(_cell(*_figure(a.glue, b.glue, few, many)))
        cells.append(_cell(*_figure(len(a.written), len(b.written), few, many)))
        puts_per_object = b.data["put"] / len(b.written) if b.written else 0
        gets_per_object = b.data["get"] / len(b.read) if b.read else 0
        cells += [f"{puts_per_object:.2f}" if b.written else "-", f"{gets_per_object:.2f}" if b.read else "-"]
        misses = []
        if b.data["other"] and step != OUTSIDE:
            misses.append("other requests (multipart, copies)")
        if b.written and puts_per_object > 1:
            misses.append("more than one PUT per object")
        if b.read and gets_per_object > 1:
            misses.append("an object read more than once")
        if few != many:
            misses += [f"{c.upper()} grows with the days" for c in ("head", "list") if fit[c][1] > 0]
        cells.append("met" if not misses else "MISSED: " + "; ".join(misses))
        if misses:
            missed.append(step)
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return lines, missed


def totals(runs: dict[int, dict[str, StepRequests]]) -> list[str]:
    lines = []
    for days, steps in sorted(runs.items()):
        data = sum((s.data for s in steps.values()), Counter())
        lock = sum((s.lock for s in steps.values()), Counter())
        lines.append(f"{days} days: {sum(data.values()) + sum(lock.values())} S3 requests "
                     f"({', '.join(f'{c.upper()} {data[c]}' for c in CLASSES)}; lock leases {sum(lock.values())}), "
                     f"{sum(s.glue for s in steps.values())} Glue calls")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", default="3,10", help="comma-separated numbers of days, one run each")
    parser.add_argument("--orders", type=int, default=1000, help="synthetic orders per day")
    args = parser.parse_args()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "testing")  # moto's: nothing leaves the machine
    server = CountingMotoServer()
    runs, disagreeing = {}, []
    try:
        for days in sorted({int(d) for d in args.days.split(",")}):
            runs[days], differ = measure(server, days, args.orders)
            disagreeing += [f"{days} days, {line}" for line in differ]
    finally:
        server.stop()
    lines, missed = report(runs)
    split = ("'n/d +m': n per day written plus m per run" if len(runs) > 1 else
             "one run: each figure over its days, per run and per day not told apart (give two --days for that, "
             "and for the targets on growth)")
    print(f"S3 requests per step of one run of the whole graph, {args.orders:,} orders a day, runs of "
          f"{', '.join(map(str, sorted(runs)))} days; {split}")
    print("\n".join(["", *lines, "", *totals(runs)]))
    print("\nrecorded usage (usage/s3/*) = requests served, for every asset step: "
          + ("yes" if not disagreeing else "NO\n  " + "\n  ".join(disagreeing)))
    print(f"targets missed by {len(missed)} of {len(lines) - 2} steps" + (f": {', '.join(missed)}" if missed else ""))


if __name__ == "__main__":
    main()
