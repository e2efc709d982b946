"""Jobs and sensors: ingest landed producer files, then recompute every day they touched."""

import json
from datetime import datetime, timezone

import dagster as dg

from ecomm_assets.core.landing import file_id, is_landing_file, split_landing_file
from ecomm_assets.core.storage import LakeStore, partition_dir
from ecomm_assets.resources import LakeResource

LANDING_DIR = "landing/orders"
MANIFEST_DIR = "raw/_landing_manifest"


class IngestConfig(dg.Config):
    files: list[str] = []  # names under landing/orders/; empty: every file not ingested yet


def landing_raw_path(day, landed_file_id: str) -> str:
    return f"{partition_dir('raw', 'orders', day)}/landing-{landed_file_id}.jsonl"


def ingest_file(store: LakeStore, name: str) -> dict:
    """Split one landed file into raw day files and quarantine what cannot be routed.
    Returns its manifest entry. Same bytes -> same file names and contents: idempotent."""
    data = store.read_bytes(f"{LANDING_DIR}/{name}")
    landed = split_landing_file(name, data)
    quarantine = f"quarantine/landing/{landed.file_id}"
    if landed.file_error:
        store.write_bytes(f"{quarantine}/file-{name.replace('/', '_')}", data)
    if landed.file_error or landed.quarantined:
        report = {"file": name, "file_error": landed.file_error, "records": landed.quarantined}
        store.write_bytes(f"{quarantine}/reason.json", json.dumps(report, indent=1).encode())
    for day in sorted(landed.days):
        rel = landing_raw_path(day, landed.file_id)
        content = landed.day_bytes(day)
        # Keep an existing identical file untouched: its age orders versions of an order.
        if not (store.exists(rel) and len(store.read_bytes(rel)) == len(content)):
            store.write_bytes(rel, content)
    entry = {
        "file": name,
        "file_id": landed.file_id,
        "bytes": len(data),
        "records_read": landed.records_read,
        "records_routed": landed.records_routed,
        "records_quarantined": len(landed.quarantined),
        "file_error": landed.file_error,
        "days": {str(day): len(lines) for day, lines in sorted(landed.days.items())},
        "ingested_at": datetime.now(timezone.utc).isoformat(),
    }
    store.write_bytes(f"{MANIFEST_DIR}/{landed.file_id}.json", json.dumps(entry, indent=1).encode())
    return entry


def pending_landing_files(store: LakeStore) -> list[str]:
    """Landing files whose content has not been ingested (new, or changed since)."""
    ingested = {f.name.removesuffix(".json") for f in store.list_files(MANIFEST_DIR)}
    names = [f.path[len(LANDING_DIR) + 1 :] for f in store.list_files(LANDING_DIR, recursive=True)]
    return [n for n in names if is_landing_file(n) and file_id(store.read_bytes(f"{LANDING_DIR}/{n}")) not in ingested]


@dg.op(
    description="Reads landed order files (JSON array or JSON Lines, .gz too) and writes each "
    "day's orders to raw/orders/dt=D/landing-<file id>.jsonl; unreadable records and files go to "
    "quarantine/landing/<file id>/ with reasons. Logs a materialization of orders_raw per day touched."
)
def ingest_landing_files(context: dg.OpExecutionContext, config: IngestConfig, lake: LakeResource) -> list[str]:
    store = lake.store()
    names = config.files or pending_landing_files(store)
    days: set[str] = set()
    for name in names:
        entry = ingest_file(store, name)
        context.log.info(
            f"{name}: {entry['records_read']} records, {entry['records_routed']} routed to "
            f"{len(entry['days'])} days, {entry['records_quarantined']} quarantined"
            + (f"; file quarantined: {entry['file_error']}" if entry["file_error"] else "")
        )
        for day, records in entry["days"].items():
            days.add(day)
            context.log_event(
                dg.AssetMaterialization(
                    asset_key="orders_raw",
                    partition=day,
                    metadata={"landed_file": name, "file_id": entry["file_id"], "records": records},
                )
            )
    return sorted(days)


@dg.job(description="Ingest landed order files into raw day partitions; a sensor then recomputes those days.")
def ingest_landing_job():
    ingest_landing_files()


def build_automation() -> tuple[list, list]:
    lake_job = dg.define_asset_job(
        "lake_job",
        selection=dg.AssetSelection.assets("order_lines").downstream(),
        description="Recompute order_lines and everything downstream for one day.",
    )

    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[ingest_landing_job],
        request_job=lake_job,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="After an ingest, requests one lake_job run per day it touched (run_key: run + day).",
    )
    def recompute_landed_days(context: dg.RunStatusSensorContext):
        records = context.instance.get_records_for_run(
            run_id=context.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=100_000
        ).records
        days = sorted(
            {
                r.event_log_entry.dagster_event.partition
                for r in records
                if r.event_log_entry.dagster_event.asset_key == dg.AssetKey("orders_raw")
            }
        )
        for day in days:
            yield dg.RunRequest(run_key=f"{context.dagster_run.run_id}:{day}", partition_key=day)

    return [ingest_landing_job, lake_job], [recompute_landed_days]
