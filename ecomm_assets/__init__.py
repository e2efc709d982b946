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

# glibc's malloc, held at two settings (mallopt's parameter numbers, from glibc's malloc.h):
# - mmap_threshold: a block larger than it is mapped on its own and unmapped when freed. glibc
#   raises it to each such block freed (up to 32 MiB), and then serves a step's large buffers from
#   heaps that keep what is freed between blocks still in use. Held, large blocks go back when freed.
# - trim_threshold: how much free memory at a heap's top is kept for the next blocks. glibc raises
#   it with the mmap threshold (to twice it); a held mmap threshold leaves it at 128 KiB, so the
#   memory of each batch's buffers went back to the system and came back as page faults.
# A setting the user gives glibc (MALLOC_<NAME>_ or GLIBC_TUNABLES, read at start-up) wins; other C
# libraries are left as they are.
MALLOC_SETTINGS = {"mmap_threshold": (-3, 2 * 2**20), "trim_threshold": (-1, 8 * 2**20)}


def _hold_malloc_settings() -> None:
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):  # a system without that name: not glibc
        return
    if not libc.startswith("glibc"):
        return
    for name, (parameter, value) in MALLOC_SETTINGS.items():
        if f"MALLOC_{name.upper()}_" not in os.environ and f"glibc.malloc.{name}" not in os.environ.get("GLIBC_TUNABLES", ""):
            ctypes.CDLL(None).mallopt(parameter, value)


_hold_malloc_settings()

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
