import gzip
import io
import json
import os
from datetime import date

import pytest

from ecomm_assets.core.landing import (
    DayWindow,
    LandedFile,
    count_json_lines,
    json_array_elements,
    split_landing_file,
    split_landing_stream,
)
from ecomm_assets.core.layout import is_landing_file
from ecomm_assets.core.records import MAX_RECORD_BYTES

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


# --- the streaming split: many small batches give what one batch gives --------------------------------

STREAM_WINDOW = DayWindow(date(2024, 1, 1), date(2024, 1, 20))
CUSTOMER = {"customer_id": "7", "name": "Ada Lovelace", "email": "ada@example.com", "phone": "+44 20 7946 0958",
            "address": {"address": "12 St James's Square", "city": "London"}}
PERSONAL_VALUES = [b"Ada Lovelace", b"ada@example.com", b"+44 20 7946 0958", b"12 St James's Square"]
SMALL_BATCH = 300  # bytes: about one order, so every few records a batch ends


def order(number: int, **fields) -> str:
    return json.dumps({"order_id": f"o{number}", "order_date": f"2024-01-{10 + number % 3}T10:00:00Z", "total_amount": 12.5,
                       "customer": CUSTOMER, "products": [{"product_id": "1", "name": "Tea", "price": 2.5, "quantity": 5}]}
                      | fields, separators=(",", ":"))


# (case, a record's text, its reason; None: it lands). Each is put between good orders, at three
# places of a file read a few hundred bytes at a time.
STREAM_RECORDS = [
    ("nested 10,000 deep", DEEP, "JSON nested too deeply"),
    ("repeated key", '{"order_id":"d","order_date":"2024-01-15","order_date":"2024-03-01"}', "duplicate key 'order_date'"),
    ("repeated key in a product", order(90, products=[{"id": 1}]).replace('"id":1', '"id":1,"id":2'), "duplicate key 'id'"),
    ("repeated key in the customer", order(91).replace('"customer_id":"7"', '"customer_id":"7","customer_id":"8"'),
     "duplicate key 'customer_id'"),
    ("missing order_date", '{"order_id":"m"}', "missing order_date"),
    ("order_date a number", '{"order_id":"m","order_date":20240115}', "unparseable order_date: 20240115"),
    ("impossible day", order(92, order_date="2024-02-30"), "unparseable order_date: 2024-02-30"),
    ("before the lake", order(93, order_date="2023-10-26T18:46:39"), "before the first partition: 2023-10-26 < 2024-01-01"),
    ("far future", order(94, order_date="2999-01-01"), "in the future: 2999-01-01 is after 2024-01-20"),
    ("lone surrogate", order(95, note="\ud800").replace("\\ud800", "\\ud800x"), "a string holds a lone surrogate escape"),
    ("5,000-digit number", '{"order_id":"n","order_date":"2024-01-15","x":' + "1" * 5000 + "}", "unreadable number"),
    ("not an object", "[1, 2]", "record is not a JSON object"),
    ("customer is a text", order(96, customer="Ada Lovelace, ada@example.com"), None),
    ("braces in the customer's strings", order(97, customer=CUSTOMER | {"name": "Ada {Lovelace}"}), None),
    ("escaped customer key", order(98).replace('"customer"', '"cust\\u006fmer"'), None),
    ("a customer key in a product", order(99, products=[{"customer": {"email": "x@y.z"}}]), None),
    ("spaces around", "  " + order(100) + " \t", None),
    ("pretty, one line", json.dumps(json.loads(order(101)), indent=None, separators=(", ", ": ")), None),
    ("a record larger than a batch", order(102, note="x" * (8 * SMALL_BATCH)), None),
    ("NaN and a huge exponent", order(104).replace("12.5", "NaN").replace('"quantity":5', '"quantity":1e999'), None),
    ("unicode, escaped or not", order(105, note="caf\u00e9 \u2615 \U0001f600").replace("\\u2615", "\u2615"), None),
]
LINES_ONLY = [  # what breaks a JSON array as a whole
    ("malformed", '{"order_id": "cut', "malformed JSON"),
    ("trailing comma", order(103)[:-1] + ",}", "malformed JSON"),
    ("a tab inside a string", order(106, note="a\tb").replace("\\t", "\t"), "malformed JSON"),
    ("leading zero", order(107).replace("12.5", "012.5"), "malformed JSON"),
    ("not UTF-8", order(108, note="\xff").replace("\\u00ff", "\udcff"), "not UTF-8"),
]


