"""Landed producer files of every feed (core/layout.py FEEDS: orders, purchases, user profiles):
the ingest ops that split them into raw day files, and each feed's landed-files table, with one row
per landed file version (what was read, routed and quarantined). One code path serves every feed;
a feed differs only by its paths (layout.Feed) and its split (FORMATS below).

A landed file's identity is its content hash (ingesting it again is idempotent); its age is when it
landed (the object's LastModified, the file's mtime), carried into the raw day file's name, so that
"the newest version wins" means the file that landed last, whatever order an ingest run takes.

Once handled (its manifest entry recorded, a file quarantined whole included), the version read is
moved from landing/<feed>/<name> to landing/_ingested/<feed>/<name> (LakeStore.move_confined: never
a version written meanwhile), so that the sensor's listing holds only new files. A later version of
the name replaces the archived one there; the raw files and the manifest keep the history.
"""

import contextlib
import json
import os
import re
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import BinaryIO

import dagster as dg
import pyarrow as pa
import pyarrow.fs as pafs

from ecomm_assets.assets.metadata import column_schema, preview, usage_metadata
from ecomm_assets.core.landing import (
    DayWindow,
    LandedFile,
    count_json_lines_in,
    file_id_of,
    split_landing_stream,
)
from ecomm_assets.core.layout import (
    LANDING_DIR,
    ORDERS_FEED,
    PURCHASES_FEED,
    USER_PROFILES_FEED,
    Feed,
    is_hidden_name,
    landed_at_of_raw_name,
    table_dir,
)
from ecomm_assets.core.locks import day_locks
from ecomm_assets.core.purchases import (
    count_csv_records,
    split_purchase_file,
    split_user_profile_file,
)
from ecomm_assets.core.schemas import LANDED_FILES
from ecomm_assets.core.storage import (
    COPY_CHUNK,
    FileVersion,
    LakeFile,
    LakeStore,
    Moved,
    NotARegularFile,
    records_in,
)
from ecomm_assets.core.usage import Request, current, list_requests, recording
from ecomm_assets.partitions import DAILY_PARTITIONS
from ecomm_assets.resources import (
    AlertSinkResource,
    LakeResource,
    pii_key,
    warn_if_default_key,
)
from ecomm_assets.settings import SETTINGS

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: they forge log lines and
# are no part of a producer's file name. The Lambda bridge has the same rule (a test keeps them equal).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# On S3 an archived file's copy is a new object (a new LastModified): the copy keeps the time the
# original landed in this user metadata (an ISO 8601 timestamp).
LANDED_AT_METADATA = "landed-at"


@dataclass(frozen=True)
class LandingFile:
    name: str  # relative to its feed's landing folder (and to its archive folder once archived)
    size: int
    landed_at: datetime  # UTC
    refused: str | None = None  # locally: why it is never read (a symlink, not a regular file)
    folder: str = LANDING_DIR  # where it is: the feed's landing folder, or its archive folder once ingested
    version: FileVersion | None = field(default=None, compare=False)  # the version read (read_landing)


def unsafe_name_problem(name: str) -> str | None:
    """Why a landed file name could reach outside the landing zone (or is no name), else None."""
    if not name:
        return "empty name"
    if CONTROL_CHARACTERS.search(name):
        return "control character"
    if "\\" in name:
        return "backslash"
    if name.startswith("/"):
        return "absolute path"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "empty, '.' or '..' path segment"
    return None


@dataclass(frozen=True)
class FeedFormat:
    """How a feed's landed files are read: the split of one file by day, and the recount of the
    records of one of its raw day files (conservation_outcome)."""

    # (the landed file, its open bytes, its file id, the window, the personal data's hash key, a local
    # folder for the days' staged files): the orders' split streams; the CSV feeds' read the file whole.
    split: Callable[[LandingFile, BinaryIO, str, DayWindow, bytes, str], LandedFile]
    count_records: Callable[[BinaryIO], int]  # of a raw day file, open


