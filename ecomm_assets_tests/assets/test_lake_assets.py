"""The lake assets on orders that only a range or an unusual feed shows."""

import json

import dagster as dg
import pyarrow.parquet as pq
import pytest

from ecomm_assets.core.schemas import ORDER_LINES, ORDERS
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


RANGE = ["2024-01-13", "2024-01-14", "2024-01-15"]


def test_a_range_writes_each_days_files_with_their_contract_and_lists_its_quarantine_once(lake_dir, instance):
    """Each day's order lines and orders file goes into the lake as the flatten and the orders query
    wrote it, with exactly the contract (descriptions included); each day gets its counts and its
    quarantine (a stale one replaced by nothing); the run lists the quarantine folders once, as many
    LISTs for three days as for one."""
    raw_orders(lake_dir, RANGE[0], [order("A", RANGE[0], 1.0), {"order_id": "BAD", "order_date": f"{RANGE[0]}T09:00:00Z"}])
    raw_orders(lake_dir, RANGE[1], [order("B", RANGE[1], 2.0)])  # no raw file on the last day
    stale = lake_dir / "quarantine" / "order_lines" / f"dt={RANGE[1]}" / "part-00000.jsonl"
    stale.parent.mkdir(parents=True)
    stale.write_text('{"old": true}\n')
    defs = make_definitions(lake_dir, orders_per_day=0)

    lists = {}
    for days in (RANGE[:1], RANGE):
        result = run_lake(defs, instance, days)
        assert result.success
        lines = [m.metadata for m in result.asset_materializations_for_node("order_lines") if "usage/s3/list" in m.metadata]
        lists[len(days)] = lines[0]["usage/s3/list"].value
    assert lists[3] == lists[1]

    for table, contract in (("order_lines", ORDER_LINES), ("orders", ORDERS)):
        for day in RANGE:
            schema = pq.read_schema(lake_dir / "processed" / table / f"dt={day}" / "part-00000.parquet")
            assert schema.equals(contract, check_metadata=True), (table, day)
    assert [o["order_id"] for o in orders_of(lake_dir, RANGE[1])] == ["B"] and orders_of(lake_dir, RANGE[2]) == []
    [rejected] = (lake_dir / "quarantine" / "order_lines" / f"dt={RANGE[0]}" / "part-00000.jsonl").read_text().splitlines()
    assert json.loads(rejected)["reason"] == "missing products"
    assert not stale.exists()
    counts = {day: json.loads((lake_dir / "processed" / "order_lines" / f"dt={day}" / "_counts.json").read_text())
              for day in RANGE}
    assert {day: (c["records_read"], c["orders_loaded"], c["quarantined"]) for day, c in counts.items()} == {
        RANGE[0]: (2, 1, 1), RANGE[1]: (1, 1, 0), RANGE[2]: (0, 0, 0)}
