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

# A column's description is its field's metadata {"description": ...}: it travels into every Parquet
# file written with the contract, and onto the table's asset page (dagster/column_schema).
DESCRIPTION = "description"


def described(name: str, type_: pa.DataType, description: str, *, nullable: bool = True) -> pa.Field:
    """A contract column with its description (one short sentence, with units)."""
    return pa.field(name, type_, nullable=nullable, metadata={DESCRIPTION: description})


_ID = "trimmed; a number with an integral value is written in plain digits"
_SOURCE = "The raw file the order came from: synthetic, dummyjson, or landing-<landed at>-<file id>."
_ORIGIN = (
    "Where the row comes from: 'snapshot' (the day's collection snapshot) or 'orders' "
    "(an id seen only in the day's orders, described by its latest order line)."
)
_SNAPSHOT_DATE = "The UTC day of the snapshot, or of the orders the id was seen in (the partition)."

ORDER_LINES = pa.schema(
    [
        described("order_id", pa.string(), f"The order's id ({_ID}); unique per UTC day.", nullable=False),
        described("line_number", pa.int32(), "The line's 1-based position in the order's products.", nullable=False),
        described("order_ts", UTC_TS, "When the order was placed (its order_date), in UTC.", nullable=False),
        described("order_date", pa.date32(), "The UTC day of order_ts (the partition).", nullable=False),
        described("customer_id", pa.string(), f"The customer's id ({_ID})."),
        described("customer_name", pa.string(), "The customer's name, as the order gives it."),
        described("customer_email", pa.string(), "The customer's email address, as the order gives it."),
        described("customer_address", pa.string(), "The customer's street address, as the order gives it."),
        described("customer_city", pa.string(), "The customer's city (its own, else its address's)."),
        described("customer_state", pa.string(), "The customer's state (its own, else its address's)."),
        described("customer_country", pa.string(), "The customer's country (its own, else its address's)."),
        described("product_id", pa.string(), f"The product's id ({_ID}).", nullable=False),
        described("product_name", pa.string(), "The product's name, as the order line gives it."),
        described("category", pa.string(), "The product's category, as the order line gives it."),
        described("brand", pa.string(), "The product's brand, as the order line gives it."),
        described("unit_price", UNIT_PRICE, "Price of one unit, in currency units, to 4 decimals.", nullable=False),
        described("quantity", pa.int32(), "Units bought on the line, from 1 to 2^31 - 1.", nullable=False),
        described("line_total", MONEY,
                  "unit_price x quantity, in currency units, rounded once to the cent (half away from zero).",
                  nullable=False),
        described("discount_percent", PERCENT,
                  "The line's discount as the source gives it, in percent (12.50 = 12.5 %), rounded to 2 decimals."),
        described("order_total", MONEY,
                  "The order's total as the source reports it (on each line), in currency units, rounded to the cent."),
        described("year", pa.int16(), "Year of order_ts, in UTC.", nullable=False),
        described("month", pa.int8(), "Month of order_ts, in UTC: 1-12.", nullable=False),
        described("day", pa.int8(), "Day of the month of order_ts, in UTC: 1-31.", nullable=False),
        described("hour", pa.int8(), "Hour of order_ts, in UTC: 0-23.", nullable=False),
        described("day_of_week", pa.int8(), "Day of the week of order_ts, in UTC: 0 = Monday to 6 = Sunday.",
                  nullable=False),
        described("source", pa.string(), _SOURCE, nullable=False),
    ]
)

ORDERS = pa.schema(
    [
        described("order_id", pa.string(), "The order's id; unique per UTC day.", nullable=False),
        described("order_ts", UTC_TS, "When the order was placed, in UTC.", nullable=False),
        described("order_date", pa.date32(), "The UTC day of order_ts (the partition).", nullable=False),
        described("customer_id", pa.string(), "The customer's id, from the order's lines."),
        described("customer_name", pa.string(), "The customer's name, from the order's lines."),
        described("customer_email", pa.string(), "The customer's email address, from the order's lines."),
        described("customer_country", pa.string(), "The customer's country, from the order's lines."),
        described("items", pa.int32(), "Number of lines (products) in the order.", nullable=False),
        described("units", pa.int64(), "Units bought: the sum of the lines' quantities.", nullable=False),
        described("items_total", MONEY, "Sum of the lines' line_total, in currency units.", nullable=False),
        described("reported_total", MONEY,
                  "The order's total as the source reports it, in currency units, to the cent; null if absent."),
        described("total_difference", MONEY,
                  "reported_total - items_total, in currency units; null when no total is reported."),
        described("reconciles", pa.bool_(),
                  "Whether reported_total equals items_total; null when no total is reported."),
        described("source", pa.string(), _SOURCE, nullable=False),
    ]
)

