"""The Lambda bridge on realistic AWS payloads of every shape, against a local GraphQL endpoint
that answers like Dagster's webserver (the real webserver is in test_end_to_end.py)."""

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lambda_bridge import handler as bridge

KEY = "lake-prefix/landing/orders/2024/orders day+1 (final).jsonl"
ENCODED_KEY = "lake-prefix/landing/orders/2024/orders+day%2B1+%28final%29.jsonl"


def s3_record(key=ENCODED_KEY, bucket="shop-lake", event="ObjectCreated:Put", etag="9b2cf535f27731c974343645a3985328",
              sequencer="0055AED6DCD90281E5"):
    return {
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "eu-west-1",
        "eventTime": "2024-01-15T10:00:00.000Z", "eventName": event,
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.7"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
        "s3": {
            "s3SchemaVersion": "1.0", "configurationId": "landing-jsonl",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": key, "size": 1024, "eTag": etag, "versionId": "096fKKXTRTtl3on89fVO.nfljtsv6qko", "sequencer": sequencer},
        },
    }


def sqs_message(body, message_id="059f36b4-87a3-44ab-83d2-661975830a7d"):
    return {
        "messageId": message_id, "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
        "body": body if isinstance(body, str) else json.dumps(body),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1705312800000",
                       "SenderId": "AIDAIENQZJOLO23YVJ4VO", "ApproximateFirstReceiveTimestamp": "1705312800001"},
        "messageAttributes": {}, "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:eu-west-1:111122223333:ecomm-landing", "awsRegion": "eu-west-1",
    }


def sns_envelope(message):
    return {
        "Type": "Notification", "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:eu-west-1:111122223333:ecomm-landing", "Subject": "Amazon S3 Notification",
        "Message": json.dumps(message), "Timestamp": "2024-01-15T10:00:00.000Z", "SignatureVersion": "1",
        "Signature": "EXAMPLE", "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/cert.pem",
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
    }


EVENTBRIDGE = {
    "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103", "detail-type": "Object Created",
    "source": "aws.s3", "account": "111122223333", "time": "2024-01-15T10:00:00Z", "region": "eu-west-1",
    "resources": ["arn:aws:s3:::shop-lake"],
    "detail": {
        "version": "0", "bucket": {"name": "shop-lake"},
        "object": {"key": KEY, "size": 1024, "etag": "b1946ac92492d2347c6235b4d2611184",
                   "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e", "sequencer": "617f08299329d189"},
        "request-id": "N4N7GDK58NMKJ12R", "requester": "111122223333", "source-ip-address": "1.2.3.4", "reason": "PutObject",
    },
}

TEST_EVENT = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2024-01-15T10:00:00.000Z",
              "Bucket": "shop-lake", "RequestId": "5582815E1AEA5ADF", "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"}


