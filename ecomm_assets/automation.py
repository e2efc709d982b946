"""Jobs, the daily schedule and sensors: ingest landed producer files as they arrive, recompute
every day they touched, and write an alert when a run fails; and the live feed simulator's
schedule (off by default), which drops the synthetic shop's files into the landing zone."""

import json
from datetime import UTC, date, datetime, timedelta

import dagster as dg
from dagster_aws.s3 import S3Resource
from dagster_aws.s3.sensor import get_objects

from ecomm_assets.assets.landing import ingest_landing_files, list_landing, skip_reason
from ecomm_assets.core.layout import LANDING_DIR
from ecomm_assets.core.simulator import (
    Tick,
    cron_schedule,
    describe,
    drop,
    tick_at_or_before,
    tick_drops,
)
from ecomm_assets.partitions import DAILY_PARTITIONS
from ecomm_assets.resources import AlertSinkResource, LakeResource, LiveFeedResource
from ecomm_assets.settings import SETTINGS, Switch

# S3 lists LastModified to the second and a sensor tick can fall inside that second: each tick
# looks back this far, and run keys (key + size + etag + LastModified) keep a file from being
# ingested twice. S3 sets LastModified itself when an object is written (a copy or restore is a new
# write), so a new object is never older than the cursor.
LISTING_OVERLAP = timedelta(minutes=5)
# The ingest runs of one landed name queue one at a time (the instances' tag_concurrency_limits).
# The tag holds the name's last 200 characters: bounded for the run storage's tag index, and two
# names sharing them only queue behind each other. The Lambda bridge has copies of both.
LANDING_FILE_TAG = "ecomm/landing-file"
# A file not ingested (unreadable, vanished, a day locked too long) fails its ingest run after the
# other files; the daemon runs it again this many times (the instance's run_retries must be enabled).
INGEST_MAX_RETRIES = 2


def landing_file_tag(name: str) -> str:
    return name[-200:]


def landing_run_request(name: str, size: int, version: str) -> dg.RunRequest:
    """One ingest run per landed file version: the same key, size and version (mtime locally, etag
    and LastModified on S3) never run twice."""
    return dg.RunRequest(
        run_key=f"{name}:{size}:{version}",
        job_name="ingest_landing_job",
        run_config={"ops": {"ingest_landing_files": {"config": {"files": [name]}}}},
        tags={LANDING_FILE_TAG: landing_file_tag(name), "dagster/max_retries": str(INGEST_MAX_RETRIES)},
    )


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
    # Every run of the instance: also those of `dagster asset materialize` and `dagster job execute`,
    # which have no code location (a sensor matches only runs of its own location by default).
    monitor_all_code_locations=True,
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
            "at": datetime.now(UTC).isoformat(),
            "run_id": run.run_id,
            "job": run.job_name,
            "assets": _failed_assets(context),
            "partition": partition,
            "error": "; ".join(step_errors) or context.failure_event.message,
        }
    )


def contiguous_ranges(days: list[date]) -> list[tuple[date, date]]:
    """Sorted days as (first, last) runs of consecutive days."""
    ranges: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if ranges and day == ranges[-1][1] + timedelta(days=1):
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges


def recompute_request(run_id: str, first: date, last: date) -> dg.RunRequest:
    """One lake_job run per range of consecutive days (a single-run backfill); keyed by the ingest
    run and the range, so a tick evaluated again requests nothing new."""
    if first == last:
        return dg.RunRequest(run_key=f"{run_id}:{first}", partition_key=str(first))
    return dg.RunRequest(
        run_key=f"{run_id}:{first}...{last}",
        tags={"dagster/asset_partition_range_start": str(first), "dagster/asset_partition_range_end": str(last)},
    )


@dg.job(description="Ingest landed order files into raw day partitions; a sensor then recomputes those days.")
def ingest_landing_job():
    ingest_landing_files()


