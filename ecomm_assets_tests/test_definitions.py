import json
import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import duckdb
import pytest

from ecomm_assets.core.landing import file_id
from ecomm_assets.core.layout import landing_raw_name
from ecomm_assets_tests.conftest import make_definitions, materialize_day


def sql(lake_dir, query):
    return duckdb.sql(query.replace("{lake}", str(lake_dir))).fetchall()


def check_results(result) -> dict:
    return {
        (e.asset_key.path[-1], e.check_name): e.passed
        for e in (ev.event_specific_data for ev in result.all_events if ev.event_type_value == "ASSET_CHECK_EVALUATION")
    }


def test_whole_graph_for_one_day(lake_dir, instance):
    result = materialize_day(make_definitions(lake_dir), "2024-01-15", instance)
    assert result.success
    checks = check_results(result)
    assert len(checks) == 42  # 18 of the orders' tables, 14 of engagement, 10 of the purchase tables
    # Synthetic orders add shipping to a few percent of totals: the WARN check says so.
    assert checks.pop(("orders", "totals_reconcile")) is False
    assert all(checks.values()), checks
    lines, orders, line_total = sql(lake_dir, "SELECT count(*), count(DISTINCT order_id), sum(line_total) FROM '{lake}/processed/order_lines/*/*.parquet'")[0]
    assert sql(lake_dir, "SELECT count(*), sum(items_total) FROM '{lake}/processed/orders/*/*.parquet'")[0] == (orders, line_total)
    assert orders == 180 and lines > orders  # 200 a day on average, Mondays sell 0.9x
    assert sql(lake_dir, "SELECT DISTINCT order_date::VARCHAR FROM '{lake}/processed/order_lines/*/*.parquet'") == [("2024-01-15",)]
    assert sql(lake_dir, "SELECT count(*) FROM '{lake}/processed/dim_products/*/*.parquet'")[0][0] == 200
    assert sql(lake_dir, "SELECT count(*), count(city) FROM '{lake}/processed/dim_customers/*/*.parquet'")[0] == (500, 500)
    materialization = instance.get_latest_materialization_event(dg.AssetKey("order_lines")).asset_materialization
    assert materialization.metadata["dagster/row_count"].value == lines
    assert materialization.metadata["conservation_holds"].value is True

    # Analytics agree with the lines they summarize.
    assert sql(lake_dir, "SELECT sum(revenue), sum(units) FROM '{lake}/processed/sales_by_category/*/*.parquet'")[0] == (
        line_total, sql(lake_dir, "SELECT sum(quantity) FROM '{lake}/processed/order_lines/*/*.parquet'")[0][0])
    summary = sql(lake_dir, "SELECT orders, revenue, average_order_value, orders_not_reconciling FROM '{lake}/processed/daily_order_summary/*/*.parquet'")
    not_reconciling = sql(lake_dir, "SELECT count(*) FILTER (WHERE NOT reconciles) FROM '{lake}/processed/orders/*/*.parquet'")[0][0]
    assert summary == [(180, line_total, round(line_total / 180, 2), not_reconciling)]
    # The day's headline figures are numbers on the day's materialization of orders, for Dagster's plots.
    orders_event = instance.get_latest_materialization_event(dg.AssetKey("orders")).asset_materialization
    figures = {k: orders_event.metadata[k].value for k in ("orders", "revenue", "average_order_value", "percent_not_reconciling")}
    assert figures == {"orders": 180, "revenue": float(line_total), "average_order_value": float(round(line_total / 180, 2)),
                       "percent_not_reconciling": round(100 * not_reconciling / 180, 2)}
    assert orders_event.metadata["dagster/row_count"].value == 180
    # The dashboard's charts are PNG files, and its report is one self-contained HTML file.
    report = lake_dir / "reports" / "dashboard"
    assert sorted(p.name for p in report.iterdir()) == ["dashboard.html", "revenue_by_category.png", "revenue_per_day.png", "top_products.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in report.glob("*.png"))
    html = (report / "dashboard.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "up to 2024-01-15" in html
    dashboard = instance.get_latest_materialization_event(dg.AssetKey("dashboard")).asset_materialization
    assert dashboard.partition is None and dashboard.metadata["newest_day"].value == "2024-01-15"
    # The DuckDB catalog answers SQL over the lake, with the partition column.
    with duckdb.connect(str(lake_dir.parent / "catalog.duckdb"), read_only=True) as catalog:
        assert catalog.sql("SELECT count(*), min(dt)::VARCHAR FROM order_lines").fetchall() == [(lines, "2024-01-15")]
        assert catalog.sql("SELECT sum(revenue) FROM sales_by_category").fetchall() == [(line_total,)]


def test_one_check_can_run_alone(lake_dir, instance):
    """A table's checks share one step (one read of its partitions), but each can be run by itself."""
    defs = make_definitions(lake_dir)
    assert materialize_day(defs, "2024-01-15", instance).success
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=set(), asset_check_selection={dg.AssetCheckKey(dg.AssetKey("orders"), "orders_match_lines")}
    )
    result = job.execute_in_process(partition_key="2024-01-15", instance=instance)
    assert result.success and check_results(result) == {("orders", "orders_match_lines"): True}


@pytest.mark.slow
def test_a_seven_day_range_and_rerunning_a_day_changes_nothing(lake_dir, instance):
    defs = make_definitions(lake_dir)
    days = [str(date(2024, 1, 10) + timedelta(days=n)) for n in range(7)]
    for day in days:
        assert materialize_day(defs, day, instance).success
    per_day = sql(lake_dir, "SELECT order_date::VARCHAR, count(DISTINCT order_id), sum(line_total) FROM '{lake}/processed/order_lines/*/*.parquet' GROUP BY 1 ORDER BY 1")
    assert [d for d, _, _ in per_day] == days
    assert per_day == sql(lake_dir, "SELECT order_date::VARCHAR, count(*), sum(items_total) FROM '{lake}/processed/orders/*/*.parquet' GROUP BY 1 ORDER BY 1")
    last = materialize_day(defs, days[-1], instance)
    assert check_results(last)[("order_lines", "row_count_not_anomalous")] is True
    assert per_day == sql(lake_dir, "SELECT order_date::VARCHAR, count(DISTINCT order_id), sum(line_total) FROM '{lake}/processed/order_lines/*/*.parquet' GROUP BY 1 ORDER BY 1")


def land(lake_dir, name, data: bytes):
    path = lake_dir / "landing" / "orders" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def landed_order(order_id, when, price=10.0):
    return {"order_id": order_id, "order_date": when, "total_amount": price,
            "customer": {"customer_id": "c1", "name": "Ann", "email": "a@x", "address": "1 Main St"},
            "products": [{"product_id": "p1", "name": "Pen", "category": "office", "price": price, "quantity": 1}]}


def recompute_tick(defs, instance, run_ingest) -> dg.SensorResult:
    """What the daemon does: a tick of recompute_landed_days before and after an ingest run."""
    sensor = defs.resolve_sensor_def("recompute_landed_days")
    with dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources) as context:
        cursor = sensor.evaluate_tick(context).cursor
    run_ingest()
    with dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources, cursor=cursor) as context:
        return sensor.evaluate_tick(context)


