"""Engagement tables from the day's collection snapshots: product reviews (from the products
snapshot's reviews[]), posts and comments. Each snapshot file is read a batch of its records at a
time and its records numbered in order, so a record's position is exact; every rule is a SQL
expression, and a record that breaks one goes to quarantine with its reasons: records read = rows
loaded + records quarantined. A repeated id (a repeated product id, for reviews) keeps its first
record; the later ones are quarantined as duplicates. DuckDB checks a block of records at a time, a
large day's on a database bounded in memory that spills to disk, its rows and quarantined records
streamed to its files: memory does not follow the size of a day.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import BinaryIO

import duckdb
import numpy as np
import pyarrow as pa

from ecomm_assets.core import duck
from ecomm_assets.core.landing import json_array_elements, json_array_records
from ecomm_assets.core.records import ORDER_DATE_PATTERN
from ecomm_assets.core.schemas import ENGAGEMENT
from ecomm_assets.core.storage import quarantine_lines

QUARANTINE = pa.schema(
    [
        pa.field("day", pa.date32(), nullable=False),
        pa.field("record_number", pa.int64(), nullable=False),  # 1-based position in the snapshot
        pa.field("review_number", pa.int64()),  # reviews only: 1-based position in the product's reviews
        pa.field("id", pa.string()),  # the record's id as read (the product's, for a review)
        pa.field("reason", pa.string(), nullable=False),
        pa.field("record", pa.string(), nullable=False),
    ]
)
COLLECTION = {"product_reviews": "products", "posts": "posts", "comments": "comments"}
# Snapshot text checked at once (a block): DuckDB's memory follows this, not the day (a block's
# records are parsed at once); a larger record is a block of its own.
BLOCK_BYTES = 8 << 20


@dataclass(frozen=True)
class SnapshotFile:
    path: str  # a local JSON file holding one array of records
    day: date


def snapshot_records(table: str, source: BinaryIO) -> int:
    """A table's records in a snapshot of its collection, counted apart from the build (the
    conservation check's count), a block of the snapshot at a time: reviews for product_reviews
    (a reviews value that is not a list is one record; a product that is no object has none), else
    the snapshot's records."""
    if table != "product_reviews":
        return sum(len(elements) for elements in json_array_elements(source, COLLECTION[table]))
    reviews = 0
    for products in json_array_records(source, COLLECTION[table]):
        for product in products:
            if isinstance(product, dict) and product.get("reviews") is not None:
                reviews += len(product["reviews"]) if isinstance(product["reviews"], list) else 1
    return reviews


@dataclass
class EngagementCounts:
    records_read: int = 0
    loaded: int = 0
    quarantined: int = 0
    reasons: Counter = field(default_factory=Counter)

    @property
    def conserved(self) -> bool:
        return self.records_read == self.loaded + self.quarantined

    def as_dict(self) -> dict:
        return {"records_read": self.records_read, "loaded": self.loaded, "quarantined": self.quarantined,
                "reasons": dict(self.reasons.most_common())}


@dataclass
class EngagementResult:
    rows: dict[date, pa.Table | Path]  # each day's rows (none: an empty table), or its Parquet file with exactly the contract
    quarantined: dict[date, Path]  # the JSON Lines of each day's quarantined records (QUARANTINE less `day`), if any
    counts: dict[date, EngagementCounts]


def _id(json_expr: str) -> str:
    """An id as text: a JSON integer in plain digits, or a non-blank string trimmed; else NULL."""
    json_expr = f"({json_expr})"
    return (f"CASE WHEN json_type({json_expr}) IN ('UBIGINT', 'BIGINT') THEN ({json_expr})::VARCHAR "
            f"WHEN json_type({json_expr}) = 'VARCHAR' THEN nullif(trim(json_extract_string({json_expr}, '$')), '') END")


def _whole(json_expr: str) -> str:
    """A JSON number with an integral value as BIGINT; NULL for anything else."""
    json_expr = f"({json_expr})"
    number = f"TRY_CAST(({json_expr})::VARCHAR AS DOUBLE)"
    return (f"CASE WHEN json_type({json_expr}) IN ('UBIGINT', 'BIGINT', 'DOUBLE') AND {number} = floor({number}) "
            f"THEN TRY_CAST({number} AS BIGINT) END")


def _count_problem(json_expr: str, label: str) -> str:
    """Why a count (likes, views) is unusable: present, but not a whole number >= 0."""
    json_expr = f"({json_expr})"
    return (f"CASE WHEN {json_expr} IS NOT NULL AND json_type({json_expr}) <> 'NULL' "
            f"AND coalesce({_whole(json_expr)} < 0, true) THEN '{label} is not a whole number >= 0: ' || ({json_expr})::VARCHAR END")


