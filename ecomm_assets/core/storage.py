"""The lake on a pyarrow filesystem: a local folder or an S3 prefix, with the same layout.

Every write is atomic: locally a temporary file in the lake's hidden `.staging/` folder renamed
into place, on an object store a single PUT. Readers (DuckDB globs, pyarrow datasets, Athena)
skip names starting with '.' or '_'.

A killed writer cannot clean up after itself, so every temporary name carries its host and
process id, and the first write of a store sweeps what dead processes of this host (or another
host's temporaries older than LEFTOVER_MAX_AGE) left in the staging folder; on S3 the first write of a process to a lake also
aborts stale incomplete multipart uploads under the lake's prefix (once, not in every step: it is
a LIST).
"""

from __future__ import annotations

import contextlib
import enum
import errno
import functools
import hashlib
import io
import json
import os
import shutil
import socket
import stat
import struct
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import boto3
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from ecomm_assets.core.layout import STAGING, is_hidden_name, partition_folder
from ecomm_assets.core.schemas import conform
from ecomm_assets.core.usage import (
    Request,
    Usage,
    count_requests,
    current,
    list_requests,
)

PARQUET_COMPRESSION = "zstd"
PARQUET_COMPRESSION_LEVEL = 1  # as DuckDB's staged files: compact enough, fast to write
CONFORM_BATCH_ROWS = 128 * 1024  # rows per batch when a staged file is rewritten to its contract
# No write of ours takes this long: an older multipart upload, or an older temporary of another
# host (or of this one where a process's start time cannot be read), is a dead writer's.
LEFTOVER_MAX_AGE = timedelta(hours=6)
MULTIPART_THRESHOLD = 64 << 20  # an object larger than this is uploaded in parts of this size
UPLOAD_CONFIG = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_THRESHOLD,
                               use_threads=False)
COPY_CHUNK = 8 << 20  # bytes copied at a time from a stream to a file
READ_CONCURRENCY = 8  # files of a range read at once (S3 GETs wait on the network; pyarrow decodes without the GIL)
WRITE_CONCURRENCY = 8  # folders of a range written at once on S3
PARQUET_TAIL = 8  # the footer's length and the magic bytes after it
FOOTER_READ = 64 << 10  # the last bytes of a Parquet file read for its footer: one ranged GET holds a lake file's

PartitionFile = bytes | pa.Table | Path  # a file's contents, a table written as Parquet, or a staged local file
_UPLOADS_SWEPT: set[tuple[str | None, str]] = set()  # (endpoint, lake) whose stale uploads this process aborted


def owner() -> str:
    """`host~pid`, the prefix of this process's temporary names (computed per call: a forked
    process has another pid)."""
    return f"{_host()}~{os.getpid()}"


def _host() -> str:
    return socket.gethostname().replace("~", "-")


# Temporary files of the machine's own: an S3 lake's staging, DuckDB's spill (core/duck.query).
MACHINE_STAGING = os.path.join(tempfile.gettempdir(), "ecomm-staging")


def sweep_folder(folder: str) -> list[str]:
    """Remove the temporary files and folders in `folder` that belong to no running writer
    (is_leftover); what was removed."""
    removed, now = [], time.time()
    with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):  # another sweeper got there first
                if is_leftover(entry.name, entry.stat(follow_symlinks=False).st_mtime, now):
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path)
                    else:
                        os.unlink(entry.path)
                    removed.append(entry.path)
    return removed


def is_leftover(name: str, modified: float, now: float) -> bool:
    """Whether a temporary file or folder named `host~pid~...` belongs to no running writer. One of
    this host whose process runs and started before the temporary was last modified is its
    writer's, however long the writer has run (a year's backfill in one run takes hours); one whose
    process id is now another process's, started since, is a leftover."""
    host, _, rest = name.partition("~")
    pid = rest.partition("~")[0]
    if host == _host() and pid.isdigit():
        if not _process_alive(int(pid)):
            return True
        started = _process_start(int(pid))
        if started is not None:
            return started > modified + _START_TIME_RESOLUTION
    return now - modified > LEFTOVER_MAX_AGE.total_seconds()


# A process's start time is known to the second (the boot time's resolution).
_START_TIME_RESOLUTION = 1.0


