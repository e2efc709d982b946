"""The rules for reading one order record, shared by landing (Python) and flatten (DuckDB SQL).

Landing applies them here; core/flatten.py states the same rules in SQL (importing what can be
shared, such as ORDER_DATE_PATTERN), and tests hold the two to the same verdicts:
- order_date: ISO 8601 extended format only (`2024-03-02`, `2024-03-02T10:00[:00[.123456]]`, a `T`
  or a space, then `Z` or `±HH[:MM]`); no zone means UTC. `20240302T100000Z` is not accepted.
- a JSON object with a repeated key is ambiguous (parsers keep the first or the last value): it
  is quarantined, never guessed.
- one record is at most MAX_RECORD_BYTES of JSON text; a larger one is quarantined.
- a string must be Unicode: a lone surrogate escape (`\\ud800`) is quarantined.
- ids (order, customer, product; flatten only) are a JSON string or number, trimmed of surrounding
  whitespace; a number, or a string holding one, whose value is integral is written as a plain
  integer, so 1, 1.0, "1", " 1" and 1e0 are the same id. Other texts are kept as they are.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime

# Years 1000-9998: every timestamp these admit, with any offset, is a valid date in Python and in DuckDB.
_YEAR = "([1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
_TIME = "([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\\.[0-9]{1,6})?)?"
_ZONE = "(Z|[+-]([01][0-9]|2[0-3])(:?[0-5][0-9])?)"
# One pattern for Python's `re` and DuckDB's RE2, matched against the whole text; spaces around it are ignored.
ORDER_DATE_PATTERN = f" *{_YEAR}-[0-9]{{2}}-[0-9]{{2}}([T ]{_TIME}{_ZONE}?)? *"
# Its forms in UTC (no zone, or Z): the UTC day is the date written, when the calendar has it.
UTC_ORDER_DATE_PATTERN = f" *{_YEAR}-[0-9]{{2}}-[0-9]{{2}}([T ]{_TIME}Z?)? *"

# DuckDB's JSON reader refuses larger objects by default; one order this large is not an order.
MAX_RECORD_BYTES = 16 << 20


class _Repeated(dict):
    """An object in which a key was repeated: Python's json keeps the last value, DuckDB the first."""

    repeated = ""


# Objects with a repeated key parsed so far: a parse that did not move it needs no walk of its value.
_REPEATS = [0]


def _object(pairs: list[tuple[str, object]]) -> dict:
    record = dict(pairs)
    if len(record) == len(pairs):
        return record
    seen: set[str] = set()
    marked = _Repeated(record)
    marked.repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
    _REPEATS[0] += 1
    return marked


_DECODER = json.JSONDecoder(object_pairs_hook=_object)
MALFORMED = "malformed JSON"  # the start of the reason for a text that is not one JSON value
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def size_problem(text: str) -> str | None:
    size = len(text) if len(text) * 4 <= MAX_RECORD_BYTES else len(text.encode())
    if size > MAX_RECORD_BYTES:
        return f"record of {size} bytes is larger than the {MAX_RECORD_BYTES >> 20} MiB limit"
    return None


def value_problem(value: object) -> str | None:
    """Why a parsed value cannot be a record although it parsed: a repeated key anywhere in it, or
    a string holding a lone surrogate (`\\ud800`: Python accepts it, it is not Unicode, DuckDB refuses it)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item, _Repeated):
                return f"duplicate key {item.repeated!r}"
            stack.extend(reversed(item.values()))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return "a string holds a lone surrogate escape (not valid Unicode)"
    return None


def decode_at(text: str, position: int) -> tuple[object, int, str | None]:
    """The JSON value starting at `position`: (value, end, None), or (value or None, end or -1, the
    reason it cannot be a record); -1 when the parser gave up inside it (find its end another way).
    json.JSONDecodeError: not JSON at all."""
    repeats = _REPEATS[0]
    try:
        value, end = _DECODER.raw_decode(text, position)
    except RecursionError:
        return None, -1, "JSON nested too deeply"
    except json.JSONDecodeError:
        raise
    except ValueError as error:  # e.g. an integer of more than 4,300 digits
        return None, -1, f"unreadable number: {error}"
    suspicious = _REPEATS[0] != repeats or _SURROGATE_ESCAPE.search(text, position, end) is not None
    return value, end, value_problem(value) if suspicious else None


def parse_record(text: str) -> tuple[object, str | None]:
    """A whole text as one JSON value: (value, None), or (value or None, the reason it cannot be a
    record). A value that parsed but is ambiguous comes with its reason."""
    problem = size_problem(text)
    if problem:
        return None, problem
    start = len(text) - len(text.lstrip())
    try:
        value, end, problem = decode_at(text, start)
    except json.JSONDecodeError as error:
        return None, f"{MALFORMED}: {error}"
    if end != -1 and text[end:].strip():
        return None, f"{MALFORMED}: extra data at character {end}"
    return value, problem


def order_day(value: object) -> date | None:
    """UTC day of an order_date (see ORDER_DATE_PATTERN); None when it is not one."""
    if not isinstance(value, str) or not re.fullmatch(ORDER_DATE_PATTERN, value):
        return None
    try:
        moment = datetime.fromisoformat(value.strip(" "))
    except ValueError:  # a day the calendar does not have (2024-02-30)
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.date()
