import gzip
import json
from datetime import date

import pytest

from ecomm_assets.core.landing import DayWindow, is_landing_file, split_landing_file

WINDOW = DayWindow(date(2024, 1, 1), date(2099, 12, 31))


def test_a_multi_day_file_is_split_by_utc_day():
    records = [
        {"order_id": "a", "order_date": "2024-01-14T23:30:00-02:00"},  # 01:30 UTC on the 15th
        {"order_id": "b", "order_date": "2024-01-15"},
        {"order_id": "c", "order_date": "2024-01-16T08:00:00Z"},
        {"order_id": "d", "order_date": "2024-01-16T09:00:00"},
    ]
    landed = split_landing_file("orders.json", json.dumps(records, indent=2).encode(), WINDOW)
    assert {day: [json.loads(line)["order_id"] for line in lines] for day, lines in landed.days.items()} == {
        date(2024, 1, 15): ["a", "b"],
        date(2024, 1, 16): ["c", "d"],
    }
    assert landed.records_read == 4 and not landed.quarantined


def test_json_lines_keep_each_line_and_the_split_is_deterministic():
    data = b'{"order_id":"a","order_date":"2024-01-15"}\n\n{"order_id":"b","order_date":"2024-01-16"}\n'
    first, second = split_landing_file("x.jsonl", data, WINDOW), split_landing_file("x.jsonl", data, WINDOW)
    assert first.file_id == second.file_id
    assert first.day_bytes(date(2024, 1, 15)) == b'{"order_id":"a","order_date":"2024-01-15"}\n'
    assert {d: first.day_bytes(d) for d in first.days} == {d: second.day_bytes(d) for d in second.days}


def test_bad_lines_are_quarantined_with_reasons_and_counted():
    data = (
        b'{"order_id":"ok","order_date":"2024-01-15"}\n{"order_id": "cut\n\xff\xfe{}\n'
        b'[1, 2]\n{"order_id":"nodate"}\n{"order_id":"baddate","order_date":"soon"}\n'
    )
    landed = split_landing_file("x.jsonl", data, WINDOW)
    reasons = [q["reason"].split(":")[0] for q in landed.quarantined]
    assert reasons == ["malformed JSON", "not UTF-8", "record is not a JSON object", "missing order_date", "unparseable order_date"]
    assert landed.records_read == 6 == landed.records_routed + len(landed.quarantined)


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("empty.json", b"", "empty file"),
        ("blank.jsonl", b"  \n\n", "empty file"),
        ("cut.json", b'[{"order_id": "a", "order_date": "2024-01-15"}, {"order', "malformed or truncated JSON"),
        ("latin1.json", '[{"order_id": "é"}]'.encode("latin-1"), "not UTF-8"),
        ("broken.json.gz", b"not gzip at all", "not a readable gzip file"),
    ],
)
def test_unreadable_files_are_quarantined_whole(name, data, reason):
    landed = split_landing_file(name, data, WINDOW)
    assert landed.file_error.startswith(reason)
    assert not landed.days


def test_gzip_and_wrapped_documents_are_read():
    wrapped = json.dumps({"orders": [{"order_id": "a", "order_date": "2024-01-15"}]}).encode()
    landed = split_landing_file("x.json.gz", gzip.compress(wrapped), WINDOW)
    assert list(landed.days) == [date(2024, 1, 15)]


def test_only_json_files_are_landing_files():
    assert is_landing_file("a/b.json") and is_landing_file("b.JSONL.gz") and is_landing_file("c.ndjson")
    assert not is_landing_file("b.csv") and not is_landing_file(".hidden.json") and not is_landing_file("_tmp.json")
