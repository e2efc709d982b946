"""The source assets over a range: a backfill (one run for many days) writes what runs of each day
write, and reads each distinct snapshot once."""

import json
import tracemalloc
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest

from ecomm_assets.assets import sources
from ecomm_assets.assets.sources import read_collection, read_collections
from ecomm_assets.core import synthetic
from ecomm_assets.core.layout import (
    collection_path,
    generated_orders_name,
    raw_orders_dir,
)
from ecomm_assets.definitions import ASSETS
from ecomm_assets.resources import SNAPSHOT_COLLECTIONS, LakeResource
from ecomm_assets_tests.conftest import make_definitions

FIRST = date(2024, 1, 13)
DAYS = [FIRST + timedelta(days=n) for n in range(5)]
SOURCES = ["snapshots", "orders_raw"]
DAY_FIGURES = {"dagster/row_count", *(f"{c}_rows" for c in SNAPSHOT_COLLECTIONS)}
LANDED = "landed-share.jsonl"  # a producer's share of the last day, which a run keeps


def materialize(lake: Path, instance, first: date, last: date, source: str, **settings) -> None:
    resources = make_definitions(lake, orders_per_day=20, source=source, **settings).resources
    assert dg.materialize(ASSETS, selection=SOURCES, instance=instance, resources=resources, tags={
        "dagster/asset_partition_range_start": str(first), "dagster/asset_partition_range_end": str(last)}).success


def prepared(lake: Path) -> None:
    """A lake whose days already hold a landed file (the last day) and each generator's file (the
    second day, as runs with another generator left them)."""
    landed = lake / raw_orders_dir(DAYS[-1]) / LANDED
    landed.parent.mkdir(parents=True)
    landed.write_text('{"order_id": "L1"}\n')
    (lake / raw_orders_dir(DAYS[1])).mkdir(parents=True)
    for generator in ("synthetic", "dummyjson"):
        (lake / raw_orders_dir(DAYS[1]) / generated_orders_name(generator)).write_text('{"order_id": "G1"}\n')


def files(lake: Path) -> dict[str, bytes]:
    return {str(p.relative_to(lake)): p.read_bytes() for p in sorted((lake / "raw").rglob("*")) if p.is_file()}


def day_metadata(instance, asset: str) -> dict[str, dict]:
    """Each day's own metadata (as day_metadata adds it), without the run's figures."""
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=100).records
    return {r.partition_key: {k: v.value for k, v in r.asset_materialization.metadata.items()
                              if k in DAY_FIGURES} for r in records}


@pytest.mark.parametrize("source", ["synthetic", "dummyjson", "landing"])
def test_a_range_run_writes_the_files_and_day_figures_that_runs_of_each_day_write(tmp_path, request, source):
    settings = {"dummyjson_url": request.getfixturevalue("dummyjson").url} if source == "dummyjson" else {}
    by_day, by_range = tmp_path / "by_day" / "lake", tmp_path / "by_range" / "lake"
    prepared(by_day)
    prepared(by_range)
    with dg.DagsterInstance.ephemeral() as each, dg.DagsterInstance.ephemeral() as once:
        for day in DAYS:
            materialize(by_day, each, day, day, source, **settings)
        materialize(by_range, once, DAYS[0], DAYS[-1], source, **settings)
        assert files(by_range) == files(by_day)
        for asset in SOURCES:
            assert day_metadata(once, asset) == day_metadata(each, asset), asset
        last_day = [each.get_latest_materialization_event(dg.AssetKey("orders_raw")),
                    once.get_latest_materialization_event(dg.AssetKey("orders_raw"))]
        in_partition = [event.asset_materialization.metadata["files_in_partition"].value for event in last_day]
    generated = files(by_range)
    # The landed file stays; another generator's file is gone; the configured one is written.
    assert generated[f"{raw_orders_dir(DAYS[-1])}/{LANDED}"] == b'{"order_id": "L1"}\n'
    expected = {LANDED: 19}
    orders = {name for name in generated if name.startswith("raw/orders/") and not name.endswith(LANDED)}
    if source == "landing":
        assert orders == set()
    else:
        assert orders == {f"{raw_orders_dir(day)}/{generated_orders_name(source)}" for day in DAYS}
        expected[generated_orders_name(source)] = len(generated[f"{raw_orders_dir(DAYS[-1])}/{generated_orders_name(source)}"])
    assert in_partition == [expected, expected]  # of the last day, as its folder holds them after the run


def test_a_range_run_takes_its_snapshots_with_one_listing_each_and_deletes_only_what_is_there(lake_dir, instance):
    """Requests as S3 would bill them (a local lake records them alike): no HEAD per day, no DELETE
    of a file a listing did not show, listings that do not grow with the days."""
    materialize(lake_dir, instance, DAYS[0], DAYS[-1], "synthetic")
    event = instance.get_latest_materialization_event(dg.AssetKey("orders_raw"))
    usage = {k.removeprefix("usage/s3/"): v.value for k, v in event.asset_materialization.metadata.items()
             if k.startswith("usage/s3/")}
    assert usage.get("head", 0) == 0
    assert usage["list"] == 4  # one per collection read, one of raw/orders
    assert usage["get"] == 3 * len(DAYS)  # each day's products, users and carts
    assert usage["delete"] == len(DAYS)  # the day locks' release only: no other generator's file was there
    assert usage["put"] == 2 * len(DAYS)  # each day's file and its lock


