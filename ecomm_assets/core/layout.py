"""The lake's layout: its areas, folders, file names and suffixes. Every path below the lake root
is made here; the Lambda bridge (which ships alone) keeps copies that a test holds equal.

    landing/<feed>/<name>                      files producers drop (each feed's suffixes: FEEDS)
    landing/orders/simulated-orders-<tick>.json.gz  the live feed simulator's file of a tick
    landing/_ingested/<feed>/<name>            landed files once ingested (the last version moved)
    raw/<collection>/dt=D/<collection>.json    the day's snapshot of a DummyJSON-shaped collection
    raw/orders/dt=D/<source>.jsonl             the generator's orders of the day
    raw/<raw folder>/dt=D/landing-<at>-<id>.<raw suffix>  a landed file's records of the day
    raw/<manifest folder>/<file id>.json       a feed's ingested landed file versions
    processed/<table>/dt=D/part-00000.parquet  a table's day (and `_counts.json` beside it)
    processed/<table>/part-00000.parquet       an unpartitioned table (dim_user_profiles)
    processed/_usage/footer_sizes.parquet      the estimate's column-chunk sizes of the files it read
    quarantine/<table>/dt=D/part-00000.jsonl   a table's rejected records of the day
    quarantine/<table>/part-00000.jsonl        an unpartitioned table's rejected records
    quarantine/<quarantine folder>/<file id>/  a landed file's rejected records, or the whole file
    reports/dashboard/                         the HTML report and its charts
    .staging/, .locks/                         temporary files, per-day locks
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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

# A part of a landed name (below the landing folder) starting with one of these hides the file: a
# file being written (.part, _tmp/), a tool's own (_SUCCESS, .DS_Store).
HIDDEN_NAME_STARTS = (".", "_")

PART_FILE = "part-00000.parquet"
QUARANTINE_FILE = "part-00000.jsonl"
WITHDRAWN_FILE = "withdrawn.parquet"
COUNTS_FILE = "_counts.json"  # '_' keeps it out of every reader's view of the table
ORDERS = "orders"  # the raw orders' folder
# Sortable, fixed width, UTC: raw file names order by it exactly as the times do.
LANDED_STAMP = "%Y%m%dT%H%M%S.%fZ"
LANDING_RAW_NAME = re.compile(r"landing-(\d{8}T\d{6}\.\d{6}Z)-[0-9a-f]+\.[a-z]+")
DASHBOARD_DIR = f"{REPORTS}/dashboard"
# The live feed simulator's files: one per tick, named by the tick's UTC time (sortable, fixed width).
FEED_TICK_STAMP = "%Y%m%dT%H%M%SZ"


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


FOOTER_SIZES_PATH = f"{PROCESSED}/_usage/footer_sizes.parquet"  # '_': no table's folder, in no listing of one


def table_path(table: str, day: date | str) -> str:
    return f"{partition_dir(PROCESSED, table, day)}/{PART_FILE}"


def counts_path(table: str, day: date | str) -> str:
    return f"{partition_dir(PROCESSED, table, day)}/{COUNTS_FILE}"


def quarantine_dir(table: str, day: date | str) -> str:
    return partition_dir(QUARANTINE, table, day)


def quarantine_path(table: str, day: date | str) -> str:
    return f"{quarantine_dir(table, day)}/{QUARANTINE_FILE}"


def withdrawn_path(table: str, day: date | str) -> str:
    """Where a derived table's day that failed a blocking check is moved, out of every reader's view."""
    return f"{quarantine_dir(table, day)}/{WITHDRAWN_FILE}"


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


def source_label(raw_name: str, suffix: str = ".jsonl") -> str:
    """What a raw file's rows say they came from: its name without the suffix."""
    return raw_name.removesuffix(suffix)






def simulated_orders_name(tick: datetime) -> str:
    """The simulator's orders file of the tick at `tick` (below landing/orders/)."""
    return f"simulated-orders-{tick.astimezone(UTC).strftime(FEED_TICK_STAMP)}.json.gz"


def simulated_purchases_name(tick: datetime) -> str:
    """The simulator's purchase log of the tick at `tick` (below landing/purchases/)."""
    return f"simulated-purchases-{tick.astimezone(UTC).strftime(FEED_TICK_STAMP)}.csv"


SIMULATED_PROFILES_NAME = "simulated-user-profiles.csv"  # the simulator's profiles (below landing/user_profiles/)









def area_of(rel: str) -> str:
    """The usage name of the area a lake path (relative to the root) lies in."""
    return AREAS.get(rel.partition("/")[0], OTHER_AREA)


def is_hidden_name(name: str) -> bool:
    """Whether a name (relative to the folder listed) is hidden: any of its parts starts with '.' or
    '_'. One rule for the lake and the landing zone, the Hive and Spark convention that every reader
    of the tables follows: `_counts.json`, `.staging/` and a producer's `_tmp/` are not data."""
    return any(part.startswith(HIDDEN_NAME_STARTS) for part in name.split("/"))


