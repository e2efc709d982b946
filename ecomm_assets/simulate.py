"""The live feed simulator from the command line, next to `dagster dev` or alone: every N minutes it
drops the synthetic shop's orders of the last interval into the lake's landing zone (ECOMM_LAKE_URI,
a folder or s3://), some late and some sent again, and prints what it dropped.

    python -m ecomm_assets.simulate                          # a tick every 5 minutes until Ctrl-C
    python -m ecomm_assets.simulate --every 1 --ticks 10     # ten ticks, a minute apart
    python -m ecomm_assets.simulate --from 2024-01-15T09:00Z --until 2024-01-15T12:00Z   # a past morning, at once

Ticks fall on a grid from midnight UTC and each runs at its time: a tick already past runs at once
(a replay), a tick to come is waited for, so no order is ever dated ahead of the shop's clock (the
wall clock, or --days-behind days behind it). Running a
tick again drops nothing new (the same file, left alone). The landing sensor of `dagster dev`
ingests what lands, or `python -m ecomm_assets.catch_up` does.
"""

import argparse
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from ecomm_assets.core.simulator import (
    LiveFeed,
    Tick,
    describe,
    drop,
    tick_at_or_after,
    tick_at_or_before,
    tick_drops,
)
from ecomm_assets.core.storage import LakeStore
from ecomm_assets.settings import PARSERS, SETTINGS


def _time(text: str) -> datetime:
    """ISO 8601 (`2024-01-15T09:00Z`, `2024-01-15 09:00+01:00`, `2024-01-15`); no zone means UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _argument(parse: Callable[[str], object]) -> Callable[[str], object]:
    """A setting's parser (ecomm_assets/settings.py) for an argument: the same values, the same reasons."""
    def convert(text: str) -> object:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"{text}: {error}") from None

    return convert


def _count(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be a whole number, at least 1")
    return int(text)


def parser() -> argparse.ArgumentParser:
    run = argparse.ArgumentParser(prog="python -m ecomm_assets.simulate", description=__doc__.split("\n\n")[0],
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--every", type=_argument(PARSERS["feed_every_minutes"]), default=SETTINGS.feed_every_minutes, metavar="MINUTES",
                     help="minutes between ticks (default ECOMM_FEED_EVERY_MINUTES, %(default)s)")
    run.add_argument("--orders-per-tick", type=_argument(PARSERS["feed_orders_per_tick"]), default=SETTINGS.feed_orders_per_tick,
                     metavar="N", help="orders a tick on average over a day (default %(default)s)")
    run.add_argument("--late-rate", type=_argument(PARSERS["feed_late_rate"]), default=SETTINGS.feed_late_rate, metavar="SHARE",
                     help="share of orders sent 1 hour to 3 days late (default %(default)s)")
    run.add_argument("--duplicate-rate", type=_argument(PARSERS["feed_duplicate_rate"]), default=SETTINGS.feed_duplicate_rate,
                     metavar="SHARE", help="share of orders sent again later, unchanged or updated (default %(default)s)")
    run.add_argument("--seed", type=_argument(PARSERS["seed"]), default=SETTINGS.seed,
                     help="the shop's seed (default ECOMM_SEED, %(default)s)")
    run.add_argument("--days-behind", type=_argument(PARSERS["feed_days_behind"]), default=SETTINGS.feed_days_behind, metavar="DAYS",
                     help="the shop's clock runs DAYS days behind this one (default ECOMM_FEED_DAYS_BEHIND, %(default)s)")
    run.add_argument("--from", dest="start", type=_time, metavar="TIME",
                     help="the first tick: the first on the grid at or after TIME (default: the last one passed)")
    stop = run.add_mutually_exclusive_group()
    stop.add_argument("--ticks", type=_count, metavar="N", help="stop after N ticks")
    stop.add_argument("--once", action="store_const", const=1, dest="ticks", help="one tick, then stop")
    run.add_argument("--until", type=_time, metavar="TIME", help="stop after the last tick at or before TIME")
    return run


def tick_times(first: datetime, every: timedelta, ticks: int | None, until: datetime | None):
    """The ticks from `first`, `ticks` of them and none after `until` (endless with neither)."""
    at, count = first, 0
    while (ticks is None or count < ticks) and (until is None or at <= until):
        yield at
        at, count = at + every, count + 1


def simulate(store: LakeStore, feed: LiveFeed, times, say=print, sleep=time.sleep, now=lambda: datetime.now(UTC)) -> int:
    """Drops each tick's files when its time has come; returns how many files it wrote."""
    written = 0
    for at in times:
        wait = (at - now()).total_seconds()
        if wait > 0:
            sleep(wait)
        dropped = drop(store, tick_drops(Tick(at, feed)))
        stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        for file, new in dropped:
            say(f"tick {stamp}: {describe(file, new)}")
        if not dropped:
            say(f"tick {stamp}: no order in the interval before it, nothing dropped")
        new_files = sum(new for _, new in dropped)
        written += new_files
        # S3 records when an object landed to the second, and the newest landed version of an order
        # wins: replayed ticks land a second apart, so a resent order's version is never tied with its first.
        if new_files and not store.is_local:
            sleep(1)
    return written


def main(argv: list[str] | None = None) -> None:
    command = parser()
    arguments = command.parse_args(argv)
    try:
        feed = LiveFeed(arguments.every, arguments.orders_per_tick, arguments.late_rate, arguments.duplicate_rate,
                    arguments.seed, SETTINGS.start_date, SETTINGS.purchases_timezone)
    except ValueError as error:
        command.error(str(error))
    behind = timedelta(days=arguments.days_behind)

    def shop_clock() -> datetime:
        return datetime.now(UTC) - behind

    first = tick_at_or_after(arguments.start, feed.every) if arguments.start else tick_at_or_before(shop_clock(), feed.every)
    if arguments.until and arguments.until < first:
        command.error(f"--until {arguments.until.isoformat()} is before the first tick, {first.isoformat()}")
    store = LakeStore.from_uri(SETTINGS.lake_uri, SETTINGS.s3_endpoint_url, SETTINGS.aws_region)
    print(f"live feed into {store.full_uri('landing')}: a tick every {feed.every_minutes} minutes from "
          f"{first.isoformat()}{f' (the shop {behind.days} day(s) behind)' if behind else ''}, {feed.orders_per_tick} orders a tick on average, {feed.late_rate:.0%} late, "
          f"{feed.duplicate_rate:.0%} sent again" + ("" if arguments.ticks or arguments.until else "; Ctrl-C stops it"),
          flush=True)
    try:
        written = simulate(store, feed, tick_times(first, feed.every, arguments.ticks, arguments.until),
                           say=lambda line: print(line, flush=True), now=shop_clock)
    except KeyboardInterrupt:
        print("stopped")
        return
    print(f"{written} files dropped")


if __name__ == "__main__":
    sys.exit(main())
