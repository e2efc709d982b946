"""A deterministic generator of DummyJSON-shaped collections and canonical nested orders.

Same (seed, day) -> same records -> same bytes, on any machine: all randomness comes from
numpy's PCG64 seeded with (seed, day ordinal), and serialization keeps the fields' order.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecomm_assets.core import duck

CATEGORIES = {
    "beauty": (5, 60), "fragrances": (20, 150), "furniture": (80, 1500), "groceries": (1, 25),
    "home-decoration": (10, 200), "kitchen-accessories": (5, 120), "laptops": (400, 2500),
    "mens-shirts": (15, 80), "mens-shoes": (30, 200), "mens-watches": (50, 900),
    "mobile-accessories": (5, 150), "motorcycle": (2000, 15000), "skin-care": (5, 80),
    "smartphones": (150, 1400), "sports-accessories": (5, 300), "sunglasses": (10, 250),
    "tablets": (150, 1200), "tops": (10, 60), "vehicle": (9000, 60000), "womens-bags": (30, 700),
    "womens-dresses": (20, 200), "womens-jewellery": (15, 600), "womens-shoes": (25, 250),
    "womens-watches": (50, 900),
}
BRANDS = ["Acme", "Northwind", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vandelay", "Soylent"]
FIRST_NAMES = ["Emily", "Michael", "Sophia", "James", "Emma", "Olivia", "Liam", "Ava", "Noah", "Isabella", "Lucas", "Mia"]
LAST_NAMES = ["Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Wilson", "Taylor", "Clark"]
CITIES = [
    ("Phoenix", "Arizona", "United States"), ("Austin", "Texas", "United States"),
    ("Denver", "Colorado", "United States"), ("Seattle", "Washington", "United States"),
    ("Toronto", "Ontario", "Canada"), ("Lyon", "Auvergne-Rhone-Alpes", "France"),
    ("Munich", "Bavaria", "Germany"), ("Manchester", "England", "United Kingdom"),
]
# Share of a day's orders by UTC hour: quiet nights, a lunch peak and an evening peak.
HOURLY_WEIGHTS = np.array(
    [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 4, 5, 6, 7, 6.5, 5.5, 5, 5, 5.5, 6.5, 8, 8.5, 7, 5, 2.5]
)
# Orders relative to a mean day, Monday first: weekends sell more.
WEEKDAY_FACTORS = np.array([0.9, 0.92, 0.95, 0.98, 1.05, 1.15, 1.05])


def _rng(seed: int, *salt: int) -> np.random.Generator:
    return np.random.default_rng([seed, *salt])


def generate_products(seed: int, count: int = 200) -> list[dict]:
    rng = _rng(seed, 1)
    names = list(CATEGORIES)
    categories = rng.integers(0, len(names), count)
    products = []
    for i in range(count):
        category = names[categories[i]]
        low, high = CATEGORIES[category]
        product = {
            "id": i + 1,
            "title": f"{category.replace('-', ' ').title()} {i + 1}",
            "category": category,
            "price": round(float(rng.uniform(low, high)), 2),
            "discountPercentage": round(float(rng.uniform(0, 20)), 2),
            "rating": round(float(rng.uniform(1, 5)), 2),
            "stock": int(rng.integers(0, 200)),
        }
        if rng.random() < 0.55:  # like DummyJSON, many products have no brand
            product["brand"] = BRANDS[int(rng.integers(0, len(BRANDS)))]
        products.append(product)
    return products


def generate_users(seed: int, count: int = 500) -> list[dict]:
    rng = _rng(seed, 2)
    users = []
    for i in range(count):
        first = FIRST_NAMES[int(rng.integers(0, len(FIRST_NAMES)))]
        last = LAST_NAMES[int(rng.integers(0, len(LAST_NAMES)))]
        city, state, country = CITIES[int(rng.integers(0, len(CITIES)))]
        users.append(
            {
                "id": i + 1,
                "firstName": first,
                "lastName": last,
                "username": f"{first.lower()}{last[0].lower()}{i + 1}",
                "email": f"{first.lower()}.{last.lower()}{i + 1}@example.com",
                "address": {
                    "address": f"{int(rng.integers(1, 999))} Main Street",
                    "city": city,
                    "state": state,
                    "postalCode": f"{int(rng.integers(10000, 99999))}",
                    "country": country,
                },
            }
        )
    return users


def orders_for_day(day: date, mean_orders: int) -> int:
    return int(round(mean_orders * WEEKDAY_FACTORS[day.weekday()]))


# Probability of an order having 1, 2, 3, 4 or 5 product lines: roughly geometric, each further
# line a little over half as likely as the one before (mean 1.98).
LINES_PER_ORDER = (0.47, 0.26, 0.14, 0.08, 0.05)
# Demand falls with price. A line picks a product with weight (price + DEMAND_PRICE_OFFSET) ** -1.5:
# below about 10.00 the price hardly matters, above it a product at ten times the price sells about
# 30 times less, so revenue peaks at items of 20 to 100 and a car sells on 5 to 11 days a year. Each
# unit beyond the first is added with probability EXTRA_UNIT_CHANCE, shrinking as 1/sqrt(price)
# above EXTRA_UNIT_FULL_PRICE, up to MAX_QUANTITY units a line.
DEMAND_PRICE_OFFSET = 10.0
EXTRA_UNIT_CHANCE = 0.45
EXTRA_UNIT_FULL_PRICE = 20.0
MAX_QUANTITY = 4

# What a day of about 1,000 orders looks like (money: items only, no shipping). Tested on every day
# of January 2024 for seeds 42 and 7 (ecomm_assets_tests/core/test_synthetic_shop.py). A day a car
# sells can miss them, as a real shop's would: that one order can outweigh the rest of the day.
TARGET_AVERAGE_ORDER_VALUE = (40, 150)  # and the median order below the mean: a few large orders
TARGET_MAX_CATEGORY_SHARE = 0.25  # of a day's revenue
TARGET_CATEGORIES_OVER_2_PERCENT = 10  # categories with at least 2 % of a day's revenue
BIG_TICKET_CATEGORIES = ("vehicle", "motorcycle")
TARGET_MAX_BIG_TICKET_IN_TOP_10 = 2  # of a day's ten products with the most revenue
TARGET_MAX_BIG_TICKET_SHARE = 0.05  # of a month's revenue (a day's can be more, when a car sells)
TARGET_MIN_LINES_UNDER_50 = 0.6  # share of order lines with a unit price below 50.00
TARGET_LINES_PER_ORDER = (1.5, 4)  # mean products per order
TARGET_UNITS_PER_LINE = (1, 2)  # mean quantity per line


def _product_columns(products: list[dict]) -> tuple[pa.Table, np.ndarray]:
    """The products as the table an order line takes rows from, and each product's price in cents."""
    product_lines = pa.table(
        {
            "product_id": [str(p["id"]) for p in products],
            "name": [p.get("title") for p in products],
            "category": [p.get("category") for p in products],
            "brand": pa.array([p.get("brand") for p in products], pa.string()),
            "price": pa.array([p.get("price") for p in products], pa.float64()),
        }
    )
    cents = np.array([round(p["price"] * 100) for p in products], dtype=np.int64)
    return product_lines, cents


