import json
from datetime import date
from decimal import Decimal

import pyarrow.parquet as pq
import pytest

from ecomm_assets.core import flatten
from ecomm_assets.core.flatten import RawOrderFile, flatten_orders
from ecomm_assets.core.schemas import ORDER_LINES, schema_differences

DAY = date(2024, 1, 15)


def order(order_id="O1", when="2024-01-15T10:30:00Z", **extra):
    record = {
        "order_id": order_id,
        "order_date": when,
        "total_amount": 60.5,
        "customer": {"customer_id": 7, "name": "Ann", "email": "a@x", "address": {"address": "1 Main", "city": "Lyon", "state": "ARA", "country": "France"}},
        "products": [
            {"product_id": 1, "name": "Pen", "category": "office", "price": 25, "quantity": 2, "discount_percent": 5},
            {"product_id": "P-2", "name": "Ink", "category": "office", "price": 10.5, "quantity": 1},
        ],
    }
    record.update(extra)
    return record


def write(tmp_path, name, records):
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return RawOrderFile(str(path), DAY, name.removesuffix(".jsonl"))


def test_clean_records_are_flattened_with_exact_types(tmp_path):
    result = flatten_orders([write(tmp_path, "a.jsonl", [order()])], str(tmp_path))
    assert result.read_modes[DAY] == "optimistic"
    assert schema_differences(result.lines().schema, ORDER_LINES) == []
    first, second = result.lines().to_pylist()
    assert (first["line_number"], second["line_number"]) == (1, 2)
    assert first["unit_price"] == Decimal("25.00") and first["line_total"] == Decimal("50.00")
    assert second["product_id"] == "P-2" and second["line_total"] == Decimal("10.50")
    assert first["order_total"] == Decimal("60.50")
    assert first["customer_id"] == "7" and first["customer_city"] == "Lyon" and first["customer_address"] == "1 Main"
    # 2024-01-15 is a Monday; the hour is UTC.
    assert (first["year"], first["month"], first["day"], first["hour"], first["day_of_week"]) == (2024, 1, 15, 10, 0)
    assert first["source"] == "a"


def test_money_is_decimal_even_when_floats_carry_noise(tmp_path):
    noisy = order(products=[{"product_id": 1, "price": 33.316666666666663, "quantity": 3}], total_amount=99.94999999999999)
    lines = flatten_orders([write(tmp_path, "a.jsonl", [noisy])], str(tmp_path)).lines().to_pylist()
    assert lines[0]["unit_price"] == Decimal("33.3167")  # the unit price's scale is 4
    assert lines[0]["line_total"] == Decimal("99.95") == lines[0]["order_total"]


def test_offsets_are_converted_to_the_utc_day_and_hour(tmp_path):
    late = order(when="2024-01-15T22:30:00-01:00")  # 23:30 UTC on the 15th
    lines = flatten_orders([write(tmp_path, "a.jsonl", [late])], str(tmp_path)).lines().to_pylist()
    assert lines[0]["hour"] == 23 and lines[0]["order_date"] == DAY


