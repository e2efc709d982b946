"""bench/noop_graph.py, the backfill benchmark's control, stays the project's graph doing nothing."""

import importlib.util

import dagster as dg

from ecomm_assets.definitions import defs
from ecomm_assets_tests.conftest import PROJECT


def test_the_control_graph_is_the_project_graph_and_runs_a_range_in_one_run():
    spec = importlib.util.spec_from_file_location("noop_graph", PROJECT / "bench" / "noop_graph.py")
    noop_graph = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(noop_graph)
    ours, control = defs.resolve_asset_graph(), noop_graph.defs.resolve_asset_graph()
    assert control.materializable_asset_keys == ours.materializable_asset_keys
    for key in ours.materializable_asset_keys:
        assert control.get(key).parent_keys == ours.get(key).parent_keys, key
        assert control.get(key).partitions_def == ours.get(key).partitions_def, key
        assert control.get(key).backfill_policy == ours.get(key).backfill_policy, key
    with dg.instance_for_test() as instance:
        job = noop_graph.defs.resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(
            instance=instance,
            tags={"dagster/asset_partition_range_start": "2024-01-01", "dagster/asset_partition_range_end": "2024-01-03"},
        )
        assert result.success
        records = instance.fetch_materializations(dg.AssetKey("orders"), limit=10).records
        assert sorted((r.partition_key, r.asset_materialization.metadata["dagster/row_count"].value) for r in records) == [
            ("2024-01-01", 0), ("2024-01-02", 0), ("2024-01-03", 0)]
