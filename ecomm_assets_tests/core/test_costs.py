"""The Athena bytes of sql/ queries (partition and column pruning from the real plan) and the
monthly estimate's arithmetic against a hand-computed price table."""

import json
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from ecomm_assets.core.costs import PriceTable, monthly_estimate, total
from ecomm_assets.core.layout import table_dir
from ecomm_assets.core.scans import scanned_bytes
from ecomm_assets.core.schemas import LAKE_TABLES
from ecomm_assets.core.storage import LakeStore
from ecomm_assets.definitions import ASSETS
from ecomm_assets_tests.conftest import make_definitions

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
DAYS = ["2024-01-14", "2024-01-15"]


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    lake_dir = tmp_path_factory.mktemp("scans") / "lake"
    resources = make_definitions(lake_dir, orders_per_day=50).resources
    with dg.DagsterInstance.ephemeral() as instance:
        for day in DAYS:
            assert dg.materialize(ASSETS, selection=dg.AssetSelection.assets("orders", "dim_products", "dim_customers").upstream(), partition_key=day,
                                  instance=instance, resources=resources).success
    return lake_dir


def chunks(lake, table, columns, days=DAYS):
    """Compressed bytes of `columns`' chunks in the days' files, read straight from the footers."""
    size = 0
    for day in days:
        metadata = pq.ParquetFile(lake / "processed" / table / f"dt={day}" / "part-00000.parquet").metadata
        for group in range(metadata.num_row_groups):
            size += sum(metadata.row_group(group).column(c).total_compressed_size
                        for c in range(metadata.num_columns) if metadata.row_group(group).column(c).path_in_schema in columns)
    return size


def scan(lake, sql):
    # Every table of the lake, as the usage asset passes them: only those the query reads count.
    store = LakeStore.from_uri(str(lake))
    files = {table: [f.path for f in store.list_files(table_dir(table), recursive=True)]
             for table in ("order_lines", "orders", "dim_products", "dim_customers")}
    return scanned_bytes({"query": sql}, store, files, LAKE_TABLES)["query"]


def test_a_sql_query_scans_its_columns_of_every_day(lake):
    sql = (SQL_DIR / "total_sales_by_category.sql").read_text()
    assert scan(lake, sql) == (chunks(lake, "order_lines", {"category", "order_id", "quantity", "line_total"}), 2, 2)


def test_one_days_column_scans_less_than_the_whole_table(lake):
    one_day = scan(lake, f"SELECT sum(quantity) FROM order_lines WHERE dt = DATE '{DAYS[1]}'")
    assert one_day == (chunks(lake, "order_lines", {"quantity"}, [DAYS[1]]), 1, 2)
    everything = scan(lake, "SELECT * FROM order_lines")
    assert 0 < one_day[0] < everything[0]
    assert everything[1] == 2


def test_a_query_of_a_table_the_lake_does_not_hold_says_so(lake):
    assert "usage_estimate does not exist" in scan(lake, "SELECT count(*) FROM usage_estimate")


def test_the_estimate_is_the_price_table_times_the_figures():
    prices = PriceTable(s3_storage_per_gb_month=0.02, s3_put_copy_post_list_per_1000=0.01, s3_get_and_other_per_1000=0.001,
                        glue_requests_per_million=2.0, glue_free_requests_per_month=100, athena_per_tb_scanned=4.0,
                        athena_minimum_bytes_per_query=10 * 1024**2)
    per_day = {"usage/raw/bytes_written": 1024**3 / 10, "usage/processed/bytes_written": 1024**3 / 10,
               "usage/reports/bytes_written": 10**9, "usage/s3/put": 20, "usage/s3/list": 10, "usage/s3/copy": 0,
               "usage/s3/get": 100, "usage/s3/head": 50, "usage/glue/calls": 10}
    lines = monthly_estimate(per_day, prices, query_scans={"q.sql": 1024**2, "big.sql": 1024**4 / 300},
                             queries_per_day=2, listings_per_day=100)
    by_item = {line.item: line.monthly_usd for line in lines}
    assert by_item["storage"] == pytest.approx(0.2 * 30 * 0.02)  # reports are not kept data
    assert by_item["PUT, COPY, POST, LIST requests"] == pytest.approx((30 * 30 + 100 * 30) * 0.01 / 1000)
    assert by_item["GET, HEAD requests"] == pytest.approx(150 * 30 * 0.001 / 1000)
    assert by_item["Data Catalog requests"] == pytest.approx((300 - 100) * 2.0 / 1e6)
    assert by_item["sql/q.sql"] == pytest.approx(60 * 30 * 1024**2 / 1024**4 * 4.0)  # 30 MiB a run, over the minimum
    assert by_item["sql/big.sql"] == pytest.approx(60 * (1024**4 / 10) / 1024**4 * 4.0)
    small = monthly_estimate({}, prices, query_scans={"q.sql": 1})
    assert {line.item: line.monthly_usd for line in small}["sql/q.sql"] == pytest.approx(30 * 10 * 1024**2 / 1024**4 * 4.0)
    assert total(lines) == pytest.approx(sum(by_item.values()))


def test_a_price_file_overrides_some_prices():
    prices = PriceTable.from_json(json.dumps({"as_of": "2025-01-01", "athena_per_tb_scanned": 6.25}))
    assert (prices.athena_per_tb_scanned, str(prices.as_of)) == (6.25, "2025-01-01")
    assert prices.s3_get_and_other_per_1000 == PriceTable().s3_get_and_other_per_1000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"athena_per_tb": 5}', "unknown price keys"),
        ('{"athena_per_tb_scanned": "5"}', "must be a number"),
        ('{"athena_per_tb_scanned": -1}', "not negative"),
        ('{"as_of": "June"}', "Invalid isoformat"),
        ("[1, 2]", "JSON object"),
        ("{", "Expecting"),
    ],
)
def test_a_bad_price_file_is_refused(text, message):
    with pytest.raises(ValueError, match=message):
        PriceTable.from_json(text)
