"""The person reference: HMAC-SHA256 of the number under the services' shared key, 26 base32 characters.

References are stored by every service and carried in events, so the text for a given key and
number must never change: a known answer pins it, and the fast encoding is held against the
plain `base64.b32encode` form on many numbers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random

import pytest
from mynumber_contracts import MyNumber, check_digit

from services.kit.people import PersonReferences

KEY = b"reference-key-for-tests-only-32b"


def plain_reference(key: bytes, digits: str) -> str:
    digest = hmac.new(key, b"person-ref/v1:" + digits.encode(), hashlib.sha256).digest()
    return "pr_" + base64.b32encode(digest).decode().lower()[:26]


def test_a_known_number_under_a_known_key_gives_the_same_reference_as_ever():
    assert PersonReferences(KEY).for_number(MyNumber("123456789018")) == "pr_ok6zcjjbcetb33bpx3h6ac3nyy"
    assert PersonReferences(KEY).for_number(MyNumber("000000000019")) == "pr_yoaq4t47xa64vgoncaor4hwsr4"


def test_the_reference_equals_the_plain_base32_form_for_many_numbers_and_keys():
    rng = random.Random(5)
    for key in (KEY, b"another-key-of-sixteen", bytes(range(64))):
        references = PersonReferences(key)
        for _ in range(3_000):
            base = f"{rng.randrange(10**11):011d}"
            digits = base + str(check_digit(base))
            assert references.for_number(MyNumber(digits)) == plain_reference(key, digits)


def test_different_keys_give_different_references_for_one_number():
    number = MyNumber("123456789018")
    assert PersonReferences(KEY).for_number(number) != PersonReferences(b"another-key-of-sixteen").for_number(number)


def test_a_short_key_is_refused():
    with pytest.raises(ValueError, match="at least 16 bytes"):
        PersonReferences(b"too-short")
