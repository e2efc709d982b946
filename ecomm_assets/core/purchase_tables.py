"""Typed tables from the raw CSV files of the purchase log and the user profiles (DuckDB over Arrow).

Every raw value is text until here: a record is either loaded typed, quarantined with the first
reason it cannot be, or (purchase events) dropped as an exact duplicate of an earlier one (the same
event delivered twice: the oldest landed copy is kept), (profiles) replaced by a newer profile of
the same user. Those counts add up to the records read.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ecomm_assets.core import duck
from ecomm_assets.core.purchases import (
    EVENT_TS_UTC,
    PURCHASE_COLUMNS,
    USER_PROFILE_COLUMNS,
)
from ecomm_assets.core.schemas import DIM_USER_PROFILES, PURCHASE_EVENTS


@dataclass(frozen=True)
class RawCsvFile:
    path: str  # local
    source: str  # landing-<landed at>-<file id>
    day: date  # the raw dt= partition it is in
    landed_at: datetime


@dataclass
class Counts:
    """What became of a day's (or a profile load's) records: read = loaded + quarantined + dropped."""

    records_read: int = 0
    loaded: int = 0
    quarantined: int = 0
    dropped: int = 0  # duplicates of earlier events, or profiles replaced by newer ones
    reasons: Counter = field(default_factory=Counter)

    @property
    def conserved(self) -> bool:
        return self.records_read == self.loaded + self.quarantined + self.dropped


@dataclass
class Typed:
    table: pa.Table  # the contract's columns
    quarantined: pa.Table  # day, record_number, source, reason, record (a JSON object of the raw values)
    counts: dict[date, Counts]


def _read_raw(files: list[RawCsvFile], columns: tuple[str, ...]) -> pa.Table:
    """Every raw file's rows as text, with where each came from and its place (files in the order given)."""
    tables = []
    for rank, raw in enumerate(files):
        table = pacsv.read_csv(
            raw.path,
            read_options=pacsv.ReadOptions(use_threads=False),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(columns, pa.string()), include_columns=list(columns),
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
        n = table.num_rows
        tables.append(table.append_column("source", pa.array([raw.source] * n, pa.string()))
                      .append_column("file_day", pa.array([raw.day] * n, pa.date32()))
                      .append_column("landed_at", pa.array([raw.landed_at] * n, pa.timestamp("us", tz="UTC")))
                      .append_column("file_rank", pa.array([rank] * n, pa.int32()))
                      .append_column("record_number", pa.array(range(1, n + 1), pa.int64())))
    if tables:
        return pa.concat_tables(tables)
    schema = pa.schema([(c, pa.string()) for c in columns] + [
        ("source", pa.string()), ("file_day", pa.date32()), ("landed_at", pa.timestamp("us", tz="UTC")),
        ("file_rank", pa.int32()), ("record_number", pa.int64())])
    return schema.empty_table()


# A purchase amount is below a trillion currency units: a day's sums of a million such stay in decimal(18,2).
MAX_AMOUNT = 10**12
# What a text is trimmed of, here as in the checks (ASCII white space: utf8_trim_whitespace's too).
_BLANK = " || ".join(["' '", *(f"chr({code})" for code in (9, 10, 11, 12, 13))])


def _trimmed(column: str) -> str:
    return f"trim({column}, {_BLANK})"


def _money(column: str) -> str:
    return f"TRY_CAST({_trimmed(column)} AS DECIMAL(38,2))"


def _money_problem(column: str) -> str:
    return (f"WHEN {_money(column)} IS NULL THEN 'unparseable {column}: ' || {column} "
            f"WHEN {_money(column)} < 0 THEN 'negative {column}: ' || {column} "
            f"WHEN {_money(column)} >= {MAX_AMOUNT} THEN '{column} out of range (>= {MAX_AMOUNT:,}): ' || {column}")


_TYPED_PURCHASES = f"""
    SELECT *,
        CASE WHEN {_trimmed('user_id')} = '' THEN 'missing user_id'
             WHEN {_trimmed('session_id')} = '' THEN 'missing session_id'
             {_money_problem('cost_price')} {_money_problem('selling_price')} {_money_problem('discount')}
             WHEN TRY_STRPTIME({EVENT_TS_UTC}, '%Y-%m-%dT%H:%M:%SZ') IS NULL
                  THEN 'unparseable {EVENT_TS_UTC}: ' || {EVENT_TS_UTC}
        END AS reason
    FROM raw
"""
_KEPT_PURCHASES = f"""
    SELECT *, row_number() OVER (PARTITION BY file_day, {', '.join(PURCHASE_COLUMNS)}
                                 ORDER BY file_rank, record_number) > 1 AS duplicate
    FROM typed WHERE reason IS NULL
"""
_PURCHASE_EVENTS = f"""
    SELECT {_trimmed('user_id')} AS user_id, {_trimmed('session_id')} AS session_id, category, brand,
           {_money('cost_price')} AS cost_price, {_money('selling_price')} AS selling_price,
           {_money('discount')} AS discount,
           {_money('selling_price')} - {_money('discount')} AS revenue,
           {_money('selling_price')} - {_money('cost_price')} - {_money('discount')} AS margin,
           timezone('UTC', strptime({EVENT_TS_UTC}, '%Y-%m-%dT%H:%M:%SZ')) AS event_ts,
           CAST(strptime({EVENT_TS_UTC}, '%Y-%m-%dT%H:%M:%SZ') AS DATE) AS event_date,
           timestamp AS source_timestamp, referrer, device_type, os, browser, ip_address, payment_method, source
    FROM kept WHERE NOT duplicate ORDER BY file_rank, record_number
"""


def _quarantined(con, columns: tuple[str, ...]) -> pa.Table:
    record = "json_object(" + ", ".join(f"'{c}', {c}" for c in columns) + ")"
    return con.sql(f"""
        SELECT file_day AS day, record_number, source, reason, CAST({record} AS VARCHAR) AS record
        FROM typed WHERE reason IS NOT NULL ORDER BY file_rank, record_number
    """).to_arrow_table()


def _counts(days: list[date], read: pa.Table, loaded: pa.Table, quarantined: pa.Table, dropped: pa.Table) -> dict[date, Counts]:
    """Each day's counts: records read from its raw files, loaded (by event_date), quarantined and
    dropped (by the raw file's day)."""
    counts = {day: Counts() for day in days}
    for column, attribute in ((read["file_day"], "records_read"), (loaded["event_date"], "loaded"),
                              (quarantined["day"], "quarantined"), (dropped["file_day"], "dropped")):
        for day, n in _per_day(column).items():
            setattr(counts[day], attribute, n)
    for day, reason in zip(quarantined["day"].to_pylist(), quarantined["reason"].to_pylist()):
        counts[day].reasons[reason.split(": ", 1)[0]] += 1
    return counts


def _per_day(column: pa.ChunkedArray) -> dict[date, int]:
    found = pc.value_counts(column)
    return dict(zip(found.field("values").to_pylist(), found.field("counts").to_pylist()))


def build_purchase_events(files: list[RawCsvFile], days: list[date]) -> Typed:
    """The purchase events of `days` from their raw files (given oldest landed first)."""
    raw = _read_raw(files, (*PURCHASE_COLUMNS, EVENT_TS_UTC))
    con = duck.connect()
    con.register("raw", raw)
    con.execute(f"CREATE TEMP TABLE typed AS {_TYPED_PURCHASES}")
    con.execute(f"CREATE TEMP TABLE kept AS {_KEPT_PURCHASES}")
    events = con.sql(_PURCHASE_EVENTS).to_arrow_table()
    quarantined = _quarantined(con, (*PURCHASE_COLUMNS, EVENT_TS_UTC))
    duplicates = con.sql("SELECT file_day FROM kept WHERE duplicate").to_arrow_table()
    con.close()
    return Typed(events.select(PURCHASE_EVENTS.names), quarantined, _counts(days, raw, events, quarantined, duplicates))


AGE_BAND = """
    CASE WHEN age_years IS NULL THEN NULL WHEN age_years < 18 THEN 'under 18' WHEN age_years < 25 THEN '18-24'
         WHEN age_years < 35 THEN '25-34' WHEN age_years < 45 THEN '35-44' WHEN age_years < 55 THEN '45-54'
         WHEN age_years < 65 THEN '55-64' ELSE '65+' END
"""


def build_dim_user_profiles(files: list[RawCsvFile]) -> tuple[Typed, Counts]:
    """Each user's newest profile (the file that landed last; in one file, its last row) from every
    raw profile file (given oldest landed first), and the load's counts."""
    raw = _read_raw(files, USER_PROFILE_COLUMNS)
    con = duck.connect()
    con.register("raw", raw)
    con.execute(f"""
        CREATE TEMP TABLE typed AS SELECT *,
            CASE WHEN {_trimmed('user_id')} = '' THEN 'missing user_id'
                 WHEN {_trimmed('age')} <> '' AND TRY_CAST({_trimmed('age')} AS SMALLINT) IS NULL THEN 'unparseable age: ' || age
                 WHEN NOT TRY_CAST({_trimmed('age')} AS SMALLINT) BETWEEN 0 AND 130 THEN 'age out of range 0-130: ' || age
            END AS reason
        FROM raw
    """)
    profiles = con.sql(f"""
        WITH typed_age AS (SELECT *, TRY_CAST({_trimmed('age')} AS SMALLINT) AS age_years FROM typed WHERE reason IS NULL)
        SELECT {_trimmed('user_id')} AS user_id, age_years AS age, {AGE_BAND} AS age_band,
               gender, education, marital_status, occupation, interests, email, phone_number, city, language,
               landed_at, source
        FROM typed_age
        QUALIFY row_number() OVER (PARTITION BY {_trimmed('user_id')} ORDER BY file_rank DESC, record_number DESC) = 1
        ORDER BY user_id
    """).to_arrow_table()
    quarantined = _quarantined(con, USER_PROFILE_COLUMNS)
    con.close()
    counts = Counts(records_read=raw.num_rows, loaded=profiles.num_rows, quarantined=quarantined.num_rows)
    counts.dropped = counts.records_read - counts.loaded - counts.quarantined
    for reason in quarantined["reason"].to_pylist():
        counts.reasons[reason.split(": ", 1)[0]] += 1
    return Typed(profiles.select(DIM_USER_PROFILES.names), quarantined, {}), counts
