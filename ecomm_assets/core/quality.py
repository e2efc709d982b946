"""Data-quality rules as pure functions: (passed, metadata) from Arrow tables and counts. A rule on
rows gives each day of a batch of days its own outcome from one vectorized pass."""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Mapping, Sequence
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecomm_assets.core.schemas import schema_differences

CheckOutcome = tuple[bool, dict]
K = TypeVar("K")


# A batch of days is one table of their rows, each row's day in DAY (its day's position in the
# batch): each rule gives every day's outcome from one vectorized pass, the outcome it gives that
# day's table alone. A table without DAY is one day.
DAY = "__day"


def stack(tables: Sequence[pa.Table]) -> pa.Table:
    """Days' tables of one schema as one batch table, each row's day's position in DAY."""
    positions = np.repeat(np.arange(len(tables), dtype=np.int32), [t.num_rows for t in tables])
    return pa.concat_tables(tables).append_column(DAY, pa.array(positions))


def by_schema(tables: Mapping[K, pa.Table]) -> Iterator[tuple[list[K], pa.Table]]:
    """Days' tables stacked in as few batch tables as their schemas allow (usually one; a day whose
    file drifted from the others' schema is stacked with the days that share its schema), each with
    its days in position order."""
    groups: dict[pa.Schema, list[K]] = {}
    for day, table in tables.items():
        groups.setdefault(table.schema, []).append(day)
    for days in groups.values():
        yield days, stack([tables[day] for day in days])


def per_day(rows: pa.Table, days: int, aggregations: list[tuple]) -> list[dict]:
    """Each day's aggregations (pyarrow group_by names: `<column>_<function>`), in one group_by; a
    day without rows gets what an empty table gives (counts 0, sums None)."""
    by = [DAY] if DAY in rows.column_names else []
    figures: list[dict | None] = [None] * days
    for row in rows.group_by(by).aggregate(aggregations).to_pylist():
        figures[row.pop(DAY, 0)] = row
    if None in figures:
        empty = rows.slice(0, 0).group_by([]).aggregate(aggregations).to_pylist()[0]
        figures = [empty if day is None else day for day in figures]
    return figures


def count_true(rows: pa.Table, days: int, **flags: pa.Array | pa.ChunkedArray) -> list[dict[str, int]]:
    """Each day's rows ("rows") and, for each flag (a boolean per row of `rows`), the rows it holds
    for (a null is not counted)."""
    columns = dict(flags)
    if DAY in rows.column_names:
        columns[DAY] = rows[DAY]
    figures = per_day(pa.table(columns) if flags else rows, days, [([], "count_all"), *((name, "sum") for name in flags)])
    return [{"rows": day["count_all"]} | {name: day[f"{name}_sum"] or 0 for name in flags} for day in figures]


def schema_matches(schema: pa.Schema, contract: pa.Schema) -> CheckOutcome:
    problems = schema_differences(schema, contract)
    return not problems, {"problems": problems, "columns": len(schema)}


def keys_not_null_and_unique(rows: pa.Table, keys: list[str], days: int = 1) -> list[CheckOutcome]:
    by = [DAY] if DAY in rows.column_names else []
    counts = per_day(rows, days, [([], "count_all"), *((key, "count", pc.CountOptions(mode="only_null")) for key in keys)])
    distinct = per_day(rows.group_by([*by, *keys]).aggregate([]), days, [([], "count_all")])
    outcomes = []
    for day, groups in zip(counts, distinct):
        nulls = {key: day[f"{key}_count"] for key in keys}
        duplicates = day["count_all"] - groups["count_all"]
        outcomes.append((sum(nulls.values()) == 0 and duplicates == 0, {"null_keys": nulls, "duplicate_keys": duplicates}))
    return outcomes


def quantities_and_prices_valid(lines: pa.Table, days: int = 1) -> list[CheckOutcome]:
    zero_price = pa.scalar(0, lines.schema.field("unit_price").type)
    counted = count_true(lines, days, quantity_not_positive=pc.less_equal(lines["quantity"], 0),
                         negative_unit_price=pc.less(lines["unit_price"], zero_price))
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


def purchase_values_valid(events: pa.Table, days: int = 1) -> list[CheckOutcome]:
    """Prices and discounts >= 0, revenue = selling - discount, margin = selling - cost - discount,
    ids not empty."""
    zero = pa.scalar(0, events.schema.field("cost_price").type)
    revenue = pc.subtract(events["selling_price"], events["discount"])
    margin = pc.subtract(revenue, events["cost_price"])
    negative = ("cost_price", "selling_price", "discount")
    empty = ("user_id", "session_id")
    counted = count_true(
        events, days,
        **{f"negative_{c}": pc.less(events[c], zero) for c in negative},
        **{f"empty_{c}": pc.equal(pc.utf8_trim_whitespace(events[c]), "") for c in empty},
        wrong_revenue=pc.not_equal(events["revenue"], revenue), wrong_margin=pc.not_equal(events["margin"], margin))
    outcomes = []
    for day in counted:
        negatives = {c: day[f"negative_{c}"] for c in negative}
        empty_ids = {c: day[f"empty_{c}"] for c in empty}
        passed = not any(negatives.values()) and not day["wrong_revenue"] and not day["wrong_margin"] and not any(empty_ids.values())
        outcomes.append((passed, {"negative": negatives, "revenue_not_selling_minus_discount": day["wrong_revenue"],
                                  "margin_not_selling_minus_cost_minus_discount": day["wrong_margin"], "empty_ids": empty_ids}))
    return outcomes


def totals_reconcile(orders: pa.Table, days: int = 1) -> list[CheckOutcome]:
    counted = count_true(orders, days, not_reconciling=pc.invert(pc.fill_null(orders["reconciles"], True)))
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
