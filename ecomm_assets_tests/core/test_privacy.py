"""Personal data lands only as its attribute's policy says: the policies on odd values, the source
fields and the contract columns declaring the same attributes, and landed records' texts."""

import json
import re

import pytest

from ecomm_assets.core.landing import protected_text
from ecomm_assets.core.privacy import (
    DEFAULT_KEY,
    SOURCE_FIELDS,
    extracted,
    hash_key,
    protect,
)
from ecomm_assets.core.schemas import (
    ATTRIBUTES,
    CONTRACTS,
    LAKE_TABLES,
    LANDED_FILES,
    UNPARTITIONED_TABLES,
    Personal,
    Policy,
    column_descriptions,
    column_policy,
)

KEY = b"test key"
HMAC = re.compile(r"[0-9a-f]{64}")

USER = {
    "id": 1, "firstName": "Emily", "lastName": "Johnson", "maidenName": "Smith", "age": 28, "gender": "female",
    "email": "emily.johnson@x.dummyjson.com", "phone": "+81 965-431-3024", "username": "emilys",
    "password": "emilyspass", "birthDate": "1996-5-30", "image": "https://dummyjson.com/icon/emilys/128",
    "bloodGroup": "O-", "height": 193.24, "weight": 63.16, "eyeColor": "Green", "ip": "42.48.100.32",
    "address": {"address": "626 Main Street", "city": "Phoenix", "state": "Mississippi", "stateCode": "MS",
                "postalCode": "29112", "coordinates": {"lat": -77.16213, "lng": -92.084824}, "country": "United States"},
    "macAddress": "47:fa:41:18:ec:eb", "university": "University of Wisconsin--Madison",
    "bank": {"cardNumber": "3693233511855044", "iban": "GB74MH2UZLR9TRPHYNU8F8"},
    "company": {"department": "Engineering", "name": "Dooley, Kozey and Cronin", "title": "Sales Manager"},
    "ein": "977-175", "ssn": "900-590-289", "userAgent": "Mozilla/5.0", "crypto": {"wallet": "0xb9fc"}, "role": "admin",
}


@pytest.mark.parametrize(
    "policy, value, expected",
    [
        (Policy.MASK_EMAIL, "emily.johnson@x.dummyjson.com", "e***@x.dummyjson.com"),
        (Policy.MASK_EMAIL, " Émile@exemple.fr ", "É***@exemple.fr"),
        (Policy.MASK_EMAIL, "a@b@c.org", "a***@c.org"),  # the domain follows the last '@'
        (Policy.MASK_EMAIL, "@c.org", "***@c.org"),
        (Policy.MASK_EMAIL, "no at sign", None),
        (Policy.MASK_EMAIL, "trailing@", None),
        (Policy.MASK_EMAIL, "", ""),
        (Policy.MASK_EMAIL, None, None),
        (Policy.MASK_EMAIL, 42, None),
        (Policy.MASK_PHONE, "+81 965-431-3024", "***3024"),
        (Policy.MASK_PHONE, 5551234567, "***4567"),
        (Policy.MASK_PHONE, "123-456", None),  # too short to be a phone: all of it would show
        (Policy.MASK_PHONE, "call me", None),
        (Policy.MASK_NETWORK, "42.48.100.32", "42.48.100.0/24"),
        (Policy.MASK_NETWORK, " 2001:db8:85a3::8a2e:370:7334 ", "2001:db8:85a3::/48"),
        (Policy.MASK_NETWORK, "42.48.100", None),
        (Policy.MASK_NETWORK, "localhost", None),
        (Policy.INITIALS, "Emily Johnson", "E. J."),
        (Policy.INITIALS, "E. J.", "E. J."),  # applied twice, the same
        (Policy.INITIALS, "  élodie   de la fontaine ", "É. D. L. F."),
        (Policy.INITIALS, "   ", "   "),
        (Policy.INITIALS, ["Emily"], None),
        (Policy.DROP, "anything", None),
        (Policy.KEEP, {"kept": True}, {"kept": True}),
        (Policy.HASH, None, None),
        (Policy.HASH, "", ""),
        (Policy.HASH, True, None),
        (Policy.HASH, {"email": "x@y"}, None),
    ],
)
def test_each_policy_on_ordinary_and_odd_values(policy, value, expected):
    assert protect(value, policy, KEY) == expected


@pytest.mark.parametrize(
    "same, other",
    [
        (["emily@x.com", " Emily@X.com ", "EMILY@X.COM"], "emily@x.org"),
        (["Ünïcode@x.com", "u\u0308nïcode@x.com".upper()], "unicode@x.com"),  # NFC, then case folded
        ([12345, "12345"], "12346"),  # a number is hashed as its text
    ],
)
def test_a_hash_is_keyed_hex_and_equal_for_equal_values(same, other):
    hashes = {protect(value, Policy.HASH, KEY) for value in same}
    assert len(hashes) == 1 and HMAC.fullmatch(hashes.pop())
    assert protect(other, Policy.HASH, KEY) != protect(same[0], Policy.HASH, KEY)
    assert protect(same[0], Policy.HASH, b"another key") != protect(same[0], Policy.HASH, KEY)