BAD_RECORDS = [
    (order(order_id=None), "missing order_id"),
    ({k: v for k, v in order().items() if k != "order_id"}, "missing order_id"),
    (order(products=[]), "no products"),
    (order(products=None), "missing products"),
    (order(products="pen"), "products has wrong type"),
    (order(products=[{"product_id": 1, "quantity": 1}]), "line 1: missing price"),
    (order(products=[{"product_id": 1, "price": None, "quantity": 1}]), "line 1: missing price"),
    (order(products=[{"product_id": 1, "price": 3, "quantity": 1}, {"product_id": 2, "quantity": 1}]), "line 2: missing price"),
    (order(products=[{"product_id": 1, "price": "cheap", "quantity": 1}]), "non-numeric price"),
    (order(products=[{"product_id": 1, "price": -3, "quantity": 1}]), "negative price"),
    (order(products=[{"product_id": 1, "price": 3, "quantity": 0}]), "quantity <= 0"),
    (order(products=[{"product_id": 1, "price": 3, "quantity": -2}]), "quantity <= 0"),
    (order(products=[{"product_id": 1, "price": 3, "quantity": 1.5}]), "quantity is not a whole number"),
    (order(products=[{"price": 3, "quantity": 1}]), "missing product_id"),
    (order(products=["pen"]), "product is not an object"),
    (order(when="next tuesday"), "unparseable order_date"),
    (order(when=None), "missing order_date"),
    (order(when="2024-01-16T01:00:00Z"), "order_date outside partition"),
    (order(order_id={"nested": 1}), "order_id has wrong type"),
    (order(customer="Ann"), "customer has wrong type"),
    (order(total_amount="lots"), "non-numeric total_amount"),
    ([1, 2, 3], "record is not a JSON object"),
    # Values beyond the contract's types: each a precise reason, never a crash of the day.
    (order(products=[{"product_id": 1, "price": 3, "quantity": 3000000000}]), "quantity out of range: 3000000000"),
    (order(products=[{"product_id": 1, "price": 3, "quantity": 1e30}]), "quantity out of range"),
    (order(products=[{"product_id": 1, "price": 1e17, "quantity": 1}]), "price out of range"),
    (order(products=[{"product_id": 1, "price": 1e20, "quantity": 1}]), "price out of range"),
    (order(products=[{"product_id": 1, "price": float("nan"), "quantity": 1}]), "price is not a finite number: NaN"),
    (order(products=[{"product_id": 1, "price": "Infinity", "quantity": 1}]), "price is not a finite number"),
    (order(products=[{"product_id": 1, "price": 1e10, "quantity": 1e7}]), "line total out of range"),
    (order(products=[{"product_id": 1, "price": 3, "quantity": 1, "discount_percent": "a lot"}]), "non-numeric discount_percent"),
    (order(total_amount=1e20), "total_amount out of range"),
    (order(products=[{"product_id": 1, "price": 3, "quantity": 1, "discount_percent": "9999999.999"}]), "discount_percent out of range"),
    (order(products=[{"product_id": 1, "price": "1_000", "quantity": 1}]), "non-numeric price: 1_000"),
    (order(products=[{"product_id": 1, "price": 3, "quantity": "1_0"}]), "non-numeric quantity: 1_0"),
    (order(when="20240302T100000Z"), "unparseable order_date: 20240302T100000Z"),
    (order(when="2024-01-15T24:00:00"), "unparseable order_date"),
]


@pytest.mark.parametrize("record, reason", BAD_RECORDS, ids=[r for _, r in BAD_RECORDS])
def test_each_bad_record_is_quarantined_with_its_reason(tmp_path, record, reason):
    good = order(order_id="GOOD")
    result = flatten_orders([write(tmp_path, "a.jsonl", [good, record])], str(tmp_path))
    assert result.read_modes[DAY] == "precise"
    assert result.lines().column("order_id").unique().to_pylist() == ["GOOD"]
    [rejected] = result.quarantined.to_pylist()
    assert reason in rejected["reason"]
    assert rejected["record"] == json.dumps(record)  # the original record, kept whole
    assert rejected["record_number"] == 2
    counts = result.counts[DAY]
    assert (counts.records_read, counts.orders_loaded, counts.quarantined) == (2, 1, 1)
    assert counts.conserved


def test_newest_version_of_an_order_wins_and_duplicates_are_counted(tmp_path):
    older = write(tmp_path, "older.jsonl", [order(total_amount=1), order(order_id="O2")])
    newer = write(tmp_path, "newer.jsonl", [order(total_amount=2), order(total_amount=3)])
    result = flatten_orders([older, newer], str(tmp_path))
    totals = {r["order_id"]: r["order_total"] for r in result.lines().to_pylist()}
    assert totals == {"O1": Decimal("3.00"), "O2": Decimal("60.50")}
    counts = result.counts[DAY]
    assert (counts.records_read, counts.orders_loaded, counts.duplicates_dropped) == (4, 2, 2)
    assert counts.conserved


