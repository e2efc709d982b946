"""The lake assets on orders that only a range or an unusual feed shows."""

import json

import dagster as dg
import pyarrow.parquet as pq
import pytest

from ecomm_assets_tests.conftest import make_definitions

DAYS = ["2024-01-13", "2024-01-14"]


def raw_orders(lake_dir, day: str, records: list[dict]) -> None:
    folder = lake_dir / "raw" / "orders" / f"dt={day}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "producer.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def order(order_id: str, day: str, price: float, reported_total: bool = True) -> dict:
    line = {"product_id": "P1", "price": price, "quantity": 1}
    record = {"order_id": order_id, "order_date": f"{day}T10:00:00Z", "products": [line]}
    return record | ({"total_amount": price} if reported_total else {})


def run_lake(defs: dg.Definitions, instance, days: list[str]) -> dg.ExecuteInProcessResult:
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={dg.AssetKey("order_lines"), dg.AssetKey("orders")}
    )
    tags = {"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]}
    return job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)


def orders_of(lake_dir, day: str) -> list[dict]:
    return pq.read_table(lake_dir / "processed" / "orders" / f"dt={day}" / "part-00000.parquet").to_pylist()


@pytest.mark.parametrize("runs", [[DAYS], [DAYS[:1], DAYS[1:]]], ids=["one range run", "a run per day"])
def test_an_order_id_on_two_days_is_an_order_of_each_day_however_the_days_are_run(lake_dir, instance, runs):
    """A range once merged the two into one order on the later day, failing orders_match_lines."""
    raw_orders(lake_dir, DAYS[0], [order("M", DAYS[0], 1.0)])
    raw_orders(lake_dir, DAYS[1], [order("M", DAYS[1], 2.0)])
    defs = make_definitions(lake_dir, orders_per_day=0)
    for days in runs:
        result = run_lake(defs, instance, days)
        assert result.success and all(check.passed for check in result.get_asset_check_evaluations())
    assert [(o["order_id"], str(o["items_total"])) for o in orders_of(lake_dir, DAYS[0])] == [("M", "1.00")]
    assert [(o["order_id"], str(o["items_total"])) for o in orders_of(lake_dir, DAYS[1])] == [("M", "2.00")]


def test_orders_without_a_reported_total_are_not_counted_as_not_reconciling(lake_dir, instance):
    """With no total_amount anywhere, `reconciles` is null for every order: the asset once crashed."""
    raw_orders(lake_dir, DAYS[0], [order("A", DAYS[0], 1.0, reported_total=False), order("B", DAYS[0], 2.0, reported_total=False)])
    result = run_lake(make_definitions(lake_dir, orders_per_day=0), instance, DAYS[:1])
    assert result.success
    [materialization] = [m for m in result.asset_materializations_for_node("orders")]
    assert materialization.metadata["orders_not_reconciling"].value == 0
    assert [o["reconciles"] for o in orders_of(lake_dir, DAYS[0])] == [None, None]
