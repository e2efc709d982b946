"""What of a source's personal data may land in the lake: each source field that carries a personal
attribute, and the policy that applies to it at extraction, before anything is written.

Each attribute's policy is declared once, in core/schemas.py (`Personal`: CUSTOMER_EMAIL is hashed,
CUSTOMER_NAME reduced to initials, SECRET dropped, ...). The contract columns that hold it name it
(`described(..., personal=CUSTOMER_EMAIL)`), so the policy shows in the UI, the Glue and DuckDB
column comments; here, SOURCE_FIELDS names the fields of each source that carry it, so extraction
applies the same policy. Fields not named here are kept as the source gives them.

Where it applies:
- DummyJSON-shaped collections (`extracted`): every snapshot, whatever the source, before it is
  written; the orders generated from a day's snapshots (synthetic orders, DummyJSON carts) carry
  its values, already extracted, so they are never applied twice.
- Landed order files (core/landing.py's `protected_text`, for each record it writes to a raw day
  file or to quarantine): the personal values are replaced in the record's text, every other byte
  kept as the producer wrote it.

The hash is HMAC-SHA256 keyed with ECOMM_PII_HASH_KEY (settings.py): an unkeyed hash of an email or
a name is reversed by hashing a list of candidates. Unset, a fixed public key applies (DEFAULT_KEY),
which is no better than no key: pseudonyms for development, not protection. Changing the key
changes every hash: earlier days keep the old ones until they are recomputed from their sources.

To cover a new source or table:
1. a new kind of personal data: declare a `Personal` attribute in core/schemas.py (policy and why)
   and add it to the README's "Personal data" table;
2. each contract column holding personal data: `described(..., personal=<attribute>)`;
3. each source: `SOURCE_FIELDS["<collection or record kind>"] = {"path.to.field": <attribute>}`
   (dotted paths for nested objects, a list's items included), and pass its records through `extracted(kind, records, key)`
   (or its JSON texts through core/landing.py's `protected_text`) before they are written. The privacy tests then
   check the new source's values never land.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import unicodedata

import pyarrow as pa
import pyarrow.compute as pc

from ecomm_assets.core.schemas import (
    CUSTOMER_EMAIL,
    CUSTOMER_NAME,
    CUSTOMER_PHONE,
    CUSTOMER_STREET,
    HEALTH,
    NETWORK_ADDRESS,
    QUASI_IDENTIFIER,
    SECRET,
    USER_NAME,
    Personal,
    Policy,
)

# Personal fields of each source's records, by dotted path (through a list: each of its items).
# "users" and "products" are DummyJSON's collections (the synthetic generator makes the same
# shapes; carts hold no personal data but a user id); "orders" is the canonical nested order, as
# producers land it.
SOURCE_FIELDS: dict[str, dict[str, Personal]] = {
    "users": {
        "firstName": CUSTOMER_NAME,
        "lastName": CUSTOMER_NAME,
        "maidenName": QUASI_IDENTIFIER,
        "email": CUSTOMER_EMAIL,
        "phone": CUSTOMER_PHONE,
        "username": USER_NAME,
        "birthDate": QUASI_IDENTIFIER,
        "image": QUASI_IDENTIFIER,  # its URL holds the user name
        "address.address": CUSTOMER_STREET,
        "address.coordinates": QUASI_IDENTIFIER,
        "company": QUASI_IDENTIFIER,  # employer, its address, the job title
        "university": QUASI_IDENTIFIER,
        "bloodGroup": HEALTH,
        "height": HEALTH,
        "weight": HEALTH,
        "password": SECRET,
        "ssn": SECRET,
        "ein": SECRET,
        "bank": SECRET,  # card number, expiry, IBAN
        "crypto": SECRET,  # wallet
        "ip": SECRET,  # with the MAC address and user agent: one device, no use here
        "macAddress": SECRET,
        "userAgent": SECRET,
    },
    "products": {  # DummyJSON's products carry their reviews, by name and email
        "reviews.reviewerName": CUSTOMER_NAME,
        "reviews.reviewerEmail": CUSTOMER_EMAIL,
    },
    "comments": {  # DummyJSON's comments name their author
        "user.username": USER_NAME,
        "user.fullName": CUSTOMER_NAME,
    },
    # The CSV feeds' columns (core/purchases.py), as the purchase log and the profile file name them.
    "purchases": {"ip_address": NETWORK_ADDRESS},
    "user_profiles": {"email": CUSTOMER_EMAIL, "phone_number": CUSTOMER_PHONE},
    "orders": {
        "customer.name": CUSTOMER_NAME,
        "customer.email": CUSTOMER_EMAIL,
        "customer.phone": CUSTOMER_PHONE,
        "customer.address.address": CUSTOMER_STREET,
    },
}

# The key used when ECOMM_PII_HASH_KEY is unset: public, so its hashes protect nothing.
DEFAULT_KEY = b"ecomm-assets public development key"
DEFAULT_KEY_WARNING = (
    "ECOMM_PII_HASH_KEY is not set: personal data is hashed with the project's public default key, "
    "which anyone can use to hash candidate emails and names and match them. Set a secret key before "
    "the lake holds real customers' data (README: Personal data)."
)


def hash_key(setting: str | None) -> bytes:
    """The HMAC key: the setting's, or DEFAULT_KEY when it is unset."""
    return setting.encode() if setting else DEFAULT_KEY