def run_requests(defs, instance, requests) -> None:
    """Executes lake_job for each request: one day (partition key) or a range (range tags)."""
    lake_job = defs.resolve_job_def("lake_job")
    for request in requests:
        result = lake_job.execute_in_process(partition_key=request.partition_key, tags=request.tags, instance=instance)
        assert result.success


def ingest_and_recompute(defs, instance, **config):
    """The ingest run, then the sensor's runs for the days it touched."""
    def ingest():
        run_config = {"ops": {"ingest_landing_files": {"config": config}}} if config else None
        assert defs.resolve_job_def("ingest_landing_job").execute_in_process(instance=instance, run_config=run_config).success

    requests = recompute_tick(defs, instance, ingest).run_requests
    run_requests(defs, instance, requests)
    return requests


def test_a_landed_multi_day_file_feeds_each_day_once(lake_dir, instance):
    defs = make_definitions(lake_dir)
    for day in ("2024-01-14", "2024-01-15", "2024-01-16"):
        assert materialize_day(defs, day, instance).success
    before = sql(lake_dir, "SELECT count(*) FROM '{lake}/processed/order_lines/*/*.parquet'")[0][0]
    landed = [landed_order("L1", "2024-01-14T12:00:00Z"), landed_order("L2", "2024-01-15T23:59:59+00:00"),
              landed_order("L3", "2024-01-16T00:30:00+02:00"),  # 22:30 UTC on the 15th
              landed_order("L4", "2024-01-16T09:00:00Z")]
    data = json.dumps(landed).encode()
    land(lake_dir, "drop/orders_etl.json", data)

    [request] = ingest_and_recompute(defs, instance)  # consecutive days: one range run
    assert request.tags["dagster/asset_partition_range_start"] == "2024-01-14"
    assert request.tags["dagster/asset_partition_range_end"] == "2024-01-16"
    where = sql(lake_dir, "SELECT order_id, order_date::VARCHAR FROM '{lake}/processed/order_lines/*/*.parquet' WHERE order_id LIKE 'L%' ORDER BY 1")
    assert where == [("L1", "2024-01-14"), ("L2", "2024-01-15"), ("L3", "2024-01-15"), ("L4", "2024-01-16")]
    archived = lake_dir / "landing/_ingested/orders/drop/orders_etl.json"  # moved once ingested, its mtime kept
    landed_at = datetime.fromtimestamp(archived.stat().st_mtime, UTC)
    assert not (lake_dir / "landing/orders/drop/orders_etl.json").exists()
    source = landing_raw_name(landed_at, file_id(data)).removesuffix(".jsonl")
    assert sql(lake_dir, "SELECT DISTINCT source FROM '{lake}/processed/order_lines/*/*.parquet' WHERE order_id LIKE 'L%'") == [(source,)]
    snapshot = sql(lake_dir, "SELECT order_date, count(*), sum(line_total) FROM '{lake}/processed/order_lines/*/*.parquet' GROUP BY 1 ORDER BY 1")
    assert sum(n for _, n, _ in snapshot) == before + 4
    # The sensor's range run recomputed the sales beside the ratings too, reviews kept.
    assert sql(lake_dir, "SELECT dt, sum(units) FROM '{lake}/processed/rating_vs_sales/*/*.parquet' GROUP BY 1 ORDER BY 1") == sql(
        lake_dir, "SELECT dt, sum(quantity) FROM '{lake}/processed/order_lines/*/*.parquet' GROUP BY 1 ORDER BY 1")
    assert sql(lake_dir, "SELECT sum(reviews) FROM '{lake}/processed/rating_vs_sales/*/*.parquet'") == sql(
        lake_dir, "SELECT count(*) FROM '{lake}/processed/product_reviews/*/*.parquet'")

    # The same file again (pending or named explicitly): no duplicates, same data.
    again = defs.resolve_job_def("ingest_landing_job").execute_in_process(
        instance=instance, run_config={"ops": {"ingest_landing_files": {"config": {"files": ["drop/orders_etl.json"]}}}}
    )
    assert again.success
    for day in ("2024-01-14", "2024-01-15", "2024-01-16"):
        assert defs.resolve_job_def("lake_job").execute_in_process(partition_key=day, instance=instance).success
    assert snapshot == sql(lake_dir, "SELECT order_date, count(*), sum(line_total) FROM '{lake}/processed/order_lines/*/*.parquet' GROUP BY 1 ORDER BY 1")
    assert ingest_and_recompute(defs, instance) == []  # nothing pending any more