FORMATS: dict[str, FeedFormat] = {
    ORDERS_FEED.name: FeedFormat(
        lambda landing, source, content, window, key, staging: split_landing_stream(
            landing.name, source, window, key=key, staging=staging, landed_file_id=content),
        count_json_lines_in,
    ),
    PURCHASES_FEED.name: FeedFormat(
        lambda landing, source, content, window, key, staging: split_purchase_file(
            landing.name, source.read(), window, SETTINGS.purchases_timezone, key=key),
        lambda source: count_csv_records(source.read()),
    ),
    # A profile file has no days: its rows are kept in the day it landed (dim_user_profiles reads every day).
    USER_PROFILES_FEED.name: FeedFormat(
        lambda landing, source, content, window, key, staging: split_user_profile_file(
            landing.name, source.read(), window, landing.landed_at.date(), key=key),
        lambda source: count_csv_records(source.read()),
    ),
}


def skip_reason(name: str, feed: Feed = ORDERS_FEED) -> str | None:
    """Why a file in a feed's landing folder is not ingested, else None."""
    problem = unsafe_name_problem(name)
    if problem:
        return f"unsafe name: {problem}"
    if is_hidden_name(name):
        return "hidden: a part of its name begins with '.' or '_' (a file being written, or a tool's own)"
    if not feed.takes(name):
        return f"not {'/'.join(s for s in feed.suffixes if not s.endswith('.gz'))} (optionally .gz)"
    return None


def list_landing(store: LakeStore, folder: str = LANDING_DIR) -> list[LandingFile]:
    """Every file under `folder` (a feed's landing or archive folder), hidden names included (so that
    skipping one is logged). Locally symlinks are listed, never followed, and refused with anything
    but a regular file."""
    if not store.is_local:
        selector = pafs.FileSelector(store.full_path(folder), allow_not_found=True, recursive=True)
        skip = len(selector.base_dir.rstrip("/")) + 1
        files = [
            LandingFile(info.path[skip:], info.size, info.mtime.astimezone(UTC), folder=folder)
            for info in store.listing(selector)
            if info.type == pafs.FileType.File
        ]
        return sorted(files, key=lambda f: f.name)
    root = store.full_path(folder)
    files = []
    for below, subfolders, names in os.walk(root):  # a symlinked folder is listed, not entered
        for name in subfolders + names:
            path = os.path.join(below, name)
            with contextlib.suppress(FileNotFoundError):  # moved away while listed
                status = os.lstat(path)
                if not stat.S_ISDIR(status.st_mode):
                    landed_at = datetime.fromtimestamp(status.st_mtime, UTC)
                    files.append(LandingFile(os.path.relpath(path, root), status.st_size, landed_at, _refusal(status.st_mode), folder))
    store.usage.request(Request.LIST, list_requests(len(files)))  # as S3 would serve the listing
    return sorted(files, key=lambda f: f.name)


def _refusal(mode: int) -> str | None:
    if stat.S_ISLNK(mode):
        return "a symbolic link: only regular files inside the landing folder are read"
    return None if stat.S_ISREG(mode) else "not a regular file"


def read_landing(store: LakeStore, name: str, folder: str | None = None, feed: Feed = ORDERS_FEED) -> tuple[LandingFile, BinaryIO]:
    """A landed file open for reading (the caller closes it), its size, landing time and the version
    read, from one open of it (NotARegularFile: a symlink or no regular file, refused unread), in `folder`. With `folder`
    None: in the feed's landing folder, or, if it is not there (ingested and moved already), in its
    archive folder (FileNotFoundError: in neither)."""
    if folder is None:
        try:
            return read_landing(store, name, feed.landing_dir, feed)
        except FileNotFoundError as not_landed:
            try:
                return read_landing(store, name, feed.ingested_dir, feed)
            except FileNotFoundError:
                raise not_landed from None
    source, info = store.read_confined(folder, name)
    landed_at = info.mtime.astimezone(UTC)  # locally the rename into the archive kept the mtime
    if folder == feed.ingested_dir and not store.is_local:
        landed_at = _archived_landed_at(store, info, source, feed)
    return LandingFile(name, info.size, landed_at, folder=folder, version=info.version), source


