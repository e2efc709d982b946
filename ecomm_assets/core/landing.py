"""Files that producers drop in landing/orders/ -> order records split by UTC day.

A landed file may hold orders of any mix of days; each order belongs to the UTC day of its
order_date. Parsing is per record, and every record either lands in exactly one day or is
quarantined with a reason; a file that cannot be read at all is quarantined whole. The split is a
pure function of the bytes (and the hash key), so ingesting a file twice writes the same day files
again. A record's personal fields are protected (core/privacy.py) in its text before it is kept,
for a day or for quarantine.

The split streams: the file (decompressed as it is read, for a .gz name) is read a batch of
`batch_bytes` at a time, JSON Lines cut at a line end, an array of orders at an element's end, and
each batch's records are appended to one staged file per day (`staging`) in the file's order, so
memory holds a few batches (the bulk work on the next ones runs in threads meanwhile; or the one
record larger than a batch), whatever the file's size. An array's element is written as one line:
its bytes as the producer wrote them, less its line ends and the whitespace after them.
"""

from __future__ import annotations

import codecs
import functools
import gzip
import hashlib
import io
import json
import os
import re
import zlib
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sized
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import BinaryIO, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from ecomm_assets.core import duck
from ecomm_assets.core.flatten import _order_ts
from ecomm_assets.core.privacy import PolicyTree, applied_to, policy_tree, protect
from ecomm_assets.core.records import (
    MALFORMED,
    MAX_RECORD_BYTES,
    ORDER_DATE_PATTERN,
    UTC_ORDER_DATE_PATTERN,
    decode_at,
    order_day,
    parse_record,
    size_problem,
)

BOM = b"\xef\xbb\xbf"  # UTF-8's byte order mark
# Producers' clocks run a little ahead and a day's orders arrive while it is still going on: a
# record dated up to this many days after today (UTC) is kept for its day; a later one is "in the future".
FUTURE_HORIZON_DAYS = 1
# The landed text read, parsed and written out at a time (one record larger than this is read whole).
# A file larger than one batch that is neither an array of orders nor one document (its first line
# not a value by itself) is read as JSON Lines. The work on a batch holds about 20 times its size
# at its peak (Arrow columns of it, numpy's positions, Python's texts), and _WORKERS + 1 batches are
# held at once: larger batches are barely faster, and raise the peak.
BATCH_BYTES = 1 << 20
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class DayWindow:
    """The days a landed record may belong to: from the lake's first partition to the horizon."""

    first: date
    last: date

    @classmethod
    def for_lake(cls, start_date: date | str, today: date | None = None) -> DayWindow:
        today = today or datetime.now(UTC).date()
        return cls(date.fromisoformat(str(start_date)), today + timedelta(days=FUTURE_HORIZON_DAYS))

    def problem(self, day: date) -> str | None:
        if day < self.first:
            return f"before the first partition: {day} < {self.first}"
        if day > self.last:
            return f"in the future: {day} is after {self.last}"
        return None


