"""The purchase-log CSV split and typing, on files from the generator: every bad-input kind ends in
quarantine with its reason (or the file whole), the good shapes are read, and every record is
accounted for; zone-less timestamps go to the UTC day of the configured zone, DST included."""

import csv
import gzip
from datetime import UTC, date, datetime

import pytest

from ecomm_assets.core.landing import DayWindow
from ecomm_assets.core.privacy import protect
from ecomm_assets.core.purchase_log import (
    BadRow,
    Header,
    purchase_log_csv,
    user_profiles_csv,
)
from ecomm_assets.core.purchase_tables import RawCsvFile, build_purchase_events
from ecomm_assets.core.purchases import (
    HASHED_ROW,
    PURCHASE_COLUMNS,
    split_purchase_file,
    split_user_profile_file,
)
from ecomm_assets.core.schemas import Policy

WINDOW = DayWindow(date(2024, 1, 1), date(2024, 12, 31))
KEY = b"test key"
START = datetime(2024, 1, 14, 12)
ROWS = 2000


def split_and_typed(data: bytes, tmp_path, name: str = "log.csv", window: DayWindow = WINDOW):
    """The split of a landed file, then the typed events of its raw day files; and every count."""
    landed = split_purchase_file(name, data, window, key=KEY)
    files = []
    for day in sorted(landed.days):
        path = tmp_path / f"{day}.csv"
        path.write_bytes(landed.day_bytes(day))
        files.append(RawCsvFile(str(path), "landing-x", day, datetime(2024, 2, 1, tzinfo=UTC)))
    typed = build_purchase_events(files, sorted(landed.days))
    return landed, typed


@pytest.mark.parametrize(
    "kind, arguments, where, reason",
    [
        ("wrong column count", {"bad_rows": {BadRow.WRONG_COLUMN_COUNT: 3}}, "split",
         "wrong column count: 13 values, the header has 14"),
        ("unparseable timestamp", {"bad_rows": {BadRow.UNPARSEABLE_TIMESTAMP: 3}}, "split", "unparseable timestamp: '"),
        ("unparseable number", {"bad_rows": {BadRow.UNPARSEABLE_NUMBER: 3}}, "typed", "unparseable selling_price: 58,573.0 INR"),
        ("negative price", {"bad_rows": {BadRow.NEGATIVE_PRICE: 3}}, "typed", "negative cost_price: -"),
        ("before the lake", {"start": datetime(2023, 10, 26, 18)}, "split", "before the first partition: 2023-10-2"),
    ],
)
def test_each_bad_row_is_quarantined_with_its_reason_and_every_record_counted(tmp_path, kind, arguments, where, reason):
    data = purchase_log_csv(ROWS, seed=5, **({"start": START, "hours": 30} | arguments))
    landed, typed = split_and_typed(data, tmp_path)
    rejected = landed.quarantined if where == "split" else typed.quarantined.to_pylist()
    expected = ROWS if kind == "before the lake" else 3
    assert len(rejected) == expected and all(r["reason"].startswith(reason) for r in rejected), rejected[:2]
    assert landed.records_read == landed.records_routed + len(landed.quarantined)
    assert all(c.conserved for c in typed.counts.values())
    assert typed.table.num_rows == (0 if kind == "before the lake" else ROWS)
    if where == "split":  # the record as it was in the file, and where; its IP address protected once parsed
        lines = data.decode().split("\r\n")
        ip = PURCHASE_COLUMNS.index("ip_address")
        for r in landed.quarantined:
            original, quarantined = next(csv.reader([lines[r["record_number"]]])), next(csv.reader([r["record"]]))
            if kind == "wrong column count":  # its columns cannot be told apart: only its keyed hash is kept
                assert r["record"] == HASHED_ROW + protect(lines[r["record_number"]], Policy.HASH, KEY)
            else:
                assert quarantined[ip] == protect(original[ip], Policy.MASK_NETWORK, KEY) != original[ip]
                assert quarantined[:ip] + quarantined[ip + 1:] == original[:ip] + original[ip + 1:]


