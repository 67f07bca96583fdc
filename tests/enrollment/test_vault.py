"""The vault that seals the number at rest: AES-GCM under rotating keys, bound to its record."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.exceptions import InvalidTag
from mynumber_contracts import MyNumber

from services.enrollment.vault import KeyConfigurationError, NumberVault, parse_keys

NUMBER = MyNumber("123456789018")
INDEX_KEY = "an-index-key-that-is-at-least-32-bytes-long"


def key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_sealing_opens_only_for_the_same_record_and_never_shows_the_digits():
    vault = NumberVault(f"k1:{key()}", INDEX_KEY)
    sealed = vault.seal(NUMBER, bound_to="pr_one")
    assert sealed.key_id == "k1" and b"123456789018" not in sealed.ciphertext
    assert vault.open(sealed, bound_to="pr_one") == NUMBER
    with pytest.raises(InvalidTag):
        vault.open(sealed, bound_to="pr_two")  # a ciphertext moved to another record does not open
    assert vault.seal(NUMBER, bound_to="pr_one").ciphertext != sealed.ciphertext  # a fresh nonce each time


def test_rotation_reseals_under_the_current_key_and_old_keys_still_open():
    k1, k2 = key(), key()
    old = NumberVault(f"k1:{k1}", INDEX_KEY).seal(NUMBER, bound_to="pr")
    vault = NumberVault(f"k2:{k2},k1:{k1}", INDEX_KEY)
    assert vault.open(old, bound_to="pr") == NUMBER
    resealed = vault.reseal(old, bound_to="pr")
    assert resealed.key_id == "k2"
    assert NumberVault(f"k2:{k2}", INDEX_KEY).open(resealed, bound_to="pr") == NUMBER
    with pytest.raises(KeyConfigurationError):
        NumberVault(f"k2:{k2}", INDEX_KEY).open(old, bound_to="pr")


def test_the_blind_index_is_keyed_and_stable():
    a, b = NumberVault(f"k1:{key()}", INDEX_KEY), NumberVault(f"k9:{key()}", INDEX_KEY)
    assert a.blind_index(NUMBER) == b.blind_index(NUMBER), "the index does not depend on the encryption key"
    assert NumberVault(f"k1:{key()}", INDEX_KEY + "x").blind_index(NUMBER) != a.blind_index(NUMBER)
    assert "123456789018" not in a.blind_index(NUMBER)


@pytest.mark.parametrize("text", ["", "nokey", "k1:not-base64!", f"k1:{base64.b64encode(b'short').decode()}",
                                  "k 1:" + base64.b64encode(os.urandom(32)).decode()])
def test_bad_key_lists_are_refused_without_echoing_key_material(text):
    with pytest.raises(KeyConfigurationError) as error:
        parse_keys(text)
    assert "not-base64" not in str(error.value)


def test_key_lists_can_come_from_a_secret_file(tmp_path, monkeypatch):
    from services.enrollment.settings import EnrollmentSettings

    keys = f"file-key:{key()}\n"
    path = tmp_path / "number-keys"
    path.write_text(keys)
    monkeypatch.setenv("MYNUMBER_ENROLLMENT_NUMBER_KEYS_FILE", str(path))
    settings = EnrollmentSettings()
    assert parse_keys(settings.number_keys())[0] == "file-key"
    assert not settings.uses_development_keys() or settings.number_index_key()
