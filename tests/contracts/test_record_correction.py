"""The correction of a date of birth or sex on record (`CorrectResidentRecord`): it must correct
something, for one of a few reasons, and is told as `ResidentAttributesChanged`, whose `changed`
list gained `date_of_birth` and `sex` (a contract's values are only ever added to)."""

from __future__ import annotations

from datetime import date

import pytest
from mynumber_contracts import ResidentAttributes, Sex, event_model
from mynumber_contracts.enrollment import CorrectResidentRecord, ResidentAttributesChanged
from mynumber_contracts.partners import PartnerType
from pydantic import ValidationError

NUMBER = "123456789018"


def correction(**fields: object) -> CorrectResidentRecord:
    return CorrectResidentRecord.model_validate(
        {"my_number": NUMBER, "effective_on": "2025-06-02", "reason": "clerical_error",
         "date_of_birth_on_record": "1990-04-01", "sex_on_record": "male", **fields})


def test_a_correction_names_a_date_of_birth_a_sex_or_both():
    assert correction(date_of_birth="1990-04-10").sex is None
    assert correction(sex="female").date_of_birth is None
    both = correction(date_of_birth="1990-04-10", sex="female", reason="legal_change")
    assert (both.date_of_birth, both.sex, both.reason) == (date(1990, 4, 10), Sex.female, "legal_change")

    with pytest.raises(ValidationError) as refused:
        correction()
    [error] = refused.value.errors()
    assert "needs a date_of_birth, a sex, or both" in error["msg"]
    assert NUMBER not in error["msg"]


@pytest.mark.parametrize("fields", [
    {"sex": "female", "reason": "typo"},  # not one of the reasons
    {"sex": "female", "reason": None},  # a reason is required
    {"sex": "other"},  # the registry records male or female
    {"sex": "female", "name_kanji": "山田 花子"},  # a name is changed with ChangeResidentAttributes
    {"sex": "female", "date_of_birth_on_record": None},  # what the record shows now is required
    {"sex": "female", "sex_on_record": None},
])
def test_a_correction_with_an_unknown_reason_or_a_field_it_does_not_carry_is_refused(fields):
    with pytest.raises(ValidationError):
        correction(**fields)


def test_the_correction_is_a_municipalitys_request_in_the_catalogue():
    model = event_model("jp.mynumber.enrollment.correct_resident_record.v1")
    assert model is CorrectResidentRecord
    assert model.publishers == frozenset({PartnerType.municipality})
    assert model.topic() == "mynumber.enrollment.requests"


def test_a_change_of_attributes_may_name_the_date_of_birth_and_sex_and_still_the_name_and_address():
    attributes = ResidentAttributes(name_kanji="山田 花子", name_kana="ヤマダ ハナコ", date_of_birth=date(1990, 4, 10),
                                    sex=Sex.female, address="東京都千代田区永田町1-7-1")

    def changed(names: list[str]) -> ResidentAttributesChanged:
        return ResidentAttributesChanged.model_validate_json(ResidentAttributesChanged(
            person_ref="pr_" + "a" * 26, attributes=attributes, changed=names, effective_on=date(2025, 6, 2),
            signing_certificate_invalidated=True).model_dump_json())

    assert changed(["date_of_birth", "sex"]).changed == ["date_of_birth", "sex"]
    assert changed(["address", "name_kana", "name_kanji"]).changed == ["address", "name_kana", "name_kanji"]
    with pytest.raises(ValidationError):
        changed(["nationality"])
