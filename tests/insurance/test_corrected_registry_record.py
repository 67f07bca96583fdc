"""A date of birth or sex corrected in the resident registry (enrollment's `CorrectResidentRecord`,
told as `ResidentAttributesChanged`) reaches insurance's copy of the person's five attributes, so
the insurer's record, which the wrong one had kept from linking, now links."""

from __future__ import annotations

from datetime import date

from mynumber_contracts import Sex
from mynumber_contracts.enrollment import ResidentAttributesChanged

from tests.insurance.conftest import Insurance, attributes_of, enrollment, types


async def test_a_date_of_birth_and_sex_corrected_in_the_registry_let_the_insurers_record_link(insurance: Insurance):
    on_record = attributes_of(21, born=date(1985, 6, 5), sex=Sex.male)  # the registry's slip
    person_ref = await insurance.resident(21, on_record)
    [held] = await insurance.insurer(enrollment("m-21", 21, 21))  # the insurer has 15 June 1985, female
    assert (held["reason"], sorted(held["mismatched"])) == ("attribute_mismatch", ["date_of_birth", "sex"])

    await insurance.registry(ResidentAttributesChanged(
        person_ref=person_ref, attributes=attributes_of(21), changed=["date_of_birth", "sex"],
        effective_on=date(2026, 4, 1), signing_certificate_invalidated=False))

    copy = await insurance.running.service.deps.store.registered_resident(person_ref)
    assert (copy.attributes.date_of_birth, copy.attributes.sex) == (date(1985, 6, 15), Sex.female)
    # The held record is not decided again by the correction itself: the insurer sends it again.
    linked = await insurance.insurer(enrollment("m-21", 21, 21, request_id="enroll-m-21-again"))
    assert types(linked) == ["member_linked", "eligibility_certificate_issued"] and linked[0]["person_ref"] == person_ref
