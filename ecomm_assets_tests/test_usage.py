"""Every asset's materialization carries what it did to the lake and the catalog (usage/...):
exact against the files on disk, and against the requests an S3 endpoint (moto) served."""

import json
import time
import uuid
from collections import Counter
from datetime import datetime

import boto3
import dagster as dg
import duckdb
import pytest

from ecomm_assets.assets import days as days_module
from ecomm_assets.core.costs import PriceTable
from ecomm_assets.core.layout import FOOTER_SIZES_PATH, table_dir
from ecomm_assets.core.scans import FooterSizes, scanned_bytes
from ecomm_assets.core.schemas import LAKE_TABLES
from ecomm_assets.definitions import ASSET_CHECKS, ASSETS, resources_from
from ecomm_assets.resources import PricingResource
from ecomm_assets.settings import CatalogBackend, SettingError, Settings
from ecomm_assets_tests.conftest import (
    PROJECT,
    bench_module,
    make_definitions,
    materialize_day,
)
from ecomm_assets_tests.test_automation import sensor_requests
from ecomm_assets_tests.test_definitions import land, landed_order

DAY = "2024-01-15"


def usage_of(instance, asset: str) -> dict:
    metadata = instance.get_latest_materialization_event(dg.AssetKey(asset)).asset_materialization.metadata
    return {key: entry.value for key, entry in metadata.items() if key.startswith("usage/")}


def test_a_days_figures_are_the_files_it_wrote_and_read(lake_dir, instance):
    assert materialize_day(make_definitions(lake_dir), DAY, instance).success
    lines = usage_of(instance, "order_lines")
    day = lake_dir / "processed" / "order_lines" / f"dt={DAY}"
    written = list(day.iterdir())  # the part file and _counts.json
    assert lines["usage/processed/objects_written"] == len(written) == 2
    assert lines["usage/processed/bytes_written"] == sum(p.stat().st_size for p in written)
    raw = list((lake_dir / "raw" / "orders" / f"dt={DAY}").iterdir())
    assert lines["usage/raw/objects_read"] == len(raw)
    assert lines["usage/raw/bytes_read"] == sum(p.stat().st_size for p in raw)
    assert lines["usage/days"] == 1
    # orders reads exactly the order_lines part file and writes its own.
    orders = usage_of(instance, "orders")
    assert orders["usage/processed/objects_read"] == 1
    assert orders["usage/processed/bytes_read"] == (day / "part-00000.parquet").stat().st_size
    assert orders["usage/processed/bytes_written"] == (
        lake_dir / "processed" / "orders" / f"dt={DAY}" / "part-00000.parquet").stat().st_size
    assert orders["usage/s3/put"] == 2  # its file and its day's lock
    report = sum(p.stat().st_size for p in (lake_dir / "reports" / "dashboard").iterdir())
    assert usage_of(instance, "dashboard")["usage/reports/bytes_written"] == report

    # The usage asset of the same run: its tables hold those figures, queryable in the catalog.
    with duckdb.connect(str(lake_dir.parent / "catalog.duckdb"), read_only=True) as con:
        per_day = dict(con.execute("SELECT figure, per_day FROM usage_by_asset WHERE asset = 'order_lines'").fetchall())
        assert per_day["processed/bytes_written"] == lines["usage/processed/bytes_written"]
        lines_of_estimate = con.execute(
            "SELECT service, item, monthly_usd, orders_per_day FROM usage_estimate ORDER BY service, item").fetchall()
    estimate = instance.get_latest_materialization_event(dg.AssetKey("usage")).asset_materialization.metadata
    assert estimate["monthly_usd"].value == pytest.approx(sum(line[2] for line in lines_of_estimate), abs=1e-4)
    assert {line[3] for line in lines_of_estimate} == {200}
    scans = estimate["query_bytes_per_day_of_data"].value
    # Every sql/ query but those of the usage tables, which the first estimate writes.
    assert sorted(scans) == sorted(p.name for p in (PROJECT / "sql").glob("*.sql") if "usage_" not in p.read_text())
    assert all(size > 0 for size in scans.values())
    assert ("Athena", "sql/total_sales_by_category.sql") in {line[:2] for line in lines_of_estimate}

    # The sql/ queries of the usage tables: the estimate's services, and the bytes each asset writes.
    with duckdb.connect(str(lake_dir.parent / "catalog.duckdb"), read_only=True) as con:
        by_service = con.sql((PROJECT / "sql" / "monthly_cost_by_service.sql").read_text()).fetchall()
        by_asset = dict(con.sql((PROJECT / "sql" / "bytes_written_by_asset.sql").read_text()).fetchall())
    assert {service for service, _ in by_service} == {"S3", "Glue", "Athena"}
    assert sum(usd for _, usd in by_service) == pytest.approx(estimate["monthly_usd"].value, abs=1e-3)
    assert by_asset["orders"] == orders["usage/processed/bytes_written"] + orders["usage/locks/bytes_written"]

    # The same figures priced with another table (ECOMM_PRICE_TABLE): what the file says is what is charged.
    prices = lake_dir.parent / "prices.json"
    prices.write_text(json.dumps({"as_of": "2030-01-01", "s3_get_and_other_per_1000": 1.0}))
    resources = make_definitions(lake_dir).resources | {"pricing": PricingResource(price_table=str(prices))}
    assert dg.materialize(ASSETS, selection=["usage"], instance=instance, resources=resources).success
    with duckdb.connect(str(lake_dir.parent / "catalog.duckdb"), read_only=True) as con:
        gets = con.execute("SELECT quantity, unit_price, monthly_usd, prices_as_of FROM usage_estimate "
                           "WHERE item = 'GET, HEAD requests'").fetchall()
    assert [(unit_price, str(as_of)) for _, unit_price, _, as_of in gets] == [(1.0 / 1000, "2030-01-01")]
    assert gets[0][2] == pytest.approx(gets[0][0] / 1000)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read the price table"), ("{\"athena\": 1}", "not a price table: unknown price keys"),
     ("{\"s3_storage_per_gb_month\": \"cheap\"}", "not a price table: s3_storage_per_gb_month must be a number")],
    ids=["missing", "unknown-key", "not-a-number"],
)
def test_a_bad_price_table_setting_is_refused_at_load(tmp_path, content, message):
    path = tmp_path / "prices.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SettingError, match=f"ECOMM_PRICE_TABLE='{path}': {message}"):
        Settings.from_environment({"ECOMM_PRICE_TABLE": str(path)})


