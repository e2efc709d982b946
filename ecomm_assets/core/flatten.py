"""Nested order records (JSON Lines) -> one Parquet file of typed order lines per day, plus
quarantined records and counts.

Vectorized in DuckDB, in two passes at most:
1. Optimistic, all days at once: one streaming query reads every file with declared types,
   flattens and validates, and its rows, in input order, are written as they come to one Parquet
   file per day with exactly the ORDER_LINES contract (duck.DayFiles): the file that goes into
   the lake, written once. A line that breaks a rule comes with line_number 0: its day stops being
   written; one query on the written files finds days with duplicated order ids. Clean days, the
   usual case, cost about one bare read + UNNEST + Parquet write. (One query for a year of days
   takes a seventh of the time of one query per day.)
2. Precise, only for a day with a rejected record, a duplicate or a value of the wrong type: every
   line of the day is read as text, then as a JSON value, so each rejected record (a line that is
   not JSON at all included) keeps its original text and a precise reason, the newest version of
   each order wins, and the optimistic file is replaced. A wrong JSON type, or a line the JSON
   reader refuses, makes the one optimistic query fail for all days: each day then tries its own
   optimistic query first. The text is validated in blocks of PRECISE_BLOCK_BYTES, each block's
   valid lines staged to Parquet; an aggregate over the staged blocks finds the orders with several
   versions across the whole day, and one query gives the day's file without the older ones.
Both passes apply the same rules and produce the same columns.

Memory follows a block, not the day: DuckDB runs with a memory limit (duck.bounded) and spills
its aggregates, joins and sorts to the staging folder: a clean day of 10,000,000 orders (7 GB of
JSON Lines) flattened in under 500 MiB (README, Benchmarks).

Conservation, per day: records_read = orders_loaded + records_quarantined + duplicates_dropped.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ecomm_assets.core import duck
from ecomm_assets.core.records import ORDER_DATE_PATTERN
from ecomm_assets.core.schemas import ORDER_LINES, PERCENT, UNIT_PRICE

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


def _empty(schema: pa.Schema) -> pa.Table:
    # Not schema.empty_table(): that imports pandas, half a second in a fresh process.
    return pa.Table.from_batches([], schema=schema)


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
    line_files: dict[date, str]  # day -> local Parquet file of its rows in input order, exactly the ORDER_LINES contract
    quarantined: pa.Table  # QUARANTINE
    counts: dict[date, DayCounts]
    read_modes: dict[date, str]  # "optimistic" or "precise"

    def lines(self) -> pa.Table:
        """Every day's order lines in one table (reads the files back: for tests and small data)."""
        tables = [pq.read_table(path) for path in self.line_files.values()]
        return pa.concat_tables(tables) if tables else _empty(ORDER_LINES)


# Optimistic read: declared types, so DuckDB never guesses. Every scalar is read as text and
# converted by the same expressions as in the precise pass: money from its decimal text (never
# straight from a binary float), ids canonicalized (core.records). A value of another JSON type
# (text where a struct is declared) or a record the reader refuses makes the read fail: the
# precise pass then says which record and why.
_DECLARED_COLUMNS = {
    "order_id": "VARCHAR",
    "order_date": "VARCHAR",
    "total_amount": "VARCHAR",
    "customer": "STRUCT(customer_id VARCHAR, name VARCHAR, email VARCHAR, "
    "address STRUCT(address VARCHAR, city VARCHAR, state VARCHAR, country VARCHAR), "
    "city VARCHAR, state VARCHAR, country VARCHAR)",
    "products": "STRUCT(product_id VARCHAR, name VARCHAR, category VARCHAR, brand VARCHAR, "
    "price VARCHAR, quantity VARCHAR, discount_percent VARCHAR)[]",
}

# Precise read: every record as a JSON value. Wrong types become precise reasons, not crashes.
# An id is a JSON string or number, kept as its text (as the declared VARCHAR read keeps it).
_SCALAR_TYPES = "('VARCHAR', 'BIGINT', 'UBIGINT', 'DOUBLE')"

