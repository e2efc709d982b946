"""The one Definitions. The environment is read here and nowhere else."""

import os

import dagster as dg
from dagster_aws.s3 import S3Resource

from ecomm_assets.assets.analytics import build_analytics_assets
from ecomm_assets.assets.catalog import build_catalog_assets
from ecomm_assets.assets.lake import build_lake_assets
from ecomm_assets.assets.landing import landed_files
from ecomm_assets.assets.sources import build_source_assets
from ecomm_assets.automation import build_automation
from ecomm_assets.checks import build_checks
from ecomm_assets.partitions import DEFAULT_START_DATE, daily_partitions
from ecomm_assets.resources import (
    AlertSinkResource,
    CatalogResource,
    LakeResource,
    OrderSourceResource,
)


def build_definitions(
    start_date: str = DEFAULT_START_DATE,
    lake: LakeResource | None = None,
    order_source: OrderSourceResource | None = None,
    sql_catalog: CatalogResource | None = None,
    s3: S3Resource | None = None,
    alerts: AlertSinkResource | None = None,
    landing_sensor_running: bool = True,
) -> dg.Definitions:
    partitions = daily_partitions(start_date)
    jobs, schedules, sensors = build_automation(partitions, landing_sensor_running)
    return dg.Definitions(
        assets=[
            *build_source_assets(partitions),
            landed_files,
            *build_lake_assets(partitions),
            *build_analytics_assets(partitions),
            *build_catalog_assets(partitions),
        ],
        asset_checks=build_checks(partitions),
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        # DuckDB already uses every core inside a step; a process per step would cost more (about
        # 2 s each) than it saves.
        executor=dg.in_process_executor,
        resources={
            "lake": lake or LakeResource(),
            "order_source": order_source or OrderSourceResource(),
            "sql_catalog": sql_catalog or CatalogResource(),
            "s3": s3 or S3Resource(),
            "alerts": alerts or AlertSinkResource(),
        },
    )


def _env(name: str, default=None, as_int: bool = False):
    """dg.EnvVar when the variable is set (resolved at run time, shown as such in the UI), else the default."""
    if name not in os.environ:
        return default
    return dg.EnvVar.int(name) if as_int else dg.EnvVar(name)


defs = build_definitions(
    start_date=os.environ.get("ECOMM_START_DATE", DEFAULT_START_DATE),
    landing_sensor_running=os.environ.get("ECOMM_LANDING_SENSOR", "on") != "off",
    lake=LakeResource(
        uri=_env("ECOMM_LAKE_URI", "data/lake"),
        s3_endpoint_url=_env("ECOMM_S3_ENDPOINT_URL"),
        s3_region=_env("AWS_REGION"),
    ),
    order_source=OrderSourceResource(
        source=_env("ECOMM_SOURCE", "synthetic"),
        dummyjson_url=_env("ECOMM_DUMMYJSON_URL", "https://dummyjson.com"),
        orders_per_day=_env("ECOMM_ORDERS_PER_DAY", 1000, as_int=True),
        seed=_env("ECOMM_SEED", 42, as_int=True),
    ),
    sql_catalog=CatalogResource(
        backend=_env("ECOMM_CATALOG", "duckdb"),
        duckdb_path=_env("ECOMM_DUCKDB_CATALOG", "data/catalog.duckdb"),
        glue_database=_env("ECOMM_GLUE_DATABASE", "ecomm"),
        glue_endpoint_url=_env("ECOMM_GLUE_ENDPOINT_URL"),
        region=_env("AWS_REGION"),
        partition_projection=os.environ.get("ECOMM_GLUE_PARTITION_PROJECTION", "on") != "off",
    ),
    s3=S3Resource(endpoint_url=_env("ECOMM_S3_ENDPOINT_URL"), region_name=_env("AWS_REGION")),
    alerts=AlertSinkResource(
        path=_env("ECOMM_ALERTS_PATH", "data/alerts.jsonl"),
        sns_topic_arn=_env("ECOMM_ALERTS_SNS_TOPIC_ARN"),
        region=_env("AWS_REGION"),
    ),
)