def customer_table(users: list[dict]) -> pa.Table:
    """The users as the table an order takes its customer from: build it once for a users snapshot
    that many days share (generate_orders' `customers`)."""
    addresses = [u.get("address") or {} for u in users]
    return pa.table(
        {
            "customer_id": [str(u["id"]) for u in users],
            "name": [f"{u.get('firstName', '')} {u.get('lastName', '')}".strip() for u in users],
            "email": [u.get("email") for u in users],
            "address": pa.array(
                [{k: a.get(k) for k in ("address", "city", "state", "postalCode", "country")} for a in addresses]
            ),
        }
    )


# The random stream and order id prefix of the daily generator; another producer of the same shop
# (core/simulator.py) draws its own stream, so its orders are other orders, with other ids.
ORDERS_STREAM = 3
ORDER_ID_PREFIX = "SYN"


def _demand_shares(cents: np.ndarray) -> np.ndarray:
    """Each product's share of a day's order lines, from its price in cents. (price + offset) ** -1.5
    is written with sqrt, which IEEE 754 rounds exactly: the same weights, hence the same picks, on
    any machine."""
    offset_prices = cents / 100 + DEMAND_PRICE_OFFSET
    demand = 1 / (offset_prices * np.sqrt(offset_prices))
    return demand / demand.sum()


