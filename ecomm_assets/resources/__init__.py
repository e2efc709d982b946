"""Resources: the settings (ecomm_assets/settings.py, whose defaults they take) bound to what uses them."""

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date
from typing import NamedTuple

import boto3
import dagster as dg
import pyarrow as pa

from ecomm_assets.core import synthetic
from ecomm_assets.core.catalog import Catalog, DuckDBCatalog, GlueCatalog
from ecomm_assets.core.costs import PriceTable
from ecomm_assets.core.dummyjson import DummyJSONClient, carts_to_orders
from ecomm_assets.core.privacy import DEFAULT_KEY_WARNING, extracted, hash_key
from ecomm_assets.core.simulator import LiveFeed
from ecomm_assets.core.storage import LakeStore
from ecomm_assets.core.usage import count_requests, current
from ecomm_assets.settings import (
    SETTINGS,
    CatalogBackend,
    OrderSource,
    Settings,
    Switch,
)

# The DummyJSON-shaped collections the snapshots asset takes, one view of the shop at one moment.
SNAPSHOT_COLLECTIONS = ("products", "users", "carts", "posts", "comments")
# Synthetic orders (Arrow bytes) serialized to JSON Lines in one query: memory stays a few MiB
# whatever the range (a day's 1,000 orders hold about 0.3 MiB).
ORDERS_BATCH_BYTES = 4 * 2**20


def pii_key() -> bytes:
    """The key personal data is hashed with (ECOMM_PII_HASH_KEY). Not a resource's config: the UI
    shows those, and this is a secret."""
    return hash_key(SETTINGS.pii_hash_key)


def warn_if_default_key(log: Callable[[str], None]) -> None:
    """Says, in the run's log, that personal data is hashed with the public default key."""
    if not SETTINGS.pii_hash_key:
        log(DEFAULT_KEY_WARNING)


class LakeResource(dg.ConfigurableResource):
    """Where the lake lives: a local folder (default) or an `s3://bucket/prefix` URI."""

    uri: str = Settings.lake_uri
    s3_endpoint_url: str | None = None
    s3_region: str | None = None

    def store(self) -> LakeStore:
        return LakeStore.from_uri(self.uri, self.s3_endpoint_url, self.s3_region)


class Snapshot(NamedTuple):
    """A collection's snapshot: its records' count and the JSON text of their array, in parts."""

    records: int
    text: Iterable[bytes]


def _snapshot(records: list[dict]) -> Snapshot:
    """A snapshot serialized now, its text reusable (every day of a snapshot that does not change)."""
    return Snapshot(len(records), tuple(synthetic.json_array(records)))


class OrderSourceResource(dg.ConfigurableResource):
    """Where collections and generated orders come from: `synthetic` (offline, deterministic),
    `dummyjson`, or `landing` (none: a lake fed only by producers' landed files)."""

    source: OrderSource = Settings.source
    dummyjson_url: str = Settings.dummyjson_url
    orders_per_day: int = Settings.orders_per_day
    seed: int = Settings.seed
    timeout_seconds: float = 10.0
    max_retries: int = 5

    def client(self) -> DummyJSONClient:
        return DummyJSONClient(self.dummyjson_url, self.timeout_seconds, self.max_retries)

    def snapshots(self, names: Sequence[str], days: Sequence[date]) -> Iterator[tuple[date, dict[str, Snapshot]]]:
        """Each day's snapshot of each of the `names` collections (`products`, `users`, `carts`,
        `posts`, `comments`), DummyJSON-shaped, as the lake may hold it (core/privacy.py: secrets
        dropped at extraction, whatever the source), as JSON text. A snapshot that is the same every
        day (an API's, read once for all the days: a backfill snapshots today's collection into each
        day; the synthetic users and carts) is serialized once; the synthetic shop writes each day's
        own reviews, posts and comments (the comments on that day's posts, generated once), its
        products' text made a product at a time as it is taken (a large day's reviews are many)."""
        key = pii_key()
        if self.source is not OrderSource.SYNTHETIC:
            fetched = {name: _snapshot(extracted(name, self._fetched(name), key)) for name in names}
            yield from ((day, fetched) for day in days)
            return
        unknown = [name for name in names if name not in SNAPSHOT_COLLECTIONS]
        if unknown:
            raise ValueError(f"unknown collection {unknown[0]!r}")
        products, users = synthetic.generate_products(self.seed), synthetic.generate_users(self.seed)
        constant = {"users": _snapshot(extracted("users", users, key)),
                    "carts": _snapshot(extracted("carts", synthetic.generate_carts(self.seed, products), key))}
        for day in days:
            posts = synthetic.generate_posts(self.seed, day, users) if {"posts", "comments"} & set(names) else []
            made = {}
            for name in names:
                if name in constant:
                    made[name] = constant[name]
                elif name == "products":
                    day_products = synthetic.day_products(self.seed, day, self.orders_per_day, products, users)
                    made[name] = Snapshot(len(products), synthetic.json_array(
                        extracted("products", [product], key)[0] for product in day_products))
                else:
                    records = posts if name == "posts" else synthetic.generate_comments(self.seed, day, posts, users)
                    made[name] = _snapshot(extracted(name, records, key))
            yield day, made

    def _fetched(self, name: str) -> list[dict]:
        if self.source is OrderSource.LANDING:
            return []  # no snapshot: the dimensions hold what the landed orders say
        return self.client().get_all(name)

    def orders_of_days(self, snapshots: Iterable[tuple[date, list[dict], list[dict], list[dict]]]
                       ) -> Iterator[tuple[date, Iterable[bytes]]]:
        """Each day's generated orders in the canonical nested form, as JSON Lines in parts to be
        written in turn (none for `landing`), from the day's (day, products, users, carts), as the
        days come; each day's parts are made as they are taken, before the next day's. Synthetic
        orders are serialized many days at a time (ORDERS_BATCH_BYTES of them), a larger day part
        by part (synthetic.ORDERS_PART orders each); the customers are taken from a users snapshot
        once while the days share it (the same list object)."""
        if not self.source.generates_orders:
            yield from ((day, ()) for day, *_ in snapshots)
            return
        if self.source is OrderSource.DUMMYJSON:
            for day, products, users, carts in snapshots:
                yield day, (synthetic.to_json_lines(carts_to_orders(carts, users, products, day, self.seed)),)
            return
        batch: dict[date, pa.Table] = {}
        customers_of: tuple[list[dict], pa.Table] | None = None
        for day, products, users, _ in snapshots:
            if customers_of is None or customers_of[0] is not users:
                customers_of = (users, synthetic.customer_table(users))
            parts = synthetic.generate_order_parts(self.seed, day, self.orders_per_day, products, users,
                                                   customers=customers_of[1])
            if synthetic.orders_for_day(day, self.orders_per_day) > synthetic.ORDERS_PART:
                yield from _serialized(batch)
                batch = {}
                yield day, map(synthetic.orders_json_lines, parts)
                continue
            batch[day] = next(parts)
            if sum(orders.nbytes for orders in batch.values()) >= ORDERS_BATCH_BYTES:
                yield from _serialized(batch)
                batch = {}
        yield from _serialized(batch)


