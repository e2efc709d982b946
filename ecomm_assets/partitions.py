"""The one partitions definition every asset, check and job shares."""

from datetime import timedelta

import dagster as dg

from ecomm_assets.settings import SETTINGS

# One partition per UTC day from ECOMM_START_DATE: an order belongs to the UTC day of its order date.
DAILY_PARTITIONS = dg.DailyPartitionsDefinition(start_date=SETTINGS.start_date.isoformat(), timezone="UTC")
# Every partitioned asset computes a range in a run and writes each day's files itself. A backfill is
# one run for its whole range, or, with ECOMM_BACKFILL_DAYS_PER_RUN=N, runs of at most N days that the
# run queue starts in parallel (deploy/README.md: "Scale-out backfills"); the day locks keep any two
# runs from writing one day at once.
BACKFILL_POLICY = (dg.BackfillPolicy.single_run() if SETTINGS.backfill_days_per_run is None
                   else dg.BackfillPolicy.multi_run(max_partitions_per_run=SETTINGS.backfill_days_per_run))
# A day's tables are due by 02:00 UTC the next day (the daily schedule starts at 00:30): a table not
# materialized in the 24 hours before that deadline shows as failing its freshness in the UI.
DAILY_FRESHNESS = dg.FreshnessPolicy.cron(deadline_cron="0 2 * * *", lower_bound_delta=timedelta(hours=24))