def _process_start(pid: int) -> float | None:
    """When a running process started (seconds since the epoch), from Linux's /proc; None elsewhere
    or when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()  # after the command's name, which may hold spaces
        with open("/proc/stat") as system:
            boot = next(float(line.split()[1]) for line in system if line.startswith("btime "))
    except (OSError, StopIteration):
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # starttime, the stat file's 22nd field


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


@dataclass(frozen=True)
class FileVersion:
    """Which version of a file was read, so that acting on it later (moving it) acts on that version
    only. Locally: its inode (device, number), size, and mtime and ctime in nanoseconds; on S3: its
    ETag, user metadata and content type."""

    size: int
    inode: tuple[int, int] | None = None
    mtime_ns: int | None = None
    ctime_ns: int | None = None
    etag: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)
    content_type: str | None = None


def content_digest(source: BinaryIO) -> str:
    """What identifies a file's content (SHA-256, read a chunk at a time): a build's counts name
    the inputs it read by it, so that its checks tell an input rewritten since from the one read."""
    return hashlib.file_digest(source, "sha256").hexdigest()


def input_read(source: BinaryIO, count_records: Callable[[BinaryIO], int]) -> dict:
    """An input as a build's counts name it: its content digest and its records as the checks count
    them (`count_records`, not the build's own count). A check recounts an input whose content is
    still this one, and takes this count for one rewritten or removed since (the next build's)."""
    digest = content_digest(source)
    source.seek(0)
    return {"sha256": digest, "records": count_records(source)}


def records_as_read(source: BinaryIO | None, read: dict, count_records: Callable[[BinaryIO], int]) -> tuple[int, bool]:
    """An input's records as the build read it (`read`: input_read's record; `source`: the input now,
    open and seekable, None when gone): recounted when its content is the one read, else the count
    taken then; and whether it was. Read a chunk at a time, twice at most, as input_read reads it. A
    record without a digest (an earlier release's counts) takes the input as read."""
    if source is not None and ("sha256" not in read or read["sha256"] == content_digest(source)):
        source.seek(0)
        return count_records(source), True
    return read.get("records", 0), False


@dataclass(frozen=True)
class LakeFile:
    """A file in the lake: its path relative to the lake root, size and modification time (and,
    from read_confined, the version read)."""

    path: str
    size: int
    mtime: datetime | None
    version: FileVersion | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


class NotARegularFile(Exception):
    """A local path that is a symlink, passes through one, or is not a regular file."""


class Moved(enum.Enum):
    """What `LakeStore.move_confined` did with the version it was given."""

    MOVED = "moved"  # that version is at the new place, and no longer at the old one
    CHANGED = "changed"  # another version is at the old place now: left there (nothing lost)
    GONE = "gone"  # nothing is at the old place any more
    # Locally: a version written after the check was moved, and could not be put back because yet
    # another version took the old place meanwhile: it stays, unread, at the new place.
    STRANDED = "stranded"


def _identity(status: os.stat_result) -> tuple:
    return ((status.st_dev, status.st_ino), status.st_size, status.st_mtime_ns)


def _version_identity(version: FileVersion) -> tuple:
    return (version.inode, version.size, version.mtime_ns)


def _error_code(error: ClientError) -> tuple[str, int]:
    return str(error.response.get("Error", {}).get("Code", "")), error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)


def _not_found(error: ClientError) -> bool:
    code, status = _error_code(error)
    return status == 404 or code in ("NoSuchKey", "404", "NotFound")


class LakeStore:
    """Reads and writes lake files by relative path on one pyarrow filesystem, recording what it
    does in `usage` (core/usage.py; by default the Usage being recorded when it is made): each
    file written or read with its size, and one request per object-store operation, as S3 would
    bill it (a local write is a PUT, a rename a COPY and a DELETE, a folder listing a LIST)."""

    def __init__(
        self, filesystem: pafs.FileSystem, root: str, uri: str,
        s3_endpoint_url: str | None = None, s3_region: str | None = None, usage: Usage | None = None,
    ):
        self.filesystem = filesystem
        self.root = root.rstrip("/")
        self.uri = uri.rstrip("/")
        self.s3_endpoint_url = s3_endpoint_url
        self.s3_region = s3_region
        self._swept = False
        self._s3 = None
        self._s3_lock = threading.Lock()  # concurrent reads: one client (boto3 makes clients unsafely in threads)
        self.usage = usage or current()

    @classmethod
    def from_uri(cls, uri: str, s3_endpoint_url: str | None = None, s3_region: str | None = None,
                 usage: Usage | None = None) -> LakeStore:
        if uri.startswith("s3://"):
            bucket_and_prefix = uri[len("s3://") :].rstrip("/")
            filesystem = pafs.S3FileSystem(endpoint_override=s3_endpoint_url or None, region=s3_region or None)
            return cls(filesystem, bucket_and_prefix, uri, s3_endpoint_url or None, s3_region or None, usage)
        root = os.path.abspath(uri)
        return cls(pafs.LocalFileSystem(), root, root, usage=usage)

    @property
    def is_local(self) -> bool:
        return isinstance(self.filesystem, pafs.LocalFileSystem)

    def full_path(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def full_uri(self, rel: str) -> str:
        return f"{self.uri}/{rel}" if rel else self.uri

    # --- S3 -----------------------------------------------------------------------------------

    @property
    def bucket(self) -> str:
        return self.root.partition("/")[0]

    def key(self, rel: str) -> str:
        """The S3 object key of a lake path."""
        prefix = self.root.partition("/")[2]
        return f"{prefix}/{rel}" if prefix else rel

    def s3_client(self):
        """A boto3 S3 client for what pyarrow's filesystem cannot do (conditional writes, multipart
        uploads), on the same endpoint and region; its calls are recorded in the store's usage."""
        return count_requests(boto3.client("s3", endpoint_url=self.s3_endpoint_url, region_name=self.s3_region), self.usage)

    def _client(self):
        """One S3 client per store, made on first use (boto3 clients are thread-safe)."""
        with self._s3_lock:
            if self._s3 is None:
                self._s3 = self.s3_client()
        return self._s3

    # --- writes -------------------------------------------------------------------------------

    def write_bytes(self, rel: str, data: bytes) -> int:
        if not self.is_local:
            self._upload(rel, io.BytesIO(data), len(data))
            return len(data)
        target = self.full_path(rel)
        self.filesystem.create_dir(target.rsplit("/", 1)[0], recursive=True)
        self.usage.wrote(rel, len(data))
        temporary = os.path.join(self._staging_root(), f"{owner()}~{uuid.uuid4().hex}.tmp")
        try:
            with open(temporary, "wb") as out:
                out.write(data)
            os.replace(temporary, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        return len(data)

    def write_parts(self, rel: str, parts: Iterable[bytes], before_replace: Callable[[], None] = lambda: None) -> int:
        """A file written from its parts as they come (larger than memory may be), appearing whole:
        one part is written as write_bytes writes it, more are staged locally, then put_file.
        `before_replace` runs once every part is made, before the file takes its place (a writer's
        check that it still holds the day, say)."""
        parts = iter(parts)
        first, second = next(parts, b""), next(parts, None)
        if second is None:
            before_replace()
            return self.write_bytes(rel, first)
        with self.staging_dir() as staging:
            local = Path(staging) / "parts"
            with open(local, "wb") as out:
                out.write(first)
                out.write(second)
                first = second = None  # not held while the next parts are made
                out.writelines(parts)
            before_replace()
            return self.put_file(rel, local)

    def put_file(self, rel: str, local: Path) -> int:
        """Move a finished local file (from `staging_dir`) into the lake, atomically."""
        size = local.stat().st_size
        if not self.is_local:
            with open(local, "rb") as source:
                self._upload(rel, source, size)
            return size
        target = self.full_path(rel)
        self.filesystem.create_dir(target.rsplit("/", 1)[0], recursive=True)
        self.usage.wrote(rel, size)
        os.replace(local, target)  # staging is inside the lake root: same filesystem
        return size

    def _upload(self, rel: str, source, size: int) -> None:
        """One object written from a stream (S3 shows it only once complete): a single PutObject up
        to MULTIPART_THRESHOLD, a multipart upload above. Through boto3, not pyarrow's output
        stream, which makes every object a multipart upload (3 requests) and PUTs a marker object
        for each folder above it: 7 billed requests for a small file where S3 needs 1."""
        self._sweep_once()
        self._client().upload_fileobj(source, self.bucket, self.key(rel), Config=UPLOAD_CONFIG)
        self.usage.wrote(rel, size, request=None)  # the client's hook counted the requests

    @contextlib.contextmanager
    def staging_dir(self) -> Iterator[str]:
        """A private local folder for files being produced; removed afterwards. For a local lake it
        is inside the root's hidden `.staging/`, so that `put_file` is a rename."""
        with tempfile.TemporaryDirectory(prefix=f"{owner()}~", dir=self._staging_root()) as folder:
            yield folder

    def _staging_root(self) -> str:
        """The folder of temporary files (swept on first use): in the lake root for a local lake,
        in the system's temporary folder for S3."""
        os.makedirs(self._staging_path, exist_ok=True)
        self._sweep_once()
        return self._staging_path

    @property
    def _staging_path(self) -> str:
        return self.full_path(STAGING) if self.is_local else MACHINE_STAGING

    def _sweep_once(self) -> None:
        if not self._swept:
            self._swept = True
            lake = (self.s3_endpoint_url, self.uri)
            self.sweep_leftovers(uploads=lake not in _UPLOADS_SWEPT)
            _UPLOADS_SWEPT.add(lake)

    def sweep_leftovers(self, uploads: bool = True) -> list[str]:
        """Remove what killed writers left behind: temporary files and folders of dead processes
        of this host or older than LEFTOVER_MAX_AGE, and on S3 (with `uploads`) incomplete
        multipart uploads older than that. Returns what was removed."""
        removed = sweep_folder(self._staging_path)
        if uploads and not self.is_local:
            removed += self._abort_stale_uploads(datetime.now(UTC) - LEFTOVER_MAX_AGE)
        return removed

    def _abort_stale_uploads(self, started_before: datetime) -> list[str]:
        s3 = self.s3_client()
        aborted = []
        pages = s3.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=self.key(""))
        for upload in (u for page in pages for u in page.get("Uploads", [])):
            if upload["Initiated"] < started_before:
                s3.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                aborted.append(f"s3://{self.bucket}/{upload['Key']}")
        return aborted

    def write_parquet(self, rel: str, table: pa.Table) -> int:
        return self.write_bytes(rel, parquet_bytes(table))

    def replace_partition(self, rel_dir: str, files: Mapping[str, PartitionFile]) -> int:
        """Make `rel_dir` hold exactly `files` (see replace_partitions)."""
        return self.replace_partitions([(rel_dir, files)])

    def replace_partitions(self, partitions: Iterable[tuple[str, Mapping[str, PartitionFile]]]) -> int:
        """Make each folder of `partitions` ((folder, files) pairs, taken one at a time so that a
        caller can produce each day's content as it goes) hold exactly its `files` (contents, tables
        or staged local files): each written atomically, then the stale files removed (and `.tmp`
        files that writers before `.staging/` existed left in partition folders), found in one
        listing of all the folders rather than one per folder. A failure part-way still leaves each
        folder written before it exactly replaced. Returns the bytes written. On S3, WRITE_CONCURRENCY
        folders are written at once (each PUT waits on the network), their contents produced one at
        a time as before."""
        written, kept = 0, {}
        in_flight: dict[Future, tuple[str, set[str]]] = {}

        def settle(futures: Iterable[Future]) -> None:
            nonlocal written
            for future in futures:
                rel_dir, names = in_flight.pop(future)
                written += future.result()  # a write's error is raised here
                kept[rel_dir] = names

        pool = None if self.is_local else ThreadPoolExecutor(WRITE_CONCURRENCY)
        try:
            for rel_dir, files in partitions:
                if pool is None:
                    written += self._write_folder(rel_dir, files)
                    kept[rel_dir] = set(files)
                    continue
                self._sweep_once()  # before the writers start: it runs once
                if len(in_flight) >= WRITE_CONCURRENCY:
                    settle(wait(in_flight, return_when=FIRST_COMPLETED).done)
                in_flight[pool.submit(self._write_folder, rel_dir, files)] = (rel_dir, set(files))
            settle(list(in_flight))
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
                # After a failure: the folders whose writes completed were replaced, and are cleaned.
                settle([future for future in list(in_flight) if future.exception() is None])
            for rel_dir, info in self._files_in(list(kept)) if kept else ():
                if (info.base_name not in kept[rel_dir] and not is_hidden_name(info.base_name)) or info.base_name.endswith(".tmp"):
                    self.delete(f"{rel_dir}/{info.base_name}")
        return written

    def _write_folder(self, rel_dir: str, files: Mapping[str, PartitionFile]) -> int:
        return sum(self._write_content(f"{rel_dir}/{name}", content) for name, content in files.items())

    def _write_content(self, rel: str, content: PartitionFile) -> int:
        if isinstance(content, pa.Table):
            return self.write_parquet(rel, content)
        if isinstance(content, Path):
            return self.put_file(rel, content)
        return self.write_bytes(rel, content)

    def delete(self, rel: str) -> None:
        """Remove a file if it is there: one DeleteObject on S3 (pyarrow's delete_file adds a
        HeadObject before it and PUTs a folder marker after it)."""
        if not self.is_local:
            self._client().delete_object(Bucket=self.bucket, Key=self.key(rel))
            return
        self.usage.request(Request.DELETE)
        with contextlib.suppress(FileNotFoundError):
            self.filesystem.delete_file(self.full_path(rel))

    # --- reads --------------------------------------------------------------------------------

    def read_bytes(self, rel: str) -> bytes:
        """The file's bytes as stored (pyarrow would decompress a `.gz` name by itself); on S3 one
        GetObject (pyarrow's input stream adds a HeadObject)."""
        if not self.is_local:
            return self._get_object(rel)[1]
        try:
            with self.filesystem.open_input_stream(self.full_path(rel), compression=None) as stream:
                data = stream.read()
        except FileNotFoundError:
            self.usage.request(Request.GET)  # S3 answers the GET with a 404
            raise
        self.usage.read(rel, len(data))
        return data

    def read_tail(self, rel: str, size: int) -> bytes:
        """The file's last `size` bytes (all of a smaller file): one ranged GetObject on S3. A
        missing file raises FileNotFoundError."""
        if not self.is_local:
            return self._get_object(rel, Range=f"bytes=-{size}")[1]
        try:
            with open(self.full_path(rel), "rb") as file:
                file.seek(max(0, os.fstat(file.fileno()).st_size - size))
                data = file.read()
        except FileNotFoundError:
            self.usage.request(Request.GET)
            raise
        self.usage.read(rel, len(data))
        return data

    def read_confined(self, folder: str, name: str) -> tuple[BinaryIO, LakeFile]:
        """A file below `folder`, open for reading (the caller closes it; seekable, read a chunk at
        a time, never whole), with its size, mtime and the version read (see FileVersion). Locally
        each part of `name` is opened without following symlinks (the file through the descriptor it
        was checked on), so nothing outside `folder`'s real path is ever read: a symlink anywhere
        below `folder`, or anything but a regular file, raises NotARegularFile before a byte is read.
        On S3 a key is only a key: one GetObject gives the bytes (copied as they come to a local
        temporary file), size, LastModified and ETag of the same object version. A missing file
        raises FileNotFoundError."""
        rel = f"{folder}/{name}"
        if not self.is_local:
            response = self._open_object(rel)
            local = tempfile.TemporaryFile(dir=self._staging_root())  # noqa: SIM115 - the caller closes it
            try:
                with contextlib.closing(response["Body"]) as body:
                    shutil.copyfileobj(body, local, COPY_CHUNK)
            except BaseException:
                local.close()
                raise
            local.seek(0)
            self.usage.read(rel, response["ContentLength"], request=None)  # the client's hook counted the GET
            version = FileVersion(
                size=response["ContentLength"], etag=response["ETag"],
                metadata=dict(response.get("Metadata") or {}), content_type=response.get("ContentType"),
            )
            return local, LakeFile(rel, response["ContentLength"], response["LastModified"].astimezone(UTC), version)
        *folders, leaf = name.split("/")
        try:
            descriptor = self._open_below(self.full_path(folder), folders, rel)
            try:
                # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
                below = os.open(leaf, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=descriptor)
            except OSError as error:
                if error.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise NotARegularFile(f"{rel}: a symbolic link, or a path through one (or through a file)") from None
                raise
            finally:
                os.close(descriptor)
        except FileNotFoundError:
            self.usage.request(Request.GET)  # S3 answers the GET with a 404
            raise
        file = os.fdopen(below, "rb")
        status = os.fstat(file.fileno())
        if not stat.S_ISREG(status.st_mode):
            file.close()
            raise NotARegularFile(f"{rel}: not a regular file")
        self.usage.read(rel, status.st_size)
        version = FileVersion(
            size=status.st_size, inode=(status.st_dev, status.st_ino), mtime_ns=status.st_mtime_ns, ctime_ns=status.st_ctime_ns,
        )
        return file, LakeFile(rel, status.st_size, datetime.fromtimestamp(status.st_mtime, UTC), version)

    def _open_object(self, rel: str, **arguments) -> dict:
        """One GetObject of a lake file: its response, the body still to read. A missing file
        raises FileNotFoundError."""
        try:
            return self._client().get_object(Bucket=self.bucket, Key=self.key(rel), **arguments)
        except ClientError as error:
            if _not_found(error):
                raise FileNotFoundError(f"no file {rel}") from None
            raise

    def _get_object(self, rel: str, **arguments) -> tuple[dict, bytes]:
        """One GetObject of a lake file, its response and bytes (recorded as read; the client's hook
        counted the GET). A missing file raises FileNotFoundError."""
        response = self._open_object(rel, **arguments)
        with contextlib.closing(response["Body"]) as body:
            data = body.read()
        self.usage.read(rel, len(data), request=None)
        return response, data

    @staticmethod
    def _open_below(path: str, parts: Sequence[str], rel: str, create: bool = False) -> int:
        """A descriptor of the folder `path` (followed, as the lake root is) / `parts` (each opened
        without following a symlink; made first when `create`). NotARegularFile: a part is a symlink
        or a file."""
        if create:
            os.makedirs(path, exist_ok=True)
        descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for part in parts:
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, dir_fd=descriptor)
                below = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=descriptor)
                os.close(descriptor)
                descriptor = below
        except OSError as error:
            os.close(descriptor)
            if error.errno in (errno.ELOOP, errno.ENOTDIR):
                raise NotARegularFile(f"{rel}: a symbolic link, or a path through one (or through a file)") from None
            raise
        return descriptor

    def move_confined(self, folder: str, name: str, to_folder: str, version: FileVersion,
                      metadata: Mapping[str, str] | None = None) -> Moved:
        """Move the version of `folder/name` that read_confined read (`version`) to `to_folder/name`
        (replacing what is there), never another version a writer put at `folder/name` meanwhile.

        Locally (both folders on one filesystem): the name's inode, size, mtime and ctime are checked
        against `version` (CHANGED if they differ: a write since the read, even one that restored
        the mtime, changes the ctime), then it is renamed (which keeps its mtime) and checked again,
        by inode, size and mtime. If a writer replaced it between the two (so the rename took the
        new version), the new version is put back with a hard link (which never replaces a file) and
        CHANGED is returned; if yet another version took the name meanwhile, the link fails and the
        moved version stays, unread, at `to_folder/name` (STRANDED). Folders below `folder` and
        below the first part of `to_folder` are opened without following symlinks (NotARegularFile).
        What remains: a write into the same inode (not a new file renamed into place) that keeps
        its size and mtime between the first check and the rename, or that continues after it.

        On S3: a copy conditional on the ETag read (CopySourceIfMatch; the copy's user metadata is
        the original's plus `metadata`), then a delete conditional on it (DeleteObject IfMatch).
        Either failing its condition means a writer put a new version at the name: CHANGED, and the
        new version stays (after a failed delete the copy holds the version read)."""
        if not self.is_local:
            return self._move_s3(folder, name, to_folder, version, metadata or {})
        *folders, leaf = name.split("/")
        rel = f"{folder}/{name}"
        try:
            source = self._open_below(self.full_path(folder), folders, rel)
        except FileNotFoundError:
            return Moved.GONE
        try:
            top, _, below = to_folder.partition("/")
            target = self._open_below(self.full_path(top), [*below.split("/"), *folders] if below else folders,
                                      f"{to_folder}/{name}", create=True)
            try:
                moved = self._rename_checked(source, target, leaf, version)
            finally:
                os.close(target)
            if moved is Moved.MOVED:  # what S3 does for it: a copy and a delete
                self.usage.wrote(f"{to_folder}/{name}", version.size, Request.COPY)
                self.usage.request(Request.DELETE)
            return moved
        finally:
            os.close(source)

    @staticmethod
    def _rename_checked(source: int, target: int, leaf: str, version: FileVersion) -> Moved:
        try:
            before = os.stat(leaf, dir_fd=source, follow_symlinks=False)
        except FileNotFoundError:
            return Moved.GONE
        if _identity(before) != _version_identity(version) or before.st_ctime_ns != version.ctime_ns:
            return Moved.CHANGED
        try:
            os.rename(leaf, leaf, src_dir_fd=source, dst_dir_fd=target)
        except FileNotFoundError:
            return Moved.GONE
        # The rename sets the ctime: from here the inode, size and mtime tell the version.
        if _identity(os.stat(leaf, dir_fd=target, follow_symlinks=False)) == _version_identity(version):
            return Moved.MOVED
        try:
            os.link(leaf, leaf, src_dir_fd=target, dst_dir_fd=source, follow_symlinks=False)
        except FileExistsError:
            return Moved.STRANDED
        os.unlink(leaf, dir_fd=target)
        return Moved.CHANGED

    def _move_s3(self, folder: str, name: str, to_folder: str, version: FileVersion, metadata: Mapping[str, str]) -> Moved:
        s3, source = self._client(), self.key(f"{folder}/{name}")
        extra = {"ContentType": version.content_type} if version.content_type else {}
        try:
            s3.copy_object(
                Bucket=self.bucket, Key=self.key(f"{to_folder}/{name}"), CopySource={"Bucket": self.bucket, "Key": source},
                CopySourceIfMatch=version.etag, MetadataDirective="REPLACE", Metadata={**version.metadata, **metadata}, **extra,
            )
            self.usage.wrote(f"{to_folder}/{name}", version.size, request=None)  # the client's hook counted the COPY
            s3.delete_object(Bucket=self.bucket, Key=source, IfMatch=version.etag)
        except ClientError as error:
            code, status = _error_code(error)
            if code == "PreconditionFailed" or status == 412:
                return Moved.CHANGED
            if code in ("NoSuchKey", "404") or status == 404:
                return Moved.GONE
            raise
        return Moved.MOVED

    def exists(self, rel: str) -> bool:
        """Whether a file is there: one HeadObject on S3 (pyarrow adds a LIST when there is none).
        For several files, `existing` answers in one listing."""
        if not self.is_local:
            try:
                self._client().head_object(Bucket=self.bucket, Key=self.key(rel))
            except ClientError as error:
                if _not_found(error):
                    return False
                raise
            return True
        self.usage.request(Request.HEAD)
        return self.filesystem.get_file_info(self.full_path(rel)).type == pafs.FileType.File

    def existing(self, rels: Sequence[str]) -> set[str]:
        """Which of `rels` are files: one HEAD for a single file, else one listing of their folders
        (a LIST per 1,000 keys of their common folder) rather than a HEAD per file."""
        if len(rels) <= 1:
            return {rel for rel in rels if self.exists(rel)}
        wanted = set(rels)
        folders = sorted({rel.rpartition("/")[0] for rel in wanted})
        return {rel for folder, info in self._files_in(folders) if (rel := f"{folder}/{info.base_name}") in wanted}

    def _files_in(self, rel_dirs: Sequence[str]) -> Iterator[tuple[str, pafs.FileInfo]]:
        """The files directly in each of `rel_dirs`, as (folder, info): one listing of the folder,
        or of the folders' common parent (recursive: S3 answers it with one flat LIST per 1,000
        keys) rather than one per folder (locally, where a listing costs its entries, not a
        request: just the folders, recorded as that listing); one listing per folder when they
        share no parent."""
        common = os.path.commonpath(rel_dirs) if len(rel_dirs) > 1 else None
        if common == "":
            for rel_dir in rel_dirs:
                yield from self._files_in([rel_dir])
            return
        if common is not None and self.is_local:
            yield from self._list_local_folders(rel_dirs, recursive=False)
            return
        full = {self.full_path(rel_dir): rel_dir for rel_dir in rel_dirs}
        base = self.full_path(common) if common is not None else next(iter(full))
        for info in self.listing(pafs.FileSelector(base, allow_not_found=True, recursive=common is not None)):
            folder = full.get(info.path.rpartition("/")[0])
            if info.type == pafs.FileType.File and folder is not None:
                yield folder, info

    def list_files(self, rel_dir: str, recursive: bool = False) -> list[LakeFile]:
        """Visible files below `rel_dir`, sorted by path; hidden ('.', '_') names are skipped."""
        selector = pafs.FileSelector(self.full_path(rel_dir), allow_not_found=True, recursive=recursive)
        prefix_len = len(self.root) + 1
        files = [
            LakeFile(info.path[prefix_len:], info.size, info.mtime)
            for info in self.listing(selector)
            if info.type == pafs.FileType.File and not is_hidden_name(info.path[len(selector.base_dir) + 1 :])
        ]
        return sorted(files, key=lambda f: f.path)

    def list_partitions(self, rel_dir: str, days: Iterable[date]) -> list[LakeFile]:
        """Visible files in the day partitions (`dt=` folders) of `days` below `rel_dir`, at any
        depth, sorted by path. On S3 one listing of all of `rel_dir` (a LIST per 1,000 keys, fewer
        requests than a LIST per day). Locally only the days' folders are listed (a range's batch
        costs its own days, not the whole table's), recorded as S3's listing would be: a LIST per
        1,000 keys found."""
        folders = {partition_folder(day) for day in days}
        if not self.is_local:
            return [f for f in self.list_files(rel_dir, recursive=True)
                    if f.path[len(rel_dir) + 1 :].partition("/")[0] in folders]
        base, prefix_len = self.full_path(rel_dir), len(self.root) + 1
        files = [LakeFile(info.path[prefix_len:], info.size, info.mtime)
                 for _, info in self._list_local_folders([f"{rel_dir}/{folder}" for folder in folders], recursive=True)
                 if not is_hidden_name(info.path[len(base) + 1 :])]
        return sorted(files, key=lambda f: f.path)

    def _list_local_folders(self, rel_dirs: Iterable[str], recursive: bool) -> list[tuple[str, pafs.FileInfo]]:
        """The files in each of `rel_dirs` (below it, when `recursive`), as (folder, info), on a local
        lake: only those folders are listed, recorded as S3's one listing of their common folder
        would be: a LIST per 1,000 keys found (there, the folder's other keys are listed too)."""
        found = [(rel_dir, info) for rel_dir in rel_dirs
                 for info in self.filesystem.get_file_info(
                     pafs.FileSelector(self.full_path(rel_dir), allow_not_found=True, recursive=recursive))
                 if info.type == pafs.FileType.File]
        self.usage.request(Request.LIST, list_requests(len(found)))
        return found

    def listing(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        """The filesystem's listing, recorded as S3 serves it: one LIST per 1,000 keys listed
        (pyarrow pages ListObjectsV2 so; a non-recursive listing's folders count as keys, a
        recursive one is a flat listing of the objects, whose folders pyarrow infers)."""
        infos = self.filesystem.get_file_info(selector)
        keys = sum(info.type == pafs.FileType.File for info in infos) if selector.recursive else len(infos)
        self.usage.request(Request.LIST, list_requests(keys))
        return infos

    def read_parquet(self, rels: Sequence[str], columns: Sequence[str] | None = None) -> pa.Table:
        """The files' rows in their order, of `columns` only when given (the others are not decoded)."""
        rows, missing = self.read_parquet_present(rels, columns)
        if missing:
            raise FileNotFoundError(self.full_uri(missing[0]))
        return rows

    def read_parquet_present(self, rels: Sequence[str], columns: Sequence[str] | None = None) -> tuple[pa.Table, list[str]]:
        """The rows of those of `rels` that are there (in their order), and the rels that are not: a
        GET of each (for files expected to be there; where many may be missing, `existing` lists
        them once). READ_CONCURRENCY files at a time: on S3 a range's reads wait on the network."""
        if len(rels) > 1:
            with ThreadPoolExecutor(min(READ_CONCURRENCY, len(rels))) as pool:
                read = list(pool.map(functools.partial(self._read_parquet_file, columns=columns), rels))
        else:
            read = [self._read_parquet_file(rel, columns) for rel in rels]
        tables = [table for table in read if table is not None]
        missing = [rel for rel, table in zip(rels, read) if table is None]
        return (pa.concat_tables(tables) if tables else pa.table({})), missing

    def _read_parquet_file(self, rel: str, columns: Sequence[str] | None) -> pa.Table | None:
        """The file's rows, None when it is not there. The whole file in one GET, not a HEAD and
        ranged GETs (a lake file is small); a ParquetFile reads one known file at half the cost of
        pq.read_table (no dataset discovery)."""
        try:
            data = self.read_bytes(rel)
        except FileNotFoundError:
            return None
        return pq.ParquetFile(pa.BufferReader(data)).read(columns=columns)

    @contextlib.contextmanager
    def local_paths(self, rels: Sequence[str]) -> Iterator[list[str]]:
        """Local file paths for lake files, for engines (DuckDB) that read only local files here."""
        if self.is_local:
            paths = [self.full_path(rel) for rel in rels]
            for rel, path in zip(rels, paths):
                self.usage.read(rel, os.path.getsize(path))  # the engine reads each whole
            yield paths
            return
        with self.staging_dir() as folder:
            paths = []
            for index, rel in enumerate(rels):
                local = os.path.join(folder, f"{index:05d}-{rel.rsplit('/', 1)[-1]}")
                # Streamed to disk in chunks: a day's raw file may be larger than the task's memory.
                with contextlib.closing(self._open_object(rel)["Body"]) as body, open(local, "wb") as out:
                    shutil.copyfileobj(body, out, COPY_CHUNK)
                self.usage.read(rel, os.path.getsize(local), request=None)  # the client's hook counted the GET
                paths.append(local)
            yield paths


def parquet_bytes(table: pa.Table) -> bytes:
    """A table as a Parquet file's bytes, with the lake's compression: encoded in memory and written
    with one call, where pyarrow writing to a file makes a system call per page."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression=PARQUET_COMPRESSION, compression_level=PARQUET_COMPRESSION_LEVEL)
    return buffer.getvalue()


def conform_parquet_file(staged: Path, contract: pa.Schema, where: str) -> tuple[Path, pq.ParquetFile]:
    """A staged Parquet file (DuckDB's, all columns nullable) rewritten beside it with exactly the
    contract's schema, batch by batch so memory stays bounded however large the file; the
    checks and errors of `schemas.conform`. A file written with exactly the contract's schema
    (core/duck.DayFiles conforms as it writes) is taken as it is. The file, and it open (its footer read once)."""
    source = pq.ParquetFile(staged)
    if source.schema_arrow.equals(contract, check_metadata=True):
        return staged, source
    conformed = staged.with_name(f"{staged.stem}.contract.parquet")
    with pq.ParquetWriter(conformed, contract, compression=PARQUET_COMPRESSION,
                          compression_level=PARQUET_COMPRESSION_LEVEL) as writer:
        for batch in source.iter_batches(batch_size=CONFORM_BATCH_ROWS):
            writer.write_batch(conform(batch, contract, where))
    return conformed, pq.ParquetFile(conformed)


def quarantine_lines(table: pa.Table) -> bytes:
    """A table's rows as JSON Lines (a quarantine file): an object per row, keys in the columns'
    order, each value as Python's json writes it (a date or a timestamp as its text)."""
    return "".join(json.dumps(row, default=str) + "\n" for row in table.to_pylist()).encode()


@contextlib.contextmanager
def opened(store: LakeStore, rel: str) -> Iterator[BinaryIO | None]:
    """A lake file open for reading a chunk at a time (read_confined), None without the file (also
    one removed since it was listed). One GET either way."""
    try:
        source, _ = store.read_confined(*rel.rsplit("/", 1))
    except FileNotFoundError:
        yield None
        return
    with source:
        yield source


def records_in(store: LakeStore, rel: str, count_records: Callable[[BinaryIO], int]) -> int:
    """The records of a lake file by `count_records`, read a chunk at a time (a day's file may be
    larger than memory); 0 without the file."""
    with opened(store, rel) as source:
        return 0 if source is None else count_records(source)


def parquet_footer(store: LakeStore, rel: str) -> pq.ParquetFile:
    """A Parquet file's footer (schema, row count), without reading the data: one ranged GET of its
    last FOOTER_READ bytes (a second one only for a larger footer; pyarrow's file would add a HEAD
    first). A missing file raises FileNotFoundError."""
    tail = store.read_tail(rel, FOOTER_READ)
    footer = struct.unpack("<I", tail[-PARQUET_TAIL:-4])[0] + PARQUET_TAIL
    if footer > len(tail) == FOOTER_READ:
        tail = store.read_tail(rel, footer)
    return pq.ParquetFile(pa.BufferReader(tail))
