"""Pure data logic: no Dagster import, Arrow tables and dicts in and out."""
