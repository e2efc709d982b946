"""The purchase log and user profiles end to end, through the project's definitions: landed CSV
files -> ingest jobs -> the sensors' recompute runs -> purchase_events, dim_user_profiles, their
analytics, checks and the DuckDB catalog; SQL in the sql/ style over the catalog."""

import gzip
import json
from datetime import datetime

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from ecomm_assets.catch_up import catch_up
from ecomm_assets.core.purchase_log import BadRow, purchase_log_csv, user_profiles_csv
from ecomm_assets_tests.conftest import make_definitions
from ecomm_assets_tests.test_sql import SQL_DIR

START = datetime(2024, 1, 14, 20)  # 2 days of events from 20:00: 2024-01-14, -15, -16
BAD = {BadRow.WRONG_COLUMN_COUNT: 2, BadRow.UNPARSEABLE_NUMBER: 3, BadRow.UNPARSEABLE_TIMESTAMP: 2, BadRow.NEGATIVE_PRICE: 4}
ROWS, DUPLICATES, USERS = 3000, 5, 300


def land(lake_dir, feed: str, name: str, data: bytes) -> None:
    path = lake_dir / "landing" / feed / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def tick(defs, instance, sensor_name, cursor=None) -> dg.SensorResult:
    with dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources, cursor=cursor) as context:
        return defs.resolve_sensor_def(sensor_name).evaluate_tick(context)


