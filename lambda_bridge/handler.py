"""AWS Lambda: S3 "object created" events -> ecomm-assets ingest runs, through Dagster's GraphQL API.

Python standard library only (no dagster, no requests, no boto3): it ships as this one file.

Accepted events: S3 notifications (`Records[]`, direct or wrapped in SQS messages, and SNS-in-SQS),
SNS notifications carrying them, and EventBridge "Object Created" events. `s3:TestEvent` is
ignored. Only objects of the lake's bucket under a feed's landing folder (`<prefix>/landing/orders/`,
`<prefix>/landing/purchases/`, `<prefix>/landing/user_profiles/`) that the package would ingest (the
feed's suffixes, in any case; no part of the name below the landing folder starting with '.' or
'_') and whose key is a plain relative path are ingested, by the feed's ingest job; anything else is
logged and skipped.

S3 delivers events at least once. Each object version (bucket, key, etag, and the event's
sequencer, which orders the writes of a key: a version put back has the old etag) launches at most
one run that has not failed: the run is tagged with a hash of it and the bridge asks the webserver
for such runs first. The ingest itself is idempotent, so even two racing deliveries change nothing.
A run that fails (a file not ingested) is retried by the daemon (`dagster/max_retries`).

Every request is bounded by the invocation's deadline (the time Lambda has left, less a margin):
SQS messages not done by then are returned in batchItemFailures, other events raise, so Lambda
delivers them again instead of the function timing out mid-batch.

Environment:
  DAGSTER_GRAPHQL_URL        https://.../graphql (required; http:// only to a loopback host)
  ECOMM_LAKE_URI             s3://bucket/prefix: the lake whose landing zone this bridge serves (required)
  DAGSTER_LOCATION           code location name (default: ecomm_assets)
  DAGSTER_REPOSITORY         repository name (default: __repository__)
  DAGSTER_JOB                job to launch for landing/orders/ (default: ingest_landing_job); the
                             other feeds' jobs are FEEDS' below
  DAGSTER_API_TOKEN          a token for an authenticating proxy or Dagster+, or
  DAGSTER_API_TOKEN_SECRET   the Secrets Manager secret holding it (read through the AWS
                             Parameters and Secrets Lambda extension, over localhost)
  DAGSTER_AUTH_HEADER        the header carrying it (default: Authorization, as "Bearer <token>";
                             any other header, e.g. Dagster-Cloud-Api-Token, gets the bare token)
  HTTP_TIMEOUT_SECONDS       per request (default: 10); HTTP_ATTEMPTS (default: 3)
  DEADLINE_MARGIN_SECONDS    time kept back from Lambda's remaining time to answer (default: 3)
  FUNCTION_TIMEOUT_SECONDS   the time budget when there is no Lambda context (default: 30)
  PARAMETERS_SECRETS_EXTENSION_HTTP_PORT   the extension's port (default: 2773)
"""

import hashlib
import ipaddress
import json
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

LOG = logging.getLogger("ecomm_lambda_bridge")
LOG.setLevel(logging.INFO)

# Copies (this file ships alone; a test keeps them equal) of ecomm_assets.core.layout.LANDING_DIR,
# LANDING_SUFFIXES and HIDDEN_NAME_STARTS, and
# ecomm_assets.automation.LANDING_FILE_TAG, INGEST_MAX_RETRIES and landing_file_tag.
LANDING_DIR = "landing/orders"
LANDING_SUFFIXES = (".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz", ".ndjson.gz")
HIDDEN_NAME_STARTS = (".", "_")
CSV_SUFFIXES = (".csv", ".csv.gz")
# Every feed (ecomm_assets.core.layout.FEEDS: landing folder, suffixes) with its ingest job and op
# (ecomm_assets.automation.INGEST_JOBS, ecomm_assets.assets.landing.INGEST_OPS); a test keeps them equal.
FEEDS = (
    (LANDING_DIR, LANDING_SUFFIXES, "ingest_landing_job", "ingest_landing_files"),
    ("landing/purchases", CSV_SUFFIXES, "ingest_purchases_job", "ingest_purchase_files"),
    ("landing/user_profiles", CSV_SUFFIXES, "ingest_user_profiles_job", "ingest_user_profile_files"),
)
LANDING_FILE_TAG = "ecomm/landing-file"
INGEST_MAX_RETRIES = 2
OBJECT_TAG = "ecomm/s3-object"
# C0 and C1 controls, and the Unicode line and paragraph separators: they forge log lines and
# are no part of a producer's file name.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

LAUNCH_RUN = """
mutation Launch($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message }
  }
}
"""