# An amount is read exactly to 6 decimals, below 10^12, in int64 arithmetic (twice as fast as wider
# decimals; a line total past 10^12 is computed wide); line totals are bounded by decimal(18,2),
# percentages by decimal(9,2).
_EXACT_MONEY = "DECIMAL(18,6)"
_MONEY_BOUND = "1e12"
_LINE_TOTAL_BOUND = "1e16"
_PERCENT_BOUND = "1e7"
_PERCENT_SQL = f"DECIMAL({PERCENT.precision},{PERCENT.scale})"
_QUANTITY_BOUND = 2**31 - 1
UNIT_PRICE_SQL = f"DECIMAL({UNIT_PRICE.precision},{UNIT_PRICE.scale})"


def _trimmed(text: str) -> str:
    return f"trim({text})"


# Each amount's text is converted once, to its exact value and to a double (for the checks);
# casts from text ignore surrounding spaces by themselves.
def _as_number(value: str, text: str) -> str:
    """The amount as a double, for the checks: from its exact value when the text was one (a cheap
    cast), parsed again only when it was not (to tell NaN and 1e30 from "abc")."""
    return f"CASE WHEN {value} IS NOT NULL THEN {value}::DOUBLE ELSE TRY_CAST({text} AS DOUBLE) END"


def _typed_amount(column: str) -> str:
    value = f"TRY_CAST({column} AS {_EXACT_MONEY})"
    return f"{value} AS {column}_value, {_as_number(value, column)} AS {column}_number"


def _typed_product(p: str) -> str:
    """The product struct `p` with its amounts converted: `price_value`, `price_number`, ... (NULL stays NULL)."""
    fields = ", ".join(
        f"{name}_value := TRY_CAST({p}.{name} AS {_EXACT_MONEY}), "
        f"{name}_number := {_as_number(f'TRY_CAST({p}.{name} AS {_EXACT_MONEY})', f'{p}.{name}')}"
        for name in ("price", "discount_percent")
    )
    return f"CASE WHEN {p} IS NOT NULL THEN struct_insert({p}, {fields}, quantity_number := TRY_CAST({p}.quantity AS DOUBLE)) END"


def _number_problem(text: str, label: str, bound: str, stored_as: str | None = None) -> str:
    """Why an amount is not usable; NULL when it is, or when it is absent. `text` has its
    converted `<text>_value` and `<text>_number` beside it. An amount must also fit `stored_as`
    after rounding, when that type is narrower than the bound says."""
    value, number = f"{text}_value", f"{text}_number"
    return (
        f"CASE WHEN {text} IS NULL THEN NULL "
        # DuckDB's casts accept digit separators ("1_000"); JSON numbers have none.
        f"WHEN {number} IS NULL OR contains({text}, '_') THEN 'non-numeric {label}: ' || {text} "
        f"WHEN isnan({number}) OR isinf({number}) THEN '{label} is not a finite number: ' || {text} "
        f"WHEN {_out_of_range(value, number, bound, stored_as)} THEN '{label} out of range: ' || {text} END"
    )


def _out_of_range(value: str, number: str, bound: str, stored_as: str | None) -> str:
    too_wide = f" OR TRY_CAST({value} AS {stored_as}) IS NULL" if stored_as else ""
    return f"{value} IS NULL OR abs({number}) >= {bound}{too_wide}"


def _number_unusable(text: str, bound: str, stored_as: str | None = None) -> str:
    """Whether _number_problem gives a reason, without building it: an amount that is not a number,
    not finite or too large has no exact value, so the cases before "out of range" are within it."""
    value, number = f"{text}_value", f"{text}_number"
    return f"{text} IS NOT NULL AND (contains({text}, '_') OR {_out_of_range(value, number, bound, stored_as)})"


def _quantity_problem(text: str) -> str:
    number = f"{text}_number"
    return (
        f"CASE WHEN {text} IS NULL THEN 'missing quantity' "
        f"WHEN {number} IS NULL OR contains({text}, '_') THEN 'non-numeric quantity: ' || {text} "
        f"WHEN isnan({number}) OR isinf({number}) THEN 'quantity is not a finite number: ' || {text} "
        f"WHEN {number} <> floor({number}) THEN 'quantity is not a whole number' "
        f"WHEN {number} <= 0 THEN 'quantity <= 0' "
        f"WHEN {number} > {_QUANTITY_BOUND} THEN 'quantity out of range: ' || {text} END"
    )


