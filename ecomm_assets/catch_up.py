"""Catch up without the daemon: ingest every pending landed file, then recompute exactly the days
the ingest touched, one run per range of consecutive days (what the sensors do under `dagster dev`).

    python -m ecomm_assets.catch_up

Run it from the project folder: it uses the project's instance (dagster.yaml), so its runs show in
the UI, or the instance of DAGSTER_HOME when that is set. Exits 1 when a run failed.
"""

import os
import sys

import dagster as dg

from ecomm_assets.automation import (
    contiguous_ranges,
    days_to_recompute,
    landed_days,
    recompute_request,
)


def catch_up(defs: dg.Definitions, instance: dg.DagsterInstance, say=print) -> bool:
    """The ingest run, then a lake_job run per range of consecutive days it touched; whether all succeeded."""
    ingest = defs.resolve_job_def("ingest_landing_job").execute_in_process(instance=instance, raise_on_error=False)
    say(f"ingest_landing_job run {ingest.run_id}: {'succeeded' if ingest.success else 'failed'}")
    runnable, deferred, impossible = days_to_recompute(landed_days(instance, ingest.run_id))
    if deferred:
        say(f"not partitions yet, left to the daily schedule: {', '.join(map(str, deferred))}")
    if impossible:
        say(f"before the first partition, never recomputed: {', '.join(map(str, impossible))}")
    succeeded = ingest.success
    lake_job = defs.resolve_job_def("lake_job")
    for first, last in contiguous_ranges(runnable):
        request = recompute_request(ingest.run_id, first, last)
        result = lake_job.execute_in_process(
            instance=instance, partition_key=request.partition_key, tags=request.tags, raise_on_error=False
        )
        days = str(first) if first == last else f"{first}...{last}"
        say(f"lake_job run {result.run_id} for {days}: {'succeeded' if result.success else 'failed'}")
        succeeded = succeeded and result.success
    if not runnable:
        say("no day to recompute")
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
