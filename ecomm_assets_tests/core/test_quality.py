"""The data-quality rules (core/quality.py): exact verdicts and metadata for good and bad inputs."""

import math
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ecomm_assets.core import duck, quality
from ecomm_assets.core.schemas import UNIT_PRICE

CONTRACT = pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("n", pa.int32())])

SCHEMAS = [
    ("exact", CONTRACT, True, []),
    ("retyped", pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("n", pa.int64())]), False,
     ["column n is int64, contract says int32"]),
    ("missing column", pa.schema([pa.field("id", pa.string(), nullable=False)]), False, ["missing column n (int32)"]),
    ("extra column", CONTRACT.append(pa.field("x", pa.string())), False, ["unexpected column x (string)"]),
    ("nullable key", pa.schema([pa.field("id", pa.string()), pa.field("n", pa.int32())]), False,
     ["column id is nullable, contract says not nullable"]),
    ("reordered", pa.schema([pa.field("n", pa.int32()), pa.field("id", pa.string(), nullable=False)]), False,
     ["column order ['n', 'id'] differs from contract ['id', 'n']"]),
]


@pytest.mark.parametrize("label, schema, passed, problems", SCHEMAS, ids=[s[0] for s in SCHEMAS])
def test_schema_matches_names_every_difference(label, schema, passed, problems):
    assert quality.schema_matches(schema, CONTRACT) == (passed, {"problems": problems, "columns": len(schema)})


def keyed(rows: list[tuple]) -> pa.Table:
    return pa.Table.from_pylist([{"order_id": o, "line_number": n} for o, n in rows],
                                schema=pa.schema([("order_id", pa.string()), ("line_number", pa.int32())]))


KEYS = [
    ("unique", [("a", 1), ("a", 2), ("b", 1)], True, {"order_id": 0, "line_number": 0}, 0),
    ("empty table", [], True, {"order_id": 0, "line_number": 0}, 0),
    ("one duplicate", [("a", 1), ("a", 2), ("a", 1)], False, {"order_id": 0, "line_number": 0}, 1),
    ("three of a kind", [("a", 1), ("a", 1), ("a", 1), ("b", 1)], False, {"order_id": 0, "line_number": 0}, 2),
    ("a null key, otherwise unique", [("a", 1), (None, 2)], False, {"order_id": 1, "line_number": 0}, 0),
    ("nulls in both keys", [(None, None), ("a", 1)], False, {"order_id": 1, "line_number": 1}, 0),
    ("two equal rows with a null", [(None, 1), (None, 1)], False, {"order_id": 2, "line_number": 0}, 1),
]


@pytest.mark.parametrize("label, rows, passed, nulls, duplicates", KEYS, ids=[k[0] for k in KEYS])
def test_keys_not_null_and_unique(label, rows, passed, nulls, duplicates):
    outcome = quality.keys_not_null_and_unique(keyed(rows), ["order_id", "line_number"])
    assert outcome == [(passed, {"null_keys": nulls, "duplicate_keys": duplicates})]


def test_a_single_key_is_unique_on_its_own_not_with_other_columns():
    table = keyed([("a", 1), ("a", 2)])
    assert quality.keys_not_null_and_unique(table, ["order_id"]) == [(False, {"null_keys": {"order_id": 0}, "duplicate_keys": 1})]


def lines(quantities: list, prices: list) -> pa.Table:
    return pa.table({
        "quantity": pa.array(quantities, pa.int32()),
        "unit_price": pa.array([None if p is None else Decimal(p) for p in prices], UNIT_PRICE),
    })


LINES = [
    ("valid", [1, 3], ["0.0100", "5"], True, 0, 0),
    ("a free item is valid", [1], ["0"], True, 0, 0),
    ("empty table", [], [], True, 0, 0),
    ("zero quantity", [1, 0], ["1", "1"], False, 1, 0),
    ("negative quantity", [-2], ["1"], False, 1, 0),
    ("negative price", [1, 1], ["1", "-0.0001"], False, 0, 1),
    ("both, on two lines", [0, 1, -1], ["-1", "-2", "3"], False, 2, 2),
    # Nulls are the contract's business (conform refuses them): this rule counts only values.
    ("nulls", [None, 1], ["1", None], True, 0, 0),
]


