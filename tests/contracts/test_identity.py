"""Identity types: the check-digit rule exactly as in the domain facts, masking, serialisation."""

from __future__ import annotations

import pickle
import random
from datetime import date

import pytest
from mynumber_contracts import MyNumber, ResidentAttributes, Sex, check_digit, is_valid_my_number, mask
from mynumber_contracts.enrollment import RegisterResident
from pydantic import BaseModel, ValidationError


def test_the_worked_example_from_the_domain_facts():
    assert check_digit("12345678901") == 8
    assert MyNumber("123456789018").reveal() == "123456789018"


def test_a_wrong_check_digit_is_rejected_with_a_clear_message_that_does_not_echo_the_number():
    with pytest.raises(ValueError, match="check digit") as error:
        MyNumber("123456789019")
    assert "12345678901" not in str(error.value)


@pytest.mark.parametrize("bad", ["", "12345678901", "1234567890188", "12345678901a", "１２３４５６７８９０１８", " 123456789018"])
def test_anything_but_twelve_ascii_digits_is_rejected(bad):
    with pytest.raises(ValueError, match="12 ASCII digits"):
        MyNumber(bad)


def test_remainders_zero_and_one_give_check_digit_zero():
    found = {0: None, 1: None}
    for n in range(10_000_000_000, 10_000_100_000):
        base = str(n)
        remainder = sum(int(d) * w for d, w in zip(base, (6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2), strict=True)) % 11
        if remainder in found and found[remainder] is None:
            found[remainder] = base
        if all(found.values()):
            break
    for base in found.values():
        assert check_digit(base) == 0
        assert is_valid_my_number(base + "0")


def test_the_check_digit_is_the_weighted_sum_rule_of_the_facts_for_any_base():
    """check_digit() writes the weighted sum out for speed: it must agree with the rule as the
    facts state it (weights 6,5,4,3,2,7,6,5,4,3,2 from the left; 11 minus the remainder mod 11,
    0 for remainders 0 and 1) on every base, including the extremes."""
    weights = (6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2)

    def as_the_facts_say(base: str) -> int:
        remainder = sum(int(d) * w for d, w in zip(base, weights, strict=True)) % 11
        return 0 if remainder <= 1 else 11 - remainder

    rng = random.Random(11)
    bases = ["00000000000", "99999999999", *(f"{rng.randrange(10**11):011d}" for _ in range(20_000))]
    bases += ["".join(str((i + shift) % 10) for i in range(11)) for shift in range(10)]
    for base in bases:
        assert check_digit(base) == as_the_facts_say(base), base


@pytest.mark.parametrize("bad", ["", "1234567890", "123456789012", "1234567890a", "１２３４５６７８９０１", "+1234567890"])
def test_check_digit_refuses_a_base_that_is_not_eleven_ascii_digits(bad):
    with pytest.raises(ValueError, match="11 ASCII digits"):
        check_digit(bad)


def test_about_one_in_sixty_single_digit_typos_still_passes_as_the_facts_warn():
    rng = random.Random(7)
    passed = total = 0
    for _ in range(3000):
        base = f"{rng.randrange(10**11):011d}"
        number = base + str(check_digit(base))
        position = rng.randrange(11)
        typo = number[:position] + str((int(number[position]) + rng.randrange(1, 10)) % 10) + number[position + 1:]
        total += 1
        passed += is_valid_my_number(typo)
    assert 0 < passed / total < 0.05


def test_str_and_repr_show_only_the_last_four_digits():
    number = MyNumber("123456789018")
    assert str(number) == "********9018" == mask("123456789018")
    assert "12345678" not in repr(number)
    assert f"{number}" == "********9018"
    assert number.last4 == "9018"


def test_my_number_is_immutable_and_refuses_pickling():
    number = MyNumber("123456789018")
    with pytest.raises(AttributeError):
        number._digits = "000000000000"  # type: ignore[misc]
    with pytest.raises(TypeError):
        pickle.dumps(number)


def test_a_contract_carrying_the_number_serialises_the_full_digits_and_validates_them():
    class Carrier(BaseModel):
        my_number: MyNumber

    carried = Carrier.model_validate_json('{"my_number": "123456789018"}')
    assert carried.my_number == MyNumber("123456789018")
    assert carried.model_dump_json() == '{"my_number":"123456789018"}'
    assert "123456789018" not in repr(carried)
    with pytest.raises(ValidationError, match="check digit"):
        Carrier.model_validate({"my_number": "123456789019"})
    schema = Carrier.model_json_schema()
    assert schema["properties"]["my_number"]["pattern"] == "^[0-9]{12}$"


def test_resident_attributes_are_frozen_and_kana_is_checked():
    attributes = ResidentAttributes(
        name_kanji="山田 花子", name_kana="ヤマダ ハナコ", date_of_birth=date(2000, 2, 29), sex=Sex.female, address="東京都"
    )
    with pytest.raises(ValidationError):
        attributes.__class__.model_validate({**attributes.model_dump(), "name_kana": "やまだ はなこ"})
    with pytest.raises(ValidationError):
        attributes.name_kanji = "x"  # type: ignore[misc]


def test_partner_requests_reject_unknown_fields():
    payload = {
        "request_id": "r1", "municipality_code": "131016", "nationality": "JP", "surprise": 1,
        "attributes": {"name_kanji": "山田", "name_kana": "ヤマダ", "date_of_birth": "2000-01-01", "sex": "male", "address": "東京都"},
    }
    with pytest.raises(ValidationError, match="surprise"):
        RegisterResident.model_validate(payload)