def _quantity_usable(text: str) -> str:
    """Whether _quantity_problem gives no reason, without building one: a whole number from 1 to
    the bound (NaN compares above every number in DuckDB; infinities fail the bounds)."""
    number = f"{text}_number"
    return (
        f"coalesce(NOT contains({text}, '_') AND {number} >= 1 AND {number} <= {_QUANTITY_BOUND} "
        f"AND {number} = floor({number}), false)"
    )


def _canonical_id(text: str) -> str:
    """Trimmed; a number written with a fraction or an exponent whose value is integral becomes
    that integer in plain digits (1.0, "1.0", 1e0 -> "1"); other texts stay as they are."""
    value = f"TRY_CAST({text} AS DECIMAL(38,9))"
    # Most ids need neither: a cheap test keeps them off the slow path.
    unusual = " OR ".join([*(f"contains({text}, '{c}')" for c in ".eE"), f"prefix({text}, ' ')", f"suffix({text}, ' ')"])
    return (
        f"CASE WHEN NOT ({unusual}) THEN {text} "
        f"WHEN (contains({text}, '.') OR contains(lower({text}), 'e')) AND {value} = trunc({value}) "
        f"THEN CAST(trunc({value}) AS HUGEINT)::VARCHAR ELSE {_trimmed(text)} END"
    )


def _order_ts(text: str) -> str:
    """order_date as TIMESTAMPTZ when it has the one accepted form (core.records), else NULL."""
    return (
        f"CASE WHEN regexp_full_match({text}, '{ORDER_DATE_PATTERN}') THEN TRY_CAST({_trimmed(text)} AS TIMESTAMPTZ) END"
    )


def _repeated_key(json_expr: str) -> str:
    """`duplicate key 'k'` for the first key repeated in a JSON object; NULL when none is."""
    keys = f"json_keys({json_expr})"
    return (
        f"CASE WHEN json_type({json_expr}) = 'OBJECT' THEN 'duplicate key ' || chr(39) || "
        f"list_filter({keys}, lambda k, i: list_position({keys}, k) < i)[1] || chr(39) END"
    )


def _type_problem(json_expr: str, allowed: str, label: str) -> str:
    json_expr = f"({json_expr})"
    return (
        f"CASE WHEN {json_expr} IS NOT NULL AND json_type({json_expr}) NOT IN {allowed} "
        f"AND json_type({json_expr}) <> 'NULL' THEN '{label} has wrong type: ' || json_type({json_expr}) END"
    )


_PRECISE_PRODUCTS = f"""
list_transform(ps, lambda p: struct_pack(
        product_id := CASE WHEN json_type(p -> 'product_id') IN {_SCALAR_TYPES} THEN p ->> 'product_id' END,
        name := p ->> 'name', category := p ->> 'category', brand := p ->> 'brand',
        price := p ->> 'price', quantity := p ->> 'quantity', discount_percent := p ->> 'discount_percent',
        problem := CASE WHEN json_type(p) <> 'OBJECT' THEN 'product is not an object'
                        ELSE coalesce({_repeated_key("p")},
                                      {_type_problem("p -> 'product_id'", _SCALAR_TYPES, "product_id")}) END
    ))
"""