@pytest.mark.parametrize("label, quantities, prices, passed, bad_quantity, bad_price", LINES, ids=[c[0] for c in LINES])
def test_quantities_and_prices_valid(label, quantities, prices, passed, bad_quantity, bad_price):
    assert quality.quantities_and_prices_valid(lines(quantities, prices)) == [(
        passed, {"quantity_not_positive": bad_quantity, "negative_unit_price": bad_price})]


CONSERVATION = [
    ("balanced", (10, 7, 2, 1), True, 0),
    ("nothing read", (0, 0, 0, 0), True, 0),
    ("a record lost", (11, 7, 2, 1), False, 1),
    ("a record invented", (9, 7, 2, 1), False, -1),
    ("counted twice: loaded and quarantined", (10, 8, 2, 1), False, -1),
    ("all quarantined", (5, 0, 5, 0), True, 0),
]


@pytest.mark.parametrize("label, counts, passed, unaccounted", CONSERVATION, ids=[c[0] for c in CONSERVATION])
def test_conservation(label, counts, passed, unaccounted):
    read, loaded, quarantined, duplicates = counts
    assert quality.conservation(*counts) == (passed, {
        "records_read": read, "orders_loaded": loaded, "records_quarantined": quarantined,
        "duplicates_dropped": duplicates, "unaccounted": unaccounted,
    })


TOTALS = [
    ("all reconcile", [True, True], True, 0, 0.0),
    ("empty table", [], True, 0, 0.0),
    ("no reported total is not a failure", [None, True], True, 0, 0.0),
    ("one in three", [True, False, None], False, 1, 0.3333),
    ("all off", [False, False], False, 2, 1.0),
]


@pytest.mark.parametrize("label, reconciles, passed, off, share", TOTALS, ids=[t[0] for t in TOTALS])
def test_totals_reconcile(label, reconciles, passed, off, share):
    orders = pa.table({"reconciles": pa.array(reconciles, pa.bool_())})
    assert quality.totals_reconcile(orders) == [(
        passed, {"orders": len(reconciles), "orders_not_reconciling": off, "share_not_reconciling": share})]


ROW_COUNTS = [
    # (label, rows, trailing days, median, passed, ratio)
    ("at the median", 100, [100, 100, 100], 100, True, 1.0),
    ("exactly half: the low bound is inclusive", 50, [100, 100, 100], 100, True, 0.5),
    ("just below half", 49, [100, 100, 100], 100, False, 0.49),
    ("exactly double: the high bound is inclusive", 200, [100, 100, 100], 100, True, 2.0),
    ("just above double", 201, [100, 100, 100], 100, False, 2.01),
    ("no rows after normal days", 0, [100, 100, 100], 100, False, 0.0),
    ("median of an even count", 150, [100, 200, 300, 50], 150.0, True, 1.0),
    ("median, not mean", 30, [10, 10, 1000], 10, False, 3.0),
    ("nothing today after nothing", 0, [0, 0, 0], 0, True, 1.0),
    ("rows after empty days", 5, [0, 0, 0], 0, False, math.inf),
]


@pytest.mark.parametrize("label, rows, trailing, median, passed, ratio", ROW_COUNTS, ids=[r[0] for r in ROW_COUNTS])
def test_row_count_normal(label, rows, trailing, median, passed, ratio):
    assert quality.row_count_normal(rows, trailing) == (
        passed, {"rows": rows, "trailing_median": median, "ratio": ratio, "trailing_days": len(trailing)})


@pytest.mark.parametrize("trailing", [[], [100], [100, 100]], ids=["none", "one", "two"])
def test_row_count_is_not_judged_on_fewer_than_three_days(trailing):
    assert quality.row_count_normal(10_000, trailing) == (
        True, {"rows": 10_000, "trailing_days": len(trailing), "note": "fewer than 3 trailing days"})


def test_row_count_bounds_and_minimum_days_are_parameters():
    assert quality.row_count_normal(150, [100, 100], low=0.9, high=1.4, min_days=2)[0] is False
    assert quality.row_count_normal(140, [100, 100], low=0.9, high=1.4, min_days=2) == (
        True, {"rows": 140, "trailing_median": 100.0, "ratio": 1.4, "trailing_days": 2})


