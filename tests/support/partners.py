"""Test partner agencies: an Ed25519 key per agency, registered on first use in the test's
partner registry, so every event a test publishes is signed like a real partner's would be.

Test partners are permissive (they may publish every request type) unless a test registers
a restricted one with `register()`; the security tests do exactly that.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mynumber_contracts.partners import Partner, PartnerKey, PartnerType, partner_type_of
from mynumber_contracts.signing import generate_private_key, public_key_to_text
from pymongo import MongoClient

MONGODB_URL: str | None = None  # set by tests/conftest.py when the servers are known

_keys: dict[str, Ed25519PrivateKey] = {}
_registered: set[tuple[str, str]] = set()


def registry_database(namespace: str) -> str:
    return f"{namespace}_partners"


def key_id_for(source: str) -> str:
    return f"{source}#test-1"


def private_key_for(source: str) -> Ed25519PrivateKey:
    if source not in _keys:
        _keys[source] = generate_private_key()
    return _keys[source]


def register(namespace: str, partner: Partner) -> None:
    assert MONGODB_URL, "the servers are not known yet"
    client: MongoClient = MongoClient(MONGODB_URL, serverSelectionTimeoutMS=5000)
    try:
        document = partner.model_dump(mode="json", exclude={"partner_id"})
        client[registry_database(namespace)]["partners"].replace_one({"_id": partner.partner_id}, document, upsert=True)
    finally:
        client.close()
    _registered.add((namespace, partner.partner_id))


def ensure_registered(namespace: str, source: str) -> tuple[Ed25519PrivateKey, str]:
    """The signing key for `source`, registering a permissive test partner the first time."""
    key = private_key_for(source)
    if (namespace, source) not in _registered:
        partner_type = partner_type_of(source) or PartnerType.municipality
        register(
            namespace,
            Partner(
                partner_id=source,
                type=partner_type,
                name=f"test partner {source}",
                keys=[PartnerKey(key_id=key_id_for(source), public_key=public_key_to_text(key.public_key()))],
                allowed_event_types=["*"],
                delegating_municipality="131016" if partner_type is PartnerType.post_office else None,
            ),
        )
    return key, key_id_for(source)
