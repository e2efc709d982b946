"""Settings: read from the environment once, validated when the definitions load, one default each."""

import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from ecomm_assets.settings import (
    CatalogBackend,
    OrderSource,
    SettingError,
    Settings,
    Switch,
    environment_name,
)

PROJECT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "environment, expected",
    [
        ({}, Settings()),
        ({"ECOMM_SOURCE": "DummyJSON"}, Settings(source=OrderSource.DUMMYJSON)),
        ({"ECOMM_CATALOG": " glue "}, Settings(catalog=CatalogBackend.GLUE)),
        ({"ECOMM_LANDING_SENSOR": "OFF"}, Settings(landing_sensor=Switch.OFF)),
        ({"ECOMM_GLUE_PARTITION_PROJECTION": "off"}, Settings(glue_partition_projection=Switch.OFF)),
        ({"ECOMM_ORDERS_PER_DAY": "0", "ECOMM_SEED": "7"}, Settings(orders_per_day=0, seed=7)),
        ({"ECOMM_START_DATE": "2023-10-01"}, Settings(start_date=Settings.start_date.replace(2023, 10, 1))),
        ({"AWS_REGION": "eu-west-1", "ECOMM_LAKE_URI": "s3://b/p"}, Settings(aws_region="eu-west-1", lake_uri="s3://b/p")),
        # Empty means unset (`VAR=` in compose files and CI), and surrounding spaces never count.
        ({"ECOMM_S3_ENDPOINT_URL": "", "ECOMM_LAKE_URI": " ", "ECOMM_SOURCE": ""}, Settings()),
        ({"ECOMM_START_DATE": " 2024-02-01 "}, Settings(start_date=Settings.start_date.replace(2024, 2, 1))),
        ({"ECOMM_FEED_EVERY_MINUTES": "60", "ECOMM_FEED_ORDERS_PER_TICK": "0", "ECOMM_FEED_LATE_RATE": "1",
          "ECOMM_FEED_DUPLICATE_RATE": "0.5"},
         Settings(feed_every_minutes=60, feed_orders_per_tick=0, feed_late_rate=1.0, feed_duplicate_rate=0.5)),
        ({"ECOMM_FEED_EVERY_MINUTES": "1440", "ECOMM_FEED_LATE_RATE": "0"}, Settings(feed_every_minutes=1440, feed_late_rate=0.0)),
        ({"ECOMM_PII_HASH_KEY": " 7f3a secret "}, Settings(pii_hash_key="7f3a secret")),
        ({"ECOMM_PURCHASES_TIMEZONE": "Asia/Kolkata"}, Settings(purchases_timezone="Asia/Kolkata")),
        ({"ECOMM_BACKFILL_DAYS_PER_RUN": "30"}, Settings(backfill_days_per_run=30)),
        ({"ECOMM_BACKFILL_DAYS_PER_RUN": "1"}, Settings(backfill_days_per_run=1)),
    ],
    ids=["defaults", "source", "catalog", "switch-upper", "projection", "numbers", "start", "aws", "empty", "spaces",
         "feed", "feed-daily", "hash-key", "time-zone", "days-per-run", "one-day-runs"],
)
def test_valid_settings_are_read(environment, expected):
    assert Settings.from_environment(environment) == expected