_PRECISE_RECORDS = f"""
WITH raw AS (
    -- Each line as text, then as JSON: a line DuckDB cannot read is a record of its own to quarantine.
    SELECT $file_index::BIGINT AS file_index, record_number, line, TRY_CAST(line AS JSON) AS j FROM block_records
), shaped AS (
    SELECT *,
        CASE WHEN json_type(j -> 'customer') = 'OBJECT' THEN j -> 'customer' END AS c,
        CASE WHEN json_type(j -> 'products') = 'ARRAY' THEN CAST(j -> 'products' AS JSON[]) END AS ps
    FROM raw
)
SELECT file_index, record_number, line AS record,
    CASE WHEN j IS NULL THEN 'malformed JSON' WHEN json_type(j) <> 'OBJECT' THEN 'record is not a JSON object' END AS unreadable,
    CASE WHEN json_type(j -> 'order_id') IN {_SCALAR_TYPES} THEN {_canonical_id("j ->> 'order_id'")} END AS order_id,
    j ->> 'order_date' AS order_date_text,
    j ->> 'total_amount' AS total_amount,
    CASE WHEN json_type(c -> 'customer_id') IN {_SCALAR_TYPES} THEN {_canonical_id("c ->> 'customer_id'")} END AS customer_id,
    c ->> 'name' AS customer_name, c ->> 'email' AS customer_email, c -> 'address' AS address_json,
    c ->> 'city' AS customer_city, c ->> 'state' AS customer_state, c ->> 'country' AS customer_country,
    list_transform({_PRECISE_PRODUCTS}, lambda p: {_typed_product("p")}) AS products,
    list_filter([
        coalesce({_repeated_key("j")}, {_repeated_key("c")}, {_repeated_key("c -> 'address'")}),
        {_type_problem("j -> 'order_id'", _SCALAR_TYPES, "order_id")},
        {_type_problem("c -> 'customer_id'", _SCALAR_TYPES, "customer_id")},
        {_type_problem("j -> 'customer'", "('OBJECT',)", "customer")}
    ], lambda x: x IS NOT NULL) AS type_problems,
    {_type_problem("j -> 'products'", "('ARRAY',)", "products")} AS products_problem
FROM shaped
"""

# The rules, once. Each is (condition that makes the record or line invalid, reason expression);
# conditions of one list exclude each other's cases so a reason is never said twice.
_ORDER_RULES = [
    ("order_id IS NULL OR order_id = ''", "'missing order_id'"),
    ("order_date_text IS NULL", "'missing order_date'"),
    ("order_date_text IS NOT NULL AND order_ts IS NULL", "'unparseable order_date: ' || order_date_text"),
    (
        "CAST(utc_wall AS DATE) <> file_day",
        "'order_date outside partition: ' || CAST(CAST(utc_wall AS DATE) AS VARCHAR) || ' in dt=' || CAST(file_day AS VARCHAR)",
    ),
    ("products IS NULL", "coalesce(products_problem, 'missing products')"),
    ("len(products) = 0", "'no products'"),
    (_number_unusable("total_amount", _MONEY_BOUND), _number_problem("total_amount", "total_amount", _MONEY_BOUND)),
    ("total_amount_value < 0", "'negative total_amount'"),
]
_LINE_RULES = [
    ("p.product_id IS NULL OR trim(p.product_id) = ''", "'missing product_id'"),
    ("p.price IS NULL", "'missing price'"),
    (_number_unusable("p.price", _MONEY_BOUND), _number_problem("p.price", "price", _MONEY_BOUND)),
    ("p.price_value < 0", "'negative price'"),
    (f"NOT {_quantity_usable('p.quantity')}", _quantity_problem("p.quantity")),
    (_number_unusable("p.discount_percent", _PERCENT_BOUND, _PERCENT_SQL),
     _number_problem("p.discount_percent", "discount_percent", _PERCENT_BOUND, _PERCENT_SQL)),
    (f"abs(p.price_number * p.quantity_number) >= {_LINE_TOTAL_BOUND}",
     "'line total out of range: ' || p.price || ' x ' || p.quantity"),
]


def _any_rule_broken(rules: list[tuple[str, str]]) -> str:
    return " OR ".join(f"coalesce({condition}, false)" for condition, _ in rules)


def _suspicious_id(text: str) -> str:
    """A VARCHAR read turns an object, array or boolean into text; such ids send the day to the
    precise pass, which decides from the JSON type (a string id like "true" is then accepted)."""
    return f"coalesce(prefix({text}, '{{') OR prefix({text}, '[') OR {text} IN ('true', 'false'), false)"


# UTC wall-clock time without a time-zone lookup per row: date parts of a naive TIMESTAMP are
# several times cheaper than the same parts of a TIMESTAMPTZ.
_UTC_WALL = "make_timestamp(epoch_us(order_ts))"