def generate_orders(
    seed: int, day: date, mean_orders: int, products: list[dict], users: list[dict],
    lines_per_order: tuple[float, ...] = LINES_PER_ORDER, *, stream: int = ORDERS_STREAM,
    id_prefix: str = ORDER_ID_PREFIX, customers: pa.Table | None = None,
) -> pa.Table:
    """The canonical nested orders of `day` as an Arrow table (order_id, order_date,
    total_amount, customer{...}, products[{...}]), deterministic for (seed, day, stream): the
    parts of generate_order_parts, whole."""
    return pa.concat_tables(generate_order_parts(seed, day, mean_orders, products, users, lines_per_order,
                                                 stream=stream, id_prefix=id_prefix, customers=customers))


# Orders generated at once: a larger day is made in parts of this many, so that a day of any size
# is generated, serialized and written in bounded memory.
ORDERS_PART = 100_000


def generate_order_parts(
    seed: int, day: date, mean_orders: int, products: list[dict], users: list[dict],
    lines_per_order: tuple[float, ...] = LINES_PER_ORDER, *, stream: int = ORDERS_STREAM,
    id_prefix: str = ORDER_ID_PREFIX, customers: pa.Table | None = None,
) -> Iterator[pa.Table]:
    """The orders of `day` (generate_orders) in parts of at most ORDERS_PART orders, each sorted by
    time and built column by column (a year of days takes seconds, not minutes). A day of up to
    ORDERS_PART orders is one part; each later part draws a random stream of its own, its order
    numbers following the part before. `customers`: customer_table(users), when the caller has it."""
    orders = orders_for_day(day, mean_orders)
    customers = customer_table(users) if customers is None else customers
    for part, first in enumerate(range(0, max(orders, 1), ORDERS_PART)):
        rng = _rng(seed, stream, day.toordinal(), *((part,) if part else ()))
        yield _orders(rng, day, first, min(ORDERS_PART, orders - first), products, customers, lines_per_order, id_prefix)


def _orders(rng: np.random.Generator, day: date, first: int, n: int, products: list[dict], customers: pa.Table,
            lines_per_order: tuple[float, ...], id_prefix: str) -> pa.Table:
    """`n` orders of `day` drawn from `rng`, numbered from `first` + 1."""
    hours = rng.choice(24, size=n, p=HOURLY_WEIGHTS / HOURLY_WEIGHTS.sum())
    seconds = np.sort(hours * 3600 + rng.integers(0, 3600, n))
    customer_picks = rng.integers(0, len(customers), n)
    line_counts = rng.choice(np.arange(1, len(lines_per_order) + 1), size=n, p=lines_per_order)
    total_lines = int(line_counts.sum())
    product_lines, cents = _product_columns(products)
    product_picks = rng.choice(len(products), size=total_lines, p=_demand_shares(cents))
    line_prices = np.maximum(cents[product_picks] / 100, 0.01)
    extra_unit_chance = EXTRA_UNIT_CHANCE * np.minimum(1.0, np.sqrt(EXTRA_UNIT_FULL_PRICE / line_prices))
    extra_units = rng.random((total_lines, MAX_QUANTITY - 1)) < extra_unit_chance[:, None]
    quantities = 1 + np.cumprod(extra_units, axis=1).sum(axis=1)  # stops at the first unit not added
    # A few percent of orders carry shipping on top, so reported totals do not always reconcile.
    shipping_cents = np.where(rng.random(n) < 0.03, 499, 0)

    lines = product_lines.take(product_picks).append_column("quantity", pa.array(quantities, pa.int64()))
    discounts = pa.array([p.get("discountPercentage") for p in products], pa.float64()).take(product_picks)
    lines = lines.append_column("discount_percent", discounts)
    offsets = np.concatenate([[0], np.cumsum(line_counts)]).astype(np.int32)
    items_cents = np.add.reduceat(cents[product_picks] * quantities, offsets[:-1]) if n else np.zeros(0, np.int64)
    midnight = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
    return pa.table(
        {
            "order_id": pc.binary_join_element_wise(
                f"{id_prefix}-{day:%Y%m%d}-", pc.utf8_lpad(pc.cast(pa.array(np.arange(first + 1, first + n + 1)), pa.string()), 6, "0"), ""
            ),
            "order_date": _iso_seconds(pa.array(midnight + seconds, pa.timestamp("s"))),
            "total_amount": pa.array((items_cents + shipping_cents) / 100, pa.float64()),
            "customer": customers.take(customer_picks).to_struct_array().combine_chunks(),
            "products": pa.ListArray.from_arrays(pa.array(offsets), lines.to_struct_array().combine_chunks()),
        }
    )


