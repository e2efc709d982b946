"""The one partitions definition every asset, check and job shares."""

from datetime import timedelta

import dagster as dg

from ecomm_assets.settings import SETTINGS

# One partition per UTC day from ECOMM_START_DATE: an order belongs to the UTC day of its order date.
DAILY_PARTITIONS = dg.DailyPartitionsDefinition(start_date=SETTINGS.start_date.isoformat(), timezone="UTC")
# Every asset computes a range in one run and writes each day's files itself.
BACKFILL_POLICY = dg.BackfillPolicy.single_run()
# A day's tables are due by 02:00 UTC the next day (the daily schedule starts at 00:30): a table not
# materialized in the 24 hours before that deadline shows as failing its freshness in the UI.
DAILY_FRESHNESS = dg.FreshnessPolicy.cron(deadline_cron="0 2 * * *", lower_bound_delta=timedelta(hours=24))
