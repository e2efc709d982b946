"""Schedules (daily, and the live feed's), one-run backfills through the CLI, the landing sensor
(local and S3), failure alerts."""

import json
import os
import subprocess
import time
from datetime import UTC, datetime

import boto3
import dagster as dg
import duckdb
import pytest
from dagster_aws.s3 import S3Resource

from ecomm_assets.automation import (
    INGEST_MAX_RETRIES,
    FeedTickConfig,
    drop_feed_files,
    landing_file_tag,
)
from ecomm_assets.core.simulator import Tick, order_drops
from ecomm_assets.resources import AlertSinkResource, LakeResource, LiveFeedResource
from ecomm_assets_tests.conftest import (
    DAGSTER,
    local_instance_home,
    make_definitions,
    materialize_day,
    project_loaded_with,
)
from ecomm_assets_tests.test_definitions import land


def lake_sql(lake_dir, query):
    return duckdb.sql(query.replace("{lake}", str(lake_dir))).fetchall()


def test_the_daily_schedule_materializes_the_day_that_just_ended(lake_dir):
    defs = make_definitions(lake_dir)
    schedule = defs.resolve_schedule_def("daily_job_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.cron_schedule == "30 0 * * *" and schedule.execution_timezone in (None, "UTC")
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2024, 3, 5, 0, 30, tzinfo=UTC), repository_def=defs.get_repository_def()
    )
    [request] = list(schedule.evaluate_tick(context).run_requests)
    assert request.partition_key == "2024-03-04"
    assert dg.AssetKey("catalog") in defs.resolve_job_def("daily_job").asset_layer.asset_graph.get_all_asset_keys()


def live_feed_run(defs, instance, run_config, lake: LakeResource) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def("live_feed_job").execute_in_process(
        run_config=run_config, instance=instance, raise_on_error=False, resources={"lake": lake, "live_feed": LiveFeedResource()})


@pytest.mark.parametrize("on_s3", [False, True], ids=["local", "s3"])
def test_the_live_feed_schedule_is_off_by_default_and_its_tick_drops_a_file_the_landing_sensor_takes(
        lake_dir, instance, request, on_s3):
    defs = make_definitions(lake_dir)
    schedule = defs.resolve_schedule_def("live_feed_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule.cron_schedule == "*/5 * * * *" and schedule.execution_timezone == "UTC"
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2024, 1, 15, 12, 0, tzinfo=UTC), repository_def=defs.get_repository_def()
    )
    [tick] = list(schedule.evaluate_tick(context).run_requests)
    assert tick.run_key == "feed:2024-01-15T12:00:00+00:00" and tick.job_name in (None, "live_feed_job")

    if on_s3:
        aws = request.getfixturevalue("aws")
        boto3.client("s3", endpoint_url=aws, region_name="us-east-1").create_bucket(Bucket="lake")
        lake = LakeResource(uri="s3://lake/prefix", s3_endpoint_url=aws, s3_region="us-east-1")
        s3 = S3Resource(endpoint_url=aws, region_name="us-east-1")
    else:
        lake, s3 = LakeResource(uri=str(lake_dir)), S3Resource()
    result = live_feed_run(defs, instance, tick.run_config, lake)
    name, log = "simulated-orders-20240115T120000Z.json.gz", "simulated-purchases-20240115T120000Z.csv"
    profiles = "simulated-user-profiles.csv"
    assert result.success and result.output_for_node("drop_feed_files") == [
        f"landing/orders/{name}", f"landing/user_profiles/{profiles}", f"landing/purchases/{log}"]
    feed = LiveFeedResource().feed(5, defs.resolve_job_def("lake_job").partitions_def.start.date())
    assert lake.store().read_bytes(f"landing/orders/{name}") == order_drops(Tick(datetime(2024, 1, 15, 12, tzinfo=UTC), feed))[0].data
    requests, _ = sensor_requests(defs, "landing_files_sensor", lake=lake, s3=s3)
    files = {op: config["config"]["files"] for r in requests for op, config in r.run_config["ops"].items()}
    assert files == {"ingest_landing_files": [name], "ingest_purchase_files": [log], "ingest_user_profile_files": [profiles]}
    again = live_feed_run(defs, instance, tick.run_config, lake)  # the same tick once more: nothing new lands
    assert again.success and again.output_for_node("drop_feed_files") == []