def json_lines(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode() if lines else b""


def count_json_lines(data: bytes) -> int:
    """The records of a JSON Lines file (a raw day file, a quarantine file): its non-blank lines,
    counted in bulk; only a line that starts with whitespace is looked at alone."""
    codes = np.frombuffer(data, np.uint8)
    line_ends = np.flatnonzero(codes == ord("\n"))
    starts, stops = np.concatenate(([0], line_ends + 1)), np.append(line_ends, len(codes))
    starts, stops = starts[stops > starts], stops[stops > starts]
    spaced = _BYTES_WHITESPACE[codes[starts]]
    return int(len(starts) - spaced.sum()) + sum(1 for start, stop in zip(starts[spaced], stops[spaced], strict=True) if data[start:stop].strip())


_BYTES_WHITESPACE = np.zeros(256, bool)  # what bytes.strip() strips
_BYTES_WHITESPACE[list(b" \t\n\r\x0b\x0c")] = True


def count_json_lines_in(source: BinaryIO) -> int:
    """count_json_lines of an open file, read a batch at a time (a raw day file may be large)."""
    count, rest = 0, b""
    while chunk := source.read(BATCH_BYTES):
        data = rest + chunk
        cut = data.rfind(b"\n") + 1
        count += count_json_lines(data[:cut])
        rest = data[cut:]
    return count + count_json_lines(rest)


@dataclass
class LandedFile:
    """A landed file split by day. A day's records are whatever its feed's split keeps (JSON lines
    for orders, a table of CSV rows for CSV feeds); `encode_day` writes them as the raw day file."""

    name: str
    file_id: str  # content hash: the identity that makes re-ingestion idempotent
    window: DayWindow
    key: bytes = field(default=b"", repr=False)  # personal data's hash key (split_landing_file's)
    records_read: int = 0
    days: dict[date, Sized] = field(default_factory=lambda: defaultdict(list))  # JSON lines by default
    quarantined: list[dict] = field(default_factory=list)  # {record_number, reason, record}
    file_error: str | None = None
    notes: list[str] = field(default_factory=list)  # what a reader of the file's record should know
    encode_day: Callable[[Sized], bytes] = json_lines
    # The current batch's JSON texts by day, until `flush` moves them to `days`.
    pending: dict[date, list[TextBlock]] = field(default_factory=lambda: defaultdict(list), repr=False)

    @property
    def records_routed(self) -> int:
        return sum(len(records) for records in self.days.values())

    def day_bytes(self, day: date) -> bytes:
        records = self.days[day]
        if isinstance(records, StagedDay):
            with open(records.path, "rb") as staged:
                return staged.read()
        return self.encode_day(records)

    def staged_path(self, day: date) -> str | None:
        """The local file holding the day's records as its raw file, if they were staged."""
        records = self.days[day]
        return records.path if isinstance(records, StagedDay) else None

    def flush(self, staging: str | None) -> None:
        """The pending batch's records to their days: appended to each day's staged file in the
        `staging` folder, or kept in memory without one."""
        for day, blocks in self.pending.items():
            if staging is None:
                self.days[day].extend(line for block in blocks for line in bytes(block.data).decode().split("\n"))
                continue
            if day not in self.days:
                self.days[day] = StagedDay(os.path.join(staging, f"{self.file_id}-{day}.jsonl"))
            self.days[day].append(blocks)
        self.pending.clear()


class TextBlock(NamedTuple):
    """One or more JSON texts in UTF-8 joined by "\n" (a JSON text holds no raw line end), and how many."""

    data: bytes | pa.Buffer
    records: int


@dataclass
class StagedDay:
    """A day's JSON lines, appended batch by batch to a local file that becomes its raw file whole."""

    path: str
    records: int = 0

    def __len__(self) -> int:
        return self.records

    def append(self, blocks: list[TextBlock]) -> None:
        with open(self.path, "ab") as staged:
            for block in blocks:
                staged.write(block.data)
                staged.write(b"\n")
        self.records += sum(block.records for block in blocks)

    def discard(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)


def file_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def file_id_of(source: BinaryIO) -> str:
    """file_id of a seekable file's bytes, read a chunk at a time; the file is left at its start."""
    digest = hashlib.sha256()
    source.seek(0)
    while chunk := source.read(_HASH_CHUNK):
        digest.update(chunk)
    source.seek(0)
    return digest.hexdigest()[:16]


def content(landed: LandedFile, data: bytes) -> bytes | None:
    """A landed file's content (a .gz name decompressed), or None with landed.file_error set: not
    gzip, or nothing but whitespace."""
    if landed.name.lower().endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as error:
            landed.file_error = f"not a readable gzip file: {error}"
            return None
    if not data.strip():
        landed.file_error = "empty file"
        return None
    return data


def split_landing_file(name: str, data: bytes, window: DayWindow, *, key: bytes) -> LandedFile:
    """split_landing_stream of bytes in memory, the days' records kept in memory."""
    return split_landing_stream(name, io.BytesIO(data), window, key=key)


class _Unreadable(Exception):
    """The file cannot be read at all (its gzip is broken): it is quarantined whole."""


def split_landing_stream(name: str, source: BinaryIO, window: DayWindow, *, key: bytes, staging: str | None = None,
                         landed_file_id: str | None = None, batch_bytes: int = BATCH_BYTES, vectorized: bool = True) -> LandedFile:
    """Route each record of a landed file (`source`: its bytes as stored, seekable) to its UTC day,
    or to quarantine, its personal fields protected with `key` (core/privacy.py). Each day's records
    are appended to a file in `staging` batch by batch (kept in memory without `staging`); a file
    found broken part way (a cut gzip or array) keeps none of them. `vectorized` False: every JSON
    line is parsed in Python (the slow path, which the vectorized one must agree with)."""
    landed = LandedFile(name=name, file_id=landed_file_id or file_id_of(source), window=window, key=key)
    source.seek(0)
    try:
        _split_stream(landed, _chunks(source, name, batch_bytes), staging, batch_bytes, vectorized)
    except _Unreadable as error:
        landed.file_error = str(error)
    if landed.file_error:
        _discard_records(landed)
    else:
        landed.flush(staging)
    return landed


def _chunks(source: BinaryIO, name: str, size: int) -> Iterator[bytes]:
    """The file's content (a .gz name decompressed as it is read), `size` bytes at a time."""
    if not name.lower().endswith(".gz"):
        while chunk := source.read(size):
            yield chunk
        return
    try:
        with gzip.GzipFile(fileobj=source, mode="rb") as unzipped:
            while chunk := unzipped.read(size):
                yield chunk
    except (OSError, EOFError, zlib.error) as error:
        raise _Unreadable(f"not a readable gzip file: {error}") from None


def _split_stream(landed: LandedFile, chunks: Iterator[bytes], staging: str | None, batch_bytes: int, vectorized: bool) -> None:
    head = b""
    for chunk in chunks:  # up to the first byte that is not whitespace
        head += chunk
        if head.strip():
            break
        head = b""
    if not head.strip():
        landed.file_error = "empty file"
        return
    start = head.removeprefix(BOM).lstrip()
    # A .jsonl/.ndjson file is JSON Lines whatever its first line looks like; a .json file may be either.
    if landed.name.lower().removesuffix(".gz").endswith((".jsonl", ".ndjson")):
        _stream_json_lines(landed, head, chunks, staging, vectorized)
        return
    if start.startswith(b"["):  # an array of orders
        _stream_orders(landed, head, len(head) - len(start) + 1, chunks, False, staging, batch_bytes, vectorized)
        return
    while len(head) <= batch_bytes and (chunk := next(chunks, None)) is not None:
        head += chunk
    if len(head) <= batch_bytes:  # the whole file in one batch: one document, or JSON Lines
        _split_document(landed, head, vectorized)
        return
    orders = _orders_start(head)  # larger than one record may be: orders wrapped in an object, or JSON Lines
    if orders is not None:
        _stream_orders(landed, head, orders[0], chunks, True, staging, batch_bytes, vectorized)
    elif _one_value(head.split(b"\n", 1)[0].removeprefix(BOM).decode("utf-8", "replace")) or b"\n" not in head:
        _stream_json_lines(landed, head, chunks, staging, vectorized)
    else:  # a document over many lines: one record (larger than a batch), read whole to tell why it cannot land
        _split_document(landed, head + b"".join(chunks), vectorized)


def _orders_start(data: bytes) -> tuple[int, bool] | None:
    """_orders_array of the text that `data` (a file's first bytes, maybe cut inside a character)
    begins, with the position in bytes; None also when it is not UTF-8."""
    try:
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(data)
    except UnicodeDecodeError:
        return None
    orders = _orders_array(text)
    if orders is None:
        return None
    return (len(BOM) if data.startswith(BOM) else 0) + len(text[:orders[0]].encode()), orders[1]


def _split_document(landed: LandedFile, data: bytes, vectorized: bool) -> None:
    """A whole file's content in memory (at most a batch, or one document over many lines): an
    array of orders (bare or wrapped in an object), one order, or JSON Lines."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = None  # JSON Lines: the bad lines are quarantined one by one
    if text is not None:
        orders = _orders_start(data)
        if orders is not None:
            _stream_orders(landed, data, orders[0], iter(()), orders[1], None, len(data) + 1, vectorized)
            return
        record, reason = parse_record(text)
        if record is not None or not reason.startswith(MALFORMED) and _one_value(text):
            _route(landed, 1, record, reason, text.strip() if reason else None)  # one document: one order
            return
    _split_json_lines(landed, data, 0, vectorized)


def _stream_json_lines(landed: LandedFile, head: bytes, chunks: Iterator[bytes], staging: str | None, vectorized: bool) -> None:
    """JSON Lines a batch at a time, each batch cut after its last line end (a line longer than a
    batch is read whole, then split with the lines after it)."""
    def batches() -> Iterator[tuple[bytes, None]]:
        parts = [head]
        for chunk in chunks:
            cut = chunk.rfind(b"\n") + 1
            if not cut:
                parts.append(chunk)
                continue
            view = memoryview(chunk)  # the batch is copied once, by the join
            parts.append(view[:cut])
            yield b"".join(parts), None
            parts = [view[cut:]]
        yield b"".join(parts), None

    _route_batches(landed, batches(), staging, vectorized)


# Batches whose bulk work (_bulk_lines: Arrow, DuckDB and numpy, which let other threads run) is
# done at once, one per core, while the one before is routed.
_WORKERS = 2


def _route_batches(landed: LandedFile, batches: Iterator[tuple[bytes, _ArrayCuts | None]], staging: str | None,
                   vectorized: bool) -> None:
    """Routes each batch (JSON lines, or an array's elements and where they are cut) in order,
    each flushed to the staged day files before the next; the bulk work on the next batches runs
    meanwhile in threads, so memory holds at most _WORKERS + 1 batches."""
    number, ahead = 0, deque()
    with ThreadPoolExecutor(_WORKERS) as pool:
        for data, cuts in batches:
            ahead.append(pool.submit(_bulk_lines, data, landed.window, landed.key, vectorized, cuts))
            if len(ahead) > _WORKERS:
                number = _route_lines(landed, ahead.popleft().result(), number)
                landed.flush(staging)
        while ahead:
            number = _route_lines(landed, ahead.popleft().result(), number)
            landed.flush(staging)


def _stream_orders(landed: LandedFile, data: bytes, position: int, chunks: Iterator[bytes], wrapped: bool,
                   staging: str | None, batch_bytes: int, vectorized: bool) -> None:
    """The elements of the array of orders opening just before `position` in `data` (the file's
    first bytes; `chunks` the rest), routed in order a batch at a time (_array_batches): each
    batch's elements are checked and routed like JSON lines. Then the rest of the document. A broken
    document quarantines the file whole."""
    rest: list[bytes] = []
    try:
        _route_batches(landed, _array_batches(data[position:], chunks, batch_bytes, "orders", rest), staging, vectorized)
        _document_end((rest[0] + b"".join(chunks)).decode("utf-8"), 0, wrapped)
    except _AmbiguousDocument as error:
        landed.file_error = str(error)
    except UnicodeDecodeError as error:
        landed.file_error = f"not UTF-8: {error}"
    except ValueError as error:
        landed.file_error = f"malformed or truncated JSON document: {error}"


def _array_batches(text: bytes, chunks: Iterator[bytes], batch_bytes: int, what: str, rest: list[bytes],
                   max_element: int | None = None) -> Iterator[tuple[bytes, _ArrayCuts]]:
    """The elements of the array of `what` whose first element starts at text[0] (just after its
    `[`; `chunks` the text that follows), a batch of about `batch_bytes` at a time (an element larger
    than that alone), cut between elements by _array_cuts: each batch and its cuts, none for an
    empty array. What follows the array's `]` goes into `rest`. ValueError: the array does not end,
    or an element is longer than `max_element` bytes (read no further than that and a batch)."""
    read, ended, wanted, elements = 0, False, batch_bytes, 0
    while True:
        while len(text) < wanted and not ended:
            chunk = next(chunks, None)
            ended = chunk is None
            text += chunk or b""
        cuts, end = _array_cuts(text)
        separators = cuts.separators
        if end is None and not len(separators):
            if ended:
                raise ValueError(f"the array of {what} does not end")
            if max_element is not None and len(text) > max_element:  # the text starts with the element
                raise ValueError(f"element {elements + 1} of the array of {what} is larger than {max_element:,} bytes")
            wanted = 2 * len(text)  # an element larger than a batch: read on, as much again
            if max_element is not None:
                wanted = min(wanted, max_element + 1)
            continue
        wanted = batch_bytes
        cut = end if end is not None else int(separators[-1])
        if read or len(separators) or text[:cut].strip():  # else an empty array
            read += 1
            separators = separators[separators < cut]
            elements += len(separators) + 1
            yield text[:cut], _ArrayCuts(separators, cuts.quotes[cuts.quotes < cut])
        if end is not None:
            rest.append(text[end + 1:])
            return
        text = text[cut + 1:]


def json_array_elements(source: BinaryIO, what: str, batch_bytes: int = BATCH_BYTES) -> Iterator[pa.LargeStringArray]:
    """The elements of the JSON array of `what` that a file holds (a collection's snapshot), read a
    batch of about `batch_bytes` at a time (_array_batches): each batch's elements, in order, as their
    texts (an element's own spacing kept). Memory holds a batch, or the one larger element.
    ValueError: the file is not one JSON array (what _array_cuts finds is exact for valid JSON only:
    a parser reading the texts tells the rest), or an element is larger than MAX_RECORD_BYTES (its
    parse would take several times that)."""
    chunks = iter(functools.partial(source.read, batch_bytes), b"")
    head = b""
    for chunk in chunks:  # up to the first byte that is not whitespace
        head += chunk
        if head.removeprefix(BOM).strip():
            break
    start = head.removeprefix(BOM).lstrip()
    if not start.startswith(b"["):
        raise ValueError(f"not a JSON array of {what}")
    rest: list[bytes] = []
    elements = 0
    for text, cuts in _array_batches(start[1:], chunks, batch_bytes, what, rest, MAX_RECORD_BYTES):
        codes = np.frombuffer(text, np.uint8).copy()
        codes[cuts.separators] = ord(" ")  # the commas between the elements, so that each text is one element
        offsets = np.concatenate(([0], cuts.separators, [len(codes)])).astype(np.int64)
        sizes = np.diff(offsets)
        if sizes.max() > MAX_RECORD_BYTES:
            larger = int(np.argmax(sizes))
            raise ValueError(f"element {elements + larger + 1} of the array of {what} is larger than "
                             f"{MAX_RECORD_BYTES:,} bytes ({sizes[larger]:,})")
        elements += len(sizes)
        yield pa.LargeStringArray.from_buffers(len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(codes))
    if rest[0].strip() or any(chunk.strip() for chunk in chunks):
        raise ValueError(f"unexpected text after the array of {what}")


def json_array_records(source: BinaryIO, what: str) -> Iterator[list]:
    """The elements of the JSON array of `what` that a file holds, parsed a batch at a time
    (json_array_elements; Python's json: a repeated key's last value). ValueError as it, and for a
    record nested too deeply for Python's parser (which recurses)."""
    read = 0
    for elements in json_array_elements(source, what):
        try:  # a batch's elements in one parse: a call each would cost more than the parse
            records = json.loads("[" + ",".join(elements.to_pylist()) + "]")
        except RecursionError:
            raise ValueError(f"a record of the array of {what} ({read + 1} to {read + len(elements)}) is nested "
                             "too deeply to be read") from None
        read += len(elements)
        yield records


# Bytes that matter to the structure of JSON: one lookup of each byte of a batch.
_QUOTE, _BACKSLASH, _COMMA = ord('"'), ord("\\"), ord(",")
_DEPTH_STEP = np.zeros(256, np.int64)
_DEPTH_STEP[list(b"{[")], _DEPTH_STEP[list(b"}]")] = 1, -1
_SHORT_RUN = 64  # bytes of whitespace after a line end (an indentation) followed one at a time
_SPACING = np.zeros(256, bool)
_SPACING[list(b" \t\r\n")] = True


def _any_of(codes: np.ndarray, chars: bytes) -> np.ndarray:
    """Which bytes are one of `chars` (a few comparisons: faster than a lookup table over a batch)."""
    found = codes == chars[0]
    for char in chars[1:]:
        found |= codes == char
    return found


@dataclass
class _ArrayCuts:
    """Where the elements of an array in a text are cut: the commas between them; and the quotes
    not escaped (_unescaped_quotes), which tell where its strings are."""

    separators: np.ndarray
    quotes: np.ndarray


def _array_cuts(data: bytes) -> tuple[_ArrayCuts, int | None]:
    """The commas between the elements of an array whose elements start at data[0], and the position
    of its closing bracket (None: not in `data`), found in bulk from the positions of the quotes not
    escaped, the brackets and commas outside strings, and their depth. Exact for valid JSON; what it
    finds in any other text is checked by parsing each element (_split_elements)."""
    codes = np.frombuffer(data, np.uint8)
    quotes = _unescaped_quotes(codes)
    marks = np.flatnonzero(_any_of(codes, b"{}[],"))
    marks = marks[np.searchsorted(quotes, marks) % 2 == 0]  # outside strings: an even number of quotes before
    steps = _DEPTH_STEP[codes[marks]]
    depth = np.cumsum(steps)
    closing = np.flatnonzero(depth < 0)
    end = None
    if len(closing):
        end = int(marks[closing[0]])
        if data[end] != ord("]"):
            raise ValueError(f"expected ',' or ']' at byte {end}")
        marks, depth, steps = marks[:closing[0]], depth[:closing[0]], steps[:closing[0]]
    return _ArrayCuts(marks[(codes[marks] == _COMMA) & (depth == 0)], quotes), end


def _unescaped_quotes(codes: np.ndarray) -> np.ndarray:
    """The positions of the quotes that are not escaped: not after an odd run of backslashes."""
    quotes = np.flatnonzero(codes == _QUOTE)
    backslashes = np.flatnonzero(codes == _BACKSLASH)
    if not len(backslashes) or not len(quotes):
        return quotes
    after = quotes[(quotes > 0) & (codes[np.maximum(quotes - 1, 0)] == _BACKSLASH)]
    run_starts = np.ones(len(backslashes), bool)
    run_starts[1:] = backslashes[1:] != backslashes[:-1] + 1
    run_start = np.maximum.accumulate(np.where(run_starts, backslashes, 0))
    run = after - 1 - run_start[np.searchsorted(backslashes, after - 1)] + 1
    return np.setdiff1d(quotes, after[run % 2 == 1], assume_unique=True)


def _element_lines(data: bytes, cuts: _ArrayCuts) -> tuple[np.ndarray, _Elements]:
    """The elements of an array in `data` (`cuts` in it), one a line: their line ends, and the
    whitespace that follows them, are dropped (outside strings in valid JSON; an element with a
    line end inside a string per _array_cuts is read alone, and refused)."""
    codes, separators = np.frombuffer(data, np.uint8), cuts.separators
    starts = np.concatenate(([0], separators + 1))
    ends = np.concatenate((separators, [len(data)]))
    refused = np.zeros(len(starts), bool)
    lines = codes.copy()
    lines[separators] = ord("\n")
    line_ends = np.flatnonzero(_any_of(codes, b"\r\n"))
    if len(line_ends):
        refused[np.searchsorted(separators, line_ends[np.searchsorted(cuts.quotes, line_ends) % 2 == 1])] = True
        lines = lines[~_line_spacing(codes, line_ends)]
    return lines, _Elements(data, starts, ends, refused)


def _line_spacing(codes: np.ndarray, line_ends: np.ndarray) -> np.ndarray:
    """Which bytes are line ends or JSON whitespace after one (_ONE_LINE's matches)."""
    ends = line_ends + 1  # where each run of whitespace from a line end stops: usually a few bytes on
    for _ in range(_SHORT_RUN):
        going = ends < len(codes)
        going[going] = _SPACING[codes[ends[going]]]
        if not going.any():
            break
        ends[going] += 1
    else:
        others = np.flatnonzero(~_SPACING[codes])
        ends = np.append(others, len(codes))[np.searchsorted(others, line_ends)]
    first = np.ones(len(ends), bool)  # of the line ends in one run of whitespace
    first[1:] = ends[1:] != ends[:-1]
    # The bytes as runs, each kept or not in turn: [0, first line end), the whitespace from it, ...
    bounds = np.empty(2 * int(first.sum()) + 2, np.int64)
    bounds[0], bounds[-1] = 0, len(codes)
    bounds[1:-1:2], bounds[2:-1:2] = line_ends[first], ends[first]
    return np.repeat(np.arange(len(bounds) - 1) % 2 == 1, np.diff(bounds))


@dataclass
class _Elements:
    """The elements of an array in a batch, as the producer wrote them: element `row` is
    data[starts[row]:ends[row]]; `refused` marks those with a line end inside a string."""

    data: bytes
    starts: np.ndarray
    ends: np.ndarray
    refused: np.ndarray

    def text(self, row: int) -> bytes:
        return self.data[self.starts[row]:self.ends[row]]


def _element_verdict(landed: LandedFile, number: int, raw: bytes) -> tuple[date | None, str | None]:
    """One element of an array read alone (_verdict). ValueError: it is no JSON value, so the
    document is broken."""
    text = raw.decode("utf-8").strip(" \t\r\n")
    try:
        record, end, reason = decode_at(text, 0)
    except json.JSONDecodeError as error:
        raise ValueError(f"element {number}: {error}") from None
    if end == -1:  # gave up inside it: its end is found by its brackets
        end = _value_end(text, 0)
    if end != len(text):
        raise ValueError(f"element {number}: expected ',' or ']' at character {end}")
    if reason is None and len(text) > MAX_RECORD_BYTES // 4:
        reason = size_problem(text)
    if reason is None:
        return _verdict(landed, number, record, None, _ONE_LINE.sub("", text))
    return _verdict(landed, number, None, reason, text)


# A line end and the JSON whitespace after it: outside strings in valid JSON, it can go.
_ONE_LINE = re.compile(r"[\r\n][ \t\r\n]*")


_WHITESPACE = re.compile(r"\s*")
_STRUCTURE = re.compile(r'["\\\[\]{}]')
_PLAIN = json.JSONDecoder()


class _AmbiguousDocument(ValueError):
    pass


def _orders_array(text: str) -> tuple[int, bool] | None:
    """Where the orders of a document start (just inside their `[`) and whether they are wrapped in
    an object, for a top-level array or an object with an "orders" array under any key; None for
    anything else (one order, JSON Lines, or not JSON)."""
    position = _WHITESPACE.match(text).end()
    if text.startswith("[", position):
        return position + 1, False
    if not text.startswith("{", position):
        return None
    try:
        for key, value_start in _object_keys(text, position + 1):
            if key == "orders" and text.startswith("[", value_start):
                return value_start + 1, True
    except ValueError:
        return None
    return None


def _object_keys(text: str, position: int, orders_seen: int = 0):
    """(key, where its value starts) for each member of the object whose `{` is before `position`,
    skipping each value whole, then (None, the position after its `}`). _AmbiguousDocument:
    "orders" twice."""
    position = _WHITESPACE.match(text, position).end()
    if text.startswith("}", position):
        yield None, position + 1
        return
    while True:
        key, position = _PLAIN.raw_decode(text, position)
        if not isinstance(key, str):
            raise ValueError(f"expected a key at character {position}")
        position = _WHITESPACE.match(text, position).end()
        if not text.startswith(":", position):
            raise ValueError(f"expected ':' at character {position}")
        position = _WHITESPACE.match(text, position + 1).end()
        if key == "orders":
            orders_seen += 1
            if orders_seen > 1:
                raise _AmbiguousDocument("duplicate key 'orders': which list holds the orders is ambiguous")
        yield key, position
        position = _value_end(text, position) if text.startswith(("{", "["), position) else _PLAIN.raw_decode(text, position)[1]
        position = _WHITESPACE.match(text, position).end()
        if text.startswith(",", position):
            position = _WHITESPACE.match(text, position + 1).end()
        elif text.startswith("}", position):
            yield None, position + 1
            return
        else:
            raise ValueError(f"expected ',' or '}}' at character {position}")


def _document_end(text: str, position: int, wrapped: bool) -> None:
    """After the orders' `]`: the rest of the wrapping object (no second "orders"), then nothing."""
    if wrapped:
        position = _WHITESPACE.match(text, position).end()
        if text.startswith(",", position):
            *_, (_, position) = _object_keys(text, position + 1, orders_seen=1)
        elif text.startswith("}", position):
            position += 1
        else:
            raise ValueError(f"expected ',' or '}}' at character {position}")
    if text[position:].strip():
        raise ValueError(f"unexpected text after the orders at character {position}")


def _one_value(text: str) -> bool:
    """Whether the text is one JSON object or array (found by its brackets, without parsing it)."""
    start = len(text) - len(text.lstrip())
    try:
        return _value_end(text, start) == len(text.rstrip())
    except ValueError:
        return False


def _value_end(text: str, position: int) -> int:
    """The end of the JSON object or array starting at `position`, found without recursion."""
    if not text.startswith(("{", "["), position):
        raise ValueError(f"expected an object or an array at character {position}")
    depth, in_string, escaped_at = 0, False, -1
    for match in _STRUCTURE.finditer(text, position):
        char = match.group()
        if in_string:
            if match.start() == escaped_at:  # the character after a backslash
                continue
            if char == "\\":
                escaped_at = match.end()
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth == 0:
                return match.end()
    raise ValueError(f"unterminated value at character {position}")


def _discard_records(landed: LandedFile) -> None:
    """A file that turns out to be broken is quarantined whole: none of its records land."""
    for records in landed.days.values():
        if isinstance(records, StagedDay):
            records.discard()
    landed.days.clear()
    landed.pending.clear()
    landed.quarantined.clear()
    landed.records_read = 0


def _split_json_lines(landed: LandedFile, data: bytes, number: int = 0, fast: bool = True) -> int:
    """Routes the lines of `data` (whole lines), numbering the records after `number`; returns the
    last number."""
    return _route_lines(landed, _bulk_lines(data, landed.window, landed.key, fast), number)


@dataclass
class _BulkLines:
    """A batch's lines, each with its day and protected text when the vectorized checks routed it."""

    lines: pa.Array  # binary
    texts: pa.Array | None  # trimmed, when the batch is UTF-8
    days: pa.Array
    protected: pa.Array
    elements: _Elements | None  # the array's elements the lines are, if they are


def _bulk_lines(data: bytes, window: DayWindow, key: bytes, fast: bool, cuts: _ArrayCuts | None = None) -> _BulkLines:
    """The lines of `data` (whole lines; with `cuts`, the elements of an array cut there, one a
    line) and the days and protected texts of those that the vectorized checks (_fast_lines) route
    (`fast` False: none). Safe to run in a thread of its own."""
    elements = None
    if cuts is not None:
        data, elements = _element_lines(data, cuts)
    whole = pa.Array.from_buffers(pa.binary(), 1, [None, pa.py_buffer(np.array([0, len(data)], np.int32)), pa.py_buffer(data)])
    lines = pc.split_pattern(whole, b"\n").flatten()  # whole: the batch as one value, not copied
    if elements is None and data.endswith(b"\n"):  # nothing after the last line end: no line
        lines = lines.slice(0, len(lines) - 1)
    try:
        texts = pc.utf8_trim(lines.cast(pa.string()), " \t\r")
    except pa.ArrowInvalid:  # a line that is not UTF-8: its batch takes the slow path
        texts = None
    days, protected = _fast_lines(texts, window, key) if fast and texts is not None else (None, None)
    if days is None:
        days, protected = pa.nulls(len(lines), pa.date32()), pa.nulls(len(lines), pa.string())
    if elements is not None:
        days = pc.if_else(pa.array(elements.refused), pa.nulls(len(lines), pa.date32()), days)
    return _BulkLines(lines, texts, days, protected, elements)


def _route_lines(landed: LandedFile, bulk: _BulkLines, number: int) -> int:
    """Routes a batch's lines, numbering the records after `number`; returns the last number. The
    lines _bulk_lines routed keep their verdicts; only the others are parsed one by one, and each
    day's records keep their order in the file. An array's elements are records, none blank, and
    one read alone is read as its producer wrote it (_element_verdict)."""
    lines, texts, days, protected, elements = bulk.lines, bulk.texts, bulk.days, bulk.protected, bulk.elements
    if days.null_count == 0:  # usually: every line routed in bulk, none read alone
        landed.records_read += len(days)
        _to_pending(landed, days, protected)
        return number + len(days)
    slow = pc.invert(pc.is_valid(days))
    if texts is not None and elements is None:  # lines of spaces, tabs and CRs only are blank
        slow = pc.and_(slow, pc.greater(pc.binary_length(texts), 0))
    slow_rows = pc.indices_nonzero(slow).to_numpy()
    counted = pc.is_valid(days).to_numpy(zero_copy_only=False).astype(np.int64)
    if elements is not None:
        counted[:] = 1
        slow_lines = [elements.text(row) for row in slow_rows]
    else:
        slow_lines = lines.take(slow_rows).to_pylist()
        counted[slow_rows] = [bool(raw_line.strip()) for raw_line in slow_lines]
    numbers = number + np.cumsum(counted)  # each record's number: the non-blank lines up to it
    slow_days, slow_texts = [], []
    for row, raw_line in zip(slow_rows, slow_lines, strict=True):
        if elements is not None:
            verdict = _element_verdict(landed, int(numbers[row]), raw_line)
        elif not raw_line.strip():
            verdict = None, None
        else:
            try:
                line = raw_line.decode("utf-8-sig").strip()
            except UnicodeDecodeError as error:
                verdict = _verdict(landed, int(numbers[row]), None, f"not UTF-8: {error}", raw_line.decode("utf-8", "backslashreplace"))
            else:
                verdict = _verdict(landed, int(numbers[row]), *parse_record(line), line)
        slow_days.append(verdict[0])
        slow_texts.append(verdict[1])
    landed.records_read += int(pc.sum(pc.is_valid(days)).as_py() or 0)
    if len(slow_rows):
        mask = np.zeros(len(lines), bool)
        mask[slow_rows] = True
        mask = pa.array(mask)
        days = pc.replace_with_mask(days, mask, pa.array(slow_days, pa.date32()))
        protected = pc.replace_with_mask(protected, mask, pa.array(slow_texts, pa.string()))
    _to_pending(landed, days, protected)
    return int(numbers[-1]) if len(numbers) else number


def _to_pending(landed: LandedFile, days: pa.Array, protected: pa.Array) -> None:
    """A batch's routed texts (those with a day) to their days' pending blocks, in order."""
    routed = pc.unique(days.drop_null()).to_pylist()
    for day in routed:
        kept = protected if len(routed) == 1 and days.null_count == 0 else protected.filter(pc.equal(days, day))
        landed.pending[day].append(TextBlock(_joined(kept), len(kept)))


def _verdict(landed: LandedFile, number: int, record: object, reason: str | None, text: str | None) -> tuple[date | None, str | None]:
    """One record read: (its day, its protected text), or quarantined with the first reason it
    cannot land: (None, None)."""
    landed.records_read += 1
    if reason is None and not isinstance(record, dict):
        reason = "record is not a JSON object"
    if text is None:
        text = json.dumps(record, separators=(",", ":"))
    if reason is None:
        day = order_day(record.get("order_date"))
        if day is None:
            value = record.get("order_date")
            reason = "missing order_date" if value is None else f"unparseable order_date: {value}"
        else:
            reason = landed.window.problem(day)
    # A routed record has no repeated key: its scan may stop at its last personal field.
    text = protected_text(text, landed.key, record if reason is None else None)
    if reason is not None:
        landed.quarantined.append({"record_number": number, "reason": reason, "record": text})
        return None, None
    return day, text


def _route(landed: LandedFile, number: int, record: object, reason: str | None, text: str | None) -> None:
    """One record read: to its day, or to quarantine with the first reason it cannot land."""
    day, text = _verdict(landed, number, record, reason, text)
    if day is not None:
        landed.pending[day].append(TextBlock(text.encode(), 1))


_ORDER_FIELDS = policy_tree("orders")
# A member's key (escapes decoded afterwards), what follows a value: JSON's whitespace only.
_MEMBER_KEY = re.compile(r'[ \t\r\n]*"([^"\\]*(?:\\.[^"\\]*)*)"[ \t\r\n]*:[ \t\r\n]*')
_AFTER_VALUE = re.compile(r"[ \t\r\n]*([,}])")


def protected_text(text: str, key: bytes, record: dict | None = None, tree: PolicyTree = _ORDER_FIELDS) -> str:
    """A record's JSON text with each personal value (`tree`: core/privacy.py's policy of each
    field) replaced by what its policy lets land, found in the text itself: every other byte stays
    as the producer wrote it (numbers keep their digits). A dropped value becomes null; a value
    found where the policy expects an object is replaced as core/privacy.py's `applied_to` says.
    Given the `record` the text parsed to (no repeated key), the scan of each object stops at its
    last personal field; without, every member is read, and a repeated key protected each time.
    A text that is not a JSON object stays as it is: nothing in it can be found (it is quarantined,
    never routed)."""
    start = _WHITESPACE.match(text).end()
    if not text.startswith("{", start):
        return text
    replacements: list[tuple[int, int, str]] = []
    try:
        _personal_values(text, start + 1, tree, key, record, replacements)
    except (ValueError, RecursionError):  # broken or too deep: a quarantined record's text
        return text
    if not replacements:
        return text
    pieces, position = [], 0
    for begin, end, value in replacements:
        pieces += [text[position:begin], value]
        position = end
    return "".join(pieces) + text[position:]


def _personal_values(text: str, position: int, tree: PolicyTree, key: bytes, parsed: dict | None,
                     found: list[tuple[int, int, str]]) -> int | None:
    """Adds (begin, end, protected JSON) of each personal value of the object whose members start at
    `position` (`parsed`: that object, when known), in order; returns the position after its `}`,
    or None when it stopped early (after the last personal field `parsed` has)."""
    pending = set(tree) if parsed is None else set(tree).intersection(parsed)
    if parsed is not None and not pending:
        return None
    if text.startswith("}", _WHITESPACE.match(text, position).end()):
        return _WHITESPACE.match(text, position).end() + 1
    while True:
        member = _MEMBER_KEY.match(text, position)
        if member is None:
            raise ValueError(f"expected a key at character {position}")
        name = member.group(1)
        if "\\" in name:
            name = json.loads(f'"{name}"')
        start = member.end()
        rule = tree.get(name)
        if isinstance(rule, dict) and text.startswith("{", start):
            inner = parsed.get(name) if parsed is not None else None
            end = _personal_values(text, start + 1, rule, key, inner if isinstance(inner, dict) else None, found)
        else:
            value, end = _PLAIN.raw_decode(text, start)  # in C: a value skipped, or a personal one read
            if rule is not None:
                protected = applied_to(value, rule, key) if isinstance(rule, dict) else protect(value, rule.policy, key)
                found.append((start, end, json.dumps(protected, ensure_ascii=False)))
        if rule is not None:
            pending.discard(name)
            if parsed is not None and not pending:
                return None
        if end is None:  # an object whose scan stopped early: this one's goes on
            end = _value_end(text, start)
        after = _AFTER_VALUE.match(text, end)
        if after is None:
            raise ValueError(f"expected ',' or '}}' at character {end}")
        if after.group(1) == "}":
            return after.end()
        position = after.end()


# The vectorized path of JSON Lines (and of an array's elements, one a line). A record takes it only
# when every rule is checked without parsing it in Python, so that it gets the verdict and the bytes
# the record-by-record path gives: Arrow's JSON reader (as strict as Python's json: a repeated key at
# any depth, a trailing comma, a lone surrogate fail its row, which then takes the slow path; a line
# holding two values sends its batch there) reads an object, after screens, counted in bulk from
# byte positions, for what it would accept and Python not (a number of 1,000 digits, a `\ud800`
# escape) and for deep nesting (few brackets); its order_date is a text giving a day in the window
# (core/records.py's rule: Arrow reads a date in UTC, DuckDB one with an offset, as core/flatten.py
# states it in SQL). Its personal values are protected by protected_text on each distinct object of
# the policy (customers come back), spliced in place; the object's span is found from the positions
# of its key and of the braces (objects one level deep inside, no brace in a string) and must parse
# to an object, else the record takes the slow path. Every other record, and every line of a batch
# with a byte that is not UTF-8, takes the slow path.
_FAST_BRACKETS = 200  # far below Python's recursion limit
_LONG_DIGITS = 1000  # a number this long may be one Python refuses (more than 4,300 digits)
_READER_ROW = re.compile(r"in row (\d+)")


def _fast_lines(texts: pa.Array, window: DayWindow, key: bytes) -> tuple[pa.Array | None, pa.Array | None]:
    """The day and protected text of each line (trimmed) that takes the vectorized path, null
    for the others; (None, None) when none can."""
    tree = _ORDER_FIELDS
    if not len(texts) or not all(isinstance(rule, dict) for rule in tree.values()):
        return None, None
    layout = _Layout.of(texts)
    codes, lengths = layout.codes, np.diff(layout.bounds)
    if not len(codes):
        return None, None
    firsts, lasts = np.minimum(layout.bounds[:-1], len(codes) - 1), np.maximum(layout.bounds[1:] - 1, 0)  # of a text not empty
    braces = np.flatnonzero(_any_of(codes, b"{}"))
    opening = codes[braces] == ord("{")
    opens, closes = layout.per_row(braces[opening]), layout.per_row(braces[~opening])
    quotes = np.flatnonzero(codes == _QUOTE)
    keys = {name: _keys(codes, quotes, name) for name in tree}
    long_rows = np.flatnonzero(lengths >= _LONG_DIGITS)
    screens = [
        lengths > 0, codes[firsts] == ord("{"), codes[lasts] == ord("}"), lengths <= MAX_RECORD_BYTES // 4, opens == closes,
        opens + layout.per_row(np.flatnonzero(codes == ord("["))) <= _FAST_BRACKETS,
        ~pc.match_substring_regex(texts, r"\\u[dD][89a-fA-F]").to_numpy(zero_copy_only=False),
        *(layout.per_row(found) <= 1 for found, _, _ in keys.values()),
        *(layout.per_row(unsure) == 0 for _, _, unsure in keys.values()),
    ]
    screened = functools.reduce(np.logical_and, screens)
    if len(long_rows):
        screened[long_rows] &= ~pc.match_substring_regex(texts.take(long_rows), f"[0-9]{{{_LONG_DIGITS}}}").to_numpy(zero_copy_only=False)
    rows = pa.array(np.flatnonzero(screened))
    table, rows = _read_objects(texts if len(rows) == len(texts) else texts.take(rows), rows, tree)
    if not len(rows) or table.num_rows != len(rows):  # more rows than lines: a line holds two values
        return None, None
    every = len(rows) == len(texts)  # usually: then nothing is taken or put back by row
    fast = texts if every else texts.take(rows)
    days = _order_days(table["order_date"], window)
    no_day = pa.nulls(len(fast), pa.date32())
    for name in tree:
        column = table[name].combine_chunks() if name in table.column_names else pa.nulls(len(fast))
        found, values, _ = keys[name]
        present, elsewhere = pc.is_valid(column), pa.array(layout.per_row(found) > 0).take(rows)
        if pa.types.is_struct(column.type):  # an object here is spliced; a key of the name elsewhere (none here) is slow
            spliced = _spliced(texts, layout, values, braces, opening, name, key)
            spliced = spliced if every else spliced.take(rows)
            days = pc.if_else(pc.if_else(present, pc.is_valid(spliced), pc.invert(elsewhere)), days, no_day)
            fast = spliced if column.null_count == 0 else pc.if_else(present, spliced, fast)
        else:  # not an object where present: the slow path's applied_to says what lands
            days = pc.if_else(pc.or_(present, elsewhere), no_day, days)
    if not every:
        mask = np.zeros(len(texts), bool)
        mask[rows.to_numpy()] = True
        days = pc.replace_with_mask(pa.nulls(len(texts), pa.date32()), pa.array(mask), days)
        fast = pc.replace_with_mask(pa.nulls(len(texts), pa.string()), pa.array(mask), fast)
    return days, fast if days.null_count == 0 else pc.if_else(pc.is_valid(days), fast, pa.nulls(len(texts), pa.string()))


@dataclass
class _Layout:
    """The bytes of an array of texts as numpy: text `row` is codes[bounds[row]:bounds[row + 1]]."""

    codes: np.ndarray
    bounds: np.ndarray
    data: pa.Buffer

    @classmethod
    def of(cls, texts: pa.Array) -> _Layout:
        _, offsets, data = texts.buffers()
        bounds = np.frombuffer(offsets, np.int32)[texts.offset:texts.offset + len(texts) + 1]
        data = data or pa.py_buffer(b"")
        return cls(np.frombuffer(data, np.uint8)[:bounds[-1]], bounds, data)

    def per_row(self, positions: np.ndarray) -> np.ndarray:
        """How many of the (sorted) positions fall in each text."""
        return np.diff(np.searchsorted(positions, self.bounds))


def _keys(codes: np.ndarray, quotes: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each member named `name` (its key written without escapes, then JSON whitespace and a colon,
    in any string too): where it starts, and where its value starts; and
    where a key is followed by more whitespace than is looked through (its text takes the slow path)."""
    literal = f'"{name}"'.encode()
    found = quotes[quotes + len(literal) < len(codes)]
    for offset, byte in enumerate(literal[1:], 1):
        found = found[codes[found + offset] == byte]
    colons, unsure = _after_spacing(codes, found + len(literal))
    is_key = codes[np.minimum(colons, len(codes) - 1)] == ord(":")
    found, colons = found[is_key & (colons < len(codes))], colons[is_key & (colons < len(codes))]
    values, unsure_value = _after_spacing(codes, colons + 1)
    return found, values, np.union1d(unsure, unsure_value)


def _after_spacing(codes: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first position at or after each that is not JSON whitespace (up to _SHORT_RUN bytes on),
    and the positions whose run of whitespace was longer."""
    positions = positions.copy()
    going = np.arange(len(positions))
    for _ in range(_SHORT_RUN):
        going = going[positions[going] < len(codes)]
        going = going[_SPACING[codes[positions[going]]]]
        if not len(going):
            return positions, going
        positions[going] += 1
    return positions, positions[going]


def _spliced(texts: pa.Array, layout: _Layout, values: np.ndarray, braces: np.ndarray, opening: np.ndarray, name: str,
             key: bytes) -> pa.Array:
    """Each text with its member `name`'s object (starting at one of `values`) protected in place;
    null where the object's span (_object_ends) is not found, or does not
    parse to an object."""
    count, bounds = len(texts), layout.bounds.astype(np.int64)
    values = values[values < len(layout.codes)]
    values = values[layout.codes[values] == ord("{")]
    rows = np.searchsorted(bounds, values, side="right") - 1
    ends = _object_ends(braces, opening, np.searchsorted(braces, values))
    found = (ends > 0) & (ends <= bounds[rows + 1])
    rows, starts, ends = rows[found], values[found], ends[found]
    # Each text as three pieces (before its object, the object, after it), cut without a copy.
    cuts = np.repeat(bounds[1:], 3)
    cuts[0::3] = bounds[:-1]
    cuts[3 * rows + 1], cuts[3 * rows + 2] = starts, ends
    pieces = pa.StringArray.from_buffers(3 * count, pa.py_buffer(np.append(cuts, bounds[-1]).astype(np.int32)), layout.data)
    objects = pieces.take(pa.array(3 * rows + 1)).dictionary_encode()
    replaced = pa.array([_protected_object(text, key, name) for text in objects.dictionary.to_pylist()] + [None], pa.string())
    chosen = np.stack([np.arange(0, 3 * count, 3), np.full(count, 3 * count + len(replaced) - 1), np.arange(2, 3 * count, 3)], axis=1)
    chosen[rows, 1] = 3 * count + objects.indices.to_numpy()
    joined = pa.ListArray.from_arrays(pa.array(np.arange(0, 3 * count + 1, 3), pa.int32()),
                                      pa.concat_arrays([pieces, replaced]).take(pa.array(chosen.ravel())))
    return pc.binary_join(joined, "")


def _object_ends(braces: np.ndarray, opening: np.ndarray, firsts: np.ndarray) -> np.ndarray:
    """For each index in `braces` of an opening brace: the position after the brace closing it,
    when only objects without objects inside lie between (braces in strings not told apart); else -1."""
    ends = np.full(len(firsts), -1)
    at, going = firsts + 1, np.arange(len(firsts))
    for _ in range(_SHORT_RUN):
        inside = at < len(braces)
        at, going = at[inside], going[inside]
        closing = ~opening[at]
        ends[going[closing]] = braces[at[closing]] + 1
        at, going = at[~closing], going[~closing]
        pair = (at + 1 < len(braces)) & ~opening[np.minimum(at + 1, len(braces) - 1)]
        at, going = at[pair] + 2, going[pair]
        if not len(going):
            break
    return ends


def _read_objects(candidates: pa.Array, rows: pa.Array, tree: PolicyTree) -> tuple[pa.Table, pa.Array]:
    """The candidate lines Arrow's JSON reader reads (order_date as text, the policy's objects as
    found) and their rows; a row it refuses (it names it) is left out, and the rows after it are read
    again. Parts read with types that do not agree give none: each row is then read alone."""
    try:  # usually every one: read in blocks, in parallel
        return _read_json(candidates, tree, one_block=False), rows
    except pa.ArrowInvalid:  # a refused row is named in its block only: read again in one block
        pass
    tables, kept, start = [], [], 0
    while start < len(candidates):
        try:
            tables.append(_read_json(candidates.slice(start), tree))
        except pa.ArrowInvalid as error:
            refused = _READER_ROW.search(str(error))
            if refused is None:
                break
            refused = start + int(refused.group(1))
            if refused > start:
                tables.append(_read_json(candidates.slice(start, refused - start), tree))
                kept.append(rows.slice(start, refused - start))
            start = refused + 1
            continue
        kept.append(rows.slice(start))
        break
    if tables:
        try:
            return pa.concat_tables(tables, promote_options="permissive"), pa.concat_arrays(kept)
        except (pa.ArrowTypeError, pa.ArrowInvalid):  # a member read as an object in one part, as a text in another
            pass
    return pa.table({"order_date": pa.array([], pa.string())}), pa.array([], pa.int64())


def _read_json(lines: pa.Array, tree: PolicyTree, one_block: bool = True) -> pa.Table:
    data = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(lines)], pa.int32()), lines), "\n")[0].as_buffer()
    options = pajson.ReadOptions(use_threads=False, block_size=data.size + 1) if one_block else pajson.ReadOptions(block_size=1 << 20)
    table = pajson.read_json(pa.BufferReader(data), read_options=options,
                             parse_options=pajson.ParseOptions(explicit_schema=pa.schema([("order_date", pa.string())])))
    return table.select(["order_date", *(name for name in tree if name in table.column_names)])


def _joined(texts: pa.Array) -> pa.Buffer:
    """The texts joined by "\n", in UTF-8."""
    return pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(texts)], pa.int32()), texts), "\n")[0].as_buffer()