def _archived_landed_at(store: LakeStore, info: LakeFile, source: BinaryIO, feed: Feed) -> datetime:
    """When an archived S3 object first landed: its `landed-at` metadata, else its manifest entry's
    landed_at, else (neither: copied there by hand) the copy's LastModified."""
    with contextlib.suppress(KeyError, TypeError, ValueError):
        return datetime.fromisoformat(info.version.metadata[LANDED_AT_METADATA]).astimezone(UTC)
    with contextlib.suppress(OSError, KeyError, ValueError):
        return datetime.fromisoformat(json.loads(store.read_bytes(feed.manifest_path(file_id_of(source))))["landed_at"]).astimezone(UTC)
    return info.mtime.astimezone(UTC)


def manifest_entries(store: LakeStore, feed: Feed = ORDERS_FEED) -> list[dict]:
    return [json.loads(store.read_bytes(f.path)) for f in store.list_files(feed.manifest_dir)]


def ingested_file_ids(store: LakeStore, feed: Feed = ORDERS_FEED) -> set[str]:
    """The contents ingested and not superseded (a reverted file's old content is pending again)."""
    return {e["file_id"] for e in manifest_entries(store, feed) if "superseded_by" not in e}


def raw_file_age(f: LakeFile) -> datetime:
    """When a raw file's content arrived: a landed file's landing time (in its name), else
    the file's mtime (a generated file such as synthetic.jsonl)."""
    return landed_at_of_raw_name(f.name) or f.mtime


class ConservationError(Exception):
    """A landed file's records do not add up: records read != routed + quarantined."""


def _split(landing: LandingFile, source: BinaryIO, content: str, window: DayWindow, feed: Feed, staging: str) -> LandedFile:
    """The file split by day (its days staged in `staging`); any exception (a parser limit such as
    RecursionError, a bug) or a split that does not conserve its records quarantines the file whole instead."""
    try:
        source.seek(0)
        landed = FORMATS[feed.name].split(landing, source, content, window, pii_key(), staging)
        if landed.records_read != landed.records_routed + len(landed.quarantined):
            raise ConservationError(
                f"records read {landed.records_read} != routed {landed.records_routed} + quarantined {len(landed.quarantined)}"
            )
    except Exception as error:  # noqa: BLE001 - one file must never stop the others
        return _quarantined_whole(landing.name, content, window, f"could not be split: {type(error).__name__}: {error}")
    return landed


def _quarantined_whole(name: str, landed_file_id: str, window: DayWindow, error: str) -> LandedFile:
    return LandedFile(name=name, file_id=landed_file_id, window=window, file_error=error)


def _raw_files_of(store: LakeStore, day: date | str, landed_file_id: str, feed: Feed) -> list[LakeFile]:
    return [f for f in store.list_files(feed.raw_dir(day)) if f.name.endswith(f"-{landed_file_id}{feed.raw_suffix}")]


def _write_raw_days(store: LakeStore, landed: LandedFile, landed_at: datetime, feed: Feed) -> None:
    """Each day's records as raw/<raw folder>/dt=D/landing-<landed at>-<file id>.<raw suffix>. The
    same content landed earlier is replaced (the newest landing is its age); on failure nothing of it stays."""
    name = feed.raw_name(landed_at, landed.file_id)
    written: list[str] = []
    try:
        for day in sorted(landed.days):
            folder = feed.raw_dir(day)
            written.append(f"{folder}/{name}")
            staged = landed.staged_path(day)
            if staged:  # moved (locally) or uploaded whole: a reader never sees part of it
                store.put_file(f"{folder}/{name}", Path(staged))
            else:
                store.write_bytes(f"{folder}/{name}", landed.day_bytes(day))
            for older in _raw_files_of(store, day, landed.file_id, feed):
                if older.name != name:
                    store.delete(older.path)
    except Exception:
        for rel in written:
            store.delete(rel)
        raise


