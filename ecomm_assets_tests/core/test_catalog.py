import os
import socket
import stat
import subprocess
import sys
import time
from datetime import date, timedelta

import boto3
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ecomm_assets.core.catalog import (
    PARQUET_INPUT,
    PARQUET_SERDE,
    BreakingSchemaChange,
    CatalogTable,
    DuckDBCatalog,
    GlueCatalog,
    glue_columns,
    sync_lock_path,
)
from ecomm_assets.core.schemas import (
    CONTRACTS,
    ENGAGEMENT,
    ENGAGEMENT_ANALYTICS,
    ORDER_LINES,
    column_descriptions,
    described,
)

LOCATION = "s3://lake/prefix/processed/order_lines"
START = date(2024, 1, 1)
COUPON = described("coupon", pa.string(), "The coupon code used.")


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


def test_engagement_tables_get_glue_types_athena_reads():
    posts = {c["Name"]: c["Type"] for c in glue_columns(ENGAGEMENT["posts"])}
    assert posts["tags"] == "array<string>" and posts["post_id"] == "string" and posts["views"] == "bigint"
    reviews = {c["Name"]: c["Type"] for c in glue_columns(ENGAGEMENT["product_reviews"])}
    assert reviews["rating"] == "tinyint" and reviews["review_ts"] == "timestamp" and reviews["snapshot_date"] == "date"


def test_engagement_tables_are_created_in_glue(glue):
    tables = [CatalogTable(name, schema, f"s3://lake/prefix/processed/{name}")
              for name, schema in {**ENGAGEMENT, **ENGAGEMENT_ANALYTICS}.items()]
    report = GlueCatalog(glue, "ecomm", START).sync(tables, [date(2024, 1, 15)])
    assert sorted(report.tables_created) == sorted(t.name for t in tables) and report.partitions_added == len(tables)
    columns = glue.get_table(DatabaseName="ecomm", Name="posts")["Table"]["StorageDescriptor"]["Columns"]
    assert {c["Name"]: c["Type"] for c in columns}["tags"] == "array<string>"
    assert [c["Name"] for c in columns] == ENGAGEMENT["posts"].names
    assert partitions(glue, "posts")["2024-01-15"]["Columns"] == columns


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


# The most entries one Glue call takes (AWS Glue API reference); moto takes any number, so the
# calls themselves are recorded and measured.
GLUE_LIMITS = {"BatchCreatePartition": ("PartitionInputList", 100), "BatchUpdatePartition": ("Entries", 100),
               "BatchGetPartition": ("PartitionsToGet", 1000)}


def record_batches(glue) -> dict[str, list[int]]:
    """The number of entries of every batch call the client makes from now on, by operation."""
    sizes = {operation: [] for operation in GLUE_LIMITS}
    for operation, (entries, _) in GLUE_LIMITS.items():
        def record(params, operation=operation, entries=entries, **_):
            sizes[operation].append(len(params[entries]))
        glue.meta.events.register(f"provide-client-params.glue.{operation}", record)
    return sizes


def assert_within_glue_limits(sizes: dict[str, list[int]]) -> None:
    for operation, (_, limit) in GLUE_LIMITS.items():
        assert all(size <= limit for size in sizes[operation]), (operation, sizes[operation])


def test_a_backfill_registers_in_batches_and_a_rerun_adds_nothing(glue):
    sizes = record_batches(glue)
    catalog = GlueCatalog(glue, "ecomm", START)
    days = [START + timedelta(days=n) for n in range(250)]
    table = CatalogTable("order_lines", ORDER_LINES, LOCATION)
    assert catalog.sync([table], days).partitions_added == 250
    assert_within_glue_limits(sizes)
    assert sizes["BatchCreatePartition"] == [100, 100, 50] and sum(sizes["BatchGetPartition"]) == 250
    assert sizes["BatchUpdatePartition"] == []
    found = partitions(glue)
    assert len(found) == 250
    assert all(found[str(d)]["Location"] == f"{LOCATION}/dt={d}/" for d in days)

    again = catalog.sync([table], days)
    assert (again.partitions_added, again.partitions_updated, again.tables_updated) == (0, 0, [])
    assert sizes["BatchCreatePartition"] == [100, 100, 50] and sizes["BatchUpdatePartition"] == []

    wider = CatalogTable("order_lines", ORDER_LINES.append(COUPON), LOCATION)
    assert catalog.sync([wider], days).partitions_updated == 250
    assert_within_glue_limits(sizes)
    assert sizes["BatchUpdatePartition"] == [100, 100, 50]
    assert all(p["Columns"][-1] == {"Name": "coupon", "Type": "string", "Comment": "The coupon code used."} for p in partitions(glue).values())


