"""Replacing a table's days (assets/days.py): what the run's metadata says of them."""

from datetime import date, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ecomm_assets.assets.days import DaysWritten, replace_days
from ecomm_assets.assets.metadata import PREVIEW_ROWS, preview
from ecomm_assets.core.storage import LakeStore

CONTRACT = pa.schema([pa.field("n", pa.int64(), nullable=False)])
DAYS = [date(2024, 1, 1) + timedelta(days=k) for k in range(3)]


def day_rows(count: int, start: int = 0) -> pa.Table:
    return pa.table({"n": pa.array(range(start, start + count), pa.int64())}, schema=CONTRACT)


# (label, each day's rows as (count, first value), staged as files or given as tables, the preview's values)
CASES = [
    ("the first day with rows, after an empty one", [(0, 0), (25, 100), (5, 500)], range(100, 100 + PREVIEW_ROWS)),
    ("no day with rows", [(0, 0), (0, 0), (0, 0)], None),
    ("the first day, fewer rows than a preview", [(3, 7), (25, 100), (0, 0)], range(7, 10)),
]


@pytest.mark.parametrize("staged", [True, False], ids=["staged files", "tables"])
@pytest.mark.parametrize("label, days, shown", CASES, ids=[c[0] for c in CASES])
def test_the_preview_shows_the_first_rows_of_the_first_day_that_has_rows(tmp_path, staged, label, days, shown):
    by_day = {}
    for day, (count, start) in zip(DAYS, days):
        by_day[day] = day_rows(count, start)
        if staged:
            by_day[day] = tmp_path / f"{day}.parquet"
            pq.write_table(day_rows(count, start), by_day[day])
    written = DaysWritten()
    replace_days(LakeStore.from_uri(str(tmp_path / "lake")), "t", CONTRACT, by_day, written)
    assert written.rows == {day: count for day, (count, _) in zip(DAYS, days)}
    expected = preview(day_rows(0) if shown is None else pa.table({"n": pa.array(shown, pa.int64())}))
    assert written.metadata(LakeStore.from_uri(str(tmp_path / "lake")), "t")["preview"] == expected
