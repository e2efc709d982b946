"""Files that producers drop in landing/orders/ -> order records split by UTC day.

A landed file may hold orders of any mix of days; each order belongs to the UTC day of its
order_date. Parsing is per record (files are producer-sized), and every record either lands in
exactly one day or is quarantined with a reason; a file that cannot be read at all is
quarantined whole. The split is a pure function of the bytes (and the hash key), so ingesting a
file twice writes the same day files again. A record's personal fields are protected
(core/privacy.py) in its text before it is kept, for a day or for quarantine.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import zlib
from collections import defaultdict
from collections.abc import Callable, Sized
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from ecomm_assets.core.privacy import PolicyTree, applied_to, policy_tree, protect
from ecomm_assets.core.records import (
    MALFORMED,
    MAX_RECORD_BYTES,
    decode_at,
    order_day,
    parse_record,
    size_problem,
)

BOM = b"\xef\xbb\xbf"  # UTF-8's byte order mark
# Producers' clocks run a little ahead and a day's orders arrive while it is still going on: a
# record dated up to this many days after today (UTC) is kept for its day; a later one is "in the future".
FUTURE_HORIZON_DAYS = 1


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
    return "".join(line + "\n" for line in lines).encode()


def count_json_lines(data: bytes) -> int:
    """The records of a JSON Lines file (a raw day file, a quarantine file): its non-blank lines."""
    return sum(1 for line in data.split(b"\n") if line.strip())


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

    @property
    def records_routed(self) -> int:
        return sum(len(records) for records in self.days.values())

    def day_bytes(self, day: date) -> bytes:
        return self.encode_day(self.days[day])


def file_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


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
    """Route each record of a landed file (its bytes as stored) to its UTC day, or to quarantine,
    its personal fields protected with `key` (core/privacy.py)."""
    landed = LandedFile(name=name, file_id=file_id(data), window=window, key=key)
    data = content(landed, data)
    if data is None:
        return landed
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        if data.lstrip().startswith(b"["):
            landed.file_error = f"not UTF-8: {error}"
            return landed
        text = None  # JSON Lines: the bad lines are quarantined one by one
    # A .jsonl/.ndjson file is JSON Lines whatever its first line looks like; a .json file may be either.
    if text is not None and not name.lower().removesuffix(".gz").endswith((".jsonl", ".ndjson")):
        orders = _orders_array(text)
        if orders is not None:  # an array of orders, bare or in {..., "orders": [...]}: element by element
            position, wrapped = orders
            try:
                position = _array_elements(text, position, _Router(landed))
                _document_end(text, position, wrapped)
            except _AmbiguousDocument as error:
                landed.file_error = str(error)
                _discard_records(landed)
            except ValueError as error:
                landed.file_error = f"malformed or truncated JSON document: {error}"
                _discard_records(landed)
            return landed
        record, reason = parse_record(text)
        if record is not None or not reason.startswith(MALFORMED) and _one_value(text):
            _route(landed, 1, record, reason, text.strip() if reason else None)  # one document: one order
            return landed
    _split_json_lines(landed, data)
    return landed


_WHITESPACE = re.compile(r"\s*")
_STRUCTURE = re.compile(r'["\\\[\]{}]')
_PLAIN = json.JSONDecoder()


class _AmbiguousDocument(ValueError):
    pass


class _Router:
    """Routes a document's elements in order, numbering them from 1."""

    def __init__(self, landed: LandedFile):
        self.landed, self.number = landed, 0

    def __call__(self, record: object, reason: str | None, text: str | None) -> None:
        self.number += 1
        _route(self.landed, self.number, record, reason, text)


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


def _array_elements(text: str, position: int, emit) -> int:
    """Emits (record, None, None) or (None, reason, text) per element of the array opening just
    before `position`, and returns the position after its `]`. An element that cannot be a record
    (a repeated key, nesting too deep) is cut out by its brackets, so the elements after it are
    still read. ValueError: the array is broken."""
    position = _WHITESPACE.match(text, position).end()
    if text.startswith("]", position):
        return position + 1
    while True:
        start = position
        record, position, reason = decode_at(text, position)
        if position == -1:
            position = _value_end(text, start)
        if reason is None and position - start > MAX_RECORD_BYTES // 4:
            reason = size_problem(text[start:position])
        emit(*((record, None, None) if reason is None else (None, reason, text[start:position])))
        position = _WHITESPACE.match(text, position).end()
        if text.startswith(",", position):
            position = _WHITESPACE.match(text, position + 1).end()
        elif text.startswith("]", position):
            return position + 1
        else:
            raise ValueError(f"expected ',' or ']' at character {position}")


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
    landed.days.clear()
    landed.quarantined.clear()
    landed.records_read = 0


def _split_json_lines(landed: LandedFile, data: bytes) -> None:
    number = 0
    for raw_line in data.split(b"\n"):
        if not raw_line.strip():
            continue
        number += 1
        try:
            line = raw_line.decode("utf-8-sig").strip()
        except UnicodeDecodeError as error:
            _route(landed, number, None, f"not UTF-8: {error}", raw_line.decode("utf-8", "backslashreplace"))
            continue
        record, reason = parse_record(line)
        _route(landed, number, record, reason, line)


def _route(landed: LandedFile, number: int, record: object, reason: str | None, text: str | None) -> None:
    """One record read: to its day, or to quarantine with the first reason it cannot land."""
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
        return
    landed.days[day].append(text)


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
