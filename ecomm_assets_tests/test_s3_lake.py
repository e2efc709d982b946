"""The whole graph on S3 (moto server over real HTTP) with the Glue catalog: same code as local."""

import io
import json

import boto3
import dagster as dg
import pytest
import pyarrow.parquet as pq

from ecomm_assets.definitions import definitions_with, resources_from
from ecomm_assets.settings import CatalogBackend, Settings
from ecomm_assets_tests.conftest import materialize_day

TABLES = ["order_lines", "orders", "dim_products", "dim_customers",
          "sales_by_category", "product_performance", "top_customers", "daily_order_summary",
          "product_reviews", "posts", "comments", "rating_distribution", "rating_vs_sales", "engaged_users", "tag_engagement"]


def s3_definitions(endpoint):
    settings = Settings(lake_uri="s3://lake/prefix", s3_endpoint_url=endpoint, aws_region="us-east-1", orders_per_day=200,
                        catalog=CatalogBackend.GLUE, glue_endpoint_url=endpoint)
    return definitions_with(resources_from(settings))


def keys(s3):
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="lake", Prefix="prefix/")
    return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", [])}


@pytest.mark.slow
def test_the_whole_graph_runs_on_s3_and_registers_glue_partitions(aws):
    s3 = boto3.client("s3", endpoint_url=aws, region_name="us-east-1")
    glue = boto3.client("glue", endpoint_url=aws, region_name="us-east-1")
    s3.create_bucket(Bucket="lake")
    defs = s3_definitions(aws)
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize_day(defs, "2024-01-15", instance)
        assert result.success
        # Every input a build read is recounted as it was: its version listed on S3 is the same at the check.
        conserved = {e.asset_key.path[-1]: {k: v.value for k, v in e.metadata.items()}
                     for e in result.get_asset_check_evaluations() if e.check_name == "records_conserved"}
        assert {table: (figures.get("raw_files_read"), figures.get("raw_files_replaced_since_build"),
                        figures.get("snapshot_replaced_since_build")) for table, figures in conserved.items()} == {
            "order_lines": (1, 0, None), "purchase_events": (0, 0, None), "dim_user_profiles": (0, 0, None),
            "product_reviews": (None, None, False), "posts": (None, None, False), "comments": (None, None, False)}
        first = keys(s3)
        for table in TABLES:
            assert f"prefix/processed/{table}/dt=2024-01-15/part-00000.parquet" in first
        assert "prefix/raw/orders/dt=2024-01-15/synthetic.jsonl" in first
        assert "prefix/reports/dashboard/dashboard.html" in first
        assert not [k for k in first if "/." in k or k.endswith(".tmp")]  # nothing half-written left

        # The objects hold the data: the Parquet on S3 has what the run reported.
        body = s3.get_object(Bucket="lake", Key="prefix/processed/order_lines/dt=2024-01-15/part-00000.parquet")["Body"].read()
        lines = pq.read_table(io.BytesIO(body))
        reported = instance.get_latest_materialization_event(dg.AssetKey("order_lines")).asset_materialization.metadata
        assert lines.num_rows == reported["dagster/row_count"].value and lines.column("order_id").null_count == 0
        counts = json.loads(s3.get_object(Bucket="lake", Key="prefix/processed/order_lines/dt=2024-01-15/_counts.json")["Body"].read())
        assert counts["orders_loaded"] == 180 and counts["records_read"] == 180

        for table in TABLES:
            found = glue.get_partitions(DatabaseName="ecomm", TableName=table)["Partitions"]
            assert [(p["Values"], p["StorageDescriptor"]["Location"]) for p in found] == [
                (["2024-01-15"], f"s3://lake/prefix/processed/{table}/dt=2024-01-15/")
            ]

        posts_columns = glue.get_table(DatabaseName="ecomm", Name="posts")["Table"]["StorageDescriptor"]["Columns"]
        assert {c["Name"]: c["Type"] for c in posts_columns}["tags"] == "array<string>"  # Athena reads the Parquet list as an array

        # A re-run rewrites the same objects: no strays, no duplicate partitions.
        assert materialize_day(defs, "2024-01-15", instance).success
        assert keys(s3).keys() == first.keys()
        assert len(glue.get_partitions(DatabaseName="ecomm", TableName="order_lines")["Partitions"]) == 1