class GraphQLStandIn:
    """Answers launchRun and runsOrError like Dagster's webserver, and remembers launched runs."""

    def __init__(self, fail_first: int = 0, refuse: str | None = None):
        self.runs, self.requests, self.fail_first, self.refuse = [], [], fail_first, refuse
        self.fast_requests, self.slow_seconds = None, 0.0  # after fast_requests answers, each takes slow_seconds
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stand_in.requests.append((dict(self.headers), body))
                if stand_in.fast_requests is not None and len(stand_in.requests) > stand_in.fast_requests:
                    threading.Event().wait(stand_in.slow_seconds)  # not time.sleep: the fixture stubs it
                if stand_in.fail_first > 0:
                    stand_in.fail_first -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                answer = json.dumps({"data": stand_in.answer(body)}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(answer)
                except (BrokenPipeError, ConnectionResetError):  # the bridge stopped waiting: its deadline
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/graphql"

    def answer(self, body):
        variables = body["variables"]
        if "launchRun" in body["query"]:
            if self.refuse:
                return {"launchRun": {"__typename": "RunConfigValidationInvalid", "errors": [{"message": self.refuse}]}}
            tags = {t["key"]: t["value"] for t in variables["executionParams"]["executionMetadata"]["tags"]}
            run = {"runId": f"run-{len(self.runs) + 1}", "status": "QUEUED", "tags": tags,
                   "params": variables["executionParams"]}
            self.runs.append(run)
            return {"launchRun": {"__typename": "LaunchRunSuccess", "run": {"runId": run["runId"]}}}
        wanted = {t["key"]: t["value"] for t in variables["filter"]["tags"]}
        matching = [r for r in self.runs if all(r["tags"].get(k) == v for k, v in wanted.items())]
        return {"runsOrError": {"__typename": "Runs", "results": [{"runId": r["runId"], "status": r["status"]} for r in matching]}}

    def close(self):
        self.server.shutdown()


@pytest.fixture
def graphql(monkeypatch):
    stand_in = GraphQLStandIn()
    monkeypatch.setenv("DAGSTER_GRAPHQL_URL", stand_in.url)
    monkeypatch.setenv("ECOMM_LAKE_URI", "s3://shop-lake/lake-prefix")
    monkeypatch.setenv("DAGSTER_API_TOKEN", "secret-token")
    monkeypatch.setenv("HTTP_ATTEMPTS", "3")
    monkeypatch.setattr(bridge.time, "sleep", lambda seconds: None)  # retries without waiting
    yield stand_in
    stand_in.close()


@pytest.mark.parametrize(
    "event",
    [
        {"Records": [s3_record()]},
        {"Records": [sqs_message({"Records": [s3_record()]})]},
        {"Records": [sqs_message(sns_envelope({"Records": [s3_record()]}))]},
        {"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0", "EventSubscriptionArn": "arn:aws:sns:eu-west-1:111122223333:ecomm-landing:1",
                      "Sns": sns_envelope({"Records": [s3_record()]})}]},
        EVENTBRIDGE,
    ],
    ids=["s3", "sqs", "sns-in-sqs", "sns", "eventbridge"],
)
def test_every_event_shape_launches_one_ingest_of_the_decoded_key(graphql, event):
    result = bridge.handler(event)
    [run] = graphql.runs
    assert run["params"]["runConfigData"] == {"ops": {"ingest_landing_files": {"config": {"files": ["2024/orders day+1 (final).jsonl"]}}}}
    assert run["params"]["selector"] == {"repositoryLocationName": "ecomm_assets", "repositoryName": "__repository__", "jobName": "ingest_landing_job"}
    assert run["tags"]["ecomm/s3-key"] == KEY and run["tags"]["ecomm/s3-sequencer"]
    assert run["tags"]["ecomm/s3-etag"] in ("9b2cf535f27731c974343645a3985328", "b1946ac92492d2347c6235b4d2611184")
    assert all(headers["Authorization"] == "Bearer secret-token" for headers, _ in graphql.requests)
    assert result.get("batchItemFailures", []) == []


def test_a_duplicate_delivery_does_not_launch_again(graphql):
    event = {"Records": [sqs_message({"Records": [s3_record()]})]}
    first, second = bridge.handler(event), bridge.handler(event)
    assert len(graphql.runs) == 1
    assert second["results"] == [{"key": KEY, "outcome": "duplicate", "run_id": first["results"][0]["run_id"]}]
    graphql.runs[0]["status"] = "FAILURE"  # a failed ingest may be retried by a redelivery
    assert bridge.handler(event)["results"][0]["outcome"] == "launched"
    changed = {"Records": [s3_record(etag="0f343b0931126a20f133d67c2b018a3b")]}  # new content, same key
    assert bridge.handler(changed)["results"][0]["outcome"] == "launched"


def eventbridge(sequencer):
    return {**EVENTBRIDGE, "detail": {**EVENTBRIDGE["detail"], "object": {**EVENTBRIDGE["detail"]["object"], "sequencer": sequencer}}}


@pytest.mark.parametrize("event", [lambda sequencer: {"Records": [s3_record(sequencer=sequencer)]}, eventbridge], ids=["s3", "eventbridge"])
def test_an_old_version_put_back_is_launched_again(graphql, event):
    """A -> B -> A: the second A has the first's key and ETag; S3 gives each PUT a later sequencer."""
    outcomes = [bridge.handler(event(sequencer))["results"][0]["outcome"] for sequencer in ("0055AED6DCD90281E5", "0055AED6DCD90281E9", "0055AED6DCD90281E9")]
    assert outcomes == ["launched", "launched", "duplicate"]


