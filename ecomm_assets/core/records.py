"""The rules for reading one order record, shared by landing (Python) and flatten (DuckDB SQL).

Every rule that decides whether a value is valid, or what it means, is written here once, so the
two steps can never disagree about a record:
- order_date: ISO 8601 extended format only (`2024-03-02`, `2024-03-02T10:00[:00[.123456]]`, a `T`
  or a space, then `Z` or `±HH[:MM]`); no zone means UTC. `20240302T100000Z` is not accepted.
- a JSON object with a repeated key is ambiguous (parsers keep the first or the last value): it
  is quarantined, never guessed.
- one record is at most MAX_RECORD_BYTES of JSON text; a larger one is quarantined.
- ids (order, customer, product) are a JSON string or number, trimmed of surrounding whitespace;
  a number, or a string holding one, whose value is integral is written as a plain integer, so
  1, 1.0, "1", " 1" and 1e0 are the same id. Other texts are kept as they are ("007" stays "007").
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timezone

# Years 1000-9998: every timestamp these admit, with any offset, is a valid date in Python and in DuckDB.
_YEAR = "([1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
_TIME = "([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\\.[0-9]{1,6})?)?"
_ZONE = "(Z|[+-]([01][0-9]|2[0-3])(:?[0-5][0-9])?)"
# One pattern for Python's `re` and DuckDB's RE2, matched against the whole text; spaces around it are ignored.
ORDER_DATE_PATTERN = f" *{_YEAR}-[0-9]{{2}}-[0-9]{{2}}([T ]{_TIME}{_ZONE}?)? *"

# DuckDB's JSON reader refuses larger objects by default; one order this large is not an order.
MAX_RECORD_BYTES = 16 << 20


class DuplicateKeyError(ValueError):
    pass


def _refuse_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    """object_pairs_hook: Python's json keeps the last of repeated keys, DuckDB the first."""
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise DuplicateKeyError(f"duplicate key {repeated!r}")
    return record


RECORD_DECODER = json.JSONDecoder(object_pairs_hook=_refuse_duplicate_keys)


def size_problem(text: str) -> str | None:
    size = len(text) if len(text) * 4 <= MAX_RECORD_BYTES else len(text.encode())
    if size > MAX_RECORD_BYTES:
        return f"record of {size} bytes is larger than the {MAX_RECORD_BYTES >> 20} MiB limit"
    return None


def parse_record(text: str) -> tuple[object, str | None]:
    """A JSON value and None, or None and the reason it cannot be a record."""
    problem = size_problem(text)
    if problem:
        return None, problem
    try:
        return RECORD_DECODER.decode(text), None
    except DuplicateKeyError as error:
        return None, str(error)
    except RecursionError:
        return None, "JSON nested too deeply"
    except json.JSONDecodeError as error:
        return None, f"malformed JSON: {error}"


def order_day(value: object) -> date | None:
    """UTC day of an order_date (see ORDER_DATE_PATTERN); None when it is not one."""
    if not isinstance(value, str) or not re.fullmatch(ORDER_DATE_PATTERN, value):
        return None
    try:
        moment = datetime.fromisoformat(value.strip(" "))
    except ValueError:  # a day the calendar does not have (2024-02-30)
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.date()
