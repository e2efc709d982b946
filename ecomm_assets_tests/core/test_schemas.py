from datetime import UTC, date, datetime
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ecomm_assets.core.schemas import (
    ANALYTICS,
    CONTRACTS,
    LANDED_FILES,
    ORDERS,
    ContractViolation,
    MissingDescription,
    column_descriptions,
    conform,
    described,
    schema_differences,
)
from ecomm_assets.core.storage import conform_parquet_file

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


EVERY_CONTRACT = {**CONTRACTS, **ANALYTICS, "landed_files": LANDED_FILES}


@pytest.mark.parametrize("name", EVERY_CONTRACT)
def test_every_column_of_every_contract_has_a_description(name):
    contract = EVERY_CONTRACT[name]
    descriptions = column_descriptions(contract)
    assert list(descriptions) == contract.names
    assert all(text.strip() for text in descriptions.values())


def test_a_column_without_a_description_is_named():
    schema = pa.schema([described("id", pa.string(), "The id."), pa.field("price", pa.decimal128(18, 2))])
    with pytest.raises(MissingDescription, match="column price has no description"):
        column_descriptions(schema)
    with pytest.raises(MissingDescription, match="column id has no description"):
        column_descriptions(pa.schema([described("id", pa.string(), " ")]))


def _row(contract: pa.Schema) -> dict:
    values = {pa.types.is_string: "x", pa.types.is_boolean: True, pa.types.is_integer: 1,
              pa.types.is_floating: 0.5, pa.types.is_decimal: Decimal("1.25"), pa.types.is_date: date(2024, 1, 15),
              pa.types.is_timestamp: datetime(2024, 1, 15, 10, tzinfo=UTC)}
    return {f.name: next(v for test, v in values.items() if test(f.type)) for f in contract}


@pytest.mark.parametrize("name", EVERY_CONTRACT)
def test_descriptions_survive_conform_and_a_parquet_round_trip(name, tmp_path):
    contract = EVERY_CONTRACT[name]
    expected = column_descriptions(contract)
    # As DuckDB gives it: the contract's columns, all nullable, without metadata.
    plain = pa.Table.from_pylist([_row(contract)], pa.schema([pa.field(f.name, f.type) for f in contract]))
    conformed = conform(plain, contract, f"{name} 2024-01-15")
    assert column_descriptions(conformed.schema) == expected
    assert column_descriptions(conform(plain.to_batches()[0], contract, f"{name} 2024-01-15").schema) == expected
    pq.write_table(conformed, tmp_path / "part.parquet")
    assert column_descriptions(pq.read_table(tmp_path / "part.parquet").schema) == expected
    # A staged file written without them (DuckDB's COPY) gets them when it is conformed.
    pq.write_table(plain, tmp_path / "staged.parquet")
    staged, _ = conform_parquet_file(tmp_path / "staged.parquet", contract, f"{name} 2024-01-15")
    assert column_descriptions(pq.read_schema(staged)) == expected
