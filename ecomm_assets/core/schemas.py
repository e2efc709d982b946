"""Table contracts: the Arrow schema every partition of a lake table must have, and its
enforcement when a partition is written."""

from __future__ import annotations

import pyarrow as pa

# Money is exact: int64-backed decimal, rounded to the cent on the way in.
MONEY = pa.decimal128(18, 2)
# A unit price keeps a tenth of a cent and more (0.125 stays 0.1250): line totals are computed from
# the exact price, so the unit price's scale only affects how it is stored.
UNIT_PRICE = pa.decimal128(18, 4)
PERCENT = pa.decimal128(9, 2)
UTC_TS = pa.timestamp("us", tz="UTC")

ORDER_LINES = pa.schema(
    [
        pa.field("order_id", pa.string(), nullable=False),
        pa.field("line_number", pa.int32(), nullable=False),
        pa.field("order_ts", UTC_TS, nullable=False),
        pa.field("order_date", pa.date32(), nullable=False),
        pa.field("customer_id", pa.string()),
        pa.field("customer_name", pa.string()),
        pa.field("customer_email", pa.string()),
        pa.field("customer_address", pa.string()),
        pa.field("customer_city", pa.string()),
        pa.field("customer_state", pa.string()),
        pa.field("customer_country", pa.string()),
        pa.field("product_id", pa.string(), nullable=False),
        pa.field("product_name", pa.string()),
        pa.field("category", pa.string()),
        pa.field("brand", pa.string()),
        pa.field("unit_price", UNIT_PRICE, nullable=False),
        pa.field("quantity", pa.int32(), nullable=False),
        pa.field("line_total", MONEY, nullable=False),
        pa.field("discount_percent", PERCENT),
        pa.field("order_total", MONEY),
        pa.field("year", pa.int16(), nullable=False),
        pa.field("month", pa.int8(), nullable=False),
        pa.field("day", pa.int8(), nullable=False),
        pa.field("hour", pa.int8(), nullable=False),
        pa.field("day_of_week", pa.int8(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
    ]
)

ORDERS = pa.schema(
    [
        pa.field("order_id", pa.string(), nullable=False),
        pa.field("order_ts", UTC_TS, nullable=False),
        pa.field("order_date", pa.date32(), nullable=False),
        pa.field("customer_id", pa.string()),
        pa.field("customer_name", pa.string()),
        pa.field("customer_email", pa.string()),
        pa.field("customer_country", pa.string()),
        pa.field("items", pa.int32(), nullable=False),
        pa.field("units", pa.int64(), nullable=False),
        pa.field("items_total", MONEY, nullable=False),
        pa.field("reported_total", MONEY),
        pa.field("total_difference", MONEY),
        pa.field("reconciles", pa.bool_()),
        pa.field("source", pa.string(), nullable=False),
    ]
)

DIM_PRODUCTS = pa.schema(
    [
        pa.field("product_id", pa.string(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("category", pa.string()),
        pa.field("brand", pa.string()),
        pa.field("price", MONEY),
        pa.field("discount_percent", PERCENT),
        pa.field("rating", pa.float64()),
        pa.field("stock", pa.int64()),
        pa.field("origin", pa.string(), nullable=False),
        pa.field("snapshot_date", pa.date32(), nullable=False),
    ]
)

DIM_CUSTOMERS = pa.schema(
    [
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("email", pa.string()),
        pa.field("address", pa.string()),
        pa.field("city", pa.string()),
        pa.field("state", pa.string()),
        pa.field("postal_code", pa.string()),
        pa.field("country", pa.string()),
        pa.field("origin", pa.string(), nullable=False),
        pa.field("snapshot_date", pa.date32(), nullable=False),
    ]
)

CONTRACTS: dict[str, pa.Schema] = {
    "order_lines": ORDER_LINES,
    "orders": ORDERS,
    "dim_products": DIM_PRODUCTS,
    "dim_customers": DIM_CUSTOMERS,
}


def schema_differences(actual: pa.Schema, expected: pa.Schema) -> list[str]:
    """Human-readable differences between a table's schema and its contract (empty when equal):
    names, types, nullability and order of the columns."""
    problems = []
    actual_fields = {f.name: f for f in actual}
    for field in expected:
        got = actual_fields.pop(field.name, None)
        if got is None:
            problems.append(f"missing column {field.name} ({field.type})")
        elif got.type != field.type:
            problems.append(f"column {field.name} is {got.type}, contract says {field.type}")
        elif got.nullable != field.nullable:
            problems.append(f"column {field.name} is {_nullability(got)}, contract says {_nullability(field)}")
    problems.extend(f"unexpected column {name} ({f.type})" for name, f in actual_fields.items())
    if not problems and actual.names != expected.names:
        problems.append(f"column order {actual.names} differs from contract {expected.names}")
    return problems


def _nullability(field: pa.Field) -> str:
    return "nullable" if field.nullable else "not nullable"


class ContractViolation(ValueError):
    """Data that cannot be written as its table's contract says: named by table, day and column."""


def conform(data: pa.Table | pa.RecordBatch, contract: pa.Schema, where: str) -> pa.Table | pa.RecordBatch:
    """`data` with exactly the contract's schema (column order, types, nullability), so that every
    partition of a table, empty or not, reads back with one schema. DuckDB and pyarrow results are
    all-nullable: a null in a column the contract says is never null, a missing or extra column, or
    a value that does not fit the contract's type raises ContractViolation naming `where`
    (table and day) and the column."""
    missing = [name for name in contract.names if name not in data.schema.names]
    unexpected = [name for name in data.schema.names if name not in contract.names]
    if missing or unexpected:
        raise ContractViolation(f"{where}: missing columns {missing}, unexpected columns {unexpected}")
    with_nulls = [f.name for f in contract if not f.nullable and data.column(f.name).null_count]
    if with_nulls:
        counts = ", ".join(f"{name} ({data.column(name).null_count} nulls)" for name in with_nulls)
        raise ContractViolation(f"{where}: null values in columns the contract says are never null: {counts}")
    columns = []
    for field in contract:
        try:
            columns.append(data.column(field.name).cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise ContractViolation(f"{where}: column {field.name} does not fit {field.type}: {error}") from error
    return type(data).from_arrays(columns, schema=contract)
