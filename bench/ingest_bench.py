"""Landing ingest of one large landed orders file, per format, each run in its own process.

    python bench/ingest_bench.py [--mib 1024] [--days 8] [--runs 1] [--formats jsonl,json,jsonl.gz,json.gz]

Generates synthetic orders (core/synthetic.py, spread over --days days like a producer's file) as
about --mib MiB of JSON Lines, the same orders as one JSON array (an element per line), and gzip of
both (level 1), written a day at a time (never held whole). Each file is then landed in a fresh
local lake and ingested by a fresh process running `ingest_landing_job` in process, as a user's
run does it (the op, its split, raw day files, quarantine, manifest, recount), on an ephemeral
instance. Prints per format: the landed and uncompressed MB, the median seconds of the job run
(imports and definitions loaded before the clock starts), MB/s of uncompressed text, the peak
memory of the process, and the target (peak <= 512 MiB, >= 50 MB/s): met or MISSED.
"""

import argparse
import contextlib
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRST = date(2024, 1, 1)
FORMATS = ("jsonl", "json", "jsonl.gz", "json.gz")
PEAK_TARGET_MIB, SPEED_TARGET_MB_S = 512, 50


def generate(folder: str, mib: int, days: int, formats: list[str]) -> dict[str, str]:
    """The landed files of `formats` (name -> path) holding about `mib` MiB of JSON Lines."""
    sys.path.insert(0, ROOT)
    from ecomm_assets.core import synthetic

    products, users = synthetic.generate_products(42), synthetic.generate_users(42)
    sample = synthetic.orders_json_lines(synthetic.generate_orders(42, FIRST, 1000, products, users))
    per_order = len(sample) / sample.count(b"\n")
    mean_orders = round(mib * 2**20 / per_order / days)
    paths = {name: os.path.join(folder, f"orders.{name}") for name in formats}
    with contextlib.ExitStack() as files:
        outputs = {name: files.enter_context(_opened(path)) for name, path in paths.items()}
        arrays = [out for name, out in outputs.items() if name.removesuffix(".gz") == "json"]
        for out in arrays:
            out.write(b"[\n")
        for index in range(days):
            day = FIRST + timedelta(days=index)
            lines = synthetic.orders_json_lines(synthetic.generate_orders(42, day, mean_orders, products, users))
            elements = (b",\n" if index else b"") + lines.rstrip(b"\n").replace(b"\n", b",\n")
            for out in outputs.values():
                out.write(elements if out in arrays else lines)
        for out in arrays:
            out.write(b"\n]\n")
    return paths


def _opened(path: str):
    """A file to write, gzip-compressed (level 1: fast) for a .gz name."""
    return gzip.open(path, "wb", compresslevel=1) if path.endswith(".gz") else open(path, "wb")


def uncompressed_size(path: str) -> int:
    if not path.endswith(".gz"):
        return os.path.getsize(path)
    size = 0
    with gzip.open(path, "rb") as unzipped:
        while chunk := unzipped.read(1 << 24):
            size += len(chunk)
    return size


def _peak_rss_kib() -> int:
    """This process's own peak resident memory (ru_maxrss would keep the generating parent's peak
    across fork + exec; see bench/flatten_bench.py)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def child(src: str, folder: str) -> None:
    """One ingest run of `src`, landed in a new lake in `folder`; prints seconds, peak and counts."""
    lake = os.path.join(folder, "lake")
    os.makedirs(os.path.join(lake, "landing", "orders"))
    landed = os.path.join(lake, "landing", "orders", os.path.basename(src))
    os.link(src, landed)  # the landed file, without a copy (the ingest moves it to landing/_ingested/)
    os.environ |= {
        "ECOMM_LAKE_URI": lake, "ECOMM_START_DATE": str(FIRST), "ECOMM_ALERTS_PATH": os.path.join(folder, "alerts.jsonl"),
        "ECOMM_DUCKDB_CATALOG": os.path.join(folder, "catalog.duckdb"),
    }
    sys.path.insert(0, ROOT)
    import dagster as dg

    from ecomm_assets.definitions import defs

    job = defs.resolve_job_def("ingest_landing_job")
    with dg.instance_for_test(temp_dir=folder) as instance:
        start = time.perf_counter()
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        seconds = time.perf_counter() - start
    [entry_path] = os.listdir(os.path.join(lake, "raw", "_landing_manifest"))
    with open(os.path.join(lake, "raw", "_landing_manifest", entry_path)) as manifest:
        entry = json.load(manifest)
    print(json.dumps({"success": result.success, "seconds": seconds, "peak_mib": _peak_rss_kib() / 1024,
                      "records_read": entry["records_read"], "records_routed": entry["records_routed"],
                      "file_error": entry["file_error"], "days": len(entry["days"])}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=1024, help="size of the JSON Lines file (MiB)")
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--runs", type=int, default=1, help="runs per format (the median is shown)")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--child", nargs=2, metavar=("SRC", "FOLDER"))
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    formats = args.formats.split(",")
    if unknown := set(formats) - set(FORMATS):
        parser.error(f"unknown formats {sorted(unknown)}: choose from {list(FORMATS)}")

    with tempfile.TemporaryDirectory(prefix="ecomm-ingest-bench-") as folder:
        started = time.perf_counter()
        paths = generate(folder, args.mib, args.days, formats)
        print(f"generated {', '.join(formats)} in {time.perf_counter() - started:.0f} s; {args.days} days of orders, "
              f"{args.runs} run(s) per format, one process per run")
        print(f"{'format':<9} {'landed MB':>10} {'text MB':>9} {'seconds':>8} {'MB/s':>7} {'peak MiB':>9}  "
              f"target: peak <= {PEAK_TARGET_MIB} MiB, >= {SPEED_TARGET_MB_S} MB/s")
        for name in formats:
            landed_mb, text_mb = os.path.getsize(paths[name]) / 1e6, uncompressed_size(paths[name]) / 1e6
            runs = []
            for _ in range(args.runs):
                run_folder = tempfile.mkdtemp(dir=folder)
                output = subprocess.run([sys.executable, __file__, "--child", paths[name], run_folder],
                                        check=True, capture_output=True, text=True).stdout
                runs.append(json.loads(output.strip().splitlines()[-1]))
                shutil.rmtree(run_folder)
                failed = [r for r in runs if not r["success"] or r["file_error"] or r["records_read"] != r["records_routed"]]
                if failed:
                    sys.exit(f"{name}: the ingest did not route every record: {failed}")
            seconds = statistics.median(r["seconds"] for r in runs)
            peak = max(r["peak_mib"] for r in runs)
            speed = text_mb / seconds
            met = peak <= PEAK_TARGET_MIB and speed >= SPEED_TARGET_MB_S
            print(f"{name:<9} {landed_mb:10.0f} {text_mb:9.0f} {seconds:8.1f} {speed:7.1f} {peak:9.0f}  "
                  f"{'met' if met else 'MISSED'} ({runs[0]['records_read']:,} records, {runs[0]['days']} days)", flush=True)


if __name__ == "__main__":
    main()
