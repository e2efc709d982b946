"""Every asset's materialization carries what it did to the lake and the catalog (usage/...):
exact against the files on disk, and against the requests an S3 endpoint (moto) served."""

import threading
from collections import Counter

import boto3
import dagster as dg
import pytest

from ecomm_assets.definitions import ASSETS, resources_from
from ecomm_assets.settings import CatalogBackend, Settings
from ecomm_assets_tests.conftest import make_definitions, materialize_day

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


# What S3 bills each HTTP request as (a ListObjectsV2 and ListMultipartUploads are GETs on the bucket).
def request_class(method: str, path: str, query: str) -> str:
    if method == "GET" and path.count("/") == 1:
        return "list"
    if method == "POST" or (method == "PUT" and "x-amz-copy-source" in query):
        return "put"
    return {"PUT": "put", "GET": "get", "HEAD": "head", "DELETE": "delete"}[method]


@pytest.fixture
def counted_aws(monkeypatch):
    """A moto S3 + Glue endpoint that keeps every request it serves (method, path, target)."""
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    served = []
    app = DomainDispatcherApplication(create_backend_app)

    def recording(environ, start_response):
        copy = "x-amz-copy-source" if "HTTP_X_AMZ_COPY_SOURCE" in environ else ""
        served.append((environ["REQUEST_METHOD"], environ["PATH_INFO"], environ.get("QUERY_STRING", "") + copy,
                       environ.get("HTTP_X_AMZ_TARGET")))
        return app(environ, start_response)

    server = make_server("127.0.0.1", 0, recording, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    yield f"http://127.0.0.1:{server.server_port}", served
    server.shutdown()


def test_s3_requests_and_glue_calls_are_those_the_endpoint_served(counted_aws):
    endpoint, served = counted_aws
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="lake")
    settings = Settings(lake_uri="s3://lake/prefix", s3_endpoint_url=endpoint, aws_region="us-east-1",
                        orders_per_day=50, catalog=CatalogBackend.GLUE, glue_endpoint_url=endpoint)
    resources = resources_from(settings)
    with dg.instance_for_test() as instance:
        upstream = ["products_raw", "users_raw", "carts_raw", "orders_raw", "order_lines"]
        assert dg.materialize(ASSETS, selection=upstream, partition_key=DAY, instance=instance, resources=resources).success
        for asset in ("orders", "catalog"):
            served.clear()
            assert dg.materialize(ASSETS, selection=[asset], partition_key=DAY, instance=instance, resources=resources).success
            figures = usage_of(instance, asset)
            s3 = Counter(request_class(m, p, q) for m, p, q, target in served if not target)
            glue = Counter(target.rpartition(".")[2] for *_, target in served if target and target.startswith("AWSGlue"))
            assert {kind: figures[f"usage/s3/{kind}"] for kind in ("put", "copy", "list", "get", "head", "delete")} == {
                kind: s3[kind] for kind in ("put", "copy", "list", "get", "head", "delete")}, asset
            assert {k.removeprefix("usage/glue/"): v for k, v in figures.items()
                    if k.startswith("usage/glue/") and k != "usage/glue/calls"} == dict(glue), asset
            assert figures["usage/glue/calls"] == sum(glue.values())
    assert glue["BatchCreatePartition"] >= 1  # the catalog step registered its day's partitions

