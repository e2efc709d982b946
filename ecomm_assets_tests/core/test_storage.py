"""What killed writers leave behind is swept by the next writer; staged files get their contract; a
landed file is read once with its version, and moved only if it is still that version."""

import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ecomm_assets.core import storage
from ecomm_assets.core.schemas import ContractViolation
from ecomm_assets.core.storage import LakeStore, conform_parquet_file
from ecomm_assets.core.usage import Request, Usage

CONTRACT = pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("price", pa.decimal128(18, 2))])


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.parametrize(
    ("owner", "age_hours", "max_age_hours", "swept"),
    [
        ("dead", 0, 6, True),  # a killed writer of this host
        ("alive", 0, 6, False),  # a running writer
        ("alive", 0, 0, False),  # a writer running longer than any other host's temporaries live (a long backfill)
        ("alive", 7, 6, True),  # older than the process: the pid was reused
        ("other-host", 0, 6, False),  # another host's writer may still run
        ("other-host", 7, 6, True),
    ],
    ids=["dead", "alive", "alive-past-the-max-age", "pid-reused", "other-host", "other-host-old"],
)
@pytest.mark.parametrize("kind", ["file", "folder"])
def test_the_first_write_sweeps_what_dead_writers_left_in_staging(tmp_path, monkeypatch, owner, age_hours, max_age_hours,
                                                                  swept, kind):
    monkeypatch.setattr(storage, "LEFTOVER_MAX_AGE", storage.timedelta(hours=max_age_hours))
    store = LakeStore.from_uri(str(tmp_path / "lake"))
    staging = tmp_path / "lake" / ".staging"
    staging.mkdir(parents=True)
    host = socket.gethostname() if owner != "other-host" else "elsewhere"
    pid = dead_pid() if owner == "dead" else os.getpid()
    leftover = staging / f"{host}~{pid}~abc{'.tmp' if kind == 'file' else ''}"
    if kind == "file":
        leftover.write_bytes(b"half")
    else:
        (leftover / "optimistic-x").mkdir(parents=True)
        (leftover / "optimistic-x" / "part.parquet").write_bytes(b"half")
    old = time.time() - age_hours * 3600
    os.utime(leftover, (old, old))

    store.write_bytes("processed/t/dt=2024-01-15/part-00000.parquet", b"data")

    assert leftover.exists() is not swept
    assert (tmp_path / "lake/processed/t/dt=2024-01-15/part-00000.parquet").read_bytes() == b"data"
    assert [p.name for p in staging.iterdir()] == ([] if swept else [leftover.name])


def test_a_replaced_partition_drops_temporary_files_of_older_writers(tmp_path):
    store = LakeStore.from_uri(str(tmp_path / "lake"))
    folder = tmp_path / "lake/processed/t/dt=2024-01-15"
    folder.mkdir(parents=True)
    (folder / ".3f2a.tmp").write_bytes(b"half")  # how writers before .staging/ left them
    (folder / "_counts.json").write_bytes(b"{}")
    store.replace_partition("processed/t/dt=2024-01-15", {"part-00000.parquet": b"new"})
    assert sorted(p.name for p in folder.iterdir()) == ["_counts.json", "part-00000.parquet"]


def test_the_first_write_on_s3_aborts_stale_incomplete_multipart_uploads(aws, monkeypatch):
    s3 = boto3.client("s3", endpoint_url=aws, region_name="us-east-1")
    s3.create_bucket(Bucket="lake")
    stale = s3.create_multipart_upload(Bucket="lake", Key="prefix/processed/t/dt=2024-01-15/part-00000.parquet")
    other = s3.create_multipart_upload(Bucket="lake", Key="elsewhere/file")
    monkeypatch.setattr(storage, "LEFTOVER_MAX_AGE", storage.timedelta(seconds=0))
    monkeypatch.setattr(storage, "_UPLOADS_SWEPT", set())  # as in a new process (another test may have had this port)
    store = LakeStore.from_uri("s3://lake/prefix", aws, "us-east-1")
    store.write_bytes("processed/t/dt=2024-01-15/part-00000.parquet", b"data")
    uploads = s3.list_multipart_uploads(Bucket="lake").get("Uploads", [])
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [("elsewhere/file", other["UploadId"])]
    assert stale["UploadId"] not in {u["UploadId"] for u in uploads}