def _serialized(batch: dict[date, pa.Table]) -> Iterator[tuple[date, tuple[bytes]]]:
    """Days' generated orders serialized in one step, each day's JSON Lines its one part."""
    return zip(batch, ((text,) for text in synthetic.json_lines(list(batch.values()))))


class LiveFeedResource(dg.ConfigurableResource):
    """The simulated live feed (live_feed_schedule, `python -m ecomm_assets.simulate`): orders per
    tick on average, the shares of late and resent orders, and the seed of the shop (ECOMM_SEED: the
    products and customers of the synthetic snapshots)."""

    orders_per_tick: int = Settings.feed_orders_per_tick
    late_rate: float = Settings.feed_late_rate
    duplicate_rate: float = Settings.feed_duplicate_rate
    seed: int = Settings.seed
    purchases_timezone: str = Settings.purchases_timezone  # the zone its purchase logs' timestamps are written in

    def feed(self, every_minutes: int, first_day: date) -> LiveFeed:
        """The feed ticking every `every_minutes`; ValueError: a value it cannot take."""
        return LiveFeed(every_minutes, self.orders_per_tick, self.late_rate, self.duplicate_rate, self.seed, first_day,
                        self.purchases_timezone)


class SqlCatalogResource(dg.ConfigurableResource):
    """The SQL catalog kept in step with the lake: `duckdb` (default, a local file of views) or
    `glue` (the AWS Glue Data Catalog, for Athena; region and credentials from the AWS chain)."""

    backend: CatalogBackend = Settings.catalog
    duckdb_path: str = Settings.duckdb_catalog
    glue_database: str = Settings.glue_database
    glue_endpoint_url: str | None = None
    region: str | None = None
    partition_projection: Switch = Settings.glue_partition_projection

    def catalog(self, projection_start: date) -> Catalog:
        if self.backend is CatalogBackend.DUCKDB:
            return DuckDBCatalog(self.duckdb_path)
        # Its calls are recorded in the step's usage (core/usage.py).
        glue = count_requests(
            boto3.client("glue", endpoint_url=self.glue_endpoint_url or None, region_name=self.region or None), current()
        )
        projection = projection_start if self.partition_projection is Switch.ON else None
        return GlueCatalog(glue, self.glue_database, projection)


class PricingResource(dg.ConfigurableResource):
    """What the `usage` asset prices the measured usage with: the price table (built-in us-east-1
    list prices, or a JSON file of the same keys) and how often each sql/ query runs on Athena."""

    price_table: str | None = Settings.price_table
    athena_queries_per_day: int = Settings.athena_queries_per_day

    def prices(self) -> PriceTable:
        if self.price_table is None:
            return PriceTable()
        with open(self.price_table, encoding="utf-8") as table:
            return PriceTable.from_json(table.read())


class AlertSinkResource(dg.ConfigurableResource):
    """Where run-failure alerts go: JSON lines appended to a local file, and an SNS topic if set."""

    path: str = Settings.alerts_path
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