def _line_columns(line_number: str) -> str:
    """The ORDER_LINES columns, from a relation with one row per line (`p` is the product). The
    line total is the exact unit price times the quantity, rounded once, half away from zero."""
    quantity = f"CASE WHEN {_quantity_usable('p.quantity')} THEN p.quantity_number::INTEGER END"
    price = f"CASE WHEN abs(p.price_number) < {_MONEY_BOUND} THEN p.price_value END"
    return f"""
    order_id, ({line_number})::INTEGER AS line_number, order_ts, CAST(utc_wall AS DATE) AS order_date,
    customer_id, customer_name, customer_email, customer_address, customer_city, customer_state,
    customer_country, {_canonical_id('p.product_id')} AS product_id, p.name AS product_name, p.category, p.brand,
    CAST({price} AS {UNIT_PRICE_SQL}) AS unit_price, {quantity} AS quantity,
    CASE WHEN abs(p.price_number * p.quantity_number) < {_MONEY_BOUND} THEN CAST({price} * {quantity} AS DECIMAL(18,2))
         WHEN abs(p.price_number * p.quantity_number) < {_LINE_TOTAL_BOUND}
         THEN CAST(CAST({price} AS DECIMAL(38,6)) * {quantity} AS DECIMAL(18,2)) END AS line_total,
    TRY_CAST(p.discount_percent_value AS {_PERCENT_SQL}) AS discount_percent,
    TRY_CAST(total_amount_value AS DECIMAL(18,2)) AS order_total,
    year(utc_wall)::SMALLINT AS year, month(utc_wall)::TINYINT AS month, day(utc_wall)::TINYINT AS day,
    hour(utc_wall)::TINYINT AS hour, (isodow(utc_wall) - 1)::TINYINT AS day_of_week,
    source"""


# zstd at level 1: files about as compact as snappy's best, written faster than at DuckDB's default level.
PARQUET_COPY_OPTIONS = "FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1"

# A record without products still yields one row (p NULL), so no record can vanish in UNNEST. Rows
# come in input order (the files are listed day by day), each with its file's day and source: looked
# up by the file's index, as a join would not keep that order.
_OPTIMISTIC_LINES = f"""
WITH records AS (
    SELECT *, $sources[file_index::BIGINT + 1] AS source, ($days::DATE[])[file_index::BIGINT + 1] AS file_day,
        {_order_ts("order_date")} AS order_ts
    FROM read_json($paths, format='newline_delimited', columns=$columns)
), shaped AS (
    SELECT {_canonical_id("order_id")} AS order_id, order_date AS order_date_text, order_ts,
        {_UTC_WALL} AS utc_wall, file_day, total_amount, {_typed_amount("total_amount")}, source, products,
        {_canonical_id("customer.customer_id")} AS customer_id, customer.name AS customer_name, customer.email AS customer_email,
        customer.address.address AS customer_address,
        coalesce(customer.city, customer.address.city) AS customer_city,
        coalesce(customer.state, customer.address.state) AS customer_state,
        coalesce(customer.country, customer.address.country) AS customer_country
    FROM records
), flagged AS (
    SELECT * EXCLUDE (products), NULL AS products_problem,
        {_any_rule_broken(_ORDER_RULES)} OR {_suspicious_id("order_id")}
            OR {_suspicious_id("customer_id")} AS order_broken,
        UNNEST(CASE WHEN len(products) > 0 THEN products ELSE [NULL] END) AS p,
        generate_subscripts(CASE WHEN len(products) > 0 THEN products ELSE [NULL] END, 1) AS line_number
    FROM shaped
), typed AS (  -- amounts converted after UNNEST: cheaper than inside the lists
    SELECT * REPLACE ({_typed_product("p")} AS p) FROM flagged
)
SELECT {_line_columns(
    f"CASE WHEN order_broken OR p IS NULL OR {_any_rule_broken(_LINE_RULES)} "
    f"OR {_suspicious_id('p.product_id')} THEN 0 ELSE line_number END"
)}, file_day
FROM typed
"""

# Counts of the optimistic files: duplicated order ids show as fewer orders than first lines. Ids
# are counted by their 64-bit hashes, several times cheaper than the texts on a large day: a
# collision (about one in 10^6 for a day of 10^7 orders) only sends the day to the precise pass,
# which compares the ids themselves.
_OPTIMISTIC_COUNTS = """
SELECT filename, count(*) FILTER (WHERE line_number = 1), count(DISTINCT hash(order_id)), count(*)
FROM read_parquet($files, filename=true) GROUP BY ALL
"""