def test_a_price_table_setting_names_its_file(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"athena_per_tb_scanned": 6.0}))
    settings = Settings.from_environment({"ECOMM_PRICE_TABLE": str(path), "ECOMM_ATHENA_QUERIES_PER_DAY": "24"})
    pricing = resources_from(settings)["pricing"]
    assert (pricing.prices(), pricing.athena_queries_per_day) == (PriceTable(athena_per_tb_scanned=6.0), 24)


def test_a_range_runs_figures_are_the_whole_range_and_the_estimate_takes_them_per_day(lake_dir, instance):
    defs = make_definitions(lake_dir, orders_per_day=20)
    job = defs.resolve_implicit_global_asset_job_def()
    sources = [dg.AssetKey(name) for name in ("snapshots", "orders_raw")]
    assert job.execute_in_process(instance=instance, asset_selection=sources, tags={
        "dagster/asset_partition_range_start": "2024-01-14", "dagster/asset_partition_range_end": "2024-01-16"}).success
    assert len(list((lake_dir / "raw" / "orders").iterdir())) == 3  # a file in each day's folder
    records = instance.fetch_materializations(dg.AssetKey("orders_raw"), limit=10).records
    assert len(records) == 3
    # the whole run's figures, once: on the newest day's materialization
    figures = {r.partition_key: r.asset_materialization.metadata for r in records}
    assert [day for day, metadata in figures.items() if "usage/days" in metadata] == ["2024-01-16"]
    assert (figures["2024-01-16"]["usage/days"].value, figures["2024-01-16"]["usage/raw/objects_written"].value) == (3, 3)
    assert dg.materialize(ASSETS, selection=["usage"], instance=instance, resources=defs.resources).success
    with duckdb.connect(str(lake_dir.parent / "catalog.duckdb"), read_only=True) as con:
        measured = con.execute("SELECT per_day, days_measured FROM usage_by_asset "
                               "WHERE asset = 'orders_raw' AND figure = 'raw/objects_written'").fetchall()
    written = sum(p.stat().st_size for p in (lake_dir / "raw" / "orders").rglob("*.jsonl"))
    assert measured == [(1.0, 3)]  # one materialization with the figures of 3 days, one file a day
    assert usage_of(instance, "orders_raw")["usage/raw/bytes_written"] == written