def _hashed(text: str, key: bytes) -> str:
    normalized = unicodedata.normalize("NFC", text.strip()).casefold()
    return hmac.digest(key, normalized.encode("utf-8", "surrogatepass"), hashlib.sha256).hex()


def _masked_email(text: str) -> str | None:
    local, at, domain = text.strip().rpartition("@")
    if not at or not domain:
        return None
    return f"{local[:1]}***@{domain}"


def _masked_phone(text: str) -> str | None:
    digits = [c for c in text if c.isdigit()]
    return "***" + "".join(digits[-4:]) if len(digits) >= 7 else None


def _network(text: str) -> str | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def _initials(text: str) -> str:
    return " ".join(f"{word[0].upper()}." for word in text.split())


_TRANSFORMS = {
    Policy.MASK_EMAIL: _masked_email,
    Policy.MASK_PHONE: _masked_phone,
    Policy.MASK_NETWORK: _network,
    Policy.INITIALS: _initials,
}


def protect(value: object, policy: Policy, key: bytes) -> object:
    """A value as `policy` lets it land. Null stays null and an empty text stays empty; a number is
    taken as its text; anything a mask cannot read (an email without '@', a phone of fewer than 7
    digits, no IP address) and any object or list becomes null: nothing of it lands."""
    if policy is Policy.KEEP:
        return value
    if value is None or policy is Policy.DROP:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return _protected_text(value if isinstance(value, str) else str(value), policy, key)


# A shop's customers come back: a day's orders repeat their emails and names, so each text is
# transformed once (a bounded cache: a few MiB).
@functools.lru_cache(maxsize=1 << 16)
def _protected_text(text: str, policy: Policy, key: bytes) -> str | None:
    if not text.strip():
        return text
    if policy is Policy.HASH:
        return _hashed(text, key)
    return _TRANSFORMS[policy](text)


PolicyTree = dict[str, "Personal | PolicyTree"]


def policy_tree(kind: str) -> PolicyTree:
    """SOURCE_FIELDS[kind] as nested objects: {"customer": {"email": CUSTOMER_EMAIL, ...}}."""
    tree: PolicyTree = {}
    for path, attribute in SOURCE_FIELDS.get(kind, {}).items():
        *parents, leaf = path.split(".")
        node = tree
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = attribute
    return tree


def _applied(record: dict, tree: PolicyTree, key: bytes) -> dict:
    result = dict(record)
    for name, rule in tree.items():
        if name not in result:
            continue
        if isinstance(rule, Personal):
            if rule.policy is Policy.DROP:
                del result[name]
            else:
                result[name] = protect(result[name], rule.policy, key)
        else:
            result[name] = applied_to(result[name], rule, key)
    return result


def applied_to(value: object, tree: PolicyTree, key: bytes) -> object:
    """What lands of a value where `tree` expects an object with personal fields: the object with
    them protected; a list, each of its items so (a product's reviews). Anything else could be
    personal whole (a street address given as one string): a text or a number is hashed. A value
    keeps its JSON type, so the checks that follow give the same verdict."""
    if isinstance(value, dict):
        return _applied(value, tree, key)
    if isinstance(value, list):
        return [applied_to(item, tree, key) for item in value]
    if value is None or isinstance(value, bool):
        return value
    return protect(value, Policy.HASH, key)


def extracted(kind: str, records: list[dict], key: bytes) -> list[dict]:
    """The records as the lake may hold them: each personal field transformed by its attribute's
    policy (a dropped one removed). The source's records are not modified."""
    tree = policy_tree(kind)
    if not tree:
        return records
    return [_applied(record, tree, key) if isinstance(record, dict) else record for record in records]


def protected_columns(kind: str, table: pa.Table, key: bytes) -> pa.Table:
    """A CSV feed's text columns with each personal column of `kind` (SOURCE_FIELDS) as its policy
    lets it land; each distinct value is protected once (a log repeats its users' addresses)."""
    for name, attribute in SOURCE_FIELDS.get(kind, {}).items():
        column = table[name]
        distinct = pc.unique(column)
        protected = pa.array([protect(value, attribute.policy, key) for value in distinct.to_pylist()], pa.string())
        table = table.set_column(table.schema.get_field_index(name), name, pc.take(protected, pc.index_in(column, distinct)))
    return table