def test_bad_landed_input_is_quarantined_and_conserved(lake_dir, instance):
    defs = make_definitions(lake_dir)
    assert materialize_day(defs, "2024-01-15", instance).success
    good = landed_order("G1", "2024-01-15T10:00:00Z")
    bad_lines = [
        json.dumps(good), '{"order_id": "T1", "order_date": "2024-01-15T1',  # truncated
        json.dumps(landed_order("N1", "2024-01-15T10:00:00Z", price=-5)),
        json.dumps({**landed_order("Q1", "2024-01-15T10:00:00Z"), "products": [{"product_id": "p", "price": 3, "quantity": 0}]}),
        json.dumps({**landed_order("E1", "2024-01-15T10:00:00Z"), "products": []}),
        json.dumps({**landed_order(None, "2024-01-15T10:00:00Z")}),
        json.dumps({**landed_order("S1", "2024-01-15T10:00:00Z"), "products": [{"product_id": "p", "price": "ten", "quantity": 1}]}),
        json.dumps(landed_order("G1", "2024-01-15T11:00:00Z", price=12.0)),  # newer version of G1
    ]
    land(lake_dir, "mixed.jsonl", "\n".join(bad_lines).encode() + b"\n\xff\xfe bad bytes\n")
    land(lake_dir, "empty.json", b"")
    land(lake_dir, "cut.json", b'[{"order_id": "X"')
    ingest_and_recompute(defs, instance)

    loaded = sql(lake_dir, "SELECT order_id, unit_price::DOUBLE FROM '{lake}/processed/order_lines/dt=2024-01-15/*.parquet' WHERE NOT starts_with(order_id, 'SYN')")
    assert loaded == [("G1", 12.0)]
    quarantined = [json.loads(line) for line in (lake_dir / "quarantine/order_lines/dt=2024-01-15/part-00000.jsonl").read_text().splitlines()]
    first_reasons = sorted(re.sub(r"^line \d+: ", "", q["reason"].split("; ")[0]).split(":")[0] for q in quarantined)
    assert first_reasons == ["missing order_id", "negative total_amount", "no products", "non-numeric price", "quantity <= 0"]
    counts = json.loads((lake_dir / "processed/order_lines/dt=2024-01-15/_counts.json").read_text())
    assert counts["duplicates_dropped"] == 1 and counts["quarantined"] == 5
    assert counts["records_read"] == counts["orders_loaded"] + counts["quarantined"] + counts["duplicates_dropped"]
    landing_reports = {p.parent.name: json.loads(p.read_text()) for p in (lake_dir / "quarantine/landing").glob("*/reason.json")}
    by_file = {r["file"]: r for r in landing_reports.values()}
    assert by_file["empty.json"]["file_error"] == "empty file"
    assert by_file["cut.json"]["file_error"].startswith("malformed or truncated JSON")
    assert [r["reason"].split(":")[0] for r in by_file["mixed.jsonl"]["records"]] == ["malformed JSON", "not UTF-8"]
    assert (lake_dir / "quarantine/landing" / file_id(b"") / "file-empty.json").exists()


