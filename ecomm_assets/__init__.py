"""ecomm-assets: a Dagster-native e-commerce order lake.

`defs` is built on first access, so that the pure data code (`ecomm_assets.core`) imports
without loading Dagster: scripts, benchmarks and the Lambda bridge's tests stay light.
"""


def __getattr__(name: str):
    if name == "defs":
        from ecomm_assets.definitions import defs

        return defs
    raise AttributeError(f"module 'ecomm_assets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "defs"])