def test_an_ingest_the_sensor_requested_records_its_usage_on_landed_files(lake_dir, instance):
    defs = make_definitions(lake_dir)
    data = json.dumps([landed_order("L1", "2024-01-15T10:00:00Z")]).encode()
    land(lake_dir, "drop.json", data)
    requested, _ = sensor_requests(defs, "landing_files_sensor", **defs.resources)
    assert len(requested) == 1
    run = defs.resolve_job_def("ingest_landing_job").execute_in_process(
        instance=instance, run_config=requested[0].run_config, tags=requested[0].tags)
    assert run.success
    figures = usage_of(instance, "landed_files")
    # Read once from landing/orders/, then moved (a COPY and a DELETE) to landing/_ingested/orders/.
    assert (figures["usage/landing/objects_read"], figures["usage/landing/bytes_read"]) == (1, len(data))
    assert (figures["usage/landing/objects_written"], figures["usage/landing/bytes_written"]) == (1, len(data))
    assert figures["usage/s3/copy"] == 1
    for area in ("raw", "processed"):  # the day's raw orders and the manifest; the landed_files row
        written = [p for p in (lake_dir / area).rglob("*") if p.is_file()]
        assert figures[f"usage/{area}/objects_written"] == len(written), area
        assert figures[f"usage/{area}/bytes_written"] == sum(p.stat().st_size for p in written), area
    assert dg.materialize(ASSETS, selection=["usage"], instance=instance, resources=defs.resources).success
    with duckdb.connect(str(lake_dir.parent / "catalog.duckdb"), read_only=True) as con:
        measured = con.execute("SELECT per_day, days_measured FROM usage_by_asset "
                               "WHERE asset = 'landed_files' AND figure = 'landing/bytes_read'").fetchall()
    assert measured == [(len(data), 1)]  # one ingest, on one day


def test_a_lake_fed_only_by_the_purchase_log_is_estimated_with_its_ingests_and_its_queries(lake_dir, instance):
    """No order day at all: the purchase and profile ingests are measured, and the purchase queries
    priced per day of the purchase data they read."""
    from ecomm_assets.catch_up import catch_up
    from ecomm_assets.core.purchase_log import purchase_log_csv, user_profiles_csv
    from ecomm_assets_tests.assets.test_purchase_assets import land as land_in

    land_in(lake_dir, "purchases", "log.csv", purchase_log_csv(400, seed=4, start=datetime(2024, 1, 14, 1), hours=40, users=50))
    land_in(lake_dir, "user_profiles", "users.csv", user_profiles_csv(50, seed=4))
    defs = make_definitions(lake_dir, orders_per_day=0)
    assert catch_up(defs, instance, say=lambda _: None)
    assert not (lake_dir / "processed" / "order_lines").exists()
    assert dg.materialize(ASSETS, selection=["usage"], instance=instance, resources=defs.resources).success
    with duckdb.connect(str(lake_dir.parent / "catalog.duckdb"), read_only=True) as con:
        assets = {asset for (asset,) in con.execute("SELECT DISTINCT asset FROM usage_by_asset").fetchall()}
        athena = {item for (item,) in con.execute("SELECT item FROM usage_estimate WHERE service = 'Athena'").fetchall()}
    assert {"landed_purchase_files", "landed_user_profile_files", "purchase_events", "dim_user_profiles"} <= assets
    assert {"sql/purchase_sessions.sql", "sql/purchase_revenue_by_dimension.sql", "sql/revenue_by_user_segment.sql"} <= athena


def s3_settings(endpoint: str, orders_per_day: int) -> Settings:
    # moto's backends live as long as the process: a bucket and a database of its own, whatever ran before in it.
    bucket, database = f"lake-{uuid.uuid4().hex[:8]}", f"ecomm_{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return Settings(lake_uri=f"s3://{bucket}/prefix", s3_endpoint_url=endpoint, aws_region="us-east-1",
                    orders_per_day=orders_per_day, catalog=CatalogBackend.GLUE, glue_endpoint_url=endpoint,
                    glue_database=database)


