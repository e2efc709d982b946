from datetime import date

from ecomm_assets.core import synthetic


def day_bytes(seed, day):
    products, users = synthetic.generate_products(seed), synthetic.generate_users(seed)
    return synthetic.to_json_lines(synthetic.generate_orders(seed, day, 500, products, users))


def test_same_seed_and_day_give_the_same_bytes():
    assert day_bytes(7, date(2024, 3, 1)) == day_bytes(7, date(2024, 3, 1))
    assert day_bytes(7, date(2024, 3, 1)) != day_bytes(8, date(2024, 3, 1))
    assert day_bytes(7, date(2024, 3, 1)) != day_bytes(7, date(2024, 3, 2))


def test_orders_follow_weekday_and_hour_patterns():
    products, users = synthetic.generate_products(1), synthetic.generate_users(1)
    saturday = synthetic.generate_orders(1, date(2024, 1, 13), 1000, products, users)
    monday = synthetic.generate_orders(1, date(2024, 1, 15), 1000, products, users)
    assert len(saturday) > len(monday)
    hours = [int(o["order_date"][11:13]) for o in monday]
    assert hours.count(20) > 3 * hours.count(3)  # evening peak, quiet night
    assert all(o["order_date"].startswith("2024-01-15T") for o in monday)
    assert len({o["order_id"] for o in monday}) == len(monday)


def test_catalog_is_dummyjson_shaped():
    product = synthetic.generate_products(1)[0]
    assert {"id", "title", "category", "price", "discountPercentage", "rating", "stock"} <= product.keys()
    user = synthetic.generate_users(1)[0]
    assert {"city", "state", "country", "postalCode"} <= user["address"].keys()
    cart = synthetic.generate_carts(1, synthetic.generate_products(1))[0]
    assert {"id", "products", "total", "userId"} <= cart.keys()
