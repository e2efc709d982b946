"""Data-quality rules as pure functions: (passed, metadata) from days' rows and counts. A rule on
rows gives each day of a batch of days its own outcome from one query, on DuckDB's bounded database
(core/duck.query): a day of any size is read as the query goes, never held whole."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import TypeVar

import pyarrow as pa

from ecomm_assets.core import duck
from ecomm_assets.core.schemas import schema_differences

CheckOutcome = tuple[bool, dict]
K = TypeVar("K")


# A batch of days is one table of their rows, each row's day in DAY (its day's position in the
# batch): the days' Parquet files (duck.ParquetFiles with position=DAY) or an Arrow table. Each rule
# gives every day the outcome it gives that day's rows alone. A table without DAY is one day.
DAY = "__day"
Rows = pa.Table | duck.ParquetFiles


def same_schema(schemas: Mapping[K, pa.Schema]) -> list[list[K]]:
    """Days grouped for batches of one schema each (usually one; a day whose file drifted from the
    others' schema goes with the days that share its schema), each group in the days' order."""
    groups: dict[pa.Schema, list[K]] = {}
    for day, schema in schemas.items():
        groups.setdefault(schema, []).append(day)
    return list(groups.values())


def _has_day(rows: Rows) -> bool:
    return rows.position == DAY if isinstance(rows, duck.ParquetFiles) else DAY in rows.column_names


def per_day(rows: Rows, days: int, aggregations: Mapping[str, str], within: str = "batch") -> list[dict]:
    """Each day's aggregations (name: SQL aggregate) of `within`, a query over `batch` (the rows,
    each with its DAY) that keeps DAY (`batch` itself by default), in one query; a day without rows
    gets what no rows give (counts 0, sums None)."""
    selected = ", ".join(f'{sql} AS "{name}"' for name, sql in aggregations.items())
    batch = f"WITH batch AS (SELECT * {'' if _has_day(rows) else f', 0 AS {DAY}'} FROM rows) "
    figures: list[dict | None] = [None] * days
    for row in duck.query(f"{batch}SELECT {DAY}, {selected} FROM ({within}) GROUP BY {DAY}", rows=rows).to_pylist():
        figures[row.pop(DAY)] = row
    if None in figures:
        empty = duck.query(f"{batch}SELECT {selected} FROM ({within}) WHERE false", rows=rows).to_pylist()[0]
        figures = [empty if day is None else day for day in figures]
    return figures


def count_true(rows: Rows, days: int, **conditions: str) -> list[dict[str, int]]:
    """Each day's rows ("rows") and, for each condition (SQL, on a row), the rows it holds for (a
    null is not counted)."""
    return per_day(rows, days, {"rows": "count(*)", **{name: f"count(*) FILTER (WHERE {sql})" for name, sql in conditions.items()}})


def schema_matches(schema: pa.Schema, contract: pa.Schema) -> CheckOutcome:
    problems = schema_differences(schema, contract)
    return not problems, {"problems": problems, "columns": len(schema)}


def keys_not_null_and_unique(rows: Rows, keys: list[str], days: int = 1) -> list[CheckOutcome]:
    """No key column null, no two rows of a day with the same keys (a null equal to a null): one
    query, grouping each day's rows by their keys."""
    quoted = ", ".join(f'"{key}"' for key in keys)
    counted = per_day(rows, days, {
        "rows": "coalesce(sum(copies), 0)::BIGINT", "distinct": "count(*)",
        **{f"null {key}": f'coalesce(sum(copies) FILTER (WHERE "{key}" IS NULL), 0)::BIGINT' for key in keys},
    }, within=f"SELECT {DAY}, {quoted}, count(*) AS copies FROM batch GROUP BY ALL")
    outcomes = []
    for day in counted:
        nulls = {key: day[f"null {key}"] for key in keys}
        duplicates = day["rows"] - day["distinct"]
        outcomes.append((sum(nulls.values()) == 0 and duplicates == 0, {"null_keys": nulls, "duplicate_keys": duplicates}))
    return outcomes


def quantities_and_prices_valid(lines: Rows, days: int = 1) -> list[CheckOutcome]:
    counted = count_true(lines, days, quantity_not_positive="quantity <= 0", negative_unit_price="unit_price < 0")
    return [(day["quantity_not_positive"] == 0 and day["negative_unit_price"] == 0,
             {"quantity_not_positive": day["quantity_not_positive"], "negative_unit_price": day["negative_unit_price"]})
            for day in counted]


def conservation(records_read: int, loaded: int, quarantined: int, duplicates: int,
                 loaded_name: str = "orders_loaded", dropped_name: str = "duplicates_dropped") -> CheckOutcome:
    balance = records_read - loaded - quarantined - duplicates
    return balance == 0, {
        "records_read": records_read,
        loaded_name: loaded,
        "records_quarantined": quarantined,
        dropped_name: duplicates,
        "unaccounted": balance,
    }


def purchase_values_valid(events: Rows, days: int = 1) -> list[CheckOutcome]:
    """Prices and discounts >= 0, revenue = selling - discount, margin = selling - cost - discount,
    ids not empty (nothing but white space, Unicode's included: the check is not the build's trim)."""
    negative = ("cost_price", "selling_price", "discount")
    empty = ("user_id", "session_id")
    counted = count_true(
        events, days,
        **{f"negative_{c}": f"{c} < 0" for c in negative},
        **{f"empty_{c}": f"regexp_full_match({c}, '[\\s\\p{{Z}}\\x{{0B}}\\x{{85}}]*')" for c in empty},
        wrong_revenue="revenue <> selling_price - discount", wrong_margin="margin <> selling_price - discount - cost_price")
    outcomes = []
    for day in counted:
        negatives = {c: day[f"negative_{c}"] for c in negative}
        empty_ids = {c: day[f"empty_{c}"] for c in empty}
        passed = not any(negatives.values()) and not day["wrong_revenue"] and not day["wrong_margin"] and not any(empty_ids.values())
        outcomes.append((passed, {"negative": negatives, "revenue_not_selling_minus_discount": day["wrong_revenue"],
                                  "margin_not_selling_minus_cost_minus_discount": day["wrong_margin"], "empty_ids": empty_ids}))
    return outcomes


def totals_reconcile(orders: Rows, days: int = 1) -> list[CheckOutcome]:
    counted = count_true(orders, days, not_reconciling="NOT coalesce(reconciles, true)")
    return [(day["not_reconciling"] == 0, {
        "orders": day["rows"],
        "orders_not_reconciling": day["not_reconciling"],
        "share_not_reconciling": round(day["not_reconciling"] / day["rows"], 4) if day["rows"] else 0.0,
    }) for day in counted]


def row_count_normal(rows: int, trailing: list[int], low: float = 0.5, high: float = 2.0, min_days: int = 3) -> CheckOutcome:
    """Is today's row count within [low, high] x the median of the trailing days that exist?"""
    if len(trailing) < min_days:
        return True, {"rows": rows, "trailing_days": len(trailing), "note": f"fewer than {min_days} trailing days"}
    median = statistics.median(trailing)
    ratio = rows / median if median else float("inf") if rows else 1.0
    return low <= ratio <= high, {"rows": rows, "trailing_median": median, "ratio": round(ratio, 3), "trailing_days": len(trailing)}