def test_a_first_whole_number_price_does_not_round_later_prices(tmp_path):
    records = [order(order_id=f"O{i}", products=[{"product_id": 1, "price": 25, "quantity": 1}]) for i in range(3)]
    records.append(order(order_id="LAST", products=[{"product_id": 1, "price": 25.55, "quantity": 1}]))
    lines = flatten_orders([write(tmp_path, "a.jsonl", records)], str(tmp_path)).lines().to_pylist()
    assert [r["unit_price"] for r in lines if r["order_id"] == "LAST"] == [Decimal("25.55")]


def test_no_files_give_empty_tables(tmp_path):
    result = flatten_orders([], str(tmp_path))
    assert result.lines().num_rows == 0 and result.lines().schema == ORDER_LINES


# Valid records in every accepted shape: numeric and textual ids, an address given as text,
# city/state/country on the customer, offsets, a date without a time, no brand or discount.
VALID_SHAPES = [
    order("N1"),
    order(7, customer={"customer_id": 1.5, "name": "Bo", "address": "9 Rue Haute", "city": "Lille", "country": "France"}),
    order("{curly", when="2024-01-15"),
    order("true", when="2024-01-15T23:59:59+00:00", products=[{"product_id": "9", "price": "4.20", "quantity": 3}]),
]


def test_both_passes_load_valid_records_identically(tmp_path):
    """The optimistic pass and the precise pass must agree on every valid record."""
    clean_dir, mixed_dir, text_dir = tmp_path / "clean", tmp_path / "mixed", tmp_path / "text"
    for folder in (clean_dir, mixed_dir, text_dir):
        folder.mkdir()
    clean = flatten_orders([write(clean_dir, "a.jsonl", VALID_SHAPES[:1])], str(clean_dir))
    mixed = flatten_orders([write(mixed_dir, "a.jsonl", [*VALID_SHAPES, order(order_id=None)])], str(mixed_dir))
    text_address = flatten_orders([write(text_dir, "a.jsonl", VALID_SHAPES[1:2])], str(text_dir))
    assert clean.read_modes[DAY] == "optimistic"
    assert mixed.read_modes[DAY] == text_address.read_modes[DAY] == "precise"  # an address as text
    assert clean.lines().to_pylist() == [r for r in mixed.lines().to_pylist() if r["order_id"] == "N1"]
    loaded = {r["order_id"]: r for r in mixed.lines().to_pylist()}
    assert set(loaded) == {"N1", "7", "{curly", "true"}
    assert loaded["7"]["customer_id"] == "1.5" and loaded["7"]["customer_address"] == "9 Rue Haute"
    assert loaded["7"]["customer_city"] == "Lille"
    assert loaded["{curly"]["order_ts"].isoformat() == "2024-01-15T00:00:00+00:00"
    assert loaded["true"]["unit_price"] == Decimal("4.20") and loaded["true"]["hour"] == 23
    assert mixed.counts[DAY].conserved and mixed.counts[DAY].quarantined == 1


def test_a_duplicate_sends_the_day_to_the_precise_pass_and_counts_it(tmp_path):
    result = flatten_orders([write(tmp_path, "a.jsonl", [order(), order(), order("O2")])], str(tmp_path))
    assert result.read_modes[DAY] == "precise"
    counts = result.counts[DAY]
    assert (counts.records_read, counts.orders_loaded, counts.duplicates_dropped, counts.lines_loaded) == (3, 2, 1, 4)


def test_clean_days_take_the_optimistic_pass_each_in_its_own_file(tmp_path):
    other_day = RawOrderFile(write(tmp_path, "b.jsonl", [order("O9", when="2024-01-16T08:00:00Z")]).path, date(2024, 1, 16), "b")
    result = flatten_orders([write(tmp_path, "a.jsonl", [order(), order("O2")]), other_day], str(tmp_path))
    assert result.read_modes == {DAY: "optimistic", date(2024, 1, 16): "optimistic"}
    assert {day: c.lines_loaded for day, c in result.counts.items()} == {DAY: 4, date(2024, 1, 16): 2}
    assert len(set(result.line_files.values())) == 2
    assert all(c.conserved for c in result.counts.values())


