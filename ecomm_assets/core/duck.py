"""In-memory DuckDB connections for the data code.

Opening a new in-memory database costs about 14-30 ms; a cursor on an open one, microseconds. A
backfill makes thousands of small queries, so every caller gets a cursor (its own connection, with
its own settings, temporary tables and registered tables) on one of two databases per process:
`connect`'s, for small work, and `query`'s, bounded to MEMORY_LIMIT, for inputs of any size.

A query's result too large to hold is streamed (`rows`) and written day by day to Parquet files
with exactly a table's contract (`DayFiles`): the files a lake partition takes as they are.
"""

import atexit
import contextlib
import functools
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Self

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ecomm_assets.core.schemas import conform
from ecomm_assets.core.storage import (
    CONFORM_BATCH_ROWS,
    MACHINE_STAGING,
    PARQUET_COMPRESSION,
    PARQUET_COMPRESSION_LEVEL,
    owner,
    sweep_folder,
)

# DuckDB's allocator returns freed memory to the system from threads of its own; without them a
# process keeps what its largest query took, step after step. A process-wide setting.
PROCESS_CONFIG = {"allocator_background_threads": True}


_databases: dict[str, tuple[int, duckdb.DuckDBPyConnection]] = {}
_inherited: list[tuple[int, duckdb.DuckDBPyConnection]] = []  # a forked child's copies: freeing one there hangs
_databases_lock = threading.Lock()


def _process_database(kind: str, open_database: Callable[[], duckdb.DuckDBPyConnection]) -> duckdb.DuckDBPyConnection:
    """The process's database of `kind`, opened on first use; never shared across a fork (a forked
    child opens its own and keeps the copy it inherited)."""
    with _databases_lock:
        held = _databases.get(kind)
        if held is None or held[0] != os.getpid():
            if held is not None:
                _inherited.append(held)
            held = _databases[kind] = (os.getpid(), open_database())
        return held[1]


def connect() -> duckdb.DuckDBPyConnection:
    """A new connection, with date parts and casts in UTC whatever the machine's zone."""
    return _session(_process_database("plain", lambda: duckdb.connect(config=PROCESS_CONFIG)).cursor())


