"""The project's settings: each one's name, default and meaning, read from the environment here
and nowhere else, and validated when the definitions load, so a typo fails at once with a clear
error instead of silently leaving a default in place."""

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from dataclasses import field as dataclass_field
from datetime import date
from enum import StrEnum
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pyarrow as pa
import pyarrow.compute as pc

from ecomm_assets.core.costs import PriceTable
from ecomm_assets.core.simulator import every_problem, rate_problem, volume_problem


class OrderSource(StrEnum):
    """Where collections (products, users, carts) and generated orders come from."""

    SYNTHETIC = "synthetic"  # offline and deterministic
    DUMMYJSON = "dummyjson"
    LANDING = "landing"  # nothing generated: the days hold only producers' landed files

    @property
    def generates_orders(self) -> bool:
        return self is not OrderSource.LANDING


class CatalogBackend(StrEnum):
    """The SQL catalog kept in step with the lake."""

    DUCKDB = "duckdb"  # a local file of views
    GLUE = "glue"  # the AWS Glue Data Catalog, for Athena


class Switch(StrEnum):
    ON = "on"
    OFF = "off"


class SettingError(ValueError):
    """An environment variable holds a value its setting does not accept."""


def _choice(kind: type[StrEnum]) -> Callable[[str], StrEnum]:
    def parse(text: str) -> StrEnum:
        try:
            return kind(text.lower())
        except ValueError:
            raise ValueError(f"use one of {', '.join(repr(m.value) for m in kind)}") from None

    return parse


def _non_negative_int(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text):
        raise ValueError("must be a whole number of ASCII digits, not negative")
    return int(text)


def _days_per_run_problem(days: int) -> str | None:
    return "must be at least 1 day (leave it unset for one run per range)" if days < 1 else None


def _decimal(text: str) -> float:
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
        raise ValueError("must be a decimal number written with ASCII digits, e.g. 0.05")
    return float(text)


def _checked(parse: Callable[[str], object], problem: Callable[[object], str | None]) -> Callable[[str], object]:
    """`parse`, then refused with `problem`'s reason when it has one."""
    def checked(text: str) -> object:
        value = parse(text)
        reason = problem(value)
        if reason:
            raise ValueError(reason)
        return value

    return checked


def _time_zone(text: str) -> str:
    """An IANA time zone name (Europe/Berlin, UTC), as the tz database of this machine knows it and
    as Arrow reads it (the purchase log's split converts with Arrow: it knows no posix/, right/ or Factory)."""
    try:
        ZoneInfo(text)
        pc.assume_timezone(pa.array([0], pa.timestamp("s")), timezone=text)
    except (ValueError, ZoneInfoNotFoundError, pa.ArrowInvalid):
        raise ValueError("must be an IANA time zone name such as UTC or Europe/Berlin") from None
    return text


def _price_table(text: str) -> str:
    """A price table file's path, once its prices are read (core/costs.py: PriceTable.from_json)."""
    try:
        PriceTable.from_json(Path(text).read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"cannot read the price table: {error.strerror}") from None
    except ValueError as error:
        raise ValueError(f"not a price table: {error}") from None
    return text


def _day(text: str) -> date:
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        raise ValueError("must be a date written YYYY-MM-DD")
    return date.fromisoformat(text)


@dataclass(frozen=True)
class Settings:
    """One field per environment variable (`ECOMM_<FIELD>`, or as `ENVIRONMENT` names it). The
    defaults here are the only ones: resources take theirs from this class."""

    lake_uri: str = "data/lake"
    source: OrderSource = OrderSource.SYNTHETIC
    dummyjson_url: str = "https://dummyjson.com"
    orders_per_day: int = 1000
    seed: int = 42
    start_date: date = date(2024, 1, 1)
    s3_endpoint_url: str | None = None
    aws_region: str | None = None
    catalog: CatalogBackend = CatalogBackend.DUCKDB
    duckdb_catalog: str = "data/catalog.duckdb"
    glue_database: str = "ecomm"
    glue_endpoint_url: str | None = None
    glue_partition_projection: Switch = Switch.ON
    landing_sensor: Switch = Switch.ON
    purchases_timezone: str = "UTC"
    alerts_path: str = "data/alerts.jsonl"
    alerts_sns_topic_arn: str | None = None
    feed_every_minutes: int = 5
    feed_orders_per_tick: int = 10
    feed_late_rate: float = 0.05
    feed_duplicate_rate: float = 0.02
    feed_days_behind: int = 0
    # A secret: kept out of the settings' repr, so that no log of them shows it.
    pii_hash_key: str | None = dataclass_field(default=None, repr=False)
    price_table: str | None = None
    athena_queries_per_day: int = 1
    # None: a backfill computes its whole range in one run; N: in runs of at most N days (partitions.py).
    backfill_days_per_run: int | None = None

    @classmethod
    def from_environment(cls, environment: Mapping[str, str] = os.environ) -> "Settings":
        values, problems = {}, []
        for field in fields(cls):
            name = environment_name(field.name)
            text = environment.get(name, "").strip()
            # An empty variable (`FOO=` in compose files and CI) is unset: the default applies.
            if not text:
                continue
            try:
                values[field.name] = PARSERS.get(field.name, str)(text)
            except ValueError as error:
                problems.append(f"{name}={environment[name]!r}: {error}")
        settings = None if problems else cls(**values)
        if settings and (problem := volume_problem(settings.feed_every_minutes, settings.feed_orders_per_tick)):
            problems.append(f"{environment_name('feed_orders_per_tick')}={settings.feed_orders_per_tick}: {problem}")
        if problems:
            raise SettingError("invalid settings: " + "; ".join(problems))
        return settings


PARSERS: dict[str, Callable[[str], object]] = {
    "source": _choice(OrderSource),
    "catalog": _choice(CatalogBackend),
    "glue_partition_projection": _choice(Switch),
    "landing_sensor": _choice(Switch),
    "orders_per_day": _non_negative_int,
    "seed": _non_negative_int,
    "athena_queries_per_day": _non_negative_int,
    "price_table": _price_table,
    "start_date": _day,
    "feed_every_minutes": _checked(_non_negative_int, every_problem),
    "feed_orders_per_tick": _non_negative_int,
    "feed_late_rate": _checked(_decimal, rate_problem),
    "feed_duplicate_rate": _checked(_decimal, rate_problem),
    "feed_days_behind": _non_negative_int,
    "backfill_days_per_run": _checked(_non_negative_int, _days_per_run_problem),
    "purchases_timezone": _time_zone,
}
# Settings whose variable is not ECOMM_<FIELD>: AWS's own.
ENVIRONMENT = {"aws_region": "AWS_REGION"}


def environment_name(field: str) -> str:
    return ENVIRONMENT.get(field, f"ECOMM_{field.upper()}")


SETTINGS = Settings.from_environment()