def _order_days(dates: pa.ChunkedArray, window: DayWindow) -> pa.Array:
    """The UTC day of each order_date text in the window; null for any other. A date in UTC is read
    by Arrow; only one with an offset takes DuckDB's reading (core/flatten.py's rule)."""
    dates = dates.combine_chunks() if dates.num_chunks else pa.array([], pa.string())
    in_utc = pc.fill_null(pc.match_substring_regex(dates, f"^{UTC_ORDER_DATE_PATTERN}$"), False)
    # A batch's orders fall on a few days: each distinct date written is read once.
    written = pc.utf8_slice_codeunits(pc.utf8_ltrim(dates, " "), 0, 10).dictionary_encode()
    moments = pc.strptime(written.dictionary, "%Y-%m-%d", "s", error_is_null=True)
    real = pc.equal(pc.strftime(moments, "%Y-%m-%d"), written.dictionary)  # strptime moves 2024-02-30 on to March
    written_days = pc.if_else(real, moments.cast(pa.date32()), pa.nulls(len(moments), pa.date32())).take(written.indices)
    days = pc.if_else(in_utc, written_days, pa.nulls(len(dates), pa.date32()))
    offset = pc.and_(pc.invert(in_utc), pc.fill_null(pc.match_substring_regex(dates, f"^{ORDER_DATE_PATTERN}$"), False))
    if pc.any(offset).as_py():
        days = pc.replace_with_mask(days, offset, _offset_days(dates.filter(offset)))
    inside = pc.and_(pc.greater_equal(days, pa.scalar(window.first)), pc.less_equal(days, pa.scalar(window.last)))
    return pc.if_else(inside, days, pa.nulls(len(days), pa.date32()))


def _offset_days(dates: pa.Array) -> pa.Array:
    """The UTC day of each order_date text, by DuckDB; null for one without the accepted form."""
    con = duck.connect()
    try:
        con.register("dates", pa.table({"order_date": dates}))
        days = con.sql(f"SELECT CAST({_order_ts('order_date')} AS DATE) AS day FROM dates").to_arrow_table()["day"]
    finally:
        con.close()
    return days.combine_chunks() if days.num_chunks else pa.array([], pa.date32())


# A shop's customers come back in batch after batch: each distinct object is protected once (a
# bounded cache: a few MiB).
@functools.lru_cache(maxsize=1 << 14)
def _protected_object(text: str, key: bytes, name: str) -> str | None:
    """The object of the policy's member `name` (_ORDER_FIELDS), protected; None if the text found
    for it is not one JSON object (its span was not found right: the record takes the slow path)."""
    record, reason = parse_record(text)
    return protected_text(text, key, None, _ORDER_FIELDS[name]) if reason is None and isinstance(record, dict) else None
