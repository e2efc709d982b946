"""What of a source's personal data may land in the lake, declared per field of each collection.

Secrets (credentials, government ids, payment and wallet details) and device identifiers have no
use in an order lake: they are dropped at extraction, before anything is written, so no raw or
processed file, locally or on S3, ever holds them. Fields not named here are kept as the source
gives them.
"""

from __future__ import annotations

from enum import StrEnum


class Policy(StrEnum):
    DROP = "drop"  # never written anywhere


# Top-level fields of a DummyJSON-shaped record, per collection, and what happens to them.
FIELD_POLICIES: dict[str, dict[str, Policy]] = {
    "users": {
        "password": Policy.DROP,
        "ssn": Policy.DROP,
        "ein": Policy.DROP,
        "bank": Policy.DROP,  # card number, expiry, IBAN
        "crypto": Policy.DROP,  # wallet
        "ip": Policy.DROP,
        "macAddress": Policy.DROP,
        "userAgent": Policy.DROP,
    },
}


def extracted(collection: str, records: list[dict]) -> list[dict]:
    """The records as the lake may hold them: every field whose policy is DROP removed."""
    dropped = {name for name, policy in FIELD_POLICIES.get(collection, {}).items() if policy is Policy.DROP}
    if not dropped:
        return records
    return [{key: value for key, value in record.items() if key not in dropped} for record in records]
