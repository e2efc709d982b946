"""Engagement: product reviews, posts and comments from the day's collection snapshots (validated,
bad records quarantined with reasons), and their daily analytics computed with DuckDB."""

import contextlib
import functools
from collections import Counter
from datetime import date

import dagster as dg

from ecomm_assets.assets.days import (
    DayRejects,
    Derivation,
    days_as_files,
    derived_build,
    split_by_day,
)
from ecomm_assets.assets.lake import DERIVED_LAKE, order_lines
from ecomm_assets.assets.metadata import column_schema, reasons_table, with_usage
from ecomm_assets.assets.sources import snapshots
from ecomm_assets.core.analytics import build_engagement_analytics
from ecomm_assets.core.engagement import (
    COLLECTION,
    EngagementCounts,
    SnapshotFile,
    build_engagement,
    snapshot_records,
)
from ecomm_assets.core.layout import (
    collection_dir,
    collection_path,
    quarantine_path,
    table_dir,
)
from ecomm_assets.core.schemas import ENGAGEMENT, ENGAGEMENT_ANALYTICS
from ecomm_assets.core.storage import input_read
from ecomm_assets.partitions import BACKFILL_POLICY, DAILY_FRESHNESS
from ecomm_assets.resources import LakeResource

ENGAGEMENT_ANALYTICS_ASSET = {"backfill_policy": BACKFILL_POLICY,
                              "freshness_policy": DAILY_FRESHNESS, "group_name": "analytics",
                              "owners": ["team:analytics"], "kinds": {"duckdb", "parquet"}}


def _engagement_table(context: dg.AssetExecutionContext, lake: LakeResource, name: str) -> dg.MaterializeResult:
    """A table's stale days from its collection's snapshots: rows, quarantine with reasons, and counts."""
    store = lake.store()
    collection = COLLECTION[name]
    counts: dict[date, EngagementCounts] = {}
    with derived_build(context, store, Derivation(name, (collection_dir(collection),)), ENGAGEMENT[name]) as build:
        for days in build.batches():
            paths_of_days = {day: collection_path(collection, day) for day in days}
            with store.local_paths(list(paths_of_days.values())) as paths:
                result = build_engagement(name, [SnapshotFile(path, day) for path, day in zip(paths, days)], build.staging)
                read = {}
                for day, path in zip(days, paths):  # the snapshot read, for the conservation check (storage.input_read)
                    with open(path, "rb") as source:
                        read[day] = {"snapshot": input_read(source, functools.partial(snapshot_records, name))}
            counts.update({day: result.counts.get(day, EngagementCounts()) for day in days})
            build.write(result.rows, DayRejects({day: counts[day].as_dict() | read[day] for day in days}, result.quarantined))
    metadata = build.metadata()
    reasons = sum((c.reasons for c in counts.values()), Counter())
    metadata.update(
        {
            "records_read": sum(c.records_read for c in counts.values()),
            "records_quarantined": sum(c.quarantined for c in counts.values()),
            "conservation_holds": all(c.conserved for c in counts.values()),
            "top_reject_reasons": reasons_table(dict(reasons.most_common(10))),
        }
    )
    quarantined_days = [day for day, c in counts.items() if c.quarantined]
    if quarantined_days:
        metadata["quarantine_path"] = dg.MetadataValue.path(store.full_uri(quarantine_path(name, quarantined_days[0])))
    return dg.MaterializeResult(metadata=metadata)


_QUARANTINED = "Bad records (missing ids, {rules}) go to quarantine/{table}/dt=YYYY-MM-DD/ with their reasons."