def _quarantine(store: LakeStore, landed: LandedFile, source: BinaryIO, feed: Feed, staging: str) -> None:
    folder = feed.quarantine_dir(landed.file_id)
    if landed.file_error:  # the original bytes, as they landed, copied a chunk at a time
        copy = Path(staging, "quarantined-file")
        source.seek(0)
        with open(copy, "wb") as out:
            shutil.copyfileobj(source, out, COPY_CHUNK)
        store.put_file(f"{folder}/file-{landed.name.replace('/', '_')}", copy)
    if landed.file_error or landed.quarantined:
        report = {"file": landed.name, "file_error": landed.file_error, "records": landed.quarantined}
        store.write_bytes(f"{folder}/reason.json", json.dumps(report, indent=1).encode())
    else:
        store.delete(f"{folder}/reason.json")  # a re-ingest that now routes every record


def _record(store: LakeStore, landed: LandedFile, landing: LandingFile, size: int, run_id: str,
            supersedes: dict, ingested_at: str, feed: Feed) -> dict:
    """The manifest entry (which content was ingested, which earlier versions of its name it
    superseded: file id -> days) and the file's landed_files row."""
    entry = {
        "file": landing.name,
        "file_id": landed.file_id,
        "landed_at": landing.landed_at.isoformat(),
        "bytes": size,
        "records_read": landed.records_read,
        "records_routed": landed.records_routed,
        "records_quarantined": len(landed.quarantined),
        "file_error": landed.file_error,
        "days": {str(day): len(lines) for day, lines in sorted(landed.days.items())},
        "ingested_at": ingested_at,
        "run_id": run_id,
        "supersedes": supersedes,
    } | ({"notes": landed.notes} if landed.notes else {})
    row = entry | {
        "landed_at": landing.landed_at,
        "days": json.dumps(entry["days"]),
        "ingested_at": datetime.fromisoformat(entry["ingested_at"]),
    }
    store.write_parquet(feed.landed_files_path(landing.landed_at, landed.file_id), pa.Table.from_pylist([row], LANDED_FILES))
    store.write_bytes(feed.manifest_path(landed.file_id), json.dumps(entry, indent=1).encode())
    return entry


def _earlier_versions(store: LakeStore, name: str, landed_file_id: str, feed: Feed) -> list[dict]:
    """The manifest entries this content of `name` supersedes: its other contents not superseded,
    and those already marked superseded by this one (by an ingest of it that stopped before
    recording it, so that ingesting it again finishes the superseding)."""
    return [e for e in manifest_entries(store, feed)
            if e["file"] == name and e["file_id"] != landed_file_id and e.get("superseded_by", landed_file_id) == landed_file_id]


def ingest_file(store: LakeStore, landing: LandingFile, source: BinaryIO, content: str, window: DayWindow, run_id: str,
                feed: Feed = ORDERS_FEED) -> dict:
    """Split one landed file (`source`, open; `content`: its file id) into raw day files, staged
    locally as it is read, quarantine what cannot be routed (the whole file when it cannot be split
    or written), and record it. Returns its manifest entry. Raises (the file is not ingested, and
    stays pending) when the lake cannot be read or written, or a day stays locked."""
    with store.staging_dir() as staging:
        return _ingest_staged(store, landing, source, content, window, run_id, feed, staging)


def _ingest_staged(store: LakeStore, landing: LandingFile, source: BinaryIO, content: str, window: DayWindow, run_id: str,
                   feed: Feed, staging: str) -> dict:
    landed = _split(landing, source, content, window, feed, staging)
    # The name's content now is its only version: earlier ones leave raw, and their days are touched
    # too. They are read under the locks of every day involved; the days to lock depend on them, so
    # an earlier version that appeared meanwhile with other days means locking again.
    days = set(map(str, landed.days))
    earlier = _earlier_versions(store, landing.name, landed.file_id, feed)
    while True:
        locked = days.union(*(e["days"] for e in earlier))
        with day_locks(store, locked, holder=run_id):
            earlier = _earlier_versions(store, landing.name, landed.file_id, feed)
            if set().union(*(e["days"] for e in earlier)) <= locked:
                return _write_version(store, landing, source, landed, earlier, run_id, feed, staging)