@dataclass(frozen=True)
class Feed:
    """A landing feed: the folder producers drop its files in, the suffixes the ingest takes, and
    where its records, manifest, quarantined files and landed-file rows go. One code path (the
    ingest, the sensor, catch_up, the Lambda bridge) serves every feed of FEEDS."""

    name: str  # its folder below landing/ (and below landing/_ingested/)
    suffixes: tuple[str, ...]
    raw_folder: str  # raw/<raw_folder>/dt=D/ holds its records of each day
    raw_suffix: str  # of its raw day files: the records in one canonical format
    manifest_folder: str  # raw/<manifest_folder>/<file id>.json: its ingested file versions
    quarantine_folder: str  # quarantine/<quarantine_folder>/<file id>/: a landed file's rejects
    landed_files_table: str  # one row per landed file version
    raw_asset: str  # the asset whose day partitions the ingest writes (logged per day touched)
    # Whether its records belong to UTC days (a daily table is recomputed for each day touched); a
    # feed that is not daily (user profiles) keeps a file's records in the day it landed, and its
    # raw asset and table are not partitioned.
    daily: bool = True

    @property
    def landing_dir(self) -> str:
        return f"{LANDING}/{self.name}"

    @property
    def ingested_dir(self) -> str:
        return f"{LANDING}/_ingested/{self.name}"

    @property
    def manifest_dir(self) -> str:
        return f"{RAW}/{self.manifest_folder}"

    @property
    def raw_root(self) -> str:
        return f"{RAW}/{self.raw_folder}"

    def raw_dir(self, day: date | str) -> str:
        return partition_dir(RAW, self.raw_folder, day)

    def raw_name(self, landed_at: datetime, landed_file_id: str) -> str:
        return f"landing-{landed_at.astimezone(UTC).strftime(LANDED_STAMP)}-{landed_file_id}{self.raw_suffix}"

    def manifest_path(self, landed_file_id: str) -> str:
        return f"{self.manifest_dir}/{landed_file_id}.json"

    def quarantine_dir(self, landed_file_id: str) -> str:
        return f"{QUARANTINE}/{self.quarantine_folder}/{landed_file_id}"

    def landed_files_path(self, landed_at: datetime, landed_file_id: str) -> str:
        """One Parquet file per landed file version, in the dt= folder of the day it landed."""
        day = landed_at.astimezone(UTC).date()
        label = source_label(self.raw_name(landed_at, landed_file_id), self.raw_suffix)
        return f"{partition_dir(PROCESSED, self.landed_files_table, day)}/{label}.parquet"

    def ingested_path(self, name: str) -> str:
        """Where the ingest moves a landed file (`name` relative to the landing folder) once it is
        handled: the same relative name below the archive folder (outside what the sensor lists)."""
        return f"{self.ingested_dir}/{name}"

    def takes(self, name: str) -> bool:
        """Whether the ingest takes a landed name: one of its suffixes, and not hidden."""
        return name.lower().endswith(self.suffixes) and not is_hidden_name(name)


ORDERS_FEED = Feed(
    name="orders",
    suffixes=(".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz", ".ndjson.gz"),
    raw_folder=ORDERS,
    raw_suffix=".jsonl",
    manifest_folder="_landing_manifest",
    quarantine_folder=LANDING,
    landed_files_table="landed_files",
    raw_asset="orders_raw",
)
CSV_SUFFIXES = (".csv", ".csv.gz")
PURCHASES_FEED = Feed(
    name="purchases",
    suffixes=CSV_SUFFIXES,
    raw_folder="purchase_events",
    raw_suffix=".csv",
    manifest_folder="_landing_manifest_purchases",
    quarantine_folder="landing_purchases",
    landed_files_table="landed_purchase_files",
    raw_asset="purchases_raw",
)
USER_PROFILES_FEED = Feed(
    name="user_profiles",
    suffixes=CSV_SUFFIXES,
    raw_folder="user_profiles",
    raw_suffix=".csv",
    manifest_folder="_landing_manifest_user_profiles",
    quarantine_folder="landing_user_profiles",
    landed_files_table="landed_user_profile_files",
    raw_asset="user_profiles_raw",
    daily=False,
)
FEEDS = (ORDERS_FEED, PURCHASES_FEED, USER_PROFILES_FEED)

# The orders feed's facts under their first names (the Lambda bridge's copies are held equal to them).
LANDING_DIR = ORDERS_FEED.landing_dir
LANDING_SUFFIXES = ORDERS_FEED.suffixes


def landing_raw_name(landed_at: datetime, landed_file_id: str) -> str:
    return ORDERS_FEED.raw_name(landed_at, landed_file_id)


def landed_at_of_raw_name(raw_name: str) -> datetime | None:
    """When a raw file's content landed, from its name (None: not a landed file's)."""
    landed = LANDING_RAW_NAME.fullmatch(raw_name)
    return datetime.strptime(landed.group(1), LANDED_STAMP).replace(tzinfo=UTC) if landed else None


def is_landing_file(name: str) -> bool:
    """Whether the ingest takes a name landed in landing/orders/."""
    return ORDERS_FEED.takes(name)


def unpartitioned_table_path(table: str) -> str:
    return f"{table_dir(table)}/{PART_FILE}"


def unpartitioned_quarantine_path(table: str) -> str:
    return f"{QUARANTINE}/{table}/{QUARANTINE_FILE}"