@dg.asset(
    **DERIVED_LAKE,
    deps=[snapshots],
    metadata={"dagster/column_schema": column_schema(ENGAGEMENT["product_reviews"])},
    description="One row per review of the day's products snapshot (its reviews[]), keyed by product_id and "
    "review_number, with the product's category; review_ts is the review's own date. "
    + _QUARANTINED.format(rules="a rating not a whole number from 1 to 5, an unparseable date", table="product_reviews"),
)
@with_usage
def product_reviews(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    return _engagement_table(context, lake, "product_reviews")


@dg.asset(
    **DERIVED_LAKE,
    deps=[snapshots],
    metadata={"dagster/column_schema": column_schema(ENGAGEMENT["posts"])},
    description="One row per post of the day's posts snapshot: author, title, body, tags, likes, dislikes, views. "
    + _QUARANTINED.format(rules="tags not a list of strings, negative or fractional counts, repeated ids", table="posts"),
)
@with_usage
def posts(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    return _engagement_table(context, lake, "posts")


@dg.asset(
    **DERIVED_LAKE,
    deps=[snapshots],
    metadata={"dagster/column_schema": column_schema(ENGAGEMENT["comments"])},
    description="One row per comment of the day's comments snapshot: the post, the commenter (id, username, "
    "full name), the text and its likes. "
    + _QUARANTINED.format(rules="negative or fractional likes, repeated ids", table="comments"),
)
@with_usage
def comments(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    return _engagement_table(context, lake, "comments")


def _engagement_analytics(context: dg.AssetExecutionContext, lake: LakeResource, name: str, inputs: list[str],
                          optional: tuple[str, ...] = ()) -> dict:
    """Builds the stale days of an engagement analytics table from `inputs` (all must hold a day)
    and `optional` tables (read where they hold it); its metadata."""
    store = lake.store()
    derivation = Derivation(name, tuple(table_dir(t) for t in inputs), tuple(table_dir(t) for t in optional))
    with derived_build(context, store, derivation, ENGAGEMENT_ANALYTICS[name]) as build:
        for days in build.batches():
            with contextlib.ExitStack() as stack:
                tables = {table: stack.enter_context(days_as_files(store, table, days, missing_ok=table in optional))
                          for table in (*inputs, *optional)}
                table = build_engagement_analytics(name, tables)
            build.write(split_by_day(table, "snapshot_date", days))
    return build.metadata()


@dg.asset(
    **ENGAGEMENT_ANALYTICS_ASSET,
    deps=[product_reviews],
    metadata={"dagster/column_schema": column_schema(ENGAGEMENT_ANALYTICS["rating_distribution"])},
    description="Reviews per rating (1 to 5) and the average rating, per product and per category, of the day's "
    "reviews (processed/rating_distribution/).",
)
@with_usage
def rating_distribution(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=_engagement_analytics(context, lake, "rating_distribution", ["product_reviews"]))


@dg.asset(
    **ENGAGEMENT_ANALYTICS_ASSET,
    deps=[product_reviews, order_lines],
    metadata={"dagster/column_schema": column_schema(ENGAGEMENT_ANALYTICS["rating_vs_sales"])},
    description="Per product reviewed or sold that day: its reviews and average rating beside its units sold "
    "and revenue (processed/rating_vs_sales/).",
)
@with_usage
def rating_vs_sales(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    # A day known only from landed files has sales and no snapshot, so no reviews: built all the same.
    return dg.MaterializeResult(
        metadata=_engagement_analytics(context, lake, "rating_vs_sales", ["order_lines"], optional=("product_reviews",))
    )


@dg.asset(
    **ENGAGEMENT_ANALYTICS_ASSET,
    deps=[posts, comments],
    metadata={"dagster/column_schema": column_schema(ENGAGEMENT_ANALYTICS["engaged_users"])},
    description="Every user who posted or commented that day, ranked by posts + comments + likes received, with "
    "the dislikes, views and comments their posts received (processed/engaged_users/).",
)
@with_usage
def engaged_users(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=_engagement_analytics(context, lake, "engaged_users", ["posts", "comments"]))


@dg.asset(
    **ENGAGEMENT_ANALYTICS_ASSET,
    deps=[posts, comments],
    metadata={"dagster/column_schema": column_schema(ENGAGEMENT_ANALYTICS["tag_engagement"])},
    description="Per tag: the day's posts carrying it, their views, likes, dislikes and comments "
    "(processed/tag_engagement/).",
)
@with_usage
def tag_engagement(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=_engagement_analytics(context, lake, "tag_engagement", ["posts", "comments"]))
