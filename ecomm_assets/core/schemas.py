"""Table contracts: the Arrow schema every partition of a lake table must have, and its
enforcement when a partition is written."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import pyarrow as pa

# Money is exact: int64-backed decimal, rounded to the cent on the way in.
MONEY = pa.decimal128(18, 2)
# A unit price keeps a tenth of a cent and more (0.125 stays 0.1250): line totals are computed from
# the exact price, so the unit price's scale only affects how it is stored.
UNIT_PRICE = pa.decimal128(18, 4)
PERCENT = pa.decimal128(9, 2)
UTC_TS = pa.timestamp("us", tz="UTC")

# A column's description is its field's metadata {"description": ...}: it travels into every Parquet
# file written with the contract, and onto the table's asset page (dagster/column_schema). A column
# holding personal data also says which attribute it holds and that attribute's policy.
DESCRIPTION = "description"
PERSONAL = "personal"  # the metadata key of a column's personal attribute
POLICY = "personal_policy"  # the metadata key of that attribute's policy


class Policy(StrEnum):
    """What extraction does to a personal value before anything is written (core/privacy.py applies it)."""

    KEEP = "keep"  # not personal, or needed as it is
    DROP = "drop"  # never written: a record loses the field, a column is always null
    HASH = "hash"  # keyed HMAC-SHA256, hex: equal values stay equal across tables and days
    MASK_EMAIL = "mask_email"  # the first character and the domain: e***@example.com
    MASK_PHONE = "mask_phone"  # the last 4 digits: ***4567
    MASK_NETWORK = "mask_network"  # an IP address's network: /24 (IPv4) or /48 (IPv6)
    INITIALS = "initials"  # a name's initials: E. J.

    @property
    def note(self) -> str:
        """What the column description says about the policy (empty for KEEP)."""
        return POLICY_NOTES[self]


POLICY_NOTES = {
    Policy.KEEP: "",
    Policy.DROP: "Personal data: dropped at extraction (always null).",
    Policy.HASH: "Personal data: hashed (HMAC-SHA256, hex; case and surrounding spaces ignored).",
    Policy.MASK_EMAIL: "Personal data: masked (first character and domain).",
    Policy.MASK_PHONE: "Personal data: masked (last 4 digits).",
    Policy.MASK_NETWORK: "Personal data: masked (the IP address's /24 or /48 network).",
    Policy.INITIALS: "Personal data: masked (initials).",
}


@dataclass(frozen=True)
class Personal:
    """A personal attribute: its policy, declared once here, applies to every column that holds it
    (`described(..., personal=...)`) and to every source field that carries it (core/privacy.py)."""

    name: str
    policy: Policy


# Personal attributes. The README's "Personal data" table says why each policy (a test holds the
# table's policies equal to these).
CUSTOMER_NAME = Personal("customer name", Policy.INITIALS)  # initials compose: "Emily Johnson" -> "E. J."
CUSTOMER_EMAIL = Personal("customer email", Policy.HASH)  # the customer key across sources: joins still work
CUSTOMER_PHONE = Personal("customer phone", Policy.MASK_PHONE)
CUSTOMER_STREET = Personal("customer street address", Policy.HASH)  # city, state, country stay
NETWORK_ADDRESS = Personal("IP address", Policy.MASK_NETWORK)
USER_NAME = Personal("user name", Policy.HASH)  # a pseudonym: one user's posts, comments and profile still group
QUASI_IDENTIFIER = Personal("quasi-identifier", Policy.DROP)  # birth date, coordinates, employer...
HEALTH = Personal("health data", Policy.DROP)
SECRET = Personal("secret", Policy.DROP)  # credentials, government ids, card and bank numbers, wallets
ATTRIBUTES = (CUSTOMER_NAME, CUSTOMER_EMAIL, CUSTOMER_PHONE, CUSTOMER_STREET, NETWORK_ADDRESS, USER_NAME, QUASI_IDENTIFIER,
              HEALTH, SECRET)


def described(name: str, type_: pa.DataType, description: str, *, nullable: bool = True,
              personal: Personal | None = None) -> pa.Field:
    """A contract column with its description (one short sentence, with units) and, when it holds
    personal data, the attribute (its policy applies at extraction and is shown with the description)."""
    metadata = {DESCRIPTION: description}
    if personal is not None:
        metadata |= {PERSONAL: personal.name, POLICY: personal.policy.value}
    return pa.field(name, type_, nullable=nullable, metadata=metadata)


def column_policy(field: pa.Field) -> Policy:
    """The personal-data policy a contract column declares (KEEP when none)."""
    return Policy((field.metadata or {}).get(POLICY.encode(), Policy.KEEP.encode()).decode())


_ID = "trimmed; a number with an integral value is written in plain digits"
_SOURCE = "The raw file the order came from: synthetic, dummyjson, or landing-<landed at>-<file id>."
_ORIGIN = (
    "Where the row comes from: 'snapshot' (the day's collection snapshot) or 'orders' "
    "(an id seen only in the day's orders, described by its latest order line)."
)
_SNAPSHOT_DATE = "The UTC day of the snapshot, or of the orders the id was seen in (the partition)."

ORDER_LINES = pa.schema(
    [
        described("order_id", pa.string(), f"The order's id ({_ID}); unique per UTC day.", nullable=False),
        described("line_number", pa.int32(), "The line's 1-based position in the order's products.", nullable=False),
        described("order_ts", UTC_TS, "When the order was placed (its order_date), in UTC.", nullable=False),
        described("order_date", pa.date32(), "The UTC day of order_ts (the partition).", nullable=False),
        described("customer_id", pa.string(), f"The customer's id ({_ID})."),
        described("customer_name", pa.string(), "The customer's name, as the order gives it.",
                  personal=CUSTOMER_NAME),
        described("customer_email", pa.string(), "The customer's email address, as the order gives it.",
                  personal=CUSTOMER_EMAIL),
        described("customer_address", pa.string(), "The customer's street address, as the order gives it.",
                  personal=CUSTOMER_STREET),
        described("customer_city", pa.string(), "The customer's city (its own, else its address's)."),
        described("customer_state", pa.string(), "The customer's state (its own, else its address's)."),
        described("customer_country", pa.string(), "The customer's country (its own, else its address's)."),
        described("product_id", pa.string(), f"The product's id ({_ID}).", nullable=False),
        described("product_name", pa.string(), "The product's name, as the order line gives it."),
        described("category", pa.string(), "The product's category, as the order line gives it."),
        described("brand", pa.string(), "The product's brand, as the order line gives it."),
        described("unit_price", UNIT_PRICE, "Price of one unit, in currency units, to 4 decimals.", nullable=False),
        described("quantity", pa.int32(), "Units bought on the line, from 1 to 2^31 - 1.", nullable=False),
        described("line_total", MONEY,
                  "unit_price x quantity, in currency units, rounded once to the cent (half away from zero).",
                  nullable=False),
        described("discount_percent", PERCENT,
                  "The line's discount as the source gives it, in percent (12.50 = 12.5 %), rounded to 2 decimals."),
        described("order_total", MONEY,
                  "The order's total as the source reports it (on each line), in currency units, rounded to the cent."),
        described("year", pa.int16(), "Year of order_ts, in UTC.", nullable=False),
        described("month", pa.int8(), "Month of order_ts, in UTC: 1-12.", nullable=False),
        described("day", pa.int8(), "Day of the month of order_ts, in UTC: 1-31.", nullable=False),
        described("hour", pa.int8(), "Hour of order_ts, in UTC: 0-23.", nullable=False),
        described("day_of_week", pa.int8(), "Day of the week of order_ts, in UTC: 0 = Monday to 6 = Sunday.",
                  nullable=False),
        described("source", pa.string(), _SOURCE, nullable=False),
    ]
)

ORDERS = pa.schema(
    [
        described("order_id", pa.string(), "The order's id; unique per UTC day.", nullable=False),
        described("order_ts", UTC_TS, "When the order was placed, in UTC.", nullable=False),
        described("order_date", pa.date32(), "The UTC day of order_ts (the partition).", nullable=False),
        described("customer_id", pa.string(), "The customer's id, from the order's lines."),
        described("customer_name", pa.string(), "The customer's name, from the order's lines.", personal=CUSTOMER_NAME),
        described("customer_email", pa.string(), "The customer's email address, from the order's lines.",
                  personal=CUSTOMER_EMAIL),
        described("customer_country", pa.string(), "The customer's country, from the order's lines."),
        described("items", pa.int32(), "Number of lines (products) in the order.", nullable=False),
        described("units", pa.int64(), "Units bought: the sum of the lines' quantities.", nullable=False),
        described("items_total", MONEY, "Sum of the lines' line_total, in currency units.", nullable=False),
        described("reported_total", MONEY,
                  "The order's total as the source reports it, in currency units, to the cent; null if absent."),
        described("total_difference", MONEY,
                  "reported_total - items_total, in currency units; null when no total is reported."),
        described("reconciles", pa.bool_(),
                  "Whether reported_total equals items_total; null when no total is reported."),
        described("source", pa.string(), _SOURCE, nullable=False),
    ]
)

DIM_PRODUCTS = pa.schema(
    [
        described("product_id", pa.string(), "The product's id; unique per snapshot_date.", nullable=False),
        described("name", pa.string(), "The product's name (its title in the day's snapshot, or its latest order line's name)."),
        described("category", pa.string(), "The product's category."),
        described("brand", pa.string(), "The product's brand."),
        described("price", MONEY,
                  "Price of one unit (the snapshot's, or the latest order line's), in currency units, to the cent."),
        described("discount_percent", PERCENT, "The product's discount, in percent (12.50 = 12.5 %)."),
        described("rating", pa.float64(), "The snapshot's average customer rating, 0-5; null for origin 'orders'."),
        described("stock", pa.int64(), "Units in stock in the snapshot; null for origin 'orders'."),
        described("origin", pa.string(), _ORIGIN, nullable=False),
        described("snapshot_date", pa.date32(), _SNAPSHOT_DATE, nullable=False),
    ]
)

DIM_CUSTOMERS = pa.schema(
    [
        described("customer_id", pa.string(), "The customer's id; unique per snapshot_date.", nullable=False),
        described("name", pa.string(), "The customer's full name (first and last name, or the latest order line's).",
                  personal=CUSTOMER_NAME),
        described("email", pa.string(), "The customer's email address.", personal=CUSTOMER_EMAIL),
        described("address", pa.string(), "The customer's street address.", personal=CUSTOMER_STREET),
        described("city", pa.string(), "The customer's city."),
        described("state", pa.string(), "The customer's state."),
        described("postal_code", pa.string(), "The customer's postal code; null for origin 'orders'."),
        described("country", pa.string(), "The customer's country."),
        described("origin", pa.string(), _ORIGIN, nullable=False),
        described("snapshot_date", pa.date32(), _SNAPSHOT_DATE, nullable=False),
    ]
)

CONTRACTS: dict[str, pa.Schema] = {
    "order_lines": ORDER_LINES,
    "orders": ORDERS,
    "dim_products": DIM_PRODUCTS,
    "dim_customers": DIM_CUSTOMERS,
}

_SNAPSHOT_DAY = ("The UTC day of the snapshot holding the record (the partition). DummyJSON posts and comments "
                 "carry no date of their own: the synthetic shop's are written that day.")
_COUNT = "a whole number >= 0 as the source gives it; null when absent"

# Engagement tables (core/engagement.py builds them from the day's collection snapshots).
ENGAGEMENT: dict[str, pa.Schema] = {
    "product_reviews": pa.schema(
        [
            described("product_id", pa.string(), "The reviewed product's id; with review_number, unique per snapshot_date.",
                      nullable=False),
            described("review_number", pa.int32(), "The review's 1-based position in the product's reviews in the snapshot.",
                      nullable=False),
            described("rating", pa.int8(), "The review's rating: a whole number from 1 to 5.", nullable=False),
            described("comment", pa.string(), "The review's text."),
            described("review_ts", UTC_TS,
                      "When the review was written (its date), in UTC; DummyJSON's may lie outside the snapshot's day.",
                      nullable=False),
            described("reviewer_name", pa.string(), "The reviewer's name.", personal=CUSTOMER_NAME),
            described("reviewer_email", pa.string(), "The reviewer's email address.", personal=CUSTOMER_EMAIL),
            described("category", pa.string(), "The product's category in the snapshot."),
            described("snapshot_date", pa.date32(), "The UTC day of the products snapshot holding the review (the partition).",
                      nullable=False),
        ]
    ),
    "posts": pa.schema(
        [
            described("post_id", pa.string(), "The post's id; unique per snapshot_date.", nullable=False),
            described("user_id", pa.string(), "The author's user id (dim_customers.customer_id).", nullable=False),
            described("title", pa.string(), "The post's title."),
            described("body", pa.string(), "The post's text."),
            # 'element': the name Parquet gives a list's values, so the files read back with the contract's type.
            described("tags", pa.list_(pa.field("element", pa.string())),
                      "The post's tags, in the source's order (Athena: array<string>)."),
            described("likes", pa.int64(), f"Likes the post received: {_COUNT}."),
            described("dislikes", pa.int64(), f"Dislikes the post received: {_COUNT}."),
            described("views", pa.int64(), f"Times the post was viewed: {_COUNT}."),
            described("snapshot_date", pa.date32(), _SNAPSHOT_DAY, nullable=False),
        ]
    ),
    "comments": pa.schema(
        [
            described("comment_id", pa.string(), "The comment's id; unique per snapshot_date.", nullable=False),
            described("post_id", pa.string(), "The id of the post commented on.", nullable=False),
            described("user_id", pa.string(), "The commenter's user id (dim_customers.customer_id).", nullable=False),
            described("username", pa.string(), "The commenter's username.", personal=USER_NAME),
            described("full_name", pa.string(), "The commenter's full name.", personal=CUSTOMER_NAME),
            described("body", pa.string(), "The comment's text."),
            described("likes", pa.int64(), f"Likes the comment received: {_COUNT}."),
            described("snapshot_date", pa.date32(), _SNAPSHOT_DAY, nullable=False),
        ]
    ),
}

_DAY = "The UTC day of the orders (the partition)."

TOP_CUSTOMERS = 20  # rows of top_customers per day

# The analytics tables (core/analytics.py computes them).
ANALYTICS: dict[str, pa.Schema] = {
    "sales_by_category": pa.schema(
        [
            described("order_date", pa.date32(), _DAY),
            described("category", pa.string(), "The product category (null for lines without one)."),
            described("orders", pa.int64(), "Orders with at least one line in the category."),
            described("units", pa.int64(), "Units sold in the category."),
            described("revenue", MONEY, "Sum of the category's line totals, in currency units."),
            described("revenue_share", pa.float64(),
                      "The category's fraction (0..1) of the day's revenue; null when the day's revenue is 0."),
        ]
    ),
    "product_performance": pa.schema(
        [
            described("order_date", pa.date32(), _DAY),
            described("product_id", pa.string(), "The product's id."),
            described("product_name", pa.string(), "The product's name, from one of its order lines."),
            described("category", pa.string(), "The product's category, from one of its order lines."),
            described("orders", pa.int64(), "Orders with at least one line of the product."),
            described("units", pa.int64(), "Units of the product sold."),
            described("revenue", MONEY, "Sum of the product's line totals, in currency units."),
            described("average_unit_price", MONEY,
                      "revenue / units, in currency units, rounded to the cent (half away from zero)."),
        ]
    ),
    "top_customers": pa.schema(
        [
            described("order_date", pa.date32(), _DAY),
            described("rank", pa.int32(),
                      f"The customer's place by the day's revenue, 1 (highest) to {TOP_CUSTOMERS}; "
                      "ties go to the lower customer_id."),
            described("customer_id", pa.string(), "The customer's id."),
            described("customer_name", pa.string(), "The customer's name, from one of the customer's order lines.",
                      personal=CUSTOMER_NAME),
            described("orders", pa.int64(), "The customer's orders of the day."),
            described("units", pa.int64(), "Units the customer bought."),
            described("revenue", MONEY, "Sum of the customer's line totals, in currency units."),
        ]
    ),
    "daily_order_summary": pa.schema(
        [
            described("order_date", pa.date32(), "The UTC day (the partition); a day without orders has zeros."),
            described("orders", pa.int64(), "Orders of the day."),
            described("customers", pa.int64(), "Distinct customers (by customer_id) who ordered."),
            described("units", pa.int64(), "Units sold."),
            described("revenue", MONEY, "Sum of the orders' items_total (their line totals), in currency units."),
            described("average_order_value", MONEY,
                      "revenue / orders, in currency units, rounded to the cent (half away from zero); "
                      "0 without orders."),
            described("orders_not_reconciling", pa.int64(),
                      "Orders whose reported total differs from their items_total."),
            described("share_not_reconciling", pa.float64(),
                      "orders_not_reconciling / orders, a fraction 0..1; 0 without orders."),
        ]
    ),
}

_ENGAGEMENT_DAY = "The UTC day (the partition): of the snapshot, and of the orders joined to it."
_RATINGS = "Ratings of the day's reviews"

# The engagement analytics (core/analytics.py computes them too).
ENGAGEMENT_ANALYTICS: dict[str, pa.Schema] = {
    "rating_distribution": pa.schema(
        [
            described("snapshot_date", pa.date32(), _ENGAGEMENT_DAY),
            described("level", pa.string(), "'product' (one row per reviewed product) or 'category' (one per category)."),
            described("product_id", pa.string(), "The product's id; null on a category row."),
            described("category", pa.string(), "The category (of the product, on a product row)."),
            described("reviews", pa.int64(), "Reviews counted."),
            *(described(f"rating_{n}", pa.int64(), f"Reviews rated {n}.") for n in range(1, 6)),
            described("average_rating", pa.float64(), f"{_RATINGS}: their mean, 1-5."),
        ]
    ),
    "rating_vs_sales": pa.schema(
        [
            described("snapshot_date", pa.date32(), _ENGAGEMENT_DAY),
            described("product_id", pa.string(), "The product's id: every product reviewed or sold that day."),
            described("category", pa.string(), "The product's category (its reviews', else its order lines')."),
            described("reviews", pa.int64(), "The product's reviews in the day's snapshot (0 when none)."),
            described("average_rating", pa.float64(), f"{_RATINGS} for the product: their mean, 1-5; null without reviews."),
            described("units", pa.int64(), "Units of the product sold that day (0 when none)."),
            described("revenue", MONEY, "Sum of the product's line totals that day, in currency units (0 when none)."),
        ]
    ),
    "engaged_users": pa.schema(
        [
            described("snapshot_date", pa.date32(), _ENGAGEMENT_DAY),
            described("user_id", pa.string(), "The user's id (dim_customers.customer_id)."),
            described("posts", pa.int64(), "Posts the user wrote."),
            described("comments", pa.int64(), "Comments the user wrote."),
            described("likes_received", pa.int64(), "Likes on the user's posts and comments."),
            described("dislikes_received", pa.int64(), "Dislikes on the user's posts."),
            described("views_received", pa.int64(), "Views of the user's posts."),
            described("comments_received", pa.int64(), "Comments others wrote on the user's posts."),
            described("rank", pa.int32(),
                      "The user's place by posts + comments + likes received, 1 (most engaged) first; ties go to the lower user_id."),
        ]
    ),
    "tag_engagement": pa.schema(
        [
            described("snapshot_date", pa.date32(), _ENGAGEMENT_DAY),
            described("tag", pa.string(), "The tag."),
            described("posts", pa.int64(), "Posts carrying the tag."),
            described("views", pa.int64(), "Views of those posts."),
            described("likes", pa.int64(), "Likes of those posts."),
            described("dislikes", pa.int64(), "Dislikes of those posts."),
            described("comments", pa.int64(), "Comments on those posts."),
        ]
    ),
}

_LANDED_AS = "as the purchase log gives it"
_PURCHASE_SOURCE = "The raw file the event came from: landing-<landed at>-<file id>."
_MONEY_TEXT = "in currency units, to the cent (the log writes 52207 or 58573.0)"

PURCHASE_EVENTS = pa.schema(
    [
        described("user_id", pa.string(), f"The buyer's id (USI_30), {_LANDED_AS}; never empty.", nullable=False),
        described("session_id", pa.string(), f"The browsing session's id, {_LANDED_AS}; never empty.", nullable=False),
        described("category", pa.string(), f"The product category, {_LANDED_AS}."),
        described("brand", pa.string(), f"The product brand, {_LANDED_AS}."),
        described("cost_price", MONEY, f"What the product cost the shop, {_MONEY_TEXT}; >= 0.", nullable=False),
        described("selling_price", MONEY, f"The product's selling price, {_MONEY_TEXT}; >= 0.", nullable=False),
        described("discount", MONEY, f"The discount given on the purchase, {_MONEY_TEXT}; >= 0.", nullable=False),
        described("revenue", MONEY, "selling_price - discount: what the buyer paid, in currency units.", nullable=False),
        described("margin", MONEY, "selling_price - cost_price - discount, in currency units (negative: a loss).",
                  nullable=False),
        described("event_ts", UTC_TS, "When the purchase happened, in UTC (the log's zone-less timestamp read in "
                  "ECOMM_PURCHASES_TIMEZONE when it was ingested).", nullable=False),
        described("event_date", pa.date32(), "The UTC day of event_ts (the partition).", nullable=False),
        described("source_timestamp", pa.string(), "The timestamp as the log wrote it (no zone).", nullable=False),
        described("referrer", pa.string(), f"Where the buyer came from (google, direct, ...), {_LANDED_AS}."),
        described("device_type", pa.string(), f"mobile, desktop or tablet, {_LANDED_AS}."),
        described("os", pa.string(), f"The device's operating system, {_LANDED_AS}."),
        described("browser", pa.string(), f"The browser, {_LANDED_AS}."),
        described("ip_address", pa.string(), "The buyer's IP address.", personal=NETWORK_ADDRESS),
        described("payment_method", pa.string(), f"How the buyer paid, {_LANDED_AS}."),
        described("source", pa.string(), _PURCHASE_SOURCE, nullable=False),
    ]
)

DIM_USER_PROFILES = pa.schema(
    [
        described("user_id", pa.string(), "The user's id (USI_30); unique.", nullable=False),
        described("age", pa.int16(), "Age in years, 0-130."),
        described("age_band", pa.string(), "under 18, 18-24, 25-34, 35-44, 45-54, 55-64 or 65+; null without an age."),
        described("gender", pa.string(), "Gender, as the profile file gives it."),
        described("education", pa.string(), "Education, as the profile file gives it."),
        described("marital_status", pa.string(), "Marital status, as the profile file gives it."),
        described("occupation", pa.string(), "Occupation, as the profile file gives it."),
        described("interests", pa.string(), "Interests as the file lists them, comma-separated text (sports, music)."),
        described("email", pa.string(), "Email address.", personal=CUSTOMER_EMAIL),
        described("phone_number", pa.string(), "Phone number.", personal=CUSTOMER_PHONE),
        described("city", pa.string(), "City, as the profile file gives it."),
        described("language", pa.string(), "Preferred language, as the profile file gives it."),
        described("landed_at", UTC_TS, "When the profile file this row comes from landed, in UTC: the newest wins.",
                  nullable=False),
        described("source", pa.string(), "The raw file the profile came from: landing-<landed at>-<file id>.",
                  nullable=False),
    ]
)

PURCHASES: dict[str, pa.Schema] = {"purchase_events": PURCHASE_EVENTS}

_PURCHASE_DAY = "The UTC day of the purchases (the partition)."
PURCHASE_DIMENSIONS = ("category", "brand", "device_type", "os", "browser", "referrer", "payment_method",
                       "age_band", "occupation", "city")
PURCHASE_ANALYTICS: dict[str, pa.Schema] = {
    "purchase_breakdown": pa.schema(
        [
            described("event_date", pa.date32(), _PURCHASE_DAY),
            described("dimension", pa.string(), f"What the row breaks down by: one of {', '.join(PURCHASE_DIMENSIONS)} "
                      "(the last three from dim_user_profiles, as it was when the day was computed)."),
            described("value", pa.string(), "The dimension's value; null: not given (or, for a profile dimension, "
                      "the user has no profile)."),
            described("purchases", pa.int64(), "Purchase events."),
            described("sessions", pa.int64(), "Distinct sessions with a purchase."),
            described("users", pa.int64(), "Distinct users who bought."),
            described("revenue", MONEY, "Sum of revenue (selling_price - discount), in currency units."),
            described("margin", MONEY, "Sum of margin (selling_price - cost_price - discount), in currency units."),
        ]
    ),
    "purchase_sessions_daily": pa.schema(
        [
            described("event_date", pa.date32(), "The UTC day (the partition); a day without purchases has zeros."),
            described("purchases", pa.int64(), "Purchase events of the day."),
            described("sessions", pa.int64(), "Distinct sessions with a purchase that day."),
            described("users", pa.int64(), "Distinct users who bought that day."),
            described("purchases_per_session", pa.float64(), "purchases / sessions; 0 without sessions."),
            described("revenue", MONEY, "Sum of revenue (selling_price - discount), in currency units."),
            described("margin", MONEY, "Sum of margin, in currency units."),
            described("average_purchase_value", MONEY,
                      "revenue / purchases, rounded to the cent (half away from zero); 0 without purchases."),
        ]
    ),
}

# Every day-partitioned table of the lake: what the SQL catalog registers and the checks check.
LAKE_TABLES: dict[str, pa.Schema] = {**CONTRACTS, **ANALYTICS, **ENGAGEMENT, **ENGAGEMENT_ANALYTICS, **PURCHASES,
                                     **PURCHASE_ANALYTICS}
# Tables of one file, not partitioned (the catalog registers them without partitions).
UNPARTITIONED_TABLES: dict[str, pa.Schema] = {"dim_user_profiles": DIM_USER_PROFILES}

# landed_files: one row per landed file version, written by the ingest (not a daily lake table).
LANDED_FILES = pa.schema(
    [
        described("file", pa.string(), "The landed file's name, relative to its landing folder (landing/orders/, ...).",
                  nullable=False),
        described("file_id", pa.string(),
                  "The content's identity: the first 16 hex digits of the SHA-256 of the file's bytes.",
                  nullable=False),
        described("landed_at", UTC_TS, "When the file landed (S3 LastModified, or the file's mtime), in UTC.",
                  nullable=False),
        described("bytes", pa.int64(), "Size of the file as landed (compressed, for .gz), in bytes.", nullable=False),
        described("records_read", pa.int64(), "Records read from the file: routed + quarantined.", nullable=False),
        described("records_routed", pa.int64(), "Records written to raw day files (raw/orders/dt=D/).",
                  nullable=False),
        described("records_quarantined", pa.int64(),
                  "Records quarantined, with reasons, in quarantine/landing/<file id>/.", nullable=False),
        described("file_error", pa.string(),
                  "Why the whole file was quarantined (unreadable, or its days not writable); null otherwise."),
        # JSON, not a map: Glue has no map type here.
        described("days", pa.string(), 'Records routed per UTC day, as a JSON object {"YYYY-MM-DD": records}.',
                  nullable=False),
        described("ingested_at", UTC_TS, "When the ingest recorded the file, in UTC.", nullable=False),
        described("run_id", pa.string(), "The id of the Dagster run that ingested the file.", nullable=False),
    ]
)


_ESTIMATED_ON = "The UTC day the estimate was made (the partition)."
# The usage asset's tables: what the steps did, per day, and the monthly bill it comes to.
USAGE_TABLES: dict[str, pa.Schema] = {
    "usage_by_asset": pa.schema(
        [
            described("estimated_on", pa.date32(), _ESTIMATED_ON, nullable=False),
            described("asset", pa.string(), "The asset whose materializations were measured.", nullable=False),
            described("figure", pa.string(),
                      "What was counted: <area>/objects_written, <area>/bytes_written, <area>/objects_read, "
                      "<area>/bytes_read (areas: landing, raw, processed, quarantine, reports, staging, locks), "
                      "s3/<put|copy|list|get|head|delete> (requests), glue/<operation> or glue/calls.",
                      nullable=False),
            described("per_day", pa.float64(),
                      "The figure for one day: its sum over the newest materializations / the days they cover "
                      "(an unpartitioned asset: per run, one run a day).", nullable=False),
            described("days_measured", pa.int64(),
                      "The days the measured materializations cover (an unpartitioned asset: the UTC days they "
                      "happened on).", nullable=False),
        ]
    ),
    "usage_estimate": pa.schema(
        [
            described("estimated_on", pa.date32(), _ESTIMATED_ON, nullable=False),
            described("service", pa.string(), "S3, Glue or Athena.", nullable=False),
            described("item", pa.string(), "What is billed: storage, a request class, or an sql/ query.", nullable=False),
            described("quantity", pa.float64(), "How much of it a month, in `unit`.", nullable=False),
            described("unit", pa.string(), "GB-month, requests, or TB scanned.", nullable=False),
            described("unit_price", pa.float64(), "USD per unit, from the price table.", nullable=False),
            described("monthly_usd", pa.float64(), "quantity x unit_price, less what the free tier covers, in USD.",
                      nullable=False),
            described("basis", pa.string(), "What the quantity assumes.", nullable=False),
            described("prices_as_of", pa.date32(), "The day the price table's prices were taken.", nullable=False),
            described("orders_per_day", pa.int64(), "The configured volume (ECOMM_ORDERS_PER_DAY) when estimated.",
                      nullable=False),
        ]
    ),
}


class MissingDescription(ValueError):
    """A contract column without a description."""


def column_descriptions(schema: pa.Schema) -> dict[str, str]:
    """Each column's description (name -> text), from its field's metadata, followed by what its
    personal-data policy did to it (POLICY_NOTES). MissingDescription,
    naming the column, when one has none or an empty one."""
    descriptions = {}
    for field in schema:
        text = (field.metadata or {}).get(DESCRIPTION.encode(), b"").decode().strip()
        if not text:
            raise MissingDescription(f"column {field.name} has no description")
        descriptions[field.name] = " ".join(filter(None, [text, column_policy(field).note]))
    return descriptions


def schema_differences(actual: pa.Schema, expected: pa.Schema) -> list[str]:
    """Human-readable differences between a table's schema and its contract (empty when equal):
    names, types, nullability and order of the columns."""
    problems = []
    actual_fields = {f.name: f for f in actual}
    for field in expected:
        got = actual_fields.pop(field.name, None)
        if got is None:
            problems.append(f"missing column {field.name} ({field.type})")
        elif got.type != field.type:
            problems.append(f"column {field.name} is {got.type}, contract says {field.type}")
        elif got.nullable != field.nullable:
            problems.append(f"column {field.name} is {_nullability(got)}, contract says {_nullability(field)}")
    problems.extend(f"unexpected column {name} ({f.type})" for name, f in actual_fields.items())
    if not problems and actual.names != expected.names:
        problems.append(f"column order {actual.names} differs from contract {expected.names}")
    return problems


def _nullability(field: pa.Field) -> str:
    return "nullable" if field.nullable else "not nullable"


class ContractViolation(ValueError):
    """Data that cannot be written as its table's contract says: named by table, day and column."""