def test_s3_requests_and_glue_calls_are_those_the_endpoint_served(counted_aws):
    endpoint = counted_aws.endpoint
    settings = s3_settings(endpoint, 50)
    bucket, database = settings.lake_uri.split("/")[2], settings.glue_database
    resources = resources_from(settings)
    with dg.DagsterInstance.ephemeral() as instance:
        upstream = ["snapshots", "orders_raw", "order_lines"]
        assert dg.materialize(ASSETS, selection=upstream, partition_key=DAY, instance=instance, resources=resources).success
        served = {}
        # The estimate on an S3 lake too: its queries scanned through S3, its tables registered in Glue for Athena.
        for asset in ("orders", "catalog", "usage"):
            started = time.time()
            day = DAY if asset == "orders" else None  # the catalog and the estimate are not partitioned
            assert dg.materialize(ASSETS, selection=[asset], partition_key=day, instance=instance, resources=resources).success
            served[asset] = counted_aws.since(started)
            figures = usage_of(instance, asset)
            s3 = Counter(r.usage_class() for r in served[asset] if r.is_s3)
            glue = Counter(r.target.rpartition(".")[2] for r in served[asset] if r.target and r.target.startswith("AWSGlue"))
            assert {kind: figures[f"usage/s3/{kind}"] for kind in ("put", "copy", "list", "get", "head", "delete")} == {
                kind: s3[kind] for kind in ("put", "copy", "list", "get", "head", "delete")}, asset
            assert {k.removeprefix("usage/glue/"): v for k, v in figures.items()
                    if k.startswith("usage/glue/") and k != "usage/glue/calls"} == dict(glue), asset
            assert figures["usage/glue/calls"] == sum(glue.values())
            if asset == "catalog":
                assert glue["BatchCreatePartition"] >= 1, glue  # the catalog step registered its day's partitions
        # The estimate plans its queries on local stand-ins: no HEAD of a lake file, a GET of each footer it reads.
        assert not [r for r in served["usage"] if r.is_s3 and r.request_class() == "head"]
        footers = Counter(r.key for r in served["usage"] if r.is_s3 and r.request_class() == "get")
        assert footers and set(footers.values()) == {1}
        estimate = instance.get_latest_materialization_event(dg.AssetKey("usage")).asset_materialization.metadata
        assert estimate["query_bytes_per_day_of_data"].value["total_sales_by_category.sql"] > 0
    glue_client = boto3.client("glue", endpoint_url=endpoint, region_name="us-east-1")
    for table in ("usage_by_asset", "usage_estimate"):
        location = glue_client.get_table(DatabaseName=database, Name=table)["Table"]["StorageDescriptor"]["Location"]
        assert location == f"s3://{bucket}/prefix/processed/{table}/"
        assert len(glue_client.get_partitions(DatabaseName=database, TableName=table)["Partitions"]) == 1



def test_an_estimate_reads_only_the_footers_of_the_files_written_since_the_last(counted_aws):
    """The estimate's query scans take each Parquet file's column sizes from its footer: read for
    the files written since the last estimate, the others' kept in the lake. Before, every estimate
    read every footer of the lake again: GETs that grew with its days, run after run."""
    resources = resources_from(s3_settings(counted_aws.endpoint, 20))
    store = resources["lake"].store()
    daily = ["snapshots", "orders_raw", "order_lines", "orders"]
    with dg.DagsterInstance.ephemeral() as instance:
        def run(selection, day=None) -> tuple[set[str], set[str]]:
            """The Parquet files (keys) whose footers the run read, and those it wrote."""
            started = time.time()
            assert dg.materialize(ASSETS, selection=selection, partition_key=day, instance=instance, resources=resources).success
            served = [r for r in counted_aws.since(started) if r.is_s3 and r.key.endswith(".parquet") and not r.key.endswith(FOOTER_SIZES_PATH)]
            return ({r.key for r in served if r.request_class() == "get"},
                    {r.key for r in served if r.request_class() == "put"})

        _, written = run(daily, DAY)
        for another_day in (None, None, "2024-01-16"):  # the estimate after a day, again, after another day
            if another_day:
                written |= run(daily, another_day)[1]
            footers_read, estimate_wrote = run(["usage"])
            assert footers_read <= written, sorted(footers_read - written)  # only those of files written since
            assert {key for key in footers_read if "/order_lines/" in key} == {key for key in written if "/order_lines/" in key}
            written = estimate_wrote  # the usage tables: the next estimate reads their footers
        # The sizes kept are those the footers give: the same scans as reading every footer afresh.
        listed = {name: store.list_files(table_dir(name), recursive=True) for name in LAKE_TABLES}
        files = {name: [f.path for f in found] for name, found in listed.items() if found}
        queries = {path.name: path.read_text() for path in sorted((PROJECT / "sql").glob("*.sql"))}
        started = time.time()
        kept = scanned_bytes(queries, store, files, LAKE_TABLES, footers=FooterSizes(store, [f for found in listed.values() for f in found]))
        assert not [r for r in counted_aws.since(started) if r.key.endswith(".parquet") and not r.key.endswith(FOOTER_SIZES_PATH)]
        assert kept == scanned_bytes(queries, store, files, LAKE_TABLES)


