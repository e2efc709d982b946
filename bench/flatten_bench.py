"""Flatten + validate + write one day of nested orders, four ways, each run in its own process.

    python bench/flatten_bench.py [--orders 100000] [--runs 5]

(a) ecomm-assets: flatten_orders (typed read, validation, duplicate detection, the 26 contract
    columns, Parquet) and the move of the file into a local lake partition
(b) the tutorials' way: json.load per line, a Python loop building dicts, pandas, to_parquet,
    producing the same 26 columns as (a)
(c) DuckDB bare: read_json with declared columns + UNNEST + COPY TO parquet, no validation
(c2) the same bare pipeline writing the same 26 columns as (a) by the same expressions (text read,
    exact money, canonical ids, date parts, line totals), so that (a)/(c2) is the price of
    validation alone
Prints the median seconds, the ratios measured in this one run, and peak memory (max RSS).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DAY = date(2024, 1, 15)


def generate(path: str, orders: int) -> None:
    sys.path.insert(0, ROOT)
    from ecomm_assets.core import synthetic

    products, users = synthetic.generate_products(42), synthetic.generate_users(42)
    # mean_orders chosen so that a Monday (factor 0.9) has the requested count; 1 to 5 lines per
    # order, evenly, for about 3 lines per order.
    records = synthetic.generate_orders(42, DAY, round(orders / 0.9), products, users, (0.2,) * 5)
    with open(path, "wb") as out:
        out.write(synthetic.orders_json_lines(records))


def run_ours(src: str, out: str) -> None:
    sys.path.insert(0, ROOT)
    from pathlib import Path

    from ecomm_assets.core.flatten import RawOrderFile, flatten_orders
    from ecomm_assets.core.layout import PART_FILE, PROCESSED, partition_dir
    from ecomm_assets.core.storage import LakeStore

    store = LakeStore.from_uri(out)
    with store.staging_dir() as staging:
        result = flatten_orders([RawOrderFile(src, DAY, "bench")], staging)
        store.replace_partition(partition_dir(PROCESSED, "order_lines", DAY), {PART_FILE: Path(result.line_files[DAY])})
    assert result.read_modes[DAY] == "optimistic" and result.counts[DAY].conserved


def run_naive(src: str, out: str) -> None:
    """The same 26 columns as (a), the tutorials' way (money as float, no validation)."""
    import pandas as pd

    rows = []
    with open(src) as handle:
        for line in handle:
            order = json.loads(line)
            customer, address = order["customer"], order["customer"]["address"]
            for number, product in enumerate(order["products"], start=1):
                rows.append(
                    {
                        "order_id": order["order_id"], "line_number": number, "order_ts": order["order_date"],
                        "customer_id": customer["customer_id"], "customer_name": customer["name"],
                        "customer_email": customer["email"], "customer_address": address["address"],
                        "customer_city": address["city"], "customer_state": address["state"],
                        "customer_country": address["country"], "product_id": product["product_id"],
                        "product_name": product["name"], "category": product["category"], "brand": product["brand"],
                        "unit_price": product["price"], "quantity": product["quantity"],
                        "line_total": product["price"] * product["quantity"],
                        "discount_percent": product["discount_percent"], "order_total": order["total_amount"],
                    }
                )
    frame = pd.DataFrame(rows)
    ts = frame["order_ts"] = pd.to_datetime(frame["order_ts"], utc=True)
    frame.insert(3, "order_date", ts.dt.date)
    frame["year"], frame["month"], frame["day"] = ts.dt.year, ts.dt.month, ts.dt.day
    frame["hour"], frame["day_of_week"], frame["source"] = ts.dt.hour, ts.dt.dayofweek, "bench"
    frame.to_parquet(os.path.join(out, "order_lines.parquet"))


# (c) and (c2) read with declared types and no checks at all.
BARE_COLUMNS = {
    "order_id": "VARCHAR", "order_date": "TIMESTAMPTZ", "total_amount": "DECIMAL(18,2)",
    "customer": "STRUCT(customer_id VARCHAR, name VARCHAR, email VARCHAR, address STRUCT(address VARCHAR, city VARCHAR, state VARCHAR, country VARCHAR))",
    "products": "STRUCT(product_id VARCHAR, name VARCHAR, category VARCHAR, brand VARCHAR, price DECIMAL(18,2), quantity BIGINT, discount_percent DECIMAL(9,2))[]",
}