def test_dummyjson_source_end_to_end(lake_dir, instance, dummyjson):
    defs = make_definitions(lake_dir, source="dummyjson", dummyjson_url=dummyjson.url)
    result = materialize_day(defs, "2024-01-15", instance)
    assert result.success and all(check_results(result).values())  # real carts reconcile
    orders, lines = sql(lake_dir, "SELECT count(DISTINCT order_id), count(*) FROM '{lake}/processed/order_lines/*/*.parquet'")[0]
    assert (orders, lines) == (208, 800)  # every real cart and cart line
    assert sql(lake_dir, "SELECT count(*) FROM '{lake}/processed/dim_products/*/*.parquet' WHERE origin = 'snapshot'")[0][0] == 194
    # Every review of the real products, every post and comment, each collection read once, page by page.
    assert sql(lake_dir, "SELECT count(*), count(DISTINCT product_id), min(review_ts)::DATE::VARCHAR FROM '{lake}/processed/product_reviews/*/*.parquet'") == [
        (582, 194, "2025-04-30")]  # DummyJSON's reviews keep their own date
    assert sql(lake_dir, "SELECT count(*) FROM '{lake}/processed/posts/*/*.parquet'")[0][0] == 251
    assert sql(lake_dir, "SELECT count(*) FROM '{lake}/processed/comments/*/*.parquet'")[0][0] == 340
    pages = Counter(p.split("?")[0] for p in dummyjson.requests if p.startswith(("/posts", "/comments")))
    assert pages == {"/posts": 3, "/comments": 4}  # pages of 100
    assert sql(lake_dir, "SELECT sum(reviews) FROM '{lake}/processed/rating_distribution/*/*.parquet' WHERE level = 'category'")[0][0] == 582
    assert sql(lake_dir, "SELECT sum(posts) FROM '{lake}/processed/engaged_users/*/*.parquet'")[0][0] == 251


def test_a_failed_blocking_check_keeps_the_day_out_of_the_catalog(lake_dir, instance):
    """A source with a duplicated customer id breaks dim_customers' key check (blocking): the
    catalog asset of that run does not run, and the bad day of dim_customers (a derived table) is
    withdrawn from the lake into quarantine; every later build makes it again and fails again."""
    defs = make_definitions(lake_dir)
    assert materialize_day(defs, "2024-01-15", instance).success
    users_file = lake_dir / "raw" / "users" / "dt=2024-01-16" / "users.json"
    assert materialize_day(defs, "2024-01-16", instance).success
    users = json.loads(users_file.read_text())
    users_file.write_text(json.dumps(users + users[:1]))  # the source sends user 1 twice

    result = defs.resolve_job_def("lake_job").execute_in_process(partition_key="2024-01-16", instance=instance, raise_on_error=False)
    assert check_results(result)[("dim_customers", "keys_not_null_and_unique")] is False
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert "dim_customers" in materialized and "catalog" not in materialized
    catalog_runs = instance.fetch_materializations(dg.AssetKey("catalog"), limit=10).records
    assert len(catalog_runs) == 2  # the two earlier, good runs only
    assert {r.run_id for r in catalog_runs}.isdisjoint({result.run_id})
    day = lake_dir / "processed" / "dim_customers" / "dt=2024-01-16"
    assert not (day / "part-00000.parquet").exists()
    assert (lake_dir / "quarantine" / "dim_customers" / "dt=2024-01-16" / "withdrawn.parquet").exists()
    assert (lake_dir / "processed" / "dim_customers" / "dt=2024-01-15" / "part-00000.parquet").exists()

    again = defs.resolve_job_def("lake_job").execute_in_process(partition_key="2024-01-16", instance=instance, raise_on_error=False)
    assert check_results(again)[("dim_customers", "keys_not_null_and_unique")] is False
    built = instance.get_latest_materialization_event(dg.AssetKey("dim_customers")).asset_materialization
    assert built.metadata["built_days"].value == ["2024-01-16"]  # only the withdrawn day: the good one is current
    assert not (day / "part-00000.parquet").exists()


