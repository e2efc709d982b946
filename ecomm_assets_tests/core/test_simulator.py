"""The live feed simulator's core: deterministic ticks, each order sent once (late or not), the late
and resent shares it is asked for, validated settings, atomic and idempotent drops."""

import gzip
import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest

from ecomm_assets.core import simulator
from ecomm_assets.core.layout import PURCHASES_FEED, is_landing_file
from ecomm_assets.core.simulator import (
    LiveFeed,
    Tick,
    cron_schedule,
    drop,
    order_drops,
    tick_at_or_after,
    tick_at_or_before,
)
from ecomm_assets.core.storage import LakeStore

START = date(2024, 1, 1)
NOON = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)


def feed(**changes) -> LiveFeed:
    return LiveFeed(**({"every_minutes": 5, "orders_per_tick": 10, "late_rate": 0.05, "duplicate_rate": 0.02, "seed": 42,
                    "first_day": START} | changes))


def orders_of(file) -> list[dict]:
    document = json.loads(gzip.decompress(file.data))
    assert document["feed"] == simulator.FEED_NAME
    return document["orders"]


def ticks(feed: LiveFeed, first: datetime, count: int) -> list[Tick]:
    return [Tick(first + n * feed.every, feed) for n in range(count)]


def test_a_tick_is_deterministic_and_its_file_is_named_by_its_time():
    file, = order_drops(Tick(NOON, feed()))
    assert file.path == "landing/orders/simulated-orders-20240115T120000Z.json.gz" and is_landing_file(file.path.split("/", 2)[2])
    assert file.ingested_path == "landing/_ingested/orders/simulated-orders-20240115T120000Z.json.gz"
    simulator._day_plan.cache_clear()  # computed again from nothing: the same bytes
    assert order_drops(Tick(NOON, feed())) == [file]
    assert order_drops(Tick(NOON, feed(seed=7)))[0].data != file.data
    assert order_drops(Tick(NOON + timedelta(minutes=5), feed()))[0].data != file.data
    names = [f.path for t in ticks(feed(), NOON - timedelta(hours=1), 24) for f in order_drops(t)]
    assert names == sorted(names) and len(set(names)) == len(names)  # sortable by time, one a tick


def test_a_tick_holds_its_interval_and_late_orders_dated_hours_or_days_before():
    feed_ = feed(late_rate=0.5, duplicate_rate=0)
    late = on_time = 0
    for tick in ticks(feed_, NOON, 12):
        file, = order_drops(tick)
        start = (tick.at - feed_.every).strftime("%Y-%m-%dT%H:%M:%SZ")
        dates = [order["order_date"] for order in orders_of(file)]
        assert all(day < tick.stamp for day in dates)
        tick_late = [day for day in dates if day < start]
        assert file.late == len(tick_late) and file.resent == 0
        oldest = (tick.at - feed_.every - simulator.LATE_DELAY[1] - feed_.every).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert all(day >= oldest for day in tick_late)
        late, on_time = late + len(tick_late), on_time + len(dates) - len(tick_late)
        assert list(file.days) == sorted({day[:10] for day in dates})
    assert late > 20 and on_time > 20
    assert all(order["order_id"].startswith("SIM-") for order in orders_of(order_drops(Tick(NOON, feed_))[0]))


def test_every_order_is_sent_once_and_resent_at_most_once_later():
    """Over ticks covering a day and the 3 days after it, each of the day's orders is sent first
    exactly once; a resent one comes in a later tick, unchanged or with one more unit of its first line."""
    feed_ = feed(every_minutes=60, orders_per_tick=40, late_rate=0.2, duplicate_rate=0.2)
    first_sent, resent = {}, {}
    window = ticks(feed_, datetime(2024, 1, 15, 1, tzinfo=UTC), 24 * 4 + 6)
    for tick in window:
        for file in order_drops(tick):
            for order in orders_of(file):
                if order["order_id"] in first_sent:
                    assert order["order_id"] not in resent
                    resent[order["order_id"]] = (tick.index, order)
                else:
                    first_sent[order["order_id"]] = (tick.index, order)
    day = simulator._day_plan(date(2024, 1, 15), feed_).orders
    day_ids = set(day["order_id"].to_pylist())
    assert day_ids <= first_sent.keys() and len(day_ids) == day.num_rows > 500
    plan = simulator._day_plan(date(2024, 1, 15), feed_)  # the day's resent orders: those the plan resends, no other
    planned = {order_id for order_id, tick in zip(day["order_id"].to_pylist(), plan.resend, strict=True) if tick != -1}
    assert planned == {order_id for order_id in resent if order_id in day_ids} and len(planned) > 100
    assert all(tick <= window[-1].index for tick in plan.resend)
    updated = 0
    for order_id, (index, again) in resent.items():
        first_index, first = first_sent[order_id]
        assert index > first_index and again["order_date"] == first["order_date"]
        if again != first:
            updated += 1
            assert again["products"][0]["quantity"] == first["products"][0]["quantity"] + 1
            assert again["total_amount"] == round(first["total_amount"] + first["products"][0]["price"], 2)
            assert again["products"][1:] == first["products"][1:]
    assert 0.3 < updated / len(resent) < 0.7  # about half of them (UPDATED_SHARE)