def test_the_live_feed_schedule_follows_its_settings(lake_dir):
    with project_loaded_with(ECOMM_FEED_EVERY_MINUTES="60", ECOMM_FEED_DAYS_BEHIND="1"):
        defs = make_definitions(lake_dir)
    schedule = defs.resolve_schedule_def("live_feed_schedule")
    assert schedule.cron_schedule == "0 * * * *"
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2024, 1, 15, 12, 0, tzinfo=UTC), repository_def=defs.get_repository_def()
    )
    [tick] = list(schedule.evaluate_tick(context).run_requests)
    assert tick.run_config["ops"]["drop_feed_files"]["config"] == {"tick": "2024-01-14T12:00:00+00:00", "every_minutes": 60}


@pytest.mark.parametrize(
    "config, message",
    [
        ({"tick": "2999-01-01T00:00:00+00:00"}, "the tick 2999-01-01T00:00:00Z is in the future"),
        ({"tick": "2024-01-15T12:03:00+00:00"}, "is not on the 5-minute grid"),
        ({"tick": "2024-01-15T12:00:00"}, "give a time zone"),
        ({"tick": "noon"}, "cannot run the feed's tick 'noon'"),
        ({"tick": "2024-01-15T12:00:00+00:00", "every_minutes": 7}, "interval 7: must divide an hour"),
    ],
    ids=["future", "off-grid", "no-zone", "not-a-time", "interval"],
)
def test_the_live_feed_job_refuses_a_tick_it_cannot_run(lake_dir, config, message):
    resources = {"lake": LakeResource(uri=str(lake_dir)), "live_feed": LiveFeedResource()}
    with dg.build_op_context(resources=resources) as context, pytest.raises(dg.Failure) as refused:
        drop_feed_files(context, FeedTickConfig(**config))
    assert message in refused.value.description
    assert not (lake_dir / "landing").exists()