def test_identical_snapshots_are_parsed_once_and_shared(lake_dir, monkeypatch):
    store = LakeResource(uri=str(lake_dir)).store()
    users = b'[{"id":1,"firstName":"Ann"}]'
    for n, day in enumerate(DAYS[:4]):
        store.write_bytes(collection_path("users", day), users if n != 2 else b'[{"id":2}]')
    parsed = []
    records = sources._records
    monkeypatch.setattr(sources, "_records", lambda source, collection: parsed.append(collection) or records(source, collection))
    lake = LakeResource(uri=str(lake_dir))
    read = read_collections(lake, "users", DAYS)
    assert read[DAYS[0]] == [{"id": 1, "firstName": "Ann"}] and read[DAYS[2]] == [{"id": 2}]
    assert read[DAYS[0]] is read[DAYS[1]] is read[DAYS[3]]  # the content of days 1, 2 and 4: one object
    assert read[DAYS[4]] is None  # never snapshotted
    assert len(parsed) == 2  # two distinct contents
    assert read_collection(lake, "users", str(DAYS[2])) == [{"id": 2}]
    assert read_collection(lake, "users", DAYS[4]) is None


def test_products_are_read_a_batch_at_a_time_without_their_reviews(lake_dir):
    """A products snapshot carries the day's reviews (about one per ten orders: 164 MB at 9,000,000
    orders), which orders_raw and dim_products do not use: they are left out as each batch of
    products is parsed, so reading a snapshot holds a batch, not the day: a snapshot twice as large
    takes no more memory. Python's own allocations are traced: the snapshot's text read whole, or
    its reviews parsed, are among them."""
    review = {"rating": 4, "comment": "Fine", "date": "2024-01-15T10:00:00Z", "reviewerName": "A B", "reviewerEmail": "a@b.c"}
    store = LakeResource(uri=str(lake_dir)).store()
    peaks, sizes = [], []
    for day, count in zip(DAYS, (400, 800)):
        products = [{"id": n, "title": f"P{n}", "price": 9.99, "reviews": [review] * 400} for n in range(1, count + 1)]
        sizes.append(store.write_bytes(collection_path("products", day), json.dumps(products).encode()))
        tracemalloc.start()
        try:
            read = read_collections(LakeResource(uri=str(lake_dir)), "products", [day])[day]
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert read == [{key: value for key, value in product.items() if key != "reviews"} for product in products]
    assert sizes[1] > 32 * 2**20
    assert peaks[1] < 1.25 * peaks[0] and peaks[1] < sizes[1] * 0.75, (peaks, sizes)


def test_a_day_larger_than_a_part_is_generated_and_written_part_by_part(tmp_path, monkeypatch):
    """A synthetic day of 40,500 orders made in parts of 5,000 (synthetic.ORDERS_PART; 100,000 in
    use): the day's raw file holds every order once, its first part the orders of a 5,000-order day,
    and the run never holds the day's text whole. Python's own allocations are traced: the day's
    JSON text is one of them (a day of millions of orders once overflowed Arrow's 2 GiB strings)."""
    monkeypatch.setattr(synthetic, "ORDERS_PART", 5_000, raising=False)
    day = date(2024, 1, 15)  # a Monday: 0.9 x the orders per day

    def generated(lake: Path, orders_per_day: int) -> tuple[bytes, int]:
        """The day's generated raw file, and the peak of orders_raw's traced allocations."""
        resources = make_definitions(lake, orders_per_day=orders_per_day).resources
        instance = dg.DagsterInstance.ephemeral()
        for source in SOURCES:  # the snapshots first, untraced
            if source == "orders_raw":
                tracemalloc.start()
            assert dg.materialize(ASSETS, selection=[source], instance=instance, resources=resources,
                                  partition_key=str(day)).success
        try:
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        return (lake / raw_orders_dir(day) / generated_orders_name("synthetic")).read_bytes(), peak

    generated(tmp_path / "warm", 100)  # what a run imports once
    first_part, part_peak = generated(tmp_path / "part", round(5_000 / 0.9))
    data, peak = generated(tmp_path / "day", 45_000)
    orders = [json.loads(line) for line in data.splitlines()]
    assert len(orders) == len({order["order_id"] for order in orders}) == 40_500
    assert data.startswith(first_part)
    # The day of nine parts holds a part or two more than the day of one, never the day's text.
    assert peak - part_peak < 3 * len(first_part), (peak, part_peak, len(first_part), len(data))
