"""Lake tables: typed, validated, one compact Parquet file per table and UTC day."""

import json
from datetime import date
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from ecomm_assets.assets.metadata import preview, reasons_table
from ecomm_assets.assets.sources import read_raw_catalog
from ecomm_assets.core.flatten import DayCounts, RawOrderFile, flatten_orders
from ecomm_assets.core.schemas import ORDER_LINES
from ecomm_assets.core.storage import LakeStore, partition_dir
from ecomm_assets.core.tables import build_dim_customers, build_dim_products, build_orders
from ecomm_assets.resources import LakeResource

PART_FILE = "part-00000.parquet"
QUARANTINE_FILE = "part-00000.jsonl"
COUNTS_FILE = "_counts.json"  # '_' keeps it out of every reader's view of the table


def table_path(table: str, day: date | str) -> str:
    return f"{partition_dir('processed', table, day)}/{PART_FILE}"


def counts_path(table: str, day: date | str) -> str:
    return f"{partition_dir('processed', table, day)}/{COUNTS_FILE}"


def quarantine_path(table: str, day: date | str) -> str:
    return f"{partition_dir('quarantine', table, day)}/{QUARANTINE_FILE}"


def raw_order_files(store: LakeStore, day: date | str) -> list:
    """The raw order files of a day, oldest first: the order in which versions of an order win."""
    files = store.list_files(partition_dir("raw", "orders", day))
    return sorted(files, key=lambda f: (f.mtime, f.name))


def read_table(store: LakeStore, table: str, day: date | str) -> pa.Table:
    return store.read_parquet([table_path(table, day)])


def write_table(store: LakeStore, table_name: str, day: date, table: pa.Table | Path) -> dict:
    """Replace the day's partition of a table with `table` (or a staged Parquet file of it)."""
    if isinstance(table, Path):
        parquet = pq.ParquetFile(table)
        rows, head = parquet.metadata.num_rows, next(parquet.iter_batches(batch_size=10), None)
        head = pa.Table.from_batches([head]) if head is not None else parquet.schema_arrow.empty_table()
    else:
        rows, head = table.num_rows, table
    folder = partition_dir("processed", table_name, day)
    size = store.replace_partition(folder, {PART_FILE: table})
    return {
        "dagster/row_count": rows,
        "bytes_written": size,
        "path": dg.MetadataValue.path(store.full_uri(f"{folder}/{PART_FILE}")),
        "preview": preview(head),
    }


def _source_label(name: str) -> str:
    return name.removesuffix(".jsonl")


def build_lake_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    common = dict(partitions_def=partitions, group_name="lake", owners=["team:data-platform"])

    @dg.asset(
        **common,
        kinds={"duckdb", "parquet"},
        deps=["orders_raw"],
        description="One row per product line of every order of the day: flattened, typed with an "
        "explicit Arrow schema (money as decimal(18,2)), validated and de-duplicated (the newest "
        "version of an order wins). Rejected records go to quarantine/order_lines/ with a reason.",
    )
    def order_lines(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        day = date.fromisoformat(context.partition_key)
        store = lake.store()
        raw = raw_order_files(store, day)
        if not raw:
            context.log.warning(f"no raw order files for {day}: writing an empty partition")
        with store.local_paths([f.path for f in raw]) as paths, store.staging_dir() as staging:
            result = flatten_orders([RawOrderFile(p, day, _source_label(f.name)) for p, f in zip(paths, raw)], staging)
            counts = result.counts.get(day, DayCounts())
            quarantined = result.quarantined.drop_columns(["day"])
            store.replace_partition(
                partition_dir("quarantine", "order_lines", day),
                {QUARANTINE_FILE: _json_lines(quarantined)} if quarantined.num_rows else {},
            )
            store.write_bytes(counts_path("order_lines", day), json.dumps(counts.as_dict(), indent=1).encode())
            lines = Path(result.line_files[day]) if day in result.line_files else ORDER_LINES.empty_table()
            metadata = write_table(store, "order_lines", day, lines)
        metadata.update(
            {
                "orders_loaded": counts.orders_loaded,
                "records_read": counts.records_read,
                "records_quarantined": counts.quarantined,
                "duplicates_dropped": counts.duplicates_dropped,
                "conservation_holds": counts.conserved,
                "top_reject_reasons": reasons_table(dict(counts.reasons.most_common(10))),
                "raw_files": dg.MetadataValue.json([f.name for f in raw]),
                "read_mode": result.read_modes.get(day, "no input"),
            }
        )
        if counts.quarantined:
            metadata["quarantine_path"] = dg.MetadataValue.path(store.full_uri(quarantine_path("order_lines", day)))
        return dg.MaterializeResult(metadata=metadata)

    @dg.asset(
        **common,
        kinds={"duckdb", "parquet"},
        deps=[order_lines],
        description="One row per order: items, units, the sum of its lines, the total the source "
        "reported, and whether the two reconcile (real feeds add shipping and tax).",
    )
    def orders(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        day = date.fromisoformat(context.partition_key)
        store = lake.store()
        table = build_orders(read_table(store, "order_lines", day))
        metadata = write_table(store, "orders", day, table)
        metadata["orders_not_reconciling"] = table.num_rows - sum(1 for r in table["reconciles"].to_pylist() if r)
        return dg.MaterializeResult(metadata=metadata)

    @dg.asset(
        **common,
        kinds={"duckdb", "parquet"},
        deps=["products_raw", order_lines],
        description="Products of the day's catalog snapshot, plus products seen only in orders.",
    )
    def dim_products(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        day = date.fromisoformat(context.partition_key)
        store = lake.store()
        table = build_dim_products(read_raw_catalog(lake, "products", day), read_table(store, "order_lines", day), day)
        return dg.MaterializeResult(metadata=write_table(store, "dim_products", day, table))

    @dg.asset(
        **common,
        kinds={"duckdb", "parquet"},
        deps=["users_raw", order_lines],
        description="Customers (DummyJSON users) with address, city, state and country flattened, "
        "plus customers seen only in orders.",
    )
    def dim_customers(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        day = date.fromisoformat(context.partition_key)
        store = lake.store()
        table = build_dim_customers(read_raw_catalog(lake, "users", day), read_table(store, "order_lines", day), day)
        return dg.MaterializeResult(metadata=write_table(store, "dim_customers", day, table))

    return [order_lines, orders, dim_products, dim_customers]


def _json_lines(table: pa.Table) -> bytes:
    return "".join(json.dumps(row, default=str) + "\n" for row in table.to_pylist()).encode()