def test_files_landed_on_s3_are_ingested_into_their_days(aws):
    s3 = boto3.client("s3", endpoint_url=aws, region_name="us-east-1")
    s3.create_bucket(Bucket="lake")
    order = {"order_id": "L1", "order_date": "2024-01-14T23:00:00-02:00", "total_amount": 5,
             "customer": {"customer_id": "c1"}, "products": [{"product_id": "p1", "price": 5, "quantity": 1}]}
    s3.put_object(Bucket="lake", Key="prefix/landing/orders/drop.json", Body=json.dumps([order]).encode())
    defs = s3_definitions(aws)
    with dg.DagsterInstance.ephemeral() as instance:
        assert defs.resolve_job_def("ingest_landing_job").execute_in_process(instance=instance).success
        landed = [k for k in keys(s3) if k.startswith("prefix/raw/orders/dt=2024-01-15/landing-")]
        assert len(landed) == 1  # 23:00 at -02:00 is the 15th in UTC
        assert json.loads(s3.get_object(Bucket="lake", Key=landed[0])["Body"].read())["order_id"] == "L1"


def test_a_purchase_log_and_profiles_landed_on_s3_reach_athenas_tables(aws):
    from datetime import datetime

    from ecomm_assets.core.purchase_log import purchase_log_csv, user_profiles_csv

    s3 = boto3.client("s3", endpoint_url=aws, region_name="us-east-1")
    glue = boto3.client("glue", endpoint_url=aws, region_name="us-east-1")
    s3.create_bucket(Bucket="lake")
    s3.put_object(Bucket="lake", Key="prefix/landing/purchases/log.csv",
                  Body=purchase_log_csv(400, seed=6, start=datetime(2024, 1, 14, 18), hours=12, users=40))
    s3.put_object(Bucket="lake", Key="prefix/landing/user_profiles/users.csv", Body=user_profiles_csv(40, seed=6))
    defs = s3_definitions(aws)
    with dg.DagsterInstance.ephemeral() as instance:
        for job in ("ingest_purchases_job", "ingest_user_profiles_job"):
            assert defs.resolve_job_def(job).execute_in_process(instance=instance).success
        stored = keys(s3)
        assert "prefix/landing/_ingested/purchases/log.csv" in stored and "prefix/landing/purchases/log.csv" not in stored
        raw = [k for k in stored if k.startswith("prefix/raw/purchase_events/") and not k.endswith("/")]
        assert sorted(k.split("/")[3] for k in raw) == ["dt=2024-01-14", "dt=2024-01-15"]  # 18:00 + 12 h
        result = defs.resolve_job_def("purchases_job").execute_in_process(instance=instance, tags={
            "dagster/asset_partition_range_start": "2024-01-14", "dagster/asset_partition_range_end": "2024-01-15"})
        assert result.success
        [profiles_conserved] = [e.metadata for e in result.get_asset_check_evaluations()
                                if e.check_name == "records_conserved" and e.asset_key.path[-1] == "dim_user_profiles"]
        # recounted as read, on S3
        assert (profiles_conserved["raw_files_read"].value, profiles_conserved["raw_files_replaced_since_build"].value) == (1, 0)
        found = glue.get_partitions(DatabaseName="ecomm", TableName="purchase_events")["Partitions"]
        assert sorted(p["Values"][0] for p in found) == ["2024-01-14", "2024-01-15"]
        profiles = glue.get_table(DatabaseName="ecomm", Name="dim_user_profiles")["Table"]
        assert profiles.get("PartitionKeys", []) == []
        assert profiles["StorageDescriptor"]["Location"] == "s3://lake/prefix/processed/dim_user_profiles/"
        body = s3.get_object(Bucket="lake", Key="prefix/processed/dim_user_profiles/part-00000.parquet")["Body"].read()
        assert pq.read_table(io.BytesIO(body)).num_rows == 40
