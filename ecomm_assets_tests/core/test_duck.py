"""Streaming query results to Parquet files with a table's contract (core/duck.py)."""

import os
import platform
import subprocess
import sys
from datetime import date

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ecomm_assets.core import duck
from ecomm_assets.core.schemas import ContractViolation

CONTRACT = pa.schema([pa.field("day", pa.date32(), nullable=False), pa.field("n", pa.int64(), nullable=False)])
DAYS = [date(2024, 1, 15), date(2024, 1, 16)]


def batch(day: date, values: list) -> pa.RecordBatch:
    return pa.record_batch({"day": pa.array([day] * len(values), pa.date32()), "n": pa.array(values, pa.int64())})


def test_each_day_gets_one_file_with_exactly_the_contract_and_its_rows_in_order(tmp_path):
    with duck.DayFiles(str(tmp_path), "t", CONTRACT) as files:
        for day, rows in duck.by_day([batch(DAYS[0], [1, 2]), pa.concat_batches([batch(DAYS[0], [3]), batch(DAYS[1], [4])])], "day"):
            files.write(day, rows)
        files.empty(date(2024, 1, 17))
    tables = {day: pq.read_table(path) for day, path in files.paths.items()}
    assert all(table.schema.equals(CONTRACT, check_metadata=True) for table in tables.values())
    assert {day: table["n"].to_pylist() for day, table in tables.items()} == {DAYS[0]: [1, 2, 3], DAYS[1]: [4], date(2024, 1, 17): []}


WRITE_FAULTS = [
    ("a null where the contract says never", [(DAYS[0], [1, None])], ContractViolation, r"t of 2024-01-15: null values .*: n \(1 nulls\)"),
    ("a day's rows after another day's", [(DAYS[0], [1]), (DAYS[1], [2]), (DAYS[0], [3])], RuntimeError,
     "t: rows of 2024-01-15 came after those of another day"),
]


@pytest.mark.parametrize("label, batches, error, message", WRITE_FAULTS, ids=[case[0] for case in WRITE_FAULTS])
def test_rows_that_cannot_go_into_their_days_file_are_an_error(tmp_path, label, batches, error, message):
    with pytest.raises(error, match=message), duck.DayFiles(str(tmp_path), "t", CONTRACT) as files:
        for day, values in batches:
            files.write(day, batch(day, values))


@pytest.mark.parametrize("failing_row", [0, 3_000_000], ids=["first batch", "part-way through the stream"])
def test_a_query_failing_while_streaming_raises_duckdbs_own_error(tmp_path, failing_row):
    """A failure part-way reaches Python through Arrow's stream as an OSError; callers tell a
    value of the wrong type (ConversionException) from other failures, wherever it happens."""
    with duck.bounded(str(tmp_path)) as con, pytest.raises(duckdb.ConversionException):
        for _ in duck.rows(con, f"SELECT CAST(CASE WHEN range = {failing_row} THEN 'x' ELSE '1' END AS INTEGER) FROM range(4000000)"):
            pass


ALLOCATOR_CASES = [
    ("the project's default: the system allocator", None, "system"),
    ("the user's choice wins", "mimalloc", "mimalloc"),
]


@pytest.mark.parametrize("label, user_value, pool", ALLOCATOR_CASES, ids=[case[0] for case in ALLOCATOR_CASES])
def test_a_process_gives_back_the_memory_its_steps_freed(tmp_path, label, user_value, pool):
    """Arrow's pool and DuckDB's allocator as a run's process sets them up: in a new process, as
    the CLI and the code server start (the pool is chosen when pyarrow is first imported)."""
    env = {name: value for name, value in os.environ.items() if name != "ARROW_DEFAULT_MEMORY_POOL"}
    if user_value:
        env["ARROW_DEFAULT_MEMORY_POOL"] = user_value
    script = ("import ecomm_assets.core.duck as duck, pyarrow as pa, sys; "
              "setting = \"SELECT current_setting('allocator_background_threads')\"; "
              "print(pa.default_memory_pool().backend_name, duck.connect().execute(setting).fetchone()[0], "
              "duck.bounded(sys.argv[1]).execute(setting).fetchone()[0])")
    printed = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, text=True,
                             check=True).stdout.split()
    assert printed == [pool, "True", "True"]