def _text(json_expr: str) -> str:
    json_expr = f"({json_expr})"
    return f"CASE WHEN json_type({json_expr}) = 'VARCHAR' THEN json_extract_string({json_expr}, '$') END"


# Each table: its columns from `record` (and, for reviews, the product's columns), and its rules,
# each NULL when kept or the reason it is not.
_REVIEW_DATE = "json_extract_string(record, '$.date')"
_TABLES = {
    "product_reviews": {
        "key": "product_id",
        "columns": f"""
            product_id, review_number, {_whole("record -> '$.rating'")} AS rating, {_text("record -> '$.comment'")} AS comment,
            CASE WHEN regexp_full_match({_REVIEW_DATE}, '{ORDER_DATE_PATTERN}') THEN TRY_CAST(trim({_REVIEW_DATE}) AS TIMESTAMPTZ) END
                AS review_ts,
            {_text("record -> '$.reviewerName'")} AS reviewer_name, {_text("record -> '$.reviewerEmail'")} AS reviewer_email,
            category, day AS snapshot_date""",
        "rules": [
            "CASE WHEN product_id IS NULL THEN 'missing or invalid product id' END",
            "CASE WHEN NOT reviews_listed THEN 'reviews is not a list' WHEN json_type(record) <> 'OBJECT' THEN 'review is not an object' END",
            # A review that is no object has no fields: the rule above says why.
            ("CASE WHEN json_type(record) <> 'OBJECT' THEN NULL WHEN coalesce(json_type(record -> '$.rating'), 'NULL') = 'NULL' THEN 'missing rating' "
            "WHEN rating IS NULL THEN 'rating is not a whole number: ' || (record -> '$.rating')::VARCHAR "
            "WHEN rating NOT BETWEEN 1 AND 5 THEN 'rating outside 1-5: ' || rating END"),
            (f"CASE WHEN json_type(record) <> 'OBJECT' THEN NULL WHEN {_REVIEW_DATE} IS NULL THEN 'missing review date' "
            f"WHEN review_ts IS NULL THEN 'unparseable review date: ' || {_REVIEW_DATE} END"),
        ],
    },
    "posts": {
        "key": "post_id",
        "columns": f"""
            {_id("record -> '$.id'")} AS post_id, {_id("record -> '$.userId'")} AS user_id,
            {_text("record -> '$.title'")} AS title, {_text("record -> '$.body'")} AS body,
            CASE WHEN json_type(record -> '$.tags') = 'ARRAY' THEN CAST(json_extract_string(record, '$.tags[*]') AS VARCHAR[]) END AS tags,
            {_whole("record -> '$.reactions.likes'")} AS likes, {_whole("record -> '$.reactions.dislikes'")} AS dislikes,
            {_whole("record -> '$.views'")} AS views, day AS snapshot_date""",
        "rules": [
            "CASE WHEN post_id IS NULL THEN 'missing or invalid post id' END",
            "CASE WHEN user_id IS NULL THEN 'missing or invalid user id' END",
            ("CASE WHEN coalesce(json_type(record -> '$.tags'), 'NULL') NOT IN ('NULL', 'ARRAY') "
            "OR list_bool_or(list_transform(json_extract(record, '$.tags[*]'), lambda t: json_type(t) <> 'VARCHAR')) "
            "THEN 'tags is not a list of strings' END"),
            _count_problem("record -> '$.reactions.likes'", "likes"),
            _count_problem("record -> '$.reactions.dislikes'", "dislikes"),
            _count_problem("record -> '$.views'", "views"),
        ],
    },
    "comments": {
        "key": "comment_id",
        "columns": f"""
            {_id("record -> '$.id'")} AS comment_id, {_id("record -> '$.postId'")} AS post_id,
            {_id("record -> '$.user.id'")} AS user_id, {_text("record -> '$.user.username'")} AS username,
            {_text("record -> '$.user.fullName'")} AS full_name, {_text("record -> '$.body'")} AS body,
            {_whole("record -> '$.likes'")} AS likes, day AS snapshot_date""",
        "rules": [
            "CASE WHEN comment_id IS NULL THEN 'missing or invalid comment id' END",
            "CASE WHEN post_id IS NULL THEN 'missing or invalid post id' END",
            "CASE WHEN user_id IS NULL THEN 'missing or invalid user id' END",
            _count_problem("record -> '$.likes'", "likes"),
        ],
    },
}