def _write_version(store: LakeStore, landing: LandingFile, source: BinaryIO, landed: LandedFile, earlier: list[dict],
                   run_id: str, feed: Feed, staging: str) -> dict:
    """Under the locks of its days and its earlier versions' days: the raw day files, the removal of
    the earlier versions' ones, quarantine, then the manifest. The earlier entries are marked before
    the new one is recorded: a run that stops in between leaves this content unrecorded, so pending,
    and ingesting it again supersedes the entries marked for it once more (see _earlier_versions)."""
    try:
        _write_raw_days(store, landed, landing.landed_at, feed)
    except Exception as error:  # noqa: BLE001 - e.g. a raw path the store refuses: quarantine the file whole
        landed = _quarantined_whole(landing.name, landed.file_id, landed.window, f"could not be written: {type(error).__name__}: {error}")
    supersedes = {e["file_id"]: sorted(e["days"]) for e in earlier}
    for old_id, days in supersedes.items():
        for day in days:
            for stale in _raw_files_of(store, day, old_id, feed):
                store.delete(stale.path)
    _quarantine(store, landed, source, feed, staging)
    ingested_at = datetime.now(UTC).isoformat()
    for old in earlier:
        superseded = old | {"superseded_by": landed.file_id, "superseded_at": ingested_at}
        store.write_bytes(feed.manifest_path(old['file_id']), json.dumps(superseded, indent=1).encode())
    return _record(store, landed, landing, landing.size, run_id, supersedes, ingested_at, feed)


def conservation_outcome(store: LakeStore, entries: list[dict], feed: Feed = ORDERS_FEED) -> tuple[bool, dict]:
    """Recounts each landed file from what the lake holds: the records of its raw day files (read
    again in the feed's format) and the records in its reason.json; both must add up to the
    records it read."""
    count = FORMATS[feed.name].count_records
    unbalanced = {}
    for entry in entries:
        name = feed.raw_name(datetime.fromisoformat(entry["landed_at"]), entry["file_id"])
        routed = sum(records_in(store, f"{feed.raw_dir(day)}/{name}", count) for day in entry["days"])
        reason = f"{feed.quarantine_dir(entry['file_id'])}/reason.json"
        quarantined = len(json.loads(store.read_bytes(reason))["records"]) if store.exists(reason) else 0
        if entry["records_read"] != routed + quarantined or routed != entry["records_routed"]:
            unbalanced[entry["file"]] = {"records_read": entry["records_read"], "routed": routed, "quarantined": quarantined}
    return not unbalanced, {
        "files_checked": len(entries),
        "records_read": sum(e["records_read"] for e in entries),
        "records_quarantined": sum(e["records_quarantined"] for e in entries),
        "files_unbalanced": unbalanced,
    }


def _landed_files_spec(feed: Feed, job: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        feed.landed_files_table,
        metadata={"dagster/column_schema": column_schema(LANDED_FILES)},
        group_name="sources",
        kinds={"parquet"},
        owners=["team:data-platform"],
        description=f"One row per file version landed in {feed.landing_dir}/ (name, file id, landed at, bytes, "
        f"records read, routed and quarantined, file error, days), under {table_dir(feed.landed_files_table)}/"
        f"dt=<day it landed>/. Written by {job}, which recounts each file it ingested from the lake (conservation_holds).",
    )


landed_files = _landed_files_spec(ORDERS_FEED, "ingest_landing_job")
landed_purchase_files = _landed_files_spec(PURCHASES_FEED, "ingest_purchases_job")
landed_user_profile_files = _landed_files_spec(USER_PROFILES_FEED, "ingest_user_profiles_job")


class IngestConfig(dg.Config):
    # Names under the feed's landing folder, e.g. landing/orders/ (a name no longer there, already
    # ingested and moved, is read from its archive, e.g. landing/_ingested/orders/); each is ingested
    # even if its content was. Empty: every file in the landing folder not ingested yet (one whose
    # content was is only moved to the archive).
    files: list[str] = []
    # With `files` empty, ingest every landed file again, even those already ingested: those in the
    # landing folder and those in its archive (a name in both: the one in the landing folder, the
    # newer), after moving ECOMM_START_DATE earlier, to route records once quarantined "before the
    # first partition". Archived files keep their landing time and stay in the archive.
    reingest: bool = False


