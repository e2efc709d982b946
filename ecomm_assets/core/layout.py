"""The lake's layout: its areas, folders, file names and suffixes. Every path below the lake root
is made here; the Lambda bridge (which ships alone) keeps copies that a test holds equal.

    landing/orders/<name>                      files producers drop (LANDING_SUFFIXES)
    landing/_ingested/orders/<name>            landed files once ingested (the last version moved)
    raw/<collection>/dt=D/<collection>.json    the day's snapshot of a DummyJSON-shaped collection
    raw/orders/dt=D/<source>.jsonl             the generator's orders of the day
    raw/orders/dt=D/landing-<at>-<id>.jsonl    a landed file's orders of the day
    raw/_landing_manifest/<file id>.json       the ingested landed file versions
    processed/<table>/dt=D/part-00000.parquet  a table's day (and `_counts.json` beside it)
    quarantine/<table>/dt=D/part-00000.jsonl   a table's rejected records of the day
    quarantine/landing/<file id>/              a landed file's rejected records, or the whole file
    reports/dashboard/                         the HTML report and its charts
    .staging/, .locks/                         temporary files, per-day locks
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

LANDING = "landing"
RAW = "raw"
PROCESSED = "processed"
QUARANTINE = "quarantine"
REPORTS = "reports"
STAGING = ".staging"
LOCKS = ".locks"

# Every area of the lake, by the name its usage figures carry (usage/<area>/bytes_written).
AREAS = {LANDING: "landing", RAW: "raw", PROCESSED: "processed", QUARANTINE: "quarantine", REPORTS: "reports",
         STAGING: "staging", LOCKS: "locks"}
OTHER_AREA = "other"  # a path outside the layout (none is written today)

LANDING_DIR = f"{LANDING}/orders"
INGESTED_DIR = f"{LANDING}/_ingested/orders"
LANDING_SUFFIXES = (".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz", ".ndjson.gz")
# A part of a landed name (below the landing folder) starting with one of these hides the file: a
# file being written (.part, _tmp/), a tool's own (_SUCCESS, .DS_Store).
HIDDEN_NAME_STARTS = (".", "_")
MANIFEST_DIR = f"{RAW}/_landing_manifest"

PART_FILE = "part-00000.parquet"
QUARANTINE_FILE = "part-00000.jsonl"
COUNTS_FILE = "_counts.json"  # '_' keeps it out of every reader's view of the table
ORDERS = "orders"  # the raw orders' folder
# Sortable, fixed width, UTC: raw file names order by it exactly as the times do.
LANDED_STAMP = "%Y%m%dT%H%M%S.%fZ"
LANDING_RAW_NAME = re.compile(r"landing-(\d{8}T\d{6}\.\d{6}Z)-[0-9a-f]+\.jsonl")
DASHBOARD_DIR = f"{REPORTS}/dashboard"


PARTITION_KEY = "dt"  # the folder level Hive, Glue and Athena read as the day: dt=YYYY-MM-DD
PARTITION_FILES_GLOB = f"{PARTITION_KEY}=*/*.parquet"  # every day's files, below a table's folder


def partition_folder(day: date | str) -> str:
    """`dt=YYYY-MM-DD`; Glue's location template passes `${dt}` for the day."""
    return f"{PARTITION_KEY}={day}"


def partition_dir(area: str, table: str, day: date | str) -> str:
    """`<area>/<table>/dt=YYYY-MM-DD`, the layout Hive, Glue and Athena understand."""
    return f"{area}/{table}/{partition_folder(day)}"


def partition_day(rel: str) -> date | None:
    """The day of a path inside a day partition (`<area>/<table>/dt=YYYY-MM-DD/...`), else None."""
    parts = rel.split("/")
    if len(parts) > 2 and parts[2].startswith(f"{PARTITION_KEY}="):
        try:
            return date.fromisoformat(parts[2].removeprefix(f"{PARTITION_KEY}="))
        except ValueError:
            return None
    return None


def table_dir(table: str) -> str:
    return f"{PROCESSED}/{table}"


def table_path(table: str, day: date | str) -> str:
    return f"{partition_dir(PROCESSED, table, day)}/{PART_FILE}"


def counts_path(table: str, day: date | str) -> str:
    return f"{partition_dir(PROCESSED, table, day)}/{COUNTS_FILE}"


def quarantine_dir(table: str, day: date | str) -> str:
    return partition_dir(QUARANTINE, table, day)


def quarantine_path(table: str, day: date | str) -> str:
    return f"{quarantine_dir(table, day)}/{QUARANTINE_FILE}"


def collection_path(collection: str, day: date | str) -> str:
    return f"{partition_dir(RAW, collection, day)}/{collection}.json"


def collection_dir(collection: str) -> str:
    return f"{RAW}/{collection}"


def raw_orders_root() -> str:
    return f"{RAW}/{ORDERS}"


def raw_orders_dir(day: date | str) -> str:
    return partition_dir(RAW, ORDERS, day)


def generated_orders_name(source: str) -> str:
    return f"{source}.jsonl"


def source_label(raw_name: str) -> str:
    """What a raw order file's rows say they came from: its name without the suffix."""
    return raw_name.removesuffix(".jsonl")


def landing_raw_name(landed_at: datetime, landed_file_id: str) -> str:
    return f"landing-{landed_at.astimezone(UTC).strftime(LANDED_STAMP)}-{landed_file_id}.jsonl"


def landed_at_of_raw_name(raw_name: str) -> datetime | None:
    """When a raw order file's content landed, from its name (None: not a landed file's)."""
    landed = LANDING_RAW_NAME.fullmatch(raw_name)
    return datetime.strptime(landed.group(1), LANDED_STAMP).replace(tzinfo=UTC) if landed else None


def manifest_path(landed_file_id: str) -> str:
    return f"{MANIFEST_DIR}/{landed_file_id}.json"


def landed_files_path(table: str, landed_at: datetime, landed_file_id: str) -> str:
    """One Parquet file per landed file version, in the dt= folder of the day it landed."""
    day = landed_at.astimezone(UTC).date()
    return f"{partition_dir(PROCESSED, table, day)}/{source_label(landing_raw_name(landed_at, landed_file_id))}.parquet"


def ingested_path(name: str) -> str:
    """Where the ingest moves a landed file (`name` relative to landing/orders/) once it is handled:
    the same relative name below landing/_ingested/orders/ (outside the folder the sensor lists)."""
    return f"{INGESTED_DIR}/{name}"


def landing_quarantine_dir(landed_file_id: str) -> str:
    return f"{QUARANTINE}/{LANDING}/{landed_file_id}"


def area_of(rel: str) -> str:
    """The usage name of the area a lake path (relative to the root) lies in."""
    return AREAS.get(rel.partition("/")[0], OTHER_AREA)


def is_hidden_name(name: str) -> bool:
    """Whether a name (relative to the folder listed) is hidden: any of its parts starts with '.' or
    '_'. One rule for the lake and the landing zone, the Hive and Spark convention that every reader
    of the tables follows: `_counts.json`, `.staging/` and a producer's `_tmp/` are not data."""
    return any(part.startswith(HIDDEN_NAME_STARTS) for part in name.split("/"))


def is_landing_file(name: str) -> bool:
    """Whether the ingest takes a landed name: one of its suffixes, and not hidden."""
    return name.lower().endswith(LANDING_SUFFIXES) and not is_hidden_name(name)
