"""Secrets never land: the policy drops them at extraction, whatever the source."""

import pytest

from ecomm_assets.core.privacy import FIELD_POLICIES, Policy, extracted

USER = {
    "id": 1, "firstName": "Emily", "email": "emily@x.com", "password": "emilyspass", "ssn": "900-590-289",
    "ein": "977-175", "bank": {"cardNumber": "3693233511855044", "iban": "GB74MH2UZLR9TRPHYNU8F8"},
    "crypto": {"wallet": "0xb9fc"}, "ip": "42.48.100.32", "macAddress": "47:fa:41:18:ec:eb",
    "userAgent": "Mozilla/5.0", "address": {"city": "Phoenix"},
}


def test_every_dropped_field_of_a_user_is_gone_and_the_rest_is_untouched():
    [user] = extracted("users", [USER])
    dropped = {name for name, policy in FIELD_POLICIES["users"].items() if policy is Policy.DROP}
    assert dropped == {"password", "ssn", "ein", "bank", "crypto", "ip", "macAddress", "userAgent"}
    assert user == {key: value for key, value in USER.items() if key not in dropped}
    assert USER["password"] == "emilyspass"  # the source's record is not modified


@pytest.mark.parametrize("collection", ["products", "carts", "posts"])
def test_collections_without_a_policy_pass_as_they_are(collection):
    records = [{"id": 1, "password": "not a user's"}]
    assert extracted(collection, records) == records
