"""The bytes of Parquet a query scans after partition and column pruning: what Athena bills.

DuckDB plans the query over the lake's tables (read through fsspec, so an S3 lake works too), and
its plan gives, for each Parquet scan, the columns read (column pruning) and the filter on `dt`
that picks the files (partition pruning). The bytes are those columns' compressed column chunks
in the files whose day passes the filter, from the files' footers. DuckDB's own bytes read are no
measure: it fetches a small file whole whatever the columns. Only the files of the tables the
query reads count; a query reading several tables counts each scan's columns in every one of
those tables' files that has them (an upper bound).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from fsspec.implementations.arrow import ArrowFSWrapper

from ecomm_assets.core.layout import PARTITION_FILES_GLOB, PARTITION_KEY, partition_day

PROTOCOL = "lakescan"


class _LakeFileSystem(ArrowFSWrapper):
    protocol = PROTOCOL

    @classmethod
    def _strip_protocol(cls, path):
        # Everything after `lakescan://` is the path: an S3 lake's root starts with its bucket, not a host.
        return path.removeprefix(f"{PROTOCOL}://").rstrip("/") if isinstance(path, str) else super()._strip_protocol(path)


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


def scanned_bytes(queries: Mapping[str, str], filesystem: pafs.FileSystem, root: str,
                  tables: Mapping[str, str], unpartitioned: Collection[str] = ()) -> dict[str, tuple[int, int, int] | str]:
    """For each query (name -> SQL) over the tables (name -> folder below `root` on `filesystem`,
    holding dt=YYYY-MM-DD/ partitions, or, for those named in `unpartitioned`, its files directly):
    (bytes of column chunks scanned, files scanned, days the tables it reads hold), or why it could
    not be planned (a table the lake does not hold)."""
    with duckdb.connect() as con:
        con.register_filesystem(_LakeFileSystem(filesystem))
        for name, folder in tables.items():
            source = (f"'{PROTOCOL}://{root}/{folder}/*.parquet', hive_partitioning = false" if name in unpartitioned else
                      f"'{PROTOCOL}://{root}/{folder}/{PARTITION_FILES_GLOB}', hive_partitioning = true, "
                      f"hive_types = {{'{PARTITION_KEY}': DATE}}")
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({source})")
        results, lake = {}, _LakeFiles(filesystem, root, tables)
        for query, sql in queries.items():
            try:
                results[query] = _scanned(con, sql, lake)
            except duckdb.CatalogException as error:
                results[query] = str(error)
    return results


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
    """The tables' Parquet files and their column chunks' sizes, each folder listed and each footer
    read once for all the queries."""

    def __init__(self, filesystem: pafs.FileSystem, root: str, tables: Mapping[str, str]):
        self.filesystem, self.root, self.tables = filesystem, root, tables
        self._listed: dict[str, dict[str, str]] = {}
        self._chunks: dict[str, dict[str, int]] = {}

    def days(self, table: str) -> dict[str, str]:
        """The table's files (path -> day, 'None' for an unpartitioned file)."""
        if table not in self._listed:
            selector = pafs.FileSelector(f"{self.root}/{self.tables[table]}", recursive=True)
            self._listed[table] = {info.path: str(partition_day(info.path[len(self.root) + 1:]))
                                   for info in self.filesystem.get_file_info(selector) if info.path.endswith(".parquet")}
        return self._listed[table]

    def chunk_bytes(self, path: str) -> dict[str, int]:
        """Compressed bytes of each column of the file, over its row groups, from its footer."""
        if path not in self._chunks:
            with self.filesystem.open_input_file(path) as handle:
                metadata = pq.ParquetFile(handle).metadata
            sizes: dict[str, int] = {}
            for group in range(metadata.num_row_groups):
                row_group = metadata.row_group(group)
                for c in range(row_group.num_columns):
                    column = row_group.column(c)
                    sizes[column.path_in_schema] = sizes.get(column.path_in_schema, 0) + column.total_compressed_size
            self._chunks[path] = sizes
        return self._chunks[path]


def _scanned(con: duckdb.DuckDBPyConnection, sql: str, lake: _LakeFiles) -> tuple[int, int, int]:
    scans = _scans(json.loads(con.sql(f"EXPLAIN (FORMAT JSON) {sql}").fetchall()[0][1]))
    read = _tables_named(con, sql) & set(lake.tables)
    files = {path: day for name in sorted(read) for path, day in lake.days(name).items()}
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
    scanned, scanned_files = 0, 0
    for path, day in sorted(files.items()):
        columns = columns_by_day.get(day)
        if not columns:
            continue  # pruned by its partition
        scanned_files += 1
        scanned += sum(size for column, size in lake.chunk_bytes(path).items() if column in columns)
    return scanned, scanned_files, len([day for day in days if day != str(None)])
