"""What users look at: the day's headline figures, PNG charts (matplotlib, headless) and a
self-contained HTML report."""

from __future__ import annotations

import base64
import html
import io
from datetime import date

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers and in CI

import matplotlib.pyplot as plt
import pyarrow as pa
from matplotlib.ticker import StrMethodFormatter

from ecomm_assets.core.tables import OrderTotals

TOP_PRODUCTS = 10
MONEY_TICKS = StrMethodFormatter("{x:,.0f}")


def headline_figures(totals: dict[date, OrderTotals]) -> dict[date, dict[str, float | int]]:
    """Each day's orders, revenue, average order value (to the cent) and percent of orders not
    reconciling, as plain numbers (Dagster plots numeric metadata); zeros for a day without orders."""
    return {
        day: {
            "orders": t.orders,
            "revenue": float(t.revenue),
            "average_order_value": float(round(t.revenue / t.orders, 2)) if t.orders else 0.0,
            "percent_not_reconciling": round(100 * t.not_reconciling / t.orders, 2) if t.orders else 0.0,
        }
        for day, t in totals.items()
    }


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def revenue_per_day_chart(daily: pa.Table) -> bytes:
    # One labelled bar per day (a date axis would draw a single day as one wide bar over hours).
    days = [day.strftime("%b %d") for day in daily["order_date"].to_pylist()]
    revenue = [float(v) for v in daily["revenue"].to_pylist()]
    figure, axis = plt.subplots(figsize=(8, 3.2))
    axis.bar(range(len(days)), revenue, color="#2f6db5", width=0.8)
    axis.set_xticks(range(len(days)), days)
    axis.set_xlim(-0.75, max(len(days), 7) - 0.25)
    axis.set_title("Revenue per day (sum of line totals)")
    axis.set_ylabel("revenue")
    axis.yaxis.set_major_formatter(MONEY_TICKS)
    axis.grid(axis="y", alpha=0.3)
    figure.autofmt_xdate()
    return _png(figure)


def revenue_by_category_chart(categories: pa.Table) -> bytes:
    rows = sorted(zip(categories["category"].to_pylist(), categories["revenue"].to_pylist()), key=lambda r: r[1])
    figure, axis = plt.subplots(figsize=(8, max(2.5, 0.28 * len(rows) + 1)))
    axis.barh([str(c) for c, _ in rows], [float(v) for _, v in rows], color="#3a9a5b")
    axis.set_title("Revenue by category")
    axis.set_xlabel("revenue")
    axis.xaxis.set_major_formatter(MONEY_TICKS)
    axis.grid(axis="x", alpha=0.3)
    return _png(figure)


def top_products_chart(products: pa.Table) -> bytes:
    head = products.slice(0, TOP_PRODUCTS)
    labels = [f"{name} ({pid})" for name, pid in zip(head["product_name"].to_pylist(), head["product_id"].to_pylist())]
    revenue = [float(v) for v in head["revenue"].to_pylist()]
    figure, axis = plt.subplots(figsize=(8, max(2.5, 0.32 * len(labels) + 1)))
    axis.barh(labels[::-1], revenue[::-1], color="#c2702a")
    axis.set_title(f"Top {len(labels)} products by revenue")
    axis.set_xlabel("revenue")
    axis.xaxis.set_major_formatter(MONEY_TICKS)
    axis.grid(axis="x", alpha=0.3)
    return _png(figure)


def render_charts(daily: pa.Table, categories: pa.Table, products: pa.Table) -> dict[str, bytes]:
    return {
        "revenue_per_day.png": revenue_per_day_chart(daily),
        "revenue_by_category.png": revenue_by_category_chart(categories),
        "top_products.png": top_products_chart(products),
    }


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _cell(column: str, value) -> str:
    """Shares (fractions) as percentages, other floats to two places, the rest as they are."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{100 * value:.1f} %" if column.endswith("share") or column.startswith("share") else f"{value:,.2f}"
    return str(value)


def _html_table(table: pa.Table, rows: int = 20) -> str:
    header = "".join(f"<th>{html.escape(c)}</th>" for c in table.column_names)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(c, v))}</td>" for c, v in row.items()) + "</tr>"
        for row in table.slice(0, rows).to_pylist()
    )
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def html_report(day: date, charts: dict[str, bytes], daily: pa.Table, categories: pa.Table, products: pa.Table) -> str:
    """One HTML file with the charts inlined: it opens anywhere, with no server and no other file."""
    images = "".join(f'<img alt="{html.escape(name)}" src="{data_uri(png)}">' for name, png in charts.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ecomm-assets dashboard {day}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:60em}}img{{display:block;margin:1em 0;max-width:100%}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:.2em .5em;text-align:right}}</style>
</head><body>
<h1>Orders dashboard, up to {day}</h1>
<p>{daily.num_rows} {"day" if daily.num_rows == 1 else "days"} up to {day}; categories and products of {day}.</p>
{images}
<h2>Daily orders</h2>{_html_table(daily, rows=60)}
<h2>Sales by category, {day}</h2>{_html_table(categories)}
<h2>Top products, {day}</h2>{_html_table(products, rows=TOP_PRODUCTS)}
</body></html>
"""