def _ingest_description(feed: Feed, what: str) -> str:
    return (
        f"Reads {what} landed in {feed.landing_dir}/ and writes each day's records to "
        f"{feed.raw_dir('D')}/landing-<landed at>-<file id>{feed.raw_suffix}; unreadable records and files go "
        f"to {feed.quarantine_dir('<file id>')}/ with reasons. Each file handled (quarantined whole too) is then "
        f"moved to {feed.ingested_dir}/. One file's failure never stops the others; a file not "
        f"ingested (unreadable, vanished, a day locked too long) stays in {feed.landing_dir}/ and fails the run "
        f"after them, to be retried. Logs a materialization of {feed.raw_asset} per day touched and of "
        f"{feed.landed_files_table}."
    )


@dg.op(name="ingest_landing_files",
       description=_ingest_description(ORDERS_FEED, "order files (JSON array or JSON Lines, .gz too)"))
@recording()  # what the ingest does goes on its landed-files table's materialization
def ingest_landing_files(
    context: dg.OpExecutionContext, config: IngestConfig, lake: LakeResource, alerts: AlertSinkResource
) -> list[str]:
    return ingest_feed(context, config, lake, alerts, ORDERS_FEED)


@dg.op(description=_ingest_description(
    PURCHASES_FEED, f"purchase logs (CSV, .gz too; naive timestamps in ECOMM_PURCHASES_TIMEZONE, now {SETTINGS.purchases_timezone})"))
@recording()
def ingest_purchase_files(
    context: dg.OpExecutionContext, config: IngestConfig, lake: LakeResource, alerts: AlertSinkResource
) -> list[str]:
    return ingest_feed(context, config, lake, alerts, PURCHASES_FEED)


@dg.op(description=_ingest_description(
    USER_PROFILES_FEED, "user profile files (CSV, .gz too; their rows kept in the UTC day the file landed)"))
@recording()
def ingest_user_profile_files(
    context: dg.OpExecutionContext, config: IngestConfig, lake: LakeResource, alerts: AlertSinkResource
) -> list[str]:
    return ingest_feed(context, config, lake, alerts, USER_PROFILES_FEED)


# The ingest op of each feed (by its name).
INGEST_OPS = {ORDERS_FEED.name: ingest_landing_files, PURCHASES_FEED.name: ingest_purchase_files,
              USER_PROFILES_FEED.name: ingest_user_profile_files}