# A block's product reviews, one row each; a `reviews` value that is not a list is one record,
# quarantined. A product's fields are extracted in one pass over its text (reading each from the
# whole product would parse its every review again). Stored before they are checked: a query's
# every use of a review would unnest it again.
_REVIEWS = f"""
CREATE OR REPLACE TEMP TABLE reviews AS
WITH fields AS MATERIALIZED (
    SELECT day, record_number, json_extract(record, ['$.id', '$.category', '$.reviews']) AS field FROM block
), products AS (
    SELECT day, record_number, {_id("field[1]")} AS product_id, {_text("field[2]")} AS category,
           field[3] AS reviews, coalesce(json_type(field[3]), 'NULL') IN ('ARRAY', 'NULL') AS reviews_listed
    FROM fields
), listed AS (
    SELECT *, CASE WHEN json_type(reviews) = 'ARRAY' THEN json_extract(reviews, '$[*]')
                   WHEN reviews_listed THEN []::JSON[] ELSE [reviews] END AS review_list
    FROM products
)
SELECT day, record_number, product_id, category, reviews_listed,
       unnest(review_list) AS record, unnest(generate_series(1, len(review_list))) AS review_number
FROM listed
"""

# A block's records (or its reviews) typed, with the rules each breaks (none: NULL). A record's text
# is as written (quarantine takes it compact).
_CHECKED = """
WITH typed AS (SELECT *, {columns} FROM {source})
SELECT *, list_filter([{rules}], lambda r: r IS NOT NULL) AS problems FROM typed
"""

# Each record's reason (NULL: loaded), its text kept for quarantine only. Duplicates are ranked over
# the records' keys alone, joined back: a window over the checked rows would copy them whole.
_VALIDATED = """
CREATE OR REPLACE TEMP TABLE validated AS
WITH ranked AS (SELECT day, record_number, {duplicate_rank} AS duplicate_rank FROM (SELECT DISTINCT {ranked} FROM checked))
SELECT c.* EXCLUDE (record, problems),
       CASE WHEN len(problems) > 0 THEN array_to_string(problems, '; ')
            WHEN duplicate_rank > 1 THEN 'duplicate {key_label}: ' || {key} END AS reason,
       CASE WHEN reason IS NOT NULL THEN record END AS record
FROM checked c JOIN ranked USING (day, record_number)
"""

def _blocks(table: str, files: Sequence[SnapshotFile]) -> Iterator[pa.Table]:
    """The files' records (day, record_number in its file, record: its JSON text) in blocks of about
    BLOCK_BYTES of text, in order, read as they go (core/landing's JSON array splitter); at least one."""
    block, size, blocks = [], 0, 0
    for snapshot in files:
        with open(snapshot.path, "rb") as source:
            numbered, day = 0, (snapshot.day - _EPOCH).days
            try:
                for elements in json_array_elements(source, COLLECTION[table]):
                    block.append(pa.table([_column(pa.date32(), np.full(len(elements), day, np.int32)),
                                           _column(pa.int64(), np.arange(numbered + 1, numbered + 1 + len(elements))),
                                           elements], schema=_BLOCK))
                    numbered += len(elements)
                    size += elements.nbytes
                    if size >= BLOCK_BYTES:
                        yield pa.concat_tables(block)
                        block, size, blocks = [], 0, blocks + 1
            except ValueError as error:  # no array, or a record too large to read: say which day's
                raise ValueError(f"{table}: the {COLLECTION[table]} snapshot of {snapshot.day} cannot be read: {error}") from error
    if block or not blocks:
        yield pa.concat_tables(block) if block else _BLOCK.empty_table()


_BLOCK = pa.schema([pa.field("day", pa.date32()), pa.field("record_number", pa.int64()), pa.field("record", pa.large_string())])
_EPOCH = date(1970, 1, 1)


def _column(type_: pa.DataType, values: np.ndarray) -> pa.Array:
    """A numpy array's values as an Arrow array of `type_` (of their width), over the same memory:
    pa.array would import pandas on its first call, 0.3 s of every step's process."""
    return pa.Array.from_buffers(type_, len(values), [None, pa.py_buffer(values)])


