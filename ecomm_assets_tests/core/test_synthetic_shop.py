"""The synthetic shop looks like an online shop: demand falls with price, so most orders are cheap
items and a few are expensive. Each target (synthetic.TARGET_*) is checked on every day of a month,
for two seeds, at the default 1,000 orders a day."""

from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache

import numpy as np
import pyarrow.compute as pc
import pytest

from ecomm_assets.core import synthetic

SEEDS = (42, 7)
DAYS = [date(2024, 1, 1) + timedelta(days=n) for n in range(31)]
ORDERS_PER_DAY = 1000


@dataclass(frozen=True)
class Day:
    order_values: np.ndarray  # cents, items only
    category_revenue: dict[str, int]  # cents
    product_revenue: dict[str, int]  # cents
    unit_prices: np.ndarray  # one per line
    quantities: np.ndarray  # one per line
    lines_per_order: np.ndarray

    @property
    def revenue(self) -> int:
        return int(self.order_values.sum())

    def category_shares(self) -> dict[str, float]:
        return {category: cents / self.revenue for category, cents in self.category_revenue.items()}


@cache
def collections(seed: int) -> tuple[list[dict], list[dict]]:
    return synthetic.generate_products(seed), synthetic.generate_users(seed)


@cache
def shop_day(seed: int, day: date) -> Day:
    products, users = collections(seed)
    orders = synthetic.generate_orders(seed, day, ORDERS_PER_DAY, products, users)
    lines = orders["products"].combine_chunks()
    flat = lines.flatten()
    prices = flat.field("price").to_numpy()
    quantities = flat.field("quantity").to_numpy()
    line_cents = np.round(prices * 100).astype(np.int64) * quantities
    offsets = lines.offsets.to_numpy()

    def revenue_by(key: str) -> dict[str, int]:
        keys = flat.field(key).to_numpy(zero_copy_only=False)
        return {k: int(line_cents[keys == k].sum()) for k in pc.unique(flat.field(key)).to_pylist()}

    return Day(
        order_values=np.add.reduceat(line_cents, offsets[:-1]),
        category_revenue=revenue_by("category"),
        product_revenue=revenue_by("product_id"),
        unit_prices=prices,
        quantities=quantities,
        lines_per_order=np.diff(offsets),
    )


def shop_days(seed: int) -> list[Day]:
    return [shop_day(seed, day) for day in DAYS]


@pytest.mark.parametrize("seed", SEEDS)
def test_average_order_value_is_a_shops_and_a_few_orders_are_large(seed):
    low, high = synthetic.TARGET_AVERAGE_ORDER_VALUE
    for day, figures in zip(DAYS, shop_days(seed)):
        mean, median = figures.order_values.mean() / 100, np.median(figures.order_values) / 100
        assert low <= mean <= high, (day, mean)
        assert median < mean, (day, median, mean)  # right-skewed


@pytest.mark.parametrize("seed", SEEDS)
def test_most_lines_are_cheap(seed):
    for day, figures in zip(DAYS, shop_days(seed)):
        under_50 = (figures.unit_prices < 50).mean()
        assert under_50 >= synthetic.TARGET_MIN_LINES_UNDER_50, (day, under_50)


@pytest.mark.parametrize("seed", SEEDS)
def test_no_category_dominates_revenue(seed):
    for day, figures in zip(DAYS, shop_days(seed)):
        shares = figures.category_shares()
        assert max(shares.values()) <= synthetic.TARGET_MAX_CATEGORY_SHARE, (day, max(shares.items(), key=lambda kv: kv[1]))
        over_2_percent = sum(share >= 0.02 for share in shares.values())
        assert over_2_percent >= synthetic.TARGET_CATEGORIES_OVER_2_PERCENT, (day, over_2_percent)


@pytest.mark.parametrize("seed", SEEDS)
def test_cars_and_motorcycles_are_rare_sales(seed):
    products, _ = collections(seed)
    category = {str(p["id"]): p["category"] for p in products}
    big_ticket = set(synthetic.BIG_TICKET_CATEGORIES)
    month_revenue = month_big_ticket = 0
    for day, figures in zip(DAYS, shop_days(seed)):
        top_10 = sorted(figures.product_revenue, key=figures.product_revenue.get, reverse=True)[:10]
        in_top_10 = sum(category[p] in big_ticket for p in top_10)
        assert in_top_10 <= synthetic.TARGET_MAX_BIG_TICKET_IN_TOP_10, (day, in_top_10)
        month_revenue += figures.revenue
        month_big_ticket += sum(figures.category_revenue.get(c, 0) for c in big_ticket)
    assert month_big_ticket / month_revenue < synthetic.TARGET_MAX_BIG_TICKET_SHARE


@pytest.mark.parametrize("seed", SEEDS)
def test_basket_size_and_quantities(seed):
    for day, figures in zip(DAYS, shop_days(seed)):
        lines, units = figures.lines_per_order.mean(), figures.quantities.mean()
        assert synthetic.TARGET_LINES_PER_ORDER[0] <= lines <= synthetic.TARGET_LINES_PER_ORDER[1], (day, lines)
        assert synthetic.TARGET_UNITS_PER_LINE[0] <= units <= synthetic.TARGET_UNITS_PER_LINE[1], (day, units)
        assert 1 <= figures.quantities.min() and figures.quantities.max() <= 4


@pytest.mark.parametrize("seed", SEEDS)
def test_demand_and_quantity_fall_with_price(seed):
    prices = np.concatenate([d.unit_prices for d in shop_days(seed)])
    quantities = np.concatenate([d.quantities for d in shop_days(seed)])
    # Lines per product, by price band: each band of ten times the price sells fewer lines a product.
    products, _ = collections(seed)
    offered_prices = np.array([p["price"] for p in products])
    bands = [(1, 10), (10, 100), (100, 1000), (1000, 100000)]
    lines_per_product = [
        ((low <= prices) & (prices < high)).sum() / ((low <= offered_prices) & (offered_prices < high)).sum()
        for low, high in bands
    ]
    assert lines_per_product == sorted(lines_per_product, reverse=True), lines_per_product
    assert lines_per_product[0] > 10 * lines_per_product[2]
    assert quantities[prices < 20].mean() > quantities[prices >= 100].mean() + 0.2