@dg.sensor(
    job=ingest_landing_job,
    minimum_interval_seconds=15,
    # With the Lambda bridge delivering S3 events, polling is redundant: ECOMM_LANDING_SENSOR=off.
    default_status=dg.DefaultSensorStatus.RUNNING if SETTINGS.landing_sensor is Switch.ON else dg.DefaultSensorStatus.STOPPED,
    description="Finds new or changed .json/.jsonl(.gz) files in landing/orders/ (a local folder, or "
    "S3 through dagster-aws get_objects) and requests one ingest run per file version. The ingest moves "
    "the files it handled to landing/_ingested/orders/, out of this sensor's sight.",
)
def landing_files_sensor(context: dg.SensorEvaluationContext, lake: LakeResource, s3: S3Resource):
    store = lake.store()
    if store.is_local:
        # Every file on every tick: a local mtime is the producer's (cp -p, rsync -a, unzip keep old
        # ones), so no cursor could tell a new file by it. Run keys (name, size, mtime) make each
        # version run once; the ingest moves each file it handled to landing/_ingested/orders/, so
        # the folder holds only files not ingested yet (and skipped ones).
        seen = [(f.name, f.size, str(int(f.landed_at.timestamp() * 1e6)), f.refused) for f in list_landing(store)]
    else:
        cursor = json.loads(context.cursor) if context.cursor else {}
        since = datetime.fromisoformat(cursor["last_modified"]) - LISTING_OVERLAP if cursor else None
        bucket, _, root = store.root.partition("/")
        prefix = f"{root}/{LANDING_DIR}/" if root else f"{LANDING_DIR}/"
        objects = list(get_objects(bucket, prefix, since_last_modified=since, client=s3.get_client()))
        # LastModified too: a version put back (A -> B -> A) has the first A's size and etag.
        seen = [(o["Key"][len(prefix) :], o["Size"], o["ETag"].strip('"') + ":" + o["LastModified"].isoformat(), None)
                for o in objects]
        newest = max((o["LastModified"] for o in objects), default=None)
        if newest and (not cursor or newest.isoformat() > cursor["last_modified"]):
            context.update_cursor(json.dumps({"last_modified": newest.isoformat()}))
    for name, size, version, refused in seen:
        reason = refused or skip_reason(name)
        if reason:
            context.log.info(f"skipped {name!r}: {reason}")
        else:
            yield landing_run_request(name, size, version)

lake_job = dg.define_asset_job(
    "lake_job",
    # rating_vs_sales, downstream of order_lines, also reads product_reviews: a day known only from
    # landed files gets its (possibly empty) reviews in the same run.
    selection=dg.AssetSelection.assets("order_lines").downstream() | dg.AssetSelection.assets("product_reviews"),
    description="Recompute order_lines and everything downstream (with product_reviews, which rating_vs_sales "
    "reads) for one day or a range of days.",
)
daily_job = dg.define_asset_job(
    "daily_job",
    selection=dg.AssetSelection.all(),
    description="Everything for one UTC day: sources, lake, checks, analytics, dashboard, catalog.",
)
daily_job_schedule = dg.build_schedule_from_partitioned_job(
    daily_job,
    hour_of_day=0,
    minute_of_hour=30,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="At 00:30 UTC, materializes the day that just ended.",
)


def landed_days(instance: dg.DagsterInstance, ingest_run_id: str) -> set[date]:
    """The days an ingest run touched: its materializations of orders_raw."""
    records = instance.get_records_for_run(
        run_id=ingest_run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=100_000
    ).records
    return {
        date.fromisoformat(r.event_log_entry.dagster_event.partition)
        for r in records
        if r.event_log_entry.dagster_event.asset_key == dg.AssetKey("orders_raw")
    }


def days_to_recompute(days: set[date]) -> tuple[list[date], list[date], list[date]]:
    """(runnable, deferred, impossible): partitions now; not partitions yet (today, tomorrow: left to
    the daily schedule); before the first partition (never)."""
    runnable = sorted(day for day in days if DAILY_PARTITIONS.has_partition_key(str(day)))
    first = DAILY_PARTITIONS.start.date()
    deferred = sorted(day for day in days - set(runnable) if day >= first)
    impossible = sorted(day for day in days if day < first)
    return runnable, deferred, impossible


def _recompute_landed_days(context: dg.RunStatusSensorContext, alerts: AlertSinkResource):
    run_id = context.dagster_run.run_id
    runnable, deferred, impossible = days_to_recompute(landed_days(context.instance, run_id))
    if deferred:
        context.log.info(f"not partitions yet, left to the daily schedule: {', '.join(map(str, deferred))}")
    if impossible:
        first = DAILY_PARTITIONS.start.date()
        message = f"days before the first partition ({first}) cannot be recomputed: {', '.join(map(str, impossible))}"
        context.log.warning(message)
        alerts.send(
            {
                "at": datetime.now(UTC).isoformat(),
                "run_id": run_id,
                "job": lake_job.name,
                "assets": ["order_lines"],
                "partition": f"{impossible[0]}...{impossible[-1]}",
                "error": message,
            }
        )
    for start, end in contiguous_ranges(runnable):
        yield recompute_request(run_id, start, end)


