"""Settings live here, as resource fields with local defaults; definitions.py binds the environment."""

import json
import os
from datetime import date

import boto3
import dagster as dg

from ecomm_assets.core import synthetic
from ecomm_assets.core.catalog import Catalog, DuckDBCatalog, GlueCatalog
from ecomm_assets.core.dummyjson import DummyJSONClient, carts_to_orders
from ecomm_assets.core.storage import LakeStore


class LakeResource(dg.ConfigurableResource):
    """Where the lake lives: a local folder (default) or an `s3://bucket/prefix` URI."""

    uri: str = "data/lake"
    s3_endpoint_url: str | None = None
    s3_region: str | None = None

    def store(self) -> LakeStore:
        return LakeStore.from_uri(self.uri, self.s3_endpoint_url, self.s3_region)


class OrderSourceResource(dg.ConfigurableResource):
    """Where catalogs and orders come from: `synthetic` (offline, deterministic) or `dummyjson`."""

    source: str = "synthetic"
    dummyjson_url: str = "https://dummyjson.com"
    orders_per_day: int = 1000
    seed: int = 42
    timeout_seconds: float = 10.0
    max_retries: int = 5

    def client(self) -> DummyJSONClient:
        return DummyJSONClient(self.dummyjson_url, self.timeout_seconds, self.max_retries)

    def catalog(self, resource: str) -> list[dict]:
        """`products`, `users` or `carts`, DummyJSON-shaped."""
        if self.source == "dummyjson":
            return self.client().get_all(resource)
        if self.source != "synthetic":
            raise ValueError(f"unknown order source {self.source!r}: use 'synthetic' or 'dummyjson'")
        if resource == "products":
            return synthetic.generate_products(self.seed)
        if resource == "users":
            return synthetic.generate_users(self.seed)
        if resource == "carts":
            return synthetic.generate_carts(self.seed, synthetic.generate_products(self.seed))
        raise ValueError(f"unknown catalog resource {resource!r}")

    def orders(self, day: date, products: list[dict], users: list[dict], carts: list[dict]) -> bytes:
        """The day's orders in the canonical nested form, as JSON Lines."""
        if self.source == "dummyjson":
            return synthetic.to_json_lines(carts_to_orders(carts, users, products, day, self.seed))
        return synthetic.orders_json_lines(synthetic.generate_orders(self.seed, day, self.orders_per_day, products, users))


class CatalogResource(dg.ConfigurableResource):
    """The SQL catalog kept in step with the lake: `duckdb` (default, a local file of views) or
    `glue` (the AWS Glue Data Catalog, for Athena; region and credentials from the AWS chain)."""

    backend: str = "duckdb"
    duckdb_path: str = "data/catalog.duckdb"
    glue_database: str = "ecomm"
    glue_endpoint_url: str | None = None
    region: str | None = None
    partition_projection: bool = True

    def catalog(self, projection_start: date) -> Catalog:
        if self.backend == "duckdb":
            return DuckDBCatalog(self.duckdb_path)
        if self.backend == "glue":
            glue = boto3.client("glue", endpoint_url=self.glue_endpoint_url or None, region_name=self.region or None)
            return GlueCatalog(glue, self.glue_database, projection_start if self.partition_projection else None)
        raise ValueError(f"unknown catalog backend {self.backend!r}: use 'duckdb' or 'glue'")


class AlertSinkResource(dg.ConfigurableResource):
    """Where run-failure alerts go: JSON lines appended to a local file, and an SNS topic if set."""

    path: str = "data/alerts.jsonl"
    sns_topic_arn: str | None = None
    region: str | None = None

    def send(self, alert: dict) -> None:
        line = json.dumps(alert, sort_keys=True)
        if os.path.dirname(self.path):
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as sink:
            sink.write(line + "\n")
        if self.sns_topic_arn:
            sns = boto3.client("sns", region_name=self.region or None)
            sns.publish(TopicArn=self.sns_topic_arn, Subject="ecomm-assets run failed", Message=line)