@pytest.mark.parametrize("upstream, derived", [
    (["snapshots", "orders_raw", "order_lines"], ["dim_customers", "dim_products"]),
    (["snapshots"], ["product_reviews", "posts", "comments"]),  # each with its quarantine and counts
], ids=["dimensions", "engagement"])
def test_a_derived_builds_listings_do_not_grow_with_its_batches(counted_aws, monkeypatch, upstream, derived):
    """A derived build reads its stale days in batches of bounded input (a year's dimensions take
    several). Each batch checked its inputs and replaced its days: three LISTs or more a batch,
    that grew with the days. The build stages its batches and lists once for all of them: the same
    four days, in one batch or in a batch each, send as many LISTs (and as many PUTs: a file a day)."""
    requests = {}
    for budget in (days_module.BATCH_INPUT_BYTES, 1):  # 1 byte: every day a batch of its own
        monkeypatch.setattr(days_module, "BATCH_INPUT_BYTES", budget)
        resources = resources_from(s3_settings(counted_aws.endpoint, 20))  # a lake of its own
        with dg.DagsterInstance.ephemeral() as instance:
            assert dg.materialize(ASSETS, selection=upstream, instance=instance, resources=resources,
                                  tags={"dagster/asset_partition_range_start": "2024-01-12", "dagster/asset_partition_range_end": DAY}).success
            started = time.time()
            result = dg.materialize(ASSETS, selection=derived, instance=instance, resources=resources)
            assert result.success
            assert all(len(event.materialization.metadata["built_days"].value) == 4
                       for event in result.get_asset_materialization_events())
            requests[budget] = Counter(r.request_class() for r in counted_aws.since(started) if r.is_s3)
    one_batch, batch_a_day = requests.values()
    assert (batch_a_day["list"], batch_a_day["put"]) == (one_batch["list"], one_batch["put"]), requests


def test_a_range_runs_listings_and_heads_on_s3_do_not_grow_with_its_days(counted_aws):
    """Steps that read and write days (days_as_files, write_days, the checks' row counts and raw
    recounts) send as many LISTs and HEADs for three days as for one: one listing answers all the
    days, never a request per day or file. Each file written is one PUT, each day one lease."""
    bench = bench_module("s3_requests_bench")
    resources = resources_from(s3_settings(counted_aws.endpoint, 20))
    everything = [*ASSETS, *ASSET_CHECKS]
    measured = (dg.AssetSelection.assets("orders", "daily_order_summary", "sales_by_category", "product_performance", "dashboard")
                | dg.AssetSelection.checks_for_assets("order_lines", "orders"))
    with dg.DagsterInstance.ephemeral() as instance:
        def run(selection, first: str) -> dict:
            started = time.time()
            result = dg.materialize(everything, selection=selection, instance=instance, resources=resources, tags={
                "dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": DAY})
            assert result.success
            return bench.attribute(counted_aws.since(started), bench.step_windows(instance, result.run_id))

        upstream = dg.AssetSelection.assets("snapshots", "orders_raw", "order_lines")
        sources = run(upstream.without_checks(), "2024-01-13")
        # The sources over 3 days: a PUT per file, a GET per snapshot read, a listing per folder read
        # (each collection's, raw/orders'), no HEAD, no DELETE of a file no listing showed.
        assert (sources["snapshots"].data["put"], sources["snapshots"].data["get"], sources["snapshots"].data["head"]) == (15, 0, 0)
        assert {kind: sources["orders_raw"].data[kind] for kind in ("put", "get", "list", "head", "delete")} == {
            "put": 3, "get": 9, "list": 4, "head": 0, "delete": 0}
        assert sources["orders_raw"].lock["delete"] == 3  # a lease per day, released once
        one, three = run(measured, DAY), run(measured, "2024-01-13")
        steps = ["orders", "orders_checks", "order_lines_checks", "daily_order_summary", "dashboard"]
        assert set(steps) <= set(three)
        for step in steps:
            # as many LIST and HEAD requests for 3 days as for 1 (one file is found with a HEAD, several with a LIST)
            assert three[step].data["list"] + three[step].data["head"] == one[step].data["list"] + one[step].data["head"], step
            assert three[step].data["other"] == 0, step  # no multipart upload, no copy
            if three[step].written:
                assert three[step].data["put"] == len(three[step].written), step  # one PUT per object
        assert three["orders"].data["head"] == three["dashboard"].data["head"] == 0  # its 30 trailing days in one LIST
        # A lease per day, taken and released (a step slower than a renewal period renews them too).
        assert three["orders"].lock["delete"] == 3 and three["orders"].lock["put"] >= 3
        for step in ("orders", "daily_order_summary", "dashboard"):  # what each recorded is what was served
            assert +bench.recorded_usage(instance, step) == +three[step].usage_classes, step
