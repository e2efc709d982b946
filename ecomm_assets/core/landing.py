"""Files that producers drop in the landing zone -> order records split by UTC day.

A landed file may hold orders of any mix of days; each order belongs to the UTC day of its
order_date. Parsing is per record (files are producer-sized), and every record either lands in
exactly one day or is quarantined with a reason; a file that cannot be read at all is
quarantined whole. The split is a pure function of the bytes, so ingesting a file twice writes
the same day files again.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

LANDING_SUFFIXES = (".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz", ".ndjson.gz")


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
        today = today or datetime.now(timezone.utc).date()
        return cls(date.fromisoformat(str(start_date)), today + timedelta(days=FUTURE_HORIZON_DAYS))

    def problem(self, day: date) -> str | None:
        if day < self.first:
            return f"before the first partition: {day} < {self.first}"
        if day > self.last:
            return f"in the future: {day} is after {self.last}"
        return None


@dataclass
class LandedFile:
    name: str
    file_id: str  # content hash: the identity that makes re-ingestion idempotent
    records_read: int = 0
    days: dict[date, list[str]] = field(default_factory=lambda: defaultdict(list))  # JSON lines
    quarantined: list[dict] = field(default_factory=list)  # {record_number, reason, record}
    file_error: str | None = None
    window: DayWindow | None = None

    @property
    def records_routed(self) -> int:
        return sum(len(lines) for lines in self.days.values())

    def day_bytes(self, day: date) -> bytes:
        return "".join(line + "\n" for line in self.days[day]).encode()


def is_landing_file(name: str) -> bool:
    return name.lower().endswith(LANDING_SUFFIXES) and not name.rsplit("/", 1)[-1].startswith((".", "_"))


def file_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def order_day(value: object) -> date | None:
    """UTC day of an ISO date or timestamp; a timestamp without zone is taken as UTC."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.date()


def split_landing_file(name: str, data: bytes, window: DayWindow) -> LandedFile:
    landed = LandedFile(name=name, file_id=file_id(data), window=window)
    if name.lower().endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as error:
            landed.file_error = f"not a readable gzip file: {error}"
            return landed
    if not data.strip():
        landed.file_error = "empty file"
        return landed
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        if data.lstrip().startswith(b"["):
            landed.file_error = f"not UTF-8: {error}"
            return landed
        text = None  # JSON Lines: the bad lines are quarantined one by one
    if text is not None:
        # One JSON document (an array, one order, or {"orders": [...]}); JSON Lines fail fast here.
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            if text.lstrip().startswith("["):
                landed.file_error = f"malformed or truncated JSON document: {error}"
                return landed
        else:
            _split_json_document(landed, document)
            return landed
    _split_json_lines(landed, data)
    return landed


def _split_json_document(landed: LandedFile, document: object) -> None:
    if isinstance(document, dict) and isinstance(document.get("orders"), list):
        document = document["orders"]
    records = document if isinstance(document, list) else [document]
    for number, record in enumerate(records, start=1):
        _route(landed, number, record, None)


def _split_json_lines(landed: LandedFile, data: bytes) -> None:
    number = 0
    for raw_line in data.split(b"\n"):
        if not raw_line.strip():
            continue
        number += 1
        try:
            line = raw_line.decode("utf-8-sig").strip()
        except UnicodeDecodeError as error:
            _quarantine(landed, number, f"not UTF-8: {error}", raw_line.decode("utf-8", "backslashreplace"))
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            _quarantine(landed, number, f"malformed JSON: {error}", line)
            continue
        _route(landed, number, record, line)


def _route(landed: LandedFile, number: int, record: object, line: str | None) -> None:
    landed.records_read += 1
    text = line if line is not None else json.dumps(record, separators=(",", ":"))
    if not isinstance(record, dict):
        _quarantine(landed, number, "record is not a JSON object", text, counted=True)
        return
    day = order_day(record.get("order_date"))
    if day is None:
        reason = "missing order_date" if record.get("order_date") is None else f"unparseable order_date: {record['order_date']}"
        _quarantine(landed, number, reason, text, counted=True)
        return
    problem = landed.window.problem(day) if landed.window else None
    if problem:
        _quarantine(landed, number, problem, text, counted=True)
        return
    landed.days[day].append(text)


def _quarantine(landed: LandedFile, number: int, reason: str, text: str, counted: bool = False) -> None:
    if not counted:
        landed.records_read += 1
    landed.quarantined.append({"record_number": number, "reason": reason, "record": text})
