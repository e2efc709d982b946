"""Metadata users want to see on a materialization: counts, a preview, where the data is."""

from __future__ import annotations

import functools
from collections.abc import Callable

import dagster as dg
import pyarrow as pa

from ecomm_assets.core.schemas import (
    PERSONAL,
    POLICY,
    Policy,
    column_descriptions,
    column_policy,
)
from ecomm_assets.core.usage import DAYS, Usage, recording

PREVIEW_ROWS = 10
BUILT_DAYS = "built_days"  # the days a derived table's build wrote: what its checks evaluate, what its usage covers


def preview(table: pa.Table | None, rows: int = PREVIEW_ROWS) -> dg.MetadataValue:
    """The first rows as a markdown table; None: no rows."""
    if table is None or table.num_rows == 0:  # (a table without columns slices into rows of nothing)
        return dg.MetadataValue.md("_no rows_")
    head = table.slice(0, rows).to_pylist()
    columns = table.column_names
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row[c]) for c in columns) + " |" for row in head]
    return dg.MetadataValue.md("\n".join(lines))


def _cell(value: object) -> str:
    """A value as one markdown table cell: a '|' or a line break in it would end the cell or the row."""
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def reasons_table(reasons: dict[str, int]) -> dg.MetadataValue:
    if not reasons:
        return dg.MetadataValue.md("_nothing rejected_")
    rows = "\n".join(f"| {reason} | {count} |" for reason, count in reasons.items())
    return dg.MetadataValue.md(f"| reason | records |\n|---|---|\n{rows}")


def column_schema(contract: pa.Schema) -> dg.TableSchema:
    """A contract's columns (name, Arrow type, description, nullability, and for personal data the
    attribute and its policy as tags) for the asset page; a column without a description fails the
    definitions' load."""
    descriptions = column_descriptions(contract)
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=field.name,
                type=str(field.type),
                description=descriptions[field.name],
                constraints=dg.TableColumnConstraints(nullable=field.nullable),
                tags=_personal_tags(field),
            )
            for field in contract
        ]
    )


def _personal_tags(field: pa.Field) -> dict[str, str] | None:
    if column_policy(field) is Policy.KEEP:
        return None
    return {name: field.metadata[name.encode()].decode() for name in (PERSONAL, POLICY)}


def usage_metadata(usage: Usage, days: int) -> dict[str, int]:
    """A step's usage as materialization metadata: its figures and the days they are the total of."""
    return {**usage.as_metadata(), DAYS: days}


def with_usage(compute: Callable[..., dg.MaterializeResult]) -> Callable[..., dg.MaterializeResult]:
    """An asset's body, recording what its stores and catalog clients did (core/usage.py) into its
    materialization's metadata: usage/<area>/..., usage/s3/<request>, usage/glue/<operation>, and
    usage/days, the days they are the total of (a derived table's: the days it built). A range run's metadata (its totals, preview and
    usage) goes on its newest day only, the asset's latest materialization: Dagster would copy it
    onto every day's event, where it describes the run, not the day."""

    @functools.wraps(compute)
    def recorded(context: dg.AssetExecutionContext, *args, **kwargs) -> dg.MaterializeResult:
        with recording() as usage:
            result = compute(context, *args, **kwargs)
        keys = context.partition_keys if context.assets_def.partitions_def else []
        metadata = dict(result.metadata or {})
        built = metadata.get(BUILT_DAYS)
        metadata.update(usage_metadata(usage, len(built.value) if built else len(keys)))
        if len(keys) > 1:
            context.add_asset_metadata(metadata, partition_key=keys[-1])
            metadata = {}
        return dg.MaterializeResult(
            asset_key=result.asset_key, metadata=metadata,
            check_results=result.check_results, data_version=result.data_version, tags=result.tags,
        )

    return recorded
