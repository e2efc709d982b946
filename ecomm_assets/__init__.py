"""ecomm-assets: a Dagster-native e-commerce order lake.

`defs` is built on first access, so that the pure data code (`ecomm_assets.core`) imports
without loading Dagster: scripts, benchmarks and the Lambda bridge's tests stay light.
"""

import ctypes
import os
import warnings

# Arrow's default allocator (mimalloc) keeps the memory a step freed, so a long run's process grew
# from step to step; the system allocator gives it back. Read once, when pyarrow is first imported:
# hence here, before any module imports it. A value the user sets wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

# glibc's malloc maps a block larger than its mmap threshold on its own and unmaps it when freed,
# but raises the threshold to each such block freed (up to 32 MiB): the system allocator then
# serves a step's large buffers from heaps that keep what is freed between blocks still in use.
# Held at a fixed value, large blocks go back when freed. A threshold the user gives glibc
# (MALLOC_MMAP_THRESHOLD_ or GLIBC_TUNABLES, read at start-up) wins; other C libraries are left as
# they are.
MMAP_THRESHOLD_BYTES = 2 * 2**20
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h


def _hold_mmap_threshold() -> None:
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "glibc.malloc.mmap_threshold" in os.environ.get("GLIBC_TUNABLES", ""):
        return
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):  # a system without that name: not glibc
        return
    if libc.startswith("glibc"):
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


_hold_mmap_threshold()

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