def test_what_is_not_a_landed_order_file_is_skipped_not_raised(graphql):
    event = {"Records": [
        s3_record(key="lake-prefix/landing/orders/readme.txt"),
        s3_record(key="lake-prefix/raw/orders/dt%3D2024-01-15/x.jsonl"),
        s3_record(bucket="someone-else"),
        s3_record(event="ObjectRemoved:Delete"),
        s3_record(key="lake-prefix/landing/_ingested/orders/day.json"),  # the ingest's move of a handled file
        s3_record(key="lake-prefix/landing/orders/day.json.gz"),
    ]}
    assert [r["outcome"] for r in bridge.handler(event)["results"]] == ["skipped", "skipped", "skipped", "skipped", "launched"]
    assert bridge.handler(TEST_EVENT) == {"results": []}
    assert bridge.handler({"Records": [sqs_message(TEST_EVENT)]}) == {"batchItemFailures": [], "results": []}


def test_sqs_batches_report_only_the_failed_messages(graphql):
    event = {"Records": [
        sqs_message({"Records": [s3_record()]}, message_id="good"),
        sqs_message("{not json", message_id="broken"),
        sqs_message({"Records": [s3_record(key="lake-prefix/landing/orders/b.json")]}, message_id="good-too"),
    ]}
    result = bridge.handler(event)
    assert result["batchItemFailures"] == [{"itemIdentifier": "broken"}]
    assert len(graphql.runs) == 2


def test_http_failures_are_retried_then_surface(graphql, monkeypatch):
    graphql.fail_first = 2  # two 503s, then success on the third attempt
    assert bridge.handler({"Records": [s3_record()]})["results"][0]["outcome"] == "launched"
    graphql.fail_first = 10
    with pytest.raises(bridge.BridgeError, match="gave up after 3 attempts; last: HTTP 503"):
        bridge.handler({"Records": [s3_record(etag="another")]})
    monkeypatch.setenv("DAGSTER_GRAPHQL_URL", "http://127.0.0.1:9/graphql")
    with pytest.raises(bridge.BridgeError, match="cannot reach"):
        bridge.handler({"Records": [s3_record(etag="third")]})


def test_graphql_refusals_surface_with_their_message(graphql):
    graphql.refuse = 'Invalid scalar at path root:ops:ingest_landing_files:config:files'
    event = {"Records": [sqs_message({"Records": [s3_record()]}, message_id="m1")]}
    assert bridge.handler(event)["batchItemFailures"] == [{"itemIdentifier": "m1"}]
    with pytest.raises(bridge.BridgeError, match="RunConfigValidationInvalid.*Invalid scalar"):
        bridge.handler({"Records": [s3_record()]})


def test_the_bridge_imports_nothing_outside_the_standard_library():
    import ast
    import sys
    from pathlib import Path

    tree = ast.parse(Path(bridge.__file__).read_text())
    modules = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert modules and modules <= set(sys.stdlib_module_names), modules - set(sys.stdlib_module_names)


def test_the_token_can_come_from_secrets_manager_through_the_extension(graphql, monkeypatch):
    """The AWS Parameters and Secrets extension answers on localhost with the secret's JSON."""
    seen = []

    class Extension(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("X-Aws-Parameters-Secrets-Token")))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(json.dumps({"Name": "dagster-token", "SecretString": "from-secrets-manager\n"}).encode())

        def log_message(self, *args):
            pass

    extension = ThreadingHTTPServer(("127.0.0.1", 0), Extension)
    threading.Thread(target=extension.serve_forever, daemon=True).start()
    monkeypatch.delenv("DAGSTER_API_TOKEN")
    monkeypatch.setenv("DAGSTER_API_TOKEN_SECRET", "arn:aws:secretsmanager:eu-west-1:111122223333:secret:dagster-token")
    monkeypatch.setenv("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", str(extension.server_port))
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token")
    monkeypatch.setattr(bridge, "_token_cache", {})
    try:
        bridge.handler({"Records": [s3_record()]})
        bridge.handler({"Records": [s3_record(etag="second-version")]})
    finally:
        extension.shutdown()
    assert seen == [("/secretsmanager/get?secretId=arn%3Aaws%3Asecretsmanager%3Aeu-west-1%3A111122223333%3Asecret%3Adagster-token", "session-token")]
    assert {headers["Authorization"] for headers, _ in graphql.requests} == {"Bearer from-secrets-manager"}