def test_a_process_lists_a_lakes_incomplete_uploads_once_not_in_every_step(counted_aws):
    first, bucket = counted_store(counted_aws)
    started = time.time()
    first.write_bytes("processed/t/dt=2024-01-15/part-00000.parquet", b"a")
    # The next step's store (LakeResource makes one per step) writes without listing the uploads again.
    LakeStore.from_uri(f"s3://{bucket}/prefix", counted_aws.endpoint, "us-east-1").write_bytes("processed/t/x", b"b")
    served = counted_aws.since(started)
    assert [r.request_class() for r in served] == ["list", "put", "put"]
    assert served[0].query.startswith("uploads")  # ListMultipartUploads


def test_a_staged_file_is_rewritten_with_its_contract_in_bounded_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "CONFORM_BATCH_ROWS", 1000)
    staged = tmp_path / "lines.parquet"
    all_nullable = pa.table({"id": [f"o{n}" for n in range(2500)], "price": pa.array([Decimal("1.25")] * 2500, pa.decimal128(18, 2))})
    pq.write_table(all_nullable, staged, row_group_size=2500)
    conformed, parquet = conform_parquet_file(staged, CONTRACT, "t of 2024-01-15")
    assert parquet.metadata == pq.ParquetFile(conformed).metadata
    assert parquet.schema_arrow == CONTRACT and parquet.metadata.num_row_groups == 3
    assert parquet.read().to_pydict() == all_nullable.to_pydict()


@pytest.mark.parametrize(("schema", "rewritten"), [
    (CONTRACT, False),
    (CONTRACT.with_metadata({"other": "metadata"}), True),
    (pa.schema([pa.field("id", pa.string()), pa.field("price", pa.decimal128(18, 2))]), True),
], ids=["the-contract", "other-metadata", "nullable-key"])
def test_a_staged_file_already_written_with_its_contract_is_taken_as_it_is(tmp_path, schema, rewritten):
    staged = tmp_path / "day.parquet"
    pq.write_table(pa.table({"id": ["o1"], "price": pa.array([Decimal("1.25")], pa.decimal128(18, 2))}, schema=schema), staged)
    conformed, parquet = conform_parquet_file(staged, CONTRACT, "t of 2024-01-15")
    assert (conformed != staged) == rewritten
    assert parquet.schema_arrow.equals(CONTRACT, check_metadata=True)
    assert pq.ParquetFile(conformed).schema_arrow.equals(CONTRACT, check_metadata=True)


def test_a_staged_file_with_a_null_key_fails_naming_table_day_and_column(tmp_path):
    staged = tmp_path / "lines.parquet"
    pq.write_table(pa.table({"id": ["a", None], "price": pa.array([1, 2], pa.decimal128(18, 2))}), staged)
    with pytest.raises(ContractViolation, match=r"order_lines of 2024-01-15: null values .*: id \(1 nulls\)"):
        conform_parquet_file(staged, CONTRACT, "order_lines of 2024-01-15")


# --- moving the version read, never another --------------------------------------------------------

V1, V2, V3 = b'{"v": 1}\n', b'{"v": 22}\n', b'{"v": 333}\n'
LANDED = "landing/orders"
ARCHIVE = "landing/_ingested/orders"
NAME = "sub/a.jsonl"


def replaced(store: LakeStore, data: bytes) -> None:
    """A producer's new version: a new file renamed into place (locally), a new PUT (S3)."""
    store.write_bytes(f"{LANDED}/{NAME}", data)


def rewritten_in_place_keeping_size_and_mtime(store: LakeStore) -> None:
    path = store.full_path(f"{LANDED}/{NAME}")
    before = os.stat(path)
    with open(path, "r+b") as file:
        file.write(b'{"v": 9}\n')  # as long as V1
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


