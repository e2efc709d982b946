"""A generator of purchase logs and user-profile files in the shape of the AWS Glue tutorial's:
ids like USI_30, cost prices as 52207 and selling prices as 58573.0, timestamps 2023-10-26 18:46:39
without a zone, CRLF line ends. Deterministic by seed; bad rows of each kind on request, for tests
and a live-feed simulator (the same arguments always give the same bytes).
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum

from ecomm_assets.core.landing import BOM
from ecomm_assets.core.purchases import (
    PURCHASE_COLUMNS,
    TIMESTAMP_FORMAT,
    USER_PROFILE_COLUMNS,
)

CATEGORIES = {
    "Electronics": ["Samsung", "Apple", "Sony", "OnePlus", "Lenovo"],
    "Fashion": ["Nike", "Adidas", "Zara", "H&M", "Levi's"],
    "Home, Kitchen": ["Prestige", "Philips", "IKEA", "Borosil"],  # a comma: quoted in the file
    "Books": ["Penguin", "HarperCollins", "Oxford"],
    "Beauty": ["L'Oreal", "Nivea", "Lakme", "Dove"],
}
REFERRERS = ["google", "facebook", "instagram", "direct", "email", "twitter"]
DEVICES = {"mobile": ["Android", "iOS"], "desktop": ["Windows", "macOS", "Linux"], "tablet": ["Android", "iOS"]}
BROWSERS = ["Chrome", "Safari", "Firefox", "Edge", "Opera"]
PAYMENT_METHODS = ["credit_card", "debit_card", "upi", "net_banking", "cash_on_delivery", "wallet"]
GENDERS = ["Male", "Female", "Other"]
EDUCATIONS = ["High School", "Bachelor's", "Master's", "PhD"]
MARITAL_STATUSES = ["Single", "Married", "Divorced", "Widowed"]
OCCUPATIONS = ["Engineer", "Teacher", "Doctor", "Artist", "Student", "Lawyer", "Manager", "Nurse"]
INTERESTS = ["sports", "music", "travel", "reading", "gaming", "cooking", "fashion", "technology"]
CITIES = ["Mumbai", "Delhi", "Bengaluru", "Chennai", "Kolkata", "Pune", "Hyderabad", "Jaipur"]
LANGUAGES = ["English", "Hindi", "Tamil", "Bengali", "Marathi", "Telugu"]


class BadRow(StrEnum):
    """A kind of bad purchase row the generator can inject (each is quarantined with its reason)."""

    WRONG_COLUMN_COUNT = "wrong_column_count"  # a value missing
    UNPARSEABLE_NUMBER = "unparseable_number"  # a selling price that is no number
    UNPARSEABLE_TIMESTAMP = "unparseable_timestamp"  # 26/10/2023 18:46
    NEGATIVE_PRICE = "negative_price"  # a cost price below zero


class Header(StrEnum):
    """The header line a generated file starts with."""

    CANONICAL = "canonical"
    MISSING = "missing"  # the rows start at once
    REORDERED = "reordered"  # the same columns, reversed
    UNKNOWN_COLUMN = "unknown_column"  # the last column renamed


def user_id(number: int) -> str:
    return f"USI_{number}"


def purchase_log_csv(
    rows: int,
    *,
    seed: int = 0,
    start: datetime = datetime(2023, 10, 26),
    hours: float = 24.0,
    users: int = 500,
    bad_rows: Mapping[BadRow, int] | None = None,
    duplicates: int = 0,
    header: Header = Header.CANONICAL,
    bom: bool = False,
    line_end: str = "\r\n",
) -> bytes:
    """A purchase log of `rows` good events at naive times from `start` over `hours` (in time order,
    as an appending script writes them), users USI_1..USI_<users>, plus `bad_rows` (kind -> count)
    and `duplicates` (good events written twice) at seeded places."""
    rng = random.Random(seed)
    events = [_event(rng, start + timedelta(seconds=rng.uniform(0, hours * 3600)), users) for _ in range(rows)]
    events.sort(key=lambda event: event[7])
    for _ in range(duplicates if events else 0):
        events.insert(rng.randrange(len(events) + 1), list(rng.choice(events)))
    for kind, count in sorted((bad_rows or {}).items()):
        for _ in range(count):
            events.insert(rng.randrange(len(events) + 1), _bad(rng, kind, _event(rng, start, users)))
    return _csv(PURCHASE_COLUMNS, events, header, bom, line_end)


def user_profiles_csv(
    users: int, *, seed: int = 0, header: Header = Header.CANONICAL, bom: bool = False, line_end: str = "\r\n",
    wrong_column_count: int = 0,
) -> bytes:
    """Profiles of users USI_1..USI_<users>, plus `wrong_column_count` rows missing a value."""
    rng = random.Random(seed)
    profiles = [_profile(rng, number) for number in range(1, users + 1)]
    for _ in range(wrong_column_count):
        profiles.insert(rng.randrange(len(profiles) + 1), _profile(rng, users + 1)[:-1])
    return _csv(USER_PROFILE_COLUMNS, profiles, header, bom, line_end)


def _event(rng: random.Random, at: datetime, users: int) -> list:
    category = rng.choice(list(CATEGORIES))
    cost = rng.randrange(100, 90_000)
    selling = float(round(cost * rng.uniform(1.02, 1.4)))
    discount = rng.choice([0, 0, round(selling * rng.uniform(0.01, 0.1))])
    device = rng.choice(list(DEVICES))
    return [
        user_id(rng.randint(1, users)), f"SESI_{rng.randint(1, users * 4)}", category, rng.choice(CATEGORIES[category]),
        cost, selling, discount, at.strftime(TIMESTAMP_FORMAT), rng.choice(REFERRERS), device,
        rng.choice(DEVICES[device]), rng.choice(BROWSERS), ".".join(str(rng.randint(1, 254)) for _ in range(4)),
        rng.choice(PAYMENT_METHODS),
    ]


def _bad(rng: random.Random, kind: BadRow, event: list) -> list:
    if kind is BadRow.WRONG_COLUMN_COUNT:
        return event[:-1]
    if kind is BadRow.UNPARSEABLE_NUMBER:
        return event[:5] + ["58,573.0 INR"] + event[6:]
    if kind is BadRow.UNPARSEABLE_TIMESTAMP:
        return event[:7] + [f"{rng.randint(10, 28)}/10/2023 18:46"] + event[8:]
    return event[:4] + [-event[4]] + event[5:]  # NEGATIVE_PRICE


def _profile(rng: random.Random, number: int) -> list:
    return [
        user_id(number), rng.randint(18, 75), rng.choice(GENDERS), rng.choice(EDUCATIONS), rng.choice(MARITAL_STATUSES),
        rng.choice(OCCUPATIONS), ", ".join(rng.sample(INTERESTS, rng.randint(1, 3))), f"user{number}@example.com",
        f"+91-{rng.randint(7_000_000_000, 9_999_999_999)}", rng.choice(CITIES), rng.choice(LANGUAGES),
    ]


def _csv(columns: tuple[str, ...], rows: list[list], header: Header, bom: bool, line_end: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=line_end)
    if header is Header.REORDERED:
        columns, rows = columns[::-1], [row[::-1] if len(row) == len(columns) else row for row in rows]
    if header is not Header.MISSING:
        writer.writerow(columns[:-1] + ("extra",) if header is Header.UNKNOWN_COLUMN else columns)
    writer.writerows(rows)
    return (BOM if bom else b"") + out.getvalue().encode()
