"""The lake's layout: paths made in one place, and parsed back the same way."""

from datetime import UTC, date, datetime

import pytest

from ecomm_assets.core import layout


@pytest.mark.parametrize(
    "path, day",
    [
        ("processed/orders/dt=2024-01-15/part-00000.parquet", date(2024, 1, 15)),
        ("raw/orders/dt=2024-02-29/landing-x.jsonl", date(2024, 2, 29)),
        ("processed/orders/dt=2023-02-29/part-00000.parquet", None),  # not a day
        ("processed/orders/part-00000.parquet", None),
        ("processed/orders/day=2024-01-15/part-00000.parquet", None),
        ("processed", None),
    ],
)
def test_partition_day_reads_the_dt_folder(path, day):
    assert layout.partition_day(path) == day


def test_every_path_of_a_day_is_under_its_dt_folder():
    day = date(2024, 1, 15)
    for path in (layout.table_path("orders", day), layout.counts_path("order_lines", day),
                 layout.quarantine_path("order_lines", day), layout.collection_path("users", day)):
        assert layout.partition_day(path) == day and "/dt=2024-01-15/" in path
    assert layout.table_path("orders", day) == "processed/orders/dt=2024-01-15/part-00000.parquet"
    assert layout.collection_path("users", day) == "raw/users/dt=2024-01-15/users.json"


@pytest.mark.parametrize(
    "landed_at",
    [datetime(2024, 1, 15, 10, 0, tzinfo=UTC), datetime(2024, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)],
)
def test_a_landed_files_raw_name_carries_its_landing_time_exactly(landed_at):
    name = layout.landing_raw_name(landed_at, "0123456789abcdef")
    assert layout.landed_at_of_raw_name(name) == landed_at
    assert layout.source_label(name) == name.removesuffix(".jsonl")


@pytest.mark.parametrize("name", ["synthetic.jsonl", "dummyjson.jsonl", "landing-20240115T100000Z-ab.jsonl"])
def test_other_raw_names_carry_no_landing_time(name):
    assert layout.landed_at_of_raw_name(name) is None


@pytest.mark.parametrize(
    "name, hidden, taken",
    [
        ("day.json", False, True), ("2024/01/DAY.NDJSON.GZ", False, True), ("day.csv", False, False),
        (".day.json", True, False), ("_tmp/day.json", True, False), ("a/.x/b.jsonl", True, False),
        ("a_b/c.json", False, True), ("a./b.json", False, True),
    ],
)
def test_hidden_names_and_suffixes(name, hidden, taken):
    assert (layout.is_hidden_name(name), layout.is_landing_file(name)) == (hidden, taken)