@pytest.mark.parametrize(
    "kind, data, error",
    [
        ("header missing", purchase_log_csv(50, header=Header.MISSING), "no header: the first row (14 values) names none of the purchase log's columns"),
        ("unknown column", purchase_log_csv(50, header=Header.UNKNOWN_COLUMN),
         "missing columns: payment_method; unknown columns: extra"),
        ("empty file", b"\r\n", "empty file"),
        ("byte order mark alone", b"\xef\xbb\xbf\r\n", "empty file: a byte order mark alone"),
        ("not gzip", b"user_id,session_id\r\n", "not a readable gzip file"),
        ("not UTF-8", purchase_log_csv(5).replace(b"Books", b"B\xffoks").replace(b"Fashion", b"F\xffshion")
         .replace(b"Beauty", b"B\xffauty").replace(b"Electronics", b"E\xfflectronics"), "not a readable CSV file"),
    ],
)
def test_a_file_that_cannot_be_read_as_the_log_is_quarantined_whole(kind, data, error):
    landed = split_purchase_file("log.csv.gz" if kind == "not gzip" else "log.csv", data, WINDOW, key=KEY)
    assert error in landed.file_error
    assert landed.records_read == landed.records_routed == 0 and not landed.quarantined


@pytest.mark.parametrize(
    "shape",
    [{"header": Header.REORDERED}, {"bom": True}, {"line_end": "\n"}, {"bom": True, "header": Header.REORDERED}],
    ids=["reordered", "bom", "lf", "bom-reordered"],
)
def test_the_logs_good_shapes_give_the_same_events(tmp_path, shape):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    canonical = split_and_typed(purchase_log_csv(500, seed=9, start=START), tmp_path / "a")[1].table
    landed, typed = split_and_typed(purchase_log_csv(500, seed=9, start=START, **shape), tmp_path / "b")
    assert typed.table.equals(canonical)
    assert bool(landed.notes) == (shape.get("header") is Header.REORDERED)
    # Quoted commas are values: "Home, Kitchen" is one category, never two columns.
    assert "Home, Kitchen" in set(typed.table["category"].to_pylist())


@pytest.mark.parametrize(
    "zone, written, utc",
    [
        ("UTC", "2024-01-14 23:59:59", "2024-01-14T23:59:59"),
        ("Asia/Kolkata", "2024-01-15 03:00:00", "2024-01-14T21:30:00"),  # the UTC day before
        ("America/New_York", "2024-01-14 20:00:00", "2024-01-15T01:00:00"),  # the UTC day after
        ("America/New_York", "2024-03-10 02:30:00", "2024-03-10T07:00:00"),  # skipped: the instant clocks jumped to
        ("America/New_York", "2024-11-03 01:30:00", "2024-11-03T05:30:00"),  # repeated: its first occurrence (EDT)
        ("Europe/Berlin", "2024-03-31T02:15:00", "2024-03-31T01:00:00"),  # 'T' accepted; skipped hour
    ],
)
def test_zone_less_timestamps_go_to_the_utc_day_of_the_configured_zone(tmp_path, zone, written, utc):
    row = ["USI_1", "SESI_1", "Books", "Oxford", "100", "120.0", "0", written, "google", "mobile", "iOS", "Safari",
           "1.2.3.4", "upi"]
    data = (",".join(PURCHASE_COLUMNS) + "\r\n" + ",".join(row) + "\r\n").encode()
    landed = split_purchase_file("log.csv", data, WINDOW, zone, key=KEY)
    [(day, rows)] = landed.days.items()
    assert str(day) == utc[:10] and rows["event_ts_utc"].to_pylist() == [utc + "Z"]


def test_the_same_event_delivered_twice_is_loaded_once(tmp_path):
    landed, typed = split_and_typed(purchase_log_csv(ROWS, seed=4, start=START, duplicates=7), tmp_path)
    assert typed.table.num_rows == ROWS and sum(c.dropped for c in typed.counts.values()) == 7
    assert landed.records_read == ROWS + 7


