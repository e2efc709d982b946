"""The SQL catalog (Glue for Athena, or a local DuckDB file) kept in step with the lake."""

from datetime import date

import dagster as dg

from ecomm_assets.assets.landing import LANDED_FILES, LANDED_FILES_SCHEMA
from ecomm_assets.core.analytics import ANALYTICS
from ecomm_assets.core.catalog import CatalogTable
from ecomm_assets.core.schemas import CONTRACTS
from ecomm_assets.resources import CatalogResource, LakeResource

CATALOG_TABLES = {**CONTRACTS, **ANALYTICS}


def build_catalog_assets(partitions: dg.TimeWindowPartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="catalog",
        owners=["team:data-platform"],
        kinds={"glue", "athena", "duckdb"},
        deps=list(CATALOG_TABLES),
        description="Registers the day's partition of every lake table in the catalog (ECOMM_CATALOG: "
        "`duckdb` views in a local file, or AWS Glue tables for Athena). Creates the database and tables "
        "when missing and applies additive schema changes; refuses breaking ones. Runs only after the "
        "blocking checks of its upstream partitions passed.",
    )
    def catalog(context: dg.AssetExecutionContext, lake: LakeResource, sql_catalog: CatalogResource) -> dg.MaterializeResult:
        store = lake.store()
        days = [date.fromisoformat(key) for key in context.partition_keys]
        tables = [
            CatalogTable(name, schema, store.full_uri(f"processed/{name}"))
            for name, schema in {**CATALOG_TABLES, LANDED_FILES: LANDED_FILES_SCHEMA}.items()
        ]
        backend = sql_catalog.catalog(projection_start=partitions.start.date())
        report = backend.sync(tables, days)
        return dg.MaterializeResult(
            metadata={
                "backend": sql_catalog.backend,
                "tables": dg.MetadataValue.json(sorted(CATALOG_TABLES)),
                **{key: dg.MetadataValue.json(v) if isinstance(v, list) else v for key, v in report.as_dict().items()},
                "query": dg.MetadataValue.md(f"```sql\n{backend.query_hint('order_lines')}\n```"),
            }
        )

    return [catalog]
