"""Ed25519 signatures for partner events, with the `cryptography` package.

The signature covers a canonical form of the CloudEvents attributes `ce_id`, `ce_type`,
`ce_source`, `ce_time` and the exact data bytes:

    b"mynumber-event-signature/v1\\n" + id + "\\n" + type + "\\n" + source + "\\n" + time + "\\n" + sha256(data).hex()

It travels in the `ce_signature` header (base64) with the key id in `ce_signaturekeyid`.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .envelope import SIGNATURE_HEADER, SIGNATURE_KEY_ID_HEADER, KafkaRecord

_DOMAIN = b"mynumber-event-signature/v1"


def canonical_form(*, event_id: str, event_type: str, source: str, time: str, data: bytes) -> bytes:
    fields = [event_id, event_type, source, time, hashlib.sha256(data).hexdigest()]
    if any("\n" in value for value in fields):
        raise ValueError("signed attributes must not contain line breaks")
    return _DOMAIN + b"\n" + "\n".join(fields).encode()


def _attribute(record: KafkaRecord, name: str) -> str:
    value = record.header(f"ce_{name}")
    if value is None:
        raise ValueError(f"header ce_{name} is required to sign or verify")
    return value.decode()


def _canonical_record(record: KafkaRecord) -> bytes:
    return canonical_form(
        event_id=_attribute(record, "id"),
        event_type=_attribute(record, "type"),
        source=_attribute(record, "source"),
        time=_attribute(record, "time"),
        data=record.value,
    )


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_to_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def private_key_from_pem(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the signing key must be an Ed25519 private key")
    return key


def public_key_to_text(key: Ed25519PublicKey) -> str:
    """The raw 32-byte public key, base64: what the partner registry stores."""
    return base64.b64encode(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


def public_key_from_text(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))


def sign_record(record: KafkaRecord, private_key: Ed25519PrivateKey, key_id: str) -> KafkaRecord:
    """Return a copy of `record` carrying the signature headers."""
    signature = private_key.sign(_canonical_record(record))
    return record.with_headers(
        {SIGNATURE_HEADER: base64.b64encode(signature).decode(), SIGNATURE_KEY_ID_HEADER: key_id}
    )


def verify_signature(
    *, public_key: Ed25519PublicKey, signature_b64: str, event_id: str, event_type: str, source: str, time: str, data: bytes
) -> bool:
    """True when the signature is valid for these attributes and data bytes."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        public_key.verify(
            signature, canonical_form(event_id=event_id, event_type=event_type, source=source, time=time, data=data)
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_record(record: KafkaRecord, public_key: Ed25519PublicKey) -> bool:
    signature = record.header(SIGNATURE_HEADER)
    if signature is None:
        return False
    try:
        return verify_signature(
            public_key=public_key,
            signature_b64=signature.decode(),
            event_id=_attribute(record, "id"),
            event_type=_attribute(record, "type"),
            source=_attribute(record, "source"),
            time=_attribute(record, "time"),
            data=record.value,
        )
    except ValueError:
        return False
