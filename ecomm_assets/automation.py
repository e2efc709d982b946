"""Jobs, the daily schedule and sensors: ingest landed producer files as they arrive, recompute
every day they touched, and write an alert when a run fails."""

import json
from datetime import datetime, timedelta, timezone

import dagster as dg
from dagster_aws.s3 import S3Resource
from dagster_aws.s3.sensor import get_objects

from ecomm_assets.core.landing import DayWindow, file_id, is_landing_file, split_landing_file
from ecomm_assets.core.storage import LakeStore, partition_dir
from ecomm_assets.resources import AlertSinkResource, LakeResource

LANDING_DIR = "landing/orders"
MANIFEST_DIR = "raw/_landing_manifest"
# S3 lists LastModified to the second and a sensor tick can fall inside that second: each tick
# looks back this far, and run keys (key + size + etag) keep a file from being ingested twice.
LISTING_OVERLAP = timedelta(minutes=5)


class IngestConfig(dg.Config):
    files: list[str] = []  # names under landing/orders/; empty: every file not ingested yet


def landing_raw_path(day, landed_file_id: str) -> str:
    return f"{partition_dir('raw', 'orders', day)}/landing-{landed_file_id}.jsonl"


def ingest_file(store: LakeStore, name: str) -> dict:
    """Split one landed file into raw day files and quarantine what cannot be routed.
    Returns its manifest entry. Same bytes -> same file names and contents: idempotent."""
    data = store.read_bytes(f"{LANDING_DIR}/{name}")
    landed = split_landing_file(name, data, DayWindow.for_lake("2024-01-01"))
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


def landing_run_request(name: str, size: int, version: str) -> dg.RunRequest:
    """One ingest run per landed file version: the same key, size and etag/mtime never run twice."""
    return dg.RunRequest(
        run_key=f"{name}:{size}:{version}",
        job_name="ingest_landing_job",
        run_config={"ops": {"ingest_landing_files": {"config": {"files": [name]}}}},
        tags={"ecomm/landing-file": name[-200:]},
    )


def landing_files(context: dg.SensorEvaluationContext, lake: LakeResource, s3: S3Resource):
    store = lake.store()
    cursor = json.loads(context.cursor) if context.cursor else {}
    since = datetime.fromisoformat(cursor["last_modified"]) - LISTING_OVERLAP if cursor else None
    if store.is_local:
        seen = [
            (f.path[len(LANDING_DIR) + 1 :], f.size, str(int(f.mtime.timestamp() * 1e6)), f.mtime)
            for f in store.list_files(LANDING_DIR, recursive=True)
            if since is None or f.mtime > since
        ]
    else:
        bucket, _, root = store.root.partition("/")
        prefix = f"{root}/{LANDING_DIR}/" if root else f"{LANDING_DIR}/"
        seen = [
            (o["Key"][len(prefix) :], o["Size"], o["ETag"].strip('"'), o["LastModified"])
            for o in get_objects(bucket, prefix, since_last_modified=since, client=s3.get_client())
        ]
    for name, size, version, _ in seen:
        if is_landing_file(name):
            yield landing_run_request(name, size, version)
        else:
            context.log.debug(f"ignored {name}: not .json/.jsonl(.gz)")
    if seen:
        newest = max(modified for *_, modified in seen)
        if not cursor or newest.isoformat() > cursor["last_modified"]:
            context.update_cursor(json.dumps({"last_modified": newest.isoformat()}))


def _failed_assets(context: dg.RunFailureSensorContext) -> list[str]:
    steps = {event.step_key for event in context.get_step_failure_events()}
    plan = context.instance.get_execution_plan_snapshot(context.dagster_run.execution_plan_snapshot_id)
    return sorted(
        {"/".join(key.path) for step in plan.steps if step.key in steps for key in _step_asset_keys(step)}
    ) or sorted("/".join(key.path) for key in (context.dagster_run.asset_selection or []))


def _step_asset_keys(step) -> list[dg.AssetKey]:
    return [
        output.properties.asset_key for output in step.outputs if output.properties and output.properties.asset_key
    ]


def _root_cause(error) -> str:
    """The innermost error's message: Dagster wraps the user's exception in its own."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


@dg.run_failure_sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=10,
    description="Writes a JSON line per failed run (run id, job, assets, partition, error) to the "
    "alert sink: a local file by default, an SNS topic as well when configured.",
)
def run_failure_alerts(context: dg.RunFailureSensorContext, alerts: AlertSinkResource):
    run = context.dagster_run
    tags = run.tags
    partition = tags.get("dagster/partition") or (
        f"{tags['dagster/asset_partition_range_start']}...{tags['dagster/asset_partition_range_end']}"
        if "dagster/asset_partition_range_start" in tags else None
    )
    step_errors = [
        f"{event.step_key}: {_root_cause(event.event_specific_data.error)}"
        for event in context.get_step_failure_events()
        if event.event_specific_data and event.event_specific_data.error
    ]
    alerts.send(
        {
            "at": datetime.now(timezone.utc).isoformat(),
            "run_id": run.run_id,
            "job": run.job_name,
            "assets": _failed_assets(context),
            "partition": partition,
            "error": "; ".join(step_errors) or context.failure_event.message,
        }
    )


def build_automation(landing_sensor_running: bool = True) -> tuple[list, list, list]:
    """Jobs, schedules, sensors. With the Lambda bridge delivering S3 events, the polling landing
    sensor is redundant: start it stopped (ECOMM_LANDING_SENSOR=off)."""
    landing_files_sensor = dg.sensor(
        name="landing_files_sensor",
        job=ingest_landing_job,
        minimum_interval_seconds=15,
        default_status=dg.DefaultSensorStatus.RUNNING if landing_sensor_running else dg.DefaultSensorStatus.STOPPED,
        description="Finds new or changed .json/.jsonl(.gz) files in landing/orders/ (a local folder, or "
        "S3 through dagster-aws get_objects) and requests one ingest run per file version.",
    )(landing_files)
    lake_job = dg.define_asset_job(
        "lake_job",
        selection=dg.AssetSelection.assets("order_lines").downstream(),
        description="Recompute order_lines and everything downstream for one day.",
    )
    daily_job = dg.define_asset_job(
        "daily_job",
        selection=dg.AssetSelection.all(),
        description="Everything for one UTC day: sources, lake, checks, analytics, dashboard, catalog.",
    )
    daily_schedule = dg.build_schedule_from_partitioned_job(
        daily_job,
        hour_of_day=0,
        minute_of_hour=30,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="At 00:30 UTC, materializes the day that just ended.",
    )

    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[ingest_landing_job],
        request_job=lake_job,
        minimum_interval_seconds=5,
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

    jobs = [ingest_landing_job, lake_job, daily_job]
    return jobs, [daily_schedule], [recompute_landed_days, landing_files_sensor, run_failure_alerts]
