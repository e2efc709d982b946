"""ecomm-assets: a Dagster-native e-commerce order lake.

`defs` is built on first access, so that the pure data code (`ecomm_assets.core`) imports
without loading Dagster: scripts, benchmarks and the Lambda bridge's tests stay light.
"""

import os
import warnings

# Arrow's default allocator (mimalloc) keeps the memory a step freed, so a long run's process grew
# from step to step; the system allocator gives it back. Read once, when pyarrow is first imported:
# hence here, before any module imports it. A value the user sets wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

# Dagster features this project chose on purpose, whose every use prints a Beta or Preview warning
# (24 blocks per command): silenced by message, so any other warning still shows.
KNOWN_DAGSTER_WARNINGS = (
    r"Parameter `backfill_policy` of (function|initializer) `[\w.]+` is currently in beta",
    r"Parameter `owners` of (function|initializer) `[\w.]+` is currently in beta",
    r"Parameter `include_sources` of function `AssetSelection.all` is currently in beta",  # the CLI's --select
    r"Specifying a partitions_def on an AssetCheckSpec is currently in preview",
)
for message in KNOWN_DAGSTER_WARNINGS:
    warnings.filterwarnings("ignore", message=message)


def __getattr__(name: str):
    if name == "defs":
        from ecomm_assets.definitions import defs

        return defs
    raise AttributeError(f"module 'ecomm_assets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "defs"])