# --- keys: only plain relative paths under the landing zone reach the ingest ---------------------

HOSTILE_KEYS = [  # (the key as an S3 notification URL-encodes it, what the refusal names)
    ("lake-prefix/landing/orders/..%2F..%2Fother%2Fcreds.json", "'..' segment"),
    ("lake-prefix/landing/orders/2024/../../../other/creds.json", "'..' segment"),
    ("lake-prefix/landing/orders/2024/..%2F2025%2Fday.json", "'..' segment"),  # resolves inside: still refused
    ("lake-prefix/landing/orders/.%2Fday.json", "'.' segment"),
    ("%2Flake-prefix/landing/orders/day.json", "absolute"),
    ("lake-prefix/landing/orders/2024//day.json", "empty segment"),
    ("lake-prefix/landing/orders/..%5C..%5Cother%5Ccreds.json", "backslash"),
    ("lake-prefix/landing/orders/day%00.json", "control character"),
    ("lake-prefix/landing/orders/day%0Aforged+log+line.json", "control character"),
    ("lake-prefix/landing/orders/%1B%5B2Jday.json", "control character"),
    ("lake-prefix/landing/orders/day%E2%80%A8.json", "control character"),  # U+2028, a line break to log readers
]


@pytest.mark.parametrize("shape", ["s3", "eventbridge"])
@pytest.mark.parametrize("encoded_key, reason", HOSTILE_KEYS)
def test_hostile_keys_are_skipped_with_their_reason_and_never_reach_dagster(graphql, caplog, shape, encoded_key, reason):
    key = bridge.urllib.parse.unquote_plus(encoded_key)
    event = {"Records": [s3_record(key=encoded_key)]} if shape == "s3" else {**EVENTBRIDGE, "detail": {**EVENTBRIDGE["detail"], "object": {**EVENTBRIDGE["detail"]["object"], "key": key}}}
    with caplog.at_level(logging.WARNING, logger="ecomm_lambda_bridge"):
        [result] = bridge.handler(event)["results"]
    assert (result["key"], result["outcome"]) == (key, "skipped")
    assert reason in result["reason"]
    assert graphql.requests == []
    assert [r for r in caplog.records if reason in r.getMessage()], caplog.text


# --- one list of landing suffixes: the bridge takes what the package ingests, and nothing else ----

@pytest.mark.parametrize(
    "name, outcome",
    [
        ("day.json", "launched"), ("day.jsonl", "launched"), ("day.ndjson", "launched"),
        ("day.json.gz", "launched"), ("day.jsonl.gz", "launched"), ("day.ndjson.gz", "launched"),
        ("2024/01/DAY.JSONL", "launched"),
        (".day.json", "skipped"), ("_day.json", "skipped"), ("2024/_SUCCESS.jsonl", "skipped"), ("2024/.tmp-upload.ndjson.gz", "skipped"),
        ("_tmp/a.json", "skipped"), ("a/.x/b.json", "skipped"), (".a.json", "skipped"), ("a.b/_c/d.json.gz", "skipped"),
        ("a_b/c.json", "launched"), ("a./b.json", "launched"),
        ("day.csv", "skipped"), ("day.gz", "skipped"), ("day.json.zip", "skipped"),
    ],
)
def test_the_bridge_ingests_exactly_the_files_the_package_ingests(graphql, caplog, name, outcome):
    from ecomm_assets.core.layout import is_hidden_name, is_landing_file

    with caplog.at_level(logging.WARNING, logger="ecomm_lambda_bridge"):
        [result] = bridge.handler({"Records": [s3_record(key=f"lake-prefix/landing/orders/{name}")]})["results"]
    assert result["outcome"] == outcome == ("launched" if is_landing_file(name) else "skipped")
    if outcome == "skipped":
        assert result["reason"] in caplog.text
    assert ("hidden" in result.get("reason", "")) == is_hidden_name(name)