RECOMPUTE = {
    "monitored_jobs": [ingest_landing_job],
    "request_job": lake_job,
    "minimum_interval_seconds": 5,
    "default_status": dg.DefaultSensorStatus.RUNNING,
}
RECOMPUTE_DESCRIPTION = (
    "requests one lake_job run per range of consecutive days it touched. Days that are not partitions yet (today, "
    "tomorrow) are left to the daily schedule; days it can never run (before the first partition) are logged and "
    "alerted, never retried."
)


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, **RECOMPUTE,
                      description=f"After an ingest run that succeeded, {RECOMPUTE_DESCRIPTION}")
def recompute_landed_days(context: dg.RunStatusSensorContext, alerts: AlertSinkResource):
    yield from _recompute_landed_days(context, alerts)


# A failed ingest run (a file not ingested, a killed worker) wrote the other files' days: those are
# recomputed too. Run keys hold the ingest run's id, so the two sensors never share one.
@dg.run_status_sensor(run_status=dg.DagsterRunStatus.FAILURE, **RECOMPUTE,
                      description=f"After an ingest run that failed, {RECOMPUTE_DESCRIPTION}")
def recompute_landed_days_after_failure(context: dg.RunStatusSensorContext, alerts: AlertSinkResource):
    yield from _recompute_landed_days(context, alerts)


class FeedTickConfig(dg.Config):
    tick: str  # the tick's time, ISO 8601 with its zone (UTC), on the feed's grid
    every_minutes: int = SETTINGS.feed_every_minutes


# A clock a little ahead of the scheduler's is no future tick.
FEED_CLOCK_SKEW = timedelta(minutes=1)


@dg.op(
    description="Drops the live feed's files of one tick into the landing zone (landing/orders/"
    "simulated-orders-<tick>.json.gz: the orders of the interval before the tick, with late and "
    "resent ones), each in one atomic write; a file already there (or already ingested) is left alone.",
)
def drop_feed_files(context: dg.OpExecutionContext, config: FeedTickConfig, lake: LakeResource,
                    live_feed: LiveFeedResource) -> dg.Output[list[str]]:
    try:
        feed = live_feed.feed(config.every_minutes, DAILY_PARTITIONS.start.date())
        tick = Tick(datetime.fromisoformat(config.tick), feed)
    except ValueError as error:
        raise dg.Failure(description=f"cannot run the feed's tick {config.tick!r}: {error}") from None
    if tick.at > datetime.now(UTC) + FEED_CLOCK_SKEW:
        raise dg.Failure(description=f"the tick {tick.stamp} is in the future: its orders would be dated ahead of the clock")
    dropped = drop(lake.store(), tick_drops(tick))
    for file, written in dropped:
        context.log.info(describe(file, written))
    if not dropped:
        context.log.info(f"no order in the interval before {tick.stamp}: nothing dropped")
    new = [file for file, written in dropped if written]
    return dg.Output(
        [file.path for file in new],
        metadata={
            "tick": tick.stamp,
            "files_dropped": len(new),
            "records": sum(file.records for file in new),
            "late": sum(file.late for file in new),
            "resent": sum(file.resent for file in new),
        },
    )


@dg.job(description="Drops one tick of the simulated live feed into the landing zone (see live_feed_schedule).")
def live_feed_job():
    drop_feed_files()


def feed_run_request(tick: datetime, every_minutes: int) -> dg.RunRequest:
    """One live_feed_job run per tick: the same tick never runs twice."""
    stamp = tick.astimezone(UTC).isoformat()
    return dg.RunRequest(
        run_key=f"feed:{stamp}",
        run_config={"ops": {"drop_feed_files": {"config": {"tick": stamp, "every_minutes": every_minutes}}}},
        tags={"ecomm/feed-tick": stamp},
    )


@dg.schedule(
    job=live_feed_job,
    cron_schedule=cron_schedule(SETTINGS.feed_every_minutes),
    execution_timezone="UTC",
    # A demo, not production: off until a user turns it on (Automation, or the CLI next to it).
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description=f"Every {SETTINGS.feed_every_minutes} minutes (ECOMM_FEED_EVERY_MINUTES), drops the synthetic shop's "
    "orders of the last interval into landing/orders/, some late (dated hours or days before) and some sent again "
    "(unchanged or updated): the landing sensor ingests them, the recompute sensor runs their days. The shop's clock "
    "runs ECOMM_FEED_DAYS_BEHIND days behind (0: live). Off by default.",
)
def live_feed_schedule(context: dg.ScheduleEvaluationContext):
    # The shop's clock runs ECOMM_FEED_DAYS_BEHIND days behind the scheduler's.
    shop_time = (context.scheduled_execution_time or datetime.now(UTC)) - timedelta(days=SETTINGS.feed_days_behind)
    every = timedelta(minutes=SETTINGS.feed_every_minutes)
    return feed_run_request(tick_at_or_before(shop_time, every), SETTINGS.feed_every_minutes)