def test_every_asset_and_check_is_declared_at_module_level():
    """`def order_lines` is the asset: greppable, importable, and what tools reading modules find."""
    from ecomm_assets import checks
    from ecomm_assets.assets import (
        analytics,
        catalog,
        lake,
        landing,
        purchases,
        sources,
        usage,
    )
    from ecomm_assets.core.schemas import LAKE_TABLES, UNPARTITIONED_TABLES
    from ecomm_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    declared = {
        name: value for module in (sources, landing, lake, purchases, analytics, catalog, usage) for name, value in vars(module).items()
        if isinstance(value, (dg.AssetsDefinition, dg.AssetSpec)) and value.key == dg.AssetKey(name)
    }
    assert set(declared) == {key.to_user_string() for key in graph.get_all_asset_keys()}
    check_steps = {name: value for name, value in vars(checks).items() if isinstance(value, dg.AssetChecksDefinition)}
    assert set(check_steps) == {f"{table}_checks" for table in {**LAKE_TABLES, **UNPARTITIONED_TABLES}}
    assert {key for step in check_steps.values() for key in step.check_keys} == set(graph.asset_check_keys)


def test_a_range_run_gives_each_day_its_own_row_count_and_figures_and_the_run_its_totals_once(lake_dir, instance):
    """Dagster copies what a range run's step returns onto every day's materialization: each day's
    own row count and figures go on that day's event, and the run's totals on the newest day's only."""
    defs = make_definitions(lake_dir)
    job = defs.resolve_implicit_global_asset_job_def()
    tags = {"dagster/asset_partition_range_start": "2024-01-14", "dagster/asset_partition_range_end": "2024-01-16"}
    assert job.execute_in_process(instance=instance, tags=tags).success
    rows = sql(lake_dir, "SELECT order_date::VARCHAR, orders, revenue FROM '{lake}/processed/daily_order_summary/*/*.parquet' ORDER BY 1")
    assert len({orders for _, orders, _ in rows}) == 3  # three different days, three different figures
    events = {r.partition_key: r.asset_materialization.metadata
              for r in instance.fetch_materializations(dg.AssetKey("orders"), limit=10).records}
    assert {day: (meta["orders"].value, meta["revenue"].value, meta["dagster/row_count"].value)
            for day, meta in events.items()} == {day: (orders, float(revenue), orders) for day, orders, revenue in rows}
    assert instance.fetch_observations(dg.AssetKey("daily_order_summary"), limit=10).records == []
    for key, table in (("order_lines", "order_lines"), ("orders_raw", None)):
        records = {r.partition_key: r.asset_materialization.metadata
                   for r in instance.fetch_materializations(dg.AssetKey(key), limit=10).records}
        assert sorted(records) == ["2024-01-14", "2024-01-15", "2024-01-16"], key
        if table:
            per_day = dict(sql(lake_dir, f"SELECT order_date::VARCHAR, count(*) FROM '{{lake}}/processed/{table}/*/*.parquet' GROUP BY 1"))
            assert {day: meta["dagster/row_count"].value for day, meta in records.items()} == per_day
        # the run's totals and usage once, on the newest day
        assert [day for day, meta in records.items() if "rows" in meta] == ["2024-01-16"], key
        assert [day for day, meta in records.items() if "usage/days" in meta] == ["2024-01-16"], key
        assert records["2024-01-16"]["rows"].value == sum(meta["dagster/row_count"].value for meta in records.values())


def run_assets(defs, keys: list[str], instance, day: str | None = None):
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection={dg.AssetKey(k) for k in keys})
    return job.execute_in_process(instance=instance, partition_key=day, raise_on_error=False)


def test_the_dashboard_reports_the_newest_day_all_its_tables_hold(lake_dir, instance):
    defs = make_definitions(lake_dir)
    assert materialize_day(defs, "2024-01-15", instance).success
    upstream = ["snapshots", "orders_raw", "order_lines", "orders", "daily_order_summary"]
    assert run_assets(defs, upstream, instance, "2024-01-16").success  # no sales_by_category, product_performance
    assert run_assets(defs, ["dashboard"], instance).success
    dashboard = instance.get_latest_materialization_event(dg.AssetKey("dashboard")).asset_materialization
    assert dashboard.metadata["newest_day"].value == "2024-01-15"
    assert dashboard.metadata["days_charted"].value == 1  # 2024-01-16 is after the newest day


