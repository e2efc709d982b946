"""The purchase log and user profiles (landing/purchases/, landing/user_profiles/): their raw day
files as the ingest writes them, typed purchase events per UTC day, and the current profile of
each user (one unpartitioned table, so that every day's purchases join the newest profiles)."""

import json
from collections import Counter
from datetime import date

import dagster as dg

from ecomm_assets.assets.days import (
    run_days,
    split_by_day,
    write_days,
    write_days_rejects,
    writing_days,
)
from ecomm_assets.assets.lake import (
    LAKE,
    raw_days_files,
    raw_files_read,
)
from ecomm_assets.assets.landing import raw_file_age
from ecomm_assets.assets.metadata import (
    column_schema,
    preview,
    reasons_table,
    with_usage,
)
from ecomm_assets.core.layout import (
    COUNTS_FILE,
    PART_FILE,
    PURCHASES_FEED,
    QUARANTINE,
    QUARANTINE_FILE,
    USER_PROFILES_FEED,
    quarantine_path,
    source_label,
    table_dir,
    unpartitioned_quarantine_path,
    unpartitioned_table_path,
)
from ecomm_assets.core.purchase_tables import (
    Counts,
    RawCsvFile,
    build_dim_user_profiles,
    build_purchase_events,
)
from ecomm_assets.core.schemas import DIM_USER_PROFILES, PURCHASE_EVENTS, conform
from ecomm_assets.core.storage import LakeFile, LakeStore, quarantine_lines
from ecomm_assets.partitions import BACKFILL_POLICY, DAILY_PARTITIONS
from ecomm_assets.resources import LakeResource

purchases_raw = dg.AssetSpec(
    PURCHASES_FEED.raw_asset,
    partitions_def=DAILY_PARTITIONS,
    group_name="sources",
    kinds={"csv"},
    owners=["team:data-platform"],
    description=f"The day's purchase events as landed in {PURCHASES_FEED.landing_dir}/ (CSV, one event per row, "
    f"the log's columns plus event_ts_utc), under {PURCHASES_FEED.raw_dir('YYYY-MM-DD')}/: one file per landed "
    "file version. Written by ingest_purchases_job; a sensor then recomputes the days it touched.",
)
user_profiles_raw = dg.AssetSpec(
    USER_PROFILES_FEED.raw_asset,
    group_name="sources",
    kinds={"csv"},
    owners=["team:data-platform"],
    description=f"User-profile files as landed in {USER_PROFILES_FEED.landing_dir}/ (CSV), under "
    f"{USER_PROFILES_FEED.raw_dir('<day it landed>')}/. Written by ingest_user_profiles_job.",
)


def _raw_csv_files(files: list[LakeFile], paths: list[str], days: list[date]) -> list[RawCsvFile]:
    return [RawCsvFile(path, source_label(f.name, PURCHASES_FEED.raw_suffix), day, raw_file_age(f))
            for path, f, day in zip(paths, files, days)]