def _iso_seconds(moments: pa.Array) -> pa.Array:
    """UTC moments to the second as YYYY-MM-DDTHH:MM:SSZ: Arrow's cast writes YYYY-MM-DD HH:MM:SS,
    ten times faster than strftime."""
    return pc.binary_join_element_wise(pc.utf8_replace_slice(pc.cast(moments, pa.string()), 10, 11, "T"), "Z", "")


def to_json_lines(records: list[dict]) -> bytes:
    return "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()


def orders_json_lines(orders: pa.Table) -> bytes:
    """One JSON object per order and line, keys in the table's order (DuckDB writes the JSON)."""
    return json_lines([orders])[0]


def json_lines(tables: Sequence[pa.Table]) -> list[bytes]:
    """Each table's rows as JSON Lines (one object per row, keys in the columns' order): a batch
    of days' orders serialized in one step, one DuckDB query for each run of tables of one schema."""
    return [text for _, run in itertools.groupby(tables, key=lambda table: table.schema) for text in _json_lines_of(list(run))]


def _json_lines_of(tables: list[pa.Table]) -> list[bytes]:
    """json_lines of tables of one schema, in one query."""
    if not any(table.num_rows for table in tables):
        return [b""] * len(tables)
    con = duck.connect()
    con.register("rows_", pa.concat_tables(tables))
    texts = con.sql("SELECT to_json(r)::VARCHAR || chr(10) FROM rows_ r").to_arrow_table().column(0)
    con.close()
    # The texts' characters are one buffer: each table's JSON Lines is a slice of it, no object per row.
    texts = texts.cast(pa.large_string()).combine_chunks()  # 64-bit offsets before the chunks are one
    offsets = np.frombuffer(texts.buffers()[1], np.int64)[texts.offset : texts.offset + len(texts) + 1].tolist()
    data = texts.buffers()[2]
    ends = itertools.accumulate((table.num_rows for table in tables), initial=0)
    return [data[offsets[start] : offsets[end]].to_pybytes() for start, end in itertools.pairwise(ends)]


def generate_carts(seed: int, products: list[dict], count: int = 50, users: int = 500) -> list[dict]:
    """DummyJSON-shaped carts (id, userId, products with title, price, quantity, total)."""
    rng = _rng(seed, 5)
    carts = []
    for cart_id in range(1, count + 1):
        picks = rng.integers(0, len(products), int(rng.integers(1, 6)))
        lines = []
        for pick in picks:
            product, quantity = products[pick], int(rng.integers(1, 5))
            lines.append(
                {
                    "id": product["id"],
                    "title": product["title"],
                    "price": product["price"],
                    "quantity": quantity,
                    "total": round(product["price"] * quantity, 2),
                    "discountPercentage": product["discountPercentage"],
                }
            )
        carts.append(
            {
                "id": cart_id,
                "products": lines,
                "total": round(sum(line["total"] for line in lines), 2),
                "userId": int(rng.integers(1, users + 1)),
                "totalProducts": len(lines),
                "totalQuantity": sum(line["quantity"] for line in lines),
            }
        )
    return carts


