"""The one partitions definition every asset, check and job shares, and how a backfill splits into runs."""

from collections.abc import Sequence
from datetime import timedelta

import dagster as dg

from ecomm_assets.settings import SETTINGS

# One partition per UTC day from ECOMM_START_DATE: an order belongs to the UTC day of its order date.
DAILY_PARTITIONS = dg.DailyPartitionsDefinition(start_date=SETTINGS.start_date.isoformat(), timezone="UTC")
# Every asset computes a range in one run and writes each day's files itself. Every asset declares
# this policy: the only one Dagster lets an unpartitioned asset have (and the one the CLI's
# --partition-range needs); `in_backfill_batches` gives the daily ones the batched policy.
BACKFILL_POLICY = dg.BackfillPolicy.single_run()
# A day's tables are due by 02:00 UTC the next day (the daily schedule starts at 00:30): a table not
# materialized in the 24 hours before that deadline shows as failing its freshness in the UI.
DAILY_FRESHNESS = dg.FreshnessPolicy.cron(deadline_cron="0 2 * * *", lower_bound_delta=timedelta(hours=24))


def in_backfill_batches(assets: Sequence) -> list:
    """`assets`, each daily-partitioned one with BackfillPolicy.multi_run of ECOMM_BACKFILL_DAYS_PER_RUN
    days when it is set: an asset backfill (UI, daemon) then launches a run per batch of at most that
    many days, which the run queue starts in parallel (deploy/README.md: Scale-out backfills; the day
    locks keep two runs from writing one day at once). Unset, a backfill is one run for its range."""
    days = SETTINGS.backfill_days_per_run
    if days is None:
        return list(assets)
    batched = dg.BackfillPolicy.multi_run(max_partitions_per_run=days)
    return [asset.with_attributes(backfill_policy=batched)
            if isinstance(asset, dg.AssetsDefinition) and asset.partitions_def is not None else asset
            for asset in assets]
