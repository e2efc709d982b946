"""Nested order records (JSON Lines) -> typed order lines, quarantined records and counts.

Vectorized in DuckDB. Clean files take a strict typed read (the fast path); a file set with any
badly typed or invalid record is read again leniently, as JSON values, so that every rejected
record keeps its original text and every reason is precise. Both reads feed the same rules.

Conservation, per day: records_read = orders_loaded + records_quarantined + duplicates_dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import duckdb
import pyarrow as pa

from ecomm_assets.core.schemas import ORDER_LINES

QUARANTINE = pa.schema(
    [
        pa.field("day", pa.date32(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("record_number", pa.int64(), nullable=False),
        pa.field("order_id", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("record", pa.string(), nullable=False),
    ]
)


@dataclass(frozen=True)
class RawOrderFile:
    """One JSON Lines file of order records, all belonging to `day`; later files are newer."""

    path: str
    day: date
    source: str


@dataclass
class DayCounts:
    records_read: int = 0
    orders_loaded: int = 0
    lines_loaded: int = 0
    quarantined: int = 0
    duplicates_dropped: int = 0
    reasons: Counter = field(default_factory=Counter)

    @property
    def conserved(self) -> bool:
        return self.records_read == self.orders_loaded + self.quarantined + self.duplicates_dropped

    def as_dict(self) -> dict:
        return {
            "records_read": self.records_read,
            "orders_loaded": self.orders_loaded,
            "lines_loaded": self.lines_loaded,
            "quarantined": self.quarantined,
            "duplicates_dropped": self.duplicates_dropped,
            "reasons": dict(self.reasons.most_common()),
        }


@dataclass
class FlattenResult:
    lines: pa.Table  # ORDER_LINES, sorted by order_ts, order_id, line_number
    quarantined: pa.Table  # QUARANTINE
    counts: dict[date, DayCounts]
    read_mode: str  # "strict" or "lenient"


# Strict read: declared types, so DuckDB never guesses (a whole-number first price must not make
# the column BIGINT). Ids are read as JSON: a VARCHAR column would take an object as its text.
_STRICT_COLUMNS = {
    "order_id": "JSON",
    "order_date": "VARCHAR",
    "total_amount": "DECIMAL(18,2)",
    "customer": "STRUCT(customer_id JSON, name VARCHAR, email VARCHAR, address JSON, "
    "city VARCHAR, state VARCHAR, country VARCHAR)",
    "products": "STRUCT(product_id JSON, name VARCHAR, category VARCHAR, brand VARCHAR, "
    "price DECIMAL(18,2), quantity DOUBLE, discount_percent DECIMAL(9,2))[]",
}

# Lenient read: every record as a JSON value. Wrong types become precise reasons, not crashes.
_SCALAR_TYPES = "('VARCHAR', 'BIGINT', 'UBIGINT')"


def _type_problem(json_expr: str, allowed: str, label: str) -> str:
    json_expr = f"({json_expr})"
    return (
        f"CASE WHEN {json_expr} IS NOT NULL AND json_type({json_expr}) NOT IN {allowed} "
        f"AND json_type({json_expr}) <> 'NULL' THEN '{label} has wrong type: ' || json_type({json_expr}) END"
    )


def _scalar_id(json_expr: str) -> str:
    return f"CASE WHEN json_type({json_expr}) IN {_SCALAR_TYPES} THEN ({json_expr}) ->> '$' END"


def _number(json_expr: str, sql_type: str) -> str:
    return f"TRY_CAST(({json_expr}) ->> '$' AS {sql_type})"


def _non_numeric(json_expr: str, label: str) -> str:
    json_expr = f"({json_expr})"
    return (
        f"CASE WHEN {json_expr} IS NOT NULL AND json_type({json_expr}) <> 'NULL' "
        f"AND {_number(json_expr, 'DOUBLE')} IS NULL THEN 'non-numeric {label}: ' || ({json_expr})::VARCHAR END"
    )


_LENIENT_RECORDS = f"""
WITH raw AS (
    SELECT f.file_index, row_number() OVER (PARTITION BY r.filename) AS record_number, r.json AS j
    FROM read_ndjson_objects($paths, filename=true) r
    JOIN files f ON f.path = r.filename
), shaped AS (
    SELECT *,
        CASE WHEN json_type(j -> 'customer') = 'OBJECT' THEN j -> 'customer' END AS c,
        CASE WHEN json_type(j -> 'products') = 'ARRAY' THEN CAST(j -> 'products' AS JSON[]) END AS ps
    FROM raw
)
SELECT file_index, record_number, j::VARCHAR AS record,
    CASE WHEN json_type(j -> 'order_id') IN {_SCALAR_TYPES} THEN j ->> 'order_id' END AS order_id,
    j ->> 'order_date' AS order_date_text,
    {_number("j -> 'total_amount'", "DECIMAL(18,2)")} AS total_amount,
    CASE WHEN json_type(c -> 'customer_id') IN {_SCALAR_TYPES} THEN c ->> 'customer_id' END AS customer_id,
    c ->> 'name' AS customer_name, c ->> 'email' AS customer_email, c -> 'address' AS address_json,
    c ->> 'city' AS customer_city, c ->> 'state' AS customer_state, c ->> 'country' AS customer_country,
    list_transform(ps, lambda p: struct_pack(
        product_id := CASE WHEN json_type(p -> 'product_id') IN {_SCALAR_TYPES} THEN p ->> 'product_id' END,
        name := p ->> 'name', category := p ->> 'category', brand := p ->> 'brand',
        price := {_number("p -> 'price'", "DECIMAL(18,2)")},
        quantity := {_number("p -> 'quantity'", "DOUBLE")},
        discount_percent := {_number("p -> 'discount_percent'", "DECIMAL(9,2)")},
        problem := CASE WHEN json_type(p) <> 'OBJECT' THEN 'product is not an object'
                        ELSE coalesce({_non_numeric("p -> 'price'", "price")},
                                      {_non_numeric("p -> 'quantity'", "quantity")},
                                      {_type_problem("p -> 'product_id'", _SCALAR_TYPES, "product_id")}) END
    )) AS products,
    list_filter([
        CASE WHEN json_type(j) <> 'OBJECT' THEN 'record is not a JSON object' END,
        {_type_problem("j -> 'order_id'", _SCALAR_TYPES, "order_id")},
        {_non_numeric("j -> 'total_amount'", "total_amount")},
        {_type_problem("j -> 'customer'", "('OBJECT',)", "customer")}
    ], lambda x: x IS NOT NULL) AS type_problems,
    {_type_problem("j -> 'products'", "('ARRAY',)", "products")} AS products_problem
