"""Data-quality rules as pure functions: (passed, metadata) from Arrow tables and counts."""

from __future__ import annotations

import statistics

import pyarrow as pa
import pyarrow.compute as pc

from ecomm_assets.core.schemas import schema_differences

CheckOutcome = tuple[bool, dict]


def schema_matches(table: pa.Table, contract: pa.Schema) -> CheckOutcome:
    problems = schema_differences(table.schema, contract)
    return not problems, {"problems": problems, "columns": len(table.schema)}


def keys_not_null_and_unique(table: pa.Table, keys: list[str]) -> CheckOutcome:
    nulls = {key: table[key].null_count for key in keys}
    if table.num_rows:
        distinct = table.group_by(keys).aggregate([]).num_rows
    else:
        distinct = 0
    duplicates = table.num_rows - distinct
    return sum(nulls.values()) == 0 and duplicates == 0, {"null_keys": nulls, "duplicate_keys": duplicates}


def quantities_and_prices_valid(lines: pa.Table) -> CheckOutcome:
    bad_quantity = pc.sum(pc.less_equal(lines["quantity"], 0)).as_py() or 0
    bad_price = pc.sum(pc.less(lines["unit_price"], pa.scalar(0, lines.schema.field("unit_price").type))).as_py() or 0
    return bad_quantity == 0 and bad_price == 0, {"quantity_not_positive": bad_quantity, "negative_unit_price": bad_price}


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


def purchase_values_valid(events: pa.Table) -> CheckOutcome:
    """Prices and discounts >= 0, revenue = selling - discount, margin = selling - cost - discount,
    ids not empty."""
    zero = pa.scalar(0, events.schema.field("cost_price").type)
    negative = {c: pc.sum(pc.less(events[c], zero)).as_py() or 0 for c in ("cost_price", "selling_price", "discount")}
    revenue = pc.subtract(events["selling_price"], events["discount"])
    margin = pc.subtract(revenue, events["cost_price"])
    wrong_revenue = pc.sum(pc.not_equal(events["revenue"], revenue)).as_py() or 0
    wrong_margin = pc.sum(pc.not_equal(events["margin"], margin)).as_py() or 0
    empty_ids = {c: pc.sum(pc.equal(pc.utf8_trim_whitespace(events[c]), "")).as_py() or 0 for c in ("user_id", "session_id")}
    passed = not any(negative.values()) and not wrong_revenue and not wrong_margin and not any(empty_ids.values())
    return passed, {"negative": negative, "revenue_not_selling_minus_discount": wrong_revenue,
                    "margin_not_selling_minus_cost_minus_discount": wrong_margin, "empty_ids": empty_ids}


def totals_reconcile(orders: pa.Table) -> CheckOutcome:
    not_reconciling = pc.sum(pc.invert(pc.fill_null(orders["reconciles"], True))).as_py() or 0
    return not_reconciling == 0, {
        "orders": orders.num_rows,
        "orders_not_reconciling": not_reconciling,
        "share_not_reconciling": round(not_reconciling / orders.num_rows, 4) if orders.num_rows else 0.0,
    }


def row_count_normal(rows: int, trailing: list[int], low: float = 0.5, high: float = 2.0, min_days: int = 3) -> CheckOutcome:
    """Is today's row count within [low, high] x the median of the trailing days that exist?"""
    if len(trailing) < min_days:
        return True, {"rows": rows, "trailing_days": len(trailing), "note": f"fewer than {min_days} trailing days"}
    median = statistics.median(trailing)
    ratio = rows / median if median else float("inf") if rows else 1.0
    return low <= ratio <= high, {"rows": rows, "trailing_median": median, "ratio": round(ratio, 3), "trailing_days": len(trailing)}
