"""The control for backfill_bench.py: ecomm-assets' asset graph (same keys, dependencies, daily
partitions, single-run backfill policy) with bodies that do nothing. Its run time is what Dagster's
own bookkeeping costs for that graph and range."""

import dagster as dg

from ecomm_assets.definitions import build_definitions
from ecomm_assets.partitions import DEFAULT_START_DATE, daily_partitions

_graph = build_definitions().resolve_asset_graph()
_partitions = daily_partitions(DEFAULT_START_DATE)


def _noop(key: dg.AssetKey) -> dg.AssetsDefinition:
    @dg.asset(key=key, deps=list(_graph.get(key).parent_keys), partitions_def=_partitions,
              backfill_policy=dg.BackfillPolicy.single_run())
    def noop(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"days": len(context.partition_keys)})

    return noop


defs = dg.Definitions(
    assets=[_noop(key) for key in _graph.materializable_asset_keys], executor=dg.in_process_executor
)