def _reasons() -> str:
    """SQL for a record's list of reasons (empty when it is valid)."""
    order_reasons = ", ".join(f"CASE WHEN {c} THEN {r} END" for c, r in _ORDER_RULES)
    line_reason = " ".join(
        f"WHEN {c} THEN 'line ' || i || ': ' || {r}" for c, r in [("p.problem IS NOT NULL", "p.problem"), *_LINE_RULES]
    )
    return (
        f"type_problems || list_filter([{order_reasons}], lambda x: x IS NOT NULL) || coalesce(list_filter("
        f"list_transform(products, lambda p, i: CASE {line_reason} END), lambda x: x IS NOT NULL), [])"
    )


_VALIDATE = f"""
CREATE OR REPLACE TEMP TABLE validated AS
WITH records AS ({_PRECISE_RECORDS}), parsed AS (
    SELECT r.*, f.day AS file_day, f.source, {_order_ts("order_date_text")} AS order_ts, {_typed_amount("total_amount")}
    FROM records r JOIN files f USING (file_index)
), shaped AS (
    SELECT * EXCLUDE (address_json, customer_city, customer_state, customer_country), {_UTC_WALL} AS utc_wall,
        CASE WHEN json_type(address_json) = 'OBJECT' THEN address_json ->> 'address' ELSE address_json ->> '$' END
            AS customer_address,
        coalesce(customer_city, address_json ->> 'city') AS customer_city,
        coalesce(customer_state, address_json ->> 'state') AS customer_state,
        coalesce(customer_country, address_json ->> 'country') AS customer_country
    FROM parsed
)
SELECT *, CASE WHEN unreadable IS NOT NULL THEN [unreadable] ELSE {_reasons()} END AS reasons FROM shaped
"""

# A block's valid records, one row per line, with where each record was in the day's files.
_STAGE_BLOCK = f"""
COPY (
    WITH lines AS (
        SELECT v.* EXCLUDE (products), UNNEST(products) AS p, generate_subscripts(products, 1) AS line_number
        FROM validated v WHERE len(reasons) = 0
    )
    SELECT file_index, record_number, {_line_columns("line_number")} FROM lines ORDER BY record_number, line_number
) TO $out ({PARQUET_COPY_OPTIONS})
"""

# A record's place in the day: a later file, then a later record in the file, is newer.
_RECORD_PLACE = "file_index * 1099511627776 + record_number"  # 2^40 records a file

# The orders valid in more than one version over the whole day, with the place of the newest:
# an aggregate DuckDB spills to disk, so the day's size does not bound it by memory.
_DUPLICATED = f"""
CREATE OR REPLACE TEMP TABLE duplicated AS
SELECT order_id, max({_RECORD_PLACE}) AS newest, count(*) AS versions
FROM read_parquet($blocks) WHERE line_number = 1 GROUP BY order_id HAVING count(*) > 1
"""

# The day's lines in input order: the staged blocks already are, unless a newer version of a
# record must be dropped (then sorted back, with spilling).
_OLDER_VERSIONS_DROPPED = f"""
    WHERE NOT EXISTS (SELECT 1 FROM duplicated d WHERE d.order_id = b.order_id AND d.newest <> {_RECORD_PLACE})
    ORDER BY file_index, record_number, line_number"""
_PRECISE_LINES = {
    duplicates: f"""
SELECT * EXCLUDE (file_index, record_number) FROM read_parquet($blocks) b {_OLDER_VERSIONS_DROPPED if duplicates else ""}
"""
    for duplicates in (False, True)
}

_QUARANTINED = """
SELECT file_day AS day, source, record_number, order_id, array_to_string(reasons, '; ') AS reason, record
FROM validated WHERE len(reasons) > 0
ORDER BY record_number
"""

_BLOCK_COUNTS = """
SELECT count(*) AS records, count(*) FILTER (WHERE len(reasons) = 0) AS valid FROM validated
"""

