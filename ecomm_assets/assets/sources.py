"""Source assets: the day's snapshots of DummyJSON-shaped collections (products with their
reviews, users, carts, posts, comments) and the day's raw orders."""

import json
from datetime import date

import dagster as dg

from ecomm_assets.assets.days import day_metadata
from ecomm_assets.assets.metadata import with_usage
from ecomm_assets.core.layout import (
    RAW,
    collection_path,
    generated_orders_name,
    raw_orders_dir,
)
from ecomm_assets.core.locks import day_locks
from ecomm_assets.partitions import DAILY_BACKFILL_POLICY, DAILY_PARTITIONS
from ecomm_assets.resources import (
    LakeResource,
    OrderSourceResource,
    warn_if_default_key,
)
from ecomm_assets.settings import OrderSource

COLLECTIONS = ("products", "users", "carts")  # what orders are made from
SNAPSHOT_COLLECTIONS = (*COLLECTIONS, "posts", "comments")
SOURCES = {"group_name": "sources", "owners": ["team:data-platform"], "partitions_def": DAILY_PARTITIONS,
               "backfill_policy": DAILY_BACKFILL_POLICY}


def read_collection(lake: LakeResource, collection: str, day: date | str) -> list[dict] | None:
    """The day's snapshot of a collection, or None when that day was never snapshotted (a day known
    only from landed files): the dimensions then hold what the orders say."""
    store = lake.store()
    rel = collection_path(collection, day)
    return json.loads(store.read_bytes(rel)) if store.exists(rel) else None


@dg.asset(
    **SOURCES,
    kinds={"json"},
    description="The day's snapshot of every DummyJSON-shaped collection, as fetched or generated: "
    + ", ".join(f"{c} ({collection_path(c, 'YYYY-MM-DD')})" for c in SNAPSHOT_COLLECTIONS)
    + ". One asset for the five: they are taken together, one view of the shop at one moment. Each product "
    "carries its reviews (rating, comment, date, reviewer). DummyJSON posts and comments carry no date: they "
    "belong to the day of the snapshot that holds them.",
)
@with_usage
def snapshots(context: dg.AssetExecutionContext, lake: LakeResource, order_source: OrderSourceResource):
    warn_if_default_key(context.log.warning)
    store = lake.store()
    keys = context.partition_keys
    days = [date.fromisoformat(key) for key in keys]
    rows: dict[date, dict[str, int]] = {day: {} for day in days}
    size = 0
    for collection in SNAPSHOT_COLLECTIONS:
        previous, data = None, b""
        for day, records in order_source.snapshots(collection, days):
            if records is not previous:  # a snapshot repeated every day is serialized once
                previous, data = records, json.dumps(records, separators=(",", ":")).encode()
            size += store.write_bytes(collection_path(collection, day), data)
            rows[day][collection] = len(records)
    day_metadata(context, {day: {f"{c}_rows": n for c, n in counts.items()} for day, counts in rows.items()})
    return dg.MaterializeResult(
        metadata={
            **{f"{c}_rows": sum(counts[c] for counts in rows.values()) for c in SNAPSHOT_COLLECTIONS},
            "source": order_source.source.value,
            "bytes_written": size,
            "path": dg.MetadataValue.path(store.full_uri(RAW)),
        }
    )


@dg.asset(
    **SOURCES,
    kinds={"json"},
    deps=[snapshots],
    description="The day's orders in the canonical nested form, as JSON Lines under "
    "raw/orders/dt=YYYY-MM-DD/: one file from the configured generator (synthetic orders or "
    "DummyJSON carts; none with ECOMM_SOURCE=landing) beside the day's share of every landed producer file.",
)
@with_usage
def orders_raw(context: dg.AssetExecutionContext, lake: LakeResource, order_source: OrderSourceResource):
    store = lake.store()
    rows, size, files = {}, 0, {}
    for day in (date.fromisoformat(key) for key in context.partition_keys):
        products, users, carts = (read_collection(lake, c, day) or [] for c in COLLECTIONS)
        orders = order_source.day_orders(day, products, users, carts)
        folder = raw_orders_dir(day)
        # One day at a time: a run computing the day from its raw files never sees them change.
        with day_locks(store, [day], holder=context.run.run_id, on_wait=context.log.info) as held:
            held.ensure_held()
            if order_source.source.generates_orders:
                size += store.write_bytes(f"{folder}/{generated_orders_name(order_source.source)}", orders)
            # Re-running a day with another generator (or none) replaces its file; landed files stay.
            for other in OrderSource:
                if other.generates_orders and other != order_source.source:
                    store.delete(f"{folder}/{generated_orders_name(other)}")
        rows[day] = orders.count(b"\n")
        files = {f.name: f.size for f in store.list_files(folder)}
    day_metadata(context, {day: {"dagster/row_count": n} for day, n in rows.items()})
    return dg.MaterializeResult(
        metadata={
            "rows": sum(rows.values()),
            "source": order_source.source.value,
            "bytes_written": size,
            "files_in_partition": dg.MetadataValue.json(files),  # of the last day
            "path": dg.MetadataValue.path(store.full_uri(folder)),
        }
    )