def test_the_hash_key_is_the_settings_or_the_public_default():
    assert hash_key("s3cret") == b"s3cret"
    assert hash_key(None) == hash_key("") == DEFAULT_KEY


def test_a_users_personal_fields_land_as_their_attributes_say():
    [user] = extracted("users", [USER], KEY)
    assert user == {
        "id": 1, "firstName": "E.", "lastName": "J.", "age": 28, "gender": "female",
        "email": protect(USER["email"], Policy.HASH, KEY), "phone": "***3024", "eyeColor": "Green",
        "username": protect(USER["username"], Policy.HASH, KEY),
        "address": {"address": protect("626 Main Street", Policy.HASH, KEY), "city": "Phoenix", "state": "Mississippi",
                    "stateCode": "MS", "postalCode": "29112", "country": "United States"},
        "role": "admin",
    }
    assert USER["password"] == "emilyspass" and USER["address"]["address"] == "626 Main Street"  # not modified


@pytest.mark.parametrize(
    "address, expected",
    [
        ("626 Main Street", protect("626 Main Street", Policy.HASH, KEY)),  # a text where an object is expected
        (["626 Main Street", {"address": "1 Elm Street", "city": "Lyon"}, None],
         [protect("626 Main Street", Policy.HASH, KEY), {"address": protect("1 Elm Street", Policy.HASH, KEY), "city": "Lyon"}, None]),
        (None, None),
    ],
)
def test_a_value_where_the_policy_expects_an_object_keeps_its_type_and_nothing_else(address, expected):
    [user] = extracted("users", [{"id": 1, "address": address}], KEY)
    assert user == {"id": 1, "address": expected}


def test_a_products_reviewers_are_protected_in_each_review():
    product = {"id": 1, "title": "Mascara", "reviews": [
        {"rating": 2, "comment": "Very unhappy", "reviewerName": "Eleanor Collins", "reviewerEmail": "eleanor.collins@x.dummyjson.com"},
        {"rating": 5, "comment": "Great", "reviewerName": "Lucas Gordon", "reviewerEmail": None},
    ]}
    [extracted_product] = extracted("products", [product], KEY)
    assert extracted_product == {"id": 1, "title": "Mascara", "reviews": [
        {"rating": 2, "comment": "Very unhappy", "reviewerName": "E. C.",
         "reviewerEmail": protect("eleanor.collins@x.dummyjson.com", Policy.HASH, KEY)},
        {"rating": 5, "comment": "Great", "reviewerName": "L. G.", "reviewerEmail": None},
    ]}


@pytest.mark.parametrize("collection", ["carts", "posts"])
def test_collections_without_personal_fields_pass_as_they_are(collection):
    records = [{"id": 1, "password": "not a user's"}]
    assert extracted(collection, records, KEY) == records


def _contract_columns():
    for table, schema in {**LAKE_TABLES, **UNPARTITIONED_TABLES, "landed_files": LANDED_FILES}.items():
        for field in schema:
            yield table, field


# Columns whose name says they may hold personal data: each must declare its attribute.
PERSONAL_NAME = re.compile(r"email|phone|ip_address|address|(^|_)(user_?)?name$")
NOT_PERSONAL = {("order_lines", "product_name"), ("product_performance", "product_name"), ("dim_products", "name")}


@pytest.mark.parametrize("table, field", list(_contract_columns()), ids=lambda x: getattr(x, "name", x))
def test_a_column_named_like_personal_data_declares_its_attribute(table, field):
    personal = PERSONAL_NAME.search(field.name) and (table, field.name) not in NOT_PERSONAL
    assert (column_policy(field) is not Policy.KEEP) == bool(personal), (table, field.name)


# What each source field becomes in the contracts: the column must declare the field's attribute.
FED_COLUMNS = {
    ("users", "firstName"): [("dim_customers", "name")],
    ("users", "lastName"): [("dim_customers", "name")],
    ("users", "email"): [("dim_customers", "email")],
    ("users", "address.address"): [("dim_customers", "address")],
    ("orders", "customer.name"): [("order_lines", "customer_name"), ("orders", "customer_name"),
                                  ("dim_customers", "name"), ("top_customers", "customer_name")],
    ("orders", "customer.email"): [("order_lines", "customer_email"), ("orders", "customer_email"),
                                   ("dim_customers", "email")],
    ("orders", "customer.address.address"): [("order_lines", "customer_address"), ("dim_customers", "address")],
    ("products", "reviews.reviewerName"): [("product_reviews", "reviewer_name")],
    ("products", "reviews.reviewerEmail"): [("product_reviews", "reviewer_email")],
    ("comments", "user.username"): [("comments", "username")],
    ("comments", "user.fullName"): [("comments", "full_name")],
    ("purchases", "ip_address"): [("purchase_events", "ip_address")],
    ("user_profiles", "email"): [("dim_user_profiles", "email")],
    ("user_profiles", "phone_number"): [("dim_user_profiles", "phone_number")],
}