# Top reasons are counted by category: the text before ':' without the 'line N: ' prefix.
_REASON_COUNTS = """
SELECT split_part(regexp_replace(reasons[1], '^line [0-9]+: ', ''), ':', 1), count(*)
FROM validated WHERE len(reasons) > 0 GROUP BY ALL
"""


_FILES = """
CREATE OR REPLACE TEMP TABLE files AS
SELECT unnest(range(len($paths))) AS file_index, unnest($paths) AS path, unnest($sources) AS source,
    unnest($days::DATE[]) AS day
"""


def flatten_orders(files: Sequence[RawOrderFile], out_dir: str) -> FlattenResult:
    """Flatten, validate and de-duplicate the order records of `files` (listed oldest first),
    writing one Parquet file per day of the files into `out_dir`."""
    result = FlattenResult({}, _empty(QUARANTINE), {}, {})
    by_day: dict[date, list[RawOrderFile]] = {}
    for f in files:
        by_day.setdefault(f.day, []).append(f)
    quarantined = [_empty(QUARANTINE)]
    with tempfile.TemporaryDirectory(prefix="spill-", dir=out_dir) as spill, duck.bounded(spill) as con:
        clean: dict[date, tuple[str, DayCounts]] = {}
        untried: set[date] = set()
        for days in _batches_of_days(by_day):
            try:
                clean |= _optimistic(con, [f for day in days for f in by_day[day]], out_dir)
            except _WRONG_JSON_TYPE:
                untried.update(days)  # somewhere in these days a value of another JSON type: day by day
        for day, day_files in sorted(by_day.items()):
            if day in clean:
                result.line_files[day], result.counts[day] = clean[day]
                result.read_modes[day] = "optimistic"
                continue
            out, counts, read_mode, rejected = _flatten_day(con, day, day_files, out_dir, try_optimistic=day in untried)
            result.line_files[day], result.counts[day], result.read_modes[day] = out, counts, read_mode
            quarantined.append(rejected)
    result.quarantined = pa.concat_tables(quarantined)
    return result


_WRONG_JSON_TYPE = (duckdb.ConversionException, duckdb.InvalidInputException)

# Input of one optimistic query: a value of another JSON type fails the query, and sends its days
# to be read one by one.
BATCH_INPUT_BYTES = 64 << 20


def _batches_of_days(by_day: dict[date, list[RawOrderFile]]) -> list[list[date]]:
    """Consecutive days in batches of about BATCH_INPUT_BYTES of input (a larger day alone)."""
    batches: list[list[date]] = [[]]
    size = 0
    for day in sorted(by_day):
        day_size = sum(os.path.getsize(f.path) for f in by_day[day])
        if batches[-1] and size + day_size > BATCH_INPUT_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(day)
        size += day_size
    return [days for days in batches if days]


def _flatten_day(
    con: duckdb.DuckDBPyConnection, day: date, files: list[RawOrderFile], out_dir: str, try_optimistic: bool
) -> tuple[str, DayCounts, str, pa.Table]:
    """The day's file of order lines (the contract's schema), counts, read mode and quarantined records."""
    if try_optimistic:
        try:
            clean = _optimistic(con, files, out_dir)
            if day in clean:
                return *clean[day], "optimistic", _empty(QUARANTINE)
        except _WRONG_JSON_TYPE:
            pass  # a value of another JSON type: the precise pass says which record and why
    paths = [f.path for f in files]
    con.execute(_FILES, {"paths": paths, "sources": [f.source for f in files], "days": [day] * len(files)})
    counts, valid, blocks, rejected = DayCounts(), 0, [], [_empty(QUARANTINE)]
    folder = tempfile.mkdtemp(prefix="precise-", dir=out_dir)
    for file_index, path in enumerate(paths):
        records_before = 0
        for text in text_blocks(path, PRECISE_BLOCK_BYTES):
            con.register("block_records", block_records(text, records_before))
            con.execute(_VALIDATE, {"file_index": file_index})
            records, block_valid = con.sql(_BLOCK_COUNTS).fetchall()[0]
            records_before += records
            counts.records_read += records
            counts.quarantined += records - block_valid
            valid += block_valid
            counts.reasons.update(dict(con.sql(_REASON_COUNTS).fetchall()))
            rejected.append(con.sql(_QUARANTINED).to_arrow_table().cast(QUARANTINE))
            blocks.append(os.path.join(folder, f"block-{len(blocks)}.parquet"))
            con.execute(_STAGE_BLOCK, {"out": blocks[-1]})
    con.execute("DROP TABLE IF EXISTS validated")
    with duck.DayFiles(folder, "order_lines", ORDER_LINES) as written:
        if blocks:
            con.execute(_DUPLICATED, {"blocks": blocks})
            counts.duplicates_dropped = con.sql("SELECT coalesce(sum(versions - 1), 0) FROM duplicated").fetchall()[0][0]
            for rows in duck.rows(con, _PRECISE_LINES[counts.duplicates_dropped > 0], {"blocks": blocks}):
                written.write(day, rows)
                counts.lines_loaded += rows.num_rows
            con.execute("DROP TABLE duplicated")
        if day not in written.paths:  # no valid line, or files without a single line of text
            written.empty(day)
    counts.orders_loaded = valid - counts.duplicates_dropped
    for block in blocks:
        os.unlink(block)
    return str(written.paths[day]), counts, "precise", pa.concat_tables(rejected)