def _session(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A connection's own settings (a cursor does not inherit them): date parts and casts in UTC, no
    progress bar (a long day's query would draw one on the run's stderr)."""
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    return con


# DuckDB's memory for work over a whole day (flattening, orders); beyond it, joins, aggregates and
# sorts spill to disk. With Python and pyarrow beside it, a day of any size stays well under 1 GiB.
MEMORY_LIMIT = "512MB"


def bounded(spill: str) -> duckdb.DuckDBPyConnection:
    """A database of its own (memory_limit is a database's setting, not a connection's) whose work
    past MEMORY_LIMIT spills into the folder `spill`, with date parts and casts in UTC."""
    con = _session(duckdb.connect(config=PROCESS_CONFIG | {"memory_limit": MEMORY_LIMIT, "temp_directory": spill}))
    con.execute("SET preserve_insertion_order = true")  # rows streamed in input order (DayFiles: day after day)
    return con


@dataclass(frozen=True)
class ParquetFiles:
    """A table as local Parquet files (a lake table's days), read as a query goes: no file is held
    whole. `schema`: the table's, what no files read as. `columns`: only those are read (None: all);
    `position`: a column giving each row its file's position in `paths`."""

    paths: Sequence[str]
    schema: pa.Schema
    columns: Sequence[str] | None = None
    position: str | None = None

    def view(self, con: duckdb.DuckDBPyConnection, name: str) -> None:
        """The files as the temporary view `name` of `con` (its own: another cursor never sees it)."""
        columns = ", ".join(_quoted(column) for column in self.columns) if self.columns is not None else "*"
        position = f", file_index::INTEGER AS {_quoted(self.position)}" if self.position is not None else ""
        if self.paths:
            files = "[" + ", ".join("'" + path.replace("'", "''") + "'" for path in self.paths) + "]"
            con.execute(f"CREATE TEMP VIEW {_quoted(name)} AS SELECT {columns}{position} FROM read_parquet({files})")
            return
        con.register(f"{name}__empty", self.schema.empty_table())
        con.execute(f"CREATE TEMP VIEW {_quoted(name)} AS SELECT {columns}{position.replace('file_index', 'NULL')} "
                    f"FROM {_quoted(name + '__empty')}")


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'



def _open_bounded() -> duckdb.DuckDBPyConnection:
    """The process's bounded database, spilling into a folder of MACHINE_STAGING named for this
    process: removed when it exits, and by the next process's sweep if it was killed."""
    os.makedirs(MACHINE_STAGING, exist_ok=True)
    sweep_folder(MACHINE_STAGING)
    spill = tempfile.mkdtemp(prefix=f"{owner()}~spill-", dir=MACHINE_STAGING)
    atexit.register(_remove_spill, os.getpid(), spill)
    return bounded(spill)


def _remove_spill(pid: int, spill: str) -> None:
    if os.getpid() == pid:  # not in a forked child, which inherits the handler
        shutil.rmtree(spill, ignore_errors=True)


def query(sql: str, **inputs: pa.Table | ParquetFiles) -> pa.Table:
    """`sql`'s result over `inputs` (Arrow tables or Parquet files, by name) on the process's database
    bounded to MEMORY_LIMIT, which spills to disk: the inputs may be larger than memory. A cursor
    on it, as `connect` gives: opening a database costs a query's time."""
    with _session(_process_database("bounded", _open_bounded).cursor()) as con:
        for name, source in inputs.items():
            if isinstance(source, ParquetFiles):
                source.view(con, name)
            else:
                con.register(name, source)
        return con.sql(sql).to_arrow_table()


# Rows per batch a query streams: small enough that the Arrow buffers DuckDB fills for one batch
# are reused for the next (larger ones take fresh memory each time, paid in page faults and peak
# memory). DayFiles gathers them into row groups of CONFORM_BATCH_ROWS.
STREAM_BATCH_ROWS = 16 * 1024


def rows(con: duckdb.DuckDBPyConnection, sql: str, params: dict | None = None) -> Iterator[pa.RecordBatch]:
    """A query's rows streamed in batches, in the order DuckDB gives them (insertion order for a
    query that keeps it, e.g. no join; else the sort's): memory holds a batch, not the result."""
    reader = con.sql(sql, params=params).to_arrow_reader(STREAM_BATCH_ROWS)
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except OSError as error:
            raise _duckdb_error(error) from error
        yield batch


# DuckDB's exception classes by their lowercased names without "Exception" ("invalidinput").
_EXCEPTIONS = {name.lower().removesuffix("exception"): getattr(duckdb, name) for name in dir(duckdb) if name.endswith("Exception")}


def _duckdb_error(error: OSError) -> duckdb.Error:
    """The exception DuckDB raises for a query's error: one part-way through a stream reaches Python
    through Arrow's C stream as an OSError, with DuckDB's message ("Invalid Input Error: ...")."""
    kind = str(error).partition(" Error: ")[0].replace(" ", "").lower()
    return _EXCEPTIONS.get(kind, duckdb.Error)(str(error))


def by_day(batches: Iterable[pa.RecordBatch], day_column: str) -> Iterator[tuple[date, pa.RecordBatch]]:
    """The batches cut where `day_column` changes: (day, rows of that day), in order."""
    for batch in batches:
        runs = pc.run_end_encode(batch.column(day_column))
        start = 0
        for end, day in zip(runs.run_ends.to_pylist(), runs.values.to_pylist()):
            yield day, batch.slice(start, end - start)
            start = end


class DayFiles:
    """One Parquet file per day in `folder`, with exactly the contract's schema (column order, types,
    nullability, descriptions), conformed (schemas.conform, its checks and errors) as it is written:
    a day's file is written once, ready to move into the lake as it is. Rows come day after day; a
    day's writer is closed when the next day starts (one file open), and rows are written in row
    groups of CONFORM_BATCH_ROWS (rows() streams smaller batches).

    Parquet encoding takes one core: a thread of its own writes a row group while the caller
    prepares the next one (DuckDB computing meanwhile), one at a time, so memory holds two."""

    def __init__(self, folder: str, table: str, contract: pa.Schema):
        self.folder, self.table, self.contract = folder, table, contract
        self.paths: dict[date, Path] = {}
        self._day: date | None = None
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{table}-parquet")
        self._writing: Future | None = None

    def write(self, day: date, batch: pa.RecordBatch) -> None:
        if day != self._day:
            self._open(day)
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        if self._pending_rows >= CONFORM_BATCH_ROWS:
            self._flush()

    def empty(self, day: date) -> None:
        """A file without rows, for a day that got none: one empty row group, as pq.write_table
        writes an empty table, so that a day without rows is the same file whoever wrote it."""
        self._open(day)
        self._submit(functools.partial(self._writer.write_table, self.contract.empty_table()))
        self._close()

    def discard(self, day: date) -> None:
        """Drop the day's file (its rows are not the day's result: another pass writes it)."""
        if day == self._day:
            self._pending, self._pending_rows = [], 0
            self._close()
        self._wait()
        self.paths.pop(day).unlink()

    def _open(self, day: date) -> None:
        if day in self.paths:
            raise RuntimeError(f"{self.table}: rows of {day} came after those of another day")
        self._close()
        self.paths[day] = Path(self.folder, f"{self.table}-{day}.parquet")
        self._day = day
        self._writer = pq.ParquetWriter(self.paths[day], self.contract, compression=PARQUET_COMPRESSION,
                                        compression_level=PARQUET_COMPRESSION_LEVEL)

    def _flush(self) -> None:
        if self._pending:
            rows = conform(pa.Table.from_batches(self._pending), self.contract, f"{self.table} of {self._day}")
            self._pending, self._pending_rows = [], 0
            self._submit(functools.partial(self._writer.write_table, rows, row_group_size=rows.num_rows))

    def _close(self) -> None:
        if self._writer is not None:
            self._flush()
            self._submit(self._writer.close)
        self._day, self._writer = None, None

    def _submit(self, work: Callable[[], None]) -> None:
        self._wait()  # one write at a time: its error is raised here
        self._writing = self._thread.submit(work)

    def _wait(self) -> None:
        if self._writing is not None:
            writing, self._writing = self._writing, None
            writing.result()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, error_type, *_) -> None:
        try:
            if error_type is None:
                self._close()
                self._wait()
            else:  # the files are incomplete anyway: what is pending is not written
                self._pending = []
                with contextlib.suppress(Exception):  # the error being raised is the one to see
                    self._close()
                    self._wait()
        finally:
            self._thread.shutdown()
