"""Engagement tables from the day's collection snapshots: product reviews (from the products
snapshot's reviews[]), posts and comments. DuckDB reads each snapshot file whole and unnests its
records in order, so a record's position is exact; every rule is a SQL expression, and a record that
breaks one goes to quarantine with its reasons: records read = rows loaded + records quarantined.
A repeated id (a repeated product id, for reviews) keeps its first record; the later ones are
quarantined as duplicates.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import BinaryIO

import pyarrow as pa

from ecomm_assets.core import duck
from ecomm_assets.core.records import ORDER_DATE_PATTERN
from ecomm_assets.core.schemas import ENGAGEMENT

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


@dataclass(frozen=True)
class SnapshotFile:
    path: str  # a local JSON file holding one array of records
    day: date


def snapshot_records(table: str, source: BinaryIO) -> int:
    """A table's records in a snapshot of its collection, counted apart from the build (the
    conservation check's count): reviews for product_reviews (a reviews value that is not a list is
    one record; a product that is no object has none), else the snapshot's records."""
    records = json.load(source)
    if table == "product_reviews":
        return sum(len(r["reviews"]) if isinstance(r.get("reviews"), list) else r.get("reviews") is not None
                   for r in records if isinstance(r, dict))
    return len(records)


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
    rows: pa.Table  # the table's contract, every day's rows
    quarantined: pa.Table  # QUARANTINE
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

_FILES = "CREATE OR REPLACE TEMP TABLE files AS SELECT unnest($paths) AS path, unnest($days::DATE[]) AS day"

# Every record of every file, in its order.
_RECORDS = """
CREATE OR REPLACE TEMP TABLE records AS
SELECT f.day, unnest(t.items) AS record, unnest(generate_series(1, len(t.items))) AS record_number
FROM (SELECT filename, json_extract(content, '$[*]') AS items FROM read_text($paths)) t JOIN files f ON f.path = t.filename
"""

# A product's reviews, one row each; a `reviews` value that is not a list is one record, quarantined.
_REVIEWS = f"""
CREATE OR REPLACE TEMP TABLE items AS
WITH products AS (
    SELECT day, record_number, {_id("record -> '$.id'")} AS product_id, {_text("record -> '$.category'")} AS category,
           record -> '$.reviews' AS reviews,
           coalesce(json_type(record -> '$.reviews'), 'NULL') IN ('ARRAY', 'NULL') AS reviews_listed
    FROM records
), listed AS (
    SELECT *, CASE WHEN json_type(reviews) = 'ARRAY' THEN json_extract(reviews, '$[*]')
                   WHEN reviews_listed THEN []::JSON[] ELSE [reviews] END AS review_list
    FROM products
)
SELECT day, record_number, product_id, category, reviews_listed,
       unnest(review_list) AS record, unnest(generate_series(1, len(review_list))) AS review_number
FROM listed
"""

_VALIDATED = """
CREATE OR REPLACE TEMP TABLE validated AS
WITH typed AS (SELECT *, {columns} FROM {source}),
checked AS (SELECT *, list_filter([{rules}], lambda r: r IS NOT NULL) AS problems FROM typed)
SELECT *,
       CASE WHEN len(problems) > 0 THEN array_to_string(problems, '; ')
            WHEN {duplicate_rank} > 1 THEN 'duplicate {key_label}: ' || {key} END AS reason
FROM checked
"""


def build_engagement(table: str, files: Sequence[SnapshotFile]) -> EngagementResult:
    """The rows of `table` (product_reviews, posts or comments) from the days' snapshot files of
    its collection, with what was quarantined and each day's counts."""
    spec = _TABLES[table]
    con = duck.connect()
    try:
        paths, days = [f.path for f in files], [f.day for f in files]
        con.execute(_FILES, {"paths": paths, "days": days})
        con.execute(_RECORDS, {"paths": paths})
        reviews = table == "product_reviews"
        if reviews:
            con.execute(_REVIEWS)
        key = spec["key"]
        # A key's first valid record is kept; a review's product must be the first listing of its id.
        duplicate_rank = ("dense_rank() OVER (PARTITION BY day, product_id ORDER BY record_number)" if reviews
                          else f"row_number() OVER (PARTITION BY day, {key}, len(problems) = 0 ORDER BY record_number)")
        con.execute(_VALIDATED.format(columns=spec["columns"], source="items" if reviews else "records",
                                      rules=", ".join(spec["rules"]), duplicate_rank=duplicate_rank, key=key,
                                      key_label=key.replace("_", " ")))
        contract = ENGAGEMENT[table]
        order = "snapshot_date, record_number" + (", review_number" if reviews else "")
        rows = con.sql(f"SELECT {', '.join(contract.names)} FROM validated WHERE reason IS NULL ORDER BY {order}").to_arrow_table()
        quarantined = con.sql(
            f"""SELECT day, record_number, {'review_number' if reviews else 'NULL::BIGINT'} AS review_number,
                       {'product_id' if reviews else _id("record -> '$.id'")} AS id, reason, record::VARCHAR AS record
                FROM validated WHERE reason IS NOT NULL ORDER BY day, record_number{', review_number' if reviews else ''}"""
        ).to_arrow_table().cast(QUARANTINE)
        counts = {day: EngagementCounts() for day in days}
        for day, read, loaded in con.sql(
            "SELECT day, count(*), count(*) FILTER (WHERE reason IS NULL) FROM validated GROUP BY day"
        ).fetchall():
            counts[day].records_read, counts[day].loaded, counts[day].quarantined = read, loaded, read - loaded
        for day, reason, records in con.sql(
            "SELECT day, split_part(reason, ':', 1), count(*) FROM validated WHERE reason IS NOT NULL GROUP BY ALL"
        ).fetchall():
            counts[day].reasons[reason] = records
    finally:
        con.close()
    return EngagementResult(rows, quarantined, counts)
