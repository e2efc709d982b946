"""The one Definitions: every asset, check, job, schedule and sensor, and the resources that bind
the settings (ecomm_assets/settings.py) to them."""

import dagster as dg
from dagster_aws.s3 import S3Resource

from ecomm_assets import checks
from ecomm_assets.assets import (
    analytics,
    catalog,
    engagement,
    lake,
    landing,
    purchases,
    sources,
    usage,
)
from ecomm_assets.automation import (
    daily_job,
    daily_job_schedule,
    ingest_landing_job,
    ingest_purchases_job,
    ingest_user_profiles_job,
    lake_job,
    landing_files_sensor,
    live_feed_job,
    live_feed_schedule,
    purchases_job,
    recompute_landed_days,
    recompute_landed_days_after_failure,
    run_failure_alerts,
    user_profiles_job,
)
from ecomm_assets.resources import (
    AlertSinkResource,
    LakeResource,
    LiveFeedResource,
    OrderSourceResource,
    PricingResource,
    SqlCatalogResource,
)
from ecomm_assets.settings import SETTINGS, Settings

# The landed-files tables and the raw CSV feeds are AssetSpecs (written by the ingest ops), which
# module loading does not collect.
ASSETS = [*dg.load_assets_from_modules([sources, lake, engagement, purchases, analytics, catalog, usage]),
          landing.landed_files, landing.landed_purchase_files, landing.landed_user_profile_files, purchases.purchases_raw,
          purchases.user_profiles_raw]
ASSET_CHECKS = dg.load_asset_checks_from_modules([checks])


def resources_from(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {
        "lake": LakeResource(uri=settings.lake_uri, s3_endpoint_url=settings.s3_endpoint_url, s3_region=settings.aws_region),
        "order_source": OrderSourceResource(
            source=settings.source,
            dummyjson_url=settings.dummyjson_url,
            orders_per_day=settings.orders_per_day,
            seed=settings.seed,
        ),
        "sql_catalog": SqlCatalogResource(
            backend=settings.catalog,
            duckdb_path=settings.duckdb_catalog,
            glue_database=settings.glue_database,
            glue_endpoint_url=settings.glue_endpoint_url,
            region=settings.aws_region,
            partition_projection=settings.glue_partition_projection,
        ),
        "live_feed": LiveFeedResource(
            orders_per_tick=settings.feed_orders_per_tick,
            late_rate=settings.feed_late_rate,
            duplicate_rate=settings.feed_duplicate_rate,
            seed=settings.seed,
            purchases_timezone=settings.purchases_timezone,
        ),
        "s3": S3Resource(endpoint_url=settings.s3_endpoint_url, region_name=settings.aws_region),
        "pricing": PricingResource(price_table=settings.price_table, athena_queries_per_day=settings.athena_queries_per_day),
        "alerts": AlertSinkResource(
            path=settings.alerts_path, sns_topic_arn=settings.alerts_sns_topic_arn, region=settings.aws_region
        ),
    }


def definitions_with(resources: dict[str, dg.ConfigurableResource]) -> dg.Definitions:
    """The project's definitions bound to `resources` (tests bind temporary lakes)."""
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=ASSET_CHECKS,
        jobs=[ingest_landing_job, ingest_purchases_job, ingest_user_profiles_job, lake_job, purchases_job,
              user_profiles_job, daily_job, live_feed_job],
        schedules=[daily_job_schedule, live_feed_schedule],
        sensors=[recompute_landed_days, recompute_landed_days_after_failure, landing_files_sensor, run_failure_alerts],
        # DuckDB already uses every core inside a step; a process per step would cost more than it saves.
        executor=dg.in_process_executor,
        resources=resources,
    )


defs = definitions_with(resources_from(SETTINGS))
