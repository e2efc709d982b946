"""AWS Lambda: S3 "object created" events -> ecomm-assets ingest runs, through Dagster's GraphQL API.

Python standard library only (no dagster, no requests, no boto3): it ships as this one file.

Accepted events: S3 notifications (`Records[]`, direct or wrapped in SQS messages, and SNS-in-SQS),
SNS notifications carrying them, and EventBridge "Object Created" events. `s3:TestEvent` is
ignored. Only objects of the lake's bucket under `<prefix>/landing/orders/` ending in .json,
.jsonl, .json.gz or .jsonl.gz are ingested; anything else is logged and skipped.

S3 delivers events at least once. Each object version (bucket, key, etag) launches at most one
run that has not failed: the run is tagged with a hash of it and the bridge asks the webserver for
such runs first. The ingest itself is idempotent, so even two racing deliveries change nothing.

Environment:
  DAGSTER_GRAPHQL_URL        http(s)://webserver:3000/graphql (required)
  ECOMM_LAKE_URI             s3://bucket/prefix: the lake whose landing zone this bridge serves (required)
  DAGSTER_LOCATION           code location name (default: ecomm_assets)
  DAGSTER_REPOSITORY         repository name (default: __repository__)
  DAGSTER_JOB                job to launch (default: ingest_landing_job)
  DAGSTER_API_TOKEN          bearer token, or
  DAGSTER_API_TOKEN_SECRET   the Secrets Manager secret holding it (read through the AWS
                             Parameters and Secrets Lambda extension, over localhost)
  HTTP_TIMEOUT_SECONDS       per request (default: 10); HTTP_ATTEMPTS (default: 3)
  PARAMETERS_SECRETS_EXTENSION_HTTP_PORT   the extension's port (default: 2773)
"""

import hashlib
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

LOG = logging.getLogger("ecomm_lambda_bridge")
LOG.setLevel(logging.INFO)

LANDING_DIR = "landing/orders/"
LANDING_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")
OBJECT_TAG = "ecomm/s3-object"

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


@dataclass(frozen=True)
class S3Object:
    bucket: str
    key: str  # decoded
    size: int | None
    etag: str
    sequencer: str

    @property
    def version_id(self) -> str:
        return hashlib.sha256(f"{self.bucket}/{self.key}@{self.etag}".encode()).hexdigest()[:32]


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
class Settings:
    graphql_url: str
    bucket: str
    landing_prefix: str
    location: str
    repository: str
    job: str
    timeout: float
    attempts: int

    @classmethod
    def from_environment(cls) -> "Settings":
        lake = urllib.parse.urlparse(os.environ["ECOMM_LAKE_URI"])
        if lake.scheme != "s3" or not lake.netloc:
            raise ValueError(f"ECOMM_LAKE_URI must be s3://bucket/prefix, not {os.environ['ECOMM_LAKE_URI']!r}")
        prefix = lake.path.strip("/")
        return cls(
            graphql_url=os.environ["DAGSTER_GRAPHQL_URL"],
            bucket=lake.netloc,
            landing_prefix=f"{prefix}/{LANDING_DIR}" if prefix else LANDING_DIR,
            location=os.environ.get("DAGSTER_LOCATION", "ecomm_assets"),
            repository=os.environ.get("DAGSTER_REPOSITORY", "__repository__"),
            job=os.environ.get("DAGSTER_JOB", "ingest_landing_job"),
            timeout=float(os.environ.get("HTTP_TIMEOUT_SECONDS", "10")),
            attempts=int(os.environ.get("HTTP_ATTEMPTS", "3")),
        )

    def landing_name(self, obj: S3Object) -> str | None:
        """The file's name under landing/orders/, or None (with the reason logged) to skip it."""
        if obj.bucket != self.bucket:
            LOG.warning("skipped s3://%s/%s: not the lake bucket %s", obj.bucket, obj.key, self.bucket)
        elif not obj.key.startswith(self.landing_prefix):
            LOG.warning("skipped s3://%s/%s: not under %s", obj.bucket, obj.key, self.landing_prefix)
        elif not obj.key.lower().endswith(LANDING_SUFFIXES):
            LOG.warning("skipped s3://%s/%s: not .json/.jsonl(.gz)", obj.bucket, obj.key)
        elif obj.key.endswith("/"):
            LOG.warning("skipped s3://%s/%s: a folder marker", obj.bucket, obj.key)
        else:
            return obj.key[len(self.landing_prefix) :]
        return None