@pytest.mark.parametrize(
    "keys, message",
    [
        (["orders"], "order_lines has no partition for 2024-06-05"),
        (["dashboard"], "no day of the lake has all of daily_order_summary, sales_by_category, product_performance yet"),
    ],
    ids=["lake", "dashboard"],
)
def test_a_step_without_its_inputs_fails_saying_which(lake_dir, instance, keys, message):
    defs = make_definitions(lake_dir)
    result = run_assets(defs, keys, instance, None if keys == ["dashboard"] else "2024-06-05")
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert message in str(failure.event_specific_data.error)


def test_a_derived_table_builds_the_days_its_inputs_hold_and_only_those_newer_than_it(lake_dir, instance):
    """sales_by_category (derived, not partitioned) builds each day whose order_lines and orders
    are there and newer than its own file; a day with order_lines but no orders yet waits."""
    defs = make_definitions(lake_dir)
    assert run_assets(defs, ["sales_by_category"], instance).success  # an empty lake: nothing to build
    built = lambda: instance.get_latest_materialization_event(dg.AssetKey("sales_by_category")).asset_materialization.metadata
    assert (built()["built_days"].value, built()["days_waiting_for_inputs"].value) == ([], 0)
    for day in ("2024-01-15", "2024-01-16"):
        assert run_assets(defs, ["snapshots", "orders_raw", "order_lines", "orders"], instance, day).success
    assert run_assets(defs, ["snapshots", "orders_raw", "order_lines"], instance, "2024-01-17").success
    assert run_assets(defs, ["sales_by_category"], instance).success
    assert (built()["built_days"].value, built()["days_waiting_for_inputs"].value) == (["2024-01-15", "2024-01-16"], 1)
    assert run_assets(defs, ["sales_by_category"], instance).success  # nothing changed since
    assert built()["built_days"].value == []
    assert run_assets(defs, ["orders"], instance, "2024-01-16").success  # a day rewritten upstream
    assert run_assets(defs, ["sales_by_category"], instance).success
    assert built()["built_days"].value == ["2024-01-16"]
    written = sql(lake_dir, "SELECT DISTINCT order_date::VARCHAR FROM '{lake}/processed/sales_by_category/*/*.parquet' ORDER BY 1")
    assert written == [("2024-01-15",), ("2024-01-16",)]


def _personal_values(kind: str, records: list[dict], elsewhere: str = "") -> set[str]:
    """Every text the source's records hold in a field the privacy policy drops, masks or hashes
    (nested ones included), and each user's full name, but those a kept field or `elsewhere` (the
    other collections) holds too (a dropped employer's state as a kept state, a first name Jackson in
    the city Jacksonville, a last name Turner in a product "Slotted Turner"): what no file of the
    lake may hold."""
    from ecomm_assets.core.privacy import DEFAULT_KEY, SOURCE_FIELDS, extracted

    def leaves(value):
        if isinstance(value, dict):
            for inner in value.values():
                yield from leaves(inner)
        elif isinstance(value, list):
            for inner in value:
                yield from leaves(inner)
        elif isinstance(value, str):
            yield value

    def at(value, path):
        """The value at the path; a value that is no object where the path goes on, whole (a street
        address given as one string is personal whole); through a list, each item's."""
        for depth, name in enumerate(path.split(".")):
            if isinstance(value, list):
                return [at(item, ".".join(path.split(".")[depth:])) for item in value]
            if not isinstance(value, dict):
                return value
            value = value.get(name)
        return value

    values = {text for record in records for path in SOURCE_FIELDS[kind] for text in leaves(at(record, path))}
    values |= {f"{r['firstName']} {r['lastName']}" for r in records if "firstName" in r and "lastName" in r}
    kept = "\n".join([*leaves(extracted(kind, records, DEFAULT_KEY)), elsewhere])
    return {text for text in values if len(text) >= 6 and text not in kept}  # shorter ones occur by chance (a first name in a product's)


def _lake_texts(lake_dir):
    """(path, text) of every file of the lake but the landing zone (the producers' files as they
    landed: README, Personal data), and of the catalog; JSON parsed, so an escaped value is found too."""
    import pyarrow.parquet as pq

    for path in [*lake_dir.rglob("*"), lake_dir.parent / "catalog.duckdb"]:
        if not path.is_file() or path.relative_to(lake_dir.parent).parts[1:2] == ("landing",):
            continue
        if path.suffix == ".parquet":
            yield path, str(pq.read_table(path).to_pylist())
        elif path.suffix in (".json", ".jsonl"):
            lines = path.read_text().splitlines() if path.suffix == ".jsonl" else [path.read_text()]
            yield path, str([json.loads(line) for line in lines if line.strip()])
        else:
            yield path, path.read_bytes().decode("latin-1")


