import gzip
import json
from datetime import date

import pytest

from ecomm_assets.core.landing import DayWindow, split_landing_file
from ecomm_assets.core.layout import is_landing_file

WINDOW = DayWindow(date(2024, 1, 1), date(2099, 12, 31))
KEY = b"test key"


def test_a_multi_day_file_is_split_by_utc_day():
    records = [
        {"order_id": "a", "order_date": "2024-01-14T23:30:00-02:00"},  # 01:30 UTC on the 15th
        {"order_id": "b", "order_date": "2024-01-15"},
        {"order_id": "c", "order_date": "2024-01-16T08:00:00Z"},
        {"order_id": "d", "order_date": "2024-01-16T09:00:00"},
    ]
    landed = split_landing_file("orders.json", json.dumps(records, indent=2).encode(), WINDOW, key=KEY)
    assert {day: [json.loads(line)["order_id"] for line in lines] for day, lines in landed.days.items()} == {
        date(2024, 1, 15): ["a", "b"],
        date(2024, 1, 16): ["c", "d"],
    }
    assert landed.records_read == 4 and not landed.quarantined


def test_json_lines_keep_each_line_and_the_split_is_deterministic():
    data = b'{"order_id":"a","order_date":"2024-01-15"}\n\n{"order_id":"b","order_date":"2024-01-16"}\n'
    first, second = split_landing_file("x.jsonl", data, WINDOW, key=KEY), split_landing_file("x.jsonl", data, WINDOW, key=KEY)
    assert first.file_id == second.file_id
    assert first.day_bytes(date(2024, 1, 15)) == b'{"order_id":"a","order_date":"2024-01-15"}\n'
    assert {d: first.day_bytes(d) for d in first.days} == {d: second.day_bytes(d) for d in second.days}


def test_bad_lines_are_quarantined_with_reasons_and_counted():
    data = (
        b'{"order_id":"ok","order_date":"2024-01-15"}\n{"order_id": "cut\n\xff\xfe{}\n'
        b'[1, 2]\n{"order_id":"nodate"}\n{"order_id":"baddate","order_date":"soon"}\n'
    )
    landed = split_landing_file("x.jsonl", data, WINDOW, key=KEY)
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
    landed = split_landing_file(name, data, WINDOW, key=KEY)
    assert landed.file_error.startswith(reason)
    assert not landed.days


def test_gzip_and_wrapped_documents_are_read():
    wrapped = json.dumps({"orders": [{"order_id": "a", "order_date": "2024-01-15"}]}).encode()
    landed = split_landing_file("x.json.gz", gzip.compress(wrapped), WINDOW, key=KEY)
    assert list(landed.days) == [date(2024, 1, 15)]


def test_only_json_files_are_landing_files():
    assert is_landing_file("a/b.json") and is_landing_file("b.JSONL.gz") and is_landing_file("c.ndjson")
    assert not is_landing_file("b.csv") and not is_landing_file(".hidden.json") and not is_landing_file("_tmp.json")


GOOD = '{"order_id":"ok","order_date":"2024-01-15T10:00:00Z"}'
DEEP = '{"order_id":"deep","order_date":"2024-01-15","x":' + "[" * 10_000 + "]" * 10_000 + "}"
HUGE = '{"order_id":"huge","order_date":"2024-01-15","note":"' + "x" * (16 << 20) + '"}'

HOSTILE_RECORDS = [
    ("nested 10,000 deep", DEEP, "JSON nested too deeply"),
    ("repeated key", '{"order_id":"d","order_date":"2024-01-15","order_date":"2024-03-01"}', "duplicate key 'order_date'"),
    ("repeated nested key", '{"order_id":"d","order_date":"2024-01-15","customer":{"id":1,"id":2}}', "duplicate key 'id'"),
    ("over 16 MiB", HUGE, f"record of {len(HUGE)} bytes is larger than the 16 MiB limit"),
    ("basic-format date", '{"order_id":"b","order_date":"20240302T100000Z"}', "unparseable order_date: 20240302T100000Z"),
    ("hour 24", '{"order_id":"h","order_date":"2024-03-02T24:00:00"}', "unparseable order_date: 2024-03-02T24:00:00"),
    ("before the lake", '{"order_id":"old","order_date":"2023-10-26T18:46:39"}', "before the first partition: 2023-10-26 < 2024-01-01"),
    ("far future", '{"order_id":"f","order_date":"2999-01-01"}', "in the future: 2999-01-01 is after 2024-01-20"),
    ("lone surrogate", '{"order_id":"s","order_date":"2024-01-15","name":"\\ud800x"}',
     "a string holds a lone surrogate escape (not valid Unicode)"),
    ("5,000-digit number", '{"order_id":"n","order_date":"2024-01-15","x":' + "1" * 5000 + "}",
     "unreadable number: Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits; "
     "use sys.set_int_max_str_digits() to increase the limit"),
]


