"""Lake tables: typed, validated, one compact Parquet file per table and UTC day.

Every asset takes a run of one day or of a range (a backfill is one run, `BackfillPolicy.single_run`):
it computes all the days in one pass and writes each day's file itself.
"""

import contextlib
import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ecomm_assets.assets.landing import raw_file_age
from ecomm_assets.assets.metadata import preview, reasons_table
from ecomm_assets.assets.sources import read_raw_catalog
from ecomm_assets.core import quality
from ecomm_assets.core.flatten import (
    DayCounts,
    FlattenResult,
    RawOrderFile,
    flatten_orders,
)
from ecomm_assets.core.locks import day_locks
from ecomm_assets.core.schemas import CONTRACTS, ORDER_LINES, conform
from ecomm_assets.core.storage import (
    LakeFile,
    LakeStore,
    conform_parquet_file,
    partition_dir,
)
from ecomm_assets.core.tables import (
    build_dim_customers,
    build_dim_products,
    build_orders,
)
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


def run_days(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> list[date]:
    """The days of this run: one, or a whole backfill range."""
    return [date.fromisoformat(key) for key in context.partition_keys]


def raw_order_files(store: LakeStore, day: date | str) -> list[LakeFile]:
    """The raw order files of a day, oldest first: the order in which versions of an order win.
    A landed file's age is when it landed (in its name), not when an ingest run wrote it."""
    files = store.list_files(partition_dir("raw", "orders", day))
    return sorted(files, key=lambda f: (raw_file_age(f), f.name))


def read_table(store: LakeStore, table: str, day: date | str) -> pa.Table:
    return store.read_parquet([table_path(table, day)])


def read_days(store: LakeStore, table: str, days: list[date]) -> pa.Table:
    """The table's rows of `days`, in one table (days without a file contribute nothing)."""
    return store.read_parquet([table_path(table, day) for day in days if store.exists(table_path(table, day))])


def split_by_day(table: pa.Table, day_column: str, days: list[date]) -> dict[date, pa.Table]:
    """Each day's rows (in their order), by slicing the table sorted on the day; empty days included."""
    if table.num_rows == 0:
        return {day: table for day in days}
    ordered = table.take(pc.sort_indices(table, [(day_column, "ascending")]))  # a stable sort
    runs = pc.value_counts(ordered[day_column])
    slices, offset = {}, 0
    for value, count in zip(runs.field("values").to_pylist(), runs.field("counts").to_pylist()):
        slices[value] = ordered.slice(offset, count)
        offset += count
    return {day: slices.get(day, table.slice(0, 0)) for day in days}


def write_days(store: LakeStore, table_name: str, contract: pa.Schema, by_day: dict[date, pa.Table | Path]) -> dict:
    """Replace each day's partition of a table (tables, or staged Parquet files), each with
    exactly the table's contract schema, empty or not; the metadata of it."""
    rows, size, head = {}, 0, None
    for day, content in sorted(by_day.items()):
        where = f"{table_name} of {day}"
        if isinstance(content, Path):
            content = conform_parquet_file(content, contract, where)
            parquet = pq.ParquetFile(content)
            rows[day] = parquet.metadata.num_rows
            first = next(parquet.iter_batches(batch_size=10), None)
            day_head = pa.Table.from_batches([first]) if first is not None else None
        else:
            content = conform(content, contract, where)
            rows[day], day_head = content.num_rows, content.slice(0, 10)
        if head is None or head.num_rows == 0:
            head = day_head  # the preview shows the first day that has rows
        size += store.replace_partition(partition_dir("processed", table_name, day), {PART_FILE: content})
    days = sorted(by_day)
    single = len(days) == 1
    metadata = {
        "dagster/row_count": sum(rows.values()),
        "bytes_written": size,
        "path": dg.MetadataValue.path(
            store.full_uri(table_path(table_name, days[0]) if single else f"processed/{table_name}")
        ),
        "preview": preview(head if head is not None else pa.table({})),
    }
    if not single:
        metadata["days"] = len(days)
        metadata["rows_per_day"] = dg.MetadataValue.json({str(day): n for day, n in rows.items()})
    return metadata


class InputsChanged(RuntimeError):
    """A step's input files changed between its listing and its write: its result is stale."""


def input_files(store: LakeStore, folder: str, days: Sequence[date]) -> frozenset[LakeFile]:
    """The files of `days` under `folder` (`<area>/<table>`), in one listing: what a step read."""
    wanted = {f"dt={day}" for day in days}
    return frozenset(f for f in store.list_files(folder, recursive=True) if f.path.split("/")[2] in wanted)


@contextlib.contextmanager
def writing_days(
    context: dg.AssetExecutionContext, store: LakeStore, days: Sequence[date], reads: dict[str, Sequence[date]]
) -> Iterator[Callable[[], None]]:
    """Hold `days` exclusively for this run from listing its inputs to replacing its partitions,
    so that no other run writes them meanwhile (core/locks.py). Yields the guard to call just
    before the first replace: it raises when a day's lease was lost or when an input folder of
    `reads` (folder -> days read) changed since the start, e.g. by a writer that takes no lock."""
    with day_locks(store, days, holder=context.run.run_id, on_wait=context.log.info) as held:
        listed = {folder: input_files(store, folder, read_days) for folder, read_days in reads.items()}

        def ensure_inputs_unchanged() -> None:
            held.ensure_held()
            changed = [folder for folder, files in listed.items() if input_files(store, folder, reads[folder]) != files]
            if changed:
                raise InputsChanged(
                    f"{', '.join(changed)} changed while this run computed from them: its result would "
                    "replace newer partitions with older data, so nothing was written; run the days again"
                )

        yield ensure_inputs_unchanged


def _write_order_lines(store: LakeStore, days: list[date], result: FlattenResult) -> dict:
    """Each day's quarantine, counts and order lines (a day without input gets an empty partition)."""
    for day in days:
        counts = result.counts.get(day, DayCounts())
        quarantined = result.quarantined.filter(pc.equal(result.quarantined["day"], day)).drop_columns(["day"])
        store.replace_partition(
            partition_dir("quarantine", "order_lines", day),
            {QUARANTINE_FILE: _json_lines(quarantined)} if quarantined.num_rows else {},
        )
        store.write_bytes(counts_path("order_lines", day), json.dumps(counts.as_dict(), indent=1).encode())
    return write_days(
        store, "order_lines", ORDER_LINES,
        {day: Path(result.line_files[day]) if day in result.line_files else ORDER_LINES.empty_table() for day in days},
    )


def _source_label(name: str) -> str:
    return name.removesuffix(".jsonl")


BACKFILL = dg.BackfillPolicy.single_run()


def build_lake_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    common = dict(partitions_def=partitions, group_name="lake", owners=["team:data-platform"], backfill_policy=BACKFILL)

    @dg.asset(
        **common,
        kinds={"duckdb", "parquet"},
        deps=["orders_raw"],
        description="One row per product line of every order of the day: flattened, typed with an "
        "explicit Arrow schema (money as decimal(18,2)), validated and de-duplicated (the newest "
        "version of an order wins). Rejected records go to quarantine/order_lines/ with a reason.",
    )
    def order_lines(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        days = run_days(context)
        store = lake.store()
        with writing_days(context, store, days, {"raw/orders": days}) as ensure_inputs_unchanged:
            raw = {day: raw_order_files(store, day) for day in days}
            for day in (d for d, files in raw.items() if not files):
                context.log.warning(f"no raw order files for {day}: writing an empty partition")
            listed = [(day, f) for day, files in raw.items() for f in files]
            with store.local_paths([f.path for _, f in listed]) as paths, store.staging_dir() as staging:
                result = flatten_orders(
                    [RawOrderFile(path, day, _source_label(f.name)) for path, (day, f) in zip(paths, listed)], staging
                )
                ensure_inputs_unchanged()
                metadata = _write_order_lines(store, days, result)
        totals = [result.counts.get(day, DayCounts()) for day in days]
        reasons = sum((c.reasons for c in totals), Counter())
        metadata.update(
            {
                "orders_loaded": sum(c.orders_loaded for c in totals),
                "records_read": sum(c.records_read for c in totals),
                "records_quarantined": sum(c.quarantined for c in totals),
                "duplicates_dropped": sum(c.duplicates_dropped for c in totals),
                "conservation_holds": all(c.conserved for c in totals),
                "top_reject_reasons": reasons_table(dict(reasons.most_common(10))),
                "raw_files": sum(len(files) for files in raw.values()),
                "read_mode": dg.MetadataValue.json(dict(Counter(result.read_modes.get(day, "no input") for day in days))),
            }
        )
        quarantined_days = [day for day, c in zip(days, totals) if c.quarantined]
        if quarantined_days:
            metadata["quarantine_path"] = dg.MetadataValue.path(store.full_uri(quarantine_path("order_lines", quarantined_days[0])))
        return dg.MaterializeResult(metadata=metadata)

    @dg.asset(
        **common,
        kinds={"duckdb", "parquet"},
        deps=[order_lines],
        description="One row per order: items, units, the sum of its lines, the total the source "
        "reported, and whether the two reconcile (real feeds add shipping and tax).",
    )
    def orders(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        days = run_days(context)
        store = lake.store()
        with writing_days(context, store, days, {"processed/order_lines": days}) as ensure_inputs_unchanged:
            table = build_orders(read_days(store, "order_lines", days))
            ensure_inputs_unchanged()
            metadata = write_days(store, "orders", CONTRACTS["orders"], split_by_day(table, "order_date", days))
        metadata["orders_not_reconciling"] = quality.totals_reconcile(table)[1]["orders_not_reconciling"]
        return dg.MaterializeResult(metadata=metadata)

    def dimension(name: str, catalog: str, builder, description: str) -> dg.AssetsDefinition:
        @dg.asset(name=name, **common, kinds={"duckdb", "parquet"}, deps=[f"{catalog}_raw", order_lines], description=description)
        def dim(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
            days = run_days(context)
            store = lake.store()
            reads = {f"raw/{catalog}": days, "processed/order_lines": days}
            with writing_days(context, store, days, reads) as ensure_inputs_unchanged:
                snapshots = {day: read_raw_catalog(lake, catalog, day) for day in days}
                missing = [str(day) for day, records in snapshots.items() if records is None]
                if missing:
                    context.log.warning(f"no {catalog} snapshot for {', '.join(missing)}: rows come from orders only")
                table = builder({day: records or [] for day, records in snapshots.items()}, read_days(store, "order_lines", days))
                ensure_inputs_unchanged()
                metadata = write_days(store, name, CONTRACTS[name], split_by_day(table, "snapshot_date", days))
            return dg.MaterializeResult(metadata=metadata)

        return dim

    dim_products = dimension(
        "dim_products", "products", build_dim_products,
        "Products of the day's catalog snapshot, plus products seen only in orders.",
    )
    dim_customers = dimension(
        "dim_customers", "users", build_dim_customers,
        "Customers (DummyJSON users) with address, city, state and country flattened, plus customers seen only in orders.",
    )
    return [order_lines, orders, dim_products, dim_customers]


def _json_lines(table: pa.Table) -> bytes:
    return "".join(json.dumps(row, default=str) + "\n" for row in table.to_pylist()).encode()
