from ecomm_assets.definitions import defs

__all__ = ["defs"]
