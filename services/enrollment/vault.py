"""The number at rest: AES-GCM encryption under rotating keys, and a keyed blind index.

A resident's number is stored as AES-GCM ciphertext with the id of the key beside it, and
is found by an HMAC-SHA256 blind index under a separate key, never by the plaintext. The
ciphertext is bound to its record (associated data), so it cannot be moved to another one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from mynumber_contracts import MyNumber

_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,40}$")
_NONCE_BYTES = 12


class KeyConfigurationError(ValueError):
    """The configured keys cannot be used (never echoes key material)."""


@dataclass(frozen=True)
class SealedNumber:
    key_id: str
    ciphertext: bytes  # nonce followed by the AES-GCM ciphertext and tag


def parse_keys(text: str) -> tuple[str, dict[str, bytes]]:
    """'keyid:base64key,...' (commas or newlines) -> (current key id, {key id: key}); the first is current."""
    keys: dict[str, bytes] = {}
    current = ""
    for entry in filter(None, (part.strip() for part in re.split(r"[,\n]", text))):
        key_id, sep, encoded = entry.partition(":")
        key_id = key_id.strip()
        if not sep or not _KEY_ID.match(key_id):
            raise KeyConfigurationError("each number key must read 'keyid:base64key' with a simple key id")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except binascii.Error:
            raise KeyConfigurationError(f"number key {key_id!r} is not valid base64") from None
        if len(key) not in (16, 24, 32):
            raise KeyConfigurationError(f"number key {key_id!r} must be 16, 24 or 32 bytes")
        if key_id in keys:
            raise KeyConfigurationError(f"number key {key_id!r} is listed twice")
        keys[key_id] = key
        current = current or key_id
    if not keys:
        raise KeyConfigurationError("no number key is configured")
    return current, keys


class NumberVault:
    def __init__(self, keys: str, index_key: str) -> None:
        self.current_key_id, self._keys = parse_keys(keys)
        self._index_key = index_key.encode()
        if len(self._index_key) < 32:
            raise KeyConfigurationError("the blind-index key must be at least 32 bytes")

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def digest(self, purpose: str, data: bytes) -> str:
        """A keyed digest, separated by purpose (a plain hash of a number could be brute-forced)."""
        return hmac.new(self._index_key, purpose.encode() + b"/v1:" + data, hashlib.sha256).hexdigest()

    def blind_index(self, number: MyNumber) -> str:
        return self.digest("number-index", number.reveal().encode())

    def fingerprint(self, data: bytes) -> str:
        """Of request content, which may hold a number."""
        return self.digest("request-fingerprint", data)

    def seal(self, number: MyNumber, *, bound_to: str) -> SealedNumber:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self._keys[self.current_key_id]).encrypt(nonce, number.reveal().encode(), _aad(bound_to))
        return SealedNumber(self.current_key_id, nonce + sealed)

    def open(self, sealed: SealedNumber, *, bound_to: str) -> MyNumber:
        key = self._keys.get(sealed.key_id)
        if key is None:
            raise KeyConfigurationError(f"number key {sealed.key_id!r} is no longer configured")
        nonce, body = sealed.ciphertext[:_NONCE_BYTES], sealed.ciphertext[_NONCE_BYTES:]
        return MyNumber(AESGCM(key).decrypt(nonce, body, _aad(bound_to)).decode())

    def reseal(self, sealed: SealedNumber, *, bound_to: str) -> SealedNumber:
        """The same number under the current key (key rotation)."""
        return self.seal(self.open(sealed, bound_to=bound_to), bound_to=bound_to)


def _aad(bound_to: str) -> bytes:
    return b"resident-number/v1:" + bound_to.encode()