@dg.asset(
    **LAKE,
    deps=[purchases_raw],
    metadata={"dagster/column_schema": column_schema(PURCHASE_EVENTS)},
    description="One row per purchase event of the UTC day: ids as text, prices and discount as "
    "decimal(18,2) (52207 and 58573.0 alike), revenue and margin, event_ts in UTC. Rows with an "
    "unparseable or negative price or an empty id go to quarantine/purchase_events/ with a reason; an "
    "exact duplicate of an earlier event (delivered twice) is dropped and counted.",
)
@with_usage
def purchase_events(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    days = run_days(context)
    store = lake.store()
    with writing_days(context, store, days, {PURCHASES_FEED.raw_root: days}) as ensure_inputs_unchanged:
        raw = raw_days_files(store, days, PURCHASES_FEED)
        listed = [(day, f) for day, files in raw.items() for f in files]
        with store.local_paths([f.path for _, f in listed]) as paths:
            typed = build_purchase_events(
                _raw_csv_files([f for _, f in listed], paths, [day for day, _ in listed]), days)
            local = {f.path: path for (_, f), path in zip(listed, paths)}
            read = {day: raw_files_read(raw[day], local, PURCHASES_FEED) for day in days}
        ensure_inputs_unchanged()
        write_days_rejects(store, "purchase_events", {day: _counts_record(typed.counts[day]) | read[day] for day in days},
                           typed.quarantined)
        metadata = write_days(context, store, "purchase_events", PURCHASE_EVENTS, split_by_day(typed.table, "event_date", days))
    totals = list(typed.counts.values())
    reasons = sum((c.reasons for c in totals), Counter())
    metadata.update({
        "records_read": sum(c.records_read for c in totals),
        "records_quarantined": sum(c.quarantined for c in totals),
        "duplicates_dropped": sum(c.dropped for c in totals),
        "conservation_holds": all(c.conserved for c in totals),
        "top_reject_reasons": reasons_table(dict(reasons.most_common(10))),
        "raw_files": len(listed),
    })
    quarantined_days = [day for day, c in typed.counts.items() if c.quarantined]
    if quarantined_days:
        metadata["quarantine_path"] = dg.MetadataValue.path(store.full_uri(quarantine_path("purchase_events", quarantined_days[0])))
    return dg.MaterializeResult(metadata=metadata)


PROFILE_BUILDS = 3  # builds of dim_user_profiles while profile files keep landing, at the most


def raw_profile_files(store: LakeStore) -> list[LakeFile]:
    """The raw profile files, oldest landed first: the order in which a user's versions win."""
    return sorted((f for f in store.list_files(USER_PROFILES_FEED.raw_root, recursive=True)
                   if f.name.endswith(USER_PROFILES_FEED.raw_suffix)), key=lambda f: (raw_file_age(f), f.name))


def _counts_record(counts: Counts, dropped: str = "duplicates_dropped") -> dict:
    return {"records_read": counts.records_read, "loaded": counts.loaded, "quarantined": counts.quarantined,
            dropped: counts.dropped, "reasons": dict(counts.reasons.most_common())}


@dg.asset(
    group_name="lake",
    owners=["team:data-platform"],
    kinds={"duckdb", "parquet"},
    # Not partitioned, but it runs in a range's single run (the CLI's --partition-range asks every asset for this).
    backfill_policy=BACKFILL_POLICY,
    deps=[user_profiles_raw],
    metadata={"dagster/column_schema": column_schema(DIM_USER_PROFILES)},
    description="The current profile of each user_id (the newest landed profile file wins; in one file, its "
    f"last row), typed (age as a number, its age band), in one file ({unpartitioned_table_path('dim_user_profiles')}): "
    "not partitioned, so that purchases of any day, old ones included, join the newest profiles as soon as "
    "a profile file is ingested. Rows with an empty user_id or an unparseable age go to "
    f"{unpartitioned_quarantine_path('dim_user_profiles')} with a reason.",
)
@with_usage
def dim_user_profiles(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    store = lake.store()
    # A profile file ingested while the table is built (each ingest starts a run of this asset) makes
    # the build stale: built again from the new listing, so that no older build replaces a newer one.
    for attempt in range(1, PROFILE_BUILDS + 1):
        files = raw_profile_files(store)
        with store.local_paths([f.path for f in files]) as paths:
            typed, counts = build_dim_user_profiles(
                [RawCsvFile(path, source_label(f.name, USER_PROFILES_FEED.raw_suffix), raw_file_age(f).date(), raw_file_age(f))
                 for path, f in zip(paths, files)])
            read = raw_files_read(files, {f.path: path for f, path in zip(files, paths)}, USER_PROFILES_FEED)
        if raw_profile_files(store) == files:
            break
        context.log.info(f"profile files changed while the table was built (build {attempt}): building it again")
    if not files:
        context.log.warning(f"no user-profile files under {USER_PROFILES_FEED.raw_root}/: writing an empty table")
    table = conform(typed.table, DIM_USER_PROFILES, "dim_user_profiles")
    rejects = typed.quarantined.drop_columns(["day"])
    store.replace_partition(f"{QUARANTINE}/dim_user_profiles", {QUARANTINE_FILE: quarantine_lines(rejects)} if rejects.num_rows else {})
    size = store.replace_partition(table_dir("dim_user_profiles"), {
        PART_FILE: table,
        COUNTS_FILE: json.dumps(_counts_record(counts, "replaced_by_newer") | read, indent=1).encode(),
    })
    return dg.MaterializeResult(metadata={
        "dagster/row_count": table.num_rows,
        "records_read": counts.records_read,
        "records_quarantined": counts.quarantined,
        "replaced_by_newer": counts.dropped,
        "conservation_holds": counts.conserved,
        "top_reject_reasons": reasons_table(dict(counts.reasons.most_common(10))),
        "profile_files": len(files),
        "bytes_written": size,
        "path": dg.MetadataValue.path(store.full_uri(unpartitioned_table_path("dim_user_profiles"))),
        "preview": preview(table),
    })
