import contextlib
import glob
import importlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import dagster as dg
import pytest
import requests
import yaml

from ecomm_assets.resources import SqlCatalogResource

PROJECT = Path(__file__).resolve().parents[1]
DUMMYJSON_DATA = PROJECT.parent / "shared" / "data" / "dummyjson"
COLLECTIONS = ("products", "users", "carts", "posts", "comments")


class DummyJSONStandIn:
    """Serves the real DummyJSON data files the way the API does: pagination envelope with
    limit/skip, limit=0 for everything, 400 on a non-numeric limit, 404s, and a 429 on the
    first `rate_limited_requests` requests (with Retry-After: 0)."""

    def __init__(self, rate_limited_requests: int = 0):
        if not DUMMYJSON_DATA.is_dir():
            pytest.skip(f"{DUMMYJSON_DATA} does not exist (a clone without shared/ beside it)")
        self.data = {name: json.loads((DUMMYJSON_DATA / f"{name}.json").read_text()) for name in COLLECTIONS}
        self.rate_limited_requests = rate_limited_requests
        self.requests: list[str] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                stand_in.requests.append(self.path)
                if len(stand_in.requests) <= stand_in.rate_limited_requests:
                    return self._send(429, {"message": "Too many requests"}, {"Retry-After": "0"})
                status, body = stand_in.answer(self.path)
                self._send(status, body)

            def _send(self, status, body, headers=None):
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, path: str):
        url = urlparse(path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        single = re.fullmatch(r"/(\w+)/(\d+)", url.path)
        if single and single.group(1) in self.data:
            name, record_id = single.group(1), int(single.group(2))
            for record in self.data[name]:
                if record["id"] == record_id:
                    return 200, record
            return 404, {"message": f"{name[:-1].title()} with id '{record_id}' not found"}
        name = url.path.strip("/")
        if name not in self.data:
            return 404, {"message": f"not found: {url.path}"}
        for key in ("limit", "skip"):
            if key in query and not query[key].isdigit():
                return 400, {"message": f"Invalid '{key}' - must be a number"}
        records = self.data[name]
        skip, limit = int(query.get("skip", 0)), int(query.get("limit", 30))
        page = records[skip:] if limit == 0 else records[skip : skip + limit]
        return 200, {name: page, "total": len(records), "skip": skip, "limit": len(page)}

    def close(self):
        self.server.shutdown()
        self.server.server_close()


DAGSTER = os.path.join(os.path.dirname(sys.executable), "dagster")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked slow first (in their order), then the others: see pytest.ini."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(what: str, condition, timeout: float = 240, every: float = 0.5):
    """`condition()`'s first truthy value, polled until `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def graphql(url: str, query: str, timeout: float = 10, **variables) -> dict:
    answer = requests.post(url, json={"query": query, "variables": variables}, timeout=timeout).json()
    assert "errors" not in answer, answer
    return answer["data"]


def _location_loaded(url: str) -> bool:
    try:
        nodes = graphql(url, "{ repositoriesOrError { ... on RepositoryConnection { nodes { name } } } }")
    except (requests.ConnectionError, ValueError):
        return False
    return bool(nodes["repositoriesOrError"]["nodes"])


@contextlib.contextmanager
def running_dagster_dev(cwd: Path, env: dict, *args: str, log: Path):
    """`dagster dev` (webserver, daemon, code server) started in `cwd` with `args`, in a session of
    its own so that it is stopped whole; yields its GraphQL URL once the code location loaded."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/graphql"
    with open(log, "wb") as output:
        process = subprocess.Popen([DAGSTER, "dev", *args, "-h", "127.0.0.1", "-p", str(port)], cwd=cwd, env=env,
                                   stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for("dagster dev's webserver and code location", lambda: _location_loaded(url), timeout=120)
            yield url
        finally:
            os.killpg(process.pid, signal.SIGTERM)  # the session this test started, and only it
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@contextlib.contextmanager
def running_project(folder: Path, settings: dict):
    """`dagster dev` on this project's workspace (this checkout's code, ahead of any other copy the
    environment installed), run in `folder` with its local instance there; alerts go to a file of
    `folder` unless `settings` say otherwise. Yields its GraphQL URL."""
    home = local_instance_home(folder / "home")
    env = os.environ | {
        "DAGSTER_HOME": str(home), "ECOMM_ALERTS_PATH": str(folder / "alerts.jsonl"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")])),
    } | settings
    with running_dagster_dev(folder, env, "-w", str(PROJECT / "workspace.yaml"), log=folder / "dagster-dev.log") as url:
        yield url


FINISHED_BACKFILL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


@dataclass
class UIBackfill:
    id: str
    status: str  # the backfill's final status (BulkActionStatus)
    runs: list[dict]  # in launch order: {"status", "tags": {key: value}, "assets": [key path, ...]}


def launch_ui_backfill(url: str, partition_names: list[str]) -> str:
    """What the UI's "Materialize all" + "Launch backfill" over `partition_names` sends
    (launchPartitionBackfill of every materializable asset); the backfill's id."""
    nodes = graphql(url, "{ assetNodes { assetKey { path } isMaterializable } }")["assetNodes"]
    keys = [node["assetKey"] for node in nodes if node["isMaterializable"]]
    launch = """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
        __typename ... on LaunchBackfillSuccess { backfillId } ... on Error { message } } }"""
    launched = graphql(url, launch, timeout=30, p={"assetSelection": keys, "partitionNames": partition_names})[
        "launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return launched["backfillId"]


def finished_backfill(url: str, backfill_id: str, timeout: float = 300) -> UIBackfill:
    """The backfill `backfill_id` once the daemon ended it (it evaluates backfills every 30 s): its
    final status and its runs."""
    status = "query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } } }"

    def finished():
        now = graphql(url, status, id=backfill_id)["partitionBackfillOrError"]["status"]
        return now if now in FINISHED_BACKFILL else None

    final = wait_for("the backfill to end", finished, timeout=timeout, every=1)
    runs = """query($f: RunsFilter) { runsOrError(filter: $f) { ... on Runs { results {
        status tags { key value } assetSelection { path } } } } }"""
    results = graphql(url, runs, f={"tags": [{"key": "dagster/backfill", "value": backfill_id}]})["runsOrError"]["results"]
    return UIBackfill(backfill_id, final, [  # the newest run first: reversed, the order of their launch
        {"status": run["status"], "tags": {tag["key"]: tag["value"] for tag in run["tags"]},
         "assets": [asset["path"] for asset in run["assetSelection"] or []]} for run in reversed(results)])


@pytest.fixture
def dummyjson():
    stand_in = DummyJSONStandIn()
    yield stand_in
    stand_in.close()


@pytest.fixture
def lake_dir(tmp_path):
    return tmp_path / "lake"


# Run in a process of its own: Arrow's peak allocation is a figure of the whole process.
_ARROW_PEAK = """
import json, sys
from pathlib import Path
import dagster as dg
import pyarrow as pa
from ecomm_assets_tests.conftest import make_definitions
defs = make_definitions(Path(sys.argv[1]), orders_per_day=int(sys.argv[2]))
assets, checked = ({dg.AssetKey(name) for name in json.loads(names)} for names in sys.argv[4:6])
checks = {key for key in defs.resolve_asset_graph().asset_check_keys if key.asset_key in checked}
job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection=assets, asset_check_selection=checks)
assert job.execute_in_process(partition_key=sys.argv[3], instance=dg.DagsterInstance.ephemeral()).success
print(pa.default_memory_pool().max_memory())
"""


def arrow_peak(lake: Path, orders_per_day: int, day: str, assets: Sequence[str] = (), checks_of: Sequence[str] = ()) -> int:
    """The peak of Arrow's memory in a fresh process materializing `assets` and every check of the
    tables `checks_of`, on `day` of the lake (a run that must succeed)."""
    run = subprocess.run([sys.executable, "-c", _ARROW_PEAK, str(lake), str(orders_per_day), day,
                          json.dumps(list(assets)), json.dumps(list(checks_of))],
                         check=False, cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return int(run.stdout.split()[-1])


@pytest.fixture
def instance():
    """An instance in memory: runs record several times faster than on SQLite files."""
    with dg.DagsterInstance.ephemeral() as test_instance:
        yield test_instance


def local_instance_home(home: Path) -> Path:
    """A DAGSTER_HOME holding the project's dagster.yaml (the local instance), telemetry off, with
    its storage in `home` itself rather than in the working directory's .dagster/."""
    home.mkdir(parents=True)
    config = yaml.safe_load((PROJECT / "dagster.yaml").read_text())
    config["storage"] = {"sqlite": {"base_dir": str(home)}}
    (home / "dagster.yaml").write_text(yaml.safe_dump(config | {"telemetry": {"enabled": False}}))
    return home


def make_definitions(lake_dir, sql_catalog: SqlCatalogResource | None = None, **source) -> dg.Definitions:
    """The project's definitions (as imported now: see `project_loaded_with`) on a temporary lake;
    the DuckDB catalog file and the alerts sit next to it."""
    definitions = importlib.import_module("ecomm_assets.definitions")
    resources = importlib.import_module("ecomm_assets.resources")
    return definitions.definitions_with(
        {
            "lake": resources.LakeResource(uri=str(lake_dir)),
            "order_source": resources.OrderSourceResource(**({"orders_per_day": 200} | source)),
            "sql_catalog": sql_catalog or resources.SqlCatalogResource(duckdb_path=str(lake_dir.parent / "catalog.duckdb")),
            "s3": definitions.S3Resource(),
            "alerts": resources.AlertSinkResource(path=str(lake_dir.parent / "alerts.jsonl")),
            "live_feed": resources.LiveFeedResource(),
            "pricing": resources.PricingResource(),
        }
    )


@contextlib.contextmanager
def project_loaded_with(**environment: str):
    """Inside, `ecomm_assets` is imported afresh with `environment` set, as a code location started
    with those settings loads it (settings such as ECOMM_START_DATE are read once, at import);
    afterwards the modules imported before are back. Definitions made inside stay usable. Names a
    test module imported before (e.g. a class it monkeypatches) are the earlier copies: patch
    through `sys.modules` inside the block to reach the fresh ones."""
    saved = {name: module for name, module in sys.modules.items() if name.partition(".")[0] == "ecomm_assets"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        for name in saved:
            del sys.modules[name]
        try:
            yield
        finally:
            for name in [n for n in sys.modules if n.partition(".")[0] == "ecomm_assets"]:
                del sys.modules[name]
            sys.modules.update(saved)


def materialize_day(defs: dg.Definitions, day: str, instance) -> dg.ExecuteInProcessResult:
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(partition_key=day, instance=instance)


def bench_module(name: str):
    """A script of bench/ as a module (registered, as its dataclasses need)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, PROJECT / "bench" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture
def counted_aws(monkeypatch):
    """A moto S3 + Glue endpoint that keeps every request it serves (bench/s3_requests_bench.py's)."""
    server = bench_module("s3_requests_bench").CountingMotoServer()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    yield server
    server.stop()


@pytest.fixture
def aws(monkeypatch):
    """A real S3 + Glue endpoint over HTTP on loopback (moto server), with fake credentials."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    requests.post(f"{endpoint}/moto-api/reset", timeout=10)  # moto keeps state per process, not per server
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    yield endpoint
    server.stop()


def _postgres_bin(name: str) -> str:
    """A PostgreSQL server program: on PATH, or where Debian's postgresql package puts it."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        pytest.fail(f"PostgreSQL server programs not found ({name}): install Debian's postgresql package (.ci/run does)")
    return found


def _wait_accepting(process: subprocess.Popen, port: int, name: str) -> None:
    """Until the server `process` accepts PostgreSQL connections on `port` (30 s at most)."""
    deadline = time.monotonic() + 30
    ready = [_postgres_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(port)]
    while subprocess.run(ready, check=False, capture_output=True).returncode:
        assert process.poll() is None and time.monotonic() < deadline, f"{name} did not start"
        time.sleep(0.2)


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server on loopback in a throwaway cluster; yields its connection settings.
    PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user (in a
    folder of /tmp: pytest's own temporary folders are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="ecomm-postgres-"))
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_owner:
        shutil.chown(folder, "postgres")
    data = folder / "data"
    initdb = subprocess.run([*as_owner, _postgres_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
                            check=False, capture_output=True, text=True)
    assert initdb.returncode == 0, initdb.stderr
    port = free_port()
    server = subprocess.Popen(
        [*as_owner, _postgres_bin("postgres"), "-D", str(data), "-p", str(port), "-k", str(folder),
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    _wait_accepting(server, port, "PostgreSQL")
    yield {"host": "127.0.0.1", "port": port, "user": "postgres"}
    server.terminate()  # runuser passes the signal on to the server
    server.wait(timeout=30)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def pgbouncer(postgres):
    """PgBouncer (Debian's package) on loopback in front of the `postgres` server, pooling by
    transaction, as deploy/README.md recommends; yields its connection settings. It refuses to run as
    root, so as root it runs as the `postgres` user, as the server does."""
    found = shutil.which("pgbouncer") or next(iter(glob.glob("/usr/sbin/pgbouncer")), None)
    if not found:
        pytest.fail("pgbouncer not found: install Debian's pgbouncer package (.ci/run does)")
    folder = Path(tempfile.mkdtemp(prefix="ecomm-pgbouncer-"))
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    port = free_port()
    (folder / "users.txt").write_text(f'"{postgres["user"]}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        f"[databases]\n* = host={postgres['host']} port={postgres['port']}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'users.txt'}\npool_mode = transaction\n"
        f"admin_users = {postgres['user']}\n"  # its console's SHOW STATS: what went through it
    )
    if as_owner:
        for path in (folder, *folder.iterdir()):
            shutil.chown(path, "postgres")
    pooler = subprocess.Popen([*as_owner, found, str(folder / "pgbouncer.ini")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    _wait_accepting(pooler, port, "PgBouncer")
    yield postgres | {"port": port}
    pooler.terminate()
    pooler.wait(timeout=30)
    shutil.rmtree(folder, ignore_errors=True)
