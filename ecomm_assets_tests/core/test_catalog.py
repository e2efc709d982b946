from datetime import date, timedelta

import boto3
import pyarrow as pa
import pytest

from ecomm_assets.core.catalog import (
    PARQUET_INPUT, PARQUET_SERDE, BreakingSchemaChange, CatalogTable, GlueCatalog, glue_columns,
)
from ecomm_assets.core.schemas import ORDER_LINES

LOCATION = "s3://lake/prefix/processed/order_lines"
START = date(2024, 1, 1)


@pytest.fixture
def glue(aws):
    return boto3.client("glue", endpoint_url=aws, region_name="us-east-1")


def partitions(glue, table="order_lines"):
    pages = glue.get_paginator("get_partitions").paginate(DatabaseName="ecomm", TableName=table)
    return {p["Values"][0]: p["StorageDescriptor"] for page in pages for p in page["Partitions"]}


def test_glue_types_follow_the_arrow_schema():
    types = {c["Name"]: c["Type"] for c in glue_columns(ORDER_LINES)}
    assert types["order_id"] == "string" and types["line_number"] == "int"
    assert types["order_ts"] == "timestamp" and types["order_date"] == "date"
    assert types["unit_price"] == "decimal(18,4)" and types["line_total"] == "decimal(18,2)"
    assert types["discount_percent"] == "decimal(9,2)"
    assert types["year"] == "smallint" and types["hour"] == "tinyint"


def test_one_day_creates_database_table_and_partition(glue):
    report = GlueCatalog(glue, "ecomm", START).sync([CatalogTable("order_lines", ORDER_LINES, LOCATION)], [date(2024, 1, 15)])
    assert report.tables_created == ["order_lines"] and report.partitions_added == 1
    table = glue.get_table(DatabaseName="ecomm", Name="order_lines")["Table"]
    assert table["TableType"] == "EXTERNAL_TABLE"
    assert table["PartitionKeys"] == [{"Name": "dt", "Type": "date"}]
    storage = table["StorageDescriptor"]
    assert storage["Location"] == LOCATION + "/"
    assert storage["InputFormat"] == PARQUET_INPUT and storage["SerdeInfo"]["SerializationLibrary"] == PARQUET_SERDE
    assert [c["Name"] for c in storage["Columns"]] == ORDER_LINES.names
    parameters = table["Parameters"]
    assert parameters["classification"] == "parquet" and parameters["projection.dt.type"] == "date"
    assert parameters["projection.dt.range"] == "2024-01-01,NOW" and parameters["projection.dt.format"] == "yyyy-MM-dd"
    assert parameters["storage.location.template"] == LOCATION + "/dt=${dt}/"
    assert {k: v["Location"] for k, v in partitions(glue).items()} == {"2024-01-15": LOCATION + "/dt=2024-01-15/"}


def test_a_backfill_registers_in_batches_and_a_rerun_adds_nothing(glue):
    catalog = GlueCatalog(glue, "ecomm", START)
    days = [START + timedelta(days=n) for n in range(250)]  # three BatchCreatePartition calls
    table = CatalogTable("order_lines", ORDER_LINES, LOCATION)
    assert catalog.sync([table], days).partitions_added == 250
    again = catalog.sync([table], days)
    assert (again.partitions_added, again.partitions_updated, again.tables_updated) == (0, 0, [])
    found = partitions(glue)
    assert len(found) == 250
    assert all(found[str(d)]["Location"] == f"{LOCATION}/dt={d}/" for d in days)


def test_an_added_column_updates_the_table_and_its_partitions(glue):
    catalog = GlueCatalog(glue, "ecomm", START)
    catalog.sync([CatalogTable("order_lines", ORDER_LINES, LOCATION)], [date(2024, 1, 15)])
    wider = ORDER_LINES.append(pa.field("coupon", pa.string()))
    report = catalog.sync([CatalogTable("order_lines", wider, LOCATION)], [date(2024, 1, 15), date(2024, 1, 16)])
    assert report.tables_updated == ["order_lines"]
    assert (report.partitions_added, report.partitions_updated) == (1, 1)
    columns = glue.get_table(DatabaseName="ecomm", Name="order_lines")["Table"]["StorageDescriptor"]["Columns"]
    assert columns[-1] == {"Name": "coupon", "Type": "string"}
    assert all(p["Columns"][-1]["Name"] == "coupon" for p in partitions(glue).values())


def test_a_breaking_change_is_refused_with_a_clear_error(glue):
    catalog = GlueCatalog(glue, "ecomm", START)
    catalog.sync([CatalogTable("order_lines", ORDER_LINES, LOCATION)], [date(2024, 1, 15)])
    retyped = ORDER_LINES.set(ORDER_LINES.get_field_index("quantity"), pa.field("quantity", pa.float64()))
    with pytest.raises(BreakingSchemaChange, match="changes quantity from int to double"):
        catalog.sync([CatalogTable("order_lines", retyped, LOCATION)], [date(2024, 1, 15)])
    with pytest.raises(BreakingSchemaChange, match="drops brand"):
        catalog.sync([CatalogTable("order_lines", ORDER_LINES.remove(ORDER_LINES.get_field_index("brand")), LOCATION)], [])


def test_partition_projection_is_optional(glue):
    GlueCatalog(glue, "ecomm", projection_start=None).sync([CatalogTable("order_lines", ORDER_LINES, LOCATION)], [date(2024, 1, 15)])
    parameters = glue.get_table(DatabaseName="ecomm", Name="order_lines")["Table"]["Parameters"]
    assert parameters["classification"] == "parquet"
    assert not any(key.startswith(("projection.", "storage.location")) for key in parameters)