DIM_PRODUCTS = pa.schema(
    [
        described("product_id", pa.string(), "The product's id; unique per snapshot_date.", nullable=False),
        described("name", pa.string(), "The product's name (its title in the day's snapshot, or its latest order line's name)."),
        described("category", pa.string(), "The product's category."),
        described("brand", pa.string(), "The product's brand."),
        described("price", MONEY,
                  "Price of one unit (the snapshot's, or the latest order line's), in currency units, to the cent."),
        described("discount_percent", PERCENT, "The product's discount, in percent (12.50 = 12.5 %)."),
        described("rating", pa.float64(), "The snapshot's average customer rating, 0-5; null for origin 'orders'."),
        described("stock", pa.int64(), "Units in stock in the snapshot; null for origin 'orders'."),
        described("origin", pa.string(), _ORIGIN, nullable=False),
        described("snapshot_date", pa.date32(), _SNAPSHOT_DATE, nullable=False),
    ]
)

DIM_CUSTOMERS = pa.schema(
    [
        described("customer_id", pa.string(), "The customer's id; unique per snapshot_date.", nullable=False),
        described("name", pa.string(), "The customer's full name (first and last name, or the latest order line's)."),
        described("email", pa.string(), "The customer's email address."),
        described("address", pa.string(), "The customer's street address."),
        described("city", pa.string(), "The customer's city."),
        described("state", pa.string(), "The customer's state."),
        described("postal_code", pa.string(), "The customer's postal code; null for origin 'orders'."),
        described("country", pa.string(), "The customer's country."),
        described("origin", pa.string(), _ORIGIN, nullable=False),
        described("snapshot_date", pa.date32(), _SNAPSHOT_DATE, nullable=False),
    ]
)

CONTRACTS: dict[str, pa.Schema] = {
    "order_lines": ORDER_LINES,
    "orders": ORDERS,
    "dim_products": DIM_PRODUCTS,
    "dim_customers": DIM_CUSTOMERS,
}

_DAY = "The UTC day of the orders (the partition)."

TOP_CUSTOMERS = 20  # rows of top_customers per day

# The analytics tables (core/analytics.py computes them).
ANALYTICS: dict[str, pa.Schema] = {
    "sales_by_category": pa.schema(
        [
            described("order_date", pa.date32(), _DAY),
            described("category", pa.string(), "The product category (null for lines without one)."),
            described("orders", pa.int64(), "Orders with at least one line in the category."),
            described("units", pa.int64(), "Units sold in the category."),
            described("revenue", MONEY, "Sum of the category's line totals, in currency units."),
            described("revenue_share", pa.float64(),
                      "The category's fraction (0..1) of the day's revenue; null when the day's revenue is 0."),
        ]
    ),
    "product_performance": pa.schema(
        [
            described("order_date", pa.date32(), _DAY),
            described("product_id", pa.string(), "The product's id."),
            described("product_name", pa.string(), "The product's name, from one of its order lines."),
            described("category", pa.string(), "The product's category, from one of its order lines."),
            described("orders", pa.int64(), "Orders with at least one line of the product."),
            described("units", pa.int64(), "Units of the product sold."),
            described("revenue", MONEY, "Sum of the product's line totals, in currency units."),
            described("average_unit_price", MONEY,
                      "revenue / units, in currency units, rounded to the cent (half away from zero)."),
        ]
    ),
    "top_customers": pa.schema(
        [
            described("order_date", pa.date32(), _DAY),
            described("rank", pa.int32(),
                      f"The customer's place by the day's revenue, 1 (highest) to {TOP_CUSTOMERS}; "
                      "ties go to the lower customer_id."),
            described("customer_id", pa.string(), "The customer's id."),
            described("customer_name", pa.string(), "The customer's name, from one of the customer's order lines."),
            described("orders", pa.int64(), "The customer's orders of the day."),
            described("units", pa.int64(), "Units the customer bought."),
            described("revenue", MONEY, "Sum of the customer's line totals, in currency units."),
        ]
    ),
    "daily_order_summary": pa.schema(
        [
            described("order_date", pa.date32(), "The UTC day (the partition); a day without orders has zeros."),
            described("orders", pa.int64(), "Orders of the day."),
            described("customers", pa.int64(), "Distinct customers (by customer_id) who ordered."),
            described("units", pa.int64(), "Units sold."),
            described("revenue", MONEY, "Sum of the orders' items_total (their line totals), in currency units."),
            described("average_order_value", MONEY,
                      "revenue / orders, in currency units, rounded to the cent (half away from zero); "
                      "0 without orders."),
            described("orders_not_reconciling", pa.int64(),
                      "Orders whose reported total differs from their items_total."),
            described("share_not_reconciling", pa.float64(),
                      "orders_not_reconciling / orders, a fraction 0..1; 0 without orders."),
        ]
    ),
}

