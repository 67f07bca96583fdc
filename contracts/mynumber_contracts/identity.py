"""Identity types: the Individual Number, the person reference and the five matching attributes.

The 12-digit number is sensitive personal data. `MyNumber` never shows it by accident:
`str()` and `repr()` mask all but the last 4 digits, and the full digits come out only
through `MyNumber.reveal()` or when a partner request that carries the number is serialised.
"""

from __future__ import annotations

import operator
import re
from datetime import date
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

# Weights for the 11-digit base, read left to right (facts, section 1).
_CHECK_WEIGHTS = (6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
_TWELVE_DIGITS = re.compile(r"^[0-9]{12}$")


# Each byte of the base is the digit plus 48 (ASCII "0"): subtract 48 times the sum of the weights.
_ASCII_ZERO_OFFSET = 48 * sum(_CHECK_WEIGHTS)


def check_digit(base: str) -> int:
    """Return the check digit for an 11-digit base, as defined for the Individual Number."""
    if len(base) != 11 or not base.isascii() or not base.isdigit():
        raise ValueError("the base of an Individual Number is exactly 11 ASCII digits")
    # Weights times the ASCII bytes, multiplied and summed in C: every partner request's number is
    # checked, and a payout chunk holds 5,000 of them (a generator over zip cost five times as much).
    weighted = sum(map(operator.mul, _CHECK_WEIGHTS, base.encode()))
    remainder = (weighted - _ASCII_ZERO_OFFSET) % 11
    return 0 if remainder <= 1 else 11 - remainder


def is_valid_my_number(candidate: str) -> bool:
    """True when `candidate` is 12 ASCII digits whose last digit is the correct check digit."""
    if not _TWELVE_DIGITS.match(candidate):
        return False
    return check_digit(candidate[:11]) == int(candidate[11])


def mask(digits: str) -> str:
    """Mask an Individual Number to its last 4 digits, as notices to members do."""
    return "********" + digits[-4:]


class MyNumber:
    """A validated 12-digit Individual Number (個人番号).

    >>> MyNumber("123456789018")
    MyNumber('********9018')
    >>> MyNumber("123456789019")
    Traceback (most recent call last):
    ...
    ValueError: not a valid Individual Number: the check digit (12th digit) does not match
    """

    __slots__ = ("_digits",)

    def __init__(self, digits: str) -> None:
        if isinstance(digits, MyNumber):
            digits = digits.reveal()
        if not isinstance(digits, str):
            raise TypeError("an Individual Number must be given as a string of 12 digits")
        if not _TWELVE_DIGITS.match(digits):
            # Never echo the input: it may be a real number with a typo.
            raise ValueError("not a valid Individual Number: it must be exactly 12 ASCII digits")
        expected = check_digit(digits[:11])
        if expected != int(digits[11]):
            raise ValueError("not a valid Individual Number: the check digit (12th digit) does not match")
        object.__setattr__(self, "_digits", digits)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("MyNumber is immutable")

    def reveal(self) -> str:
        """The full 12 digits. Call this only where the number itself is required."""
        return self._digits

    @property
    def last4(self) -> str:
        return self._digits[-4:]

    def masked(self) -> str:
        return mask(self._digits)

    def __str__(self) -> str:
        return self.masked()

    def __repr__(self) -> str:
        return f"MyNumber({self.masked()!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MyNumber) and other._digits == self._digits

    def __hash__(self) -> int:
        return hash(("MyNumber", self._digits))

    def __reduce__(self) -> Any:
        raise TypeError("MyNumber must not be pickled; serialise it explicitly where a contract carries it")

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        from_str = core_schema.no_info_after_validator_function(cls, core_schema.str_schema())
        return core_schema.json_or_python_schema(
            json_schema=from_str,
            python_schema=core_schema.union_schema([core_schema.is_instance_schema(cls), from_str]),
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda value: value.reveal(), when_used="always"
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "pattern": "^[0-9]{12}$",
            "description": "Individual Number (12 digits, the last a check digit). Sensitive personal data.",
            "examples": ["123456789018"],
        }


PersonRef = Annotated[
    str,
    StringConstraints(pattern=r"^pr_[a-z2-7]{26}$"),
    Field(
        description="Pseudonymous person reference: stands in for the Individual Number between services.",
        examples=["pr_abcdefghijklmnopqrstuvwxyz"],
    ),
]

NameKanji = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100, strip_whitespace=True),
    Field(description="Full name as registered, in kanji (or the registered script).", examples=["山田 太郎"]),
]

NameKana = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100, strip_whitespace=True, pattern=r"^[\u30A0-\u30FF\uFF65-\uFF9F\u3000 ・ー]+$"),
    Field(description="Full name in katakana; full or half width, spaces allowed.", examples=["ヤマダ タロウ"]),
]

Address = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, strip_whitespace=True),
    Field(description="Registered address.", examples=["東京都千代田区永田町1-7-1"]),
]


class Sex(StrEnum):
    male = "male"
    female = "female"


class ResidentAttributes(BaseModel):
    """The five attributes every identity match uses (facts, section 4)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name_kanji: NameKanji
    name_kana: NameKana
    date_of_birth: date = Field(description="Date of birth.")
    sex: Sex = Field(description="Sex as recorded in the resident registry.")
    address: Address
