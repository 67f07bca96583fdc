"""A date of birth or sex on record is corrected by the municipality of residence
(`CorrectResidentRecord`): a registration never changes them (another date of birth or sex means
the number is someone else's), yet the other services match people on all five attributes, so a
wrong one on record keeps that person's insurer records from ever linking. The correction is told
as `ResidentAttributesChanged` with the five corrected attributes, invalidates the card's signing
certificate, and leaves the issued card as it is."""

from __future__ import annotations

import re
from datetime import date

from mynumber_contracts import Sex
from mynumber_contracts.enrollment import (
    CorrectionReason,
    CorrectResidentRecord,
    RecordDeath,
    ResidentAttributesChanged,
    ResidentDeceased,
    ResidentRegistered,
    ResidentRequestRejected,
)

from services.enrollment.handlers import correct_resident_record, register_resident
from tests.enrollment.support import TODAY, Enrollment, issue_card, new_number, registration, use_cases

OSAKA = "271004"
TWELVE_DIGITS = re.compile(r"\d{12}")


def correction(number, *, born: date | None = date(1990, 4, 10), sex: Sex | None = Sex.female,
               reason: CorrectionReason = CorrectionReason.clerical_error,
               on_record: tuple[date, Sex] = (date(1990, 4, 1), Sex.male)) -> CorrectResidentRecord:
    """Registered (by `registration`) as born on 1 April 1990, male, unless `on_record` says otherwise."""
    return CorrectResidentRecord(my_number=number, date_of_birth=born, sex=sex, effective_on=TODAY, reason=reason,
                                 date_of_birth_on_record=on_record[0], sex_on_record=on_record[1])


async def test_the_municipality_of_residence_corrects_a_date_of_birth_and_sex_and_tells_the_five_attributes(enrollment: Enrollment):
    number = new_number()
    card = await issue_card(enrollment, number)  # registered as born on 1 April 1990, male
    person_ref = card["person_ref"]

    await enrollment.send(correction(number))
    corrected = await enrollment.fact(ResidentAttributesChanged.event_type, person_ref=person_ref)

    assert corrected == {
        "person_ref": person_ref,
        "attributes": {"name_kanji": "山田 太郎", "name_kana": "ヤマダ タロウ", "date_of_birth": "1990-04-10",
                       "sex": "female", "address": "東京都千代田区永田町1-7-1"},
        "changed": ["date_of_birth", "sex"],
        "effective_on": TODAY.isoformat(),
        "signing_certificate_invalidated": True,
    }
    assert "clerical_error" not in str(corrected), "the reason stays in the registry"
    stored = await enrollment.store.resident(person_ref)
    assert (stored.resident.attributes.date_of_birth, stored.resident.attributes.sex) == (date(1990, 4, 10), Sex.female)
    assert (stored.changes[-1]["kind"], stored.changes[-1]["reason"]) == ("correction", "clerical_error")
    held = await enrollment.store.card(card["card_number"])
    assert held.signing_certificate_valid is False, "the signing certificate carries the date of birth and sex"
    assert (held.state, held.certificate_id, held.expires_on.isoformat()) == (
        "active", card["certificate_id"], card["expires_on"]), "the issued card is not changed: it is reissued on request"

    # Moving to Osaka, the person registers with the corrected date of birth and sex: the same person.
    await enrollment.send(registration(number, born=date(1990, 4, 10), sex=Sex.female, municipality_code=OSAKA,
                                       request_id="osaka-after-correction", address="大阪府大阪市北区1-1"),
                          source=f"municipality/{OSAKA}")
    registered = await enrollment.fact(ResidentRegistered.event_type, request_id="osaka-after-correction")
    assert registered["person_ref"] == person_ref


async def test_a_correction_of_the_sex_alone_leaves_the_date_of_birth(enrollment: Enrollment):
    number = new_number()
    person_ref = await enrollment.register(number)

    await enrollment.send(correction(number, born=None, reason=CorrectionReason.legal_change))
    corrected = await enrollment.fact(ResidentAttributesChanged.event_type, person_ref=person_ref)

    assert corrected["changed"] == ["sex"]
    assert (corrected["attributes"]["date_of_birth"], corrected["attributes"]["sex"]) == ("1990-04-01", "female")
    assert corrected["signing_certificate_invalidated"] is False, "no card, no certificate to invalidate"


async def test_a_correction_for_a_deceased_resident_is_refused_and_changes_nothing(enrollment: Enrollment):
    number = new_number()
    person_ref = await enrollment.register(number)
    await enrollment.send(RecordDeath(my_number=number, died_on=date(2025, 5, 30)))
    await enrollment.fact(ResidentDeceased.event_type, person_ref=person_ref)

    await enrollment.send(correction(number), event_id=f"correction-{person_ref}")
    refused = await enrollment.fact(ResidentRequestRejected.event_type, request_id=f"correction-{person_ref}")

    assert (refused["reason"], refused["request_type"], refused["person_ref"]) == (
        "resident_state", CorrectResidentRecord.event_type, person_ref)
    assert not TWELVE_DIGITS.search(refused["message"])
    stored = await enrollment.store.resident(person_ref)
    assert (stored.resident.attributes.date_of_birth, stored.resident.attributes.sex) == (date(1990, 4, 1), Sex.male)
    assert enrollment.facts.of_type(ResidentAttributesChanged.event_type) == []


async def test_a_correction_that_corrects_nothing_answers_nothing_and_records_nothing(settings_for):
    """As a name or address change that changes nothing: the record already says so, e.g. the
    same correction sent again under a new event id."""
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        await run.run(register_resident, registration(number), event_id="e1")
        person_ref = run.deps.people.for_number(number)

        assert await run.run(correct_resident_record, correction(number, born=date(1990, 4, 1), sex=Sex.male),
                             event_id="e2") == []
        assert [type(f).__name__ for f in await run.run(correct_resident_record, correction(number), event_id="e3")] == [
            "ResidentAttributesChanged"]
        assert await run.run(correct_resident_record, correction(number), event_id="e4") == [], "sent again"

        stored = await run.deps.store.resident(person_ref)
        assert [c["key"] for c in stored.changes] == ["change/e3"]


async def test_a_correction_to_a_record_that_shows_something_else_is_refused_as_a_mistyped_number(enrollment: Enrollment):
    """The clerk corrects the record in front of them; a number mistyped into another resident's
    finds a record with another date of birth or sex, and that resident's identity stays."""
    number = new_number()
    person_ref = await enrollment.register(number, born=date(1975, 8, 20), sex=Sex.female)  # someone else

    await enrollment.send(correction(number), event_id=f"typo-{person_ref}")  # meant for a man born 1 April 1990
    # Only the sex, which that record already shows as the correction has it: refused all the same.
    await enrollment.send(correction(number, born=None), event_id=f"typo-sex-{person_ref}")

    for request_id in (f"typo-{person_ref}", f"typo-sex-{person_ref}"):
        refused = await enrollment.fact(ResidentRequestRejected.event_type, request_id=request_id)
        assert (refused["reason"], refused["request_type"]) == ("record_differs", CorrectResidentRecord.event_type)
        assert refused["person_ref"] is None, "the sender is not told whose record it is"
        assert "check the number" in refused["message"] and "1975" not in refused["message"]
        assert not TWELVE_DIGITS.search(refused["message"])
    stored = await enrollment.store.resident(person_ref)
    assert (stored.resident.attributes.date_of_birth, stored.resident.attributes.sex) == (date(1975, 8, 20), Sex.female)
    assert enrollment.facts.of_type(ResidentAttributesChanged.event_type) == []
