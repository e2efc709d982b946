"""Source assets: the day's snapshots of DummyJSON-shaped collections (products with their
reviews, users, carts, posts, comments) and the day's raw orders."""

import contextlib
from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import date
from typing import BinaryIO

import dagster as dg

from ecomm_assets.assets.days import day_metadata, files_by_day, run_days
from ecomm_assets.assets.metadata import with_usage
from ecomm_assets.core.landing import json_array_records
from ecomm_assets.core.layout import (
    RAW,
    collection_path,
    generated_orders_name,
    raw_orders_dir,
    raw_orders_root,
)
from ecomm_assets.core.locks import day_locks
from ecomm_assets.core.storage import LakeStore, content_digest, opened
from ecomm_assets.partitions import DAILY_BACKFILL_POLICY, DAILY_PARTITIONS
from ecomm_assets.resources import (
    SNAPSHOT_COLLECTIONS,
    LakeResource,
    OrderSourceResource,
    warn_if_default_key,
)
from ecomm_assets.settings import OrderSource

COLLECTIONS = ("products", "users", "carts")  # what orders are made from
SOURCES = {"group_name": "sources", "owners": ["team:data-platform"], "partitions_def": DAILY_PARTITIONS,
               "backfill_policy": DAILY_BACKFILL_POLICY}
# Distinct snapshot contents a pass over many days keeps parsed (the most recent ones): a snapshot
# repeated on consecutive days (an API's, the synthetic users and carts) is parsed once, and memory
# stays a few days' snapshots whatever the range.
REMEMBERED_SNAPSHOTS = 4


# A product's reviews: the day's, about one per ten orders. No reader of collection_snapshots uses
# them (product_reviews reads the snapshot file itself), so they are dropped as each batch is parsed.
_LEFT_OUT = {"products": "reviews"}


def collection_snapshots(store: LakeStore, collection: str, days: Sequence[date],
                         remembered: int = REMEMBERED_SNAPSHOTS, held: Collection[date] | None = None,
                         ) -> Iterator[tuple[date, list[dict] | None]]:
    """Each day's snapshot of a collection (None for a day never snapshotted), read as the days
    come, a batch of records at a time (a product without its reviews: _LEFT_OUT): the days' files
    found with one listing (a single day: its GET, which finds it or not; no HEAD per day), or
    among the days a listing the caller made `held`; a content equal to one of the `remembered`
    last distinct ones is not parsed again but is the same list object (callers may cache what
    they derive from it on its identity; they must not modify it)."""
    rels = {day: collection_path(collection, day) for day in days}
    if held is not None:
        present = {rel for day, rel in rels.items() if day in held}
    else:
        present = set(rels.values()) if len(rels) <= 1 else store.existing(list(rels.values()))
    parsed: OrderedDict[str, list[dict]] = OrderedDict()
    for day, rel in rels.items():
        with opened(store, rel) if rel in present else contextlib.nullcontext() as source:
            digest = None if source is None else content_digest(source)
            if digest in parsed:
                parsed.move_to_end(digest)
            elif digest is not None:
                source.seek(0)
                parsed[digest] = _records(source, collection)
                if len(parsed) > remembered:
                    parsed.popitem(last=False)
        yield day, None if digest is None else parsed[digest]


def _records(source: BinaryIO, collection: str) -> list:
    records = []
    for batch in json_array_records(source, collection):
        if collection in _LEFT_OUT:
            for record in batch:
                if isinstance(record, dict):
                    record.pop(_LEFT_OUT[collection], None)
        records.extend(batch)
    return records


def read_collections(lake: LakeResource, collection: str, days: Sequence[date],
                     held: Collection[date] | None = None) -> dict[date, list[dict] | None]:
    """Each day's snapshot of a collection (collection_snapshots: products without their reviews),
    or None for a day never snapshotted (a day known only from landed files: the dimensions then
    hold what the orders say). One listing for the days (none when the caller's listing says which
    days it `held`), each distinct content parsed once: days with the same content share one list
    object."""
    return dict(collection_snapshots(lake.store(), collection, days, remembered=len(days), held=held))