@pytest.mark.slow
def test_a_range_is_one_run_and_equals_day_by_day_runs(tmp_path):
    """`dagster asset materialize --partition-range` as a user types it, on the project's local
    instance: one run for 4 days, and every table identical to materializing the days one by one."""
    env = os.environ | {
        "DAGSTER_HOME": str(local_instance_home(tmp_path / "home")), "ECOMM_LAKE_URI": str(tmp_path / "range" / "lake"),
        "ECOMM_DUCKDB_CATALOG": str(tmp_path / "range" / "catalog.duckdb"),
        "ECOMM_ALERTS_PATH": str(tmp_path / "alerts.jsonl"), "ECOMM_ORDERS_PER_DAY": "200",
    }
    cli = subprocess.run(
        [DAGSTER, "asset", "materialize", "-m", "ecomm_assets", "--select", "*", "--partition-range", "2024-01-14...2024-01-17"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert cli.returncode == 0, cli.stderr[-3000:]
    # No warning but the CLI's own note that `dg` supersedes it: the known Beta/Preview notices are silenced.
    assert [line for line in cli.stderr.splitlines() if "Warning: " in line and "SupersessionWarning" not in line] == []
    assert cli.stderr.count("RUN_SUCCESS") == 1 and "did not pass" not in cli.stderr.replace("'totals_reconcile' on 'orders' did not pass", "")

    by_day = tmp_path / "days" / "lake"
    defs = make_definitions(by_day)
    with dg.DagsterInstance.ephemeral() as instance:
        for day in ("2024-01-14", "2024-01-15", "2024-01-16", "2024-01-17"):
            assert materialize_day(defs, day, instance).success
    for table in ("order_lines", "orders", "dim_products", "dim_customers", "sales_by_category",
                  "product_performance", "top_customers", "daily_order_summary"):
        query = "SELECT * FROM read_parquet('{lake}/processed/" + table + "/*/*.parquet', hive_partitioning=true) ORDER BY ALL"
        range_rows = lake_sql(tmp_path / "range" / "lake", query)
        assert range_rows == lake_sql(by_day, query), table
        days = "SELECT DISTINCT dt::VARCHAR FROM read_parquet('{lake}/processed/" + table + "/*/*.parquet', hive_partitioning=true) ORDER BY 1"
        assert lake_sql(tmp_path / "range" / "lake", days) == [("2024-01-14",), ("2024-01-15",), ("2024-01-16",), ("2024-01-17",)], table
    with duckdb.connect(str(tmp_path / "range" / "catalog.duckdb"), read_only=True) as catalog:
        assert catalog.sql("SELECT count(DISTINCT dt) FROM orders").fetchall() == [(4,)]


def sensor_requests(defs, sensor_name, cursor=None, **resources):
    sensor = defs.resolve_sensor_def(sensor_name)
    with dg.build_sensor_context(cursor=cursor, resources=resources) as context:
        result = sensor.evaluate_tick(context)
    return result.run_requests, result.cursor


def test_the_landing_sensor_requests_each_local_file_version_once(lake_dir):
    defs = make_definitions(lake_dir)
    landing = lake_dir / "landing" / "orders"
    landing.mkdir(parents=True)
    (landing / "a.json").write_text("[]")
    (landing / "b.jsonl.gz").write_bytes(b"")
    (landing / "notes.txt").write_text("not orders")
    resources = {"lake": LakeResource(uri=str(lake_dir)), "s3": S3Resource()}
    requests, cursor = sensor_requests(defs, "landing_files_sensor", **resources)
    assert sorted(r.run_config["ops"]["ingest_landing_files"]["config"]["files"][0] for r in requests) == ["a.json", "b.jsonl.gz"]
    assert all(r.job_name == "ingest_landing_job" for r in requests)
    again, _ = sensor_requests(defs, "landing_files_sensor", cursor=cursor, **resources)
    assert len(requests) == 2 and {r.run_key for r in again} == {r.run_key for r in requests}  # same versions, same run keys
    time.sleep(0.01)
    (landing / "a.json").write_text('[{"order_id": "X"}]')  # a changed file is a new version
    changed, _ = sensor_requests(defs, "landing_files_sensor", cursor=cursor, **resources)
    assert any(r.run_key.startswith("a.json:") and r.run_key not in {q.run_key for q in requests} for r in changed)


def test_the_landing_sensor_finds_a_local_file_whatever_its_mtime(lake_dir):
    """cp -p, rsync -a, unzip and os.utime land files with old mtimes: a tick must still see them."""
    defs = make_definitions(lake_dir)
    landing = lake_dir / "landing" / "orders"
    landing.mkdir(parents=True)
    (landing / "first.json").write_text("[]")
    resources = {"lake": LakeResource(uri=str(lake_dir)), "s3": S3Resource()}
    first, cursor = sensor_requests(defs, "landing_files_sensor", **resources)
    (landing / "copied.json").write_text("[]")
    an_hour_ago = int(time.time()) - 3600  # whole seconds: the run key holds microseconds exactly
    os.utime(landing / "copied.json", (an_hour_ago, an_hour_ago))
    second, _ = sensor_requests(defs, "landing_files_sensor", cursor=cursor, **resources)
    assert f"copied.json:2:{an_hour_ago * 1_000_000}" in {r.run_key for r in second}
    assert {r.run_key for r in second} - {r.run_key for r in first} == {f"copied.json:2:{an_hour_ago * 1_000_000}"}
    assert len(first) == 1  # and first.json's run key is the same, so it does not run again


@pytest.fixture
def s3_landing(lake_dir, aws):
    """An S3 client, the definitions, and the sensor's resources for a lake at s3://lake/prefix."""
    s3 = boto3.client("s3", endpoint_url=aws, region_name="us-east-1")
    s3.create_bucket(Bucket="lake")
    resources = {
        "lake": LakeResource(uri="s3://lake/prefix", s3_endpoint_url=aws, s3_region="us-east-1"),
        "s3": S3Resource(endpoint_url=aws, region_name="us-east-1"),
    }
    return s3, make_definitions(lake_dir), resources


def test_the_landing_sensor_on_s3_misses_nothing_in_the_same_second(s3_landing):
    s3, defs, resources = s3_landing
    s3.put_object(Bucket="lake", Key="prefix/landing/orders/first.json", Body=b"[]")
    s3.put_object(Bucket="lake", Key="prefix/landing/orders/skip.csv", Body=b"a,b")
    first, cursor = sensor_requests(defs, "landing_files_sensor", **resources)
    assert [r.run_config["ops"]["ingest_landing_files"]["config"]["files"] for r in first] == [["first.json"]]
    # Written after the tick but within the second the cursor holds: a tick at that same second
    # must still find it (S3 lists LastModified to the second).
    s3.put_object(Bucket="lake", Key="prefix/landing/orders/sub/second file.jsonl", Body=b"")
    modified = s3.head_object(Bucket="lake", Key="prefix/landing/orders/sub/second file.jsonl")["LastModified"]
    same_second = json.dumps({"last_modified": modified.isoformat()})
    assert json.loads(cursor)["last_modified"] <= modified.isoformat()
    second, _ = sensor_requests(defs, "landing_files_sensor", cursor=same_second, **resources)
    names = {r.run_config["ops"]["ingest_landing_files"]["config"]["files"][0] for r in second}
    assert "sub/second file.jsonl" in names
    head = s3.head_object(Bucket="lake", Key="prefix/landing/orders/first.json")
    assert first[0].run_key == "first.json:2:" + head["ETag"].strip('"') + ":" + head["LastModified"].isoformat()


def test_the_landing_sensor_on_s3_ingests_an_old_version_put_back(s3_landing):
    """A -> B -> A: the second A has the first's name, size and ETag; only its LastModified differs."""
    s3, defs, resources = s3_landing
    run_keys, cursor = [], None
    for body in (b'[{"v": "A"}]', b'[{"v": "B"}]', b'[{"v": "A"}]'):
        s3.put_object(Bucket="lake", Key="prefix/landing/orders/drop.json", Body=body)
        requests, cursor = sensor_requests(defs, "landing_files_sensor", cursor=cursor, **resources)
        run_keys.append({r.run_key for r in requests})
        time.sleep(1.1)  # S3 lists LastModified to the second
    assert all(len(keys) == 1 for keys in run_keys) and len(set.union(*run_keys)) == 3


def test_the_landing_sensor_requests_retried_runs_and_tags_the_file_for_its_concurrency_limit(lake_dir):
    defs = make_definitions(lake_dir)
    long_name = "deep/" * 60 + "orders.json"
    land(lake_dir, long_name, b"[]")
    [request], _ = sensor_requests(defs, "landing_files_sensor", lake=LakeResource(uri=str(lake_dir)), s3=S3Resource())
    assert request.tags["ecomm/landing-file"] == landing_file_tag(long_name)  # the bridge's too: test_handler.py
    assert request.tags["dagster/max_retries"] == str(INGEST_MAX_RETRIES) and INGEST_MAX_RETRIES > 0


def test_a_failed_run_writes_a_structured_alert(lake_dir, instance):
    alerts = lake_dir.parent / "alerts.jsonl"
    defs = make_definitions(lake_dir, source="dummyjson", dummyjson_url="http://127.0.0.1:9", max_retries=0)
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        partition_key="2024-01-15", instance=instance, raise_on_error=False
    )
    assert not result.success
    sensor = defs.resolve_sensor_def("run_failure_alerts")
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name, dagster_instance=instance, dagster_run=instance.get_run_by_id(result.run_id),
        dagster_event=result.get_run_failure_event(), resources={"alerts": AlertSinkResource(path=str(alerts))},
    ).for_run_failure()
    sensor(context)
    [alert] = [json.loads(line) for line in alerts.read_text().splitlines()]
    assert alert["run_id"] == result.run_id and alert["partition"] == "2024-01-15"
    assert "snapshots" in alert["assets"]
    assert "127.0.0.1:9" in alert["error"]


