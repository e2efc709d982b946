"""A monthly AWS bill estimate from measured usage (core/usage.py) and a dated price table.

The built-in prices are AWS's us-east-1 list prices as of PRICES_AS_OF, from its public pricing
pages as this project knew them then (not fetched: check them); ECOMM_PRICE_TABLE points to a JSON
file of the same keys to override them. What each line assumes is in its `basis`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import date

from ecomm_assets.core.usage import PREFIX, Request

DAYS_PER_MONTH = 30
GB = 1024**3
TB = 1024**4


@dataclass(frozen=True)
class PriceTable:
    """USD list prices; `as_of` is the day they were taken."""

    as_of: date = date(2024, 6, 1)
    region: str = "us-east-1"
    s3_storage_per_gb_month: float = 0.023  # S3 Standard, first 50 TB
    s3_put_copy_post_list_per_1000: float = 0.005
    s3_get_and_other_per_1000: float = 0.0004  # GET, HEAD, SELECT; DELETE is free
    glue_requests_per_million: float = 1.0
    glue_free_requests_per_month: int = 1_000_000
    athena_per_tb_scanned: float = 5.0
    athena_minimum_bytes_per_query: int = 10 * 1024**2

    @classmethod
    def from_json(cls, text: str) -> PriceTable:
        """A table from a JSON object of some of its keys (others keep the built-in price).
        ValueError names an unknown key or a value of the wrong kind."""
        values = json.loads(text)
        if not isinstance(values, dict):
            raise ValueError("a price table is a JSON object")  # noqa: TRY004 - a bad setting, as every other
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown price keys {unknown}; known: {sorted(known)}")
        parsed = {}
        for key, value in values.items():
            if key == "as_of":
                parsed[key] = date.fromisoformat(value)
            elif key == "region":
                parsed[key] = str(value)
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{key} must be a number, not negative: {value!r}")
            else:
                parsed[key] = value
        return cls(**parsed)

    def as_dict(self) -> dict:
        return {**asdict(self), "as_of": str(self.as_of)}


@dataclass(frozen=True)
class Line:
    service: str
    item: str
    quantity: float
    unit: str
    unit_price: float
    monthly_usd: float
    basis: str


def monthly_estimate(per_day: Mapping[str, float], prices: PriceTable, *, retained_days: int = DAYS_PER_MONTH,
                     query_scans: Mapping[str, float] | None = None, queries_per_day: int = 1,
                     listings_per_day: float = 0) -> list[Line]:
    """A month's lines from a day's figures (`per_day`: usage/... keys, summed over every asset of
    one day), the bytes each query scans per day of data (`query_scans`), how often each query
    runs, and LIST requests made outside the assets (a sensor's polling)."""
    def figure(key: str) -> float:
        return per_day.get(f"{PREFIX}/{key}", 0.0)

    stored_per_day = sum(figure(f"{area}/bytes_written") for area in ("landing", "raw", "processed", "quarantine"))
    stored_gb = stored_per_day * retained_days / GB
    put_class = (figure("s3/put") + figure("s3/copy") + figure("s3/list")) * DAYS_PER_MONTH + listings_per_day * DAYS_PER_MONTH
    get_class = (figure("s3/get") + figure("s3/head")) * DAYS_PER_MONTH
    glue = figure("glue/calls") * DAYS_PER_MONTH
    lines = [
        Line("S3", "storage", stored_gb, "GB-month", prices.s3_storage_per_gb_month,
             stored_gb * prices.s3_storage_per_gb_month,
             f"landing, raw, processed and quarantine bytes of a day x {retained_days} days kept"),
        Line("S3", "PUT, COPY, POST, LIST requests", put_class, "requests", prices.s3_put_copy_post_list_per_1000 / 1000,
             put_class * prices.s3_put_copy_post_list_per_1000 / 1000,
             f"{Request.PUT}, {Request.COPY} and {Request.LIST} of a day's assets"
             + (f", plus {listings_per_day:g} polling LISTs a day" if listings_per_day else "") + f", x {DAYS_PER_MONTH}"),
        Line("S3", "GET, HEAD requests", get_class, "requests", prices.s3_get_and_other_per_1000 / 1000,
             get_class * prices.s3_get_and_other_per_1000 / 1000, f"a day's assets x {DAYS_PER_MONTH}"),
        Line("Glue", "Data Catalog requests", glue, "requests", prices.glue_requests_per_million / 1e6,
             max(0.0, glue - prices.glue_free_requests_per_month) * prices.glue_requests_per_million / 1e6,
             f"a day's catalog calls x {DAYS_PER_MONTH}, the first {prices.glue_free_requests_per_month:,} a month free"),
    ]
    for query, bytes_per_day in sorted((query_scans or {}).items()):
        scanned = max(bytes_per_day * retained_days, prices.athena_minimum_bytes_per_query)
        runs = queries_per_day * DAYS_PER_MONTH
        lines.append(Line("Athena", f"sql/{query}", scanned * runs / TB, "TB scanned", prices.athena_per_tb_scanned,
                          scanned * runs / TB * prices.athena_per_tb_scanned,
                          f"{runs} runs over {retained_days} days of data, at least "
                          f"{prices.athena_minimum_bytes_per_query / 1024**2:g} MiB a query"))
    return lines


def total(lines: list[Line]) -> float:
    return math.fsum(line.monthly_usd for line in lines)


def markdown(lines: list[Line], prices: PriceTable, title: str) -> str:
    rows = [f"**{title}**: ${total(lines):.2f} a month ({prices.region} list prices as of {prices.as_of})", "",
            "| service | item | quantity | unit | USD a month | basis |", "|---|---|---:|---|---:|---|"]
    rows += [f"| {line.service} | {line.item} | {line.quantity:,.4g} | {line.unit} | {line.monthly_usd:.4f} | {line.basis} |"
             for line in lines]
    return "\n".join(rows)