def ingest_feed(context: dg.OpExecutionContext, config: IngestConfig, lake: LakeResource, alerts: AlertSinkResource,
                feed: Feed) -> list[str]:
    """An ingest op's work for one feed: returns the days it touched."""
    refused = {name: reason for name in config.files if (reason := skip_reason(name, feed))}
    if refused:
        raise dg.Failure(
            description="refused landed file names (each must be a relative path inside "
            f"{feed.landing_dir}/ that the ingest takes): " + "; ".join(f"{name!r}: {reason}" for name, reason in refused.items()),
        )
    store = lake.store()
    warn_if_default_key(context.log.warning)
    window = DayWindow.for_lake(DAILY_PARTITIONS.start.date())
    ingested = set() if config.files or config.reingest else ingested_file_ids(store, feed)
    entries, refused_files, not_ingested, not_archived, archived = [], {}, {}, [], 0
    handled: list[dict] = []  # what became of each file of the run, shown on the landed-files materialization
    for name, folder in [(name, None) for name in config.files] or _listed(context, store, config.reingest, feed):
        try:
            landing, source = read_landing(store, name, folder, feed)
            with source:
                content = file_id_of(source)
                entry = None if content in ingested else ingest_file(store, landing, source, content, window, context.run_id, feed)
        except NotARegularFile as error:  # never read, so never quarantined: a verdict, alerted below
            refused_files[name] = str(error)
            handled.append(_file_state(name, f"refused: {error}"))
            continue
        except Exception as error:  # noqa: BLE001 - vanished, unreadable, a day lock timeout: pending for a retry
            not_ingested[name] = f"{type(error).__name__}: {error}"
            context.log.error(f"{name!r}: not ingested: {not_ingested[name]}")
            handled.append(_file_state(name, f"not ingested, still pending: {not_ingested[name]}"))
            continue
        if entry:
            entries.append(entry)
            _log_file(context, entry, feed)
            handled.append(_file_state(name, f"quarantined whole: {entry['file_error']}" if entry["file_error"] else "ingested",
                                       entry))
        else:  # recorded by a run that stopped before moving it (or the same content under another name)
            context.log.info(f"{name!r}: its content {content} is ingested already")
            handled.append(_file_state(name, f"ingested already (content {content})"))
        moved, problem = archive_landed(context, store, landing, feed)
        archived += moved
        if problem:
            not_archived.append(problem)
    whole = [e for e in entries if e["file_error"]]
    conserved, recount = conservation_outcome(store, entries, feed)
    problems = [f"{n}: refused: {e}" for n, e in refused_files.items()]
    problems += [f"{e['file']}: quarantined whole: {e['file_error']}" for e in whole]
    problems += [f"{n}: records not conserved: {c}" for n, c in recount["files_unbalanced"].items()]
    problems += not_archived
    if problems:  # verdicts about files: the run may succeed (the other files are in), so it alerts by itself
        context.log.error("; ".join(problems))
        alerts.send(
            {
                "at": datetime.now(UTC).isoformat(),
                "run_id": context.run_id,
                "job": context.job_name,
                "assets": [feed.landed_files_table],
                "partition": None,
                "error": "; ".join(problems),
            }
        )
    days = sorted({day for e in entries for day in [*e["days"], *_superseded_days(e)]})
    context.log_event(
        dg.AssetMaterialization(
            asset_key=feed.landed_files_table,
            metadata={
                "files_ingested": len(entries),
                "files_quarantined_whole": len(whole),
                "files_not_ingested": len(not_ingested),
                "files_moved_to_ingested": archived,
                "records_read": recount["records_read"],
                "records_routed": sum(e["records_routed"] for e in entries),
                "records_quarantined": recount["records_quarantined"],
                "conservation_holds": conserved,
                "days": dg.MetadataValue.json(days),
                "files": preview(pa.Table.from_pylist(handled), rows=FILES_SHOWN),
                "path": dg.MetadataValue.path(store.full_uri(table_dir(feed.landed_files_table))),
                **usage_metadata(current(), days=0),
            },
        )
    )
    if not_ingested:  # after every other file: the run fails, so it alerts and is retried (dagster/max_retries)
        raise dg.Failure(
            description="; ".join(f"{name}: not ingested: {error}" for name, error in not_ingested.items()),
            metadata={"files_not_ingested": dg.MetadataValue.json(sorted(not_ingested))},
        )
    return days


def _listed(context: dg.OpExecutionContext, store: LakeStore, reingest: bool, feed: Feed) -> list[tuple[str, str]]:
    """The landing files the ingest takes, as (name, folder), each skip logged; whether one was
    ingested already is decided when it is read, file by file. To re-ingest, the archived files
    too, but for a name also in the landing folder (a newer version, not ingested yet)."""
    names, landed = [], set()
    listed = list_landing(store, feed.landing_dir) + (list_landing(store, feed.ingested_dir) if reingest else [])
    for landing in listed:
        reason = landing.refused or skip_reason(landing.name, feed)
        shown = landing.name if landing.folder == feed.landing_dir else f"{landing.folder}/{landing.name}"
        if reason:  # %r: a name's control characters are shown escaped, never forge a log line
            context.log.info(f"skipped {shown!r}: {reason}")
        elif landing.folder == feed.landing_dir or landing.name not in landed:
            names.append((landing.name, landing.folder))
            landed.add(landing.name)
    return names


