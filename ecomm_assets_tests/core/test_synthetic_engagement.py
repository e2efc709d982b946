"""The synthetic shop's reviews, posts and comments: dated within their day, deterministic by seed
and day, made by the shop's users, and each review's rating following its product's quality
(synthetic.TARGET_RATING_QUALITY_CORRELATION, checked over a month for two seeds)."""

import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from functools import cache

import numpy as np
import pytest

from ecomm_assets.core import synthetic

SEEDS = (42, 7)
DAYS = [date(2024, 1, 1) + timedelta(days=n) for n in range(31)]


@cache
def shop(seed: int) -> tuple[list[dict], list[dict]]:
    return synthetic.generate_products(seed), synthetic.generate_users(seed)


def day_products(seed: int, day: date, mean_orders: int = 1000) -> list[dict]:
    products, users = shop(seed)
    return list(synthetic.day_products(seed, day, mean_orders, products, users))


@pytest.mark.parametrize("seed", SEEDS)
def test_review_ratings_follow_product_quality_over_a_month(seed):
    products, _ = shop(seed)
    totals, counts = np.zeros(len(products)), np.zeros(len(products))
    for day in DAYS:
        for n, product in enumerate(day_products(seed, day)):
            totals[n] += sum(review["rating"] for review in product["reviews"])
            counts[n] += len(product["reviews"])
    reviewed = counts > 0
    correlation = np.corrcoef(totals[reviewed] / counts[reviewed], synthetic.product_quality(products)[reviewed])[0, 1]
    assert correlation >= synthetic.TARGET_RATING_QUALITY_CORRELATION, correlation
    # About REVIEWS_PER_ORDER reviews an order, more for the products that sell more (the cheap ones).
    orders = sum(synthetic.orders_for_day(day, 1000) for day in DAYS)
    assert 0.8 * synthetic.REVIEWS_PER_ORDER < counts.sum() / orders < 1.2 * synthetic.REVIEWS_PER_ORDER
    prices = np.array([p["price"] for p in products])
    assert counts[prices < 50].mean() > 5 * counts[prices >= 500].mean()


def test_reviews_are_dated_within_their_day_and_dummyjson_shaped():
    day = date(2024, 2, 29)
    products = day_products(42, day)
    reviews = [review for product in products for review in product["reviews"]]
    assert len(reviews) > 50
    _, users = shop(42)
    emails = {user["email"] for user in users}
    for review in reviews:
        assert list(review) == ["rating", "comment", "date", "reviewerName", "reviewerEmail"]
        moment = datetime.fromisoformat(review["date"])
        assert moment.tzinfo == UTC and moment.date() == day and review["date"].endswith("Z")
        assert review["rating"] in range(1, 6) and review["comment"] in synthetic.REVIEW_COMMENTS[review["rating"]]
        assert review["reviewerEmail"] in emails
    # The products themselves are the shop's (orders are made from them: they stay the same).
    assert [{k: v for k, v in p.items() if k != "reviews"} for p in products] == shop(42)[0]


def test_posts_and_comments_of_a_day_come_from_the_shops_users():
    _, users = shop(42)
    by_id = {user["id"]: user for user in users}
    day = date(2024, 1, 15)
    posts = synthetic.generate_posts(42, day, users)
    comments = synthetic.generate_comments(42, day, posts, users)
    assert 10 < len(posts) < 50 and len(comments) > len(posts)
    assert len({p["id"] for p in posts}) == len(posts) and len({c["id"] for c in comments}) == len(comments)
    for post in posts:
        assert str(post["id"]).startswith("20240115") and post["userId"] in by_id
        assert set(post["tags"]) <= set(synthetic.POST_TAGS) and 1 <= len(post["tags"]) <= 3
        assert 0 <= post["reactions"]["likes"] <= post["views"] and 0 <= post["reactions"]["dislikes"] <= post["views"]
    post_ids = {p["id"] for p in posts}
    for comment in comments:
        assert comment["postId"] in post_ids
        user = by_id[comment["user"]["id"]]
        assert comment["user"] == {"id": user["id"], "username": user["username"],
                                   "fullName": f"{user['firstName']} {user['lastName']}"}
    # A few users write many of the posts: over a month, the ten busiest of 500 write over 30 %.
    month = Counter(p["userId"] for d in DAYS for p in synthetic.generate_posts(42, d, users))
    assert sum(n for _, n in month.most_common(10)) > 0.3 * sum(month.values())


@pytest.mark.parametrize("generate", [
    lambda seed, day: day_products(seed, day),
    lambda seed, day: synthetic.generate_posts(seed, day, shop(seed)[1]),
    lambda seed, day: synthetic.generate_comments(seed, day, synthetic.generate_posts(seed, day, shop(seed)[1]), shop(seed)[1]),
], ids=["products", "posts", "comments"])
def test_the_same_seed_and_day_give_the_same_records(generate):
    day, other = date(2024, 3, 1), date(2024, 3, 2)
    assert generate(7, day) == generate(7, day)
    assert generate(7, day) != generate(8, day)
    assert generate(7, day) != generate(7, other)


def test_a_days_products_snapshot_is_written_in_parts_as_its_products_are_made():
    """A large day's products snapshot is made and serialized a product at a time, in parts: the
    parts are the bytes of the whole snapshot serialized at once (compact JSON, as the lake holds it)."""
    products, users = shop(42)
    day = date(2024, 1, 15)
    whole = json.dumps(list(synthetic.day_products(42, day, 50_000, products, users)), separators=(",", ":")).encode()
    parts = list(synthetic.json_array(synthetic.day_products(42, day, 50_000, products, users), part_bytes=100_000))
    assert len(parts) > 5 and b"".join(parts) == whole
    assert list(synthetic.json_array([])) == [b"[]"]