def _assert_none_in_lake(lake_dir, values: set[str]) -> None:
    texts = dict(_lake_texts(lake_dir))
    assert any(p.name == "part-00000.parquet" for p in texts) and any(p.name == "catalog.duckdb" for p in texts)
    for path, text in texts.items():
        # As a word: a last name inside another word ('Fisher' in 'Fishermen') is no leak.
        found = [value for value in values if value in text and re.search(rf"(?<!\w){re.escape(value)}(?!\w)", text)]
        assert found == [], (path, found[:3])


def _landed_customers_file() -> bytes:
    customers = [
        {"customer_id": "L1", "name": "Zoë Featherstonehaugh", "email": "Zoe.F@Example.ORG", "phone": "+44 20 7946 0958",
         "address": {"address": "221B Baker Street", "city": "London", "country": "United Kingdom"}},
        {"customer_id": "L2", "name": "Åsa Lindqvist-Berg", "email": "asa.lb@example.se", "phone": "0046 8 123 456 78",
         "address": "Drottninggatan 55, Stockholm"},
    ]
    orders = [
        {"order_id": f"L-{n}", "order_date": f"2024-01-{day}T10:0{n}:00Z", "total_amount": 12.5,
         "customer": customers[n % 2], "products": [{"product_id": "p1", "name": "Pen", "price": 12.5, "quantity": 1}]}
        for n, day in enumerate([15, 15, 16, 16])
    ]
    orders.append({"order_id": "L-undated", "customer": customers[0], "products": []})  # quarantined
    # JSON Lines with non-ASCII escaped, as many producers write it; the last line's key escaped too.
    lines = [json.dumps(order) for order in orders]
    lines[-1] = lines[-1].replace('"email"', '"em\\u0061il"')
    return ("\n".join(lines) + "\n").encode()


LANDED_CUSTOMERS = json.loads("[" + ",".join(_landed_customers_file().decode().splitlines()) + "]")


def _run_source(source: str, lake_dir, instance, request) -> set[str]:
    """One day (2024-01-15) of the source, run whole; the personal values its records carried."""
    from ecomm_assets.core import synthetic

    if source == "dummyjson":
        dummyjson = request.getfixturevalue("dummyjson")
        defs = make_definitions(lake_dir, source="dummyjson", dummyjson_url=dummyjson.url)
        carts = json.dumps(dummyjson.data["carts"])
        values = _personal_values("users", dummyjson.data["users"], carts) | _personal_values("products", dummyjson.data["products"], carts)
        assert len(values) > 1000 and "Henry Turner" in values  # the stand-in serves the real users, secrets and all
    elif source == "synthetic":
        defs = make_definitions(lake_dir)
        products = synthetic.generate_products(42)
        values = _personal_values("users", synthetic.generate_users(42), json.dumps(products))
    else:
        land(lake_dir, "customers.jsonl", _landed_customers_file())
        defs = make_definitions(lake_dir, source="landing")
        assert defs.resolve_job_def("ingest_landing_job").execute_in_process(instance=instance).success
        values = _personal_values("orders", LANDED_CUSTOMERS)
        assert {"Zoë Featherstonehaugh", "Drottninggatan 55, Stockholm", "+44 20 7946 0958"} <= values
    assert materialize_day(defs, "2024-01-15", instance).success
    return values


def _warned_of_the_default_key(instance) -> bool:
    from ecomm_assets.core.privacy import DEFAULT_KEY_WARNING

    return all(DEFAULT_KEY_WARNING in {entry.user_message for entry in instance.all_logs(run.run_id)}
               for run in instance.get_runs())


@pytest.mark.parametrize("source", ["dummyjson", "synthetic"])
def test_no_file_of_the_lake_holds_an_original_personal_value(lake_dir, instance, request, source):
    """DummyJSON users carry passwords, SSNs, card numbers, IBANs, phones, emails, addresses, its
    products their reviewers' names and emails; synthetic users carry names, emails and addresses:
    after a whole day from each, no raw, processed, quarantine or report file, nor the catalog,
    holds any of those values as the source gave them, and the default key's warning is in the log."""
    values = _run_source(source, lake_dir, instance, request)
    _assert_none_in_lake(lake_dir, values)
    assert _warned_of_the_default_key(instance)


