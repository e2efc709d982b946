"""The control for backfill_bench.py: ecomm-assets' asset graph (same keys, dependencies, daily
partitions, single-run backfill policy) with bodies that do nothing. Its run time is what Dagster's
own bookkeeping costs for that graph and range."""

import dagster as dg

from ecomm_assets.definitions import defs as project

_graph = project.resolve_asset_graph()


def _noop(key: dg.AssetKey) -> dg.AssetsDefinition:
    node = _graph.get(key)
    partitioned = node.partitions_def is not None

    @dg.asset(key=key, deps=list(node.parent_keys), partitions_def=node.partitions_def,
              backfill_policy=dg.BackfillPolicy.single_run() if partitioned else None)
    def noop(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"days": len(context.partition_keys) if partitioned else 0})

    return noop


defs = dg.Definitions(
    assets=[_noop(key) for key in _graph.materializable_asset_keys], executor=dg.in_process_executor
)
