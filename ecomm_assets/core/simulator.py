"""A live feed of the synthetic shop: the files producers would drop in the landing zones, one set
per tick of a simulated clock (every N minutes, on a grid aligned to midnight UTC).

A tick at time T covers the orders dated in [T - N minutes, T). Each order of the shop is sent
once, in its own tick, unless it is late (a share `late_rate` of the orders, sent 1 hour to 3 days
later, so dated that much before the tick that carries it); a share `duplicate_rate` of the orders
is sent once more, 1 to 6 ticks' worth of time (at least one tick) after the first time, either
unchanged or updated (one more unit of its first line, its total with it). Everything is a pure
function of (tick, interval, seed, rates, volume, first day): running a tick again produces the same
file names and bytes, so landing them again changes nothing.

Feeds are producers: a function from a `Tick` to the `Drop`s (files) of that tick. `PRODUCERS`
lists them; `tick_drops` asks each, and `drop` writes what a tick produced into a lake, each file in
one atomic write (a rename from the lake's hidden staging folder, or one S3 PUT), so the ingest
never sees half a file. A new feed (another landing zone) is one more entry in `PRODUCERS`.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecomm_assets.core import synthetic
from ecomm_assets.core.layout import (
    ORDERS_FEED,
    PURCHASES_FEED,
    SIMULATED_PROFILES_NAME,
    USER_PROFILES_FEED,
    simulated_orders_name,
    simulated_purchases_name,
)
from ecomm_assets.core.purchase_log import purchase_log_csv, user_profiles_csv
from ecomm_assets.core.purchases import TIMESTAMP_FORMAT
from ecomm_assets.core.storage import LakeStore

DAY_MINUTES = 24 * 60
# At most this many orders a day (orders per tick x ticks a day): a day's plan is held in memory.
MAX_ORDERS_PER_DAY = 1_000_000
# A late order arrives this long after its time (log-uniform: mostly hours, sometimes days).
LATE_DELAY = (timedelta(hours=1), timedelta(days=3))
# A resent order comes again this long after it was first sent (log-uniform, at least one tick).
RESEND_DELAY = (timedelta(minutes=10), timedelta(hours=6))
UPDATED_SHARE = 0.5  # of resent orders: an updated version; the others are sent again unchanged
ORDERS_STREAM = 11  # the feed's random stream of the shop (the daily generator's is synthetic.ORDERS_STREAM)
DECISIONS_STREAM = 12  # which orders are late or resent, and by how much
ORDER_ID_PREFIX = "SIM"  # never the daily generator's: the feed's orders are other orders
FEED_NAME = "ecomm-assets simulator"


def every_problem(minutes: int) -> str | None:
    """Why an interval (minutes) cannot be the feed's, else None. Ticks fall on the same minutes
    every hour and every day, as a cron schedule can state them."""
    if 1 <= minutes <= DAY_MINUTES and DAY_MINUTES % minutes == 0 and (60 % minutes == 0 or minutes % 60 == 0):
        return None
    return ("must divide an hour (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60 minutes) or be whole hours "
            "dividing a day (120, 180, 240, 360, 480, 720 or 1440)")


def rate_problem(rate: float) -> str | None:
    if math.isfinite(rate) and 0 <= rate <= 1:
        return None
    return "must be a share of the orders, from 0 to 1 (0.05: 5 %)"


def volume_problem(every_minutes: int, orders_per_tick: int) -> str | None:
    if orders_per_tick < 0:
        return "orders per tick must not be negative"
    per_day = orders_per_tick * (DAY_MINUTES // every_minutes)
    if per_day > MAX_ORDERS_PER_DAY:
        return f"{orders_per_tick} orders per tick every {every_minutes} minutes is {per_day:,} a day, over {MAX_ORDERS_PER_DAY:,}"
    return None


def cron_schedule(every_minutes: int) -> str:
    """The cron schedule of the ticks (UTC): every N minutes, or every N hours on the hour."""
    if every_minutes < 60:
        return f"*/{every_minutes} * * * *"
    hours = every_minutes // 60
    return "0 * * * *" if hours == 1 else f"0 */{hours} * * *" if hours < 24 else "0 0 * * *"


@dataclass(frozen=True)
class LiveFeed:
    """What every tick of the feed shares: interval, volume, rates, seed, and the lake's first day
    (nothing is dated before it)."""

    every_minutes: int
    orders_per_tick: int
    late_rate: float
    duplicate_rate: float
    seed: int
    first_day: date
    # The zone the purchase logs' zone-less timestamps are written in: the ingest reads them in
    # ECOMM_PURCHASES_TIMEZONE, so the feed writes them in it too.
    purchases_timezone: str = "UTC"

    def __post_init__(self):
        problems = []
        if problem := every_problem(self.every_minutes):
            problems.append(f"interval {self.every_minutes}: {problem}")
        for name, rate in (("late rate", self.late_rate), ("duplicate rate", self.duplicate_rate)):
            if problem := rate_problem(rate):
                problems.append(f"{name} {rate}: {problem}")
        if not problems and (problem := volume_problem(self.every_minutes, self.orders_per_tick)):
            problems.append(problem)
        if self.seed < 0:
            problems.append("the seed must not be negative")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def every(self) -> timedelta:
        return timedelta(minutes=self.every_minutes)

    @property
    def orders_per_day(self) -> int:
        """The mean orders of a day: the shop's weekdays and hours spread them unevenly over ticks."""
        return self.orders_per_tick * (DAY_MINUTES // self.every_minutes)


def tick_at_or_before(moment: datetime, every: timedelta) -> datetime:
    """The last tick time not after `moment` (the grid starts at midnight UTC)."""
    seconds = int(moment.astimezone(UTC).timestamp())
    step = int(every.total_seconds())
    return datetime.fromtimestamp(seconds - seconds % step, UTC)


def tick_at_or_after(moment: datetime, every: timedelta) -> datetime:
    earlier = tick_at_or_before(moment, every)
    return earlier if earlier == moment else earlier + every


@dataclass(frozen=True)
class Tick:
    """One tick of the simulated clock: at `at` (UTC, on the feed's grid)."""

    at: datetime
    feed: LiveFeed

    def __post_init__(self):
        if self.at.tzinfo is None:
            raise ValueError(f"tick {self.at}: give a time zone (UTC)")
        if tick_at_or_before(self.at, self.feed.every) != self.at:
            raise ValueError(f"tick {self.at.isoformat()} is not on the {self.feed.every_minutes}-minute grid from midnight UTC")

    @property
    def index(self) -> int:
        """The tick's number since the epoch: it carries the orders of [at - every, at)."""
        return int(self.at.timestamp()) // int(self.feed.every.total_seconds())

    @property
    def stamp(self) -> str:
        return self.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Drop:
    """A file a tick drops: where it lands (relative to the lake root), where the ingest archives it,
    its bytes, and what it holds (records of `kind`, e.g. orders; late ones, resent ones; the days
    they are dated)."""

    kind: str
    path: str
    ingested_path: str
    data: bytes
    records: int
    late: int
    resent: int
    days: tuple[str, ...]


Producer = Callable[[Tick], list[Drop]]


@functools.lru_cache(maxsize=4)
def _catalog(seed: int) -> tuple[list[dict], list[dict]]:
    """The shop's products and users: those of the lake's synthetic snapshots for the same seed."""
    return synthetic.generate_products(seed), synthetic.generate_users(seed)


@dataclass(frozen=True)
class _DayPlan:
    """A day's orders and, for each, the tick it is first sent in, whether that is late, the tick it
    is sent again in (-1: never) and whether that version is updated."""

    orders: pa.Table
    send: np.ndarray
    late: np.ndarray
    resend: np.ndarray
    updated: np.ndarray


def _log_uniform(rng: np.random.Generator, bounds: tuple[timedelta, timedelta], n: int) -> np.ndarray:
    low, high = (math.log(bound.total_seconds()) for bound in bounds)
    return np.exp(rng.uniform(low, high, n))


@functools.lru_cache(maxsize=16)
def _day_plan(day: date, feed: LiveFeed) -> _DayPlan:
    products, users = _catalog(feed.seed)
    orders = synthetic.generate_orders(feed.seed, day, feed.orders_per_day, products, users,
                                       stream=ORDERS_STREAM, id_prefix=ORDER_ID_PREFIX)
    n = orders.num_rows
    seconds = pc.cast(pc.strptime(orders["order_date"], format="%Y-%m-%dT%H:%M:%SZ", unit="s"), pa.int64()).to_numpy()
    step = int(feed.every.total_seconds())
    rng = np.random.default_rng([feed.seed, DECISIONS_STREAM, day.toordinal()])
    # Every draw is made whatever the rates, so a higher rate only adds late or resent orders.
    late = rng.random(n) < feed.late_rate
    late_ticks = np.maximum(1, np.ceil(_log_uniform(rng, LATE_DELAY, n) / step)).astype(np.int64)
    resent = rng.random(n) < feed.duplicate_rate
    resend_ticks = np.maximum(1, np.ceil(_log_uniform(rng, RESEND_DELAY, n) / step)).astype(np.int64)
    updated = rng.random(n) < UPDATED_SHARE
    own = seconds // step + 1  # the tick at the end of the interval holding the order's time
    send = own + np.where(late, late_ticks, 0)
    return _DayPlan(orders, send, late, np.where(resent, send + resend_ticks, -1), resent & updated)


def _updated(order: dict) -> dict:
    """A later version of an order: one more unit of its first line, and its total with it."""
    first = order["products"][0]
    first["quantity"] += 1
    order["total_amount"] = round(order["total_amount"] + first["price"], 2)
    return order


def order_drops(tick: Tick) -> list[Drop]:
    """The tick's file of orders in landing/orders/: a JSON document (gzip) holding the tick's time
    and its orders in the canonical nested form; none when the tick has no order."""
    feed = tick.feed
    # The oldest order a tick can carry: late by the most, then resent by the most (each rounded up to a tick).
    oldest = tick.at - feed.every - LATE_DELAY[1] - RESEND_DELAY[1] - 2 * feed.every
    day, last = max(oldest.date(), feed.first_day), (tick.at - timedelta(seconds=1)).date()
    records, late, resent = [], 0, 0
    while day <= last:
        plan = _day_plan(day, feed)
        sent = np.flatnonzero(plan.send == tick.index)
        again = np.flatnonzero(plan.resend == tick.index)
        records += plan.orders.take(sent).to_pylist()
        late += int(plan.late[sent].sum())
        records += [_updated(order) if updated else order
                    for order, updated in zip(plan.orders.take(again).to_pylist(), plan.updated[again], strict=True)]
        resent += len(again)
        day += timedelta(days=1)
    if not records:
        return []
    records.sort(key=lambda order: (order["order_date"], order["order_id"]))
    document = {"feed": FEED_NAME, "tick": tick.stamp, "every_minutes": feed.every_minutes, "orders": records}
    # mtime=0: the same document gives the same bytes, so the same content hash at the ingest.
    data = gzip.compress(json.dumps(document, separators=(",", ":")).encode(), mtime=0)
    name = simulated_orders_name(tick.at)
    days = tuple(sorted({order["order_date"][:10] for order in records}))
    return [Drop("orders", f"{ORDERS_FEED.landing_dir}/{name}", ORDERS_FEED.ingested_path(name), data, len(records), late, resent, days)]


# The shop's buyers in the purchase log (USI_1 ... USI_<n>): one profile file holds them all.
PURCHASE_LOG_USERS = 500


def purchase_drops(tick: Tick) -> list[Drop]:
    """The tick's purchase log in landing/purchases/, in the tutorial's shape (CSV, CRLF, zone-less
    timestamps in the feed's purchases_timezone): about orders_per_tick events of the interval, a late share dated 1
    hour to 3 days before it (never before the first day), and a resent share written twice (the
    same event: purchase_events keeps one); and the buyers' profile file, the same every tick, so
    that it lands once."""
    feed = tick.feed
    rng = random.Random(feed.seed * 1_000_003 + tick.index)  # a tick's file is a function of the tick
    late = sum(rng.random() < feed.late_rate for _ in range(feed.orders_per_tick))
    resent = sum(rng.random() < feed.duplicate_rate for _ in range(feed.orders_per_tick))
    zone = ZoneInfo(feed.purchases_timezone)
    naive = tick.at.astimezone(zone).replace(tzinfo=None)
    first = datetime.combine(feed.first_day, datetime.min.time(), UTC).astimezone(zone).replace(tzinfo=None)
    late_from = max(first, naive - LATE_DELAY[1])
    late_hours = max(0.0, (naive - LATE_DELAY[0] - late_from).total_seconds() / 3600)
    on_time_from = max(first, naive - feed.every)  # nothing before the lake's first day
    on_time_hours = max(0.0, (naive - on_time_from) / timedelta(hours=1))
    on_time = purchase_log_csv(feed.orders_per_tick - late if on_time_hours else 0, seed=rng.randrange(2**32),
                               start=on_time_from, hours=on_time_hours, users=PURCHASE_LOG_USERS, duplicates=resent)
    late_rows = purchase_log_csv(late if late_hours else 0, seed=rng.randrange(2**32), start=late_from, hours=late_hours,
                                 users=PURCHASE_LOG_USERS)
    data = on_time + late_rows.split(b"\r\n", 1)[1]  # one header
    rows = list(csv.reader(io.StringIO(data.decode())))[1:]
    profiles = user_profiles_csv(PURCHASE_LOG_USERS, seed=feed.seed)
    name = simulated_purchases_name(tick.at)
    drops = [Drop("user_profiles", f"{USER_PROFILES_FEED.landing_dir}/{SIMULATED_PROFILES_NAME}",
                  USER_PROFILES_FEED.ingested_path(SIMULATED_PROFILES_NAME), profiles, PURCHASE_LOG_USERS, 0, 0, ())]
    if rows:
        days = tuple(sorted({str(datetime.strptime(row[PURCHASE_TIMESTAMP], TIMESTAMP_FORMAT).replace(tzinfo=zone)
                                 .astimezone(UTC).date()) for row in rows}))  # the UTC days the ingest routes them to
        drops.append(Drop("purchases", f"{PURCHASES_FEED.landing_dir}/{name}", PURCHASES_FEED.ingested_path(name), data,
                          len(rows), late if late_hours else 0, resent, days))
    return drops


PURCHASE_TIMESTAMP = 7  # the timestamp's column in the purchase log
PRODUCERS: dict[str, Producer] = {"orders": order_drops, "purchases": purchase_drops}


def tick_drops(tick: Tick, producers: dict[str, Producer] = PRODUCERS) -> list[Drop]:
    return [file for produce in producers.values() for file in produce(tick)]


def drop(store: LakeStore, files: list[Drop]) -> list[tuple[Drop, bool]]:
    """Writes each file into its landing zone, atomically; a file whose bytes are there already (not
    ingested yet, or ingested and archived) is left alone, so that a tick run again lands nothing new.
    Returns (file, whether it was written)."""
    written = []
    for file in files:
        there = any(_holds(store, path, file.data) for path in (file.path, file.ingested_path))
        if not there:
            store.write_bytes(file.path, file.data)
        written.append((file, not there))
    return written


def describe(file: Drop, written: bool) -> str:
    """One line saying what a dropped file holds (or that it was there already)."""
    what = (f"{file.records} {file.kind} ({file.late} late, {file.resent} resent) dated "
            f"{', '.join(file.days)}")
    return f"dropped {file.path}: {what}" if written else f"already landed, left alone: {file.path}: {what}"


def _holds(store: LakeStore, path: str, data: bytes) -> bool:
    try:
        return store.read_bytes(path) == data
    except FileNotFoundError:  # never there, or moved to the archive meanwhile (checked next)
        return False