def test_a_landed_files_customers_land_protected_and_hash_alike_across_days_and_tables(lake_dir, instance, request):
    """A landed file's customers (names, emails, phones, street addresses, one given as a string, an
    escaped key, a quarantined record): after its two days, no file of the lake (but the landing
    zone) holds them as landed, and one email has one hash in every table and day: joins work."""
    values = _run_source("landed", lake_dir, instance, request)
    assert materialize_day(make_definitions(lake_dir, source="landing"), "2024-01-16", instance).success
    _assert_none_in_lake(lake_dir, values)
    assert _warned_of_the_default_key(instance)
    emails = sql(lake_dir, "SELECT DISTINCT customer_id, customer_email, customer_name FROM '{lake}/processed/order_lines/*/*.parquet' ORDER BY 1")
    from ecomm_assets.core.privacy import DEFAULT_KEY, protect
    from ecomm_assets.core.schemas import Policy

    assert emails == [("L1", protect("zoe.f@example.org", Policy.HASH, DEFAULT_KEY), "Z. F."),
                      ("L2", protect("asa.lb@example.se", Policy.HASH, DEFAULT_KEY), "Å. L.")]
    assert sql(lake_dir, "SELECT DISTINCT customer_id, email FROM '{lake}/processed/dim_customers/*/*.parquet' ORDER BY 1") == [
        row[:2] for row in emails]
    assert sql(lake_dir, "SELECT count(DISTINCT customer_email) FROM '{lake}/processed/orders/*/*.parquet'") == [(2,)]


def test_another_key_gives_other_hashes_and_no_warning(tmp_path, instance):
    """ECOMM_PII_HASH_KEY set: the snapshot's hashes are that key's, stable across runs; no warning."""
    from ecomm_assets_tests.conftest import project_loaded_with

    def users_hashes(lake, key_setting):
        with project_loaded_with(**({"ECOMM_PII_HASH_KEY": key_setting} if key_setting else {})):
            defs = make_definitions(lake)
            job = defs.resolve_implicit_global_asset_job_def()
            result = job.execute_in_process(partition_key="2024-01-15", instance=instance,
                                            asset_selection=[dg.AssetKey("snapshots")])
        logs = {entry.user_message for entry in instance.all_logs(result.run_id)}
        users = json.loads((lake / "raw/users/dt=2024-01-15/users.json").read_text())
        return [user["email"] for user in users], logs

    from ecomm_assets.core import synthetic
    from ecomm_assets.core.privacy import DEFAULT_KEY_WARNING, protect
    from ecomm_assets.core.schemas import Policy

    first, logs = users_hashes(tmp_path / "a", "rotated secret")
    again, _ = users_hashes(tmp_path / "b", "rotated secret")
    default, default_logs = users_hashes(tmp_path / "c", None)
    original = synthetic.generate_users(42)[0]["email"]
    assert first == again and first[0] == protect(original, Policy.HASH, b"rotated secret")
    assert not set(first) & set(default)
    assert DEFAULT_KEY_WARNING not in logs and DEFAULT_KEY_WARNING in default_logs


def test_a_landing_only_lake_holds_only_the_landed_orders(lake_dir, instance):
    """ECOMM_SOURCE=landing: the daily run generates nothing, so a day holds exactly what producers
    landed; a day first run with a generator loses the generated file when run again."""
    synthetic = make_definitions(lake_dir)
    assert materialize_day(synthetic, "2024-01-15", instance).success
    landing_only = make_definitions(lake_dir, source="landing")
    land(lake_dir, "drop.jsonl", "".join(json.dumps(landed_order(f"L{n}", "2024-01-15T10:00:00Z")) + "\n" for n in range(3)).encode())
    ingest_and_recompute(landing_only, instance)
    result = materialize_day(landing_only, "2024-01-15", instance)
    assert result.success and all(passed for (table, _), passed in check_results(result).items() if table != "orders")
    assert [p.name.split("-")[0] for p in (lake_dir / "raw/orders/dt=2024-01-15").iterdir()] == ["landing"]
    assert sql(lake_dir, "SELECT order_id FROM '{lake}/processed/order_lines/*/*.parquet' ORDER BY 1") == [("L0",), ("L1",), ("L2",)]
    assert sql(lake_dir, "SELECT origin, count(*) FROM '{lake}/processed/dim_products/*/*.parquet' GROUP BY 1") == [("orders", 1)]
    assert (lake_dir / "raw/users/dt=2024-01-15/users.json").read_text() == "[]"


def test_the_asset_pages_column_schemas_show_each_personal_columns_policy(lake_dir):
    specs = {spec.key.path[-1]: spec for spec in make_definitions(lake_dir).resolve_all_asset_specs()}
    columns = {c.name: c for c in specs["dim_customers"].metadata["dagster/column_schema"].columns}
    assert columns["email"].description == ("The customer's email address. Personal data: hashed (HMAC-SHA256, hex; "
                                            "case and surrounding spaces ignored).")
    assert columns["email"].tags == {"personal": "customer email", "personal_policy": "hash"}
    assert columns["name"].tags == {"personal": "customer name", "personal_policy": "initials"}
    assert columns["city"].tags == {} and "Personal data" not in columns["city"].description
    top = {c.name: c for c in specs["top_customers"].metadata["dagster/column_schema"].columns}
    assert top["customer_name"].tags["personal_policy"] == "initials"
