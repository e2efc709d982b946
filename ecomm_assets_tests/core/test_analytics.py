"""Analytics read only the columns their queries use: core/scans.columns_read finds them from the
query's parse tree, and every analytics query runs on its inputs cut to those columns."""

from datetime import date

import pyarrow as pa
import pytest

from ecomm_assets.core import analytics
from ecomm_assets.core.scans import columns_read
from ecomm_assets.core.schemas import (
    ANALYTICS,
    DIM_USER_PROFILES,
    ENGAGEMENT_ANALYTICS,
    LAKE_TABLES,
    PURCHASE_ANALYTICS,
)

SCHEMAS = {"t": pa.schema([("k", pa.int64()), ("a", pa.int64()), ("b", pa.string()), ("unused", pa.int64())]),
           "u": pa.schema([("k", pa.int64()), ("c", pa.int64()), ("tags", pa.list_(pa.string())), ("spare", pa.int64())])}


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT a FROM t", {"t": ["a"]}),
        ("SELECT x.a, sum(x.b) AS total FROM t x GROUP BY ALL ORDER BY total", {"t": ["a", "b"]}),
        ("SELECT * FROM t", {"t": ["k", "a", "b", "unused"]}),
        ("SELECT t.* FROM t JOIN u USING (k)", {"t": ["k", "a", "b", "unused"], "u": ["k", "c", "tags", "spare"]}),
        ("SELECT a, c FROM t JOIN u USING (k)", {"t": ["k", "a"], "u": ["k", "c"]}),  # a USING column is read
        ("SELECT count(*) FROM t WHERE b IS NOT NULL", {"t": ["b"]}),
        ("SELECT unnest(tags) AS tag FROM u", {"u": ["tags"]}),
        ("WITH w AS (SELECT k, a FROM t) SELECT (SELECT count(*) FROM u WHERE u.k = w.k) FROM w", {"t": ["k", "a"], "u": ["k"]}),
        ("SELECT a FROM t, other", {"t": ["a"]}),  # a table it does not know is not its to read
        ("SELECT 1", {}),
    ],
    ids=["column", "qualified and aliased", "star", "qualified star", "using", "count star", "unnest",
         "subquery", "unknown table", "no table"],
)
def test_columns_read_are_those_the_query_mentions(sql, expected):
    assert columns_read(sql, SCHEMAS) == expected


@pytest.mark.parametrize("name", [*ANALYTICS, *ENGAGEMENT_ANALYTICS, *PURCHASE_ANALYTICS])
def test_every_analytics_query_runs_on_its_inputs_cut_to_the_columns_it_reads(name):
    """A column the query needs but that was not read fails it (DuckDB cannot bind it)."""
    inputs = {table: LAKE_TABLES[table].empty_table().select(columns)
              for table, columns in analytics.columns_read_by(name).items()}
    assert inputs and all(columns for columns in analytics.columns_read_by(name).values())
    days = [date(2024, 1, 1)]
    if name in ANALYTICS:
        result = analytics.build_analytics(name, inputs, days)
    elif name in ENGAGEMENT_ANALYTICS:
        result = analytics.build_engagement_analytics(name, inputs)
    else:
        result = analytics.build_purchase_analytics(name, inputs["purchase_events"], DIM_USER_PROFILES.empty_table(), days)
    assert result.schema == (ANALYTICS | ENGAGEMENT_ANALYTICS | PURCHASE_ANALYTICS)[name]


def test_the_order_analytics_read_a_few_of_order_lines_columns():
    read = analytics.columns_read_by("sales_by_category")
    assert read == {"order_lines": ["order_id", "order_date", "category", "quantity", "line_total"]}
    assert len(LAKE_TABLES["order_lines"].names) > 20