def test_the_bridge_copies_of_the_package_constants_are_equal():
    from ecomm_assets.automation import INGEST_MAX_RETRIES, LANDING_FILE_TAG
    from ecomm_assets.core.layout import (
        HIDDEN_NAME_STARTS,
        LANDING_DIR,
        LANDING_SUFFIXES,
    )

    assert bridge.LANDING_SUFFIXES == LANDING_SUFFIXES
    assert bridge.HIDDEN_NAME_STARTS == HIDDEN_NAME_STARTS
    assert bridge.LANDING_DIR == LANDING_DIR
    assert (bridge.LANDING_FILE_TAG, bridge.INGEST_MAX_RETRIES) == (LANDING_FILE_TAG, INGEST_MAX_RETRIES)


def test_the_bridge_copy_of_every_feed_is_equal():
    from ecomm_assets.assets.landing import INGEST_OPS
    from ecomm_assets.automation import INGEST_JOBS
    from ecomm_assets.core.layout import FEEDS

    assert bridge.FEEDS == tuple(
        (feed.landing_dir, feed.suffixes, INGEST_JOBS[feed.name].name, INGEST_OPS[feed.name].name) for feed in FEEDS)


@pytest.mark.parametrize(
    "folder, name, outcome, job, op",
    [
        ("purchases", "2024/01/log.csv", "launched", "ingest_purchases_job", "ingest_purchase_files"),
        ("purchases", "LOG.CSV.GZ", "launched", "ingest_purchases_job", "ingest_purchase_files"),
        ("user_profiles", "users.csv", "launched", "ingest_user_profiles_job", "ingest_user_profile_files"),
        ("purchases", "log.json", "skipped", None, None),
        ("purchases", "_tmp/log.csv", "skipped", None, None),
        ("orders", "log.csv", "skipped", None, None),
        ("_ingested/purchases", "log.csv", "skipped", None, None),
        ("refunds", "log.csv", "skipped", None, None),
    ],
)
def test_the_bridge_launches_each_feeds_ingest_for_its_own_files(graphql, folder, name, outcome, job, op):
    from ecomm_assets.assets.landing import skip_reason
    from ecomm_assets.core.layout import FEEDS

    [result] = bridge.handler({"Records": [s3_record(key=f"lake-prefix/landing/{folder}/{name}")]})["results"]
    feed = next((f for f in FEEDS if f.name == folder), None)
    assert result["outcome"] == outcome == ("launched" if feed and not skip_reason(name, feed) else "skipped")
    if outcome == "launched":
        [run] = graphql.runs
        assert run["params"]["selector"]["jobName"] == job
        assert run["params"]["runConfigData"] == {"ops": {op: {"config": {"files": [name]}}}}
    else:
        assert graphql.runs == []


@pytest.mark.parametrize("name", ["day.json", "a" * 195 + ".json", "a" * 196 + ".json", "é" * 300 + ".json", "x/" * 400 + "y.json"])
def test_the_bridge_tags_an_ingest_run_as_the_landing_sensor_does(graphql, name):
    """The same tags, so a landed name has one concurrency limit (ecomm/landing-file) and one retry
    count whichever of them requests its ingest."""
    from ecomm_assets.automation import landing_run_request

    bridge.handler({"Records": [s3_record(key=bridge.urllib.parse.quote_plus(f"lake-prefix/landing/orders/{name}", safe="/"))]})
    [run] = graphql.runs
    sensor_tags = landing_run_request(name, 1024, "etag").tags
    assert {key: run["tags"].get(key) for key in sensor_tags} == sensor_tags


# --- trust: HTTPS off the host, the token in the header the proxy or Dagster+ reads -------------

@pytest.mark.parametrize(
    "url, accepted",
    [
        ("https://dagster.example.com/graphql", True),
        ("http://localhost:3000/graphql", True),
        ("http://127.0.0.2:3000/graphql", True),
        ("http://[::1]:3000/graphql", True),
        ("http://dagster.internal:3000/graphql", False),
        ("http://10.0.0.5:3000/graphql", False),
        ("http://127.0.0.1.nip.io/graphql", False),
        ("http://localhost.example.com/graphql", False),
        ("http://127.0.0.1@dagster.example.com/graphql", False),
        ("HTTP://dagster.example.com/graphql", False),
        ("file:///etc/passwd", False),
        ("ftp://dagster.example.com/graphql", False),
        ("https:///graphql", False),
        ("dagster.example.com:3000/graphql", False),
    ],
)
def test_the_webserver_url_must_be_https_unless_it_is_loopback(graphql, monkeypatch, url, accepted):
    monkeypatch.setenv("DAGSTER_GRAPHQL_URL", url)
    if accepted:
        assert bridge.handler(TEST_EVENT) == {"results": []}
    else:
        with pytest.raises(ValueError, match="DAGSTER_GRAPHQL_URL must be https://"):
            bridge.handler(TEST_EVENT)


