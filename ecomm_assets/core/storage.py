"""The lake on a pyarrow filesystem: a local folder today, an object store with the same layout later.

Every write is atomic: locally a hidden temporary file renamed into place, on an object store a
single PUT. Readers (DuckDB globs, pyarrow datasets, Athena) skip names starting with '.' or '_'.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

PARQUET_COMPRESSION = "zstd"


@dataclass(frozen=True)
class LakeFile:
    """A file in the lake: its path relative to the lake root, size and modification time."""

    path: str
    size: int
    mtime: datetime | None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def partition_dir(area: str, table: str, day: date | str) -> str:
    """`<area>/<table>/dt=YYYY-MM-DD`, the layout Hive, Glue and Athena understand."""
    return f"{area}/{table}/dt={day}"


class LakeStore:
    """Reads and writes lake files by relative path on one pyarrow filesystem."""

    def __init__(self, filesystem: pafs.FileSystem, root: str, uri: str):
        self.filesystem = filesystem
        self.root = root.rstrip("/")
        self.uri = uri.rstrip("/")

    @classmethod
    def from_uri(cls, uri: str, s3_endpoint_url: str | None = None, s3_region: str | None = None) -> LakeStore:
        if uri.startswith("s3://"):
            bucket_and_prefix = uri[len("s3://") :].rstrip("/")
            filesystem = pafs.S3FileSystem(endpoint_override=s3_endpoint_url or None, region=s3_region or None)
            return cls(filesystem, bucket_and_prefix, uri)
        root = os.path.abspath(uri)
        return cls(pafs.LocalFileSystem(), root, root)

    @property
    def is_local(self) -> bool:
        return isinstance(self.filesystem, pafs.LocalFileSystem)

    def full_path(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def full_uri(self, rel: str) -> str:
        return f"{self.uri}/{rel}" if rel else self.uri

    # --- writes -------------------------------------------------------------------------------

    def write_bytes(self, rel: str, data: bytes) -> int:
        target = self.full_path(rel)
        parent = target.rsplit("/", 1)[0]
        self.filesystem.create_dir(parent, recursive=True)
        if not self.is_local:
            with self.filesystem.open_output_stream(target) as out:
                out.write(data)
            return len(data)
        temporary = f"{parent}/.{uuid.uuid4().hex}.tmp"
        try:
            with self.filesystem.open_output_stream(temporary) as out:
                out.write(data)
            self.filesystem.move(temporary, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.filesystem.delete_file(temporary)
        return len(data)

    def put_file(self, rel: str, local: Path) -> int:
        """Move a finished local file (from `staging_dir`) into the lake, atomically."""
        size = local.stat().st_size
        target = self.full_path(rel)
        self.filesystem.create_dir(target.rsplit("/", 1)[0], recursive=True)
        if self.is_local:
            os.replace(local, target)  # staging is inside the lake root: same filesystem
            return size
        with open(local, "rb") as source, self.filesystem.open_output_stream(target) as out:
            shutil.copyfileobj(source, out, 8 << 20)
        return size

    @contextlib.contextmanager
    def staging_dir(self) -> Iterator[str]:
        """A private local folder for files being produced; removed afterwards. For a local lake it
        is a hidden folder inside the root, so that `put_file` is a rename."""
        parent = None
        if self.is_local:
            parent = self.full_path(".staging")
            os.makedirs(parent, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="ecomm-", dir=parent) as folder:
            yield folder

    def write_parquet(self, rel: str, table: pa.Table) -> int:
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression=PARQUET_COMPRESSION)
        return self.write_bytes(rel, buffer.getvalue())

    def replace_partition(self, rel_dir: str, files: dict[str, bytes | pa.Table | Path]) -> int:
        """Make `rel_dir` hold exactly `files` (contents, tables or staged local files): each
        written atomically, stale files removed after."""
        written = 0
        for name, content in files.items():
            rel = f"{rel_dir}/{name}"
            if isinstance(content, pa.Table):
                written += self.write_parquet(rel, content)
            elif isinstance(content, Path):
                written += self.put_file(rel, content)
            else:
                written += self.write_bytes(rel, content)
        for stale in self.list_files(rel_dir):
            if stale.name not in files:
                self.delete(stale.path)
        return written

    def delete(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.filesystem.delete_file(self.full_path(rel))

    # --- reads --------------------------------------------------------------------------------

    def read_bytes(self, rel: str) -> bytes:
        """The file's bytes as stored: pyarrow would otherwise decompress a `.gz` name by itself."""
        with self.filesystem.open_input_stream(self.full_path(rel), compression=None) as stream:
            return stream.read()

    def exists(self, rel: str) -> bool:
        return self.filesystem.get_file_info(self.full_path(rel)).type == pafs.FileType.File

    def list_files(self, rel_dir: str, recursive: bool = False) -> list[LakeFile]:
        """Visible files below `rel_dir`, sorted by path; hidden ('.', '_') names are skipped."""
        selector = pafs.FileSelector(self.full_path(rel_dir), allow_not_found=True, recursive=recursive)
        prefix_len = len(self.root) + 1
        files = [
            LakeFile(info.path[prefix_len:], info.size, info.mtime)
            for info in self.filesystem.get_file_info(selector)
            if info.type == pafs.FileType.File and not _hidden(info.path[len(selector.base_dir) + 1 :])
        ]
        return sorted(files, key=lambda f: f.path)

    def read_parquet(self, rels: Sequence[str]) -> pa.Table:
        tables = [self._read_parquet_file(rel) for rel in rels]
        return pa.concat_tables(tables) if tables else pa.table({})

    def _read_parquet_file(self, rel: str) -> pa.Table:
        # A ParquetFile reads one known file at half the cost of pq.read_table (no dataset discovery).
        with self.filesystem.open_input_file(self.full_path(rel)) as handle:
            return pq.ParquetFile(handle).read()

    @contextlib.contextmanager
    def local_paths(self, rels: Sequence[str]) -> Iterator[list[str]]:
        """Local file paths for lake files, for engines (DuckDB) that read only local files here."""
        if self.is_local:
            yield [self.full_path(rel) for rel in rels]
            return
        with tempfile.TemporaryDirectory(prefix="ecomm-lake-") as folder:
            paths = []
            for index, rel in enumerate(rels):
                local = os.path.join(folder, f"{index:05d}-{rel.rsplit('/', 1)[-1]}")
                with open(local, "wb") as out:
                    out.write(self.read_bytes(rel))
                paths.append(local)
            yield paths


def _hidden(below: str) -> bool:
    """Whether a file or a folder it sits in (below the listed folder) is hidden."""
    return any(part.startswith((".", "_")) for part in below.split("/"))


def parquet_row_count(store: LakeStore, rel: str) -> int:
    """Rows of a Parquet file from its footer, without reading the data."""
    with store.filesystem.open_input_file(store.full_path(rel)) as handle:
        return pq.ParquetFile(handle).metadata.num_rows