RUNS_WITH_TAG = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter, limit: 10) {
    __typename
    ... on Runs { results { runId status } }
    ... on Error { message }
  }
}
"""


class BridgeError(Exception):
    """The webserver could not be reached or refused the launch; the event must be retried."""


class DeadlineReached(BridgeError):
    """The invocation is out of time; what is not done must be delivered again."""


@dataclass(frozen=True)
class S3Object:
    bucket: str
    key: str  # decoded
    size: int | None
    etag: str
    sequencer: str

    @property
    def version_id(self) -> str:
        version = f"{self.bucket}/{self.key}@{self.etag}" + (f"@{self.sequencer}" if self.sequencer else "")
        return hashlib.sha256(version.encode()).hexdigest()[:32]


# --- event shapes ----------------------------------------------------------------------------


def objects_in(payload) -> list[S3Object]:
    """The created objects an event (or a message body) tells of, whatever its envelope."""
    if isinstance(payload, str):
        payload = json.loads(payload)
    if not isinstance(payload, dict):
        return []
    if payload.get("Event") == "s3:TestEvent":
        LOG.info("ignored s3:TestEvent for bucket %s", payload.get("Bucket"))
        return []
    if payload.get("Type") == "Notification" and "Message" in payload:  # SNS envelope (in SQS)
        return objects_in(payload["Message"])
    if payload.get("source") == "aws.s3" and "detail" in payload:  # EventBridge
        if payload.get("detail-type") != "Object Created":
            return []
        detail = payload["detail"]
        obj = detail.get("object", {})
        # EventBridge gives the key as stored, not URL-encoded.
        return [S3Object(detail["bucket"]["name"], obj["key"], obj.get("size"), _etag(obj.get("etag")), obj.get("sequencer", ""))]
    found = []
    for record in payload.get("Records", []):
        if record.get("EventSource") == "aws:sns":  # SNS invoking the function directly
            found += objects_in(record["Sns"]["Message"])
        elif record.get("eventSource") == "aws:sqs":
            found += objects_in(record["body"])
        elif record.get("eventSource") == "aws:s3":
            if not record.get("eventName", "").startswith("ObjectCreated:"):
                continue
            s3 = record["s3"]
            obj = s3["object"]
            key = urllib.parse.unquote_plus(obj["key"])  # S3 notifications URL-encode keys
            found.append(S3Object(s3["bucket"]["name"], key, obj.get("size"), _etag(obj.get("eTag")), obj.get("sequencer", "")))
    return found


def _etag(value) -> str:
    return (value or "").strip('"')


# --- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Feed:
    landing_prefix: str  # <prefix>/landing/<feed>/
    suffixes: tuple[str, ...]
    job: str
    op: str


@dataclass(frozen=True)
class Settings:
    graphql_url: str
    bucket: str
    feeds: tuple[Feed, ...]
    location: str
    repository: str
    timeout: float
    attempts: int
    auth_header: str
    deadline_margin: float
    function_timeout: float

    @classmethod
    def from_environment(cls) -> "Settings":
        lake = urllib.parse.urlparse(os.environ["ECOMM_LAKE_URI"])
        if lake.scheme != "s3" or not lake.netloc:
            raise ValueError(f"ECOMM_LAKE_URI must be s3://bucket/prefix, not {os.environ['ECOMM_LAKE_URI']!r}")
        prefix = lake.path.strip("/")
        graphql_url = os.environ["DAGSTER_GRAPHQL_URL"]
        if not is_secure_url(graphql_url):
            raise ValueError(
                f"DAGSTER_GRAPHQL_URL must be https:// (http:// only to a loopback host), not {graphql_url!r}: "
                "the request carries the token and launches runs"
            )
        orders_job = os.environ.get("DAGSTER_JOB", "ingest_landing_job")
        return cls(
            graphql_url=graphql_url,
            bucket=lake.netloc,
            feeds=tuple(
                Feed(f"{prefix}/{folder}/" if prefix else f"{folder}/", suffixes, orders_job if folder == LANDING_DIR else job, op)
                for folder, suffixes, job, op in FEEDS
            ),
            location=os.environ.get("DAGSTER_LOCATION", "ecomm_assets"),
            repository=os.environ.get("DAGSTER_REPOSITORY", "__repository__"),
            timeout=float(os.environ.get("HTTP_TIMEOUT_SECONDS", "10")),
            attempts=int(os.environ.get("HTTP_ATTEMPTS", "3")),
            auth_header=os.environ.get("DAGSTER_AUTH_HEADER", "Authorization"),
            deadline_margin=float(os.environ.get("DEADLINE_MARGIN_SECONDS", "3")),
            function_timeout=float(os.environ.get("FUNCTION_TIMEOUT_SECONDS", "30")),
        )

    def feed_of(self, obj: S3Object) -> Feed | None:
        """The feed whose landing folder holds the object, if any."""
        return next((feed for feed in self.feeds if obj.key.startswith(feed.landing_prefix)), None)

    def landing_name(self, obj: S3Object) -> str:
        """The object's name below its feed's landing folder: the file the ingest reads."""
        return obj.key[len(self.feed_of(obj).landing_prefix) :]

    def skip_reason(self, obj: S3Object) -> str | None:
        """Why the object is not a landed file of this lake, or None if it is one."""
        if obj.bucket != self.bucket:
            return f"not the lake bucket {self.bucket}"
        if obj.key.endswith("/"):
            return "a folder marker"
        unsafe = unsafe_key_reason(obj.key)
        if unsafe:  # before the prefix test: "landing/orders/../x" starts with the prefix
            return f"unsafe key: {unsafe}"
        feed = self.feed_of(obj)
        if feed is None:
            return "not under " + " or ".join(f.landing_prefix for f in self.feeds)
        if any(part.startswith(HIDDEN_NAME_STARTS) for part in self.landing_name(obj).split("/")):
            return "a hidden name (a part of it starting with '.' or '_'), which the ingest ignores"
        if not obj.key.lower().endswith(feed.suffixes):
            return "not one of " + ", ".join(feed.suffixes)
        return None


def unsafe_key_reason(key: str) -> str | None:
    """Why a (decoded) key is not a plain relative path, or None. S3 keys are opaque strings, but
    the name is a path to the ingest, so nothing that could leave the landing zone passes."""
    if key.startswith("/"):
        return "an absolute path"
    if "\\" in key:
        return "a backslash"
    if CONTROL_CHARACTERS.search(key):
        return "a control character"
    segments = key.split("/")
    if ".." in segments:
        return "a '..' segment"
    if "." in segments:
        return "a '.' segment"
    if "" in segments:
        return "an empty segment"
    return None


def is_secure_url(url: str) -> bool:
    """HTTPS to any host, or plain HTTP to this host only (a sidecar proxy, the tests)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https":
        return bool(host)
    if parts.scheme != "http":
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Deadline:
    """When this invocation must stop working (time.monotonic), to answer before Lambda's timeout."""

    at: float

    @classmethod
    def of_invocation(cls, settings: Settings, context) -> "Deadline":
        if context is not None:
            budget = context.get_remaining_time_in_millis() / 1000
        else:
            budget = settings.function_timeout
        return cls(time.monotonic() + budget - settings.deadline_margin)

    def left(self) -> float:
        return self.at - time.monotonic()


