"""What killed writers leave behind is swept by the next writer; staged files get their contract."""

import os
import socket
import subprocess
import sys
import time
from decimal import Decimal

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ecomm_assets.core import storage
from ecomm_assets.core.schemas import ContractViolation
from ecomm_assets.core.storage import LakeStore, conform_parquet_file

CONTRACT = pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("price", pa.decimal128(18, 2))])


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.parametrize(
    ("owner", "age_hours", "swept"),
    [
        ("dead", 0, True),  # a killed writer of this host
        ("alive", 0, False),  # a running writer
        ("alive", 7, True),  # older than any write: the pid was reused
        ("other-host", 0, False),  # another host's writer may still run
        ("other-host", 7, True),
    ],
)
@pytest.mark.parametrize("kind", ["file", "folder"])
def test_the_first_write_sweeps_what_dead_writers_left_in_staging(tmp_path, owner, age_hours, swept, kind):
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
    store = LakeStore.from_uri("s3://lake/prefix", aws, "us-east-1")
    store.write_bytes("processed/t/dt=2024-01-15/part-00000.parquet", b"data")
    uploads = s3.list_multipart_uploads(Bucket="lake").get("Uploads", [])
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [("elsewhere/file", other["UploadId"])]
    assert stale["UploadId"] not in {u["UploadId"] for u in uploads}


def test_a_staged_file_is_rewritten_with_its_contract_in_bounded_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "CONFORM_BATCH_ROWS", 1000)
    staged = tmp_path / "lines.parquet"
    all_nullable = pa.table({"id": [f"o{n}" for n in range(2500)], "price": pa.array([Decimal("1.25")] * 2500, pa.decimal128(18, 2))})
    pq.write_table(all_nullable, staged, row_group_size=2500)
    conformed = conform_parquet_file(staged, CONTRACT, "t of 2024-01-15")
    parquet = pq.ParquetFile(conformed)
    assert parquet.schema_arrow == CONTRACT and parquet.metadata.num_row_groups == 3
    assert parquet.read().to_pydict() == all_nullable.to_pydict()


def test_a_staged_file_with_a_null_key_fails_naming_table_day_and_column(tmp_path):
    staged = tmp_path / "lines.parquet"
    pq.write_table(pa.table({"id": ["a", None], "price": pa.array([1, 2], pa.decimal128(18, 2))}), staged)
    with pytest.raises(ContractViolation, match=r"order_lines of 2024-01-15: null values .*: id \(1 nulls\)"):
        conform_parquet_file(staged, CONTRACT, "order_lines of 2024-01-15")
