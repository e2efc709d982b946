"""A run's days of lake tables: which days a run computes, reading them, and replacing each day's
partition under the day locks (core/locks.py), checking first that the inputs did not change.

Every asset takes a run of one day or of a range (a backfill is one run, `BackfillPolicy.single_run`):
it computes all the days in one pass and writes each day's file itself.
"""

import contextlib
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ecomm_assets.assets.metadata import preview
from ecomm_assets.core.layout import (
    PART_FILE,
    PROCESSED,
    partition_day,
    partition_dir,
    table_dir,
    table_path,
)
from ecomm_assets.core.locks import day_locks
from ecomm_assets.core.schemas import conform
from ecomm_assets.core.storage import LakeFile, LakeStore, conform_parquet_file


def run_days(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> list[date]:
    """The days of this run: one, or a whole backfill range."""
    return [date.fromisoformat(key) for key in context.partition_keys]


def read_table(store: LakeStore, table: str, day: date | str) -> pa.Table:
    return store.read_parquet([table_path(table, day)])


class MissingPartitions(RuntimeError):
    """An input table has no partition for days a step computes from it."""


def day_files(store: LakeStore, table: str, days: list[date], missing_ok: bool = False) -> dict[date, str]:
    """The table's file of each of `days`. A day without a file is an error naming the table and
    the days (materialize them first), or, with `missing_ok`, is left out."""
    present = {day: table_path(table, day) for day in days if store.exists(table_path(table, day))}
    missing = sorted(set(days) - set(present))
    if missing and not missing_ok:
        raise MissingPartitions(
            f"{table} has no partition for {', '.join(map(str, missing))}: materialize {table} for "
            f"{'that day' if len(missing) == 1 else 'those days'} first"
        )
    return present


def read_days(store: LakeStore, table: str, days: list[date], missing_ok: bool = False) -> pa.Table:
    """The table's rows of `days`, in one table (see day_files for days without a file)."""
    return store.read_parquet(list(day_files(store, table, days, missing_ok).values()))


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
        size += store.replace_partition(partition_dir(PROCESSED, table_name, day), {PART_FILE: content})
    days = sorted(by_day)
    single = len(days) == 1
    metadata = {
        "bytes_written": size,
        "path": dg.MetadataValue.path(
            store.full_uri(table_path(table_name, days[0]) if single else table_dir(table_name))
        ),
        "preview": preview(head if head is not None else pa.table({})),
    }
    if single:
        metadata["dagster/row_count"] = rows[days[0]]
    else:  # one metadata for every day of a range: a day's own row count would be false for the others
        metadata["days"] = len(days)
        metadata["rows"] = sum(rows.values())
        metadata["rows_per_day"] = dg.MetadataValue.json({str(day): n for day, n in rows.items()})
    return metadata


class InputsChanged(RuntimeError):
    """A step's input files changed between its listing and its write: its result is stale."""


def input_files(store: LakeStore, folder: str, days: Sequence[date]) -> frozenset[LakeFile]:
    """The files of `days` under `folder` (`<area>/<table>`), in one listing: what a step read."""
    wanted = set(days)
    return frozenset(f for f in store.list_files(folder, recursive=True) if partition_day(f.path) in wanted)


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