# Reviews: a product's latent quality is its catalogue rating (1-5, drawn once per product), and each
# review's rating is that quality plus noise, rounded and held to 1..5. A day brings about
# REVIEWS_PER_ORDER reviews per order, shared among products like the order lines (demand), so
# products that sell more are reviewed more. Tested over a month for two seeds
# (ecomm_assets_tests/core/test_synthetic_engagement.py).
REVIEWS_PER_ORDER = 0.1
REVIEW_RATING_NOISE = 0.8  # standard deviation of a review's rating around its product's quality
TARGET_RATING_QUALITY_CORRELATION = 0.8  # Pearson, a month's mean review rating per product vs quality
REVIEW_COMMENTS = {
    1: ("Very disappointed!", "Would not buy again!", "Poor quality!"),
    2: ("Not as described!", "Would not recommend!", "Disappointing product!"),
    3: ("It's okay.", "Average at best.", "Does the job."),
    4: ("Very satisfied!", "Good value!", "Would recommend!"),
    5: ("Highly impressed!", "Excellent quality!", "Awesome product!"),
}

# Posts and comments: about POSTS_PER_DAY posts a day, by users picked with weight 1/rank (a few
# users write most), each viewed a lognormal number of times and liked by a share of its viewers;
# about COMMENTS_PER_POST comments a post, on the day's posts by their views.
POSTS_PER_DAY = 25
COMMENTS_PER_POST = 1.6
POST_TAGS = ("history", "american", "crime", "french", "fiction", "english", "magical", "mystery", "love",
             "classic", "shopping", "deals", "unboxing", "style")
COMMENT_TEXTS = ("This is some awesome thinking!", "What terrific math skills you're showing!",
                 "You are an amazing writer!", "Wow! You have improved so much!", "Nice idea!",
                 "I disagree.", "Thanks for sharing!", "Great question!")


def product_quality(products: list[dict]) -> np.ndarray:
    """Each product's latent quality on the 1-5 rating scale: its catalogue rating."""
    return np.array([p["rating"] for p in products], dtype=np.float64)


def _moment_text(midnight: datetime, millis: int) -> str:
    """A moment `millis` after midnight (UTC), to the millisecond, as DummyJSON writes it (…T09:41:02.053Z)."""
    return f"{(midnight + timedelta(milliseconds=millis)).isoformat(timespec='milliseconds')[:-6]}Z"


def day_products(seed: int, day: date, mean_orders: int, products: list[dict], users: list[dict]) -> Iterator[dict]:
    """The day's products snapshot, a product at a time: each product with the `reviews` written
    that day (DummyJSON's rating, comment, date, reviewerName, reviewerEmail), deterministic for
    (seed, day). The day's draws are made at once (a few bytes a review); a product's reviews are
    made as it is taken, so memory holds one product's, not the day's."""
    rng = _rng(seed, 6, day.toordinal())
    cents = np.array([round(p["price"] * 100) for p in products], dtype=np.int64)
    expected = REVIEWS_PER_ORDER * orders_for_day(day, mean_orders) * _demand_shares(cents)
    counts = rng.poisson(expected)
    ratings = np.clip(np.rint(rng.normal(np.repeat(product_quality(products), counts), REVIEW_RATING_NOISE)), 1, 5).astype(np.int8)
    reviewers = rng.integers(0, len(users), len(ratings)).astype(np.int32)
    phrases = rng.integers(0, 3, len(ratings)).astype(np.int8)
    millis = np.sort(rng.integers(0, 86_400_000, len(ratings))).astype(np.int32)  # the day's moments, in order
    order = rng.permutation(len(ratings)).astype(np.int32)  # a product's reviews come at any time of the day
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    names = [f"{user['firstName']} {user['lastName']}" for user in users]
    for product, end, count in zip(products, np.cumsum(counts).tolist(), counts.tolist()):
        reviews = slice(end - count, end)
        yield {**product, "reviews": [
            {"rating": rating, "comment": REVIEW_COMMENTS[rating][phrase], "date": _moment_text(midnight, moment),
             "reviewerName": names[reviewer], "reviewerEmail": users[reviewer]["email"]}
            for rating, phrase, moment, reviewer in zip(ratings[reviews].tolist(), phrases[reviews].tolist(),
                                                         millis[order[reviews]].tolist(), reviewers[reviews].tolist())
        ]}