def test_an_added_column_updates_the_table_and_its_partitions(glue):
    catalog = GlueCatalog(glue, "ecomm", START)
    catalog.sync([CatalogTable("order_lines", ORDER_LINES, LOCATION)], [date(2024, 1, 15)])
    wider = ORDER_LINES.append(COUPON)
    report = catalog.sync([CatalogTable("order_lines", wider, LOCATION)], [date(2024, 1, 15), date(2024, 1, 16)])
    assert report.tables_updated == ["order_lines"]
    assert (report.partitions_added, report.partitions_updated) == (1, 1)
    columns = glue.get_table(DatabaseName="ecomm", Name="order_lines")["Table"]["StorageDescriptor"]["Columns"]
    assert columns[-1] == {"Name": "coupon", "Type": "string", "Comment": "The coupon code used."}
    assert all(p["Columns"][-1]["Name"] == "coupon" for p in partitions(glue).values())


def test_a_breaking_change_is_refused_with_a_clear_error(glue):
    catalog = GlueCatalog(glue, "ecomm", START)
    catalog.sync([CatalogTable("order_lines", ORDER_LINES, LOCATION)], [date(2024, 1, 15)])
    retyped = ORDER_LINES.set(ORDER_LINES.get_field_index("quantity"), described("quantity", pa.float64(), "Units."))
    with pytest.raises(BreakingSchemaChange, match="changes quantity from int to double"):
        catalog.sync([CatalogTable("order_lines", retyped, LOCATION)], [date(2024, 1, 15)])
    with pytest.raises(BreakingSchemaChange, match="drops brand"):
        catalog.sync([CatalogTable("order_lines", ORDER_LINES.remove(ORDER_LINES.get_field_index("brand")), LOCATION)], [])


def test_partition_projection_is_optional(glue):
    GlueCatalog(glue, "ecomm", projection_start=None).sync([CatalogTable("order_lines", ORDER_LINES, LOCATION)], [date(2024, 1, 15)])
    parameters = glue.get_table(DatabaseName="ecomm", Name="order_lines")["Table"]["Parameters"]
    assert parameters["classification"] == "parquet"
    assert not any(key.startswith(("projection.", "storage.location")) for key in parameters)


READER = """
import sys, duckdb
path = sys.argv[1]
con = duckdb.connect(path, read_only=True)
views = lambda c: sorted(r[0] for r in c.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall())
print(views(con), flush=True)
sys.stdin.readline()  # holds the file open until told to look again
print(views(con), flush=True)
con.close()
print(views(duckdb.connect(path, read_only=True)), flush=True)
"""


