"""A municipality acts in its own name only: a registration or a post-office delegation naming
another municipality's code is refused (ResidentRequestRejected, `channel_not_allowed`, no number
in it) and changes nothing, so Chiyoda can neither move Osaka's delegations nor register
residents, or get numbers assigned, under Osaka's code. Nor can it record a death, a move abroad,
a new name or address, or a corrected date of birth or sex for a resident whose record Osaka keeps."""

from __future__ import annotations

import re
import uuid
from datetime import date

from mynumber_contracts import Sex
from mynumber_contracts.enrollment import (
    ChangeResidentAttributes,
    CorrectionReason,
    CorrectResidentRecord,
    DelegatePostOffice,
    PostOfficeDelegationChanged,
    RecordDeath,
    RecordMoveAbroad,
    ResidentAttributesChanged,
    ResidentDeceased,
    ResidentMovedAbroad,
    ResidentRegistered,
    ResidentRequestRejected,
)

from tests.enrollment.support import MUNICIPAL_OFFICE, Enrollment, new_number, registration

OSAKA = "271004"
OSAKA_OFFICE = f"municipality/{OSAKA}"
OSAKA_POST_OFFICE = "post-office/osaka-kita"
TWELVE_DIGITS = re.compile(r"\d{12}")


async def refusal(enrollment: Enrollment, request_id: str) -> dict:
    refused = await enrollment.fact(ResidentRequestRejected.event_type, request_id=request_id)
    assert refused["reason"] == "channel_not_allowed" and refused["person_ref"] is None, refused
    assert MUNICIPAL_OFFICE in refused["message"] and OSAKA in refused["message"]
    assert not TWELVE_DIGITS.search(refused["message"]), "no Individual Number in a refusal"
    return refused


async def test_a_municipality_cannot_grant_or_withdraw_another_municipalitys_post_office_delegation(enrollment: Enrollment):
    await enrollment.delegate(OSAKA_POST_OFFICE, municipality_code=OSAKA)  # Osaka, for itself

    withdrawal, grant = str(uuid.uuid4()), str(uuid.uuid4())
    await enrollment.send(DelegatePostOffice(municipality_code=OSAKA, post_office_id=OSAKA_POST_OFFICE, active=False),
                          source=MUNICIPAL_OFFICE, event_id=withdrawal)
    await enrollment.send(DelegatePostOffice(municipality_code=OSAKA, post_office_id="post-office/tokyo-chuo"),
                          source=MUNICIPAL_OFFICE, event_id=grant)

    for event_id in (withdrawal, grant):
        refused = await refusal(enrollment, event_id)
        assert refused["request_type"] == DelegatePostOffice.event_type
    assert await enrollment.store.is_delegated(OSAKA, OSAKA_POST_OFFICE), "Osaka's delegation still stands"
    assert not await enrollment.store.is_delegated(OSAKA, "post-office/tokyo-chuo"), "nothing granted in Osaka's name"
    changes = [r.json() for r in enrollment.facts.of_type(PostOfficeDelegationChanged.event_type)]
    assert changes == [{"municipality_code": OSAKA, "post_office_id": OSAKA_POST_OFFICE, "active": True}]


async def test_a_municipality_cannot_register_residents_in_another_municipalitys_name(enrollment: Enrollment):
    known = new_number()
    newborn = registration(None, municipality_code=OSAKA, request_id="osaka-newborn-1", address="大阪府大阪市北区1-1")
    await enrollment.send(registration(known, municipality_code=OSAKA, request_id="osaka-resident-1"), source=MUNICIPAL_OFFICE)
    await enrollment.send(newborn, source=MUNICIPAL_OFFICE, subject=newborn.request_id)

    for request_id in ("osaka-resident-1", "osaka-newborn-1"):
        refused = await refusal(enrollment, request_id)
        assert known.reveal() not in str(refused)
    assert await enrollment.service.service.deps.resident_by_number(known) is None, "nobody registered"
    assert await enrollment.store.assignment(f"{OSAKA}/osaka-newborn-1") is None, "no number assigned under Osaka's key"
    assert not enrollment.facts.of_type(ResidentRegistered.event_type)

    # Osaka's own request with that id is still Osaka's to make: the refusal decided nothing under it.
    await enrollment.send(newborn, source=OSAKA_OFFICE, subject=newborn.request_id)
    registered = await enrollment.fact(ResidentRegistered.event_type, request_id="osaka-newborn-1")
    assert (registered["municipality_code"], registered["number_assigned"]) == (OSAKA, True)
    assert await enrollment.store.assignment(f"{OSAKA}/osaka-newborn-1") is not None


