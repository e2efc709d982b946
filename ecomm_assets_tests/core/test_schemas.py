from decimal import Decimal

import pyarrow as pa
import pytest

from ecomm_assets.core.schemas import (
    ORDERS,
    ContractViolation,
    conform,
    schema_differences,
)

CONTRACT = pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("price", pa.decimal128(18, 2))])


@pytest.mark.parametrize(
    ("actual", "problems"),
    [
        (CONTRACT, []),
        (pa.schema([pa.field("id", pa.string()), pa.field("price", pa.decimal128(18, 2))]),
         ["column id is nullable, contract says not nullable"]),
        (pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("price", pa.decimal128(18, 2), nullable=False)]),
         ["column price is not nullable, contract says nullable"]),
        (pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("price", pa.float64())]),
         ["column price is double, contract says decimal128(18, 2)"]),
        (pa.schema([pa.field("id", pa.string(), nullable=False)]), ["missing column price (decimal128(18, 2))"]),
        (pa.schema([pa.field("price", pa.decimal128(18, 2)), pa.field("id", pa.string(), nullable=False)]),
         ["column order ['price', 'id'] differs from contract ['id', 'price']"]),
    ],
)
def test_schema_differences_compare_names_types_nullability_and_order(actual, problems):
    assert schema_differences(actual, CONTRACT) == problems


def test_conform_gives_an_all_nullable_result_the_contract_schema():
    duckdb_like = pa.table({"price": pa.array([Decimal("1.50"), None], pa.decimal128(18, 2)), "id": ["a", "b"]})
    conformed = conform(duckdb_like, CONTRACT, "t 2024-01-15")
    assert conformed.schema == CONTRACT and conformed.to_pydict() == {"id": ["a", "b"], "price": [Decimal("1.50"), None]}
    assert conform(ORDERS.empty_table(), ORDERS, "orders 2024-01-15").schema == ORDERS


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pa.table({"id": ["a", None], "price": pa.array([1, 2], pa.decimal128(18, 2))}),
         r"orders 2024-01-15: null values in columns the contract says are never null: id \(1 nulls\)"),
        (pa.table({"id": ["a"]}), r"orders 2024-01-15: missing columns \['price'\], unexpected columns \[\]"),
        (pa.table({"id": ["a"], "price": pa.array([1], pa.decimal128(18, 2)), "extra": [1]}),
         r"unexpected columns \['extra'\]"),
        (pa.table({"id": ["a"], "price": ["not a number"]}), r"orders 2024-01-15: column price does not fit decimal128\(18, 2\)"),
    ],
)
def test_data_that_breaks_the_contract_fails_naming_table_day_and_column(table, message):
    with pytest.raises(ContractViolation, match=message):
        conform(table, CONTRACT, "orders 2024-01-15")
    with pytest.raises(ContractViolation, match=message):
        conform(table.to_batches()[0], CONTRACT, "orders 2024-01-15")
