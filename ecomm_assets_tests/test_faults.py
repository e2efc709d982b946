"""Nothing lost, nothing stalls: empty days keep the contract, overlapping runs never lose an
update, killed runs leave nothing behind, and catalog readers never block the writer."""

import json
from datetime import date, timedelta

import dagster as dg
import pyarrow.parquet as pq

from ecomm_assets.assets.catalog import CATALOG_TABLES
from ecomm_assets_tests.conftest import make_definitions

RANGE_TAGS = {"dagster/asset_partition_range_start": "2024-01-10", "dagster/asset_partition_range_end": "2024-01-22"}
RANGE_DAYS = [str(date(2024, 1, 10) + timedelta(days=n)) for n in range(13)]


def landed_order(order_id: str, when: str, customer: str | None = "c1") -> dict:
    return {"order_id": order_id, "order_date": when, "total_amount": 10.0,
            "customer": {"customer_id": customer, "name": "Ann", "email": "a@x", "address": "1 Main St"},
            "products": [{"product_id": "p1", "name": "Pen", "category": "office", "price": 10.0, "quantity": 1}]}


def land(lake_dir, name: str, orders: list[dict]) -> None:
    path = lake_dir / "landing" / "orders" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(order) for order in orders) + "\n")


def described(schema) -> list[tuple]:
    return [(f.name, str(f.type), f.nullable) for f in schema]


def test_a_range_over_days_without_orders_writes_every_file_with_its_contract(lake_dir, instance):
    """A landing-only lake (no generated orders): some days of the range have landed orders, the
    others none. Every table's file of every day, empty or not, has exactly its contract's schema."""
    defs = make_definitions(lake_dir, orders_per_day=0)
    land(lake_dir, "drop.jsonl", [landed_order("L1", "2024-01-12T08:00:00Z"), landed_order("L2", "2024-01-15T09:00:00Z"),
                                  landed_order("L3", "2024-01-15T10:00:00Z", customer=None)])
    assert defs.resolve_job_def("ingest_landing_job").execute_in_process(instance=instance).success

    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(instance=instance, tags=RANGE_TAGS, raise_on_error=False)

    assert result.success, [e.message for e in result.all_events if e.is_failure]
    for table, contract in CATALOG_TABLES.items():
        files = sorted((lake_dir / "processed" / table).glob("dt=*/part-00000.parquet"))
        assert [f.parent.name for f in files] == [f"dt={day}" for day in RANGE_DAYS], table
        for path in files:
            assert described(pq.read_schema(path)) == described(contract), path
    lines = pq.read_table(lake_dir / "processed" / "order_lines").to_pydict()
    assert sorted(lines["order_id"]) == ["L1", "L2", "L3"]