def run_duckdb_bare(src: str, out: str) -> None:
    import duckdb

    from ecomm_assets.core.flatten import (
        PARQUET_COPY_OPTIONS,  # the same codec and level as (a)
    )

    con = duckdb.connect()
    con.execute(
        "COPY (SELECT order_id, order_date, total_amount, customer.customer_id, customer.name, customer.email, "
        "customer.address.city, UNNEST(products, recursive := true) "
        "FROM read_json($src, format='newline_delimited', columns=$columns)) "
        f"TO $out ({PARQUET_COPY_OPTIONS})",
        {"src": src, "columns": BARE_COLUMNS, "out": os.path.join(out, "order_lines.parquet")},
    )


def run_duckdb_same_columns(src: str, out: str) -> None:
    import duckdb

    from ecomm_assets.core.flatten import (
        _DECLARED_COLUMNS,
        PARQUET_COPY_OPTIONS,
        _line_columns,
        _order_ts,
        _typed_amount,
        _typed_product,
    )

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        f"COPY (SELECT {_line_columns('line_number')} FROM (SELECT *, make_timestamp(epoch_us(order_ts)) AS utc_wall FROM ("
        f"SELECT * REPLACE ({_typed_product('p')} AS p) FROM ("
        f"SELECT order_id, {_order_ts('order_date')} AS order_ts, total_amount, {_typed_amount('total_amount')}, "
        "customer.customer_id, customer.name AS customer_name, customer.email AS customer_email, "
        "customer.address.address AS customer_address, customer.address.city AS customer_city, "
        "customer.address.state AS customer_state, customer.address.country AS customer_country, 'bench' AS source, "
        "UNNEST(products) AS p, generate_subscripts(products, 1) AS line_number "
        "FROM read_json($src, format='newline_delimited', columns=$columns))))) "
        f"TO $out ({PARQUET_COPY_OPTIONS})",
        {"src": src, "columns": _DECLARED_COLUMNS, "out": os.path.join(out, "order_lines.parquet")},
    )


APPROACHES = {"ours": run_ours, "naive": run_naive, "duckdb_bare": run_duckdb_bare, "duckdb_same_columns": run_duckdb_same_columns}
# Imported before the clock starts: the benchmark times the data work, not interpreter start-up.
IMPORTS = {
    "ours": ["ecomm_assets.core.flatten", "ecomm_assets.core.storage"],
    "naive": ["pandas", "pyarrow.parquet"],
    "duckdb_bare": ["duckdb", "ecomm_assets.core.flatten"],
    "duckdb_same_columns": ["duckdb", "ecomm_assets.core.flatten"],
}


def _peak_rss_kib() -> int:
    """This process's own peak resident memory. (ru_maxrss is not used: across fork + exec it
    keeps the parent's peak, here the input generator's.)"""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def child(approach: str, src: str) -> None:
    import importlib

    sys.path.insert(0, ROOT)
    for module in IMPORTS[approach]:
        importlib.import_module(module)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        APPROACHES[approach](src, out)
        seconds = time.perf_counter() - start
    peak_mib = _peak_rss_kib() / 1024
    print(json.dumps({"seconds": seconds, "peak_mib": peak_mib}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--child", choices=list(APPROACHES))
    parser.add_argument("--src")
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.src)

    with tempfile.TemporaryDirectory() as folder:
        src = os.path.join(folder, "orders.jsonl")
        generate(src, args.orders)
        with open(src) as handle:
            lines = sum(len(json.loads(line)["products"]) for line in handle)
        print(f"input: {args.orders} orders, {lines} lines, {os.path.getsize(src) / 2**20:.1f} MiB JSON Lines; "
              f"{args.runs} runs each, one process per run, interleaved")
        results = {name: [] for name in APPROACHES}
        for _ in range(args.runs):
            for name in APPROACHES:
                output = subprocess.run(
                    [sys.executable, __file__, "--child", name, "--src", src], check=True, capture_output=True, text=True
                ).stdout
                results[name].append(json.loads(output.strip().splitlines()[-1]))
    medians = {name: statistics.median(r["seconds"] for r in runs) for name, runs in results.items()}
    for name, runs in results.items():
        print(f"{name:20s} median {medians[name]:.3f} s  (min {min(r['seconds'] for r in runs):.3f}, "
              f"max {max(r['seconds'] for r in runs):.3f})  peak {max(r['peak_mib'] for r in runs):.0f} MiB")
    print(f"naive / ours       = {medians['naive'] / medians['ours']:.2f}x  (target >= 6)")
    print(f"ours / duckdb_bare = {medians['ours'] / medians['duckdb_bare']:.2f}x  (target <= 1.25)")
    print(f"ours / duckdb_same_columns = {medians['ours'] / medians['duckdb_same_columns']:.2f}x  (the price of validation)")


if __name__ == "__main__":
    main()
