"""Day locks on a local lake (flock) and on S3 (conditional-PUT leases, moto server)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import boto3
import pytest

from ecomm_assets.core.locks import DayLockLost, DayLockTimeout, day_locks
from ecomm_assets.core.storage import LakeStore

HOLD = """
import sys, time
from ecomm_assets.core.locks import day_locks
from ecomm_assets.core.storage import LakeStore
store = LakeStore.from_uri(sys.argv[1], sys.argv[2] or None, "us-east-1")
with day_locks(store, ["2024-01-15"], holder="killed-run", lease_seconds=2):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        yield LakeStore.from_uri(str(tmp_path / "lake"))
        return
    endpoint = request.getfixturevalue("aws")
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="lake")
    yield LakeStore.from_uri("s3://lake/prefix", endpoint, "us-east-1")


def test_a_held_day_makes_another_run_wait_then_time_out_naming_the_holder(store):
    waits = []
    with day_locks(store, ["2024-01-15", "2024-01-14"], holder="run-a"):
        started = time.monotonic()
        with pytest.raises(DayLockTimeout, match=r"day 2024-01-15 is still locked by run-a \(host .*, pid \d+"):
            with day_locks(store, ["2024-01-15"], holder="run-b", timeout_seconds=1, on_wait=waits.append):
                pass
        assert 1 <= time.monotonic() - started < 5
        assert len(waits) == 1 and waits[0].startswith("waiting for day 2024-01-15: locked by run-a")
        with day_locks(store, ["2024-01-16"], holder="run-c", timeout_seconds=1):
            pass  # other days are free
    with day_locks(store, ["2024-01-15"], holder="run-b", timeout_seconds=1):
        pass  # released at the end of the block


def test_overlapping_ranges_in_any_order_take_turns_without_deadlock(store):
    order = []

    def run(name, days):
        with day_locks(store, days, holder=name, timeout_seconds=60):
            order.append(f"{name} in")
            time.sleep(0.3)
            order.append(f"{name} out")

    threads = [threading.Thread(target=run, args=("a", ["2024-01-10", "2024-01-11", "2024-01-12"])),
               threading.Thread(target=run, args=("b", ["2024-01-12", "2024-01-11", "2024-01-10"]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])


def test_a_killed_holder_never_blocks_a_day_for_longer_than_its_lease(store):
    endpoint = store.s3_endpoint_url or ""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, store.uri, endpoint], stdout=subprocess.PIPE, text=True,
                              env=os.environ | {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(DayLockTimeout, match="killed-run"):
        with day_locks(store, ["2024-01-15"], holder="run-b", timeout_seconds=0.5):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    started = time.monotonic()
    with day_locks(store, ["2024-01-15"], holder="run-b", timeout_seconds=30):
        taken = time.monotonic() - started
        # The day names its new holder, not what is left of the killed one's longer record.
        with (pytest.raises(DayLockTimeout, match=r"locked by run-b \(host"),
              day_locks(store, ["2024-01-15"], holder="run-c", timeout_seconds=0.2)):
            pass
    assert taken < (1 if store.is_local else 4)  # flock: at once; S3: once the 2 s lease expired
    if store.is_local:
        assert not os.listdir(store.full_path(".locks"))  # nothing left behind after release


def test_an_s3_lease_taken_over_by_another_run_is_lost_before_writing(aws):
    """A run stalled past its lease: another run took the day over. Its next renewal is refused
    (If-Match on its own ETag) and it must not write."""
    s3 = boto3.client("s3", endpoint_url=aws, region_name="us-east-1")
    s3.create_bucket(Bucket="lake")
    store = LakeStore.from_uri("s3://lake/prefix", aws, "us-east-1")
    with day_locks(store, ["2024-01-15"], holder="stalled-run", lease_seconds=0.9) as held:
        held.ensure_held()
        s3.put_object(Bucket="lake", Key="prefix/.locks/2024-01-15.json", Body=b'{"holder": "run-b", "expires": 0}')
        time.sleep(1)
        with pytest.raises(DayLockLost, match="expired before it was renewed"):
            held.ensure_held()
    assert s3.get_object(Bucket="lake", Key="prefix/.locks/2024-01-15.json")["Body"].read() == b'{"holder": "run-b", "expires": 0}'


def test_leases_taken_first_are_kept_while_a_range_waits_for_its_later_days(store):
    """The renewal once started only when every day was taken: a range that waited longer than a
    lease for its last day had lost its first ones (S3); flocks never expire."""
    lease = 1.5
    released = threading.Event()

    def other_run():
        with day_locks(store, ["2024-01-16"], holder="other-run", lease_seconds=lease):
            released.wait(10)

    blocker = threading.Thread(target=other_run)
    blocker.start()
    time.sleep(0.5)  # the other run holds the range's last day
    threading.Timer(2 * lease, released.set).start()
    with day_locks(store, ["2024-01-14", "2024-01-15", "2024-01-16"], holder="range-run", lease_seconds=lease) as held:
        held.ensure_held()
        time.sleep(2 * lease)  # holding longer than a lease: renewed all along
        held.ensure_held()
    blocker.join()


def test_an_s3_range_waiting_for_a_day_holds_only_the_days_before_it(aws):
    """All of a range's leases are tried at once; waiting while holding a later day could deadlock
    with a run holding the awaited day and waiting for that one, so those are given back."""
    s3 = boto3.client("s3", endpoint_url=aws, region_name="us-east-1")
    s3.create_bucket(Bucket="lake")
    store = LakeStore.from_uri("s3://lake/prefix", aws, "us-east-1")
    days = [f"2024-01-{day}" for day in range(10, 30)]
    released, waiting = threading.Event(), threading.Event()

    def holders() -> dict[str, str]:
        listed = s3.list_objects_v2(Bucket="lake", Prefix="prefix/.locks/").get("Contents", [])
        return {item["Key"].rsplit("/", 1)[1]: json.loads(s3.get_object(Bucket="lake", Key=item["Key"])["Body"].read())["holder"]
                for item in listed}

    def other_run():
        with day_locks(store, [days[5]], holder="other-run"):
            released.wait(20)

    blocker = threading.Thread(target=other_run)
    blocker.start()
    deadline = time.monotonic() + 10
    while f"{days[5]}.json" not in holders() and time.monotonic() < deadline:
        time.sleep(0.05)
    seen = {}

    def on_wait(message):
        seen.update(holders())
        waiting.set()
        released.set()

    with day_locks(store, days, holder="range-run", on_wait=on_wait):
        assert waiting.is_set()
        assert seen == {**{f"{day}.json": "range-run" for day in days[:5]}, f"{days[5]}.json": "other-run"}
        assert holders() == {f"{day}.json": "range-run" for day in days}
    blocker.join()
    assert holders() == {}
