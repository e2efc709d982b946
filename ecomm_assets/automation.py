"""Jobs, the daily schedule and sensors: ingest landed producer files of every feed (orders,
purchases, user profiles) as they arrive, recompute every day they touched (the profiles' table),
and write an alert when a run fails; and the live feed simulator's schedule (off by default), which
drops the synthetic shop's files into the landing zone."""

import json
from datetime import UTC, date, datetime, timedelta

import dagster as dg
from dagster_aws.s3 import S3Resource
from dagster_aws.s3.sensor import get_objects

from ecomm_assets.assets.landing import (
    INGEST_OPS,
    ingest_landing_files,
    ingest_purchase_files,
    ingest_user_profile_files,
    list_landing,
    skip_reason,
)
from ecomm_assets.core.layout import (
    FEEDS,
    ORDERS_FEED,
    PURCHASES_FEED,
    USER_PROFILES_FEED,
    Feed,
)
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


def landing_run_request(name: str, size: int, version: str, feed: Feed = ORDERS_FEED) -> dg.RunRequest:
    """One ingest run per landed file version: the same key, size and version (mtime locally, etag
    and LastModified on S3) never run twice. The orders' keys are the name alone (as before other
    feeds came: an instance's earlier keys still match); other feeds' start with their folder."""
    key = name if feed is ORDERS_FEED else f"{feed.name}/{name}"
    return dg.RunRequest(
        run_key=f"{key}:{size}:{version}",
        job_name=INGEST_JOBS[feed.name].name,
        run_config={"ops": {INGEST_OPS[feed.name].name: {"config": {"files": [name]}}}},
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


def recompute_request(run_id: str, first: date, last: date, job_name: str = "lake_job") -> dg.RunRequest:
    """One run of the feed's recompute job per range of consecutive days (a single-run backfill);
    keyed by the ingest run and the range, so a tick evaluated again requests nothing new."""
    if first == last:
        return dg.RunRequest(run_key=f"{run_id}:{first}", partition_key=str(first), job_name=job_name)
    return dg.RunRequest(
        run_key=f"{run_id}:{first}...{last}",
        job_name=job_name,
        tags={"dagster/asset_partition_range_start": str(first), "dagster/asset_partition_range_end": str(last)},
    )


@dg.job(description="Ingest landed order files into raw day partitions; a sensor then recomputes those days.")
def ingest_landing_job():
    ingest_landing_files()


@dg.job(description="Ingest landed purchase logs (CSV) into raw day partitions; a sensor then recomputes those days.")
def ingest_purchases_job():
    ingest_purchase_files()


@dg.job(description="Ingest landed user-profile files (CSV); a sensor then rebuilds dim_user_profiles.")
def ingest_user_profiles_job():
    ingest_user_profile_files()


INGEST_JOBS = {ORDERS_FEED.name: ingest_landing_job, PURCHASES_FEED.name: ingest_purchases_job,
               USER_PROFILES_FEED.name: ingest_user_profiles_job}


def _local_versions(store, feed: Feed) -> list[tuple[str, int, str, str | None]]:
    """Every file of a feed's landing folder, on every tick: a local mtime is the producer's (cp -p,
    rsync -a, unzip keep old ones), so no cursor could tell a new file by it. Run keys (name, size,
    mtime) make each version run once; the ingest moves each file it handled to the archive, so the
    folder holds only files not ingested yet (and skipped ones)."""
    return [(f.name, f.size, str(int(f.landed_at.timestamp() * 1e6)), f.refused) for f in list_landing(store, feed.landing_dir)]


@dg.sensor(
    jobs=list(INGEST_JOBS.values()),
    minimum_interval_seconds=15,
    # With the Lambda bridge delivering S3 events, polling is redundant: ECOMM_LANDING_SENSOR=off.
    default_status=dg.DefaultSensorStatus.RUNNING if SETTINGS.landing_sensor is Switch.ON else dg.DefaultSensorStatus.STOPPED,
    description="Finds new or changed files in every feed's landing folder: .json/.jsonl(.gz) in landing/orders/, "
    ".csv(.gz) in landing/purchases/ and landing/user_profiles/ (a local folder, or S3 through dagster-aws "
    "get_objects), and requests one run of the feed's ingest job per file version. The ingest moves the files it "
    "handled to landing/_ingested/<feed>/, out of this sensor's sight.",
)
def landing_files_sensor(context: dg.SensorEvaluationContext, lake: LakeResource, s3: S3Resource):
    store = lake.store()
    if store.is_local:
        seen = {feed: _local_versions(store, feed) for feed in FEEDS}
    else:
        # One cursor for every feed: S3 sets LastModified itself, so no new object is older than it.
        cursor = json.loads(context.cursor) if context.cursor else {}
        since = datetime.fromisoformat(cursor["last_modified"]) - LISTING_OVERLAP if cursor else None
        bucket, _, root = store.root.partition("/")
        seen, newest = {}, None
        for feed in FEEDS:
            prefix = f"{root}/{feed.landing_dir}/" if root else f"{feed.landing_dir}/"
            objects = list(get_objects(bucket, prefix, since_last_modified=since, client=s3.get_client()))
            # LastModified too: a version put back (A -> B -> A) has the first A's size and etag.
            seen[feed] = [(o["Key"][len(prefix) :], o["Size"], o["ETag"].strip('"') + ":" + o["LastModified"].isoformat(), None)
                          for o in objects]
            newest = max([o["LastModified"] for o in objects] + ([newest] if newest else []), default=None)
        if newest and (not cursor or newest.isoformat() > cursor["last_modified"]):
            context.update_cursor(json.dumps({"last_modified": newest.isoformat()}))
    for feed, versions in seen.items():
        for name, size, version, refused in versions:
            reason = refused or skip_reason(name, feed)
            shown = name if feed is ORDERS_FEED else f"{feed.landing_dir}/{name}"
            if reason:
                context.log.info(f"skipped {shown!r}: {reason}")
            else:
                yield landing_run_request(name, size, version, feed)


lake_job = dg.define_asset_job(
    "lake_job",
    # rating_vs_sales, downstream of order_lines, also reads product_reviews: a day known only from
    # landed files gets its (possibly empty) reviews in the same run.
    # Not the usage estimate (downstream of the catalog): the daily job makes it, not every recompute.
    selection=(dg.AssetSelection.assets("order_lines").downstream() | dg.AssetSelection.assets("product_reviews"))
    - dg.AssetSelection.assets("usage"),
    description="Recompute order_lines and everything downstream (with product_reviews, which rating_vs_sales "
    "reads) for one day or a range of days.",
)
purchases_job = dg.define_asset_job(
    "purchases_job",
    # dim_user_profiles too (it is cheap): its file then exists before the catalog step, which
    # registers it once; later profile files are read through that registration at once.
    selection=(dg.AssetSelection.assets("purchase_events").downstream() | dg.AssetSelection.assets("dim_user_profiles"))
    - dg.AssetSelection.assets("usage"),
    description="Recompute purchase_events and everything downstream for one day or a range of days "
    "(and dim_user_profiles, which the purchase analytics join).",
)
user_profiles_job = dg.define_asset_job(
    "user_profiles_job",
    selection=dg.AssetSelection.assets("dim_user_profiles"),
    description="Rebuild dim_user_profiles (not partitioned) from every landed profile file.",
)
# The job that recomputes what an ingest of each feed touched, and the first asset it computes.
RECOMPUTE_JOBS = {ORDERS_FEED.name: lake_job, PURCHASES_FEED.name: purchases_job, USER_PROFILES_FEED.name: user_profiles_job}
RECOMPUTED_FIRST = {ORDERS_FEED.name: "order_lines", PURCHASES_FEED.name: "purchase_events",
                    USER_PROFILES_FEED.name: "dim_user_profiles"}
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


def feed_of_job(job_name: str) -> Feed:
    """The feed an ingest job ingests."""
    return next(feed for feed in FEEDS if INGEST_JOBS[feed.name].name == job_name)


def landed_days(instance: dg.DagsterInstance, ingest_run_id: str, feed: Feed = ORDERS_FEED) -> set[date]:
    """The days an ingest run touched: its materializations of the feed's raw asset (for a feed
    that is not daily, the days its files were kept in)."""
    records = instance.get_records_for_run(
        run_id=ingest_run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=100_000
    ).records
    events = [r.event_log_entry.dagster_event for r in records
              if r.event_log_entry.dagster_event.asset_key == dg.AssetKey(feed.raw_asset)]
    if feed.daily:
        return {date.fromisoformat(event.partition) for event in events}
    return {date.fromisoformat(event.event_specific_data.materialization.metadata["day_kept_in"].value) for event in events}


def recompute_requests(instance: dg.DagsterInstance, ingest_run_id: str, feed: Feed) -> tuple[list[dg.RunRequest], list[date], list[date]]:
    """(requests, deferred, impossible) after an ingest run of `feed`: a run of its recompute job per
    range of consecutive runnable days (for a feed that is not daily: one run of its job when a file
    was ingested), and the days left to the daily schedule or never computable (days_to_recompute)."""
    days = landed_days(instance, ingest_run_id, feed)
    job_name = RECOMPUTE_JOBS[feed.name].name
    if not feed.daily:
        return ([dg.RunRequest(run_key=f"{ingest_run_id}:{feed.name}", job_name=job_name)] if days else []), [], []
    runnable, deferred, impossible = days_to_recompute(days)
    return [recompute_request(ingest_run_id, first, last, job_name) for first, last in contiguous_ranges(runnable)], deferred, impossible


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
    feed = feed_of_job(context.dagster_run.job_name)
    requests, deferred, impossible = recompute_requests(context.instance, run_id, feed)
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
                "job": RECOMPUTE_JOBS[feed.name].name,
                "assets": [RECOMPUTED_FIRST[feed.name]],
                "partition": f"{impossible[0]}...{impossible[-1]}",
                "error": message,
            }
        )
    yield from requests


RECOMPUTE = {
    "monitored_jobs": list(INGEST_JOBS.values()),
    "request_jobs": list(RECOMPUTE_JOBS.values()),
    "minimum_interval_seconds": 5,
    "default_status": dg.DefaultSensorStatus.RUNNING,
}
RECOMPUTE_DESCRIPTION = (
    "requests one run per range of consecutive days it touched of the feed's job (lake_job for orders, "
    "purchases_job for purchases; for user profiles one user_profiles_job run). Days that are not partitions yet (today, "
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
