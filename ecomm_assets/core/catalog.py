"""Keep a SQL catalog in step with the lake: AWS Glue (for Athena) or a local DuckDB file.

Both backends take the same call: `sync(tables, days)`, where each table names its Arrow schema,
its location in the lake and the `dt=` partitions it holds, and `days` are partitions that now exist
in every table. No crawler: the
schema comes from the table contracts, the partitions from the run that wrote them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Protocol

import duckdb
import pyarrow as pa

from ecomm_assets.core.layout import (
    PARTITION_FILES_GLOB,
    PARTITION_KEY,
    partition_folder,
)
from ecomm_assets.core.schemas import column_descriptions
from ecomm_assets.core.storage import is_leftover, owner

GLUE_BATCH = 100  # BatchCreatePartition / BatchGetPartition / BatchUpdatePartition take at most 100
GLUE_COMMENT_CHARACTERS = 255  # a Glue column's Comment
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"


class BreakingSchemaChange(Exception):
    """The new schema drops or retypes a column that the catalog already has."""


@dataclass(frozen=True)
class CatalogTable:
    name: str
    schema: pa.Schema
    location: str  # the table's folder, holding dt=YYYY-MM-DD/ partitions; ends without '/'
    partitioned: bool = True  # False: the folder holds the table's file itself (no dt=, no partitions)
    days: Sequence[date] = ()  # dt= partitions this table holds, registered with the sync's `days`


@dataclass
class SyncReport:
    tables_created: list[str] = field(default_factory=list)
    tables_updated: list[str] = field(default_factory=list)
    partitions_added: int = 0
    partitions_updated: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


class Catalog(Protocol):
    def sync(self, tables: Sequence[CatalogTable], days: Sequence[date]) -> SyncReport: ...

    def query_hint(self, table: str) -> str: ...


def hive_type(arrow_type: pa.DataType) -> str:
    """The Glue/Athena (Hive DDL) type of an Arrow type."""
    if pa.types.is_decimal(arrow_type):
        return f"decimal({arrow_type.precision},{arrow_type.scale})"
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    simple = {
        pa.string(): "string", pa.large_string(): "string", pa.bool_(): "boolean",
        pa.int8(): "tinyint", pa.int16(): "smallint", pa.int32(): "int", pa.int64(): "bigint",
        pa.float32(): "float", pa.float64(): "double", pa.date32(): "date",
    }
    if arrow_type in simple:
        return simple[arrow_type]
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return f"array<{hive_type(arrow_type.value_type)}>"
    raise TypeError(f"no Glue type for Arrow type {arrow_type}")


def glue_columns(schema: pa.Schema) -> list[dict]:
    """Each column's name, type and comment: its description, personal-data policy included (Glue
    takes 255 characters: a longer one is cut, ending in '…')."""
    descriptions = column_descriptions(schema)
    return [{"Name": f.name, "Type": hive_type(f.type), "Comment": _glue_comment(descriptions[f.name])} for f in schema]


def _glue_comment(description: str) -> str:
    if len(description) <= GLUE_COMMENT_CHARACTERS:
        return description
    return description[: GLUE_COMMENT_CHARACTERS - 1] + "…"


def schema_change(existing: list[dict], wanted: list[dict]) -> list[dict] | None:
    """The columns to add (None when none); raises on a dropped or retyped column."""
    have = {c["Name"]: c["Type"] for c in existing}
    want = {c["Name"]: c["Type"] for c in wanted}
    dropped = sorted(set(have) - set(want))
    retyped = sorted(n for n in have.keys() & want.keys() if have[n] != want[n])
    if dropped or retyped:
        details = [f"drops {n}" for n in dropped] + [f"changes {n} from {have[n]} to {want[n]}" for n in retyped]
        raise BreakingSchemaChange("breaking schema change refused: " + "; ".join(details))
    added = [c for c in wanted if c["Name"] not in have]
    return added or None


class GlueCatalog:
    """A Glue database with one EXTERNAL_TABLE per lake table, partitioned by `dt` (date)."""

    def __init__(self, glue_client, database: str, projection_start: date | None = None):
        self.glue = glue_client
        self.database = database
        self.projection_start = projection_start

    def sync(self, tables: Sequence[CatalogTable], days: Sequence[date]) -> SyncReport:
        report = SyncReport()
        self._ensure_database()
        for table in tables:
            self._ensure_table(table, report)
            if table.partitioned:
                self._register_partitions(table, [*days, *table.days], report)
        return report

    def query_hint(self, table: str) -> str:
        return f'SELECT * FROM "{self.database}"."{table}" WHERE dt = DATE \'2024-01-15\' LIMIT 10'

    def _ensure_database(self) -> None:
        try:
            self.glue.get_database(Name=self.database)
        except self.glue.exceptions.EntityNotFoundException:
            try:
                self.glue.create_database(DatabaseInput={"Name": self.database, "Description": "ecomm-assets lake"})
            except self.glue.exceptions.AlreadyExistsException:
                pass  # another run created it first

    def _table_input(self, table: CatalogTable, columns: list[dict]) -> dict:
        parameters = {"classification": "parquet", "EXTERNAL": "TRUE", "parquet.compression": "ZSTD"}
        if self.projection_start and table.partitioned:
            parameters |= {
                "projection.enabled": "true",
                f"projection.{PARTITION_KEY}.type": "date",
                f"projection.{PARTITION_KEY}.format": "yyyy-MM-dd",
                f"projection.{PARTITION_KEY}.range": f"{self.projection_start},NOW",
                f"projection.{PARTITION_KEY}.interval": "1",
                f"projection.{PARTITION_KEY}.interval.unit": "DAYS",
                "storage.location.template": f"{table.location}/{partition_folder('${' + PARTITION_KEY + '}')}/",
            }
        return {
            "Name": table.name,
            "TableType": "EXTERNAL_TABLE",
            "Parameters": parameters,
            "PartitionKeys": [{"Name": PARTITION_KEY, "Type": "date"}] if table.partitioned else [],
            "StorageDescriptor": self._storage(columns, f"{table.location}/"),
        }

    @staticmethod
    def _storage(columns: list[dict], location: str) -> dict:
        return {
            "Columns": columns,
            "Location": location,
            "InputFormat": PARQUET_INPUT,
            "OutputFormat": PARQUET_OUTPUT,
            "SerdeInfo": {"SerializationLibrary": PARQUET_SERDE, "Parameters": {"serialization.format": "1"}},
        }

    def _ensure_table(self, table: CatalogTable, report: SyncReport) -> None:
        wanted = glue_columns(table.schema)
        try:
            current = self.glue.get_table(DatabaseName=self.database, Name=table.name)["Table"]
        except self.glue.exceptions.EntityNotFoundException:
            try:
                self.glue.create_table(DatabaseName=self.database, TableInput=self._table_input(table, wanted))
                report.tables_created.append(table.name)
                return
            except self.glue.exceptions.AlreadyExistsException:
                current = self.glue.get_table(DatabaseName=self.database, Name=table.name)["Table"]
        existing = current["StorageDescriptor"]["Columns"]
        added = schema_change(existing, wanted)
        # The columns in the catalog's order, with today's comments (a description or a policy changed).
        by_name = {c["Name"]: c for c in wanted}
        columns = [by_name[c["Name"]] for c in existing] + (added or [])
        wanted_input = self._table_input(table, columns)
        unchanged = (
            columns == existing
            and current.get("Parameters", {}) == wanted_input["Parameters"]
            and current["StorageDescriptor"].get("Location") == wanted_input["StorageDescriptor"]["Location"]
        )
        if unchanged:
            return
        # VersionId makes the update conditional: a concurrent writer's change is not overwritten.
        self.glue.update_table(
            DatabaseName=self.database, TableInput=wanted_input, VersionId=current.get("VersionId", "0")
        )
        report.tables_updated.append(table.name)

    def _register_partitions(self, table: CatalogTable, days: Sequence[date], report: SyncReport) -> None:
        columns = self.glue.get_table(DatabaseName=self.database, Name=table.name)["Table"]["StorageDescriptor"]["Columns"]
        wanted = {str(day): self._storage(columns, f"{table.location}/{partition_folder(day)}/") for day in sorted(set(days))}
        existing = {}
        keys = list(wanted)
        for start in range(0, len(keys), GLUE_BATCH):
            found = self.glue.batch_get_partition(
                DatabaseName=self.database, TableName=table.name,
                PartitionsToGet=[{"Values": [k]} for k in keys[start : start + GLUE_BATCH]],
            )["Partitions"]
            existing.update({p["Values"][0]: p["StorageDescriptor"] for p in found})
        missing = [k for k in keys if k not in existing]
        changed = [
            k for k in keys
            if k in existing
            and (existing[k].get("Location") != wanted[k]["Location"] or existing[k].get("Columns") != columns)
        ]
        for start in range(0, len(missing), GLUE_BATCH):
            chunk = missing[start : start + GLUE_BATCH]
            response = self.glue.batch_create_partition(
                DatabaseName=self.database, TableName=table.name,
                PartitionInputList=[{"Values": [k], "StorageDescriptor": wanted[k]} for k in chunk],
            )
            _raise_errors(response.get("Errors", []), f"creating partitions of {table.name}")
            report.partitions_added += len(chunk)
        for start in range(0, len(changed), GLUE_BATCH):
            chunk = changed[start : start + GLUE_BATCH]
            response = self.glue.batch_update_partition(
                DatabaseName=self.database, TableName=table.name,
                Entries=[
                    {"PartitionValueList": [k], "PartitionInput": {"Values": [k], "StorageDescriptor": wanted[k]}}
                    for k in chunk
                ],
            )
            _raise_errors(response.get("Errors", []), f"updating partitions of {table.name}")
            report.partitions_updated += len(chunk)


def _raise_errors(errors: list[dict], doing: str) -> None:
    if errors:
        first = errors[0]
        detail = first.get("ErrorDetail", {})
        raise RuntimeError(
            f"Glue refused {len(errors)} partition(s) {doing}: {detail.get('ErrorCode')}: {detail.get('ErrorMessage')}"
        )


class DuckDBCatalog:
    """A DuckDB database file with a view per lake table over its Parquet partitions (with `dt`).

    Readers may hold the file open (read-only) for as long as they like: a sync never writes the
    file in place, where it would wait for their locks. It copies the file beside itself, updates
    the copy and renames it over the original. Open connections keep reading their snapshot; new
    ones see the new views. Syncs take turns (an exclusive lock on a file beside the catalog): each
    copies the catalog the one before it wrote, so none drops a view another sync just created.
    """

    def __init__(self, path: str):
        self.path = path

    def sync(self, tables: Sequence[CatalogTable], days: Sequence[date]) -> SyncReport:
        report = SyncReport()
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        prefix = f".{os.path.basename(self.path)}."
        with open(sync_lock_path(self.path), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when its process dies
            return self._sync(tables, folder, prefix, report)

    def _sync(self, tables: Sequence[CatalogTable], folder: str, prefix: str, report: SyncReport) -> SyncReport:
        _remove_leftovers(folder, prefix)
        fd, building = tempfile.mkstemp(prefix=f"{prefix}{owner()}~", dir=folder)
        os.close(fd)
        try:
            if os.path.exists(self.path):
                shutil.copy(self.path, building)  # with its mode: mkstemp's 0600 would replace it
            else:
                os.unlink(building)  # DuckDB creates the file; an empty one is not a database
            con = duckdb.connect(building)
            try:
                self._update_views(con, tables, report)
            finally:
                con.close()
            os.replace(building, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(building)
        return report  # no partitions to register: each view's glob sees a new dt= folder at once

    @staticmethod
    def _update_views(con: duckdb.DuckDBPyConnection, tables: Sequence[CatalogTable], report: SyncReport) -> None:
        existing = {row[0]: row[1] for row in con.sql("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall()}
        for table in tables:
            glob = f"{table.location}/{PARTITION_FILES_GLOB if table.partitioned else '*.parquet'}"
            if table.name not in existing and not con.execute("SELECT count(*) FROM glob(?)", [glob]).fetchone()[0]:
                continue  # no partition yet, and DuckDB binds a view to files: it comes with the first one
            comments = column_descriptions(table.schema)
            if table.name not in existing:
                report.tables_created.append(table.name)
            elif glob not in existing[table.name] or _comments_differ(con, table.name, comments):
                report.tables_updated.append(table.name)
            else:
                continue
            hive = f"hive_partitioning = true, hive_types = {{'{PARTITION_KEY}': DATE}}" if table.partitioned else "hive_partitioning = false"
            con.execute(f"CREATE OR REPLACE VIEW {table.name} AS SELECT * FROM read_parquet('{glob}', {hive}, union_by_name = true)")
            # Each column's description, personal-data policy included, as DuckDB's column comment.
            view_columns = _column_comments(con, table.name)
            for name, comment in comments.items():
                if name in view_columns:
                    con.execute(f'COMMENT ON COLUMN "{table.name}"."{name}" IS ' + "'" + comment.replace("'", "''") + "'")

    def query_hint(self, table: str) -> str:
        return f"duckdb {self.path} \"SELECT * FROM {table} WHERE dt = DATE '2024-01-15' LIMIT 10\""


def _column_comments(con: duckdb.DuckDBPyConnection, view: str) -> dict[str, str | None]:
    """A view's columns and their comments (the partition column `dt` aside: no contract column)."""
    rows = con.execute(
        "SELECT column_name, comment FROM duckdb_columns() WHERE table_name = ? AND column_name != ?", [view, PARTITION_KEY]
    ).fetchall()
    return dict(rows)


def _comments_differ(con: duckdb.DuckDBPyConnection, view: str, comments: dict[str, str]) -> bool:
    return any(comment != comments[name] for name, comment in _column_comments(con, view).items() if name in comments)


def sync_lock_path(catalog_path: str) -> str:
    """The file DuckDB catalog syncs take turns on: it stays beside the catalog (it is never a
    leftover: not below the copies' prefix, which a sync removes while another may hold the lock)."""
    return os.path.join(os.path.dirname(os.path.abspath(catalog_path)), f".{os.path.basename(catalog_path)}-sync.lock")


def _remove_leftovers(folder: str, prefix: str) -> None:
    """Copies (and their write-ahead logs) that killed syncs left beside the catalog."""
    now = time.time()
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        with contextlib.suppress(FileNotFoundError):
            if name.startswith(prefix) and is_leftover(name[len(prefix):], os.path.getmtime(path), now):
                os.unlink(path)
