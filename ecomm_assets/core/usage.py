"""What a step did to the lake and the catalog, counted where it happens: objects and bytes written
and read per area (core/layout.py's AREAS), object-store requests by kind, and Glue API calls.

LakeStore records every file it writes, reads, lists, copies or deletes (locally as an object
store would see it: a rename into place is one PUT); boto3 clients get a botocore hook
(`count_requests`) that records each API call. A step records into the Usage that `recording()`
made current when its stores and clients were made, so a lock's renewal thread counts too.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum

from ecomm_assets.core.layout import AREAS, OTHER_AREA, area_of

PREFIX = "usage"  # metadata keys: usage/<area>/<figure>, usage/s3/<request>, usage/glue/<operation>
DAYS = f"{PREFIX}/days"  # how many days the figures are the total of (0: an unpartitioned step)


class Request(StrEnum):
    """S3's request classes, as S3 bills them: PUT, COPY, POST and LIST at one price, GET and HEAD
    (and other reads) at another, DELETE free."""

    PUT = "put"
    COPY = "copy"
    LIST = "list"
    GET = "get"
    HEAD = "head"
    DELETE = "delete"


class AreaFigure(StrEnum):
    OBJECTS_WRITTEN = "objects_written"
    BYTES_WRITTEN = "bytes_written"
    OBJECTS_READ = "objects_read"
    BYTES_READ = "bytes_read"


# boto3 operations the project calls on S3 (core/storage.py, core/locks.py), by request class.
S3_OPERATIONS = {
    "PutObject": Request.PUT, "CreateMultipartUpload": Request.PUT, "UploadPart": Request.PUT,
    "CompleteMultipartUpload": Request.PUT, "CopyObject": Request.COPY,
    "ListObjectsV2": Request.LIST, "ListObjects": Request.LIST, "ListMultipartUploads": Request.LIST,
    "GetObject": Request.GET, "HeadObject": Request.HEAD, "DeleteObject": Request.DELETE,
    "AbortMultipartUpload": Request.DELETE, "DeleteObjects": Request.DELETE,
}


LIST_PAGE = 1000  # keys per S3 ListObjectsV2 response


def list_requests(keys: int) -> int:
    """The LIST requests S3 serves a listing of `keys` keys with (one for none)."""
    return max(1, -(-keys // LIST_PAGE))


class Usage:
    """Counters of one step (thread-safe: a lease renewal thread records too)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.areas: dict[str, Counter] = {}
        self.requests: Counter = Counter()
        self.glue: Counter = Counter()

    def wrote(self, rel: str, size: int, request: Request | None = Request.PUT) -> None:
        self._add(rel, AreaFigure.OBJECTS_WRITTEN, AreaFigure.BYTES_WRITTEN, size, request)

    def read(self, rel: str, size: int, request: Request | None = Request.GET) -> None:
        self._add(rel, AreaFigure.OBJECTS_READ, AreaFigure.BYTES_READ, size, request)

    def _add(self, rel: str, objects: AreaFigure, size_figure: AreaFigure, size: int, request: Request | None) -> None:
        with self._lock:
            area = self.areas.setdefault(area_of(rel), Counter())
            area[objects] += 1
            area[size_figure] += size
            if request is not None:
                self.requests[request] += 1

    def request(self, kind: Request, count: int = 1) -> None:
        with self._lock:
            self.requests[kind] += count

    def glue_call(self, operation: str) -> None:
        with self._lock:
            self.glue[operation] += 1

    def as_metadata(self) -> dict[str, int]:
        """Flat numbers, as Dagster plots them: every area's four figures (zeros included, so that
        each plot has a point per materialization), every request class, Glue calls per operation."""
        with self._lock:
            figures = {
                f"{PREFIX}/{area}/{figure}": self.areas.get(area, Counter())[figure]
                for area in [*AREAS.values(), *([OTHER_AREA] if OTHER_AREA in self.areas else [])]
                for figure in AreaFigure
            }
            figures |= {f"{PREFIX}/s3/{kind}": self.requests[kind] for kind in Request}
            figures |= {f"{PREFIX}/glue/{operation}": n for operation, n in sorted(self.glue.items())}
            figures[f"{PREFIX}/glue/calls"] = sum(self.glue.values())
        return figures


_CURRENT: contextvars.ContextVar[Usage | None] = contextvars.ContextVar("usage", default=None)


def current() -> Usage:
    """The Usage being recorded (a throwaway one outside `recording()`)."""
    return _CURRENT.get() or Usage()


@contextlib.contextmanager
def recording() -> Iterator[Usage]:
    """A fresh Usage, current for the block: stores and clients made inside record into it."""
    usage = Usage()
    token = _CURRENT.set(usage)
    try:
        yield usage
    finally:
        _CURRENT.reset(token)


def count_requests(client, usage: Usage):
    """The boto3 client, recording each of its API calls in `usage` (once per call: a retry is not
    counted again): Glue calls by operation, S3 calls by request class (objects and bytes are
    recorded where they are read or written)."""
    service = client.meta.service_model.service_name

    def record(model, **_) -> None:
        if service == "glue":
            usage.glue_call(model.name)
            return
        kind = S3_OPERATIONS.get(model.name)
        if kind is not None:
            usage.request(kind)

    client.meta.events.register(f"before-call.{service}", record)
    return client


@dataclass(frozen=True)
class StepUsage:
    """One materialization's figures (its metadata's usage/ numbers) and the days they cover."""

    asset: str
    days: int
    figures: Mapping[str, float]

    @classmethod
    def from_metadata(cls, asset: str, metadata: Mapping[str, object]) -> StepUsage | None:
        """None when the metadata holds no usage figures (a materialization from before they existed)."""
        figures = {key: float(value) for key, value in metadata.items() if key.startswith(f"{PREFIX}/")}
        if DAYS not in figures:
            return None
        return cls(asset, int(figures.pop(DAYS)), figures)
