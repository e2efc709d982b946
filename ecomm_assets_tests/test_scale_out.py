"""Scale-out backfills (ECOMM_BACKFILL_DAYS_PER_RUN): a backfill split into runs of a few days, as the
daemon launches it, writes the same lake as one run for the whole range."""

import contextlib
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.backfill import execute_backfill_iteration

from ecomm_assets.core.layout import raw_orders_dir, table_dir
from ecomm_assets.core.schemas import USAGE_TABLES
from ecomm_assets_tests.conftest import PROJECT, project_loaded_with

DAYS = ["2024-03-01", "2024-03-02", "2024-03-03"]
RANGE_TAGS = {"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[-1]}
# The usage asset's tables are the runs' own measurement (requests a run makes): more runs, more requests.
RUN_MEASUREMENTS = tuple(table_dir(table) for table in USAGE_TABLES)


# The daemon's instance is SQLite files (a file per run); on a busy disk their commits cost more than
# the runs: in memory (tmpfs) where the machine has it.
FAST_TEMPORARY_FOLDER = "/dev/shm" if Path("/dev/shm").is_dir() else None


def settings(folder: Path, **more: str) -> dict[str, str]:
    return {"ECOMM_LAKE_URI": str(folder / "lake"), "ECOMM_DUCKDB_CATALOG": str(folder / "catalog.duckdb"),
            "ECOMM_ALERTS_PATH": str(folder / "alerts.jsonl"), "ECOMM_ORDERS_PER_DAY": "30", **more}


def policies(definitions: dg.Definitions) -> dict[str, tuple[bool, dg.BackfillPolicy]]:
    graph = definitions.resolve_asset_graph()
    return {key.to_user_string(): (graph.get(key).partitions_def is not None, graph.get(key).backfill_policy)
            for key in graph.materializable_asset_keys}


def test_the_setting_batches_every_daily_asset_and_leaves_the_others_one_run():
    with project_loaded_with(ECOMM_BACKFILL_DAYS_PER_RUN="30"):
        from ecomm_assets.definitions import defs as batched
    with project_loaded_with():
        from ecomm_assets.definitions import defs as single
    batched_policies, single_policies = policies(batched), policies(single)
    assert batched_policies.keys() == single_policies.keys()
    daily = {key for key, (partitioned, _) in batched_policies.items() if partitioned}
    assert daily == {"snapshots", "orders_raw", "order_lines", "orders", "purchase_events"}
    assert {key: policy for key, (_, policy) in batched_policies.items()} == {
        key: dg.BackfillPolicy.multi_run(30) if key in daily else dg.BackfillPolicy.single_run() for key in batched_policies}
    assert {policy for _, policy in single_policies.values()} == {dg.BackfillPolicy.single_run()}
    # The jobs (schedules, the sensors' recompute ranges) still resolve: one policy among their daily assets.
    assert {job.name for job in batched.resolve_all_job_defs()} == {job.name for job in single.resolve_all_job_defs()}


def lake_files(lake: Path) -> dict[str, Path]:
    """Every file of the lake by its path inside it, but for locks and staging (hidden folders) and
    the runs' own measurements."""
    return {str(path.relative_to(lake)): path for path in lake.rglob("*") if path.is_file()
            and not any(part.startswith(".") for part in path.relative_to(lake).parts)
            and not str(path.relative_to(lake)).startswith(RUN_MEASUREMENTS)}


def content(path: Path):
    """What a file holds: a Parquet file's rows and schema (not its writer's metadata), a JSON
    document's value, other files' bytes."""
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        return table.schema.remove_metadata(), table.to_pylist()
    if path.suffix in (".json", ".jsonl"):
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.suffix == ".jsonl" \
            else json.loads(path.read_text())
    return path.read_bytes()


def land_orders(folder: Path) -> None:
    """A producer's file already landed on the middle day, as the ingest leaves it in raw/: a good
    order and one with an unreadable quantity, which order_lines quarantines."""
    day = DAYS[1]
    customer = {"customer_id": "c9", "name": "Eve", "email": "e@x", "address": {"city": "Oslo", "country": "Norway"}}
    orders = [
        {"order_id": "LAND-1", "order_date": f"{day}T10:00:00Z", "total_amount": 12.5, "customer": customer,
         "products": [{"product_id": "p7", "name": "Mug", "category": "kitchen", "price": 6.25, "quantity": 2}]},
        {"order_id": "LAND-2", "order_date": f"{day}T11:00:00Z", "total_amount": 6.25, "customer": customer,
         "products": [{"product_id": "p7", "name": "Mug", "category": "kitchen", "price": 6.25, "quantity": "two"}]},
    ]
    raw = folder / "lake" / raw_orders_dir(day)
    raw.mkdir(parents=True)
    (raw / "landing-20240302T120000.000000Z-0a1b2c.jsonl").write_text("".join(json.dumps(o) + "\n" for o in orders))


def single_run_backfill(folder: Path) -> None:
    """What `dagster asset materialize --select '*' --partition-range` runs: every asset, one run."""
    with project_loaded_with(**settings(folder)), dg.DagsterInstance.ephemeral() as instance:
        from ecomm_assets.definitions import defs

        job = defs.resolve_implicit_global_asset_job_def()
        assert job.execute_in_process(instance=instance, tags=RANGE_TAGS).success


def batched_backfill(folder: Path, days_per_run: int):
    """What the UI's "Materialize all" of the range launches, handled by the daemon's backfill loop
    on a code location started with ECOMM_BACKFILL_DAYS_PER_RUN: the backfill's runs, in launch
    order, and the asset graph the daemon saw."""
    environment = settings(folder, ECOMM_BACKFILL_DAYS_PER_RUN=str(days_per_run), ECOMM_LANDING_SENSOR="off")
    with contextlib.ExitStack() as stack:
        stack.enter_context(project_loaded_with(**environment))
        # The runs the backfill submits execute in this process, one after another, as soon as submitted.
        storage = stack.enter_context(tempfile.TemporaryDirectory(dir=FAST_TEMPORARY_FOLDER))
        instance = stack.enter_context(dg.instance_for_test(
            temp_dir=storage, synchronous_run_coordinator=True, synchronous_run_launcher=True))
        origin = InProcessCodeLocationOrigin(LoadableTargetOrigin(
            executable_path=sys.executable, module_name="ecomm_assets", attribute="defs", working_directory=str(PROJECT)),
            location_name="ecomm_assets")
        workspace = stack.enter_context(create_test_daemon_workspace_context(InProcessWorkspaceLoadTarget([origin]), instance))
        graph = workspace.create_request_context().asset_graph
        instance.add_backfill(PartitionBackfill.from_asset_partitions(
            backfill_id="batched", asset_graph=graph, partition_names=DAYS, asset_selection=list(graph.materializable_asset_keys),
            backfill_timestamp=time.time(), tags={}, dynamic_partitions_store=instance, all_partitions=False, title=None,
            description=None, run_config=None))
        for _ in range(20):  # each iteration launches the runs whose parents are done
            list(execute_backfill_iteration(workspace, logging.getLogger("backfill")))
            if instance.get_backfill("batched").status != BulkActionStatus.REQUESTED:
                break
        assert instance.get_backfill("batched").status == BulkActionStatus.COMPLETED_SUCCESS
        return list(reversed(instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": "batched"})))), graph


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_backfill_in_batches_of_days_writes_the_same_lake_as_one_run(tmp_path):
    for lake in ("single", "batched"):
        land_orders(tmp_path / lake)
    single_run_backfill(tmp_path / "single")
    runs, graph = batched_backfill(tmp_path / "batched", days_per_run=2)

    # Batches of at most 2 days, each in runs tagged with its range and the backfill, for the run
    # queue; the unpartitioned assets once each, in runs without a range; every asset in a run
    # launched after (or in the same run as) its parents' run for the same days.
    assert {run.status for run in runs} == {dg.DagsterRunStatus.SUCCESS}
    assert all(run.tags["dagster/backfill"] == "batched" for run in runs)
    ranges = [(run.tags.get("dagster/asset_partition_range_start"), run.tags.get("dagster/asset_partition_range_end"))
              for run in runs]
    batches = [("2024-03-01", "2024-03-02"), ("2024-03-03", "2024-03-03")]
    whole = (None, None)
    assert sorted(set(ranges) - {whole}) == batches
    materializable = graph.materializable_asset_keys
    daily = {key for key in materializable if graph.get(key).partitions_def is not None}
    launched = [(key, days, index) for index, (run, days) in enumerate(zip(runs, ranges)) for key in run.asset_selection]
    for batch in batches:
        assert sorted(key for key, days, _ in launched if days == batch) == sorted(daily)
    assert sorted(key for key, days, _ in launched if days == whole) == sorted(materializable - daily)
    for key, days, index in launched:
        for parent in graph.get(key).parent_keys & materializable:
            parent_runs = [i for p, d, i in launched if p == parent and (d == days or whole in (d, days))]
            assert parent_runs and max(parent_runs) <= index, (key, days, parent)

    single, batched = lake_files(tmp_path / "single" / "lake"), lake_files(tmp_path / "batched" / "lake")
    assert sorted(batched) == sorted(single)
    days_seen = {day for rel in single for day in DAYS if f"dt={day}" in rel}
    assert days_seen == set(DAYS) and any(rel.startswith("processed/order_lines/") for rel in single)
    assert [rel for rel in single if rel.startswith("quarantine/")] == [f"quarantine/order_lines/dt={DAYS[1]}/part-00000.jsonl"]
    assert [rel for rel in sorted(single) if content(single[rel]) != content(batched[rel])] == []
