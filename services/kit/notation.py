"""Japanese notation, normalised: names and addresses compared as people mean them.

Pure functions, shared by every service that compares a record with the resident registry
(insurance links records to people; benefits checks an account holder's name and address).

Normalisation removes differences of NOTATION only: character width, spacing and middle dots,
small and large kana, hiragana and katakana, a hyphen for the long-vowel mark in kana, and
address number notation (二十三丁目4番5号 = 23-4-5; 霞ヶ関 = 霞が関). It never folds one name into
another: voiced marks, long vowels, kanji variants and omitted address parts still differ.
"""

from __future__ import annotations

import re
import unicodedata

_WHITESPACE_AND_DOTS = re.compile(r"[\s\u3000・･]+")
# Bank records spell small kana large (ｷﾖｳｺ for キョウコ), so kana are compared as large kana.
_SMALL_KANA = str.maketrans("ァィゥェォッャュョヮヵヶ", "アイウエオツヤユヨワカケ")
_HIRAGANA_TO_KATAKANA = {code: code + 0x60 for code in range(0x3041, 0x3097)}
_HYPHENS_BETWEEN_DIGITS = re.compile(r"(?<=[0-9])[\-‐‑‒–—―−ーｰ－](?=[0-9])")
_KANJI_DIGITS = {"〇": 0, "一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_KANJI_NUMERAL_BEFORE_BLOCK = re.compile(r"([〇一二三四五六七八九十百]+)(?=丁目|番地)")
_CJK = r"\u3400-\u9fff\uf900-\ufaff"
_KE_BETWEEN_KANJI = re.compile(rf"(?<=[{_CJK}])[ヶケヵがガ](?=[{_CJK}])")


def _kanji_number(numeral: str) -> int:
    """二十三 -> 23, 十 -> 10, 百五 -> 105; digit-by-digit for 一〇 -> 10."""
    if "十" not in numeral and "百" not in numeral:
        return int("".join(str(_KANJI_DIGITS[c]) for c in numeral))
    total, current = 0, 0
    for c in numeral:
        if c in _KANJI_DIGITS:
            current = _KANJI_DIGITS[c]
        else:
            total += (current or 1) * (100 if c == "百" else 10)
            current = 0
    return total + current


def normalise_name_kanji(text: str) -> str:
    return _WHITESPACE_AND_DOTS.sub("", unicodedata.normalize("NFKC", text)).casefold()


def normalise_name_kana(text: str) -> str:
    """NFKC (half width to full width), katakana, large kana, no spaces, ー for a hyphen."""
    katakana = unicodedata.normalize("NFKC", text).translate(_HIRAGANA_TO_KATAKANA)
    return _WHITESPACE_AND_DOTS.sub("", katakana).translate(_SMALL_KANA).replace("-", "ー")


def normalise_address(text: str) -> str:
    address = _WHITESPACE_AND_DOTS.sub("", unicodedata.normalize("NFKC", text))
    address = _KANJI_NUMERAL_BEFORE_BLOCK.sub(lambda m: str(_kanji_number(m.group(1))), address)
    address = _HYPHENS_BETWEEN_DIGITS.sub("-", address)
    address = re.sub(r"([0-9]+)丁目", r"\1-", address)
    address = re.sub(r"([0-9]+)番地の?", r"\1-", address)
    address = re.sub(r"([0-9]+)番(?=[0-9])", r"\1-", address)
    address = re.sub(r"([0-9]+)番$", r"\1", address)
    address = re.sub(r"([0-9]+)号", r"\1", address)
    address = re.sub(r"(?<=[0-9])の(?=[0-9])", "-", address)
    address = re.sub(r"-+", "-", address)
    address = re.sub(r"-(?![0-9])", "", address)  # a trailing block separator says nothing
    return _KE_BETWEEN_KANJI.sub("ケ", address).casefold()
