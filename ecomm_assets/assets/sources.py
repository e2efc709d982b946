"""Source assets: catalog snapshots (products, users, carts) and the day's raw orders."""

import json
from datetime import date

import dagster as dg

from ecomm_assets.core.locks import day_locks
from ecomm_assets.core.storage import partition_dir
from ecomm_assets.resources import LakeResource, OrderSourceResource

CATALOG_RESOURCES = ("products", "users", "carts")
GENERATED_SOURCES = ("synthetic", "dummyjson")


def raw_catalog_path(resource: str, day: date | str) -> str:
    return f"{partition_dir('raw', resource, day)}/{resource}.json"


def read_raw_catalog(lake: LakeResource, resource: str, day: date | str) -> list[dict] | None:
    """The day's catalog snapshot, or None when that day was never snapshotted (a day known only
    from landed files): the dimensions then hold what the orders say."""
    store = lake.store()
    rel = raw_catalog_path(resource, day)
    return json.loads(store.read_bytes(rel)) if store.exists(rel) else None


def _catalog_asset(resource: str, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"{resource}_raw",
        group_name="sources",
        kinds={"json"},
        owners=["team:data-platform"],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        description=f"The day's snapshot of DummyJSON-shaped {resource}, as fetched or generated "
        f"(raw/{resource}/dt=YYYY-MM-DD/{resource}.json).",
    )
    def catalog_raw(context: dg.AssetExecutionContext, lake: LakeResource, order_source: OrderSourceResource):
        # One fetch per run: a backfill snapshots today's catalog into every day of its range.
        records = order_source.catalog(resource)
        data = json.dumps(records, separators=(",", ":")).encode()
        store = lake.store()
        keys = context.partition_keys
        for key in keys:
            store.write_bytes(raw_catalog_path(resource, key), data)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(records),
                "source": order_source.source,
                "bytes_written": len(data) * len(keys),
                "path": dg.MetadataValue.path(store.full_uri(raw_catalog_path(resource, keys[-1]))),
            }
        )

    return catalog_raw


def build_source_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        group_name="sources",
        kinds={"json"},
        owners=["team:data-platform"],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[f"{resource}_raw" for resource in CATALOG_RESOURCES],
        description="The day's orders in the canonical nested form, as JSON Lines under "
        "raw/orders/dt=YYYY-MM-DD/: one file from the configured generator (synthetic orders or "
        "DummyJSON carts) beside the day's share of every landed producer file.",
    )
    def orders_raw(context: dg.AssetExecutionContext, lake: LakeResource, order_source: OrderSourceResource):
        store = lake.store()
        rows, size, files = 0, 0, {}
        for day in (date.fromisoformat(key) for key in context.partition_keys):
            products, users, carts = (read_raw_catalog(lake, r, day) or [] for r in CATALOG_RESOURCES)
            orders = order_source.orders(day, products, users, carts)
            folder = partition_dir("raw", "orders", day)
            # One day at a time: a run computing the day from its raw files never sees them change.
            with day_locks(store, [day], holder=context.run.run_id, on_wait=context.log.info) as held:
                held.ensure_held()
                size += store.write_bytes(f"{folder}/{order_source.source}.jsonl", orders)
                # Re-running a day with another generator replaces that generator's file; landed files stay.
                for other in GENERATED_SOURCES:
                    if other != order_source.source:
                        store.delete(f"{folder}/{other}.jsonl")
            rows += orders.count(b"\n")
            files = {f.name: f.size for f in store.list_files(folder)}
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": rows,
                "source": order_source.source,
                "bytes_written": size,
                "files_in_partition": dg.MetadataValue.json(files),  # of the last day
                "path": dg.MetadataValue.path(store.full_uri(folder)),
            }
        )

    return [*(_catalog_asset(r, partitions) for r in CATALOG_RESOURCES), orders_raw]
