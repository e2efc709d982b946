"""The one partitions definition every asset, check and job shares, and how a backfill splits into runs."""

from datetime import timedelta

import dagster as dg

from ecomm_assets.settings import SETTINGS

# One partition per UTC day from ECOMM_START_DATE: an order belongs to the UTC day of its order date.
DAILY_PARTITIONS = dg.DailyPartitionsDefinition(start_date=SETTINGS.start_date.isoformat(), timezone="UTC")
# The daily assets compute a range in one run and write each day's files themselves; with
# ECOMM_BACKFILL_DAYS_PER_RUN set, an asset backfill (UI, daemon) launches a run per batch of at most
# that many days instead, which the run queue starts in parallel (deploy/README.md: Scale-out
# backfills; the day locks keep two runs from writing one day at once).
DAILY_BACKFILL_POLICY = (dg.BackfillPolicy.single_run() if SETTINGS.backfill_days_per_run is None
                         else dg.BackfillPolicy.multi_run(max_partitions_per_run=SETTINGS.backfill_days_per_run))
# The unpartitioned assets (derived tables, the dashboard, the usage estimate) run once per run: the
# only policy Dagster lets them have, and the one the CLI's --partition-range needs.
BACKFILL_POLICY = dg.BackfillPolicy.single_run()
# A day's tables are due by 02:00 UTC the next day (the daily schedule starts at 00:30): a table not
# materialized in the 24 hours before that deadline shows as failing its freshness in the UI.
DAILY_FRESHNESS = dg.FreshnessPolicy.cron(deadline_cron="0 2 * * *", lower_bound_delta=timedelta(hours=24))