def on_day(tmp_path, name, day, records):
    return RawOrderFile(write(tmp_path, name, records).path, day, name.removesuffix(".jsonl"))


@pytest.mark.parametrize("batch_bytes", [flatten.BATCH_INPUT_BYTES, 1], ids=["one batch", "a batch per day"])
def test_only_the_day_with_a_problem_leaves_the_one_query_for_all_days(tmp_path, monkeypatch, batch_bytes):
    monkeypatch.setattr(flatten, "BATCH_INPUT_BYTES", batch_bytes)
    days = [date(2024, 1, 15), date(2024, 1, 16), date(2024, 1, 17)]
    files = [
        on_day(tmp_path, "a.jsonl", days[0], [order()]),
        on_day(tmp_path, "b.jsonl", days[1], [order("D1", when="2024-01-16T08:00:00Z")] * 2),  # a duplicate
        on_day(tmp_path, "c.jsonl", days[2], [order("C1", when="2024-01-17T08:00:00Z")]),
        on_day(tmp_path, "d.jsonl", days[2], [order("C2", when="2024-01-17T09:00:00Z")]),  # a second file that day
    ]
    result = flatten_orders(files, str(tmp_path))
    assert result.read_modes == {days[0]: "optimistic", days[1]: "precise", days[2]: "optimistic"}
    assert {day: (c.orders_loaded, c.duplicates_dropped, c.lines_loaded) for day, c in result.counts.items()} == {
        days[0]: (1, 0, 2), days[1]: (1, 1, 2), days[2]: (2, 0, 4)}
    by_day = {day: sorted({r["order_id"] for r in pq.read_table(path).to_pylist()}) for day, path in result.line_files.items()}
    assert by_day == {days[0]: ["O1"], days[1]: ["D1"], days[2]: ["C1", "C2"]}


def test_each_days_file_has_the_contract_and_the_records_in_input_order_in_both_passes(tmp_path):
    """The files go into the lake as they are: exactly ORDER_LINES (descriptions included), each
    day's lines in the order of its files and of the records in them, the days' files interleaved."""
    days = [DAY, date(2024, 1, 16)]
    later = "2024-01-16T08:00:00Z"
    files = [
        on_day(tmp_path, "a.jsonl", days[0], [order(f"A{n}") for n in range(4)]),
        on_day(tmp_path, "b.jsonl", days[1], [order(f"B{n}", when=later) for n in range(4)]),
        on_day(tmp_path, "c.jsonl", days[0], [*(order(f"C{n}") for n in range(4)), order("A0", total_amount=1)]),  # a newer A0
        on_day(tmp_path, "d.jsonl", days[1], [order(f"D{n}", when=later) for n in range(4)]),
    ]
    result = flatten_orders(files, str(tmp_path))
    assert result.read_modes == {days[0]: "precise", days[1]: "optimistic"}
    for day, expected in [(days[0], ["A1", "A2", "A3", "C0", "C1", "C2", "C3", "A0"]),
                          (days[1], ["B0", "B1", "B2", "B3", "D0", "D1", "D2", "D3"])]:
        lines = pq.read_table(result.line_files[day])
        assert lines.schema.equals(ORDER_LINES, check_metadata=True)
        assert [(r["order_id"], r["line_number"]) for r in lines.to_pylist()] == [(o, n) for o in expected for n in (1, 2)]


def test_a_wrong_json_type_on_one_day_leaves_the_other_days_optimistic(tmp_path):
    days = [date(2024, 1, 15), date(2024, 1, 16)]
    files = [
        on_day(tmp_path, "a.jsonl", days[0], [order(), order("O2", total_amount={"amount": 1})]),
        on_day(tmp_path, "b.jsonl", days[1], [order("B1", when="2024-01-16T08:00:00Z")]),
    ]
    result = flatten_orders(files, str(tmp_path))
    assert result.read_modes == {days[0]: "precise", days[1]: "optimistic"}
    assert result.quarantined["order_id"].to_pylist() == ["O2"]
    assert all(c.conserved for c in result.counts.values())