async def test_only_the_municipality_of_residence_changes_a_residents_record(enrollment: Enrollment):
    number = new_number()
    person_ref = await enrollment.register(number, municipality_code=OSAKA, request_id="osaka-1",
                                           address="大阪府大阪市北区1-1")
    changes = {
        "death": RecordDeath(my_number=number, died_on=date(2025, 5, 30)),
        "abroad": RecordMoveAbroad(my_number=number, moved_on=date(2025, 5, 30), destination_country="US"),
        "name": ChangeResidentAttributes(my_number=number, name_kanji="山田 花子", effective_on=date(2025, 5, 30)),
        "correction": CorrectResidentRecord(my_number=number, date_of_birth=date(1990, 4, 10), sex=Sex.female,
                                            date_of_birth_on_record=date(1990, 4, 1), sex_on_record=Sex.male,
                                            effective_on=date(2025, 5, 30), reason=CorrectionReason.clerical_error),
    }
    for kind, change in changes.items():
        await enrollment.send(change, source=MUNICIPAL_OFFICE, event_id=f"chiyoda-{kind}-{person_ref}")
    for kind, change in changes.items():
        refused = await enrollment.fact(ResidentRequestRejected.event_type, request_id=f"chiyoda-{kind}-{person_ref}")
        assert (refused["reason"], refused["request_type"]) == ("channel_not_allowed", change.event_type)
        assert refused["person_ref"] is None, "another municipality is not told who the person is"
        assert MUNICIPAL_OFFICE in refused["message"] and OSAKA not in refused["message"], refused["message"]
        assert not TWELVE_DIGITS.search(refused["message"])
    stored = await enrollment.service.service.deps.resident_by_number(number)
    resident = stored.resident
    assert (resident.deceased_on, resident.moved_abroad_on, resident.attributes.name_kanji) == (None, None, "山田 太郎")
    assert (resident.attributes.date_of_birth, resident.attributes.sex) == (date(1990, 4, 1), Sex.male)
    for fact_type in (ResidentDeceased, ResidentMovedAbroad, ResidentAttributesChanged):
        assert not enrollment.facts.of_type(fact_type.event_type), f"no {fact_type.__name__} in Osaka's resident's name"

    # Osaka, which keeps the record, makes the same changes.
    await enrollment.send(changes["name"], source=OSAKA_OFFICE)
    changed = await enrollment.fact(ResidentAttributesChanged.event_type, person_ref=person_ref)
    assert changed["attributes"]["name_kanji"] == "山田 花子"
    await enrollment.send(changes["correction"], source=OSAKA_OFFICE)
    [_, corrected] = await enrollment.facts_of(ResidentAttributesChanged.event_type, 2, person_ref=person_ref)
    assert (corrected["changed"], corrected["attributes"]["date_of_birth"]) == (["date_of_birth", "sex"], "1990-04-10")


async def test_a_resident_who_moved_in_is_changed_by_the_new_municipality_only(enrollment: Enrollment):
    number = new_number()
    person_ref = await enrollment.register(number, municipality_code=OSAKA, request_id="osaka-2", address="大阪府大阪市北区1-2")
    await enrollment.send(registration(number, request_id="moved-in-2"))  # Chiyoda registers the move in
    await enrollment.fact(ResidentRegistered.event_type, request_id="moved-in-2")

    await enrollment.send(RecordDeath(my_number=number, died_on=date(2025, 6, 1)), source=OSAKA_OFFICE,
                          event_id=f"osaka-death-{person_ref}")
    refused = await enrollment.fact(ResidentRequestRejected.event_type, request_id=f"osaka-death-{person_ref}")
    assert refused["reason"] == "channel_not_allowed"
    await enrollment.send(RecordDeath(my_number=number, died_on=date(2025, 6, 1)), source=MUNICIPAL_OFFICE)
    assert (await enrollment.fact(ResidentDeceased.event_type, person_ref=person_ref))["died_on"] == "2025-06-01"
