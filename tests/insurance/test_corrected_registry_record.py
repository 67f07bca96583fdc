"""A held insurer record whose five attributes did not match the registry is decided again when
the person's registry record changes (enrollment's `ResidentAttributesChanged`: a new name or
address, or a date of birth or sex corrected with `CorrectResidentRecord`). It links once all
five match; a change that still leaves them apart keeps it held, with nothing new said."""

from __future__ import annotations

from datetime import date

from mynumber_contracts import Sex
from mynumber_contracts.enrollment import ResidentAttributesChanged

from tests.insurance.conftest import INSURER, Insurance, attributes_of, enrollment, types


def changed(person_ref: str, attributes, *names: str) -> ResidentAttributesChanged:
    return ResidentAttributesChanged(person_ref=person_ref, attributes=attributes, changed=sorted(names),
                                     effective_on=date(2026, 4, 1), signing_certificate_invalidated=False)


async def test_a_date_of_birth_and_sex_corrected_in_the_registry_link_the_insurers_held_record(insurance: Insurance):
    on_record = attributes_of(21, born=date(1985, 6, 5), sex=Sex.male)  # the registry's slip
    person_ref = await insurance.resident(21, on_record)
    [held] = await insurance.insurer(enrollment("m-21", 21, 21))  # the insurer has 15 June 1985, female
    assert (held["reason"], sorted(held["mismatched"])) == ("attribute_mismatch", ["date_of_birth", "sex"])

    linked = await insurance.registry(changed(person_ref, attributes_of(21), "date_of_birth", "sex"))

    copy = await insurance.running.service.deps.store.registered_resident(person_ref)
    assert (copy.attributes.date_of_birth, copy.attributes.sex) == (date(1985, 6, 15), Sex.female)
    assert types(linked) == ["member_linked", "eligibility_certificate_issued"], linked
    assert linked[0]["person_ref"] == person_ref
    assert await insurance.running.service.deps.store.pending_for(person_ref) == []


async def test_a_change_that_still_leaves_the_attributes_apart_keeps_the_record_held_and_says_nothing(insurance: Insurance):
    person_ref = await insurance.resident(22, attributes_of(22, born=date(1985, 6, 5), sex=Sex.male))
    [held] = await insurance.insurer(enrollment("m-22", 22, 22))
    assert held["reason"] == "attribute_mismatch"

    # A new address, and only the sex corrected: the date of birth still differs.
    moved = attributes_of(22, born=date(1985, 6, 5), address="東京都港区1-1")
    assert await insurance.registry(changed(person_ref, moved, "address")) == []
    assert await insurance.registry(changed(person_ref, moved.model_copy(update={"sex": Sex.female}), "sex")) == []
    member = await insurance.running.service.deps.store.member_document(f"{INSURER}/記号/m-22")
    assert (member["link_state"], member["held_reason"]) == ("held", "attribute_mismatch")

    # The insurer has the new address too, and the date of birth is corrected: all five match now.
    [held_again] = await insurance.insurer(enrollment("m-22", 22, 22, request_id="enroll-m-22-moved", address="東京都港区1-1"))
    assert held_again["reason"] == "attribute_mismatch"
    linked = await insurance.registry(changed(person_ref, attributes_of(22, address="東京都港区1-1"), "date_of_birth"))
    assert types(linked)[0] == "member_linked" and linked[0]["person_ref"] == person_ref
