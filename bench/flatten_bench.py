"""Flatten + validate + write one day of nested orders, three ways, each run in its own process.

    python bench/flatten_bench.py [--orders 100000] [--runs 5]

(a) ecomm-assets: flatten_orders (DuckDB: typed read, validation, de-duplication) + Parquet write
(b) the tutorials' way: json.load per line, a Python loop building dicts, pandas, to_parquet
(c) DuckDB bare: read_json with declared columns + UNNEST + COPY TO parquet, no validation
Prints the median seconds, the ratios measured in this one run, and peak memory (max RSS).
"""

import argparse
import json
import os
import resource
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
    # mean_orders chosen so that a Monday (factor 0.9) has the requested count.
    records = synthetic.generate_orders(42, DAY, round(orders / 0.9), products, users)
    with open(path, "wb") as out:
        out.write(synthetic.to_json_lines(records))


def run_ours(src: str, out: str) -> None:
    sys.path.insert(0, ROOT)
    from ecomm_assets.core.flatten import RawOrderFile, flatten_orders
    from ecomm_assets.core.storage import LakeStore

    result = flatten_orders([RawOrderFile(src, DAY, "bench")])
    LakeStore.from_uri(out).write_parquet("order_lines.parquet", result.lines)


def run_naive(src: str, out: str) -> None:
    import pandas as pd

    rows = []
    with open(src) as handle:
        for line in handle:
            order = json.loads(line)
            for product in order["products"]:
                rows.append(
                    {
                        "order_id": order["order_id"], "order_date": order["order_date"],
                        "total_amount": order["total_amount"], "customer_id": order["customer"]["customer_id"],
                        "customer_name": order["customer"]["name"], "customer_email": order["customer"]["email"],
                        "city": order["customer"]["address"]["city"], "product_id": product["product_id"],
                        "product_name": product["name"], "category": product["category"], "brand": product["brand"],
                        "price": product["price"], "quantity": product["quantity"],
                        "line_total": product["price"] * product["quantity"],
                    }
                )
    frame = pd.DataFrame(rows)
    frame["order_date"] = pd.to_datetime(frame["order_date"], utc=True)
    frame.to_parquet(os.path.join(out, "order_lines.parquet"))


def run_duckdb_bare(src: str, out: str) -> None:
    import duckdb

    columns = {
        "order_id": "VARCHAR", "order_date": "TIMESTAMPTZ", "total_amount": "DECIMAL(18,2)",
        "customer": "STRUCT(customer_id VARCHAR, name VARCHAR, email VARCHAR, address STRUCT(address VARCHAR, city VARCHAR, state VARCHAR, \"postalCode\" VARCHAR, country VARCHAR))",
        "products": "STRUCT(product_id VARCHAR, name VARCHAR, category VARCHAR, brand VARCHAR, price DECIMAL(18,2), quantity BIGINT, discount_percent DECIMAL(9,2))[]",
    }
    con = duckdb.connect()
    con.execute(
        "COPY (SELECT order_id, order_date, total_amount, customer.customer_id, customer.name, customer.email, "
        "customer.address.city, UNNEST(products, recursive := true) "
        "FROM read_json($src, format='newline_delimited', columns=$columns)) "
        "TO $out (FORMAT parquet, COMPRESSION zstd)",
        {"src": src, "columns": columns, "out": os.path.join(out, "order_lines.parquet")},
    )


APPROACHES = {"ours": run_ours, "naive": run_naive, "duckdb_bare": run_duckdb_bare}
# Imported before the clock starts: the benchmark times the data work, not interpreter start-up.
IMPORTS = {"ours": ["ecomm_assets.core.flatten", "ecomm_assets.core.storage"], "naive": ["pandas", "pyarrow.parquet"], "duckdb_bare": ["duckdb"]}


def child(approach: str, src: str) -> None:
    import importlib

    sys.path.insert(0, ROOT)
    for module in IMPORTS[approach]:
        importlib.import_module(module)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        APPROACHES[approach](src, out)
        seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
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
        print(f"{name:12s} median {medians[name]:.3f} s  (min {min(r['seconds'] for r in runs):.3f}, "
              f"max {max(r['seconds'] for r in runs):.3f})  peak {max(r['peak_mib'] for r in runs):.0f} MiB")
    print(f"naive / ours       = {medians['naive'] / medians['ours']:.2f}x  (target >= 6)")
    print(f"ours / duckdb_bare = {medians['ours'] / medians['duckdb_bare']:.2f}x  (target <= 1.25)")


if __name__ == "__main__":
    main()
