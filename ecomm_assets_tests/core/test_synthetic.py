import json
from datetime import date

from ecomm_assets.core import synthetic


def day_bytes(seed, day):
    products, users = synthetic.generate_products(seed), synthetic.generate_users(seed)
    return synthetic.orders_json_lines(synthetic.generate_orders(seed, day, 500, products, users))


def test_same_seed_and_day_give_the_same_bytes():
    assert day_bytes(7, date(2024, 3, 1)) == day_bytes(7, date(2024, 3, 1))
    assert day_bytes(7, date(2024, 3, 1)) != day_bytes(8, date(2024, 3, 1))
    assert day_bytes(7, date(2024, 3, 1)) != day_bytes(7, date(2024, 3, 2))


def test_orders_follow_weekday_and_hour_patterns():
    products, users = synthetic.generate_products(1), synthetic.generate_users(1)
    saturday = synthetic.generate_orders(1, date(2024, 1, 13), 1000, products, users).to_pylist()
    monday = synthetic.generate_orders(1, date(2024, 1, 15), 1000, products, users).to_pylist()
    assert len(saturday) > len(monday)
    hours = [int(o["order_date"][11:13]) for o in monday]
    assert hours.count(20) > 3 * hours.count(3)  # evening peak, quiet night
    assert all(o["order_date"].startswith("2024-01-15T") for o in monday)
    assert len({o["order_id"] for o in monday}) == len(monday)


def test_collections_are_dummyjson_shaped():
    product = synthetic.generate_products(1)[0]
    assert {"id", "title", "category", "price", "discountPercentage", "rating", "stock"} <= product.keys()
    user = synthetic.generate_users(1)[0]
    assert {"city", "state", "country", "postalCode"} <= user["address"].keys()
    cart = synthetic.generate_carts(1, synthetic.generate_products(1))[0]
    assert {"id", "products", "total", "userId"} <= cart.keys()


def test_orders_are_canonical_and_totals_add_up_to_the_cent():
    products, users = synthetic.generate_products(3), synthetic.generate_users(3)
    data = synthetic.orders_json_lines(synthetic.generate_orders(3, date(2024, 5, 6), 300, products, users))
    orders = [json.loads(line) for line in data.decode().splitlines()]
    assert list(orders[0]) == ["order_id", "order_date", "total_amount", "customer", "products"]
    assert list(orders[0]["customer"]) == ["customer_id", "name", "email", "address"]
    prices = {str(p["id"]): p["price"] for p in products}
    shipped = 0
    for order in orders:
        assert 1 <= len(order["products"]) <= 5
        items = sum(round(prices[line["product_id"]] * 100) * line["quantity"] for line in order["products"])
        assert all(line["price"] == prices[line["product_id"]] for line in order["products"])
        difference = round(order["total_amount"] * 100) - items
        assert difference in (0, 499)
        shipped += difference == 499
    assert 0 < shipped < len(orders) * 0.1  # about 3 % carry shipping


def test_days_serialized_together_are_the_bytes_of_each_day_alone():
    products, users = synthetic.generate_products(5), synthetic.generate_users(5)
    without_email = [{k: v for k, v in user.items() if k != "email"} for user in users]  # a column of nulls: another schema
    days = [synthetic.generate_orders(5, date(2024, 2, d), 40, products, users) for d in (1, 2)]
    other = synthetic.generate_orders(5, date(2024, 2, 3), 40, products, without_email)
    tables = [days[0], days[0].slice(0, 0), other, days[1]]
    together = synthetic.json_lines(tables)
    alone = [b"".join(json.dumps(row, separators=(",", ":")).encode() + b"\n" for row in table.to_pylist()) for table in tables]
    assert together == alone
    assert together[1] == b"" and b'"email":null' in together[2]
    assert synthetic.json_lines([days[0].slice(0, 0)]) == [b""]
    # the customers of a users snapshot, built once for many days, give the same orders
    customers = synthetic.customer_table(users)
    assert synthetic.generate_orders(5, date(2024, 2, 2), 40, products, users, customers=customers).equals(days[1])