def read_collection(lake: LakeResource, collection: str, day: date | str) -> list[dict] | None:
    """The day's snapshot of a collection (read_collections of one day: one GET, no HEAD)."""
    day = date.fromisoformat(day) if isinstance(day, str) else day
    return read_collections(lake, collection, [day])[day]


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
    days = run_days(context)
    rows: dict[date, dict[str, int]] = {}
    size = 0
    for day, collections in order_source.snapshots(SNAPSHOT_COLLECTIONS, days):
        for collection, snapshot in collections.items():
            size += store.write_parts(collection_path(collection, day), snapshot.text)
        rows[day] = {collection: snapshot.records for collection, snapshot in collections.items()}
    day_metadata(context, {day: {f"{c}_rows": n for c, n in counts.items()} for day, counts in rows.items()})
    metadata = {"source": order_source.source.value, "bytes_written": size, "path": dg.MetadataValue.path(store.full_uri(RAW))}
    if len(days) > 1:  # the run's totals go on its newest day, beside (not over) that day's own counts
        metadata |= {f"{c}_rows_in_run": sum(counts[c] for counts in rows.values()) for c in SNAPSHOT_COLLECTIONS}
    return dg.MaterializeResult(metadata=metadata)


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
    days = run_days(context)
    generated = generated_orders_name(order_source.source) if order_source.source.generates_orders else None
    # Re-running a day with another generator (or none) replaces its file; landed files stay.
    replaced = {generated_orders_name(other) for other in OrderSource if other.generates_orders} - {generated}
    rows, size = {}, 0
    # The run's days held throughout: a run computing a day from its raw files never sees them change.
    with day_locks(store, days, holder=context.run.run_id, on_wait=context.log.info) as held:
        files = raw_orders_files(store, days)  # what each day holds, landed files included
        snapshots = zip(*(collection_snapshots(store, c, days) for c in COLLECTIONS))
        day_snapshots = ((day, *(records or [] for _, records in read)) for day, read in zip(days, snapshots))
        for day, parts in order_source.orders_of_days(day_snapshots):
            folder = raw_orders_dir(day)
            held.ensure_held()
            rows[day] = 0
            if generated is not None:
                # The day's lock checked again once its parts are made (a large day takes minutes).
                written = store.write_parts(f"{folder}/{generated}", _counted_lines(parts, rows, day), held.ensure_held)
                size, files[day][generated] = size + written, written
            for name in replaced & files[day].keys():
                store.delete(f"{folder}/{name}")
                del files[day][name]
    day_metadata(context, {day: {"dagster/row_count": n} for day, n in rows.items()})
    return dg.MaterializeResult(
        metadata={
            "rows": sum(rows.values()),
            "source": order_source.source.value,
            "bytes_written": size,
            "files_in_partition": dg.MetadataValue.json(dict(sorted(files[days[-1]].items()))),  # of the last day
            "path": dg.MetadataValue.path(store.full_uri(raw_orders_dir(days[-1]))),
        }
    )


def _counted_lines(parts: Iterable[bytes], rows: dict[date, int], day: date) -> Iterator[bytes]:
    """`parts` of JSON Lines as they pass, their lines added to rows[day]."""
    for part in parts:
        rows[day] += part.count(b"\n")
        yield part


def raw_orders_files(store: LakeStore, days: Sequence[date]) -> dict[date, dict[str, int]]:
    """The files (name: size) in each day's raw/orders folder, from one listing: the day's folder
    for one day, all of raw/orders for a range."""
    if len(days) == 1:
        listed = {days[0]: store.list_files(raw_orders_dir(days[0]))}
    else:
        listed = files_by_day(store, raw_orders_root())
    return {day: {f.name: f.size for f in listed.get(day, ()) if f.path == f"{raw_orders_dir(day)}/{f.name}"}
            for day in days}
