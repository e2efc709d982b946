"""Scale-out backfills (ECOMM_BACKFILL_DAYS_PER_RUN): a backfill split into runs of a few days, as the
daemon of `dagster dev` launches it, writes the same lake as one run for the whole range."""

import json
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from ecomm_assets.core.layout import FOOTER_SIZES_PATH, raw_orders_dir, table_dir
from ecomm_assets.core.schemas import USAGE_TABLES
from ecomm_assets_tests.conftest import (
    finished_backfill,
    graphql,
    launch_ui_backfill,
    project_loaded_with,
    running_project,
)

DAYS = ["2024-03-01", "2024-03-02", "2024-03-03"]
RANGE_TAGS = {"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[-1]}
# The usage asset's tables are the runs' own measurement (requests a run makes): more runs, more requests;
# its footer sizes are kept under the versions (times) of the files each run wrote.
RUN_MEASUREMENTS = (*(table_dir(table) for table in USAGE_TABLES), FOOTER_SIZES_PATH)


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


@pytest.mark.slow
def test_a_backfill_in_batches_of_days_writes_the_same_lake_as_one_run(tmp_path):
    for lake in ("single", "batched"):
        land_orders(tmp_path / lake)
    # What the UI's "Materialize all" of the range launches on a `dagster dev` started with
    # ECOMM_BACKFILL_DAYS_PER_RUN, handled by its daemon; the single run meanwhile, in this process.
    batched_settings = settings(tmp_path / "batched", ECOMM_BACKFILL_DAYS_PER_RUN="2", ECOMM_LANDING_SENSOR="off")
    with running_project(tmp_path / "batched", batched_settings) as url:
        backfill_id = launch_ui_backfill(url, DAYS)
        single_run_backfill(tmp_path / "single")
        backfill = finished_backfill(url, backfill_id)
        # The asset graph the code location serves: each materializable asset's key path, whether
        # it is partitioned, and its parents'.
        nodes = graphql(url, "{ assetNodes { assetKey { path } isMaterializable isPartitioned dependencyKeys { path } } }")
        graph = {tuple(node["assetKey"]["path"]): (node["isPartitioned"], {tuple(parent["path"]) for parent in node["dependencyKeys"]})
                 for node in nodes["assetNodes"] if node["isMaterializable"]}
    runs = backfill.runs

    # Batches of at most 2 days, each in runs tagged with its range and the backfill, for the run
    # queue; the unpartitioned assets once each, in runs without a range; every asset in a run
    # launched after (or in the same run as) its parents' run for the same days.
    assert backfill.status == "COMPLETED_SUCCESS"
    assert {run["status"] for run in runs} == {"SUCCESS"}
    assert all(run["tags"]["dagster/backfill"] == backfill.id for run in runs)
    ranges = [(run["tags"].get("dagster/asset_partition_range_start"), run["tags"].get("dagster/asset_partition_range_end"))
              for run in runs]
    batches = [("2024-03-01", "2024-03-02"), ("2024-03-03", "2024-03-03")]
    whole = (None, None)
    assert sorted(set(ranges) - {whole}) == batches
    materializable = set(graph)
    daily = {key for key, (partitioned, _) in graph.items() if partitioned}
    launched = [(tuple(path), days, index) for index, (run, days) in enumerate(zip(runs, ranges)) for path in run["assets"]]
    for batch in batches:
        assert sorted(key for key, days, _ in launched if days == batch) == sorted(daily)
    assert sorted(key for key, days, _ in launched if days == whole) == sorted(materializable - daily)
    for key, days, index in launched:
        for parent in graph[key][1] & materializable:
            parent_runs = [i for p, d, i in launched if p == parent and (d == days or whole in (d, days))]
            assert parent_runs and max(parent_runs) <= index, (key, days, parent)

    single, batched = lake_files(tmp_path / "single" / "lake"), lake_files(tmp_path / "batched" / "lake")
    assert sorted(batched) == sorted(single)
    days_seen = {day for rel in single for day in DAYS if f"dt={day}" in rel}
    assert days_seen == set(DAYS) and any(rel.startswith("processed/order_lines/") for rel in single)
    assert [rel for rel in single if rel.startswith("quarantine/")] == [f"quarantine/order_lines/dt={DAYS[1]}/part-00000.jsonl"]
    assert [rel for rel in sorted(single) if content(single[rel]) != content(batched[rel])] == []