def test_the_generator_is_deterministic_and_in_the_tutorials_shape():
    data = purchase_log_csv(100, seed=1)
    assert data == purchase_log_csv(100, seed=1) != purchase_log_csv(100, seed=2)
    header, first = data.decode().split("\r\n")[:2]
    assert header == ",".join(PURCHASE_COLUMNS)
    values = first.split(",")
    assert values[0].startswith("USI_") and values[4].isdigit() and values[5].endswith(".0")
    assert datetime.strptime(values[7], "%Y-%m-%d %H:%M:%S")
    assert gzip.decompress(gzip.compress(data)) == data


def test_profile_rows_stay_in_the_day_their_file_landed_and_bad_ones_are_quarantined():
    landed = split_user_profile_file("users.csv", user_profiles_csv(300, seed=2, wrong_column_count=4), WINDOW,
                                     date(2024, 2, 1), key=KEY)
    assert list(landed.days) == [date(2024, 2, 1)] and landed.records_routed == 300
    assert [r["reason"] for r in landed.quarantined] == ["wrong column count: 10 values, the header has 11"] * 4


def _log(*rows: str) -> bytes:
    return (",".join(PURCHASE_COLUMNS) + "\r\n" + "".join(row + "\r\n" for row in rows)).encode()


def _row(user="USI_1", ts="2024-01-15 10:00:00", cost="100", selling="150", discount="5") -> str:
    return f"{user},SESI_1,Electronics,Acme,{cost},{selling},{discount},{ts},google,mobile,iOS,Safari,10.1.2.3,card"


@pytest.mark.parametrize(
    "row, where, reason",
    [
        (_row(ts="2024-02-30 10:00:00"), "split", "unparseable timestamp: '2024-02-30 10:00:00'"),  # once 03-01
        (_row(ts="2024-01-31 23:59:61"), "split", "unparseable timestamp: '2024-01-31 23:59:61'"),  # once 02-01
        (_row(ts="0000-01-01 00:00:00"), "split", "unparseable timestamp: '0000-01-01 00:00:00'"),  # once the whole file
        (_row(cost="9999999999999999.99", selling="0", discount="9999999999999999.99"), "typed",
         "cost_price out of range (>= 1,000,000,000,000): 9999999999999999.99"),  # once a failed range
        (_row(selling="99999999999999999"), "typed", "selling_price out of range"),  # once "unparseable"
        (_row(user='"\t"'), "typed", "missing user_id"),  # once loaded, then failing the blocking check
    ],
    ids=["february-30", "second-61", "year-0", "margin-overflow", "beyond-decimal-18", "tab-id"],
)
def test_an_odd_value_is_quarantined_alone_with_a_true_reason(tmp_path, row, where, reason):
    data = _log(_row(user="USI_2"), row, _row(user="USI_3"))
    landed, typed = split_and_typed(data, tmp_path)
    rejected = landed.quarantined if where == "split" else typed.quarantined.to_pylist()
    assert [r["reason"][:len(reason)] for r in rejected] == [reason]
    assert typed.table.num_rows == 2 and all(c.conserved for c in typed.counts.values())


def test_an_unclosed_quote_quarantines_the_file_whole_instead_of_swallowing_the_lines_after_it():
    rows = [_row(user=f"USI_{n}") for n in range(2000)]
    rows[5] = _row(user='"USI_5')
    landed = split_purchase_file("log.csv", _log(*rows), WINDOW, key=KEY)
    assert landed.file_error.startswith("2000 lines hold 6 records: a quoted value runs over line ends")
    assert (landed.records_read, landed.records_routed, landed.quarantined) == (0, 0, [])


def test_a_file_without_its_header_is_refused_without_writing_its_first_row():
    """The reason goes to the manifest, landed-files table and alerts: no value of the row in it."""
    data = user_profiles_csv(5, seed=1).split(b"\r\n", 1)[1]
    landed = split_user_profile_file("users.csv", data, WINDOW, date(2024, 2, 1), key=KEY)
    first_row = data.split(b"\r\n")[0].decode().split(",")
    assert landed.file_error.startswith("no header: the first row (11 values) names none of")
    assert not [value for value in first_row if value and value in landed.file_error]
