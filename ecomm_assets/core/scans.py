"""The bytes of Parquet a query scans after partition and column pruning: what Athena bills.

DuckDB plans the query over stand-ins of the lake's tables: the lake's files, as one listing of
each table found them, each an empty Parquet file of the table's contract schema (core/schemas.py)
in memory, so planning sends the object store nothing. Its plan gives, for each Parquet
scan, the columns read (column pruning) and the filter on `dt` that picks the files (partition
pruning). The bytes are those columns' compressed column chunks in the files whose day passes
the filter, from the files' footers, each read once through the LakeStore (so its usage records
the requests) and kept in the lake (FooterSizes): a later estimate reads only the footers of the
files written since. DuckDB's own bytes read are no measure: it fetches a small file whole whatever the
columns. Only the files of the tables the query reads count; a query reading several tables
counts each scan's columns in every one of those tables' files that has them (an upper bound).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem
from fsspec.utils import glob_translate

from ecomm_assets.core.layout import (
    FOOTER_SIZES_PATH,
    PARTITION_FILES_GLOB,
    PARTITION_KEY,
    partition_day,
    table_dir,
)
from ecomm_assets.core.storage import (
    READ_CONCURRENCY,
    LakeFile,
    LakeStore,
    parquet_footer,
)

PROTOCOL = "lakescan"
STAND_IN_MODIFIED = datetime(1970, 1, 1, tzinfo=UTC)
FOOTER_SIZES_SCHEMA = pa.schema([("path", pa.string()), ("version", pa.string()), ("sizes", pa.map_(pa.string(), pa.int64()))])


class FooterSizes:
    """The compressed bytes of each column of the lake's Parquet files, as their footers said, kept
    in the lake (FOOTER_SIZES_PATH) under each file's version (its size and modification time as
    listed): a file written again, or another at its path, is read again. Without it, each estimate
    read every footer of the lake: requests that grew with the lake's days."""

    def __init__(self, store: LakeStore, listed: Sequence[LakeFile]):
        """The sizes kept for the files `listed` (one GET; a file kept that the listing no longer
        holds is dropped)."""
        self.store, self.changed = store, False
        self.versions = {file.path: f"{file.size}@{file.mtime.isoformat() if file.mtime else ''}" for file in listed}
        self.kept: dict[str, dict[str, int]] = {}
        try:
            table = pq.read_table(pa.BufferReader(store.read_bytes(FOOTER_SIZES_PATH)), schema=FOOTER_SIZES_SCHEMA)
        except FileNotFoundError:
            return
        except (pa.ArrowException, ValueError):  # not the file this wrote (another release's, or cut): read afresh
            self.changed = True
            return
        for path, version, sizes in zip(*(table[name].to_pylist() for name in FOOTER_SIZES_SCHEMA.names), strict=True):
            if self.versions.get(path) == version:
                self.kept[path] = dict(sizes)
        self.changed = len(self.kept) != table.num_rows

    def get(self, path: str) -> dict[str, int] | None:
        return self.kept.get(path)

    def add(self, path: str, sizes: dict[str, int]) -> None:
        self.kept[path], self.changed = sizes, True

    def save(self) -> None:
        """Written back (one PUT) when a footer was read or a file kept is gone."""
        if self.changed:
            paths = sorted(self.kept)
            self.store.write_parquet(FOOTER_SIZES_PATH, pa.table(
                [paths, [self.versions[path] for path in paths], [list(self.kept[path].items()) for path in paths]],
                schema=FOOTER_SIZES_SCHEMA))
            self.changed = False


def _scans(plan: list[dict]) -> list[tuple[set[str], str | None]]:
    """Each Parquet scan's (columns, filter on the partition column or None)."""
    scans, nodes = [], list(plan)
    while nodes:
        node = nodes.pop()
        info = node.get("extra_info", {})
        if info.get("Function") == "READ_PARQUET":
            projected = info.get("Projections", [])
            scans.append((set([projected] if isinstance(projected, str) else projected), info.get("File Filters")))
        nodes.extend(node.get("children", []))
    return scans


def scanned_bytes(queries: Mapping[str, str], store: LakeStore, files: Mapping[str, Sequence[str]],
                  schemas: Mapping[str, pa.Schema], unpartitioned: Collection[str] = (),
                  footers: FooterSizes | None = None) -> dict[str, tuple[int, int, int] | str]:
    """For each query (name -> SQL) over the lake's tables (name -> the lake paths of its Parquet
    files below its table_dir, in dt=YYYY-MM-DD/ partitions or, for those named in `unpartitioned`,
    directly; of the contract schema in `schemas`): (bytes of column chunks scanned, files
    scanned, days the tables it reads hold), or why it could not be planned (a table the lake does
    not hold). `footers`: the sizes read before, and where those read now are added."""
    with duckdb.connect() as con:
        con.register_filesystem(_StandIns(files, schemas))
        for name in files:
            folder = f"{PROTOCOL}://{table_dir(name)}"
            source = (f"'{folder}/*.parquet', hive_partitioning = false" if name in unpartitioned else
                      f"'{folder}/{PARTITION_FILES_GLOB}', hive_partitioning = true, hive_types = {{'{PARTITION_KEY}': DATE}}")
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({source})")
        results, lake = {}, _LakeFiles(store, files, footers)
        for query, sql in queries.items():
            try:
                results[query] = _scanned(con, sql, lake)
            except duckdb.CatalogException as error:
                results[query] = str(error)
    return results


