"""Source assets: catalog snapshots (products, users, carts) and the day's raw orders."""

import json
from datetime import date

import dagster as dg

from ecomm_assets.core.storage import partition_dir
from ecomm_assets.core.synthetic import to_json_lines
from ecomm_assets.resources import LakeResource, OrderSourceResource

CATALOG_RESOURCES = ("products", "users", "carts")
GENERATED_SOURCES = ("synthetic", "dummyjson")


def raw_catalog_path(resource: str, day: date | str) -> str:
    return f"{partition_dir('raw', resource, day)}/{resource}.json"


def read_raw_catalog(lake: LakeResource, resource: str, day: date | str) -> list[dict]:
    return json.loads(lake.store().read_bytes(raw_catalog_path(resource, day)))


def _catalog_asset(resource: str, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"{resource}_raw",
        group_name="sources",
        kinds={"json"},
        owners=["team:data-platform"],
        partitions_def=partitions,
        description=f"The day's snapshot of DummyJSON-shaped {resource}, as fetched or generated "
        f"(raw/{resource}/dt=YYYY-MM-DD/{resource}.json).",
    )
    def catalog_raw(context: dg.AssetExecutionContext, lake: LakeResource, order_source: OrderSourceResource):
        records = order_source.catalog(resource)
        rel = raw_catalog_path(resource, context.partition_key)
        size = lake.store().write_bytes(rel, json.dumps(records, separators=(",", ":")).encode())
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(records),
                "source": order_source.source,
                "bytes_written": size,
                "path": dg.MetadataValue.path(lake.store().full_uri(rel)),
            }
        )

    return catalog_raw


def build_source_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        group_name="sources",
        kinds={"json"},
        owners=["team:data-platform"],
        partitions_def=partitions,
        deps=[f"{resource}_raw" for resource in CATALOG_RESOURCES],
        description="The day's orders in the canonical nested form, as JSON Lines under "
        "raw/orders/dt=YYYY-MM-DD/: one file from the configured generator (synthetic orders or "
        "DummyJSON carts) beside the day's share of every landed producer file.",
    )
    def orders_raw(context: dg.AssetExecutionContext, lake: LakeResource, order_source: OrderSourceResource):
        day = date.fromisoformat(context.partition_key)
        products, users, carts = (read_raw_catalog(lake, r, day) for r in CATALOG_RESOURCES)
        orders = order_source.orders(day, products, users, carts)
        store = lake.store()
        folder = partition_dir("raw", "orders", day)
        size = store.write_bytes(f"{folder}/{order_source.source}.jsonl", to_json_lines(orders))
        # Re-running a day with another generator replaces that generator's file; landed files stay.
        for other in GENERATED_SOURCES:
            if other != order_source.source:
                store.delete(f"{folder}/{other}.jsonl")
        files = store.list_files(folder)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(orders),
                "source": order_source.source,
                "bytes_written": size,
                "files_in_partition": dg.MetadataValue.json({f.name: f.size for f in files}),
                "path": dg.MetadataValue.path(store.full_uri(folder)),
            }
        )

    return [*(_catalog_asset(r, partitions) for r in CATALOG_RESOURCES), orders_raw]