@pytest.mark.parametrize(
    "environment, message",
    [
        # `false` and `no` used to leave a switch on silently: now they are refused.
        ({"ECOMM_LANDING_SENSOR": "false"}, "ECOMM_LANDING_SENSOR='false': use one of 'on', 'off'"),
        ({"ECOMM_GLUE_PARTITION_PROJECTION": "no"}, "ECOMM_GLUE_PARTITION_PROJECTION='no': use one of 'on', 'off'"),
        ({"ECOMM_SOURCE": "dummy"}, "ECOMM_SOURCE='dummy': use one of 'synthetic', 'dummyjson', 'landing'"),
        ({"ECOMM_CATALOG": "athena"}, "ECOMM_CATALOG='athena': use one of 'duckdb', 'glue'"),
        ({"ECOMM_ORDERS_PER_DAY": "1e3"}, "ECOMM_ORDERS_PER_DAY='1e3'"),
        ({"ECOMM_SEED": "-1"}, "ECOMM_SEED='-1': must be a whole number of ASCII digits, not negative"),
        ({"ECOMM_ORDERS_PER_DAY": "1_000"}, "ECOMM_ORDERS_PER_DAY='1_000'"),
        ({"ECOMM_ORDERS_PER_DAY": "\u0661\u0660"}, "ECOMM_ORDERS_PER_DAY="),  # Arabic-Indic digits
        ({"ECOMM_START_DATE": "20240201"}, "ECOMM_START_DATE='20240201': must be a date written YYYY-MM-DD"),
        ({"ECOMM_START_DATE": "2024/01/01"}, "ECOMM_START_DATE='2024/01/01'"),
        ({"ECOMM_SEED": "4 2"}, "ECOMM_SEED='4 2'"),
        ({"ECOMM_FEED_EVERY_MINUTES": "7"}, "ECOMM_FEED_EVERY_MINUTES='7': must divide an hour"),
        ({"ECOMM_FEED_EVERY_MINUTES": "0"}, "ECOMM_FEED_EVERY_MINUTES='0': must divide an hour"),
        ({"ECOMM_FEED_EVERY_MINUTES": "90"}, "ECOMM_FEED_EVERY_MINUTES='90'"),
        ({"ECOMM_FEED_LATE_RATE": "1.5"}, "ECOMM_FEED_LATE_RATE='1.5': must be a share of the orders, from 0 to 1"),
        ({"ECOMM_FEED_LATE_RATE": "5%"}, "ECOMM_FEED_LATE_RATE='5%': must be a decimal number"),
        ({"ECOMM_FEED_DUPLICATE_RATE": "nan"}, "ECOMM_FEED_DUPLICATE_RATE='nan': must be a decimal number"),
        ({"ECOMM_FEED_DUPLICATE_RATE": "-0.1"}, "ECOMM_FEED_DUPLICATE_RATE='-0.1'"),
        ({"ECOMM_FEED_ORDERS_PER_TICK": "1000", "ECOMM_FEED_EVERY_MINUTES": "1"},
         "ECOMM_FEED_ORDERS_PER_TICK=1000: 1000 orders per tick every 1 minutes is 1,440,000 a day, over 1,000,000"),
        ({"ECOMM_PURCHASES_TIMEZONE": "Mars/Olympus"},
         "ECOMM_PURCHASES_TIMEZONE='Mars/Olympus': must be an IANA time zone name such as UTC or Europe/Berlin"),
        ({"ECOMM_PURCHASES_TIMEZONE": "../../etc/passwd"}, "ECOMM_PURCHASES_TIMEZONE='../../etc/passwd': must be an IANA"),
        ({"ECOMM_PURCHASES_TIMEZONE": "+05:30"}, "ECOMM_PURCHASES_TIMEZONE='+05:30': must be an IANA"),
        ({"ECOMM_PURCHASES_TIMEZONE": "posix/Asia/Kolkata"}, "ECOMM_PURCHASES_TIMEZONE='posix/Asia/Kolkata': must be an IANA"),
        ({"ECOMM_BACKFILL_DAYS_PER_RUN": "0"}, "ECOMM_BACKFILL_DAYS_PER_RUN='0': must be at least 1 day"),
        ({"ECOMM_BACKFILL_DAYS_PER_RUN": "-5"}, "ECOMM_BACKFILL_DAYS_PER_RUN='-5': must be a whole number"),
        ({"ECOMM_BACKFILL_DAYS_PER_RUN": "7d"}, "ECOMM_BACKFILL_DAYS_PER_RUN='7d': must be a whole number"),
    ],
    ids=["switch-false", "switch-no", "source", "catalog", "int", "negative", "underscore", "non-ascii", "basic-date",
         "date", "inner-space", "feed-7-minutes", "feed-0-minutes", "feed-90-minutes", "late-over-1", "percent", "nan",
         "negative-rate", "too-many-a-day", "unknown-zone", "zone-path", "zone-offset", "zone-arrow-lacks",
         "zero-days-per-run", "negative-days-per-run", "days-per-run-unit"],
)
def test_invalid_settings_fail_with_the_variable_and_the_choices(environment, message):
    with pytest.raises(SettingError) as raised:
        Settings.from_environment(environment)
    assert message in str(raised.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(SettingError) as raised:
        Settings.from_environment({"ECOMM_SOURCE": "x", "ECOMM_CATALOG": "y"})
    assert "ECOMM_SOURCE='x'" in str(raised.value) and "ECOMM_CATALOG='y'" in str(raised.value)


def test_a_bad_setting_stops_the_definitions_from_loading():
    """As `dagster dev` or the CLI would load them: the error names the variable, not a stack of Dagster's."""
    check = subprocess.run(
        [sys.executable, "-c", "import ecomm_assets; ecomm_assets.defs"],
        cwd=PROJECT, env={"PATH": "/usr/bin:/bin", "ECOMM_LANDING_SENSOR": "false"}, capture_output=True, text=True,
        timeout=120,
    )
    assert check.returncode != 0
    assert "SettingError: invalid settings: ECOMM_LANDING_SENSOR='false': use one of 'on', 'off'" in check.stderr


def test_the_hash_key_is_read_but_never_shown_by_the_settings():
    settings = Settings.from_environment({"ECOMM_PII_HASH_KEY": "7f3a secret"})
    assert settings.pii_hash_key == "7f3a secret" and "7f3a" not in repr(settings)


def test_the_readme_documents_every_setting_with_its_default():
    readme = (PROJECT / "README.md").read_text()
    rows = dict(re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]+) \|", readme, re.MULTILINE))
    for field in fields(Settings):
        name = environment_name(field.name)
        assert name in rows, f"{name} is not in the README's settings table"
        default = field.default
        if default is not None:
            assert rows[name].strip() == f"`{default}`", (name, rows[name])