_token_cache: dict[str, str] = {}


def api_token(deadline: Deadline) -> str | None:
    if os.environ.get("DAGSTER_API_TOKEN"):
        return os.environ["DAGSTER_API_TOKEN"]
    secret = os.environ.get("DAGSTER_API_TOKEN_SECRET")
    if not secret:
        return None
    if secret not in _token_cache:  # once per container
        # The AWS Parameters and Secrets Lambda Extension serves secrets on localhost.
        port = os.environ.get("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "2773")
        request = urllib.request.Request(
            f"http://localhost:{port}/secretsmanager/get?secretId=" + urllib.parse.quote(secret, safe=""),
            headers={"X-Aws-Parameters-Secrets-Token": os.environ.get("AWS_SESSION_TOKEN", "")},
        )
        if deadline.left() <= 0:
            raise DeadlineReached("no time left to read the API token")
        with urllib.request.urlopen(request, timeout=min(5, deadline.left())) as response:
            _token_cache[secret] = json.loads(response.read())["SecretString"].strip()
    return _token_cache[secret]


def auth_headers(settings: Settings, deadline: Deadline) -> dict[str, str]:
    token = api_token(deadline)
    if not token:
        return {}
    # Authorization takes a scheme; a proxy's or Dagster+'s own header (Dagster-Cloud-Api-Token) the bare token.
    return {settings.auth_header: f"Bearer {token}" if settings.auth_header.lower() == "authorization" else token}


# --- GraphQL ---------------------------------------------------------------------------------


def graphql(settings: Settings, deadline: Deadline, query: str, variables: dict) -> dict:
    """POST a GraphQL request with timeouts and retries (connection errors, 429, 5xx), all
    within the deadline."""
    headers = {"Content-Type": "application/json", "Accept": "application/json", **auth_headers(settings, deadline)}
    body = json.dumps({"query": query, "variables": variables}).encode()
    problem = "none"
    for attempt in range(1, settings.attempts + 1):
        if deadline.left() <= 0:
            raise DeadlineReached(f"out of time after {attempt - 1} attempts; last: {problem}")
        request = urllib.request.Request(settings.graphql_url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=min(settings.timeout, deadline.left())) as response:
                answer = json.loads(response.read())
            if answer.get("errors"):
                raise BridgeError("GraphQL errors: " + "; ".join(e.get("message", str(e)) for e in answer["errors"]))
            return answer["data"]
        except urllib.error.HTTPError as error:
            problem = f"HTTP {error.code} from {settings.graphql_url}: {error.read()[:300]!r}"
            if error.code != 429 and error.code < 500:
                raise BridgeError(problem) from error
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            problem = f"cannot reach {settings.graphql_url}: {error}"
        if attempt < settings.attempts:
            pause = min(2 ** (attempt - 1), 8)
            if pause >= deadline.left():
                raise DeadlineReached(f"out of time after {attempt} attempts; last: {problem}")
            time.sleep(pause)
    raise BridgeError(f"gave up after {settings.attempts} attempts; last: {problem}")


def existing_runs(settings: Settings, deadline: Deadline, obj: S3Object) -> list[dict]:
    data = graphql(settings, deadline, RUNS_WITH_TAG, {"filter": {"tags": [{"key": OBJECT_TAG, "value": obj.version_id}]}})
    result = data["runsOrError"]
    if result["__typename"] != "Runs":
        raise BridgeError(f"listing runs failed: {result.get('message')}")
    return result["results"]


def landing_file_tag(name: str) -> str:
    return name[-200:]


def launch_ingest(settings: Settings, deadline: Deadline, obj: S3Object, name: str) -> str:
    feed = settings.feed_of(obj)
    tags = {
        OBJECT_TAG: obj.version_id,
        "ecomm/s3-key": obj.key,
        "ecomm/s3-etag": obj.etag,
        "ecomm/s3-sequencer": obj.sequencer,
        LANDING_FILE_TAG: landing_file_tag(name),
        "dagster/max_retries": str(INGEST_MAX_RETRIES),
    }
    params = {
        "selector": {"repositoryLocationName": settings.location, "repositoryName": settings.repository, "jobName": feed.job},
        "runConfigData": {"ops": {feed.op: {"config": {"files": [name]}}}},
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
    }
    result = graphql(settings, deadline, LAUNCH_RUN, {"executionParams": params})["launchRun"]
    if result["__typename"] == "LaunchRunSuccess":
        return result["run"]["runId"]
    details = result.get("message") or "; ".join(e["message"] for e in result.get("errors", []))
    raise BridgeError(f"launchRun refused ({result['__typename']}): {details}")


def process(settings: Settings, deadline: Deadline, obj: S3Object) -> dict:
    reason = settings.skip_reason(obj)
    if reason:
        # A skip is final (retrying cannot change it); %r shows a hostile key's control characters escaped.
        LOG.warning("skipped %r in bucket %s: %s", obj.key, obj.bucket, reason)
        return {"key": obj.key, "outcome": "skipped", "reason": reason}
    try:
        live = [r for r in existing_runs(settings, deadline, obj) if r["status"] not in ("FAILURE", "CANCELED")]
        if live:
            LOG.info("duplicate delivery of s3://%s/%s (etag %s): run %s exists", obj.bucket, obj.key, obj.etag, live[0]["runId"])
            return {"key": obj.key, "outcome": "duplicate", "run_id": live[0]["runId"]}
        run_id = launch_ingest(settings, deadline, obj, settings.landing_name(obj))
    except BridgeError as error:
        raise type(error)(f"s3://{obj.bucket}/{obj.key}: {error}") from error
    LOG.info("launched %s for s3://%s/%s (etag %s, sequencer %s)", run_id, obj.bucket, obj.key, obj.etag, obj.sequencer)
    return {"key": obj.key, "outcome": "launched", "run_id": run_id}


def handler(event, context=None):
    settings = Settings.from_environment()
    deadline = Deadline.of_invocation(settings, context)
    records = event.get("Records", []) if isinstance(event, dict) else []
    if records and all(r.get("eventSource") == "aws:sqs" for r in records):
        # Partial batch response: only the messages that failed, or that the deadline left
        # undone, come back to the queue.
        failures, results = [], []
        for message in records:
            try:
                results += [process(settings, deadline, obj) for obj in objects_in(message["body"])]
            except DeadlineReached as error:
                LOG.warning("message %s returns to the queue: %s", message.get("messageId"), error)
                failures.append({"itemIdentifier": message["messageId"]})
            except Exception:  # any failure: this message is retried, the others are not
                LOG.exception("message %s failed", message.get("messageId"))
                failures.append({"itemIdentifier": message["messageId"]})
        return {"batchItemFailures": failures, "results": results}
    # Any other event is retried whole by Lambda on an error; delivered runs are found by their tag.
    return {"results": [process(settings, deadline, obj) for obj in objects_in(event)]}
