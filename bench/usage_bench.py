"""What the lake costs a month on AWS at 1,000 and at 100,000 orders a day, measured.

    python bench/usage_bench.py [--days 3] [--volumes 1000,100000]

For each volume: a fresh lake on S3 with the Glue catalog (moto's server over loopback HTTP, as
the tests use: the requests and calls are those AWS would be sent), a fresh instance, the whole
graph run for `--days` consecutive days (one run per day, as the daily schedule does), then the
`usage` asset's estimate from what the runs recorded, printed as the README shows it. Also times
the counting itself: what recording one file operation costs, against the operations a day records.
"""

import argparse
import os
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import boto3
import dagster as dg
import requests
from moto.server import ThreadedMotoServer

from ecomm_assets.core.costs import PriceTable
from ecomm_assets.core.usage import Request, Usage
from ecomm_assets.definitions import definitions_with, resources_from
from ecomm_assets.settings import CatalogBackend, Settings

FIRST = date(2024, 1, 15)


def estimate(orders_per_day: int, days: int) -> tuple[dict, float]:
    """The usage asset's metadata after `days` daily runs, and the seconds a day's run took."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    requests.post(f"{endpoint}/moto-api/reset", timeout=10)
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="lake")
    with tempfile.TemporaryDirectory() as folder, dg.instance_for_test() as instance:
        settings = Settings(lake_uri="s3://lake/ecomm", s3_endpoint_url=endpoint, aws_region="us-east-1",
                            catalog=CatalogBackend.GLUE, glue_endpoint_url=endpoint, orders_per_day=orders_per_day,
                            alerts_path=f"{folder}/alerts.jsonl")
        job = definitions_with(resources_from(settings)).resolve_implicit_global_asset_job_def()
        started = time.perf_counter()
        for n in range(days):
            assert job.execute_in_process(partition_key=str(FIRST + timedelta(days=n)), instance=instance).success
        seconds = (time.perf_counter() - started) / days
        metadata = instance.get_latest_materialization_event(dg.AssetKey("usage")).asset_materialization.metadata
        operations = sum(
            entry.value for key in instance.get_asset_keys() if key != dg.AssetKey("usage")
            for name, entry in (instance.get_latest_materialization_event(key).asset_materialization.metadata.items()
                                if instance.get_latest_materialization_event(key) else [])
            if name.startswith("usage/s3/")
        )
    server.stop()
    return {name: entry.value for name, entry in metadata.items()} | {"operations_a_day": operations}, seconds


def counting_cost(calls: int = 200_000) -> float:
    """Seconds one recorded file operation costs (a write with its size and request)."""
    usage = Usage()
    started = time.perf_counter()
    for _ in range(calls):
        usage.wrote("processed/orders/dt=2024-01-15/part-00000.parquet", 1000, Request.PUT)
    return (time.perf_counter() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--volumes", default="1000,100000")
    args = parser.parse_args()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "testing")  # moto's: nothing leaves the machine
    per_operation = counting_cost()
    print(f"prices: {PriceTable().region} list prices as of {PriceTable().as_of}; {args.days} days measured per volume")
    for volume in (int(v) for v in args.volumes.split(",")):
        metadata, seconds = estimate(volume, args.days)
        print(f"\n{metadata['estimate'].md_str if hasattr(metadata['estimate'], 'md_str') else metadata['estimate']}")
        print(f"\n{volume:,} orders a day: ${metadata['monthly_usd']:.2f} a month; a day's run {seconds:.1f} s; "
              f"{metadata['operations_a_day']:.0f} requests recorded on the last day's materializations, "
              f"counting them {metadata['operations_a_day'] * per_operation * 1e3:.3f} ms")
    print(f"\nrecording one file operation: {per_operation * 1e6:.2f} us ({Path(__file__).name})")


if __name__ == "__main__":
    main()