def events(rows: list[tuple]) -> pa.Table:
    """Purchase events of (cost, selling, discount, revenue, margin, user_id)."""
    money = pa.decimal128(12, 2)
    columns = list(zip(*rows)) if rows else [[]] * 6
    return pa.table({
        **{name: pa.array([Decimal(v) if v is not None else None for v in values], money)
           for name, values in zip(("cost_price", "selling_price", "discount", "revenue", "margin"), columns)},
        "user_id": pa.array(columns[5], pa.string()), "session_id": pa.array(["s"] * len(rows), pa.string()),
    })


GOOD_EVENT = ("1", "3", "0.5", "2.5", "1.5", "u")
# Each rule over a batch of days: every day's outcome is the one it gives that day's table alone,
# a bad day among good ones and empty days included (a day without rows is not in a group_by):
# (label, rule, the days' tables, whether each day passes).
BATCHES = [
    ("keys: a duplicate on one day of three", lambda rows, days: quality.keys_not_null_and_unique(rows, ["order_id", "line_number"], days),
     [keyed([("a", 1), ("b", 1)]), keyed([("a", 1), ("a", 1), ("c", 2)]), keyed([("a", 1)])], [True, False, True]),
    ("keys: null keys on one day, an empty day", lambda rows, days: quality.keys_not_null_and_unique(rows, ["order_id", "line_number"], days),
     [keyed([]), keyed([(None, 1), (None, 1), ("a", None)]), keyed([("a", 1), ("a", 2)])], [True, False, True]),
    ("keys: the same key on two days is no duplicate", lambda rows, days: quality.keys_not_null_and_unique(rows, ["order_id"], days),
     [keyed([("a", 1)]), keyed([("a", 1)])], [True, True]),
    ("quantities and prices: one bad day", quality.quantities_and_prices_valid,
     [lines([1, 2], ["1", "2"]), lines([0, None], ["-1", "1"]), lines([], [])], [True, False, True]),
    ("totals: nulls and an empty day", quality.totals_reconcile,
     [pa.table({"reconciles": pa.array(values, pa.bool_())}) for values in ([True, None], [], [False, False, True])],
     [True, True, False]),
    ("purchase values: one bad day", quality.purchase_values_valid,
     [events([GOOD_EVENT]), events([("-1", "3", "0.5", "9", "1.5", " "), GOOD_EVENT]), events([])], [True, False, True]),
]


def as_files(folder, days: list[pa.Table]) -> duck.ParquetFiles:
    """Days' tables as the checks read them: a Parquet file each, a row's day its file's position."""
    paths = [str(folder / f"day-{position}.parquet") for position in range(len(days))]
    for path, table in zip(paths, days):
        pq.write_table(table, path)
    return duck.ParquetFiles(paths, days[0].schema, position=quality.DAY)


@pytest.mark.parametrize("label, rule, days, passed", BATCHES, ids=[b[0] for b in BATCHES])
def test_a_rule_over_a_batch_gives_each_day_its_own_outcome(tmp_path, label, rule, days, passed):
    alone = [rule(day, 1)[0] for day in days]
    assert [outcome[0] for outcome in alone] == passed
    assert rule(as_files(tmp_path, days), len(days)) == alone


def test_days_of_different_schemas_are_batched_apart_in_their_order():
    drifted = keyed([("a", 1)]).cast(pa.schema([("order_id", pa.string()), ("line_number", pa.int64())]))
    schemas = {"d1": keyed([("a", 1)]).schema, "d2": drifted.schema, "d3": keyed([("b", 1)]).schema}
    assert quality.same_schema(schemas) == [["d1", "d3"], ["d2"]]


def test_a_day_larger_than_the_querys_memory_is_checked(tmp_path, monkeypatch):
    """A rule reads a day as the query goes: a day's keys far larger than the database's memory
    limit are still checked, exactly (DuckDB spills; an Arrow group_by would hold them all)."""
    monkeypatch.setattr(duck, "MEMORY_LIMIT", "64MB")
    monkeypatch.setattr(duck, "_databases", {})  # a database opened with that limit
    rows = 3_000_000
    ids = pc.cast(pa.array(np.append(np.arange(rows - 1), 7)), pa.string())  # order 7 twice
    day = pa.table({"order_id": ids, "line_number": pa.array(np.ones(rows, np.int32))})
    outcome = quality.keys_not_null_and_unique(as_files(tmp_path, [day]), ["order_id", "line_number"], 1)
    assert outcome == [(False, {"null_keys": {"order_id": 0, "line_number": 0}, "duplicate_keys": 1})]
