"""The SQL catalog (Glue for Athena, or a local DuckDB file) kept in step with the lake."""

import dagster as dg

from ecomm_assets.assets.analytics import (
    daily_order_summary,
    product_performance,
    purchase_breakdown,
    purchase_sessions_daily,
    sales_by_category,
    top_customers,
)
from ecomm_assets.assets.days import files_by_day
from ecomm_assets.assets.engagement import (
    comments,
    engaged_users,
    posts,
    product_reviews,
    rating_distribution,
    rating_vs_sales,
    tag_engagement,
)
from ecomm_assets.assets.lake import dim_customers, dim_products, order_lines, orders
from ecomm_assets.assets.metadata import with_usage
from ecomm_assets.assets.purchases import dim_user_profiles, purchase_events
from ecomm_assets.core.catalog import CatalogTable
from ecomm_assets.core.layout import FEEDS, table_dir
from ecomm_assets.core.schemas import LAKE_TABLES, LANDED_FILES, UNPARTITIONED_TABLES
from ecomm_assets.partitions import BACKFILL_POLICY, DAILY_PARTITIONS
from ecomm_assets.resources import LakeResource, SqlCatalogResource


@dg.asset(
    backfill_policy=BACKFILL_POLICY,
    group_name="catalog",
    owners=["team:data-platform"],
    kinds={"glue", "athena", "duckdb"},
    deps=[order_lines, orders, dim_products, dim_customers,
          sales_by_category, product_performance, top_customers, daily_order_summary,
          product_reviews, posts, comments, rating_distribution, rating_vs_sales, engaged_users, tag_engagement,
          purchase_events, dim_user_profiles, purchase_breakdown, purchase_sessions_daily],
    description="Registers every lake table and each day it holds in the SQL catalog (ECOMM_CATALOG: "
    "`duckdb` views in a local file, or AWS Glue tables and their dt partitions for Athena), and the unpartitioned dim_user_profiles "
    "(a table without partitions: every new version of its file is read at once). Creates the database and tables "
    "when missing and applies additive schema changes; refuses breaking ones. Runs only after the "
    "blocking checks of its upstream partitions passed.",
)
@with_usage
def catalog(context: dg.AssetExecutionContext, lake: LakeResource, sql_catalog: SqlCatalogResource) -> dg.MaterializeResult:
    store = lake.store()
    partitioned = {**LAKE_TABLES, **{feed.landed_files_table: LANDED_FILES for feed in FEEDS}}
    tables = [CatalogTable(name, schema, store.full_uri(table_dir(name)), days=tuple(sorted(files_by_day(store, table_dir(name)))))
              for name, schema in partitioned.items()]
    tables += [CatalogTable(name, schema, store.full_uri(table_dir(name)), partitioned=False)
               for name, schema in UNPARTITIONED_TABLES.items()]
    backend = sql_catalog.catalog(projection_start=DAILY_PARTITIONS.start.date())
    report = backend.sync(tables, [])
    return dg.MaterializeResult(
        metadata={
            "backend": sql_catalog.backend.value,
            "tables": dg.MetadataValue.json(sorted(table.name for table in tables)),
            **{key: dg.MetadataValue.json(v) if isinstance(v, list) else v for key, v in report.as_dict().items()},
            "query": dg.MetadataValue.md(f"```sql\n{backend.query_hint('order_lines')}\n```"),
        }
    )