def landed_file(layout: str, records: list[str], hostile: str | None = None) -> tuple[str, bytes]:
    """A landed file of `records` (texts) in `layout`: JSON Lines, or one JSON array (bare or in
    {"count": ..., "orders": [...]}) with each record but the `hostile` one pretty-printed over
    many lines; gzip of either."""
    if layout.startswith("json lines"):
        name, text = "feed.jsonl", "\n".join(records) + "\n"
    else:
        elements = [r if r == hostile else json.dumps(json.loads(r), indent=2) for r in records]
        name, text = "feed.json", "[\n" + ",\n".join(elements) + "\n]\n"
        if layout.startswith("wrapped"):
            text = f'{{"count": {len(records)}, "orders": {text.strip()}, "producer": "shop"}}\n'
    data = text.encode("utf-8", "surrogateescape")  # a lone surrogate: the byte it escapes
    return (name + ".gz", gzip.compress(data)) if layout.endswith("gzip") else (name, data)


def file_with(record: str, count: int = 30) -> list[str]:
    records = [order(n) for n in range(count)]
    for place in (25, 12, 2):
        records.insert(place, record)
    return records


def streamed(name: str, data: bytes, staging, **options):
    staging.mkdir(exist_ok=True)
    return split_landing_stream(name, io.BytesIO(data), STREAM_WINDOW, key=KEY, staging=str(staging), **options)


def outcome(landed) -> tuple:
    return (landed.file_error, landed.records_read, {d: landed.day_bytes(d) for d in sorted(landed.days)}, landed.quarantined)


LAYOUTS = ["json lines", "json array", "json lines, gzip", "json array, gzip", "wrapped array"]
STREAM_CASES = [(layout, *case) for layout in LAYOUTS for case in STREAM_RECORDS] + [
    (layout, *case) for layout in LAYOUTS if "lines" in layout for case in LINES_ONLY]


@pytest.mark.parametrize("layout, label, record, reason", STREAM_CASES, ids=[f"{c[1]}-{c[0]}" for c in STREAM_CASES])
def test_a_file_read_in_small_batches_gives_the_verdicts_and_bytes_of_one_batch(tmp_path, layout, label, record, reason):
    name, data = landed_file(layout, file_with(record), record)
    landed = streamed(name, data, tmp_path / "small", batch_bytes=SMALL_BATCH)
    assert outcome(landed) == outcome(split_landing_file(name, data, STREAM_WINDOW, key=KEY))  # one batch, in memory
    # the vectorized path agrees with the record-by-record one
    assert outcome(landed) == outcome(streamed(name, data, tmp_path / "slow", batch_bytes=SMALL_BATCH, vectorized=False))
    assert landed.file_error is None and landed.records_read == 33
    expected = [] if reason is None else [(3, reason), (14, reason), (28, reason)]
    assert [(q["record_number"], q["reason"][:len(reason)]) for q in landed.quarantined] == expected
    # conservation: each record in one day file or in quarantine, once
    assert sum(count_json_lines(landed.day_bytes(day)) for day in landed.days) + len(landed.quarantined) == 33
    written = b"".join(landed.day_bytes(day) for day in landed.days) + json.dumps(landed.quarantined).encode()
    if (label, record, reason) not in LINES_ONLY:  # a record whose members cannot all be read keeps its bytes (README)
        assert not [value for value in PERSONAL_VALUES if value in written]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("customer", ["Ada Lovelace, ada@example.com", 7, ["ada@example.com"], None], ids=["text", "number", "list", "null"])
def test_orders_in_a_row_whose_customer_is_no_object_get_their_verdicts(tmp_path, layout, customer):
    """Two orders in a row whose customer is not an object, among orders whose customer is one: each
    order gets the verdict the record-by-record path gives it; the file is never quarantined whole."""
    records = [order(n) for n in range(10)]
    records[4:4] = [order(110, customer=customer), order(111, customer=customer)]
    name, data = landed_file(layout, records)
    landed = split_landing_file(name, data, STREAM_WINDOW, key=KEY)
    assert landed.file_error is None and landed.records_read == 12
    assert outcome(landed) == outcome(streamed(name, data, tmp_path / "slow", vectorized=False))
    assert outcome(landed) == outcome(streamed(name, data, tmp_path / "small", batch_bytes=SMALL_BATCH))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_day_is_written_to_its_staged_file_in_the_file_s_order(tmp_path, layout):
    records = [order(n) for n in range(40)]
    landed = streamed(*landed_file(layout, records), tmp_path / "staging", batch_bytes=SMALL_BATCH)
    assert sorted(os.listdir(tmp_path / "staging")) == [f"{landed.file_id}-2024-01-{day}.jsonl" for day in (10, 11, 12)]
    for day in landed.days:
        staged = (tmp_path / "staging" / f"{landed.file_id}-{day}.jsonl").read_bytes()
        assert landed.staged_path(day) and staged == landed.day_bytes(day)
        assert [json.loads(line)["order_id"] for line in staged.splitlines()] == [
            f"o{n}" for n in range(40) if json.loads(records[n])["order_date"].startswith(str(day))]