FROM shaped
"""

_STRICT_RECORDS = f"""
SELECT f.file_index, row_number() OVER (PARTITION BY r.filename) AS record_number,
       NULL::VARCHAR AS record,
       {_scalar_id("r.order_id")} AS order_id, r.order_date AS order_date_text, r.total_amount,
       {_scalar_id("r.customer.customer_id")} AS customer_id,
       r.customer.name AS customer_name, r.customer.email AS customer_email,
       r.customer.address AS address_json, r.customer.city AS customer_city,
       r.customer.state AS customer_state, r.customer.country AS customer_country,
       list_transform(r.products, lambda p: struct_pack(
           product_id := {_scalar_id("p.product_id")}, name := p.name, category := p.category,
           brand := p.brand, price := p.price, quantity := p.quantity,
           discount_percent := p.discount_percent,
           problem := {_type_problem("p.product_id", _SCALAR_TYPES, "product_id")})) AS products,
       list_filter([
           {_type_problem("r.order_id", _SCALAR_TYPES, "order_id")},
           {_type_problem("r.customer.customer_id", _SCALAR_TYPES, "customer_id")}
       ], lambda x: x IS NOT NULL) AS type_problems,
       NULL::VARCHAR AS products_problem
FROM read_json($paths, format='newline_delimited', columns=$columns, filename=true) r
JOIN files f ON f.path = r.filename
"""

# The rules, once. Each is (condition that makes the record or line invalid, reason expression);
# conditions of one list exclude each other's cases so a reason is never said twice.
_ORDER_RULES = [
    ("order_id IS NULL OR trim(order_id) = ''", "'missing order_id'"),
    ("order_date_text IS NULL", "'missing order_date'"),
    ("order_date_text IS NOT NULL AND order_ts IS NULL", "'unparseable order_date: ' || order_date_text"),
    (
        "CAST(order_ts AS DATE) <> file_day",
        "'order_date outside partition: ' || CAST(CAST(order_ts AS DATE) AS VARCHAR) || ' in dt=' || CAST(file_day AS VARCHAR)",
    ),
    ("products IS NULL", "coalesce(products_problem, 'missing products')"),
    ("len(products) = 0", "'no products'"),
    ("total_amount < 0", "'negative total_amount'"),
]
_LINE_RULES = [
    ("p.problem IS NOT NULL", "p.problem"),
    ("p.product_id IS NULL OR trim(p.product_id) = ''", "'missing product_id'"),
    ("p.price IS NULL", "'missing price'"),
    ("p.price < 0", "'negative price'"),
    ("p.quantity IS NULL", "'missing quantity'"),
    ("p.quantity <> floor(p.quantity)", "'quantity is not a whole number'"),
    ("p.quantity <= 0", "'quantity <= 0'"),
]


def _any_rule_broken(rules: list[tuple[str, str]]) -> str:
    return " OR ".join(f"coalesce({condition}, false)" for condition, _ in rules)


def _reasons(read_mode: str) -> str:
    """SQL for a record's list of reasons; the strict read only needs to know whether it has any."""
    if read_mode == "strict":
        broken = (
            f"len(type_problems) > 0 OR {_any_rule_broken(_ORDER_RULES)} OR "
            f"coalesce(list_bool_or(list_transform(products, lambda p: {_any_rule_broken(_LINE_RULES)})), false)"
        )
        return f"CASE WHEN {broken} THEN ['invalid'] ELSE []::VARCHAR[] END"
    order_reasons = ", ".join(f"CASE WHEN {c} THEN {r} END" for c, r in _ORDER_RULES)
    line_reason = " ".join(f"WHEN {c} THEN 'line ' || i || ': ' || {r}" for c, r in _LINE_RULES)
    return (
        f"type_problems || list_filter([{order_reasons}], lambda x: x IS NOT NULL) || coalesce(list_filter("
        f"list_transform(products, lambda p, i: CASE {line_reason} END), lambda x: x IS NOT NULL), [])"
    )