def test_a_record_with_a_repeated_key_is_quarantined(tmp_path):
    text = json.dumps(order("R")).replace('"order_date"', '"order_date": "2024-01-16T00:00:00Z", "order_date"', 1)
    result = flatten_orders([write(tmp_path, "a.jsonl", [order("GOOD"), text])], str(tmp_path))
    [rejected] = result.quarantined.to_pylist()
    assert rejected["reason"].split("; ")[0] == "duplicate key 'order_date'" and rejected["record"] == text
    assert result.lines().column("order_id").unique().to_pylist() == ["GOOD"]


RANGE = [date(2024, 1, d) for d in (14, 15, 16)]


def flatten_range_with_a_bad_record(tmp_path, bad):
    """Three days of one good order each, `bad` added to the middle day (DAY); asserts that only
    that day took the precise pass and every good order loaded."""
    files = [
        on_day(tmp_path, f"{day}.jsonl", day, [order(f"O-{day}", when=f"{day}T09:00:00Z"), *([bad] if day == DAY else [])])
        for day in RANGE
    ]
    result = flatten_orders(files, str(tmp_path))
    assert result.read_modes == {RANGE[0]: "optimistic", DAY: "precise", RANGE[2]: "optimistic"}
    assert sorted(result.lines().column("order_id").unique().to_pylist()) == [f"O-{day}" for day in RANGE]
    return result


def test_a_bad_value_on_one_day_of_a_range_leaves_the_other_days_loaded(tmp_path):
    """A quantity of 2^31 or more once failed the whole range with a conversion error."""
    bad = order("BIG", when="2024-01-15T08:00:00Z", products=[{"product_id": 1, "price": 3, "quantity": 3000000000}])
    result = flatten_range_with_a_bad_record(tmp_path, bad)
    assert [q["order_id"] for q in result.quarantined.to_pylist()] == ["BIG"]
    assert all(result.counts[day].conserved for day in RANGE)


MISSING_PRICES = [
    ("price absent", [{"product_id": 1, "quantity": 1}], "line 1: missing price"),
    ("price null", [{"product_id": 1, "price": None, "quantity": 1}], "line 1: missing price"),
    ("second line without a price", [{"product_id": 1, "price": 3, "quantity": 1}, {"product_id": 2, "quantity": 2}],
     "line 2: missing price"),
]


@pytest.mark.parametrize("label, products, reason", MISSING_PRICES, ids=[m[0] for m in MISSING_PRICES])
def test_a_line_without_a_price_sends_its_day_to_the_precise_pass_and_its_order_to_quarantine(tmp_path, label, products, reason):
    """The optimistic pass over several days flags the day (never loads a line without a price),
    and the precise pass quarantines the whole order with the reason, naming the line."""
    bad = order("NO-PRICE", when="2024-01-15T08:00:00Z", products=products)
    result = flatten_range_with_a_bad_record(tmp_path, bad)
    assert result.quarantined.to_pylist() == [
        {"day": DAY, "source": str(DAY), "record_number": 2, "order_id": "NO-PRICE", "reason": reason, "record": json.dumps(bad)}
    ]
    assert result.counts[DAY].reasons == {"missing price": 1}
    assert result.lines().column("unit_price").null_count == 0


SAME_ORDER_IDS = [1, "1", 1.0, " 1", "1.0", 1e0, "1 "]


@pytest.mark.parametrize("order_id", SAME_ORDER_IDS, ids=[repr(i) for i in SAME_ORDER_IDS])
def test_an_id_is_read_the_same_way_by_both_passes(tmp_path, order_id):
    record = order(order_id, customer={"customer_id": order_id}, products=[{"product_id": order_id, "price": 2, "quantity": 1}])
    alone = flatten_orders([write(tmp_path, "a.jsonl", [record])], str(tmp_path))
    (tmp_path / "precise").mkdir()
    with_a_reject = flatten_orders([write(tmp_path / "precise", "a.jsonl", [record, order(None)])], str(tmp_path / "precise"))
    assert (alone.read_modes[DAY], with_a_reject.read_modes[DAY]) == ("optimistic", "precise")
    for result in (alone, with_a_reject):
        [line] = result.lines().to_pylist()
        assert (line["order_id"], line["customer_id"], line["product_id"]) == ("1", "1", "1")


