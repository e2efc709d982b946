"""Exclusive locks on UTC days of the lake, so that runs writing the same day never overlap.

A step holds the locks of its days from listing its inputs to replacing its partitions: another
run's newer partition can then never be replaced by one computed from older inputs. Days are
locked in sorted order, so two runs over overlapping ranges cannot deadlock.

- Local lake: `fcntl.flock` on `<root>/.locks/<day>.lock`. The kernel releases a flock when its
  process dies, so even SIGKILL leaves no stale lock. The file names its holder for waiting runs
  and is removed on release (a waiter that locked a removed file tries again on the new one).
  Two `open()`s of one file conflict even within one process.
- S3 lake: a lease object `<prefix>/.locks/<day>.json` (holder, expiry) created with a
  conditional PUT (`If-None-Match: *`), renewed by a background thread with `If-Match` on its
  ETag, deleted on release. A killed run's lease is taken over once expired (LEASE_SECONDS), again
  with `If-Match`, so two waiters cannot both take it. A holder that failed to renew (stalled
  longer than the lease) has lost the day: `HeldDays.ensure_held` raises before it writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime

from botocore.exceptions import BotoCoreError, ClientError

from ecomm_assets.core.layout import LOCKS
from ecomm_assets.core.storage import LakeStore
from ecomm_assets.core.usage import Request

DEFAULT_TIMEOUT_SECONDS = 900.0  # a year's backfill holds its days for minutes
LEASE_SECONDS = 60.0  # how long a killed run's S3 lease blocks its days
POLL_SECONDS = (0.05, 1.0)  # first and longest wait between attempts
LEASE_CONCURRENCY = 16  # leases of a range put, renewed and deleted at once


class DayLockTimeout(TimeoutError):
    """A day stayed locked by another run for longer than the timeout."""


class DayLockLost(RuntimeError):
    """A lease expired before its holder renewed it: another run may now write the day."""


def _holder_record(holder: str) -> dict:
    return {"holder": holder, "host": socket.gethostname(), "pid": os.getpid(),
            "since": datetime.now(UTC).isoformat(timespec="seconds")}


def describe_holder(record: dict | None) -> str:
    if not record:
        return "an unknown holder"
    return f"{record.get('holder')} (host {record.get('host')}, pid {record.get('pid')}, since {record.get('since')})"


class _FileLock:
    def __init__(self, store: LakeStore, rel: str, holder: str):
        self.path, self.holder, self.fd = store.full_path(rel), holder, None
        self.rel, self.usage = rel, store.usage

    def try_acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # The previous holder removes the file on release: a lock on a removed file is no lock.
            if os.fstat(fd).st_ino != os.stat(self.path).st_ino:
                raise BlockingIOError
        except (BlockingIOError, FileNotFoundError):
            os.close(fd)
            return False
        # Written over the old record, then trimmed: a file truncated to zero is flushed to disk when
        # it is closed (ext4's auto_da_alloc), which made each release take milliseconds.
        written = os.pwrite(fd, json.dumps(_holder_record(self.holder)).encode(), 0)
        os.ftruncate(fd, written)
        self.usage.wrote(self.rel, written)  # a lease's PUT on S3
        self.fd = fd
        return True

    def current_holder(self) -> dict | None:
        with contextlib.suppress(OSError, ValueError):
            with open(self.path, encoding="utf-8") as handle:
                return json.loads(handle.read())
        return None

    def ensure_held(self) -> None:
        """A flock lasts as long as its process: nothing to check."""

    def release(self) -> None:
        self.usage.request(Request.DELETE)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # before unlocking: no one can lock this file once it is gone
        os.close(self.fd)


class _Lease:
    def __init__(self, store: LakeStore, s3, rel: str, holder: str, lease_seconds: float):
        self.s3, self.bucket, self.key = s3, store.bucket, store.key(rel)
        self.rel, self.usage = rel, store.usage
        self.holder, self.lease_seconds = holder, lease_seconds
        self.token, self.etag, self.lost = uuid.uuid4().hex, None, False
        self.valid_until = 0.0  # by our clock, measured before the PUT that set the expiry
        self._seen: dict | None = None

    def _put(self, **condition) -> None:
        started = time.time()
        body = _holder_record(self.holder) | {"token": self.token, "expires": started + self.lease_seconds}
        data = json.dumps(body).encode()
        self.etag = self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=data, **condition)["ETag"]
        self.usage.wrote(self.rel, len(data), request=None)  # the client's hook counted the PUT
        self.valid_until = started + self.lease_seconds

    def try_acquire(self) -> bool:
        try:
            self._put(IfNoneMatch="*")
            return True
        except ClientError as error:
            if not _precondition_failed(error):
                raise
        try:
            current = self.s3.get_object(Bucket=self.bucket, Key=self.key)
        except self.s3.exceptions.NoSuchKey:
            return False  # released meanwhile: the next attempt creates it
        self._seen = json.loads(current["Body"].read())
        if self._seen.get("expires", 0) > time.time():
            return False
        try:  # a dead holder's lease: take it over, unless another waiter was first
            self._put(IfMatch=current["ETag"])
            return True
        except ClientError as error:
            if not _precondition_failed(error):
                raise
            return False

    def current_holder(self) -> dict | None:
        return self._seen

    def renew(self) -> None:
        try:
            self._put(IfMatch=self.etag)
        except ClientError as error:
            self.lost = self.lost or _precondition_failed(error)
        except BotoCoreError:
            pass  # S3 unreachable for now: the next renewal tries again before the lease runs out

    def ensure_held(self) -> None:
        if self.lost or time.time() > self.valid_until:
            raise DayLockLost(f"the lease s3://{self.bucket}/{self.key} expired before it was renewed: another run may write the day")

    def release(self) -> None:
        with contextlib.suppress(ClientError):  # a lost lease belongs to its new holder
            self.s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self.etag)


def _precondition_failed(error: ClientError) -> bool:
    # 412 from a failed condition; 409 when S3 sees a concurrent conditional write to the key.
    return error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (409, 412)


class HeldDays:
    """The locks of a run's days, held until the `day_locks` block ends."""

    def __init__(self, locks: list):
        self._locks = locks

    def ensure_held(self) -> None:
        """Raise DayLockLost when a day's lease was lost (S3): call before replacing partitions."""
        for lock in self._locks:
            lock.ensure_held()