_VALIDATE = """
CREATE OR REPLACE TEMP TABLE validated AS
WITH records AS ({records}), parsed AS (
    SELECT r.*, f.day AS file_day, f.source, TRY_CAST(order_date_text AS TIMESTAMPTZ) AS order_ts
    FROM records r JOIN files f USING (file_index)
)
SELECT * EXCLUDE (address_json, customer_city, customer_state, customer_country),
    CASE WHEN json_type(address_json) = 'OBJECT' THEN address_json ->> 'address' ELSE address_json ->> '$' END
        AS customer_address,
    coalesce(customer_city, address_json ->> 'city') AS customer_city,
    coalesce(customer_state, address_json ->> 'state') AS customer_state,
    coalesce(customer_country, address_json ->> 'country') AS customer_country,
    {reasons} AS reasons
FROM parsed
"""

# Newest version of each valid order wins: later file, then later record in the file.
_LOADED_LINES = """
WITH newest AS (
    SELECT * FROM validated WHERE len(reasons) = 0
    QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY file_index DESC, record_number DESC) = 1
), lines AS (
    SELECT n.* EXCLUDE (products), UNNEST(products) AS p, generate_subscripts(products, 1) AS line_number
    FROM newest n
)
SELECT
    order_id, line_number::INTEGER AS line_number, order_ts, CAST(order_ts AS DATE) AS order_date,
    customer_id, customer_name, customer_email, customer_address, customer_city, customer_state,
    customer_country, p.product_id, p.name AS product_name, p.category, p.brand,
    p.price AS unit_price, p.quantity::INTEGER AS quantity,
    CAST(p.price * p.quantity::INTEGER AS DECIMAL(18,2)) AS line_total,
    p.discount_percent, total_amount AS order_total,
    year(order_ts)::SMALLINT AS year, month(order_ts)::TINYINT AS month, day(order_ts)::TINYINT AS day,
    hour(order_ts)::TINYINT AS hour, (isodow(order_ts) - 1)::TINYINT AS day_of_week,
    source
FROM lines
ORDER BY order_ts, order_id, line_number
"""