@pytest.mark.parametrize("late_rate, duplicate_rate", [(0.05, 0.02), (0.3, 0.1), (0, 0)])
def test_late_and_resent_shares_hold_over_many_ticks(late_rate, duplicate_rate):
    feed_ = feed(every_minutes=60, orders_per_tick=100, late_rate=late_rate, duplicate_rate=duplicate_rate)
    counts = Counter()
    for tick in ticks(feed_, datetime(2024, 2, 1, tzinfo=UTC), 24 * 5):
        for file in order_drops(tick):
            counts.update(records=file.records, late=file.late, resent=file.resent)
    sent = counts["records"] - counts["resent"]
    assert sent > 10_000
    # Binomial counts: within 4 standard deviations of the share asked for.
    for observed, rate in ((counts["late"], late_rate), (counts["resent"], duplicate_rate)):
        assert abs(observed - rate * sent) <= 4 * (sent * rate * (1 - rate)) ** 0.5 + 1, (observed, rate, sent)


def test_no_order_is_dated_before_the_lakes_first_day_and_an_empty_tick_drops_nothing():
    feed_ = feed(first_day=date(2024, 1, 15), late_rate=1)
    first, = order_drops(Tick(datetime(2024, 1, 15, 12, tzinfo=UTC), feed_))
    assert min(order["order_date"] for order in orders_of(first)) >= "2024-01-15"
    assert order_drops(Tick(datetime(2024, 1, 15, tzinfo=UTC), feed_)) == []  # the interval is before the first day
    assert order_drops(Tick(NOON, feed(orders_per_tick=0))) == []


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"every_minutes": 7}, "interval 7: must divide an hour"),
        ({"every_minutes": 90}, "interval 90: must divide an hour"),
        ({"every_minutes": 0}, "interval 0"),
        ({"every_minutes": 2880}, "interval 2880"),
        ({"late_rate": 1.5}, "late rate 1.5: must be a share"),
        ({"duplicate_rate": -0.1}, "duplicate rate -0.1"),
        ({"late_rate": float("nan")}, "late rate nan"),
        ({"orders_per_tick": -1}, "orders per tick must not be negative"),
        ({"every_minutes": 1, "orders_per_tick": 1000}, "1,440,000 a day, over 1,000,000"),
        ({"seed": -1}, "the seed must not be negative"),
    ],
    ids=["7-minutes", "90-minutes", "zero", "two-days", "late-over-1", "negative-rate", "nan", "negative-volume",
         "too-many-a-day", "negative-seed"],
)
def test_a_feed_it_cannot_run_is_refused_naming_the_value(changes, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        feed(**changes)


@pytest.mark.parametrize(
    "at, message",
    [(datetime(2024, 1, 15, 12, 3, tzinfo=UTC), "not on the 5-minute grid"), (datetime(2024, 1, 15, 12), "give a time zone")],
    ids=["off-grid", "naive"],
)
def test_a_tick_off_the_grid_or_without_a_zone_is_refused(at, message):
    with pytest.raises(ValueError, match=message):
        Tick(at, feed())


@pytest.mark.parametrize(
    "minutes, cron", [(1, "*/1 * * * *"), (5, "*/5 * * * *"), (30, "*/30 * * * *"), (60, "0 * * * *"),
                      (180, "0 */3 * * *"), (1440, "0 0 * * *")],
)
def test_the_cron_schedule_ticks_on_the_grid(minutes, cron):
    assert cron_schedule(minutes) == cron


def test_tick_times_round_to_the_grid():
    every = timedelta(minutes=5)
    assert tick_at_or_before(datetime(2024, 1, 15, 12, 4, 59, 999, tzinfo=UTC), every) == NOON
    assert tick_at_or_after(datetime(2024, 1, 15, 12, 0, 0, 1, tzinfo=UTC), every) == NOON + every
    assert tick_at_or_after(NOON, every) == tick_at_or_before(NOON, every) == NOON
    assert tick_at_or_before(datetime(2024, 1, 15, 13, 2, tzinfo=UTC).astimezone(datetime.now().astimezone().tzinfo), every) == NOON + 12 * every


def test_a_drop_is_written_once_and_left_alone_when_there_or_ingested(tmp_path):
    store = LakeStore.from_uri(str(tmp_path / "lake"))
    files = order_drops(Tick(NOON, feed()))
    assert [written for _, written in drop(store, files)] == [True]
    landed = tmp_path / "lake" / files[0].path
    assert landed.read_bytes() == files[0].data
    mtime = landed.stat().st_mtime_ns
    assert [written for _, written in drop(store, files)] == [False] and landed.stat().st_mtime_ns == mtime
    archived = tmp_path / "lake" / files[0].ingested_path  # what the ingest does with it
    archived.parent.mkdir(parents=True)
    landed.rename(archived)
    assert [written for _, written in drop(store, files)] == [False] and not landed.exists()
    other = order_drops(Tick(NOON, feed(seed=7)))  # other settings, another version of the name: it lands
    assert [written for _, written in drop(store, other)] == [True] and landed.read_bytes() == other[0].data
    assert not list((tmp_path / "lake" / "landing" / "orders").glob(".*"))  # written through the hidden staging folder


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata", "America/New_York"])
def test_a_ticks_purchase_log_is_the_tutorials_shape_and_splits_without_a_quarantined_row(zone):
    """Tick by tick over a day: the log's events (late ones dated 1 hour to 3 days before the tick,
    resent ones written twice) all route to their days, read in the zone they are written in (the
    ingest's ECOMM_PURCHASES_TIMEZONE), none after the tick; the profiles file is the same every tick."""
    from ecomm_assets.core.landing import DayWindow
    from ecomm_assets.core.purchases import (
        EVENT_TS_UTC,
        split_purchase_file,
        split_user_profile_file,
    )

    live = feed(orders_per_tick=30, late_rate=0.2, duplicate_rate=0.1, purchases_timezone=zone)
    window = DayWindow(START, date(2024, 12, 31))
    read = late = resent = 0
    profiles = set()
    for tick in ticks(live, NOON, 48):
        drops = {file.kind: file for file in simulator.purchase_drops(tick)}
        assert simulator.purchase_drops(tick)[1].data == drops["purchases"].data  # a function of the tick
        log = drops["purchases"]
        assert log.data.startswith(b"user_id,session_id,category,brand,cost_price,selling_price,discount,timestamp,")
        assert log.path.startswith("landing/purchases/simulated-purchases-") and PURCHASES_FEED.takes(log.path.split("/", 2)[2])
        landed = split_purchase_file(log.path, log.data, window, zone, key=b"k")
        assert (landed.records_read, landed.records_routed, landed.quarantined) == (log.records, log.records, [])
        instants = sorted(t for rows in landed.days.values() for t in rows[EVENT_TS_UTC].to_pylist())
        assert instants[-1] <= f"{tick.at:%Y-%m-%dT%H:%M:%SZ}" and instants[0] >= f"{tick.at - timedelta(days=3, minutes=5):%Y-%m-%dT%H:%M:%SZ}"
        assert max(map(str, landed.days)) <= str(tick.at.date()) and sorted(map(str, landed.days)) == list(log.days)
        read, late, resent = read + log.records, late + log.late, resent + log.resent
        profiles.add(drops["user_profiles"].data)
    assert len(profiles) == 1
    users = split_user_profile_file("p.csv", profiles.pop(), window, NOON.date(), key=b"k")
    assert users.records_routed == simulator.PURCHASE_LOG_USERS and not users.quarantined
    # 48 ticks x 30 events: shares within 4 standard deviations of the rates asked for.
    assert abs(late - 0.2 * 48 * 30) < 4 * (48 * 30 * 0.2 * 0.8) ** 0.5
    assert abs(resent - 0.1 * 48 * 30) < 4 * (48 * 30 * 0.1 * 0.9) ** 0.5
    assert read == 48 * 30 + resent


def test_a_purchase_log_holds_no_event_before_the_lakes_first_day():
    """The first tick of the first day: its interval is before midnight, so it holds no event (the
    ingest would quarantine them all); the profiles still land."""
    first_tick = Tick(datetime(2024, 1, 1, tzinfo=UTC), feed(every_minutes=60, orders_per_tick=20))
    assert [file.kind for file in simulator.purchase_drops(first_tick)] == ["user_profiles"]
    later = simulator.purchase_drops(Tick(datetime(2024, 1, 1, 1, tzinfo=UTC), feed(every_minutes=60, orders_per_tick=20)))
    assert [file.kind for file in later] == ["user_profiles", "purchases"] and later[1].days == ("2024-01-01",)