# The parts a collection's JSON text is made in (json_array): a large day's snapshot is written as
# it is made, and a day of up to this much is one part, written at once.
JSON_PART_BYTES = 1 << 20


def json_array(records: Iterable[object], part_bytes: int = JSON_PART_BYTES) -> Iterator[bytes]:
    """The compact JSON text of an array of `records` (json.dumps(list(records), separators=(",", ":"))
    byte for byte), in parts of about `part_bytes` made as the records come."""
    part, size = [b"["], 1
    for number, record in enumerate(records):
        text = (b"," if number else b"") + json.dumps(record, separators=(",", ":")).encode()
        part.append(text)
        size += len(text)
        if size >= part_bytes:
            yield b"".join(part)
            part, size = [], 0
    part.append(b"]")
    yield b"".join(part)


def _day_ids(day: date, count: int) -> list[int]:
    """Ids unique across days: the day's digits, then a 5-digit number (2024011500001 is the day's first)."""
    return [int(f"{day:%Y%m%d}{n:05d}") for n in range(1, count + 1)]


def generate_posts(seed: int, day: date, users: list[dict]) -> list[dict]:
    """The day's DummyJSON-shaped posts (id, title, body, tags, reactions{likes, dislikes}, views, userId)."""
    rng = _rng(seed, 7, day.toordinal())
    count = int(rng.poisson(POSTS_PER_DAY))
    activity = 1 / np.arange(1, len(users) + 1)
    authors = rng.choice(len(users), size=count, p=activity / activity.sum())
    views = np.rint(rng.lognormal(5.5, 0.8, count)).astype(int)
    likes = rng.binomial(views, rng.beta(2, 5, count))
    dislikes = rng.binomial(views, 0.03)
    tag_counts = rng.integers(1, 4, count)
    posts = []
    for k, post_id in enumerate(_day_ids(day, count)):
        tags = [POST_TAGS[t] for t in rng.choice(len(POST_TAGS), tag_counts[k], replace=False)]
        posts.append({
            "id": post_id,
            "title": f"On {tags[0]}, {day:%B %d}",
            "body": f"Thoughts on {' and '.join(tags)} from a shopper.",
            "tags": tags,
            "reactions": {"likes": int(likes[k]), "dislikes": int(dislikes[k])},
            "views": int(views[k]),
            "userId": users[authors[k]]["id"],
        })
    return posts


def generate_comments(seed: int, day: date, posts: list[dict], users: list[dict]) -> list[dict]:
    """The day's DummyJSON-shaped comments (id, body, postId, likes, user{id, username, fullName}) on
    the day's posts, more on the more viewed ones."""
    rng = _rng(seed, 8, day.toordinal())
    if not posts:
        return []
    views = np.array([p["views"] for p in posts], dtype=np.float64)
    count = int(rng.poisson(COMMENTS_PER_POST * len(posts)))
    on = rng.choice(len(posts), size=count, p=views / views.sum())
    authors = rng.integers(0, len(users), count)
    likes = rng.poisson(3, count)
    texts = rng.integers(0, len(COMMENT_TEXTS), count)
    comments = []
    for k, comment_id in enumerate(_day_ids(day, count)):
        user = users[authors[k]]
        comments.append({
            "id": comment_id,
            "body": COMMENT_TEXTS[texts[k]],
            "postId": posts[on[k]]["id"],
            "likes": int(likes[k]),
            "user": {"id": user["id"], "username": user["username"], "fullName": f"{user['firstName']} {user['lastName']}"},
        })
    return comments