class _StandIns(AbstractFileSystem):
    """The lake's Parquet files, as one listing found them, each an empty Parquet file of its
    table's contract schema, in memory: what DuckDB plans on (it globs and opens files, it reads
    no data)."""

    protocol = PROTOCOL
    cachable = False  # an instance per estimate, not fsspec's shared one

    def __init__(self, files: Mapping[str, Sequence[str]], schemas: Mapping[str, pa.Schema]):
        super().__init__()
        self.contents: dict[str, bytes] = {}  # lake path -> its stand-in
        for name, paths in files.items():
            sink = pa.BufferOutputStream()
            with pq.ParquetWriter(sink, schemas[name]):
                pass  # no row group: the footer alone
            empty = sink.getvalue().to_pybytes()
            self.contents.update(dict.fromkeys(paths, empty))

    def glob(self, path, **kwargs):
        pattern = self._strip_protocol(path)
        literal, matches = pattern.split("*", 1)[0], re.compile(glob_translate(pattern)).match
        return sorted(path for path in self.contents if path.startswith(literal) and matches(path))

    def info(self, path, **kwargs):
        path = self._strip_protocol(path)
        if path not in self.contents:
            raise FileNotFoundError(path)
        return {"name": path, "size": len(self.contents[path]), "type": "file"}

    def modified(self, path):
        return STAND_IN_MODIFIED  # DuckDB's file cache asks; a stand-in never changes

    def _open(self, path, mode="rb", **kwargs):
        return io.BytesIO(self.contents[self._strip_protocol(path)])


def _parse_tree(con: duckdb.DuckDBPyConnection, sql: str) -> Iterator[dict]:
    """Every node of a query's parse tree: it needs no tables, where binding the query
    (duckdb.get_table_names) fails on an UNNEST of a column whose type it does not know, and on
    the views' hive_types."""
    nodes = [json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0])]
    while nodes:
        node = nodes.pop()
        if isinstance(node, dict):
            yield node
            nodes.extend(node.values())
        elif isinstance(node, list):
            nodes.extend(node)


def _tables_named(con: duckdb.DuckDBPyConnection, sql: str) -> set[str]:
    """The tables a query names."""
    return {node["table_name"] for node in _parse_tree(con, sql) if node.get("type") == "BASE_TABLE" and "table_name" in node}


def columns_read(sql: str, schemas: Mapping[str, pa.Schema]) -> dict[str, list[str]]:
    """For each table of `schemas` (name -> schema) the query names, the columns of it the query
    can read: those whose name it mentions (as a column, a qualified column or a join's USING),
    or all of them when it selects `*`. A superset of what it reads, from its parse tree alone."""
    named, star = set(), False
    with duckdb.connect() as con:
        tables = _tables_named(con, sql) & set(schemas)
        for node in _parse_tree(con, sql):
            star |= node.get("class") == "STAR"
            if node.get("class") == "COLUMN_REF":
                named.add(node["column_names"][-1])
            named.update(node.get("using_columns") or ())
    return {table: [name for name in schemas[table].names if star or name in named] for table in sorted(tables)}


class _LakeFiles:
    """The tables' Parquet files and their column chunks' sizes, each footer read once for all the
    queries."""

    def __init__(self, store: LakeStore, files: Mapping[str, Sequence[str]], footers: FooterSizes | None):
        self.store, self.tables, self.footers = store, files, footers
        self._chunks: dict[str, dict[str, int]] = {}

    def days(self, table: str) -> dict[str, str]:
        """The table's files (path -> day, 'None' for an unpartitioned file)."""
        return {path: str(partition_day(path)) for path in self.tables[table]}

    def chunk_bytes(self, paths: Sequence[str]) -> dict[str, dict[str, int]]:
        """Compressed bytes of each column of each file, over its row groups, from its footer (those
        not read yet READ_CONCURRENCY at a time: on S3 each is a GET that waits on the network)."""
        if self.footers is not None:
            self._chunks.update((path, kept) for path in paths if path not in self._chunks and (kept := self.footers.get(path)))
        unread = [path for path in paths if path not in self._chunks]
        if unread:
            with ThreadPoolExecutor(min(READ_CONCURRENCY, len(unread))) as pool:
                self._chunks.update(zip(unread, pool.map(self._footer_chunk_bytes, unread)))
            if self.footers is not None:
                for path in unread:
                    self.footers.add(path, self._chunks[path])
        return {path: self._chunks[path] for path in paths}

    def _footer_chunk_bytes(self, path: str) -> dict[str, int]:
        metadata = parquet_footer(self.store, path).metadata
        sizes: dict[str, int] = {}
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            for c in range(row_group.num_columns):
                column = row_group.column(c)
                sizes[column.path_in_schema] = sizes.get(column.path_in_schema, 0) + column.total_compressed_size
        return sizes


def _scanned(con: duckdb.DuckDBPyConnection, sql: str, lake: _LakeFiles) -> tuple[int, int, int]:
    scans = _scans(json.loads(con.sql(f"EXPLAIN (FORMAT JSON) {sql}").fetchall()[0][1]))
    tables = _tables_named(con, sql) & set(lake.tables)
    files = {path: day for name in sorted(tables) for path, day in lake.days(name).items()}
    days = sorted(set(files.values()))
    columns_by_day: dict[str, set[str]] = {}
    for columns, day_filter in scans:
        passing = days if not day_filter else [
            str(row[0]) for row in con.execute(
                f"SELECT {PARTITION_KEY} FROM (SELECT unnest(?::DATE[]) AS {PARTITION_KEY}) WHERE {day_filter}", [days]
            ).fetchall()
        ]
        for day in passing:
            columns_by_day.setdefault(day, set()).update(columns)
    scanned = {path: columns for path, day in sorted(files.items()) if (columns := columns_by_day.get(day))}
    sizes = lake.chunk_bytes(list(scanned))  # the others are pruned by their partition
    chunks = sum(size for path, columns in scanned.items() for column, size in sizes[path].items() if column in columns)
    return chunks, len(scanned), len([day for day in days if day != str(None)])