class RacingOs:
    """The storage module's `os`, with a producer acting around the move's rename."""

    def __init__(self, before=None, after=None):
        self.before, self.after = before, after

    def __getattr__(self, name):
        return getattr(os, name)

    def rename(self, source, target, **dir_fds):
        if self.before:
            self.before()
        os.rename(source, target, **dir_fds)
        if self.after:
            self.after()


# (what the producer does, the outcome, what is left at the landed name, what is in the archive)
LOCAL_RACES = [
    ("none", "moved", None, V1),
    ("replaced after the read", "changed", V2, None),
    # The design's size and mtime would not tell this one: the ctime does.
    ("rewritten in place keeping size and mtime", "changed", b'{"v": 9}\n', None),
    ("replaced between the check and the rename", "changed", V2, None),  # put back
    ("replaced before and after the rename", "stranded", V3, V2),
    ("deleted", "gone", None, None),
]


@pytest.mark.parametrize(("race", "outcome", "left", "archived"), LOCAL_RACES, ids=[race for race, *_ in LOCAL_RACES])
def test_a_local_move_takes_the_version_read_and_never_another(tmp_path, monkeypatch, race, outcome, left, archived):
    store = LakeStore.from_uri(str(tmp_path / "lake"))
    store.write_bytes(f"{LANDED}/{NAME}", V1)
    landed_at = time.time() - 3600
    os.utime(store.full_path(f"{LANDED}/{NAME}"), (landed_at, landed_at))
    source, info = store.read_confined(LANDED, NAME)
    with source:
        assert source.read() == V1
    if race == "replaced after the read":
        replaced(store, V2)
    elif race == "rewritten in place keeping size and mtime":
        rewritten_in_place_keeping_size_and_mtime(store)
    elif race == "replaced between the check and the rename":
        monkeypatch.setattr(storage, "os", RacingOs(before=lambda: replaced(store, V2)))
    elif race == "replaced before and after the rename":
        monkeypatch.setattr(storage, "os", RacingOs(before=lambda: replaced(store, V2), after=lambda: replaced(store, V3)))
    elif race == "deleted":
        os.unlink(store.full_path(f"{LANDED}/{NAME}"))

    assert store.move_confined(LANDED, NAME, ARCHIVE, info.version).value == outcome
    monkeypatch.undo()
    source, target = Path(store.full_path(f"{LANDED}/{NAME}")), Path(store.full_path(f"{ARCHIVE}/{NAME}"))
    assert (source.read_bytes() if source.exists() else None) == left
    assert (target.read_bytes() if target.exists() else None) == archived
    if outcome == "moved":
        assert target.stat().st_mtime == landed_at  # the rename keeps the landing time


def test_a_local_move_never_follows_a_symlinked_archive_folder(tmp_path):
    store = LakeStore.from_uri(str(tmp_path / "lake"))
    store.write_bytes(f"{LANDED}/a.jsonl", V1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "lake/landing/_ingested").symlink_to(elsewhere)
    source, info = store.read_confined(LANDED, "a.jsonl")
    source.close()
    with pytest.raises(storage.NotARegularFile):
        store.move_confined(LANDED, "a.jsonl", ARCHIVE, info.version)
    assert (tmp_path / "lake/landing/orders/a.jsonl").read_bytes() == V1 and not list(elsewhere.iterdir())


class RacingClient:
    """The store's S3 client, recording the move's requests, with a producer acting after the copy."""

    def __init__(self, client, after_copy=None):
        self.client, self.after_copy, self.calls = client, after_copy, []

    def __getattr__(self, name):
        return getattr(self.client, name)

    def copy_object(self, **request):
        self.calls.append(("copy_object", request))
        response = self.client.copy_object(**request)
        if self.after_copy:
            self.after_copy()
        return response

    def delete_object(self, **request):
        self.calls.append(("delete_object", request))
        return self.client.delete_object(**request)


S3_RACES = [
    ("none", "moved", None, V1),
    # Real S3 refuses the copy (CopySourceIfMatch); moto ignores that condition, not the delete's.
    ("replaced after the read", "changed", V2, "any"),
    ("replaced between the copy and the delete", "changed", V2, V1),
    ("deleted", "gone", None, None),
]