@contextlib.contextmanager
def day_locks(
    store: LakeStore,
    days: Iterable[date | str],
    holder: str,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    on_wait: Callable[[str], None] | None = None,
    lease_seconds: float = LEASE_SECONDS,
) -> Iterator[HeldDays]:
    """Hold an exclusive lock on each of `days` (in sorted order) for the block. A day held by
    another run is waited for, saying who holds it through `on_wait` (e.g. `context.log.info`);
    after `timeout_seconds` DayLockTimeout names the day and its holder."""
    s3 = None if store.is_local else store.s3_client()
    if store.is_local:
        os.makedirs(store.full_path(LOCKS), exist_ok=True)
    held: list = []
    renewing = threading.Event()
    renewer = None
    if s3 is not None:  # from the first lease on: a range may wait for its later days longer than a lease lasts
        renewer = threading.Thread(target=_renew, args=(held, renewing, lease_seconds / 3), daemon=True)
        renewer.start()
    try:
        deadline = time.monotonic() + timeout_seconds
        ordered = sorted({str(d) for d in days})
        locks = [_FileLock(store, f"{LOCKS}/{day}.lock", holder) if s3 is None else
                 _Lease(store, s3, f"{LOCKS}/{day}.json", holder, lease_seconds) for day in ordered]
        waiting_from = 0
        if s3 is not None:  # every lease tried at once; the run keeps those before the first day another run holds
            taken = _first_attempts(locks)
            waiting_from = taken.index(False) if False in taken else len(locks)
            held.extend(locks[:waiting_from])
            # Waiting while holding a later day could deadlock with a run that holds this one and waits for that.
            _at_once(_Lease.release, [lock for lock, got in zip(locks[waiting_from:], taken[waiting_from:]) if got])
        for day, lock in zip(ordered[waiting_from:], locks[waiting_from:]):
            _acquire(lock, day, deadline, timeout_seconds, on_wait)
            held.append(lock)
        yield HeldDays(held)
    finally:
        renewing.set()
        if renewer is not None:
            renewer.join()
            _at_once(_Lease.release, held)
        else:
            for lock in reversed(held):
                lock.release()


def _acquire(lock, day: str, deadline: float, timeout_seconds: float, on_wait: Callable[[str], None] | None) -> None:
    pause, announced = POLL_SECONDS[0], None
    while not lock.try_acquire():
        holder = describe_holder(lock.current_holder())
        if time.monotonic() > deadline:
            raise DayLockTimeout(f"day {day} is still locked by {holder} after {timeout_seconds:.0f} s; "
                                 "that run is writing the same day: retry when it has finished")
        if on_wait and holder != announced:
            on_wait(f"waiting for day {day}: locked by {holder}")
            announced = holder
        time.sleep(pause)
        pause = min(pause * 2, POLL_SECONDS[1])


def _at_once(action: Callable[[_Lease], object], leases: list[_Lease]) -> list:
    """`action` on every lease, LEASE_CONCURRENCY at a time (each request waits on S3), all of them
    run even when one fails; then the first error is raised."""
    with ThreadPoolExecutor(LEASE_CONCURRENCY) as pool:
        futures = [pool.submit(action, lease) for lease in leases]
    errors = [future.exception() for future in futures if future.exception() is not None]
    if errors:
        raise errors[0]
    return [future.result() for future in futures]


def _first_attempts(leases: list[_Lease]) -> list[bool]:
    """Each lease's first attempt, all at once; on an error, those taken are released again."""
    with ThreadPoolExecutor(LEASE_CONCURRENCY) as pool:
        futures = [pool.submit(lease.try_acquire) for lease in leases]
    errors = [future.exception() for future in futures if future.exception() is not None]
    if errors:
        _at_once(_Lease.release, [lease for lease, future in zip(leases, futures)
                                  if future.exception() is None and future.result()])
        raise errors[0]
    return [future.result() for future in futures]


def _renew(leases: list[_Lease], stop: threading.Event, every: float) -> None:
    """Renews the leases taken so far (the list grows while the run waits for its later days)."""
    while not stop.wait(every):
        _at_once(_Lease.renew, [lease for lease in list(leases) if not lease.lost])