@pytest.mark.parametrize("layout", ["json lines", "json array", "wrapped array", "wrapped, orders last"])
@pytest.mark.parametrize("label, record, reason", HOSTILE_RECORDS, ids=[case[0] for case in HOSTILE_RECORDS])
def test_a_hostile_record_is_quarantined_and_the_records_around_it_land(layout, label, record, reason):
    window = DayWindow(date(2024, 1, 1), date(2024, 1, 20))
    records = [GOOD.replace("ok", "before"), record, GOOD.replace("ok", "after")]
    text = {
        "json lines": "\n".join(records),
        "json array": "[\n" + ",\n".join(records) + "\n]",
        "wrapped array": '{"orders": [' + ", ".join(records) + "]}",
        "wrapped, orders last": '{"count": 3, "orders": [' + ", ".join(records) + "]}",
    }[layout]
    landed = split_landing_file("hostile.json", text.encode(), window, key=KEY)
    assert landed.file_error is None
    assert [q["reason"] for q in landed.quarantined] == [reason]
    assert landed.quarantined[0]["record_number"] == 2
    if layout != "wrapped, orders last":  # there the order is read with its document, then written alone
        assert landed.quarantined[0]["record"] == record
    assert [json.loads(line)["order_id"] for line in landed.days[date(2024, 1, 15)]] == ["before", "after"]
    assert landed.records_read == 3 == landed.records_routed + len(landed.quarantined)


def test_a_broken_array_after_a_hostile_element_is_quarantined_whole():
    landed = split_landing_file("cut.json", ("[" + DEEP + ", " + GOOD + ", {").encode(), WINDOW, key=KEY)
    assert landed.file_error.startswith("malformed or truncated JSON document")
    assert not landed.days and not landed.quarantined and landed.records_read == 0


def test_the_day_window_keeps_today_and_tomorrow():
    window = DayWindow.for_lake("2024-01-01", today=date(2024, 5, 1))
    assert window.problem(date(2024, 5, 2)) is None and window.problem(date(2024, 1, 1)) is None
    assert window.problem(date(2024, 5, 3)).startswith("in the future")
    assert window.problem(date(2023, 12, 31)).startswith("before the first partition")


SINGLE_DOCUMENTS = [
    ("repeated key", '{\n "order_id": "p",\n "order_date": "2024-01-15",\n "order_date": "2024-01-16"\n}', "duplicate key 'order_date'"),
    ("nested too deeply", '{\n "order_id": "deep",\n "x": ' + "[" * 10_000 + "]" * 10_000 + "\n}", "JSON nested too deeply"),
    ("lone surrogate", '{\n "order_id": "s",\n "order_date": "2024-01-15",\n "name": "\\udc00"\n}',
     "a string holds a lone surrogate escape (not valid Unicode)"),
    ("5,000-digit number", '{\n "order_id": "n",\n "x": ' + "1" * 5000 + "\n}", "unreadable number: Exceeds the limit"),
    ("over 16 MiB", '{\n "order_id": "huge",\n "note": "' + "x" * (16 << 20) + '"\n}', "record of 16777252 bytes is larger"),
]


@pytest.mark.parametrize("label, text, reason", SINGLE_DOCUMENTS, ids=[case[0] for case in SINGLE_DOCUMENTS])
def test_a_pretty_printed_order_that_cannot_land_is_one_record_with_its_reason(label, text, reason):
    landed = split_landing_file("one.json", text.encode(), WINDOW, key=KEY)
    assert landed.records_read == 1 and not landed.days
    [rejected] = landed.quarantined
    assert rejected["reason"].startswith(reason) and rejected["record"] == text


def test_a_repeated_orders_key_makes_the_file_unreadable():
    text = '{"orders": [' + GOOD + '], "orders": []}'
    landed = split_landing_file("two.json", text.encode(), WINDOW, key=KEY)
    assert landed.file_error.startswith("duplicate key 'orders'") and not landed.days


@pytest.mark.parametrize("first_line", ["[1]", '{"orders": []}', "[" + GOOD + "]"])
def test_a_json_lines_file_is_read_line_by_line_whatever_its_first_line(first_line):
    """A .jsonl file starting like an array or a wrapped document was once quarantined whole."""
    landed = split_landing_file("feed.jsonl", "\n".join([first_line, GOOD, GOOD.replace("ok", "two")]).encode(), WINDOW, key=KEY)
    assert landed.file_error is None and landed.records_read == 3
    assert [json.loads(line)["order_id"] for line in landed.days[date(2024, 1, 15)]] == ["ok", "two"]
    assert [q["record_number"] for q in landed.quarantined] == [1]