def run(defs, instance, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """What the daemon does with a sensor's request."""
    job = defs.resolve_job_def(request.job_name)
    run_config = request.run_config or None
    return job.execute_in_process(instance=instance, run_config=run_config, partition_key=request.partition_key,
                                  tags=request.tags, raise_on_error=False)


def sensed_and_recomputed(defs, instance) -> list[dg.RunRequest]:
    """landing_files_sensor's ingest runs, then recompute_landed_days' runs for what they touched."""
    cursor = tick(defs, instance, "recompute_landed_days").cursor
    ingests = tick(defs, instance, "landing_files_sensor").run_requests
    for request in ingests:
        assert run(defs, instance, request).success
    recomputes = []
    while True:  # a tick handles the next ingest run that finished, as the daemon's ticks do
        result = tick(defs, instance, "recompute_landed_days", cursor)
        if result.cursor == cursor:
            return ingests + recomputes
        cursor = result.cursor
        for request in result.run_requests:
            done = run(defs, instance, request)
            assert done.success, [e.message for e in done.all_events if e.is_failure]
            recomputes.append(request)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """A lake fed only by a purchase log (gzip) and a profile file landed, through the sensors."""
    lake_dir = tmp_path_factory.mktemp("purchases") / "lake"
    land(lake_dir, "purchases", "log/purchases.csv.gz",
         gzip.compress(purchase_log_csv(ROWS, seed=3, start=START, hours=48, users=USERS, bad_rows=BAD, duplicates=DUPLICATES)))
    land(lake_dir, "user_profiles", "profiles.csv", user_profiles_csv(USERS - 20, seed=3, wrong_column_count=2))
    defs = make_definitions(lake_dir, orders_per_day=0)
    with dg.DagsterInstance.ephemeral() as instance:
        requests = sensed_and_recomputed(defs, instance)
        yield lake_dir, requests, instance


def table(lake_dir, name):
    return ds.dataset(lake_dir / "processed" / name, format="parquet", partitioning="hive").to_table()


def test_the_sensors_ingest_each_feed_and_recompute_its_days_in_one_range_run(lake):
    _, requests, _ = lake
    assert [(r.job_name, r.partition_key, r.tags.get("dagster/asset_partition_range_start"),
             r.tags.get("dagster/asset_partition_range_end")) for r in requests] == [
        ("ingest_purchases_job", None, None, None),
        ("ingest_user_profiles_job", None, None, None),
        ("purchases_job", None, "2024-01-14", "2024-01-16"),
        ("user_profiles_job", None, None, None),
    ]
    assert requests[0].run_config == {"ops": {"ingest_purchase_files": {"config": {"files": ["log/purchases.csv.gz"]}}}}


def test_every_event_is_loaded_quarantined_with_its_reason_or_dropped_as_a_duplicate(lake):
    lake_dir, _, _ = lake
    events = table(lake_dir, "purchase_events")
    [manifest] = [json.loads(p.read_text()) for p in (lake_dir / "raw" / "_landing_manifest_purchases").glob("*.json")]
    assert manifest["records_read"] == ROWS + DUPLICATES + sum(BAD.values())
    split_reasons = json.loads((lake_dir / "quarantine" / "landing_purchases" / manifest["file_id"] / "reason.json").read_text())
    assert sorted(r["reason"].split(":")[0] for r in split_reasons["records"]) == (
        ["unparseable timestamp"] * 2 + ["wrong column count"] * 2)
    counts = [json.loads(p.read_text()) for p in sorted((lake_dir / "processed" / "purchase_events").glob("dt=*/_counts.json"))]
    rejected = [json.loads(line) for p in sorted((lake_dir / "quarantine" / "purchase_events").glob("dt=*/*.jsonl"))
                for line in p.read_text().splitlines()]
    assert sorted(r["reason"].split(":")[0] for r in rejected) == ["negative cost_price"] * 4 + ["unparseable selling_price"] * 3
    assert sum(c["duplicates_dropped"] for c in counts) == DUPLICATES
    assert events.num_rows == ROWS and sum(c["loaded"] for c in counts) == ROWS
    assert manifest["records_routed"] == events.num_rows + len(rejected) + DUPLICATES  # conserved per file
    assert {str(d) for d in events["event_date"].to_pylist()} == {"2024-01-14", "2024-01-15", "2024-01-16"}
    # A category with a comma in it (quoted in the file) is one value, never split.
    assert "Home, Kitchen" in set(events["category"].to_pylist())


def test_every_check_of_the_purchase_tables_ran_and_passed(lake):
    _, _, instance = lake
    evaluations = [
        event.dagster_event.event_specific_data
        for run in instance.get_runs()
        for event in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    ran = {(e.asset_key.to_user_string(), e.check_name) for e in evaluations}
    assert {("purchase_events", "records_conserved"), ("purchase_events", "values_valid"),
            ("purchase_events", "schema_matches_contract"), ("dim_user_profiles", "records_conserved"),
            ("dim_user_profiles", "keys_not_null_and_unique"), ("purchase_breakdown", "schema_matches_contract"),
            ("purchase_breakdown", "adds_up_to_the_days_purchases")} <= ran
    assert [e.check_name for e in evaluations if not e.passed] == []


def test_dim_user_profiles_holds_each_users_profile_typed(lake):
    lake_dir, _, _ = lake
    profiles = table(lake_dir, "dim_user_profiles").to_pylist()
    assert len(profiles) == USERS - 20 and len({p["user_id"] for p in profiles}) == USERS - 20
    assert all(18 <= p["age"] <= 75 and p["age_band"] for p in profiles)
    rejected = json.loads(next((lake_dir / "quarantine" / "landing_user_profiles").glob("*/reason.json")).read_text())
    assert [r["reason"].split(":")[0] for r in rejected["records"]] == ["wrong column count"] * 2


def test_the_breakdown_adds_up_to_the_days_purchases_by_every_dimension(lake):
    lake_dir, _, _ = lake
    breakdown = table(lake_dir, "purchase_breakdown").to_pylist()
    daily = {str(r["event_date"]): r for r in table(lake_dir, "purchase_sessions_daily").to_pylist()}
    events = table(lake_dir, "purchase_events").to_pylist()
    for day, summary in daily.items():
        day_events = [e for e in events if str(e["event_date"]) == day]
        assert summary["purchases"] == len(day_events)
        assert summary["revenue"] == sum(e["revenue"] for e in day_events)
        assert summary["sessions"] == len({e["session_id"] for e in day_events})
        for dimension in ("category", "brand", "device_type", "os", "browser", "referrer", "payment_method",
                          "age_band", "occupation", "city"):
            rows = [r for r in breakdown if str(r["event_date"]) == day and r["dimension"] == dimension]
            assert sum(r["purchases"] for r in rows) == len(day_events), (day, dimension)
            assert sum(r["margin"] for r in rows) == sum(e["margin"] for e in day_events), (day, dimension)
    # 20 users have no profile: their purchases count under a null age band.
    assert any(r["dimension"] == "age_band" and r["value"] is None for r in breakdown)


def test_every_new_table_is_in_the_duckdb_catalog(lake):
    lake_dir, _, _ = lake
    with duckdb.connect(str(lake_dir.parent / "catalog.duckdb"), read_only=True) as con:
        counts = {name: con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
                  for name in ("purchase_events", "dim_user_profiles", "purchase_breakdown", "purchase_sessions_daily",
                               "landed_purchase_files", "landed_user_profile_files")}
        joined = con.execute("SELECT count(*) FROM purchase_events e JOIN dim_user_profiles p USING (user_id) "
                         "WHERE e.dt = DATE '2024-01-15'").fetchone()[0]
    assert counts["purchase_events"] == ROWS and counts["dim_user_profiles"] == USERS - 20
    assert counts["landed_purchase_files"] == counts["landed_user_profile_files"] == 1
    assert 0 < joined < counts["purchase_events"]


def run_sql(lake_dir, name) -> list[dict]:
    with duckdb.connect(str(lake_dir.parent / "catalog.duckdb"), read_only=True) as con:
        relation = con.sql((SQL_DIR / name).read_text())
        return [dict(zip(relation.columns, row)) for row in relation.fetchall()]


def by(rows: list[dict], *keys: str) -> dict:
    found = {}
    for row in rows:
        key = tuple(row[k] for k in keys)
        total = found.setdefault(key, {"purchases": 0, "revenue": 0, "margin": 0, "users": set()})
        total["purchases"] += 1
        total["revenue"] += row["revenue"]
        total["margin"] += row["margin"]
        total["users"].add(row["user_id"])
    return found


def test_purchase_revenue_by_dimension_sql(lake):
    lake_dir, _, _ = lake
    events = table(lake_dir, "purchase_events").to_pylist()
    rows = run_sql(lake_dir, "purchase_revenue_by_dimension.sql")
    for dimension in ("category", "brand", "device_type", "os", "browser", "referrer", "payment_method"):
        expected = by(events, dimension)
        got = {(r["value"],): (r["purchases"], r["revenue"], r["margin"]) for r in rows if r["dimension"] == dimension}
        assert got == {key: (e["purchases"], e["revenue"], e["margin"]) for key, e in expected.items()}, dimension


def test_purchase_sessions_sql(lake):
    lake_dir, _, _ = lake
    events = table(lake_dir, "purchase_events").to_pylist()
    for row in run_sql(lake_dir, "purchase_sessions.sql"):
        day = [e for e in events if e["event_date"] == row["dt"]]
        sessions = len({e["session_id"] for e in day})
        assert (row["purchases"], row["sessions"], row["revenue"]) == (len(day), sessions, sum(e["revenue"] for e in day))
        assert row["purchases_per_session"] == pytest.approx(len(day) / sessions)


def test_revenue_by_user_segment_sql(lake):
    lake_dir, _, _ = lake
    profiles = {p["user_id"]: p for p in table(lake_dir, "dim_user_profiles").to_pylist()}
    events = [e | {segment: (profiles.get(e["user_id"]) or {}).get(segment) for segment in ("age_band", "occupation", "city")}
              for e in table(lake_dir, "purchase_events").to_pylist()]
    rows = run_sql(lake_dir, "revenue_by_user_segment.sql")
    for segment in ("age_band", "occupation", "city"):
        expected = by(events, segment)
        got = {(r["value"],): (r["purchases"], r["users"], r["revenue"], r["margin"]) for r in rows if r["segment"] == segment}
        assert got == {k: (e["purchases"], len(e["users"]), e["revenue"], e["margin"]) for k, e in expected.items()}
    assert any(r["value"] is None for r in rows)  # buyers without a profile


def test_a_profile_file_landed_later_segments_old_purchases_at_once(lake_dir, instance):
    """Purchases first, profiles later: the profiles' ingest alone (no purchase day recomputed)
    makes the segment query of the old days see them, through the catalog."""
    land(lake_dir, "purchases", "log.csv", purchase_log_csv(300, seed=8, start=START, hours=10, users=50))
    defs = make_definitions(lake_dir, orders_per_day=0)
    assert catch_up(defs, instance, say=lambda _: None)
    assert {r["value"] for r in run_sql(lake_dir, "revenue_by_user_segment.sql")} == {None}
    purchase_runs = len(instance.get_runs(filters=dg.RunsFilter(job_name="purchases_job")))
    land(lake_dir, "user_profiles", "users.csv", user_profiles_csv(50, seed=8))
    assert catch_up(defs, instance, say=lambda _: None)
    assert len(instance.get_runs(filters=dg.RunsFilter(job_name="purchases_job"))) == purchase_runs
    segments = run_sql(lake_dir, "revenue_by_user_segment.sql")
    assert None not in {r["value"] for r in segments} and sum(r["purchases"] for r in segments) == 3 * 300


@pytest.mark.parametrize(
    "table, check, tamper",
    [
        ("purchase_breakdown", "adds_up_to_the_days_purchases", lambda t: t.slice(1)),  # a row lost
        ("purchase_events", "values_valid", lambda t: t.set_column(
            t.schema.get_field_index("margin"), t.schema.field("margin"), pa.array([0] * t.num_rows, t.schema.field("margin").type))),
        ("purchase_events", "records_conserved", lambda t: t.slice(0, t.num_rows - 1)),  # an event lost
    ],
)
def test_a_purchase_table_that_does_not_add_up_fails_its_check(lake, table, check, tamper):
    lake_dir, _, instance = lake
    path = lake_dir / "processed" / table / "dt=2024-01-15" / "part-00000.parquet"
    original = path.read_bytes()
    job = make_definitions(lake_dir, orders_per_day=0).resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=set(), asset_check_selection={dg.AssetCheckKey(dg.AssetKey(table), check)})
    try:
        pq.write_table(tamper(pq.read_table(path)), path)
        result = job.execute_in_process(instance=instance, partition_key="2024-01-15", raise_on_error=False)
    finally:
        path.write_bytes(original)
    [evaluation] = result.get_asset_check_evaluations()
    assert (evaluation.check_name, evaluation.passed) == (check, False)


def test_a_profile_file_landing_while_the_profiles_are_built_is_in_the_table_and_the_check_holds(lake_dir, instance,
                                                                                                  monkeypatch):
    """Each profile ingest starts a build of dim_user_profiles: a file that lands during one is built
    in (the build starts again), and the conservation check recounts the files the table was built from."""
    from ecomm_assets.assets import purchases as purchases_module

    land(lake_dir, "user_profiles", "a.csv", user_profiles_csv(40, seed=1))
    defs = make_definitions(lake_dir, orders_per_day=0)
    assert catch_up(defs, instance, say=lambda _: None)
    raw = next((lake_dir / "raw" / "user_profiles").rglob("*.csv"))
    build, builds = purchases_module.build_dim_user_profiles, []

    def landing_meanwhile(files):
        builds.append(len(files))
        if len(builds) == 1:  # a second profile file ingested while the first build runs
            (raw.parent / raw.name.replace(raw.name[-20:-4], "0" * 16)).write_bytes(user_profiles_csv(60, seed=2))
        return build(files)

    monkeypatch.setattr(purchases_module, "build_dim_user_profiles", landing_meanwhile)
    result = defs.resolve_job_def("user_profiles_job").execute_in_process(instance=instance, raise_on_error=False)
    assert result.success and builds == [1, 2]
    assert {e.check_name: e.passed for e in result.get_asset_check_evaluations()} == {
        "schema_matches_contract": True, "keys_not_null_and_unique": True, "records_conserved": True}
    assert table(lake_dir, "dim_user_profiles").num_rows == 60  # users 1-60; the newer file's 1-40 replace the older's