# A step's large buffers freed between others still in use (blocks of 3 MiB, one in eight kept).
FREED_BETWEEN_KEPT = """
import sys
import ecomm_assets

def resident_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

earlier = bytearray(4 << 20)
del earlier  # an earlier step's larger block, freed: glibc's own threshold rises to it
blocks = [bytearray(3 << 20) for _ in range(64)]
held = resident_kib()
kept = blocks[7::8]  # the last block is kept: nothing freed is at the heap's top
del blocks
print((held - resident_kib()) / (56 * 3 << 10))
"""

# Batches of buffers, each batch's freed before the next one's: the share of their pages faulted in again.
FREED_AT_THE_TOP = """
import resource
import ecomm_assets

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

def batch():
    return [b"x" * (1 << 20) for _ in range(4)]

batch()  # the heap has grown once
before = faults()
for _ in range(16):
    batch()
print((faults() - before) / (16 * (4 << 20) // resource.getpagesize()))
"""

# Each of glibc's malloc settings the package holds, as a run's process starts (importing the package):
# (the measure's script, the share it prints for the project's default, for a user's own setting).
MALLOC_CASES = [
    ("mmap threshold: the share of the freed blocks' memory given back", FREED_BETWEEN_KEPT,
     {"MALLOC_MMAP_THRESHOLD_": str(32 << 20)}, {"GLIBC_TUNABLES": f"glibc.malloc.mmap_threshold={32 << 20}"}, True),
    ("trim threshold: the share of a batch's pages faulted in again", FREED_AT_THE_TOP,
     {"MALLOC_TRIM_THRESHOLD_": str(128 << 10)}, {"GLIBC_TUNABLES": f"glibc.malloc.trim_threshold={128 << 10}"}, False),
]
MALLOC_SETTING_CASES = [
    (f"{label}, {whose}", script, user_env, high if whose == "the project's default" else not high)
    for label, script, environment, tunables, high in MALLOC_CASES
    for whose, user_env in (("the project's default", {}), ("the user's wins (environment)", environment),
                            ("the user's wins (tunables)", tunables))
]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc settings")
@pytest.mark.parametrize("label, script, user_env, high", MALLOC_SETTING_CASES, ids=[case[0] for case in MALLOC_SETTING_CASES])
def test_the_process_holds_glibcs_malloc_settings_unless_the_user_gives_them(label, script, user_env, high):
    """Large blocks a step freed go back to the system (before, glibc raised its mmap threshold to
    them and kept them); memory freed between batches is reused without page faults (before,
    holding the mmap threshold left the trim threshold at 128 KiB: each batch's memory went back
    and was faulted in again)."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")}
    share = float(subprocess.run([sys.executable, "-c", script], env=env | user_env, capture_output=True, text=True,
                                 check=True).stdout)
    assert share > 0.75 if high else share < 0.1

_FORKED_QUERIES = """
import glob, os
import pyarrow as pa
from ecomm_assets.core import duck
from ecomm_assets.core.storage import MACHINE_STAGING, owner, sweep_folder

def spill(process=None):
    return glob.glob(os.path.join(MACHINE_STAGING, (process or owner()) + "~spill-*"))

assert duck.query("SELECT sum(n) AS s FROM t", t=pa.table({"n": [1, 2]}))["s"].to_pylist() == [3]
parent = spill()
child = os.fork()
if child == 0:  # a forked child ends as multiprocessing's do (os._exit: DuckDB cannot finalize after a fork)
    ok = duck.query("SELECT 1 AS one")["one"].to_pylist() == [1] and duck.connect().sql("SELECT 2").fetchall() == [(2,)]
    os._exit(0 if ok and len(spill()) == 1 and spill() != parent else 1)
assert os.waitpid(child, 0)[1] == 0
child_spill = spill(owner().rsplit("~", 1)[0] + f"~{child}")
assert spill() == parent and len(parent) == 1 and len(child_spill) == 1, (spill(), parent, child_spill)
assert child_spill[0] in sweep_folder(MACHINE_STAGING) and spill() == parent  # a dead process's: swept
assert duck.query("SELECT 3 AS three")["three"].to_pylist() == [3]
print("ok")
"""


@pytest.mark.skipif(platform.system() == "Windows", reason="os.fork")
def test_a_forked_child_queries_on_databases_of_its_own_and_leaves_the_parents_alone():
    """A process that queried forks: the child's queries open databases of its own (freeing the
    inherited ones would hang it), with a spill folder of its own, which the sweep removes once the
    child is gone; the parent's database and spill folder stay, and the parent goes on querying."""
    run = subprocess.run([sys.executable, "-c", _FORKED_QUERIES], check=False, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]
