"""Catch up without the daemon: for every feed (orders, purchases, user profiles), ingest every
pending landed file, then recompute exactly the days the ingest touched, one run per range of
consecutive days (what the sensors do under `dagster dev`).

    python -m ecomm_assets.catch_up

Run it from the project folder: it uses the project's instance (dagster.yaml), so its runs show in
the UI, or the instance of DAGSTER_HOME when that is set. Exits 1 when a run failed.
"""

import os
import sys

import dagster as dg

from ecomm_assets.automation import INGEST_JOBS, recompute_requests
from ecomm_assets.core.layout import FEEDS


def catch_up(defs: dg.Definitions, instance: dg.DagsterInstance, say=print) -> bool:
    """Per feed: its ingest run, then a run of its recompute job per range of consecutive days it
    touched; whether all succeeded. The profiles first: the purchase analytics join them."""
    succeeded = True
    for feed in sorted(FEEDS, key=lambda feed: feed.daily):
        ingest_job = INGEST_JOBS[feed.name].name
        ingest = defs.resolve_job_def(ingest_job).execute_in_process(instance=instance, raise_on_error=False)
        say(f"{ingest_job} run {ingest.run_id}: {'succeeded' if ingest.success else 'failed'}")
        requests, deferred, impossible = recompute_requests(instance, ingest.run_id, feed)
        if deferred:
            say(f"not partitions yet, left to the daily schedule: {', '.join(map(str, deferred))}")
        if impossible:
            say(f"before the first partition, never recomputed: {', '.join(map(str, impossible))}")
        succeeded = succeeded and ingest.success
        for request in requests:
            result = defs.resolve_job_def(request.job_name).execute_in_process(
                instance=instance, partition_key=request.partition_key, tags=request.tags, raise_on_error=False
            )
            tags = request.tags
            days = request.partition_key or (
                f"{tags['dagster/asset_partition_range_start']}...{tags['dagster/asset_partition_range_end']}"
                if "dagster/asset_partition_range_start" in tags else "every day")
            say(f"{request.job_name} run {result.run_id} for {days}: {'succeeded' if result.success else 'failed'}")
            succeeded = succeeded and result.success
        if not requests:
            say(f"{feed.name}: no day to recompute")
    return succeeded


def main() -> None:
    from ecomm_assets.definitions import defs

    home = os.environ.get("DAGSTER_HOME")
    if not home and not os.path.exists("dagster.yaml"):
        sys.exit("no dagster.yaml here: run it from the project folder (or set DAGSTER_HOME)")
    with dg.DagsterInstance.get() if home else dg.DagsterInstance.from_config(os.getcwd()) as instance:
        sys.exit(0 if catch_up(defs, instance) else 1)


if __name__ == "__main__":
    main()