_token_cache: dict[str, str] = {}


def bearer_token() -> str | None:
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
        with urllib.request.urlopen(request, timeout=5) as response:
            _token_cache[secret] = json.loads(response.read())["SecretString"].strip()
    return _token_cache[secret]


# --- GraphQL ---------------------------------------------------------------------------------


def graphql(settings: Settings, query: str, variables: dict) -> dict:
    """POST a GraphQL request with timeouts and retries (connection errors, 429, 5xx)."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    token = bearer_token()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps({"query": query, "variables": variables}).encode()
    problem = ""
    for attempt in range(1, settings.attempts + 1):
        request = urllib.request.Request(settings.graphql_url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=settings.timeout) as response:
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
            time.sleep(min(2 ** (attempt - 1), 8))
    raise BridgeError(f"gave up after {settings.attempts} attempts; last: {problem}")


def existing_runs(settings: Settings, obj: S3Object) -> list[dict]:
    data = graphql(settings, RUNS_WITH_TAG, {"filter": {"tags": [{"key": OBJECT_TAG, "value": obj.version_id}]}})
    result = data["runsOrError"]
    if result["__typename"] != "Runs":
        raise BridgeError(f"listing runs failed: {result.get('message')}")
    return result["results"]


def launch_ingest(settings: Settings, obj: S3Object, name: str) -> str:
    tags = {
        OBJECT_TAG: obj.version_id,
        "ecomm/s3-key": obj.key,
        "ecomm/s3-etag": obj.etag,
        "ecomm/s3-sequencer": obj.sequencer,
        "ecomm/landing-file": name,
    }
    params = {
        "selector": {"repositoryLocationName": settings.location, "repositoryName": settings.repository, "jobName": settings.job},
        "runConfigData": {"ops": {"ingest_landing_files": {"config": {"files": [name]}}}},
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
    }
    result = graphql(settings, LAUNCH_RUN, {"executionParams": params})["launchRun"]
    if result["__typename"] == "LaunchRunSuccess":
        return result["run"]["runId"]
    details = result.get("message") or "; ".join(e["message"] for e in result.get("errors", []))
    raise BridgeError(f"launchRun refused ({result['__typename']}): {details}")


def process(settings: Settings, obj: S3Object) -> dict:
    name = settings.landing_name(obj)
    if name is None:
        return {"key": obj.key, "outcome": "skipped"}
    live = [r for r in existing_runs(settings, obj) if r["status"] not in ("FAILURE", "CANCELED")]
    if live:
        LOG.info("duplicate delivery of s3://%s/%s (etag %s): run %s exists", obj.bucket, obj.key, obj.etag, live[0]["runId"])
        return {"key": obj.key, "outcome": "duplicate", "run_id": live[0]["runId"]}
    run_id = launch_ingest(settings, obj, name)
    LOG.info("launched %s for s3://%s/%s (etag %s, sequencer %s)", run_id, obj.bucket, obj.key, obj.etag, obj.sequencer)
    return {"key": obj.key, "outcome": "launched", "run_id": run_id}


def handler(event, context=None):
    settings = Settings.from_environment()
    records = event.get("Records", []) if isinstance(event, dict) else []
    if records and all(r.get("eventSource") == "aws:sqs" for r in records):
        # Partial batch response: only the messages that failed come back to the queue.
        failures, results = [], []
        for message in records:
            try:
                results += [process(settings, obj) for obj in objects_in(message["body"])]
            except Exception:  # noqa: BLE001  (any failure: this message is retried, the others are not)
                LOG.exception("message %s failed", message.get("messageId"))
                failures.append({"itemIdentifier": message["messageId"]})
        return {"batchItemFailures": failures, "results": results}
    return {"results": [process(settings, obj) for obj in objects_in(event)]}
