"""The SAM template wires what the bridge relies on: every landed file notifies the queue, dead
letters raise an alarm, the webserver is reachable only from the bridge, abandoned uploads expire.
(CI also runs cfn-lint and checkov on it.)"""

from pathlib import Path

import pytest
import yaml

from ecomm_assets.core.layout import FEEDS

TEMPLATE = Path(__file__).parents[2] / "lambda_bridge" / "template.yaml"


class CloudFormationLoader(yaml.SafeLoader):
    """Reads CloudFormation's short tags (!Ref X, !Sub "...") as {"Ref": X}, {"Fn::Sub": "..."}."""


def _intrinsic(loader, suffix, node):
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        return {name: value.split(".", 1) if suffix == "GetAtt" else value}
    if isinstance(node, yaml.SequenceNode):
        return {name: loader.construct_sequence(node, deep=True)}
    return {name: loader.construct_mapping(node, deep=True)}


CloudFormationLoader.add_multi_constructor("!", _intrinsic)


@pytest.fixture(scope="module")
def resources():
    return yaml.load(TEMPLATE.read_text(), Loader=CloudFormationLoader)["Resources"]


def of_type(resources, kind):
    return {name: r["Properties"] for name, r in resources.items() if r["Type"] == kind}


def key_rules(configuration):
    return {rule["Name"]: rule["Value"] for rule in configuration.get("Filter", {}).get("S3Key", {}).get("Rules", [])}


@pytest.mark.parametrize(
    "folder, suffix",
    [(feed.landing_dir, suffix) for feed in FEEDS for suffix in feed.suffixes + tuple(s.upper() for s in feed.suffixes)],
)
def test_every_landing_suffix_of_every_feed_notifies_the_landing_queue(resources, folder, suffix):
    """The package ingests suffixes in any case; S3 filters are case-sensitive, so a suffix filter
    would have to list every spelling. A landed name must reach the bridge, which decides."""
    [bucket] = of_type(resources, "AWS::S3::Bucket").values()
    key = f"ecomm/{folder}/2024/day{suffix}"
    matching = []
    for configuration in bucket["NotificationConfiguration"]["QueueConfigurations"]:
        rules = key_rules(configuration)
        prefix = rules.get("prefix", {"Fn::Sub": ""})["Fn::Sub"].replace("${LakePrefix}", "ecomm")
        if configuration["Event"] == "s3:ObjectCreated:*" and key.startswith(prefix) and key.endswith(rules.get("suffix", "")):
            matching.append(configuration["Queue"])
    assert matching == [{"Fn::GetAtt": ["LandingQueue", "Arn"]}]


@pytest.mark.parametrize("folder", [feed.ingested_dir for feed in FEEDS])
def test_the_ingest_s_move_of_a_handled_file_notifies_nothing(resources, folder):
    """The ingest moves each handled file below landing/_ingested/<feed>/ (a copy, then a delete):
    that copy must not start another ingest."""
    [bucket] = of_type(resources, "AWS::S3::Bucket").values()
    key = f"ecomm/{folder}/2024/day.json"
    for configuration in bucket["NotificationConfiguration"]["QueueConfigurations"]:
        rules = key_rules(configuration)
        prefix = rules.get("prefix", {"Fn::Sub": ""})["Fn::Sub"].replace("${LakePrefix}", "ecomm")
        assert not key.startswith(prefix) and prefix, configuration


def test_dead_letters_are_kept_14_days_and_raise_an_alarm(resources):
    queues = of_type(resources, "AWS::SQS::Queue")
    dead_letter_queue = queues["LandingQueue"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    assert queues[dead_letter_queue]["MessageRetentionPeriod"] == 14 * 24 * 3600
    alarms = [
        a for a in of_type(resources, "AWS::CloudWatch::Alarm").values()
        if a["Namespace"] == "AWS/SQS" and a["MetricName"] == "ApproximateNumberOfMessagesVisible"
        and a["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dead_letter_queue, "QueueName"]}}]
    ]
    [alarm] = alarms
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    [action] = alarm["AlarmActions"]
    assert resources[action["Ref"]]["Type"] == "AWS::SNS::Topic"


def test_only_the_bridge_security_group_is_let_in_to_the_webserver(resources):
    function = resources["BridgeFunction"]["Properties"]
    [bridge_group] = function["VpcConfig"]["SecurityGroupIds"]
    assert function["VpcConfig"]["SubnetIds"] == {"Ref": "SubnetIds"}
    assert resources[bridge_group["Ref"]]["Type"] == "AWS::EC2::SecurityGroup"
    [ingress] = of_type(resources, "AWS::EC2::SecurityGroupIngress").values()
    assert ingress["GroupId"] == {"Ref": "WebserverSecurityGroupId"}
    assert ingress["SourceSecurityGroupId"] == bridge_group
    assert ingress["FromPort"] == ingress["ToPort"] == {"Ref": "WebserverPort"}
    egress = resources[bridge_group["Ref"]]["Properties"]["SecurityGroupEgress"]
    assert {"DestinationSecurityGroupId": {"Ref": "WebserverSecurityGroupId"}, "FromPort": {"Ref": "WebserverPort"}}.items() <= egress[0].items()


def test_the_webserver_url_parameter_requires_https():
    parameters = yaml.load(TEMPLATE.read_text(), Loader=CloudFormationLoader)["Parameters"]
    assert parameters["DagsterGraphqlUrl"]["AllowedPattern"].startswith("^https://")


def test_incomplete_multipart_uploads_are_aborted(resources):
    [bucket] = of_type(resources, "AWS::S3::Bucket").values()
    rules = [r for r in bucket["LifecycleConfiguration"]["Rules"] if r["Status"] == "Enabled" and "AbortIncompleteMultipartUpload" in r]
    assert [r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] for r in rules] == [1]
