"""End to end on loopback: a real `dagster dev` (webserver + daemon) serving the project on a
moto S3 + Glue; a file lands in S3; the Lambda bridge gets the S3 event and launches the ingest
through GraphQL; the daemon's sensor recomputes the day; the orders reach order_lines and Glue.
The same event delivered again changes nothing."""

import io
import json
import time
from urllib.parse import quote_plus

import boto3
import pyarrow.parquet as pq
import pytest
import requests

from ecomm_assets.definitions import defs
from ecomm_assets_tests.conftest import (
    finished_backfill,
    launch_ui_backfill,
    running_project,
    wait_for,
)
from lambda_bridge import handler as bridge

DAY = "2024-01-15"
KEY = "prefix/landing/orders/drop 1.json"


@pytest.fixture
def dagster_dev(aws, tmp_path):
    settings = {
        "ECOMM_LAKE_URI": "s3://lake/prefix", "ECOMM_S3_ENDPOINT_URL": aws, "ECOMM_CATALOG": "glue",
        "ECOMM_GLUE_ENDPOINT_URL": aws, "ECOMM_ORDERS_PER_DAY": "50", "ECOMM_LANDING_SENSOR": "off",
    }
    with running_project(tmp_path, settings) as url:
        yield url


def s3_event(s3, key):
    head = s3.head_object(Bucket="lake", Key=key)
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventName": "ObjectCreated:Put",
        "eventTime": head["LastModified"].isoformat(),
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": "lake", "arn": "arn:aws:s3:::lake"},
               "object": {"key": quote_plus(key, safe="/"), "size": head["ContentLength"], "eTag": head["ETag"].strip('"'),
                          "sequencer": "0065A4F3C2B1D0E9F8"}},
    }]}


def order_lines_of_the_day(s3):
    try:
        body = s3.get_object(Bucket="lake", Key=f"prefix/processed/order_lines/dt={DAY}/part-00000.parquet")["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return pq.read_table(io.BytesIO(body))


def runs(url, job):
    query = "query($f: RunsFilter) { runsOrError(filter: $f) { ... on Runs { results { runId status } } } }"
    answer = requests.post(url, json={"query": query, "variables": {"f": {"pipelineName": job}}}, timeout=10).json()
    return answer["data"]["runsOrError"]["results"]


def order_lines_partitions(glue) -> list:
    try:
        return glue.get_partitions(DatabaseName="ecomm", TableName="order_lines")["Partitions"]
    except glue.exceptions.EntityNotFoundException:  # the catalog asset has not made the database or table yet
        return []


@pytest.mark.slow
def test_an_s3_event_becomes_order_lines_and_a_glue_partition(aws, dagster_dev, monkeypatch):
    s3 = boto3.client("s3", endpoint_url=aws, region_name="us-east-1")
    glue = boto3.client("glue", endpoint_url=aws, region_name="us-east-1")
    s3.create_bucket(Bucket="lake")
    orders = [
        {"order_id": f"E2E-{n}", "order_date": f"{DAY}T1{n}:00:00Z", "total_amount": 12.5,
         "customer": {"customer_id": "c9", "name": "Eve", "email": "e@x", "address": {"city": "Oslo", "country": "Norway"}},
         "products": [{"product_id": "p7", "name": "Mug", "category": "kitchen", "price": 6.25, "quantity": 2}]}
        for n in range(3)
    ]
    s3.put_object(Bucket="lake", Key=KEY, Body=json.dumps(orders).encode())
    monkeypatch.setenv("DAGSTER_GRAPHQL_URL", dagster_dev)
    monkeypatch.setenv("ECOMM_LAKE_URI", "s3://lake/prefix")
    event = s3_event(s3, KEY)

    [launched] = bridge.handler(event)["results"]
    assert launched["outcome"] == "launched"
    lines = wait_for("order_lines on S3", lambda: order_lines_of_the_day(s3))
    assert sorted(lines["order_id"].to_pylist()) == ["E2E-0", "E2E-1", "E2E-2"]
    assert {str(v) for v in lines["line_total"].to_pylist()} == {"12.50"}
    partition = wait_for("the Glue partition", lambda: next(iter(order_lines_partitions(glue)), None))
    assert partition["Values"] == [DAY]
    assert partition["StorageDescriptor"]["Location"] == f"s3://lake/prefix/processed/order_lines/dt={DAY}/"
    wait_for("the lake run to finish", lambda: all(r["status"] == "SUCCESS" for r in runs(dagster_dev, "lake_job")) and runs(dagster_dev, "lake_job"))

    # S3 delivers at least once: the same event again launches nothing and changes nothing.
    [again] = bridge.handler(event)["results"]
    assert again == {"key": "prefix/landing/orders/drop 1.json", "outcome": "duplicate", "run_id": launched["run_id"]}
    time.sleep(10)
    assert len(runs(dagster_dev, "ingest_landing_job")) == 1
    assert order_lines_of_the_day(s3).equals(lines)


@pytest.mark.slow
def test_a_ui_backfill_of_a_range_is_one_run(tmp_path):
    """What the UI's "Launch backfill" sends (launchPartitionBackfill), handled by the daemon: one
    run for the whole range, a file per day (and one for the dashboard, which is not partitioned)."""
    lake = tmp_path / "lake"
    settings = {"ECOMM_LAKE_URI": str(lake), "ECOMM_DUCKDB_CATALOG": str(tmp_path / "catalog.duckdb"), "ECOMM_ORDERS_PER_DAY": "50"}
    days = ["2024-02-01", "2024-02-02", "2024-02-03"]
    with running_project(tmp_path, settings) as url:
        backfill = finished_backfill(url, launch_ui_backfill(url, days))
    assert backfill.status in ("COMPLETED", "COMPLETED_SUCCESS")
    # Runs for the whole range, never one per day: the daily assets in range runs, and every
    # unpartitioned asset (the derived tables build the range's days) in runs after them.
    assert {r["status"] for r in backfill.runs} == {"SUCCESS"}
    ranges = [{key: value for key, value in r["tags"].items() if "partition" in key} for r in backfill.runs]
    whole = {"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]}
    assert all(tags in ({}, whole) for tags in ranges) and 1 <= ranges.count(whole) <= 2
    unpartitioned = sorted(path for r, tags in zip(backfill.runs, ranges) if not tags for path in r["assets"])
    graph = defs.resolve_asset_graph()
    assert unpartitioned == sorted(key.path for key in graph.materializable_asset_keys if not graph.get(key).partitions_def)
    assert sorted(p.name for p in (lake / "processed" / "order_lines").iterdir()) == [f"dt={d}" for d in days]
    assert sorted(p.name for p in (lake / "processed" / "top_customers").iterdir()) == [f"dt={d}" for d in days]
