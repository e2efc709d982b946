"""bench/noop_graph.py, the backfill benchmark's control, stays the project's graph and checks doing nothing;
bench/s3_requests_bench.py classifies requests as S3 bills them and flags what misses its targets."""

from collections import Counter

import dagster as dg
import pytest

from ecomm_assets.definitions import defs
from ecomm_assets_tests.conftest import bench_module


def test_the_control_graph_is_the_project_graph_and_runs_a_range_in_one_run():
    noop_graph = bench_module("noop_graph")
    ours, control = defs.resolve_asset_graph(), noop_graph.defs.resolve_asset_graph()
    assert control.materializable_asset_keys == ours.materializable_asset_keys
    for key in ours.materializable_asset_keys:
        assert control.get(key).parent_keys == ours.get(key).parent_keys, key
        assert control.get(key).partitions_def == ours.get(key).partitions_def, key
        assert control.get(key).backfill_policy == ours.get(key).backfill_policy, key
    # the same check steps with the same specs: their bookkeeping is Dagster's too
    assert {step.node_def.name: list(step.check_specs) for step in noop_graph.defs.asset_checks} == {
        step.node_def.name: list(step.check_specs) for step in defs.asset_checks}
    with dg.DagsterInstance.ephemeral() as instance:
        job = noop_graph.defs.resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(
            instance=instance,
            tags={"dagster/asset_partition_range_start": "2024-01-01", "dagster/asset_partition_range_end": "2024-01-03"},
        )
        assert result.success
        evaluations = [e for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]
        assert len(evaluations) == sum(len(list(step.check_specs)) for step in defs.asset_checks)
        assert all(e.event_specific_data.passed for e in evaluations)
        records = instance.fetch_materializations(dg.AssetKey("orders"), limit=10).records
        assert sorted((r.partition_key, r.asset_materialization.metadata["dagster/row_count"].value) for r in records) == [
            ("2024-01-01", 0), ("2024-01-02", 0), ("2024-01-03", 0)]


def served(method: str, path: str, query: str = "", copy: bool = False, target: str | None = None):
    return bench_module("s3_requests_bench").Served(0.0, method, path, query, copy, target)


@pytest.mark.parametrize(
    ("request_", "bench_class", "billed_as"),
    [
        (("PUT", "/lake/p/processed/t/dt=2024-01-15/part-00000.parquet"), "put", "put"),
        (("PUT", "/lake/p/x", "", True), "other", "copy"),  # a CopyObject
        (("POST", "/lake/p/x", "uploads="), "other", "put"),  # a multipart upload's start
        (("PUT", "/lake/p/x", "partNumber=1&uploadId=u"), "other", "put"),
        (("GET", "/lake", "list-type=2&prefix=p%2F"), "list", "list"),
        (("GET", "/lake", "uploads=&prefix=p%2F"), "list", "list"),  # ListMultipartUploads
        (("GET", "/lake/p/x"), "get", "get"),
        (("HEAD", "/lake/p/x"), "head", "head"),
        (("DELETE", "/lake/p/x"), "delete", "delete"),
        (("POST", "/lake", "delete="), "other", "delete"),  # DeleteObjects
        (("PUT", "/lake"), "other", None),  # CreateBucket: no request the project makes
    ],
    ids=["put", "copy", "multipart-start", "multipart-part", "list", "list-uploads", "get", "head", "delete",
         "delete-objects", "create-bucket"],
)
def test_the_bench_classifies_each_request_as_s3_bills_it(request_, bench_class, billed_as):
    request = served(*request_)
    assert (request.request_class(), request.usage_class()) == (bench_class, billed_as)


def test_the_bench_flags_requests_that_grow_with_the_days_and_writes_of_more_than_one_put():
    bench = bench_module("s3_requests_bench")

    def step(days: int, heads_per_day: int, puts_per_object: int):
        requests = bench.StepRequests()
        for day in range(days):
            key = f"/lake/p/processed/t/dt=2024-01-{10 + day}/part-00000.parquet"
            for _ in range(puts_per_object):
                requests.add(served("PUT", key))
            requests.add(served("GET", key))
            for _ in range(heads_per_day):
                requests.add(served("HEAD", key))
            requests.add(served("PUT", f"/lake/p/.locks/2024-01-{10 + day}.json"))
        requests.add(served("GET", "/lake", "list-type=2"))
        requests.add(served("POST", "/", target="AWSGlue.GetTable"))
        return requests

    runs = {days: {"good": step(days, 0, 1), "heads": step(days, 1, 1), "puts": step(days, 0, 2)} for days in (2, 5)}
    lines, missed = bench.report(runs)
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in lines[2:]}
    assert missed == ["heads", "puts"]
    assert rows["good"].endswith("| met |")
    assert "HEAD grows with the days" in rows["heads"] and "more than one PUT per object" in rows["puts"]
    # Per day and per run apart: a PUT and a lock lease a day, one LIST and one Glue call a run.
    cells = rows["good"].split(" | ")
    assert (cells[1], cells[4], cells[7], cells[10], cells[11]) == ("1/d", "1", "1/d", "1", "1/d")
    assert sum(runs[5]["good"].data.values(), 0) == 11 and runs[5]["good"].lock == Counter({"put": 5})


def test_the_day_memory_bench_steps_are_the_days_assets_upstream_first_each_followed_by_its_checks():
    steps = bench_module("day_memory_bench").plan(defs)
    graph = defs.resolve_asset_graph()
    assets = [s for s in steps if not s.endswith("_checks")]
    assert assets[0] == "snapshots" and {"orders_raw", "order_lines", "orders", "dim_customers", "catalog", "usage"} <= set(assets)
    assert not {"purchase_events", "dim_user_profiles", "purchase_breakdown"} & set(assets)  # the purchase log's, not the day's
    for index, key in enumerate(map(dg.AssetKey, assets)):
        assert {p.to_user_string() for p in graph.get(key).parent_keys} & set(assets) <= set(assets[:index])  # inputs first
    for index, step in enumerate(steps):
        if step.endswith("_checks"):
            assert steps[index - 1] == step.removesuffix("_checks")
    assert [s for s in steps if s.endswith("_checks")] == [
        a + "_checks" for a in assets if graph.get(dg.AssetKey(a)).check_keys]


def test_the_day_memory_bench_prints_each_steps_peak_and_the_target(tmp_path, capsys):
    """A tiny day, three steps: a daily asset (the day's partition), a derived table (no partition)
    and its checks; each in its own process, as the bench runs them. No figure is judged here."""
    bench = bench_module("day_memory_bench")
    assert bench.main(["--orders-per-day", "200", "--steps", "posts_checks,snapshots,posts",
                       "--keep", str(tmp_path / "lake")]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in out}
    assert list(rows)[list(rows).index("step") + 1:list(rows).index("largest")] == ["baseline", "snapshots", "posts", "posts_checks"]
    for step in ("snapshots", "posts", "posts_checks"):
        peak, _, seconds, target = rows[step][:4]
        assert float(peak) > 0 and float(seconds) >= 0 and target in ("met", "MISSED")
    assert float(rows["baseline"][2]) > 0
    assert any(line.startswith("target (issue 13): memory does not grow with the day") for line in out)
    assert any(line.startswith("largest step: ") and "steps within 1024 MiB" in line for line in out)