def archive_landed(context: dg.OpExecutionContext, store: LakeStore, landing: LandingFile,
                   feed: Feed = ORDERS_FEED) -> tuple[bool, str | None]:
    """After a file read from its feed's landing folder was handled (its manifest entry recorded):
    move the version read to the archive (landing/_ingested/<feed>/<name>), so that the sensor no longer lists it. A version
    the producer wrote meanwhile stays (it is pending: it gets its own ingest). Returns whether it
    moved, and a problem to alert: a new version left unread in the archive (STRANDED), or a move
    that failed (the file stays; the next run that takes every pending file moves it)."""
    landing_dir, ingested_dir = feed.landing_dir, feed.ingested_dir
    if landing.folder != landing_dir:  # read from the archive (re-ingested): it stays there
        return False, None
    metadata = {} if store.is_local else {LANDED_AT_METADATA: landing.landed_at.isoformat()}
    try:
        outcome = store.move_confined(landing_dir, landing.name, ingested_dir, landing.version, metadata)
    except Exception as error:  # noqa: BLE001 - ingested all the same: never undo that
        problem = (f"{landing.name}: ingested, but not moved to {ingested_dir}/: {type(error).__name__}: {error}; "
                   f"it stays in {landing_dir}/ until a run that takes every pending file moves it")
        context.log.error(problem)
        return False, problem
    if outcome is Moved.MOVED:
        context.log.info(f"{landing.name!r}: moved to {feed.ingested_path(landing.name)!r}")
    elif outcome is Moved.CHANGED:
        context.log.warning(f"{landing.name!r}: a new version landed while it was ingested: left in {landing_dir}/ for its own ingest")
    elif outcome is Moved.GONE:
        context.log.info(f"{landing.name!r}: no longer in {landing_dir}/: nothing to move")
    else:
        problem = (f"{landing.name}: a version written while it was moved to {ingested_dir}/ could not be put back (another "
                   f"version took its name) and is left unread in {feed.ingested_path(landing.name)}: copy it into {landing_dir}/ "
                   "under another name to ingest it")
        context.log.error(problem)
        return False, problem
    return outcome is Moved.MOVED, None


def _log_file(context: dg.OpExecutionContext, entry: dict, feed: Feed) -> None:
    message = (
        f"{entry['file']}: {entry['records_read']} records, {entry['records_routed']} routed to "
        f"{len(entry['days'])} days, {entry['records_quarantined']} quarantined"
    )
    if entry["file_error"]:
        context.log.warning(f"{message}; file quarantined whole: {entry['file_error']}")
    else:
        context.log.info(message)
    for note in entry.get("notes", []):
        context.log.info(f"{entry['file']}: {note}")
    for day, records in entry["days"].items():
        context.log_event(
            dg.AssetMaterialization(
                asset_key=feed.raw_asset,
                partition=day if feed.daily else None,
                metadata={"landed_file": entry["file"], "file_id": entry["file_id"], "records": records}
                | ({} if feed.daily else {"day_kept_in": day}),
            )
        )
    for old_id, days in entry["supersedes"].items():
        context.log.info(f"{entry['file']}: supersedes its earlier version {old_id} (days {', '.join(days)})")
    for day in sorted(set(_superseded_days(entry)) - set(entry["days"])):  # changed: recomputed like the others
        context.log_event(
            dg.AssetMaterialization(
                asset_key=feed.raw_asset,
                partition=day if feed.daily else None,
                metadata={"landed_file": entry["file"], "superseded": dg.MetadataValue.json(sorted(entry["supersedes"]))},
            )
        )


FILES_SHOWN = 100  # rows of a run's "files" table in the UI; landed-files tables hold them all


def _file_state(name: str, state: str, entry: dict | None = None) -> dict:
    """A file's row in the run's "files" table: its name, what became of it, and its counts once recorded."""
    counts = {key: (entry or {}).get(key) for key in ("file_id", "records_read", "records_routed", "records_quarantined")}
    return {"file": name, "state": state, **counts, "days": ", ".join(entry["days"]) if entry else None}


def _superseded_days(entry: dict) -> list[str]:
    return [day for days in entry["supersedes"].values() for day in days]
