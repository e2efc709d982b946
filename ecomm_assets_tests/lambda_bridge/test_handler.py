"""The Lambda bridge on realistic AWS payloads of every shape, against a local GraphQL endpoint
that answers like Dagster's webserver (the real webserver is in test_end_to_end.py)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lambda_bridge import handler as bridge

KEY = "lake-prefix/landing/orders/2024/orders day+1 (final).jsonl"
ENCODED_KEY = "lake-prefix/landing/orders/2024/orders+day%2B1+%28final%29.jsonl"


def s3_record(key=ENCODED_KEY, bucket="shop-lake", event="ObjectCreated:Put", etag="9b2cf535f27731c974343645a3985328"):
    return {
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "eu-west-1",
        "eventTime": "2024-01-15T10:00:00.000Z", "eventName": event,
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.7"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
        "s3": {
            "s3SchemaVersion": "1.0", "configurationId": "landing-jsonl",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": key, "size": 1024, "eTag": etag, "versionId": "096fKKXTRTtl3on89fVO.nfljtsv6qko", "sequencer": "0055AED6DCD90281E5"},
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
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stand_in.requests.append((dict(self.headers), body))
                if stand_in.fail_first > 0:
                    stand_in.fail_first -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps({"data": stand_in.answer(body)}).encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
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


def test_what_is_not_a_landed_order_file_is_skipped_not_raised(graphql):
    event = {"Records": [
        s3_record(key="lake-prefix/landing/orders/readme.txt"),
        s3_record(key="lake-prefix/raw/orders/dt%3D2024-01-15/x.jsonl"),
        s3_record(bucket="someone-else"),
        s3_record(event="ObjectRemoved:Delete"),
        s3_record(key="lake-prefix/landing/orders/day.json.gz"),
    ]}
    assert [r["outcome"] for r in bridge.handler(event)["results"]] == ["skipped", "skipped", "skipped", "launched"]
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
