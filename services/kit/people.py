"""The pseudonymous person reference that stands in for the Individual Number between services."""

from __future__ import annotations

import hmac

from mynumber_contracts import MyNumber

# A reference is the first 130 bits of the HMAC in lower-case RFC 4648 base32 (26 characters).
# They are encoded ten bits at a time through a table of character pairs. The text is the same
# as `base64.b32encode(digest).decode().lower()[:26]`, but a reference takes 5.0 instead of 8.4 µs,
# which counts when a payout chunk derives 5,000 of them (tests/kit/test_people.py holds the two
# side by side).
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"
_BASE32_PAIRS = [first + second for first in _BASE32 for second in _BASE32]
_REFERENCE_SHIFTS = range(120, -1, -10)  # 13 pairs, from the most significant bits down


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
        digest = hmac.digest(self._key, b"person-ref/v1:" + number.reveal().encode(), "sha256")
        bits = int.from_bytes(digest[:17], "big") >> 6  # the first 130 of its 136 bits
        return "pr_" + "".join([_BASE32_PAIRS[(bits >> shift) & 1023] for shift in _REFERENCE_SHIFTS])
