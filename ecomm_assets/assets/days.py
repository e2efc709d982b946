"""A run's days of lake tables: which days a run computes, reading them, and replacing each day's
partition under the day locks (core/locks.py), checking first that the inputs did not change.

Every asset takes a run of one day or of a range (a backfill is one run, `BackfillPolicy.single_run`):
it computes all the days in one pass and writes each day's file itself.
"""

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from ecomm_assets.assets.metadata import BUILT_DAYS, PREVIEW_ROWS, preview
from ecomm_assets.core import duck
from ecomm_assets.core.layout import (
    PART_FILE,
    PROCESSED,
    QUARANTINE_FILE,
    counts_path,
    partition_day,
    partition_dir,
    quarantine_dir,
    table_dir,
    table_path,
)
from ecomm_assets.core.locks import day_locks
from ecomm_assets.core.schemas import LAKE_TABLES, conform
from ecomm_assets.core.storage import (
    LakeFile,
    LakeStore,
    conform_parquet_file,
    parquet_bytes,
    quarantine_lines,
)


def run_days(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> list[date]:
    """The days of this run: one, or a whole backfill range."""
    return [date.fromisoformat(key) for key in context.partition_keys]


def read_table(store: LakeStore, table: str, day: date | str) -> pa.Table:
    return store.read_parquet([table_path(table, day)])


class MissingPartitions(RuntimeError):
    """An input table has no partition for days a step computes from it."""


def _missing(table: str, days: list[date]) -> MissingPartitions:
    return MissingPartitions(
        f"{table} has no partition for {', '.join(map(str, days))}: materialize {table} for "
        f"{'that day' if len(days) == 1 else 'those days'} first"
    )


def day_files(store: LakeStore, table: str, days: list[date]) -> dict[date, str]:
    """The table's file of each of `days`, found with one listing (no HEAD per day); a day without
    a file is an error naming the table and the days (materialize them first)."""
    rels = {table_path(table, day): day for day in days}
    present = store.existing(list(rels))
    missing = sorted(day for rel, day in rels.items() if rel not in present)
    if missing:
        raise _missing(table, missing)
    return {day: rel for rel, day in rels.items()}


@contextlib.contextmanager
def days_as_files(store: LakeStore, table: str, days: list[date], missing_ok: bool = False) -> Iterator[duck.ParquetFiles]:
    """The table's files of `days` as local files (on S3 each downloaded a chunk at a time) for a
    query to read as it goes (core/duck.query): no day is held in memory. A day without a file is
    an error naming the table and the days (materialize them first), or, with `missing_ok`,
    contributes nothing. On S3: a GET per day there, and with `missing_ok` one LIST that finds them."""
    rels = {table_path(table, day): day for day in days}
    if missing_ok:
        present = store.existing(list(rels))
        rels = {rel: day for rel, day in rels.items() if rel in present}
    with contextlib.ExitStack() as stack:
        try:
            paths = stack.enter_context(store.local_paths(list(rels)))
        except FileNotFoundError:
            present = store.existing(list(rels))
            raise _missing(table, sorted(day for rel, day in rels.items() if rel not in present)) from None
        yield duck.ParquetFiles(paths, LAKE_TABLES[table])


def read_days_present(store: LakeStore, table: str, days: list[date]) -> pa.Table:
    """The table's rows of those of `days` it holds, in one table: one LIST finds them (no HEAD per
    day), then a GET of each."""
    rels = [table_path(table, day) for day in days]
    present = store.existing(rels)
    return store.read_parquet([rel for rel in rels if rel in present])


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


def day_metadata(context: dg.AssetExecutionContext, by_day: dict[date, dict]) -> None:
    """Each day's own metadata (its row count, its figures) on that day's own materialization: what
    a step returns is copied onto every day of a range run, so it cannot say what differs per day."""
    for day, metadata in by_day.items():
        context.add_asset_metadata(metadata, partition_key=str(day))


@dataclass
class DaysWritten:
    """What replacing a table's days wrote: rows per day, bytes, and the first rows for a preview
    (of the first day that has rows; None while none has)."""

    rows: dict[date, int] = field(default_factory=dict)
    bytes: int = 0
    head: pa.Table | None = None

    def metadata(self, store: LakeStore, table_name: str) -> dict:
        days = sorted(self.rows)
        metadata = {
            "bytes_written": self.bytes,
            "path": dg.MetadataValue.path(
                store.full_uri(table_path(table_name, days[0]) if len(days) == 1 else table_dir(table_name))
            ),
            "preview": preview(self.head),
        }
        if len(days) != 1:
            metadata["days"] = len(days)
            metadata["rows"] = sum(self.rows.values())
        return metadata


def replace_days(store: LakeStore, table_name: str, contract: pa.Schema, by_day: dict[date, pa.Table | Path],
                 written: DaysWritten) -> None:
    """Replace each day's partition of a table (tables, or staged Parquet files), each with
    exactly the table's contract schema, empty or not, adding to `written`."""

    def partitions() -> Iterator[tuple[str, dict]]:  # each day conformed as it is written: memory stays a day's
        for day, content in sorted(by_day.items()):
            where = f"{table_name} of {day}"
            if isinstance(content, Path):
                content, parquet = conform_parquet_file(content, contract, where)
                written.rows[day] = parquet.metadata.num_rows
            else:
                content = conform(content, contract, where)
                written.rows[day] = content.num_rows
            if written.head is None and written.rows[day]:  # the preview shows the first day that has rows
                written.head = (pa.Table.from_batches([next(parquet.iter_batches(batch_size=PREVIEW_ROWS))])
                                if isinstance(content, Path) else content.slice(0, PREVIEW_ROWS))
            yield partition_dir(PROCESSED, table_name, day), {PART_FILE: content}

    written.bytes += store.replace_partitions(partitions())  # one listing finds the stale files of all the days


def write_days_rejects(store: LakeStore, table: str, counts: dict[date, dict],
                       quarantined: pa.Table | Mapping[date, Path]) -> None:
    """Each day's quarantined records (rows of `quarantined` with a `day` column, or each day's
    staged JSON Lines file), its quarantine folder replaced (one listing for all the days), and its counts."""
    if isinstance(quarantined, pa.Table):
        by_day = split_by_day(quarantined, "day", sorted(counts))
        files = ((day, quarantine_lines(rows.drop_columns(["day"])) if rows.num_rows else None) for day, rows in by_day.items())
    else:
        files = ((day, quarantined.get(day)) for day in sorted(counts))
    store.replace_partitions((quarantine_dir(table, day), {QUARANTINE_FILE: file} if file is not None else {})
                             for day, file in files)
    for day, day_counts in sorted(counts.items()):
        store.write_bytes(counts_path(table, day), json.dumps(day_counts, indent=1).encode())


def write_days(context: dg.AssetExecutionContext, store: LakeStore, table_name: str, contract: pa.Schema,
               by_day: dict[date, pa.Table | Path]) -> dict:
    """Replace the days of a daily asset's table; each day's row count on its materialization; the
    run's metadata."""
    written = DaysWritten()
    replace_days(store, table_name, contract, by_day, written)
    day_metadata(context, {day: {"dagster/row_count": n} for day, n in written.rows.items()})
    return written.metadata(store, table_name)


class InputsChanged(RuntimeError):
    """A step's input files changed between its listing and its write: its result is stale."""


def _by_day(files: Iterable[LakeFile]) -> dict[date, list[LakeFile]]:
    """Files grouped by the day of their dt= partition (files outside one are left out)."""
    by_day: dict[date, list[LakeFile]] = {}
    for f in files:
        day = partition_day(f.path)
        if day is not None:
            by_day.setdefault(day, []).append(f)
    return by_day


def files_by_day(store: LakeStore, folder: str) -> dict[date, list[LakeFile]]:
    """The files of each day's dt= partition under `folder` (`<area>/<table>`), from one listing."""
    return _by_day(store.list_files(folder, recursive=True))


def input_files(store: LakeStore, folder: str, days: Iterable[date]) -> frozenset[LakeFile]:
    """The files of `days` under `folder` (`<area>/<table>`), in one listing: what a step read."""
    return frozenset(store.list_partitions(folder, days))


@contextlib.contextmanager
def writing_days(
    context: dg.AssetExecutionContext, store: LakeStore, days: Sequence[date], reads: dict[str, Sequence[date]]
) -> Iterator[Callable[[], None]]:
    """Hold `days` exclusively for this run from listing its inputs to replacing its partitions,
    so that no other run writes them meanwhile (core/locks.py). Yields the guard to call just
    before the replace: it raises when a day's lease was lost or when an input folder of `reads`
    (folder -> days read) changed since the start, e.g. by a writer that takes no lock."""
    with day_locks(store, days, holder=context.run.run_id, on_wait=context.log.info) as held:
        listed = {folder: _by_day(input_files(store, folder, read_days)) for folder, read_days in reads.items()}

        def ensure_inputs_unchanged() -> None:
            held.ensure_held()
            changed = []
            for folder, read_days in reads.items():
                now = _by_day(input_files(store, folder, read_days))
                if any(set(now.get(day, ())) != set(listed[folder].get(day, ())) for day in read_days):
                    changed.append(folder)
            if changed:
                raise InputsChanged(
                    f"{', '.join(changed)} changed while this run computed from them: its result would "
                    "replace newer partitions with older data, so nothing was written; run the days again"
                )

        yield ensure_inputs_unchanged


# Input bytes (Parquet, JSON) a derived build reads at once: its memory is a small multiple of this,
# whatever the range; a day larger than this is a batch of its own.
BATCH_INPUT_BYTES = 2 * 2**20


@dataclass(frozen=True)
class Derivation:
    """What each day of a derived table is computed from: input folders (`<area>/<name>`) that must
    all hold the day, and folders read for the day when they hold it."""

    table: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.required + self.optional


@dataclass(frozen=True)
class StaleDays:
    """The days a derived table must (re)build, their input bytes, the days some of whose
    required inputs are not there yet, and the days each input folder held when listed (so that
    the build's batches need no listing of their own)."""

    days: list[date]
    input_bytes: dict[date, int]
    waiting: list[date]
    held: dict[str, set[date]]


def stale_days(store: LakeStore, derivation: Derivation) -> StaleDays:
    """Days every required input holds whose output is missing or not newer than its newest input
    file: one listing per folder, whatever the number of days."""
    newest: dict[date, datetime] = {}
    size: dict[date, int] = {}
    held: dict[str, set[date]] = {}
    for folder in derivation.inputs:
        by_day = files_by_day(store, folder)
        held[folder] = set(by_day)
        for day, files in by_day.items():
            size[day] = size.get(day, 0) + sum(f.size for f in files)
            newest[day] = max([f.mtime for f in files] + ([newest[day]] if day in newest else []))
    buildable = set.intersection(*(held[folder] for folder in derivation.required))
    built = {day: f.mtime for day, files in files_by_day(store, table_dir(derivation.table)).items()
             for f in files if f.name == PART_FILE}
    days = sorted(day for day in buildable if day not in built or built[day] <= newest[day])
    waiting = sorted(set().union(*(held[folder] for folder in derivation.required)) - buildable)
    return StaleDays(days, {day: size[day] for day in days}, waiting, held)


def day_batches(days: list[date], input_bytes: dict[date, int], budget: int) -> Iterator[list[date]]:
    """Consecutive days whose inputs together hold at most `budget` bytes (at least one day each)."""
    batch, held = [], 0
    for day in days:
        if batch and held + input_bytes[day] > budget:
            yield batch
            batch, held = [], 0
        batch.append(day)
        held += input_bytes[day]
    if batch:
        yield batch


@dataclass(frozen=True)
class DayRejects:
    """What a batch of days quarantined: each day's counts record, and the staged JSON Lines file of
    each day that rejected records (write_days_rejects)."""

    counts: dict[date, dict]
    quarantined: Mapping[date, Path]


class DerivedBuild:
    """One build of a derived table (one the lake keeps per day, which Dagster does not partition):
    its stale days, all built in one run in batches of bounded input (each batch one vectorized
    computation of every day in it). Each batch's days are staged as local files (`staging` is the
    folder for a batch's own staged files, kept until the end of the build); once every batch is
    built, the inputs are checked unchanged and all the days replaced, under the day locks: a
    listing per folder for the build, whatever its batches, and nothing written if a batch fails."""

    def __init__(self, store: LakeStore, derivation: Derivation, contract: pa.Schema, stale: StaleDays, staging: str):
        self.store, self.derivation, self.contract, self.stale = store, derivation, contract, stale
        self.staging = staging
        self._staged: dict[date, Path] = {}
        self._counts: dict[date, dict] = {}
        self._quarantined: dict[date, Path] = {}
        self.written = DaysWritten()

    def batches(self) -> Iterator[list[date]]:
        return day_batches(self.stale.days, self.stale.input_bytes, BATCH_INPUT_BYTES)

    def write(self, by_day: dict[date, pa.Table | Path], rejects: DayRejects | None = None) -> None:
        """Stage a batch's days (tables are written to files; files are taken where they are, in
        `staging`) and what it quarantined, for the build's replace."""
        for day, content in sorted(by_day.items()):
            if isinstance(content, pa.Table):  # held by the batch already: written whole, none of it kept
                path = Path(self.staging, f"{self.derivation.table}-{day}.staged.parquet")
                path.write_bytes(parquet_bytes(conform(content, self.contract, f"{self.derivation.table} of {day}")))
                content = path
            self._staged[day] = content
        if rejects is not None:
            self._counts |= rejects.counts
            self._quarantined |= rejects.quarantined

    def replace(self, ensure_inputs_unchanged: Callable[[], None]) -> None:
        """Replace every staged day, once the inputs are checked unchanged; the quarantine and its
        counts first, so that a day's rows are never there without them."""
        if not self._staged:
            return
        ensure_inputs_unchanged()
        if self._counts:
            write_days_rejects(self.store, self.derivation.table, self._counts, self._quarantined)
        replace_days(self.store, self.derivation.table, self.contract, self._staged, self.written)

    def metadata(self) -> dict:
        """The days built (what its checks evaluate), totals, a preview."""
        table = self.derivation.table
        metadata = self.written.metadata(self.store, table) if self.written.rows else {
            "path": dg.MetadataValue.path(self.store.full_uri(table_dir(table)))}
        metadata.update({BUILT_DAYS: dg.MetadataValue.json([str(day) for day in sorted(self.written.rows)]),
                         "days": len(self.written.rows), "rows": sum(self.written.rows.values()),
                         "days_waiting_for_inputs": len(self.stale.waiting)})
        return metadata


@contextlib.contextmanager
def derived_build(context: dg.AssetExecutionContext, store: LakeStore, derivation: Derivation,
                  contract: pa.Schema) -> Iterator[DerivedBuild]:
    """The build of a derived table's stale days: the caller computes and stages them batch by batch
    (DerivedBuild.write); when it is done they replace the table's days (DerivedBuild.replace)."""
    stale = stale_days(store, derivation)
    if stale.waiting:
        shown = ", ".join(map(str, stale.waiting[:10])) + (" ..." if len(stale.waiting) > 10 else "")
        context.log.info(f"{len(stale.waiting)} days wait for one of {', '.join(derivation.required)}: {shown}")
    reads = {folder: stale.days for folder in derivation.inputs}
    with writing_days(context, store, stale.days, reads) as ensure_inputs_unchanged, store.staging_dir() as staging:
        build = DerivedBuild(store, derivation, contract, stale, staging)
        yield build
        build.replace(ensure_inputs_unchanged)
