"""Landed CSV feeds -> rows split by UTC day: the purchase log (one purchase event per row, written
by a script that appends every few minutes) and the static user-profile file.

A real CSV parser (pyarrow), every column read as text: a quoted value holding commas is one value,
a UTF-8 byte order mark is dropped, CRLF and LF both end a row, blank lines are no records. One event
per line: a quoted value running over a line end (an unclosed quote, a newline in a value)
quarantines the file whole, rather than merging the lines after it into one record. The
header decides the columns: the same columns in another order are read by name (and the file's
record says so); a header missing, or with columns missing, unknown or repeated, quarantines the
file whole. Each record (numbered from 1, the header and blank lines not counted) lands in exactly
one day or is quarantined with a reason and its text; values other than the timestamp are typed
later (purchase_events, dim_user_profiles), where a bad price is quarantined with its own reason.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ecomm_assets.core.landing import BOM, DayWindow, LandedFile, content, file_id
from ecomm_assets.core.privacy import protect, protected_columns
from ecomm_assets.core.schemas import Policy

PURCHASE_COLUMNS = (
    "user_id", "session_id", "category", "brand", "cost_price", "selling_price", "discount", "timestamp",
    "referrer", "device_type", "os", "browser", "ip_address", "payment_method",
)
USER_PROFILE_COLUMNS = (
    "user_id", "age", "gender", "education", "marital_status", "occupation", "interests", "email",
    "phone_number", "city", "language",
)
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"  # 2023-10-26 18:46:39, no zone ('T' between date and time too)
# A raw day file of purchases holds the log's columns as landed, plus the UTC instant the split read
# in `timestamp` (ECOMM_PURCHASES_TIMEZONE at the ingest): the table never reads the zone again.
EVENT_TS_UTC = "event_ts_utc"
UTC_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
HASHED_ROW = "hmac-sha256:"  # a quarantined row of the wrong width: its text's keyed hash


def encode_csv(table: pa.Table) -> bytes:
    """Rows as CSV with a header, a value quoted only when it needs it: a raw day file."""
    sink = io.BytesIO()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(quoting_style="needed"))
    return sink.getvalue()


def count_csv_records(data: bytes) -> int:
    """The records of a raw day file (encode_csv's), read again with the CSV parser."""
    return pacsv.read_csv(io.BytesIO(data), read_options=pacsv.ReadOptions(use_threads=False)).num_rows


def split_purchase_file(name: str, data: bytes, window: DayWindow, timezone: str = "UTC", *, key: bytes) -> LandedFile:
    """Route each purchase event of a landed purchase log to the UTC day of its timestamp (read in
    `timezone`, an IANA name), or to quarantine, its personal columns protected with `key`
    (core/privacy.py). DST: a local time the clocks skipped becomes the instant they jumped to; a
    repeated one is its first occurrence."""
    landed, table, numbers = _read(name, data, window, PURCHASE_COLUMNS, "purchases", key)
    if table is None:
        return landed
    text = pc.replace_substring(pc.utf8_trim_whitespace(table["timestamp"]), "T", " ", max_replacements=1)
    local = pc.strptime(text, format=TIMESTAMP_FORMAT, unit="us", error_is_null=True)
    # strptime rolls a day or second the calendar lacks over (2024-02-30 -> 03-01, :60 -> the next
    # minute): such a timestamp is unparseable, not another time.
    written = pc.strftime(pc.cast(local, pa.timestamp("s")), format=TIMESTAMP_FORMAT)  # whole seconds, as parsed
    local = pc.if_else(pc.equal(written, text), local, pa.scalar(None, local.type))
    # In UTC before taking the date: Arrow dates a zoned timestamp by its local wall time.
    instants = pc.cast(pc.assume_timezone(local, timezone=timezone, ambiguous="earliest", nonexistent="latest"),
                       pa.timestamp("s", tz="UTC"), safe=False)  # the log has whole seconds
    days = pc.cast(instants, pa.date32()).to_numpy(zero_copy_only=False)  # NaT where unparseable
    parsed = ~np.isnat(days)
    first, last = np.datetime64(window.first, "D"), np.datetime64(window.last, "D")
    keep = parsed & (days >= first) & (days <= last)
    for position in np.flatnonzero(~keep):
        day = days[position].astype(object) if parsed[position] else None  # an int: beyond Python's years 1-9999
        reason = (window.problem(day) if isinstance(day, date) else
                  f"unparseable timestamp: {table['timestamp'][int(position)].as_py()!r}")
        _reject(landed, numbers[position], reason, table, position)
    table = table.append_column(EVENT_TS_UTC, pc.strftime(instants, format=UTC_FORMAT))
    _route(landed, table.filter(pa.array(keep)), days[keep])
    return landed


def split_user_profile_file(name: str, data: bytes, window: DayWindow, day: date, *, key: bytes) -> LandedFile:
    """A user-profile file's rows, all kept in `day` (the UTC day the file landed: a profile has
    none of its own), or quarantined, its personal columns protected with `key`."""
    landed, table, _ = _read(name, data, window, USER_PROFILE_COLUMNS, "user_profiles", key)
    if table is not None:
        _route(landed, table, np.full(table.num_rows, np.datetime64(day, "D")))
    return landed


def _route(landed: LandedFile, table: pa.Table, days: np.ndarray) -> None:
    """Each day's rows, in the file's order."""
    for day in np.unique(days):
        landed.days[day.astype(object)] = table.filter(pa.array(days == day))


def _reject(landed: LandedFile, number: int, reason: str, table: pa.Table, position: int) -> None:
    """A parsed record quarantined: its text written back as the CSV row it was."""
    row = io.StringIO()
    csv.writer(row, lineterminator="").writerow([table[name][int(position)].as_py() for name in table.column_names])
    landed.quarantined.append({"record_number": int(number), "reason": reason, "record": row.getvalue()})


_KIND_NAMES = {"purchases": "purchase log", "user_profiles": "user-profile file"}


def _read(name: str, data: bytes, window: DayWindow, columns: tuple[str, ...], kind: str, key: bytes
          ) -> tuple[LandedFile, pa.Table | None, np.ndarray]:
    """The file's well-formed records as text columns in `columns`' order, their personal columns
    protected (the feed `kind`'s, core/privacy.py), and their record numbers; rows of the wrong
    width quarantined as their keyed hash (their columns cannot be told apart). None: the file is
    quarantined whole (landed.file_error)."""
    landed = LandedFile(name=name, file_id=file_id(data), window=window, encode_day=encode_csv)
    nothing = (landed, None, np.empty(0, np.int64))
    data = content(landed, data)
    if data is not None and not data.removeprefix(BOM).strip():
        landed.file_error = "empty file: a byte order mark alone"
    if landed.file_error:
        return nothing
    data = data.removeprefix(BOM)
    wrong_width: list[tuple[int, str, str]] = []

    def invalid_row(row) -> str:
        reason = f"wrong column count: {row.actual_columns} values, the header has {row.expected_columns}"
        wrong_width.append((row.number - 1, reason, row.text))  # row.number counts the header as 1
        return "skip"

    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(use_threads=False),  # rows numbered in file order
            parse_options=pacsv.ParseOptions(invalid_row_handler=invalid_row),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(columns, pa.string()),
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as error:
        landed.file_error = f"not a readable CSV file: {error}"
        return nothing
    header = table.column_names
    problem = _header_problem(header, columns, _KIND_NAMES[kind])
    if problem:
        landed.file_error = problem
        return nothing
    if tuple(header) != columns:
        landed.notes.append(f"columns in another order than the {_KIND_NAMES[kind]}'s: read by name ({', '.join(header)})")
    table = protected_columns(kind, table.select(list(columns)), key)
    for number, reason, text in wrong_width:
        # Its columns cannot be told apart, so neither can its personal values: the row is kept as its
        # keyed hash (the producer finds it by its number in the archived file).
        landed.quarantined.append({"record_number": number, "reason": reason,
                                   "record": f"{HASHED_ROW}{protect(text, Policy.HASH, key)}"})
    landed.records_read = table.num_rows + len(wrong_width)
    # One event per line: a quoted value running over line ends (an unclosed quote) would take the
    # lines after it into one record, and those events would vanish without a trace.
    lines = sum(1 for line in data.splitlines() if line) - 1  # the header's
    if lines != landed.records_read:
        landed.file_error = (f"{lines} lines hold {landed.records_read} records: a quoted value runs over line ends "
                             "(an unclosed quote?); one event per line")
        landed.quarantined.clear()
        landed.records_read = 0
        return nothing
    numbers = np.setdiff1d(np.arange(1, landed.records_read + 1), [n for n, _, _ in wrong_width], assume_unique=True)
    return landed, table, numbers


# A header name shown in a reason: a column-like name. Anything else (an email, a phone, an IP of a
# data row read as the header) is counted, never written: the reason goes to the manifest and alerts.
_NAME_SHOWN = re.compile(r"[A-Za-z_][A-Za-z0-9_ ]{0,40}")


def _shown(names: list[str]) -> list[str]:
    hidden = sum(not _NAME_SHOWN.fullmatch(name) for name in names)
    return [name for name in names if _NAME_SHOWN.fullmatch(name)] + ([f"{hidden} not shown"] if hidden else [])


def _header_problem(header: list[str], columns: tuple[str, ...], kind: str) -> str | None:
    if not set(header) & set(columns):
        return (f"no header: the first row ({len(header)} values) names none of the {kind}'s columns "
                f"({', '.join(columns)})")
    repeated = _shown(sorted({c for c in header if header.count(c) > 1}))
    missing = [c for c in columns if c not in header]
    unknown = _shown([c for c in header if c not in columns])
    if repeated or missing or unknown:
        details = [f"{label}: {', '.join(names)}" for label, names in
                   (("missing columns", missing), ("unknown columns", unknown), ("repeated columns", repeated)) if names]
        return f"header is not the {kind}'s ({', '.join(columns)}): " + "; ".join(details)
    return None