_QUARANTINED = """
SELECT file_day AS day, source, record_number, order_id, array_to_string(reasons, '; ') AS reason, record
FROM validated WHERE len(reasons) > 0
ORDER BY file_index, record_number
"""

_COUNTS = """
SELECT file_day AS day,
       count(*) AS records_read,
       count(*) FILTER (WHERE len(reasons) = 0) AS valid,
       count(DISTINCT order_id) FILTER (WHERE len(reasons) = 0) AS orders_loaded,
       count(*) FILTER (WHERE len(reasons) > 0) AS quarantined
FROM validated GROUP BY file_day
"""

# Top reasons are counted by category: the text before ':' without the 'line N: ' prefix.
_REASON_COUNTS = """
SELECT file_day, split_part(regexp_replace(reasons[1], '^line [0-9]+: ', ''), ':', 1), count(*)
FROM validated WHERE len(reasons) > 0 GROUP BY ALL
"""
def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    # Date parts must be UTC whatever the machine's zone is.
    con.execute("SET TimeZone = 'UTC'")
    return con


def flatten_orders(files: Sequence[RawOrderFile]) -> FlattenResult:
    """Flatten, validate and de-duplicate the order records of `files` (listed oldest first)."""
    con = _connect()
    file_table = pa.table(
        {
            "file_index": pa.array(range(len(files)), pa.int64()),
            "path": [f.path for f in files],
            "day": pa.array([f.day for f in files], pa.date32()),
            "source": [f.source for f in files],
        }
    )
    con.register("files", file_table)
    counts = {f.day: DayCounts() for f in files}
    if not files:
        return FlattenResult(ORDER_LINES.empty_table(), QUARANTINE.empty_table(), counts, "strict")
    paths = [f.path for f in files]

    read_mode = "strict"
    try:
        _validate(con, _STRICT_RECORDS, paths, read_mode)
        has_rejects = con.sql("SELECT count(*) FROM validated WHERE len(reasons) > 0").fetchall()[0][0] > 0
    except (duckdb.ConversionException, duckdb.InvalidInputException):
        has_rejects = True  # a value of the wrong type: the lenient read will say which
    if has_rejects:
        read_mode = "lenient"
        _validate(con, _LENIENT_RECORDS, paths, read_mode)

    lines = con.sql(_LOADED_LINES).to_arrow_table().cast(ORDER_LINES)
    quarantined = con.sql(_QUARANTINED).to_arrow_table().cast(QUARANTINE)
    for day, read, valid, loaded, rejected in con.sql(_COUNTS).fetchall():
        c = counts[day]
        c.records_read, c.orders_loaded, c.quarantined = read, loaded, rejected
        c.duplicates_dropped = valid - loaded
    for day, reason, n in con.sql(_REASON_COUNTS).fetchall():
        counts[day].reasons[reason] = n
    con.register("loaded_lines", lines)
    for day, n in con.sql("SELECT order_date, count(*) FROM loaded_lines GROUP BY ALL").fetchall():
        counts[day].lines_loaded = n
    con.close()
    return FlattenResult(lines, quarantined, counts, read_mode)


def _validate(con: duckdb.DuckDBPyConnection, records_sql: str, paths: list[str], read_mode: str) -> None:
    """Materialize `validated`: one row per record with its derived fields and reasons."""
    params = {"paths": paths} | ({"columns": _STRICT_COLUMNS} if read_mode == "strict" else {})
    con.execute(_VALIDATE.format(records=records_sql, reasons=_reasons(read_mode)), params)