def test_a_reader_holding_the_duckdb_catalog_open_never_blocks_the_writer(tmp_path):
    """As the README recommends, a reader keeps data/catalog.duckdb open read-only in another
    process while a run syncs the catalog: the sync finishes at once, the reader keeps its snapshot,
    and sees the new views when it connects again."""
    path = str(tmp_path / "catalog.duckdb")
    lake = tmp_path / "lake" / "processed"
    tables = {name: CatalogTable(name, schema, str(lake / name)) for name, schema in CONTRACTS.items()}
    for name, schema in CONTRACTS.items():
        (lake / name / "dt=2024-01-15").mkdir(parents=True)
        pq.write_table(schema.empty_table(), lake / name / "dt=2024-01-15" / "part-00000.parquet")
    catalog = DuckDBCatalog(path)
    catalog.sync([tables["order_lines"]], [])
    reader = subprocess.Popen([sys.executable, "-c", READER, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "['order_lines']"
        started = time.monotonic()
        report = catalog.sync(list(tables.values()), [])
        assert time.monotonic() - started < 5
        assert report.tables_created == ["orders", "dim_products", "dim_customers"] and report.tables_updated == []
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert reader.stdout.readline().strip() == "['order_lines']"
        assert reader.stdout.readline().strip() == str(sorted(tables))
    finally:
        reader.kill()
        reader.wait()
    # No temporary file left beside it: the catalog and the lock its syncs take turns on.
    assert sorted(os.listdir(tmp_path)) == sorted(["catalog.duckdb", "lake", os.path.basename(sync_lock_path(str(path)))])


def test_a_copy_left_by_a_killed_sync_is_removed_by_the_next(tmp_path):
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    killed.kill()
    killed.wait()
    dead = tmp_path / f".catalog.duckdb.{socket.gethostname()}~{killed.pid}~abc123"
    alive = tmp_path / f".catalog.duckdb.{socket.gethostname()}~{os.getpid()}~def456"
    dead.write_bytes(b"half a database")
    alive.write_bytes(b"another sync, still running")
    DuckDBCatalog(str(tmp_path / "catalog.duckdb")).sync([], [])
    lock = os.path.basename(sync_lock_path(str(tmp_path / "catalog.duckdb")))
    assert sorted(os.listdir(tmp_path)) == sorted([alive.name, "catalog.duckdb", lock])


def test_a_table_without_partitions_yet_gets_its_duckdb_view_with_the_first(tmp_path):
    lake = tmp_path / "lake" / "processed"
    table = CatalogTable("orders", CONTRACTS["orders"], str(lake / "orders"))
    catalog = DuckDBCatalog(str(tmp_path / "catalog.duckdb"))
    assert catalog.sync([table], []).tables_created == []
    (lake / "orders" / "dt=2024-01-15").mkdir(parents=True)
    pq.write_table(CONTRACTS["orders"].empty_table(), lake / "orders" / "dt=2024-01-15" / "part-00000.parquet")
    assert catalog.sync([table], []).tables_created == ["orders"]


@pytest.mark.parametrize(
    "syncs, mode_between, expected",
    [
        (1, None, 0o640),  # a new catalog: 0666 less the umask (0027 here)
        (2, None, 0o640),  # rebuilt from its copy: still as created
        (2, 0o604, 0o604),  # rebuilt: the mode its owner gave it
    ],
)
def test_a_sync_keeps_the_duckdb_catalogs_mode(tmp_path, syncs, mode_between, expected):
    path = tmp_path / "catalog.duckdb"
    catalog = DuckDBCatalog(str(path))
    umask = os.umask(0o027)
    try:
        catalog.sync([], [])
        if mode_between is not None:
            path.chmod(mode_between)
        for _ in range(syncs - 1):
            catalog.sync([], [])
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == expected


def _glue_comments(glue, table="order_lines") -> dict[str, str | None]:
    columns = glue.get_table(DatabaseName="ecomm", Name=table)["Table"]["StorageDescriptor"]["Columns"]
    return {c["Name"]: c.get("Comment") for c in columns}


def test_glue_columns_carry_their_description_and_personal_data_policy(glue):
    catalog = GlueCatalog(glue, "ecomm", START)
    catalog.sync([CatalogTable("order_lines", ORDER_LINES, LOCATION)], [date(2024, 1, 15)])
    comments = _glue_comments(glue)
    assert comments == column_descriptions(ORDER_LINES)
    assert comments["customer_email"] == ("The customer's email address, as the order gives it. "
                                          "Personal data: hashed (HMAC-SHA256, hex; case and surrounding spaces ignored).")
    assert comments["customer_name"].endswith("Personal data: masked (initials).")
    assert [c.get("Comment") for c in partitions(glue)["2024-01-15"]["Columns"]] == list(comments.values())


def test_a_glue_table_made_before_comments_gets_them_once(glue):
    """A catalog synced by an earlier version (columns without comments) gets them, on the table and
    its partitions, at the next sync; the sync after changes nothing."""
    catalog = GlueCatalog(glue, "ecomm", START)
    table = CatalogTable("order_lines", ORDER_LINES, LOCATION)
    bare = [{"Name": c["Name"], "Type": c["Type"]} for c in glue_columns(ORDER_LINES)]
    glue.create_database(DatabaseInput={"Name": "ecomm"})
    glue.create_table(DatabaseName="ecomm", TableInput=catalog._table_input(table, bare))
    glue.batch_create_partition(DatabaseName="ecomm", TableName="order_lines", PartitionInputList=[
        {"Values": ["2024-01-15"], "StorageDescriptor": catalog._storage(bare, f"{LOCATION}/dt=2024-01-15/")}])
    report = catalog.sync([table], [date(2024, 1, 15)])
    assert (report.tables_updated, report.partitions_updated) == (["order_lines"], 1)
    assert _glue_comments(glue) == column_descriptions(ORDER_LINES)
    again = catalog.sync([table], [date(2024, 1, 15)])
    assert (again.tables_updated, again.partitions_updated) == ([], 0)


def test_a_glue_comment_is_cut_at_glues_255_characters():
    [column] = glue_columns(pa.schema([described("notes", pa.string(), "x" * 300)]))
    assert len(column["Comment"]) == 255 and column["Comment"].endswith("x…")


def test_duckdb_view_columns_carry_their_description_and_personal_data_policy(tmp_path):
    """Also on a catalog whose views were made before comments: the next sync adds them."""
    lake = tmp_path / "lake" / "processed"
    (lake / "orders" / "dt=2024-01-15").mkdir(parents=True)
    pq.write_table(CONTRACTS["orders"].empty_table(), lake / "orders" / "dt=2024-01-15" / "part-00000.parquet")
    path = tmp_path / "catalog.duckdb"
    table = CatalogTable("orders", CONTRACTS["orders"], str(lake / "orders"))
    DuckDBCatalog(str(path)).sync([table], [])
    with duckdb.connect(str(path)) as con:
        comments = dict(con.sql("SELECT column_name, comment FROM duckdb_columns() WHERE table_name = 'orders'").fetchall())
        assert comments.pop("dt") is None and comments == column_descriptions(CONTRACTS["orders"])
        assert comments["customer_email"].endswith("Personal data: hashed (HMAC-SHA256, hex; case and surrounding spaces ignored).")
        con.execute("COMMENT ON COLUMN orders.customer_email IS NULL")  # as a sync before comments left it
    assert DuckDBCatalog(str(path)).sync([table], []).tables_updated == ["orders"]
    assert DuckDBCatalog(str(path)).sync([table], []).tables_updated == []
    with duckdb.connect(str(path), read_only=True) as con:
        [(comment,)] = con.sql("SELECT comment FROM duckdb_columns() WHERE column_name = 'customer_email'").fetchall()
        assert comment == column_descriptions(CONTRACTS["orders"])["customer_email"]


PROFILES_LOCATION = "s3://lake/prefix/processed/dim_user_profiles"


def test_an_unpartitioned_table_is_one_glue_table_without_partition_keys_or_projection(glue):
    from ecomm_assets.core.schemas import DIM_USER_PROFILES

    profiles = CatalogTable("dim_user_profiles", DIM_USER_PROFILES, PROFILES_LOCATION, partitioned=False)
    days = [date(2024, 1, 14), date(2024, 1, 15)]
    report = GlueCatalog(glue, "ecomm", START).sync([profiles, CatalogTable("order_lines", ORDER_LINES, LOCATION)], days)
    assert report.tables_created == ["dim_user_profiles", "order_lines"] and report.partitions_added == 2  # order_lines' only
    table = glue.get_table(DatabaseName="ecomm", Name="dim_user_profiles")["Table"]
    assert table.get("PartitionKeys", []) == []
    assert not any(key.startswith(("projection.", "storage.location")) for key in table["Parameters"])
    assert table["StorageDescriptor"]["Location"] == PROFILES_LOCATION + "/"
    assert {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}["age"] == "smallint"
    assert partitions(glue, "dim_user_profiles") == {}
    again = GlueCatalog(glue, "ecomm", START).sync([profiles], days)  # in step already: nothing to do
    assert again.tables_created == again.tables_updated == [] and again.partitions_added == 0


def test_an_unpartitioned_table_is_a_duckdb_view_of_its_file(tmp_path):
    import duckdb

    from ecomm_assets.core.schemas import DIM_USER_PROFILES

    folder = tmp_path / "lake" / "processed" / "dim_user_profiles"
    folder.mkdir(parents=True)
    rows = {name: [None] for name in DIM_USER_PROFILES.names} | {
        "user_id": ["USI_1"], "age": [30], "landed_at": [pa.scalar(0, pa.timestamp("us", tz="UTC")).as_py()],
        "source": ["landing-x"]}
    pq.write_table(pa.table(rows, DIM_USER_PROFILES), folder / "part-00000.parquet")
    catalog = DuckDBCatalog(str(tmp_path / "catalog.duckdb"))
    table = CatalogTable("dim_user_profiles", DIM_USER_PROFILES, str(folder), partitioned=False)
    assert catalog.sync([table], []).tables_created == ["dim_user_profiles"]
    with duckdb.connect(str(tmp_path / "catalog.duckdb"), read_only=True) as con:
        relation = con.sql("SELECT * FROM dim_user_profiles")
        assert relation.columns == DIM_USER_PROFILES.names  # no dt column
        assert relation.fetchall()[0][:2] == ("USI_1", 30)


def test_two_duckdb_syncs_at_once_keep_both_their_views(tmp_path, monkeypatch):
    """The catalog asset and the usage asset of concurrent runs sync different tables: the one that
    renames its copy last must not drop the view the other just created."""
    import threading
    import time

    lake = tmp_path / "lake" / "processed"
    for name in ("orders", "order_lines"):
        (lake / name / "dt=2024-01-15").mkdir(parents=True)
        pq.write_table(CONTRACTS[name].empty_table(), lake / name / "dt=2024-01-15" / "part-00000.parquet")
    path = str(tmp_path / "catalog.duckdb")
    update = DuckDBCatalog._update_views

    def slow_for_orders(con, tables, report):
        if tables[0].name == "orders":
            time.sleep(0.5)  # the other sync starts meanwhile
        update(con, tables, report)

    monkeypatch.setattr(DuckDBCatalog, "_update_views", staticmethod(slow_for_orders))
    syncs = [threading.Thread(target=DuckDBCatalog(path).sync, args=([CatalogTable(name, CONTRACTS[name], str(lake / name))], []))
             for name in ("orders", "order_lines")]
    syncs[0].start()
    time.sleep(0.1)
    syncs[1].start()
    for sync in syncs:
        sync.join()
    with duckdb.connect(path, read_only=True) as con:
        views = {name for (name,) in con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    assert views == {"orders", "order_lines"}