@pytest.mark.parametrize(("race", "outcome", "left", "archived"), S3_RACES, ids=[race for race, *_ in S3_RACES])
def test_an_s3_move_takes_the_version_read_and_never_another(aws, race, outcome, left, archived):
    s3 = boto3.client("s3", endpoint_url=aws, region_name="us-east-1")
    s3.create_bucket(Bucket="lake")
    store = LakeStore.from_uri("s3://lake/prefix", aws, "us-east-1")
    s3.put_object(Bucket="lake", Key=f"prefix/{LANDED}/{NAME}", Body=V1, ContentType="application/x-ndjson", Metadata={"producer": "p1"})
    head = s3.head_object(Bucket="lake", Key=f"prefix/{LANDED}/{NAME}")
    source, info = store.read_confined(LANDED, NAME)
    with source:
        data = source.read()
    assert (data, info.size, info.mtime, info.version.etag) == (V1, len(V1), head["LastModified"], head["ETag"])
    client = store._s3 = RacingClient(store.s3_client(), after_copy=(lambda: replaced(store, V2)) if "copy" in race else None)
    if race == "replaced after the read":
        replaced(store, V2)
    elif race == "deleted":
        s3.delete_object(Bucket="lake", Key=f"prefix/{LANDED}/{NAME}")

    assert store.move_confined(LANDED, NAME, ARCHIVE, info.version, {"landed-at": "2024-02-01T09:00:00+00:00"}).value == outcome

    def body(key):
        try:
            return s3.get_object(Bucket="lake", Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None

    assert body(f"prefix/{LANDED}/{NAME}") == left
    if archived != "any":
        assert body(f"prefix/{ARCHIVE}/{NAME}") == archived
    [(_, copy)] = [call for call in client.calls if call[0] == "copy_object"]
    assert copy["CopySourceIfMatch"] == head["ETag"] and copy["MetadataDirective"] == "REPLACE"
    assert all(request["IfMatch"] == head["ETag"] for name, request in client.calls if name == "delete_object")
    if outcome == "moved":
        moved = s3.head_object(Bucket="lake", Key=f"prefix/{ARCHIVE}/{NAME}")
        assert moved["Metadata"] == {"producer": "p1", "landed-at": "2024-02-01T09:00:00+00:00"}
        assert moved["ContentType"] == "application/x-ndjson"


def test_an_s3_read_is_one_get_that_gives_the_version_read(aws):
    s3 = boto3.client("s3", endpoint_url=aws, region_name="us-east-1")
    s3.create_bucket(Bucket="lake")
    s3.put_object(Bucket="lake", Key="prefix/landing/orders/a.json.gz", Body=b"\x1f\x8b not really gzip")
    store = LakeStore.from_uri("s3://lake/prefix", aws, "us-east-1")
    requests = []
    store._client().meta.events.register("before-call.s3.*", lambda model, **_: requests.append(model.name))
    source, info = store.read_confined("landing/orders", "a.json.gz")
    with source:  # a local copy, as stored, never decompressed
        assert source.read() == b"\x1f\x8b not really gzip"
    assert info.version.etag == s3.head_object(Bucket="lake", Key="prefix/landing/orders/a.json.gz")["ETag"]
    assert requests == ["GetObject"]
    with pytest.raises(FileNotFoundError):
        store.read_confined("landing/orders", "missing.json")


def counted_store(server) -> tuple[LakeStore, str]:
    """A store on a fresh bucket of the counting moto server (its backends outlive a test)."""
    bucket = f"lake-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return LakeStore.from_uri(f"s3://{bucket}/prefix", server.endpoint, "us-east-1", usage=Usage()), bucket


def test_an_s3_delete_is_one_request_and_leaves_no_folder_marker(counted_aws):
    store, bucket = counted_store(counted_aws)
    store.write_bytes("processed/t/dt=2024-01-15/part-00000.parquet", b"old")
    before, started = Counter(store.usage.requests), time.time()
    store.delete("processed/t/dt=2024-01-15/part-00000.parquet")
    store.delete("processed/t/dt=2024-01-15/never-there.parquet")  # nothing to delete: no error
    served = counted_aws.since(started)
    assert [(r.method, r.key) for r in served] == [
        ("DELETE", f"{bucket}/prefix/processed/t/dt=2024-01-15/part-00000.parquet"),
        ("DELETE", f"{bucket}/prefix/processed/t/dt=2024-01-15/never-there.parquet"),
    ]
    assert store.usage.requests - before == Counter({Request.DELETE: 2})
    assert "Contents" not in boto3.client("s3", endpoint_url=counted_aws.endpoint).list_objects_v2(Bucket=bucket)


def test_replacing_many_days_finds_their_stale_files_in_one_listing(counted_aws):
    store, _ = counted_store(counted_aws)
    days = ["2024-01-13", "2024-01-14", "2024-01-15"]
    for day in days:
        for name in ("part-00000.parquet", "part-00001.parquet", "_counts.json", "x.tmp"):
            store.write_bytes(f"processed/t/dt={day}/{name}", b"old")
    store.write_bytes("processed/t/dt=2024-01-16/part-00001.parquet", b"another day")
    store.write_bytes("processed/t/dt=2024-01-15/nested/part-00001.parquet", b"not in the day's folder")
    before, started = Counter(store.usage.requests), time.time()
    written = store.replace_partitions((f"processed/t/dt={day}", {"part-00000.parquet": b"new"}) for day in days)
    served = Counter(r.request_class() for r in counted_aws.since(started))
    assert written == 9
    # A PUT per file written, one LIST for the three days, a DELETE per stale file.
    assert served == Counter({"put": 3, "list": 1, "delete": 6})
    assert store.usage.requests - before == Counter({Request.PUT: 3, Request.LIST: 1, Request.DELETE: 6})
    left = {f.path for f in store.list_files("processed/t", recursive=True)} | {
        f"processed/t/dt={day}/_counts.json" for day in days if store.exists(f"processed/t/dt={day}/_counts.json")}
    assert left == {*(f"processed/t/dt={day}/{name}" for day in days for name in ("part-00000.parquet", "_counts.json")),
                    "processed/t/dt=2024-01-16/part-00001.parquet", "processed/t/dt=2024-01-15/nested/part-00001.parquet"}
    assert store.read_bytes("processed/t/dt=2024-01-14/part-00000.parquet") == b"new"


@pytest.mark.parametrize(("columns", "gets"), [(2, 1), (3000, 2)], ids=["footer-in-the-first-read", "larger-footer"])
def test_a_parquet_files_row_count_is_its_footer_read_in_ranged_gets(counted_aws, tmp_path, columns, gets):
    table = pa.table({f"c{n}": list(range(7)) for n in range(columns)})
    local = LakeStore.from_uri(str(tmp_path / "lake"))
    store, _ = counted_store(counted_aws)
    for lake in (local, store):
        lake.write_parquet("processed/t/dt=2024-01-15/part-00000.parquet", table)
    started = time.time()
    assert storage.parquet_footer(store, "processed/t/dt=2024-01-15/part-00000.parquet").metadata.num_rows == 7
    assert [r.request_class() for r in counted_aws.since(started)] == ["get"] * gets  # no HEAD, no GET of the data
    assert storage.parquet_footer(local, "processed/t/dt=2024-01-15/part-00000.parquet").metadata.num_rows == 7
    for lake in (local, store):
        with pytest.raises(FileNotFoundError):
            storage.parquet_footer(lake, "processed/t/dt=2024-01-16/part-00000.parquet")


def _producer_fails_on_the_third_day(days):
    for day in days[:2]:
        yield f"processed/t/dt={day}", {"part-00000.parquet": b"new"}
    raise ValueError("the third day breaks its contract")


def _second_days_write_fails(days):
    for day in days:
        content = Path("/nonexistent/staged.parquet") if day == days[1] else b"new"
        yield f"processed/t/dt={day}", {"part-00000.parquet": content}


@pytest.mark.parametrize("lake", ["local", "s3"])
@pytest.mark.parametrize(("partitions", "error", "failing_day"),
                         [(_producer_fails_on_the_third_day, ValueError, "2024-01-15"),
                          (_second_days_write_fails, FileNotFoundError, "2024-01-14")],
                         ids=["producer-fails", "a-write-fails"])
def test_a_replacement_failing_part_way_leaves_each_day_exactly_replaced_or_untouched(
        tmp_path, request, lake, partitions, error, failing_day):
    """On S3 the days are written concurrently: the days that completed are replaced, the others
    untouched, never a day holding both its old and its new file."""
    store = (LakeStore.from_uri(str(tmp_path / "lake")) if lake == "local"
             else counted_store(request.getfixturevalue("counted_aws"))[0])
    days = [f"2024-01-{day}" for day in range(13, 13 + 2 * storage.WRITE_CONCURRENCY)]
    for day in days:
        store.write_bytes(f"processed/t/dt={day}/part-00001.parquet", b"an older writer's")
    with pytest.raises(error):
        store.replace_partitions(partitions(days))
    held = {}
    for f in store.list_files("processed/t", recursive=True):
        held.setdefault(f.path.split("/")[2], []).append(f.name)
    assert held[f"dt={failing_day}"] == ["part-00001.parquet"]
    assert all(names in (["part-00000.parquet"], ["part-00001.parquet"]) for names in held.values()), held
    assert held[f"dt={days[0]}"] == ["part-00000.parquet"]  # written before the failure


def test_local_copies_of_s3_files_are_streamed_in_chunks_one_get_each(aws, monkeypatch):
    """A day's raw file can be larger than the task's memory: it is copied to local disk chunk by
    chunk (it was once read whole into memory first)."""
    from botocore.response import StreamingBody

    s3 = boto3.client("s3", endpoint_url=aws, region_name="us-east-1")
    s3.create_bucket(Bucket="lake")
    contents = {"raw/orders/dt=2024-01-15/a.jsonl": b'{"order_id": 1}\n' * 50, "raw/orders/dt=2024-01-15/b.jsonl": b""}
    for rel, body in contents.items():
        s3.put_object(Bucket="lake", Key=f"prefix/{rel}", Body=body)
    store = LakeStore.from_uri("s3://lake/prefix", aws, "us-east-1")
    requests, reads = [], []
    store._client().meta.events.register("before-call.s3.*", lambda model, **_: requests.append(model.name))
    read = StreamingBody.read
    monkeypatch.setattr(StreamingBody, "read", lambda self, amt=None: reads.append(amt) or read(self, amt))
    monkeypatch.setattr(storage, "COPY_CHUNK", 64)
    with store.local_paths(list(contents)) as paths:
        assert [Path(path).read_bytes() for path in paths] == list(contents.values())
    assert requests == ["GetObject", "GetObject"]
    assert reads and all(amount == 64 for amount in reads)  # never the whole body at once
    assert sum(area["bytes_read"] for area in store.usage.areas.values()) == sum(map(len, contents.values()))


@pytest.mark.parametrize("columns", [None, ["day"]], ids=["all-columns", "one-column"])
def test_a_ranges_files_read_at_once_keep_their_order_one_get_each(counted_aws, columns):
    store, _ = counted_store(counted_aws)
    rels = [f"processed/t/dt=2024-01-{day:02d}/part-00000.parquet" for day in range(1, 3 * storage.READ_CONCURRENCY)]
    missing = rels[3::5]
    for day, rel in enumerate(rels, start=1):
        if rel not in missing:
            store.write_parquet(rel, pa.table({"day": [day, day], "other": ["x", "y"]}))
    started = time.time()
    rows, absent = store.read_parquet_present(rels, columns)
    served = Counter(r.request_class() for r in counted_aws.since(started))
    assert absent == missing
    assert rows.column_names == (columns or ["day", "other"])
    assert rows["day"].to_pylist() == [day for day, rel in enumerate(rels, start=1) if rel not in missing for _ in range(2)]
    assert served == Counter({"get": len(rels)})  # one GET per file, a 404 for the missing ones
    with pytest.raises(FileNotFoundError, match=missing[0]):
        store.read_parquet(rels)