@pytest.mark.parametrize(
    "header_setting, token, expected",
    [
        (None, "secret-token", {"authorization": "Bearer secret-token"}),
        ("Authorization", "secret-token", {"authorization": "Bearer secret-token"}),
        ("Dagster-Cloud-Api-Token", "secret-token", {"dagster-cloud-api-token": "secret-token"}),
        ("X-Proxy-Token", "secret-token", {"x-proxy-token": "secret-token"}),
        (None, None, {}),
    ],
)
def test_the_token_goes_in_the_configured_header(graphql, monkeypatch, header_setting, token, expected):
    if header_setting:
        monkeypatch.setenv("DAGSTER_AUTH_HEADER", header_setting)
    if token is None:
        monkeypatch.delenv("DAGSTER_API_TOKEN")
    bridge.handler({"Records": [s3_record()]})
    auth_headers = {"authorization", "dagster-cloud-api-token", "x-proxy-token"}
    sent = [{k.lower(): v for k, v in headers.items() if k.lower() in auth_headers} for headers, _ in graphql.requests]
    assert sent == [expected, expected]  # the run lookup and the launch


# --- deadline: the bridge returns before Lambda's timeout; what it could not do comes back -------

class LambdaContext:
    """The part of Lambda's context object the bridge reads: the time left before the timeout."""

    def __init__(self, millis: int):
        self.ends = time.monotonic() + millis / 1000

    def get_remaining_time_in_millis(self) -> int:
        return int((self.ends - time.monotonic()) * 1000)


@pytest.mark.parametrize(
    "fast_requests, failed",
    [(0, ["m1", "m2", "m3"]), (2, ["m2", "m3"]), (4, ["m3"])],  # each message takes two requests
)
def test_a_slow_webserver_cannot_make_an_sqs_batch_overrun_the_function_timeout(graphql, monkeypatch, fast_requests, failed):
    monkeypatch.setenv("HTTP_TIMEOUT_SECONDS", "10")
    monkeypatch.setenv("DEADLINE_MARGIN_SECONDS", "1")
    graphql.fast_requests, graphql.slow_seconds = fast_requests, 8
    event = {"Records": [sqs_message({"Records": [s3_record(key=f"lake-prefix/landing/orders/{m}.json")]}, message_id=m) for m in ("m1", "m2", "m3")]}
    started = time.monotonic()
    result = bridge.handler(event, LambdaContext(3000))
    assert time.monotonic() - started < 3.0  # within the function's timeout, with time to answer
    assert [f["itemIdentifier"] for f in result["batchItemFailures"]] == failed  # redelivered, not dropped
    assert len(graphql.runs) == 3 - len(failed)


def test_without_a_context_the_deadline_setting_bounds_a_direct_event(graphql, monkeypatch):
    monkeypatch.setenv("HTTP_TIMEOUT_SECONDS", "10")
    monkeypatch.setenv("FUNCTION_TIMEOUT_SECONDS", "3")
    monkeypatch.setenv("DEADLINE_MARGIN_SECONDS", "1")
    graphql.fast_requests, graphql.slow_seconds = 2, 8
    event = {"Records": [s3_record(key="lake-prefix/landing/orders/a.json"), s3_record(key="lake-prefix/landing/orders/b.json")]}
    started = time.monotonic()
    # An asynchronous invocation that fails is retried whole by Lambda, then goes to the dead-letter queue.
    with pytest.raises(bridge.DeadlineReached, match="landing/orders/b.json"):
        bridge.handler(event)
    assert time.monotonic() - started < 3.0
    assert [run["tags"]["ecomm/s3-key"] for run in graphql.runs] == ["lake-prefix/landing/orders/a.json"]