@pytest.mark.parametrize("source, path", list(FED_COLUMNS))
def test_a_source_field_and_the_columns_it_feeds_declare_one_attribute(source, path):
    schemas = {**LAKE_TABLES, **UNPARTITIONED_TABLES}
    attribute = SOURCE_FIELDS[source][path]
    for table, column in FED_COLUMNS[(source, path)]:
        field = schemas[table].field(column)
        assert field.metadata[b"personal"].decode() == attribute.name, (table, column)
        assert column_policy(field) is attribute.policy


def test_every_personal_column_is_fed_by_a_declared_source_field():
    fed = {column for columns in FED_COLUMNS.values() for column in columns}
    declared = {(table, field.name) for table, field in _contract_columns() if column_policy(field) is not Policy.KEEP}
    assert declared == fed


def test_a_personal_columns_description_says_what_was_done():
    descriptions = column_descriptions(CONTRACTS["orders"])
    assert descriptions["customer_email"].endswith("Personal data: hashed (HMAC-SHA256, hex; case and surrounding spaces ignored).")
    assert descriptions["customer_name"].endswith("Personal data: masked (initials).")
    assert "Personal data" not in descriptions["customer_country"]


def _landed(customer: str, products: str = '[{"product_id": 1, "price": 0.1000000000000000055}]') -> str:
    return '{"order_id": "o1", "order_date": "2024-01-15", "customer": ' + customer + ', "products": ' + products + "}"


@pytest.mark.parametrize("parsed", [True, False])
@pytest.mark.parametrize(
    "customer, expected",
    [
        (('{"customer_id": 7, "name": "Ann Lee", "email": "Ann@X.com", "phone": "555 123 4567",'
          ' "address": {"address": "1 Main St", "city": "Lyon"}}'),
         {"customer_id": 7, "name": "A. L.", "email": protect("ann@x.com", Policy.HASH, KEY), "phone": "***4567",
          "address": {"address": protect("1 Main St", Policy.HASH, KEY), "city": "Lyon"}}),
        ('{"name": "\\u00c9lodie Fontaine", "email": null, "address": "1 Main St"}',  # escapes, a null, a text address
         {"name": "É. F.", "email": None, "address": protect("1 Main St", Policy.HASH, KEY)}),
        ('{ "email" : {"work": "a@b.c"} , "name": ["Ann"] }', {"email": None, "name": None}),
        ('[{"name": "Ann Lee", "email": "a@x.com"}, 7]', [{"name": "A. L.", "email": protect("a@x.com", Policy.HASH, KEY)},
                                                          protect(7, Policy.HASH, KEY)]),
        ('{"em\\u0061il": "a@x.com"}', {"email": protect("a@x.com", Policy.HASH, KEY)}),  # an escaped key
        ('{"city": "Lyon"}', {"city": "Lyon"}),
        ('"Ann Lee"', protect("Ann Lee", Policy.HASH, KEY)),  # a wrong type stays wrong: the same verdict
        ("null", None),
    ],
)
def test_a_landed_records_personal_values_are_replaced_and_every_other_byte_kept(customer, expected, parsed):
    text = _landed(customer)
    protected = protected_text(text, KEY, json.loads(text) if parsed else None)
    assert json.loads(protected)["customer"] == expected
    before, after = text.split('"customer": ')[0], protected.split('"customer": ')[0]
    assert before == after and protected.endswith(text[text.index(', "products": '):])  # numbers keep their digits


def test_a_repeated_key_is_protected_each_time_in_a_quarantined_record():
    text = _landed('{"email": "a@x.com", "email": "b@x.com", "name": "Ann Lee"}')
    protected = protected_text(text, KEY)
    assert "a@x.com" not in protected and "b@x.com" not in protected and "Ann Lee" not in protected


@pytest.mark.parametrize("text", ['{"order_id": "o1", "customer": {"email": "a@x.com"', "not json a@x.com", "[1, 2]", ""])
def test_a_text_that_is_not_a_complete_object_is_kept_as_it_is(text):
    assert protected_text(text, KEY) == text


@pytest.mark.parametrize("attribute", ATTRIBUTES, ids=lambda attribute: attribute.name)
def test_the_readme_lists_each_attributes_policy(attribute: Personal):
    from ecomm_assets_tests.conftest import PROJECT

    readme = (PROJECT / "README.md").read_text()
    assert re.search(rf"^\| {re.escape(attribute.name)} \| .* \| `{attribute.policy.value}` \|", readme, re.MULTILINE), attribute
