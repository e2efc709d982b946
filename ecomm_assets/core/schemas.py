"""Table contracts: the Arrow schema every partition of a lake table must have."""

import pyarrow as pa

# Money is exact: int64-backed decimal, rounded to the cent on the way in.
MONEY = pa.decimal128(18, 2)
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
        pa.field("unit_price", MONEY, nullable=False),
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
    """Human-readable differences between a table's schema and its contract (empty when equal)."""
    problems = []
    actual_fields = {f.name: f for f in actual}
    for field in expected:
        got = actual_fields.pop(field.name, None)
        if got is None:
            problems.append(f"missing column {field.name} ({field.type})")
        elif got.type != field.type:
            problems.append(f"column {field.name} is {got.type}, contract says {field.type}")
    problems.extend(f"unexpected column {name} ({f.type})" for name, f in actual_fields.items())
    if not problems and actual.names != expected.names:
        problems.append(f"column order {actual.names} differs from contract {expected.names}")
    return problems