# Every day-partitioned table of the lake: what the SQL catalog registers and the checks check.
LAKE_TABLES: dict[str, pa.Schema] = {**CONTRACTS, **ANALYTICS}

# landed_files: one row per landed file version, written by the ingest (not a daily lake table).
LANDED_FILES = pa.schema(
    [
        described("file", pa.string(), "The landed file's name, relative to landing/orders/.", nullable=False),
        described("file_id", pa.string(),
                  "The content's identity: the first 16 hex digits of the SHA-256 of the file's bytes.",
                  nullable=False),
        described("landed_at", UTC_TS, "When the file landed (S3 LastModified, or the file's mtime), in UTC.",
                  nullable=False),
        described("bytes", pa.int64(), "Size of the file as landed (compressed, for .gz), in bytes.", nullable=False),
        described("records_read", pa.int64(), "Records read from the file: routed + quarantined.", nullable=False),
        described("records_routed", pa.int64(), "Records written to raw day files (raw/orders/dt=D/).",
                  nullable=False),
        described("records_quarantined", pa.int64(),
                  "Records quarantined, with reasons, in quarantine/landing/<file id>/.", nullable=False),
        described("file_error", pa.string(),
                  "Why the whole file was quarantined (unreadable, or its days not writable); null otherwise."),
        # JSON, not a map: Glue has no map type here.
        described("days", pa.string(), 'Records routed per UTC day, as a JSON object {"YYYY-MM-DD": records}.',
                  nullable=False),
        described("ingested_at", UTC_TS, "When the ingest recorded the file, in UTC.", nullable=False),
        described("run_id", pa.string(), "The id of the Dagster run that ingested the file.", nullable=False),
    ]
)


_ESTIMATED_ON = "The UTC day the estimate was made (the partition)."
# The usage asset's tables: what the steps did, per day, and the monthly bill it comes to.
USAGE_TABLES: dict[str, pa.Schema] = {
    "usage_by_asset": pa.schema(
        [
            described("estimated_on", pa.date32(), _ESTIMATED_ON, nullable=False),
            described("asset", pa.string(), "The asset whose materializations were measured.", nullable=False),
            described("figure", pa.string(),
                      "What was counted: <area>/objects_written, <area>/bytes_written, <area>/objects_read, "
                      "<area>/bytes_read (areas: landing, raw, processed, quarantine, reports, staging, locks), "
                      "s3/<put|copy|list|get|head|delete> (requests), glue/<operation> or glue/calls.",
                      nullable=False),
            described("per_day", pa.float64(),
                      "The figure for one day: its sum over the newest materializations / the days they cover "
                      "(an unpartitioned asset: per run, one run a day).", nullable=False),
            described("days_measured", pa.int64(),
                      "The days the measured materializations cover (an unpartitioned asset: the UTC days they "
                      "happened on).", nullable=False),
        ]
    ),
    "usage_estimate": pa.schema(
        [
            described("estimated_on", pa.date32(), _ESTIMATED_ON, nullable=False),
            described("service", pa.string(), "S3, Glue or Athena.", nullable=False),
            described("item", pa.string(), "What is billed: storage, a request class, or an sql/ query.", nullable=False),
            described("quantity", pa.float64(), "How much of it a month, in `unit`.", nullable=False),
            described("unit", pa.string(), "GB-month, requests, or TB scanned.", nullable=False),
            described("unit_price", pa.float64(), "USD per unit, from the price table.", nullable=False),
            described("monthly_usd", pa.float64(), "quantity x unit_price, less what the free tier covers, in USD.",
                      nullable=False),
            described("basis", pa.string(), "What the quantity assumes.", nullable=False),
            described("prices_as_of", pa.date32(), "The day the price table's prices were taken.", nullable=False),
            described("orders_per_day", pa.int64(), "The configured volume (ECOMM_ORDERS_PER_DAY) when estimated.",
                      nullable=False),
        ]
    ),
}


class MissingDescription(ValueError):
    """A contract column without a description."""


def column_descriptions(schema: pa.Schema) -> dict[str, str]:
    """Each column's description (name -> text), from its field's metadata. MissingDescription,
    naming the column, when one has none or an empty one."""
    descriptions = {}
    for field in schema:
        text = (field.metadata or {}).get(DESCRIPTION.encode(), b"").decode().strip()
        if not text:
            raise MissingDescription(f"column {field.name} has no description")
        descriptions[field.name] = text
    return descriptions


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