def test_every_spelling_of_one_id_is_one_order_and_the_newest_wins(tmp_path):
    versions = [order(order_id, total_amount=index) for index, order_id in enumerate([*SAME_ORDER_IDS, "007", 1.5])]
    result = flatten_orders([write(tmp_path, "a.jsonl", versions)], str(tmp_path))
    orders = {line["order_id"]: line["order_total"] for line in result.lines().to_pylist()}
    assert orders == {"1": Decimal(len(SAME_ORDER_IDS) - 1), "007": Decimal(len(SAME_ORDER_IDS)), "1.5": Decimal(len(SAME_ORDER_IDS) + 1)}
    assert result.counts[DAY].duplicates_dropped == len(SAME_ORDER_IDS) - 1 and result.counts[DAY].conserved


MONEY = [
    # (price as written, quantity, unit_price, line_total): read from the decimal text, rounded once, half away from zero
    ("1.005", 1, "1.0050", "1.01"),
    (1.005, 1, "1.0050", "1.01"),
    (0.125, 3, "0.1250", "0.38"),
    ("0.125", 3, "0.1250", "0.38"),
    (33.316666666666663, 3, "33.3167", "99.95"),
    ("19.99", 3, "19.9900", "59.97"),
    (0.1 + 0.2, 10, "0.3000", "3.00"),
    ("1e2", 2, "100.0000", "200.00"),
]


@pytest.mark.parametrize("price, quantity, unit_price, line_total", MONEY, ids=[repr(m[0]) for m in MONEY])
def test_money_comes_from_its_decimal_text_in_both_passes(tmp_path, price, quantity, unit_price, line_total):
    record = order(products=[{"product_id": 1, "price": price, "quantity": quantity}])
    (tmp_path / "precise").mkdir()
    results = [
        flatten_orders([write(tmp_path, "a.jsonl", [record])], str(tmp_path)),
        flatten_orders([write(tmp_path / "precise", "a.jsonl", [record, order(None)])], str(tmp_path / "precise")),
    ]
    assert [r.read_modes[DAY] for r in results] == ["optimistic", "precise"]
    for result in results:
        [line] = result.lines().to_pylist()
        assert (line["unit_price"], line["line_total"]) == (Decimal(unit_price), Decimal(line_total))


DATES = [
    "2024-01-15", "2024-01-15T10:00:00Z", "2024-01-15 10:00", "2024-01-15T10:00:00.123456+05:30",
    "2024-01-15T10:00:00+0530", "2024-01-15T10:00:00+05", "2024-01-16T01:00:00+02:00", "2024-01-14T23:00:00-01:00",
    " 2024-01-15T10:00:00Z ", "  2024-01-15  ", "\t2024-01-15", "20240115T100000Z", "20240115", "2024-01-15T24:00:00", "2024-01-15T10:00:60Z",
    "2024-01-15T10:00:00.1234567Z", "2024-01-15t10:00:00z", "2024-02-30", "15/01/2024", "2024-01-15T10:00:00+24:00",
]


@pytest.mark.parametrize("when", DATES)
def test_landing_and_flatten_agree_on_every_order_date(tmp_path, when):
    """Landing routes a record to the day flatten will accept it for, or both refuse it."""
    from ecomm_assets.core.records import order_day

    day = order_day(when)
    result = flatten_orders([on_day(tmp_path, "a.jsonl", day or DAY, [order(when=when)])], str(tmp_path))
    if day is None:
        assert result.lines().num_rows == 0
        assert result.quarantined.column("reason").to_pylist() == [f"unparseable order_date: {when}"]
    else:
        assert result.quarantined.num_rows == 0 and result.lines().column("order_date").to_pylist() == [day, day]


UNREADABLE_LINES = [
    ("lone surrogate", '{"order_id":"S","order_date":"2024-01-15T08:00:00Z","name":"\\ud800x"}'),
    ("not JSON", '{"order_id": "cut'),
    ("not an object", "[1, 2]"),
]