@pytest.mark.parametrize("layout, cut, error", [
    ("json lines, gzip", lambda data: data[:-20], "not a readable gzip file"),
    ("json array", lambda data: data[:-40], "malformed or truncated JSON document"),
    ("json array", lambda data: data.replace(b'"o35"', b'"o35\xff"'), "not UTF-8"),
    ("json array, gzip", lambda data: gzip.compress(gzip.decompress(data)[:-40]), "malformed or truncated JSON document"),
])
def test_a_file_broken_part_way_keeps_nothing(tmp_path, layout, cut, error):
    name, data = landed_file(layout, [order(n) for n in range(40)])
    landed = streamed(name, cut(data), tmp_path / "staging", batch_bytes=SMALL_BATCH)
    assert landed.file_error.startswith(error)
    assert (landed.days, landed.quarantined, landed.records_read) == ({}, [], 0)
    assert os.listdir(tmp_path / "staging") == []  # the days staged before the break are gone


@pytest.mark.parametrize("layout", ["json lines", "json array"])
def test_the_split_holds_one_batch_of_records_at_a_time(tmp_path, layout, monkeypatch):
    """Memory is bounded by the batch, not by the file: each flush to the staged day files carries
    at most the records of two batches of text (a batch, and the record read past its end), and a
    file of 200 batches is written out in about as many flushes."""
    records = [order(n) for n in range(2000)]
    name, data = landed_file(layout, records)
    record_bytes = min(len(r) for r in records)
    flushed = []
    flush = LandedFile.flush

    def counting_flush(landed, staging):
        flushed.append(sum(block.records for blocks in landed.pending.values() for block in blocks))
        flush(landed, staging)

    monkeypatch.setattr(LandedFile, "flush", counting_flush)
    landed = streamed(name, data, tmp_path, batch_bytes=len(data) // 200)
    assert landed.records_routed == 2000 and sum(flushed) == 2000
    assert len(flushed) >= 100
    assert max(flushed) <= 2 * (len(data) // 200) // record_bytes + 1


# --- one JSON array: its elements are cut in bulk, exactly for any valid JSON ----------------------

TRICKY = [  # elements whose strings hold what cuts an array: brackets, commas, quotes, backslashes, escapes
    order(200, note='a],[{"b": 1}, "c"'),
    order(201, note="ends in a backslash \\"),
    order(202, note='\\", ] \\\\" ,'),
    order(203, note="line\nbreak\ttab and \u2028"),
    order(204, products=[{"product_id": "1", "name": "[{,}]", "price": 2.5, "quantity": 1}], customer=CUSTOMER | {"name": "{Ada}, [L]"}),
]
# (case, the file's text, the file error it gets; None: none, and every one of TRICKY and GOOD orders lands)
ARRAY_FILES = [
    ("empty array", "[]", None),
    ("empty array over lines", "[\n  \n]\n", None),
    ("empty wrapped array", '{"orders": [ ]}', None),
    ("tricky strings, one line", "[" + ",".join(TRICKY) + "]", None),
    ("tricky strings, pretty", json.dumps([json.loads(r) for r in TRICKY], indent=3), None),
    ("tricky strings, CRLF", json.dumps([json.loads(r) for r in TRICKY], indent=1).replace("\n", "\r\n"), None),
    ("with a BOM", "\ufeff[" + ",".join(TRICKY) + "]", None),
    ("trailing comma", "[" + GOOD + ",]", "malformed or truncated JSON document"),
    ("two commas", "[" + GOOD + ",," + GOOD + "]", "malformed or truncated JSON document"),
    ("two values in one element", "[" + GOOD + " " + GOOD + "]", "malformed or truncated JSON document"),
    ("a malformed element", "[" + GOOD + ', {"order_id": "x" "y"}, ' + GOOD + "]", "malformed or truncated JSON document"),
    ("a line end inside a string", "[" + GOOD + ', {"order_id": "x\ny", "order_date": "2024-01-15"}]', "malformed or truncated JSON document"),
    ("a closing brace for the array", "[" + GOOD + "}", "malformed or truncated JSON document"),
    ("text after the array", "[" + GOOD + "]]", "malformed or truncated JSON document"),
    ("never closed", "[" + GOOD + ", " + GOOD, "malformed or truncated JSON document"),
    ("a string never closed", "[" + GOOD + ', {"order_id": "x]', "malformed or truncated JSON document"),
]


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("label, text, error", ARRAY_FILES, ids=[case[0] for case in ARRAY_FILES])
def test_an_array_is_cut_into_its_elements_exactly(tmp_path, label, text, error, gzipped):
    data = text.encode()
    name, data = ("feed.json.gz", gzip.compress(data)) if gzipped else ("feed.json", data)
    whole = split_landing_file(name, data, STREAM_WINDOW, key=KEY)
    for batch_bytes in (SMALL_BATCH, 7):  # batches cut between elements, and an element larger than a batch
        for vectorized in (True, False):  # the bulk path agrees with reading each element in Python
            landed = streamed(name, data, tmp_path / f"{batch_bytes}-{vectorized}", batch_bytes=batch_bytes, vectorized=vectorized)
            assert outcome(landed) == outcome(whole)
    if error is not None:
        assert whole.file_error.startswith(error) and whole.records_read == 0 and not whole.days
        return
    assert whole.file_error is None and not whole.quarantined
    expected = [json.loads(r) for r in TRICKY] if "tricky" in label or "BOM" in label else []
    landed_records = [json.loads(line) for day in sorted(whole.days) for line in whole.day_bytes(day).decode().splitlines()]
    assert sorted(r["order_id"] for r in landed_records) == sorted(r["order_id"] for r in expected)
    for record in landed_records:  # each element one line, its values as written but the customer's
        [original] = [r for r in expected if r["order_id"] == record["order_id"]]
        assert {k: v for k, v in record.items() if k != "customer"} == {k: v for k, v in original.items() if k != "customer"}
        assert record["customer"]["email"] != original["customer"]["email"]


def test_an_element_keeps_its_bytes_but_its_line_ends():
    element = '{\n  "order_id": "o1",\n  "order_date": "2024-01-15",\n  "total_amount": 12.50,\n  "note": "a, b"\n}'
    landed = split_landing_file("feed.json", ("[\n" + element + "\n]").encode(), STREAM_WINDOW, key=KEY)
    assert landed.day_bytes(date(2024, 1, 15)) == b'{"order_id": "o1","order_date": "2024-01-15","total_amount": 12.50,"note": "a, b"}\n'


@pytest.mark.parametrize("layout", ["json lines", "json array"])
def test_elements_that_are_no_orders_are_quarantined_each(layout):
    values = ["1", '"text"', "null", "[" + GOOD + "]", GOOD]
    text = "\n".join(values) if layout == "json lines" else "[" + ", ".join(values) + "]"
    landed = split_landing_file("feed.json", text.encode(), STREAM_WINDOW, key=KEY)
    assert [(q["record_number"], q["reason"]) for q in landed.quarantined] == [(n, "record is not a JSON object") for n in (1, 2, 3, 4)]
    assert landed.records_read == 5 and landed.records_routed == 1


def test_a_json_line_holding_two_objects_is_quarantined_alone():
    lines = [order(1), order(2) + " " + order(3), order(4)]
    landed = split_landing_file("feed.jsonl", "\n".join(lines).encode(), STREAM_WINDOW, key=KEY)
    assert landed.file_error is None and landed.records_read == 3 and landed.records_routed == 2
    assert [(q["record_number"], q["reason"].split(":")[0]) for q in landed.quarantined] == [(2, "malformed JSON")]


@pytest.mark.parametrize("batch_bytes", [64, 1000, 1 << 20])
def test_a_json_array_is_read_a_batch_of_its_elements_at_a_time(batch_bytes):
    """A collection's snapshot: its elements' texts, in order, whatever the batch (an element larger
    than a batch alone), with brackets, commas and quotes inside strings, any spacing, a BOM."""
    records = [{"id": n, "text": 'a, "quoted" ] [ {brace} \\ back\\' * (n % 4), "nested": [[n], {"k": [1, {}]}]}
               for n in range(200)] + ["x", None, 5, [], {}]
    for text in (json.dumps(records), json.dumps(records, indent=2)):
        source = io.BytesIO(b"\xef\xbb\xbf \n" + text.encode() + b" \n")
        elements = [e for batch in json_array_elements(source, "records", batch_bytes) for e in batch.to_pylist()]
        assert [json.loads(element) for element in elements] == records
    assert list(json_array_elements(io.BytesIO(b" [ ] "), "records", batch_bytes)) == []


@pytest.mark.parametrize("text, error", [
    (b'{"id": 1}', "not a JSON array of records"),
    (b"", "not a JSON array of records"),
    (b'[{"id": 1}] [2]', "unexpected text after the array of records"),
    (b'[{"id": 1}, {"id": 2}', "the array of records does not end"),
    (b'[{"id": 1}, "' + b"x" * (MAX_RECORD_BYTES + 10) + b'"]', "element 2 of the array of records is larger than 16,777,216 bytes"),
])
def test_a_json_array_that_cannot_be_read_says_why(text, error):
    with pytest.raises(ValueError, match=error):
        list(json_array_elements(io.BytesIO(text), "records"))