def test_alerts_also_go_to_an_sns_topic_when_configured(tmp_path, aws, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SNS", aws)  # boto3's own endpoint setting: the sink's client uses moto
    sns = boto3.client("sns", endpoint_url=aws, region_name="us-east-1")
    sqs = boto3.client("sqs", endpoint_url=aws, region_name="us-east-1")
    topic = sns.create_topic(Name="ecomm-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    sink = AlertSinkResource(path=str(tmp_path / "alerts.jsonl"), sns_topic_arn=topic, region="us-east-1")
    alert = {"run_id": "r1", "job": "lake_job", "assets": ["order_lines"], "partition": "2024-01-15", "error": "boom"}
    sink.send(alert)
    [message] = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=5)["Messages"]
    assert json.loads(message["Body"]) == alert == json.loads((tmp_path / "alerts.jsonl").read_text())


def test_the_landing_sensor_requests_each_feeds_ingest_for_its_own_files(lake_dir):
    """One sensor over every feed's folder: each file goes to its feed's ingest job, by its suffixes."""
    defs = make_definitions(lake_dir)
    for feed, name in [("orders", "a.json"), ("orders", "same.csv"), ("purchases", "same.csv"),
                       ("purchases", "log.csv.gz"), ("purchases", "a.json"), ("user_profiles", "users.csv")]:
        (lake_dir / "landing" / feed).mkdir(parents=True, exist_ok=True)
        (lake_dir / "landing" / feed / name).write_text("x")
    resources = {"lake": LakeResource(uri=str(lake_dir)), "s3": S3Resource()}
    requests, _ = sensor_requests(defs, "landing_files_sensor", **resources)
    wanted = {(r.job_name, op, config["config"]["files"][0]) for r in requests for op, config in r.run_config["ops"].items()}
    assert wanted == {
        ("ingest_landing_job", "ingest_landing_files", "a.json"),
        ("ingest_purchases_job", "ingest_purchase_files", "same.csv"),
        ("ingest_purchases_job", "ingest_purchase_files", "log.csv.gz"),
        ("ingest_user_profiles_job", "ingest_user_profile_files", "users.csv"),
    }
    # The same name in two feeds: two versions, two run keys (the orders' keep their first form).
    assert len({r.run_key for r in requests}) == 4 and any(r.run_key.startswith("a.json:") for r in requests)
    assert any(r.run_key.startswith("purchases/same.csv:") for r in requests)


def test_the_landing_sensor_on_s3_lists_every_feeds_folder(s3_landing):
    s3, defs, resources = s3_landing
    s3.put_object(Bucket="lake", Key="prefix/landing/orders/first.json", Body=b"[]")
    s3.put_object(Bucket="lake", Key="prefix/landing/purchases/day/log.csv", Body=b"user_id\r\n")
    s3.put_object(Bucket="lake", Key="prefix/landing/user_profiles/users.csv.gz", Body=b"")
    s3.put_object(Bucket="lake", Key="prefix/landing/purchases/_tmp/log.csv", Body=b"")  # being written
    requests, cursor = sensor_requests(defs, "landing_files_sensor", **resources)
    assert sorted((r.job_name, next(iter(r.run_config["ops"].values()))["config"]["files"][0]) for r in requests) == [
        ("ingest_landing_job", "first.json"), ("ingest_purchases_job", "day/log.csv"),
        ("ingest_user_profiles_job", "users.csv.gz")]
    again, _ = sensor_requests(defs, "landing_files_sensor", cursor=cursor, **resources)
    assert {r.run_key for r in again} == {r.run_key for r in requests}  # the overlap lists them again: same keys