def build_engagement(table: str, files: Sequence[SnapshotFile], out_dir: str) -> EngagementResult:
    """The rows of `table` (product_reviews, posts or comments) from the days' snapshot files of
    its collection, with what was quarantined (JSON Lines files in `out_dir`) and each day's counts.
    Days of more than BLOCK_BYTES of snapshots (a large day) are computed on a database bounded in
    memory that spills into `out_dir`, their rows streamed to a Parquet file per day there; fewer (a
    backfill's days) on a cursor, their rows kept in memory (as small as their input): a database
    costs 30 ms to open and a file a day 2 ms to write, a year's backfill 365 times."""
    spec, reviews, days = _TABLES[table], table == "product_reviews", [f.day for f in files]
    large = sum(os.path.getsize(f.path) for f in files) > BLOCK_BYTES
    with _database(large, out_dir) as con:
        checked = _CHECKED.format(columns=spec["columns"], source="reviews" if reviews else "block", rules=", ".join(spec["rules"]))
        for number, block in enumerate(_blocks(table, files)):
            con.register("block", block)
            if reviews:
                con.execute(_REVIEWS)
            con.execute(("CREATE OR REPLACE TEMP TABLE checked AS " if number == 0 else "INSERT INTO checked ") + checked)
            con.unregister("block")
        if reviews:
            con.execute("DROP TABLE reviews")
        key = spec["key"]
        # A key's first valid record is kept; a review's product must be the first listing of its id.
        ranked, duplicate_rank = (("day, record_number, product_id", "dense_rank() OVER (PARTITION BY day, product_id ORDER BY record_number)")
                                  if reviews else (f"day, record_number, {key}, len(problems) = 0 AS valid",
                                                   f"row_number() OVER (PARTITION BY day, {key}, valid ORDER BY record_number)"))
        con.execute(_VALIDATED.format(ranked=ranked, duplicate_rank=duplicate_rank, key=key, key_label=key.replace("_", " ")))
        con.execute("DROP TABLE checked")
        contract = ENGAGEMENT[table]
        order = "record_number" + (", review_number" if reviews else "")
        rows = duck.by_day(duck.rows(
            con, f"SELECT {', '.join(contract.names)} FROM validated WHERE reason IS NULL ORDER BY snapshot_date, {order}"), "snapshot_date")
        if large:
            with duck.DayFiles(out_dir, table, contract) as written:
                for day, batch in rows:
                    written.write(day, batch)
                for day in sorted(set(days) - set(written.paths)):
                    written.empty(day)
            by_day: dict[date, pa.Table | Path] = dict(written.paths)
        else:
            batches: dict[date, list[pa.RecordBatch]] = {}
            for day, batch in rows:
                batches.setdefault(day, []).append(batch)
            by_day = {day: pa.Table.from_batches(batches[day]) if day in batches else contract.empty_table() for day in days}
        quarantined = _write_quarantined(con, f"""
            SELECT day, record_number, {'review_number' if reviews else 'NULL::BIGINT'} AS review_number,
                   {'product_id' if reviews else _id("record -> '$.id'")} AS id, reason, json(record)::VARCHAR AS record
            FROM validated WHERE reason IS NOT NULL ORDER BY day, {order}""", out_dir, table)
        counts = {day: EngagementCounts() for day in days}
        for day, read, loaded in con.execute(
            "SELECT day, count(*), count(*) FILTER (WHERE reason IS NULL) FROM validated GROUP BY day"
        ).fetchall():
            counts[day].records_read, counts[day].loaded, counts[day].quarantined = read, loaded, read - loaded
        for day, reason, records in con.execute(
            "SELECT day, split_part(reason, ':', 1), count(*) FROM validated WHERE reason IS NOT NULL GROUP BY ALL"
        ).fetchall():
            counts[day].reasons[reason] = records
        return EngagementResult(by_day, quarantined, counts)


@contextlib.contextmanager
def _database(large: bool, out_dir: str) -> Iterator[duckdb.DuckDBPyConnection]:
    if large:
        with tempfile.TemporaryDirectory(prefix="spill-", dir=out_dir) as spill, duck.bounded(spill) as con:
            yield con
    else:
        with duck.connect() as con:
            yield con


def _write_quarantined(con: duckdb.DuckDBPyConnection, sql: str, out_dir: str, table: str) -> dict[date, Path]:
    """The quarantined records `sql` gives (QUARANTINE's columns, day after day), streamed into a
    JSON Lines file per day in `out_dir`, the form quarantine files take."""
    files: dict[date, Path] = {}
    for day, batch in duck.by_day(duck.rows(con, sql), "day"):
        files.setdefault(day, Path(out_dir, f"{table}-quarantined-{day}.jsonl"))
        with open(files[day], "ab") as out:
            out.write(quarantine_lines(pa.Table.from_batches([batch]).cast(QUARANTINE).drop_columns(["day"])))
    return files
