"""The pseudonymous person reference that stands in for the Individual Number between services."""

from __future__ import annotations

import base64
import hashlib
import hmac

from mynumber_contracts import MyNumber


class PersonReferences:
    """Derives `pr_…` references with HMAC-SHA256 under a key shared by the services.

    The same person always gets the same reference; without the key it cannot be reversed,
    not even by trying every possible number.
    """

    def __init__(self, key: str | bytes) -> None:
        self._key = key.encode() if isinstance(key, str) else key
        if len(self._key) < 16:
            raise ValueError("the person reference key must be at least 16 bytes")

    def for_number(self, number: MyNumber) -> str:
        digest = hmac.new(self._key, b"person-ref/v1:" + number.reveal().encode(), hashlib.sha256).digest()
        return "pr_" + base64.b32encode(digest).decode().lower()[:26]
