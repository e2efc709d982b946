"""Derived tables (kept per day in the lake, not partitioned by Dagster): the days a build takes in
each batch, and a range built in many batches giving the same tables as in one."""

import contextlib
from datetime import date, timedelta

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ecomm_assets.assets import days as days_module
from ecomm_assets.assets import lake as lake_assets
from ecomm_assets.assets.days import day_batches
from ecomm_assets_tests.conftest import arrow_peak, make_definitions

D = [date(2024, 1, 1) + timedelta(days=n) for n in range(5)]


@pytest.mark.parametrize(
    "sizes, budget, batches",
    [
        ([1, 1, 1, 1, 1], 10, [D]),  # all fit
        ([4, 4, 4, 4, 4], 8, [D[0:2], D[2:4], D[4:5]]),  # exactly full batches
        ([1, 20, 1, 1, 1], 8, [D[0:1], D[1:2], D[2:5]]),  # a day over the budget is a batch of its own
        ([0, 0, 0, 0, 0], 1, [D]),  # empty inputs
        ([5, 5, 5, 5, 5], 1, [[d] for d in D]),  # every day alone
    ],
    ids=["all-fit", "full-batches", "a-day-over-budget", "empty-days", "one-day-each"],
)
def test_a_build_takes_consecutive_days_up_to_the_budget_and_never_none(sizes, budget, batches):
    assert list(day_batches(D, dict(zip(D, sizes)), budget)) == batches


DERIVED = ["dim_products", "dim_customers", "sales_by_category", "product_performance", "top_customers",
           "daily_order_summary", "product_reviews", "rating_distribution", "rating_vs_sales"]


def test_a_range_built_in_one_batch_per_day_is_the_range_built_at_once(tmp_path, instance, monkeypatch):
    days = ["2024-01-14", "2024-01-15", "2024-01-16"]
    tags = {"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]}
    tables = {}
    for budget in (days_module.BATCH_INPUT_BYTES, 1):  # 1 byte: every day a batch of its own
        monkeypatch.setattr(days_module, "BATCH_INPUT_BYTES", budget)
        lake = tmp_path / str(budget) / "lake"
        job = make_definitions(lake, orders_per_day=60).resolve_implicit_global_asset_job_def()
        selection = [dg.AssetKey(k) for k in ("snapshots", "orders_raw", "order_lines", "orders", *DERIVED)]
        assert job.execute_in_process(instance=instance, tags=tags, asset_selection=selection).success
        tables[budget] = {
            table: duckdb.sql(f"SELECT * FROM '{lake}/processed/{table}/*/*.parquet' ORDER BY ALL").fetchall()
            for table in DERIVED
        }
        built = instance.get_latest_materialization_event(dg.AssetKey("sales_by_category")).asset_materialization
        assert built.metadata["built_days"].value == days
    assert all(tables[1][table] for table in DERIVED)
    assert tables[1] == tables[days_module.BATCH_INPUT_BYTES]


def test_derived_tables_query_a_days_files_without_holding_them(lake_dir):
    """A day of 36,000 orders: every derived table over order_lines, orders or product_reviews is
    built by a query that reads the day's files as it goes (bounded, spilling past its memory
    limit), so the Arrow memory its build takes stays far below the day's order lines (decoded,
    many times their file), whatever the day's size. Before, each build read its columns whole."""
    defs = make_definitions(lake_dir, orders_per_day=40_000)
    inputs = {dg.AssetKey(name) for name in ("snapshots", "orders_raw", "order_lines", "orders", "product_reviews")}
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection=inputs, asset_check_selection=set())
    assert job.execute_in_process(partition_key="2024-01-15", instance=dg.DagsterInstance.ephemeral()).success
    lines = (lake_dir / "processed" / "order_lines" / "dt=2024-01-15" / "part-00000.parquet").stat().st_size
    built = [name for name in DERIVED if name != "product_reviews"]
    peak = arrow_peak(lake_dir, 40_000, "2024-01-15", assets=built)
    assert all((lake_dir / "processed" / name / "dt=2024-01-15" / "part-00000.parquet").exists() for name in built)
    assert peak < lines / 2, (peak, lines)


def test_a_batchs_rows_are_not_held_while_the_next_batch_computes(lake_dir, instance, monkeypatch):
    """A build stages each batch's days as files and replaces them all at the end: the rows of a
    batch must be on disk, not in memory, by the time the next batch reads its inputs (the last day
    of a batch, left open, held the whole batch's output). Arrow's allocated bytes at each batch's
    start, against a day's rows in Arrow."""
    held, read_days = [], lake_assets.days_as_files

    @contextlib.contextmanager
    def days_as_files(*args, **kwargs):
        held.append(pa.total_allocated_bytes())
        with read_days(*args, **kwargs) as files:
            yield files

    monkeypatch.setattr(lake_assets, "days_as_files", days_as_files)
    monkeypatch.setattr(days_module, "BATCH_INPUT_BYTES", 1)  # every day a batch of its own
    job = make_definitions(lake_dir, orders_per_day=5_000).resolve_implicit_global_asset_job_def()
    tags = {"dagster/asset_partition_range_start": "2024-01-13", "dagster/asset_partition_range_end": "2024-01-15"}
    inputs = [dg.AssetKey(k) for k in ("snapshots", "orders_raw", "order_lines")]
    assert job.execute_in_process(instance=instance, tags=tags, asset_selection=inputs).success
    assert job.execute_in_process(instance=instance, asset_selection=[dg.AssetKey("dim_customers")]).success
    days = sorted((lake_dir / "processed" / "dim_customers").glob("dt=*/part-00000.parquet"))
    assert len(days) == len(held) == 3
    a_day = min(pq.read_table(day).nbytes for day in days)
    assert max(held) < a_day / 4, (held, a_day)