# Raw text the precise pass validates at once: its memory follows this, not the size of the day.
PRECISE_BLOCK_BYTES = 8 << 20


def block_records(text: str, records_before: int) -> pa.Table:
    """The records of a block of lines: each line that is not blank, without its line end, and its
    record number in the file (the block's first follows the previous blocks' last). Numbered here,
    not by a window in DuckDB, which would hold every parsed record of the block at once."""
    lines = pc.utf8_rtrim(pc.split_pattern(pa.array([text]), "\n").flatten(), "\r")
    records = lines.filter(pc.not_equal(pc.utf8_trim(lines, " \t"), ""))
    numbers = pa.array(np.arange(records_before + 1, records_before + 1 + len(records), dtype=np.int64))
    return pa.table({"record_number": numbers, "line": records})


def text_blocks(path: str, block_bytes: int) -> Iterator[str]:
    """The file's text in blocks of whole lines, each about `block_bytes` (or one longer line)."""
    with open(path, "rb") as handle:
        rest = b""
        while chunk := handle.read(block_bytes):
            text = rest + chunk
            cut = text.rfind(b"\n") + 1
            if cut:
                yield text[:cut].decode()
            rest = text[cut:]
        if rest:
            yield rest.decode()


def _optimistic(con: duckdb.DuckDBPyConnection, files: Sequence[RawOrderFile], out_dir: str) -> dict[date, tuple[str, DayCounts]]:
    """The optimistic pass over `files`: for each day it loaded cleanly (no rejected line, no
    duplicate), its Parquet file (the contract's schema: moved into the lake as it is) and counts.
    A day missing here needs the precise pass; its rows stop being written at its first rejected line."""
    paths = [f.path for f in files]
    if not paths:
        return {}
    rejecting: set[date] = set()
    with duck.DayFiles(tempfile.mkdtemp(prefix="optimistic-", dir=out_dir), "order_lines", ORDER_LINES) as written:
        params = {"paths": paths, "sources": [f.source for f in files], "days": [f.day for f in files], "columns": _DECLARED_COLUMNS}
        for day, rows in duck.by_day(duck.rows(con, _OPTIMISTIC_LINES, params), "file_day"):
            if day in rejecting:
                continue
            if pc.min(rows["line_number"]).as_py() < 1:
                rejecting.add(day)
                if day in written.paths:
                    written.discard(day)
                continue
            written.write(day, rows.drop_columns(["file_day"]))
    if not written.paths:  # days without a single valid record
        return {}
    day_of = {str(path): day for day, path in written.paths.items()}
    clean = {}
    for filename, records, orders, lines in con.sql(_OPTIMISTIC_COUNTS, params={"files": list(day_of)}).fetchall():
        if records == orders:
            day = day_of[filename]
            clean[day] = (str(written.paths[day]), DayCounts(records_read=records, orders_loaded=orders, lines_loaded=lines))
    return clean
