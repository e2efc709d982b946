"""Product reviews, posts, comments and their analytics through the project's definitions: a
synthetic range in one run, bad records quarantined with reasons and conserved, and the checks."""

import json
import subprocess
import sys

import dagster as dg
import duckdb
import pytest

from ecomm_assets.core.layout import collection_path
from ecomm_assets_tests.conftest import PROJECT, make_definitions

DAYS = ["2024-01-15", "2024-01-16"]
ENGAGEMENT = ["product_reviews", "posts", "comments", "rating_distribution", "rating_vs_sales", "engaged_users",
              "tag_engagement"]
UPSTREAM = ["snapshots", "orders_raw", "order_lines"]


def checks_of(result) -> dict:
    return {
        (e.asset_key.path[-1], e.check_name): e.passed
        for e in (ev.event_specific_data for ev in result.all_events if ev.event_type_value == "ASSET_CHECK_EVALUATION")
    }


def run(defs, instance, assets, days):
    job = defs.resolve_implicit_global_asset_job_def()
    tags = ({"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]}
            if len(days) > 1 else {})
    return job.execute_in_process(partition_key=None if len(days) > 1 else days[0], tags=tags, instance=instance,
                                  asset_selection=[dg.AssetKey(a) for a in assets])


def rows(con, query):
    return con.sql(query).fetchall()


def test_a_synthetic_range_in_one_run_gives_each_day_its_engagement_and_analytics(lake_dir, instance):
    result = run(make_definitions(lake_dir), instance, [*UPSTREAM, *ENGAGEMENT, "catalog"], DAYS)
    assert result.success
    checks = checks_of(result)
    engagement_checks = {key: passed for key, passed in checks.items() if key[0] in ENGAGEMENT}
    assert len(engagement_checks) == 14 and all(engagement_checks.values()), engagement_checks
    with duckdb.connect(str(lake_dir.parent / "catalog.duckdb"), read_only=True) as con:
        # Each day's reviews are written that day, and the days differ.
        per_day = rows(con, "SELECT dt::VARCHAR, count(*), count(*) FILTER (WHERE review_ts::DATE = dt), "
                            "min(rating), max(rating) FROM product_reviews GROUP BY dt ORDER BY dt")
        assert [day for day, *_ in per_day] == DAYS
        assert all(reviews > 5 and dated == reviews and low >= 1 and high <= 5 for _, reviews, dated, low, high in per_day)
        assert rows(con, "SELECT count(*) FROM posts p JOIN comments c USING (dt, post_id)")[0][0] == rows(
            con, "SELECT count(*) FROM comments")[0][0]  # every comment is on a post of its day
        # Ratings per product add up to the reviews, and the categories to the products.
        assert rows(con, "SELECT level, sum(reviews), sum(rating_1 + rating_2 + rating_3 + rating_4 + rating_5) "
                         "FROM rating_distribution GROUP BY level ORDER BY level") == [
            ("category", n := rows(con, "SELECT count(*) FROM product_reviews")[0][0], n), ("product", n, n)]
        # Rating against sales: every unit and cent of the day's lines, and every review.
        assert rows(con, "SELECT dt::VARCHAR, sum(units), sum(revenue), sum(reviews) FROM rating_vs_sales GROUP BY 1 ORDER BY 1") == rows(
            con, "SELECT dt::VARCHAR, units, revenue, reviews FROM "
                 "(SELECT dt, sum(quantity) AS units, sum(line_total) AS revenue FROM order_lines GROUP BY dt) "
                 "JOIN (SELECT dt, count(*) AS reviews FROM product_reviews GROUP BY dt) USING (dt) ORDER BY 1")
        # Engaged users account for every post, comment and like; tags for every tag of every post.
        assert rows(con, "SELECT sum(posts), sum(comments), sum(likes_received) FROM engaged_users") == rows(
            con, "SELECT (SELECT count(*) FROM posts), (SELECT count(*) FROM comments), "
                 "(SELECT sum(likes) FROM posts) + (SELECT sum(likes) FROM comments)")
        assert rows(con, "SELECT sum(posts), sum(views) FROM tag_engagement") == rows(
            con, "SELECT sum(len(tags)), sum(views * len(tags)) FROM posts")
        assert rows(con, "SELECT min(rank), count(DISTINCT rank) = count(*) FROM engaged_users WHERE dt = '2024-01-15'") == [(1, True)]
    materialization = instance.get_latest_materialization_event(dg.AssetKey("product_reviews")).asset_materialization
    assert materialization.metadata["conservation_holds"].value is True
    assert materialization.metadata["built_days"].value == DAYS  # derived: one materialization building both days


GOOD_PRODUCT = {"id": 1, "title": "Mascara", "category": "beauty", "price": 9.99,
                "reviews": [{"rating": 4, "comment": "Good", "date": "2024-01-15T09:41:02.053Z",
                             "reviewerName": "Ann Lee", "reviewerEmail": "ann@x.com"}]}
GOOD_POST = {"id": 1, "title": "Hello", "body": "Text", "tags": ["love"], "reactions": {"likes": 3, "dislikes": 1},
             "views": 10, "userId": 5}
GOOD_COMMENT = {"id": 1, "body": "Nice", "postId": 1, "likes": 2, "user": {"id": 5, "username": "ann", "fullName": "Ann Lee"}}


def review(**fields):
    return {**GOOD_PRODUCT, "id": 2, "reviews": [{**GOOD_PRODUCT["reviews"][0], **fields}]}


def without(record, key):
    return {k: v for k, v in record.items() if k != key}


# Each table's bad records, one per rule, after one good record: one run per table checks them all.
BAD_RECORDS = {
    "product_reviews": ("products", GOOD_PRODUCT, [
        (review(rating=6), "rating outside 1-5: 6"),
        (review(rating=0), "rating outside 1-5: 0"),
        (review(rating=4.5), "rating is not a whole number: 4.5"),
        (review(rating="5"), 'rating is not a whole number: "5"'),
        (review(rating=None), "missing rating"),
        (review(date="yesterday"), "unparseable review date: yesterday"),
        (review(date="2024-02-30T10:00:00Z"), "unparseable review date: 2024-02-30T10:00:00Z"),
        (without(review(), "id"), "missing or invalid product id"),
        ({**GOOD_PRODUCT, "id": 1}, "duplicate product id: 1"),
        ({**review(), "id": 3, "reviews": "none"}, "reviews is not a list"),
        ({**review(), "id": 4, "reviews": ["great"]}, "review is not an object"),
    ]),
    "posts": ("posts", GOOD_POST, [
        (without({**GOOD_POST, "id": 2}, "userId"), "missing or invalid user id"),
        ({**GOOD_POST, "id": " "}, "missing or invalid post id"),
        (GOOD_POST, "duplicate post id: 1"),
        ({**GOOD_POST, "id": 3, "tags": "love,books"}, "tags is not a list of strings"),
        ({**GOOD_POST, "id": 4, "tags": ["love", 7]}, "tags is not a list of strings"),
        ({**GOOD_POST, "id": 5, "reactions": {"likes": -1, "dislikes": 0}}, "likes is not a whole number >= 0: -1"),
        ({**GOOD_POST, "id": 6, "views": 1.5}, "views is not a whole number >= 0: 1.5"),
    ]),
    "comments": ("comments", GOOD_COMMENT, [
        (without({**GOOD_COMMENT, "id": 2}, "postId"), "missing or invalid post id"),
        (without({**GOOD_COMMENT, "id": 3}, "user"), "missing or invalid user id"),
        ({**GOOD_COMMENT, "id": 4, "likes": "many"}, 'likes is not a whole number >= 0: "many"'),
        ({**GOOD_COMMENT, "id": 5.5}, "missing or invalid comment id"),
    ]),
}


@pytest.mark.parametrize("table", BAD_RECORDS)
def test_bad_records_are_quarantined_with_their_reasons_and_conserved(lake_dir, instance, table):
    collection, good, cases = BAD_RECORDS[table]
    day = "2024-01-15"
    snapshot = lake_dir / collection_path(collection, day)
    snapshot.parent.mkdir(parents=True)
    snapshot.write_text(json.dumps([good, *(bad for bad, _ in cases)]))
    result = run(make_definitions(lake_dir), instance, [table], [day])
    assert result.success
    assert all(checks_of(result).values()), checks_of(result)  # conservation counts the quarantined records
    quarantined = [json.loads(line) for line in (lake_dir / f"quarantine/{table}/dt={day}/part-00000.jsonl").read_text().splitlines()]
    assert [(q["record_number"], q["reason"]) for q in quarantined] == [(n, reason) for n, (_, reason) in enumerate(cases, 2)]
    loaded = duckdb.sql(f"SELECT count(*) FROM '{lake_dir}/processed/{table}/dt={day}/*.parquet'").fetchall()[0][0]
    assert loaded == 1
    counts = json.loads((lake_dir / f"processed/{table}/dt={day}/_counts.json").read_text())
    assert (counts["records_read"], counts["loaded"], counts["quarantined"]) == (len(cases) + 1, 1, len(cases))


def test_a_day_without_a_snapshot_builds_no_day(lake_dir, instance):
    """posts is derived from the posts snapshots: without one there is no day to build (nor to check)."""
    result = run(make_definitions(lake_dir), instance, ["posts"], ["2024-01-15"])
    assert result.success and all(checks_of(result).values())
    assert not (lake_dir / "processed" / "posts").exists()
    built = instance.get_latest_materialization_event(dg.AssetKey("posts")).asset_materialization.metadata
    assert built["built_days"].value == []


def test_a_product_that_is_no_object_has_no_reviews_and_conservation_holds(lake_dir, instance):
    snapshot = lake_dir / collection_path("products", "2024-01-15")
    snapshot.parent.mkdir(parents=True)
    snapshot.write_text(json.dumps([GOOD_PRODUCT, "not a product", None]))
    result = run(make_definitions(lake_dir), instance, ["product_reviews"], ["2024-01-15"])
    assert result.success and checks_of(result)[("product_reviews", "records_conserved")] is True
    assert not (lake_dir / "quarantine/product_reviews/dt=2024-01-15").exists()


SNAPSHOT_CHANGES = {
    "fetched again with one record fewer": lambda snapshot, good: snapshot.write_text(json.dumps([good])),
    "removed": lambda snapshot, good: snapshot.unlink(),
}


@pytest.mark.parametrize("change", SNAPSHOT_CHANGES)
@pytest.mark.parametrize("table", BAD_RECORDS)
def test_a_snapshot_changed_between_a_build_and_its_checks_is_the_next_builds(lake_dir, instance, table, change):
    """A day is built from its snapshot; the snapshot then changes (between the build's step and
    its checks' step): the checks evaluate the build, with the snapshot's records as counted when
    the build read it, and say the snapshot was replaced; the next build counts the new one."""
    collection, good, bad = BAD_RECORDS[table]
    snapshot = lake_dir / collection_path(collection, DAYS[0])
    snapshot.parent.mkdir(parents=True)
    snapshot.write_text(json.dumps([good, bad[0][0]]))  # a record loaded, one quarantined
    defs = make_definitions(lake_dir)
    job = defs.resolve_implicit_global_asset_job_def()
    key = dg.AssetKey(table)
    checks = {check for check in defs.resolve_asset_graph().asset_check_keys if check.asset_key == key}

    def conserved(result) -> dict:
        [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == "records_conserved"]
        assert evaluation.passed, evaluation.metadata
        return {name: value.value for name, value in evaluation.metadata.items()}

    built = job.get_subset(asset_selection={key}, asset_check_selection=set()).execute_in_process(
        partition_key=DAYS[0], instance=instance)
    assert built.success
    SNAPSHOT_CHANGES[change](snapshot, good)
    checked = job.get_subset(asset_selection=set(), asset_check_selection=checks).execute_in_process(
        partition_key=DAYS[0], instance=instance)
    assert conserved(checked) == {"records_read": 2, "rows_loaded": 1, "records_quarantined": 1, "duplicates_dropped": 0,
                                  "unaccounted": 0, "snapshot_replaced_since_build": True}
    if not snapshot.exists():
        return  # no snapshot, no day to build again
    rebuilt = job.get_subset(asset_selection={key}, asset_check_selection=checks).execute_in_process(
        partition_key=DAYS[0], instance=instance)
    assert conserved(rebuilt) == {"records_read": 1, "rows_loaded": 1, "records_quarantined": 0, "duplicates_dropped": 0,
                                  "unaccounted": 0, "snapshot_replaced_since_build": False}


# Run in a process of its own, its peak memory taken from after the project has loaded (the
# kernel's peak reset through /proc/self/clear_refs): product_reviews built and checked in one run.
_BUILD_AND_CHECK = """
import sys
from pathlib import Path
import dagster as dg
from ecomm_assets_tests.conftest import make_definitions

def resident(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field)) * 1024

defs = make_definitions(Path(sys.argv[1]))
key = dg.AssetKey("product_reviews")
checks = {check for check in defs.resolve_asset_graph().asset_check_keys if check.asset_key == key}
job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection={key}, asset_check_selection=checks)
with dg.DagsterInstance.ephemeral() as instance:
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    loaded = resident("VmRSS:")
    result = job.execute_in_process(instance=instance)
    peak = resident("VmHWM:") - loaded
    assert result.success and all(e.passed for e in result.get_asset_check_evaluations()), result.get_asset_check_evaluations()
    records = instance.get_latest_materialization_event(key).asset_materialization.metadata["records_read"].value
print(records, peak)
"""


def test_a_large_snapshot_is_built_and_counted_without_being_held(lake_dir):
    """A products snapshot of 63 MiB (480,000 reviews: a day of about 4.8 million orders) is read a
    batch of its records at a time, its reviews checked on a database bounded in memory that spills
    to disk, its rows streamed to the day's file; the conservation check counts it the same way. The
    process's peak stays within that database's 512 MB and Python's batches, whatever the snapshot's
    size (about 310 MiB here). Reading the snapshot whole, the build and the count took 1,405 MiB."""
    review = json.dumps(GOOD_PRODUCT["reviews"][0] | {"comment": "Would recommend to anyone!"}, separators=(",", ":"))
    products, reviews_each = 200, 2_400
    snapshot = lake_dir / collection_path("products", "2024-01-15")
    snapshot.parent.mkdir(parents=True)
    reviews = ",".join([review] * reviews_each)
    with open(snapshot, "w") as out:  # products with their reviews, written a product at a time
        out.write("[")
        out.writelines(f'{"," if n > 1 else ""}{{"id":{n},"category":"beauty","reviews":[{reviews}]}}' for n in range(1, products + 1))
        out.write("]")
    size = snapshot.stat().st_size
    run = subprocess.run([sys.executable, "-c", _BUILD_AND_CHECK, str(lake_dir)], check=False, cwd=PROJECT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    records, peak = map(int, run.stdout.split()[-2:])
    assert records == products * reviews_each and size > 60 * 2**20
    assert peak < 768 * 2**20, (peak >> 20, size >> 20)


def test_a_snapshot_record_too_large_to_read_fails_the_build_and_says_which(lake_dir, instance):
    """A record of a snapshot is read whole, and parsing one takes several times its size: one over
    16 MiB (a product with some 100,000 reviews of a day) fails the build, naming the day and the
    record, rather than taking memory without bound; nothing of the day is written."""
    snapshot = lake_dir / collection_path("products", "2024-01-15")
    snapshot.parent.mkdir(parents=True)
    review = json.dumps(GOOD_PRODUCT["reviews"][0])
    snapshot.write_text(f'[{json.dumps(GOOD_PRODUCT)},{{"id":2,"reviews":[{",".join([review] * 150_000)}]}}]')
    job = make_definitions(lake_dir).resolve_implicit_global_asset_job_def()
    result = job.get_subset(asset_selection={dg.AssetKey("product_reviews")}, asset_check_selection=set()).execute_in_process(
        instance=instance, raise_on_error=False)
    assert not result.success
    [failure] = [e.event_specific_data.error for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert ("product_reviews: the products snapshot of 2024-01-15 cannot be read: element 2 of the array of products is "
            "larger than 16,777,216 bytes") in failure.cause.message
    assert not (lake_dir / "processed" / "product_reviews").exists()