@pytest.mark.parametrize("label, line", UNREADABLE_LINES, ids=[case[0] for case in UNREADABLE_LINES])
def test_a_line_the_json_reader_refuses_is_quarantined_and_its_neighbours_load(tmp_path, label, line):
    """A raw line DuckDB cannot read once failed the whole range, on every run."""
    result = flatten_range_with_a_bad_record(tmp_path, line)
    [rejected] = result.quarantined.to_pylist()
    assert rejected["record"] == line and rejected["record_number"] == 2
    assert rejected["reason"] == ("record is not a JSON object" if label == "not an object" else "malformed JSON")
    assert all(result.counts[day].conserved for day in RANGE)


def write_text(tmp_path, name, text):
    path = tmp_path / name
    path.write_bytes(text.encode())
    return RawOrderFile(str(path), DAY, name.removesuffix(".jsonl"))


def lines_of(*records):
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


# Days the precise pass reads block by block; each a list of (file name, its text).
BLOCKED_DAYS = [
    ("duplicates across files", [("a.jsonl", lines_of(order(total_amount=1), order("O2"))),
                                 ("b.jsonl", lines_of(order("O3"), order(total_amount=2)))]),
    ("duplicates within a file, blocks apart", [("a.jsonl", lines_of(order(total_amount=1), order("O2"), order("O3"),
                                                                      order(total_amount=3), order("O2", total_amount=4)))]),
    ("bad records around good ones", [("a.jsonl", lines_of(order(None), order("O2"), '{"order_id": "cut', order("O3"),
                                                            order("O4", products=[]), order("O5")))]),
    ("blank lines, CRLF, no final newline", [("a.jsonl", "\n" + lines_of(order("O2")).replace("\n", "\r\n") + "  \n\n"
                                              + json.dumps(order(None)) + "\n" + json.dumps(order("O3")))]),
    ("nothing valid: blank lines and a bad record", [("a.jsonl", "\n\n"), ("b.jsonl", lines_of(order(None)))]),
    ("an empty file beside one with a duplicate", [("a.jsonl", ""), ("b.jsonl", lines_of(order(), order()))]),
]


@pytest.mark.parametrize("label, texts", BLOCKED_DAYS, ids=[case[0] for case in BLOCKED_DAYS])
def test_the_precise_pass_gives_the_same_day_whatever_its_block_size(tmp_path, monkeypatch, label, texts):
    """A block per line against the whole day in one block: the same lines in the same order, the
    same quarantine and the same counts."""
    def flattened(folder):
        folder.mkdir()
        files = [write_text(folder, name, text) for name, text in texts]
        result = flatten_orders(files, str(folder))
        assert result.read_modes == {DAY: "precise"} and result.counts[DAY].conserved
        return result.lines().to_pylist(), result.quarantined.to_pylist(), result.counts[DAY].as_dict()

    whole_day = flattened(tmp_path / "one block")
    monkeypatch.setattr(flatten, "PRECISE_BLOCK_BYTES", 1)
    assert flattened(tmp_path / "blocks") == whole_day


@pytest.mark.parametrize("block_bytes", [1, 60, 150, 1000])
def test_text_blocks_are_whole_lines_of_about_the_block_size(tmp_path, block_bytes):
    """The precise pass holds one block of raw text at a time: each block ends a line and is at
    most the block size plus one line (a line longer than a block is a block of its own)."""
    text = "".join(f'{{"n": {i}, "pad": "{"x" * (i % 7) * 9}"}}\n' for i in range(40)) + '{"last": 1}'
    path = tmp_path / "a.jsonl"
    path.write_text(text)
    blocks = list(flatten.text_blocks(str(path), block_bytes))
    assert "".join(blocks) == text
    assert all(block.endswith("\n") for block in blocks[:-1])
    longest_line = max(len(line) + 1 for line in text.split("\n"))
    assert all(len(block) <= block_bytes + longest_line for block in blocks)
    assert len(blocks) >= len(text) // (block_bytes + longest_line)
    if block_bytes == 1:
        assert blocks == text.splitlines(keepends=True)  # a block per line