def conform(data: pa.Table | pa.RecordBatch, contract: pa.Schema, where: str) -> pa.Table | pa.RecordBatch:
    """`data` with exactly the contract's schema (column order, types, nullability), so that every
    partition of a table, empty or not, reads back with one schema. DuckDB and pyarrow results are
    all-nullable: a null in a column the contract says is never null, a missing or extra column, or
    a value that does not fit the contract's type raises ContractViolation naming `where`
    (table and day) and the column."""
    missing = [name for name in contract.names if name not in data.schema.names]
    unexpected = [name for name in data.schema.names if name not in contract.names]
    if missing or unexpected:
        raise ContractViolation(f"{where}: missing columns {missing}, unexpected columns {unexpected}")
    with_nulls = [f.name for f in contract if not f.nullable and data.column(f.name).null_count]
    if with_nulls:
        counts = ", ".join(f"{name} ({data.column(name).null_count} nulls)" for name in with_nulls)
        raise ContractViolation(f"{where}: null values in columns the contract says are never null: {counts}")
    if data.schema.equals(contract, check_metadata=True):
        return data  # already cast to the contract (a builder's result, split into days): nothing to convert
    columns = []
    for field in contract:
        try:
            columns.append(data.column(field.name).cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise ContractViolation(f"{where}: column {field.name} does not fit {field.type}: {error}") from error
    return type(data).from_arrays(columns, schema=contract)
