"""The card lifecycle and the resident registry changes, through the real broker: lost,
found, reissue, return, revocation, death, attribute changes and moving abroad."""

from __future__ import annotations

from datetime import date

from mynumber_contracts.enrollment import (
    ApplicationAccepted,
    ChangeResidentAttributes,
    RecordDeath,
    RecordMoveAbroad,
    ReportCardFound,
    ReportCardLost,
    RequestCardReissue,
    ResidentAttributesChanged,
    ResidentDeceased,
    ResidentMovedAbroad,
    ResidentRequestRejected,
    ReturnCard,
    RevokeCard,
)

from tests.enrollment.support import (
    MUNICIPAL_OFFICE,
    OPERATOR,
    TODAY,
    Enrollment,
    application,
    apply,
    card_request,
    issue_card,
    new_number,
    wrong_check_digit,
)


def lost(number, request_id="lost-1"):
    return ReportCardLost(request_id=request_id, my_number=number.reveal() if hasattr(number, "reveal") else number,
                          office_id="portal/myna-portal")


async def test_a_lost_card_is_suspended_at_once_then_reissued_with_a_new_certificate(enrollment: Enrollment):
    number = new_number()
    card = await issue_card(enrollment, number)

    suspended = await card_request(enrollment, lost(number))
    status = await enrollment.service.http.get(f"/cards/{card['card_number']}", headers=OPERATOR)
    reissued = await card_request(enrollment, RequestCardReissue(
        request_id="reissue-1", my_number=number.reveal(), office_id=MUNICIPAL_OFFICE, requested_on=TODAY,
        photo_ref="photo/new"))

    assert suspended["type"] == "jp.mynumber.enrollment.card_suspended.v1"
    assert (suspended["card_number"], suspended["reason"]) == (card["card_number"], "lost")
    assert status.json()["status"] == "suspended"
    assert reissued["type"] == "jp.mynumber.enrollment.card_reissued.v1"
    assert reissued["previous_card_number"] == card["card_number"]
    assert reissued["card_number"] != card["card_number"] and reissued["certificate_id"] != card["certificate_id"]
    assert reissued["issued_on"] == "2025-06-02" and reissued["photo_less"] is False
    old, new = await enrollment.store.card(card["card_number"]), await enrollment.store.card(reissued["card_number"])
    assert (old.state, old.replaced_by) == ("reissued", new.card_number)
    assert (new.state, new.previous_card_number) == ("active", old.card_number)
    assert (await enrollment.store.held_card(card["person_ref"])).card_number == new.card_number
    again = await apply(enrollment, application(number.reveal()))
    assert again["reason"] == "duplicate", "the reissued card is the person's one card"


async def test_a_found_card_is_resumed_and_cannot_be_found_twice(enrollment: Enrollment):
    number = new_number()
    card = await issue_card(enrollment, number)
    await card_request(enrollment, lost(number))

    found = await card_request(enrollment, ReportCardFound(request_id="found-1", my_number=number.reveal(), office_id=MUNICIPAL_OFFICE))
    twice = await card_request(enrollment, ReportCardFound(request_id="found-2", my_number=number.reveal(), office_id=MUNICIPAL_OFFICE))

    assert (found["type"], found["card_number"]) == ("jp.mynumber.enrollment.card_resumed.v1", card["card_number"])
    assert twice["type"] == "jp.mynumber.enrollment.card_request_rejected.v1"
    assert (twice["reason"], twice["request_type"]) == ("card_state", ReportCardFound.event_type)
    assert "active" in twice["message"]
    assert (await enrollment.store.card(card["card_number"])).state == "active"


async def test_a_replayed_lost_report_is_answered_the_same_not_rejected(enrollment: Enrollment):
    number = new_number()
    await issue_card(enrollment, number)
    first = await card_request(enrollment, lost(number))
    replay = await card_request(enrollment, lost(number), nth=1)  # the hotline sends it again, new event id
    assert replay == first


async def test_a_returned_card_frees_the_person_to_apply_again(enrollment: Enrollment):
    number = new_number()
    card = await issue_card(enrollment, number)

    returned = await card_request(enrollment, ReturnCard(request_id="ret-1", my_number=number.reveal(), office_id=MUNICIPAL_OFFICE))
    after = await apply(enrollment, application(number.reveal()))

    assert (returned["type"], returned["card_number"]) == ("jp.mynumber.enrollment.card_returned.v1", card["card_number"])
    assert after["type"] == ApplicationAccepted.event_type


async def test_a_revoked_card_carries_the_reason_and_further_requests_meet_the_card_state(enrollment: Enrollment):
    number = new_number()
    card = await issue_card(enrollment, number)

    revoked = await card_request(enrollment, RevokeCard(request_id="rev-1", my_number=number.reveal(),
                                                        office_id=MUNICIPAL_OFFICE, reason="fraudulent application"))
    refused = await card_request(enrollment, lost(number, "lost-after-revoke"))

    assert (revoked["type"], revoked["reason"]) == ("jp.mynumber.enrollment.card_revoked.v1", "fraudulent application")
    assert (refused["reason"], refused["person_ref"]) == ("card_state", card["person_ref"])
    assert (await enrollment.store.card(card["card_number"])).state == "revoked"


async def test_lifecycle_requests_with_a_bad_check_digit_or_an_unknown_number_are_rejected(enrollment: Enrollment):
    holder = new_number()
    await issue_card(enrollment, holder)
    typo = await card_request(enrollment, lost(wrong_check_digit(holder), "typo"))
    stranger = await card_request(enrollment, lost(new_number(), "stranger"))
    assert (typo["reason"], typo["person_ref"]) == ("bad_check_digit", None)
    assert (stranger["reason"], stranger["person_ref"]) == ("unknown_resident", None)


async def test_a_reissue_needs_a_photo_unless_the_holder_is_an_infant(enrollment: Enrollment):
    number = new_number()
    await issue_card(enrollment, number, born=date(1980, 1, 1))
    refused = await card_request(enrollment, RequestCardReissue(
        request_id="re-no-photo", my_number=number.reveal(), office_id=MUNICIPAL_OFFICE, requested_on=TODAY))
    assert refused["reason"] == "photo_missing"


async def test_death_revokes_the_card_and_closes_the_registry_entry(enrollment: Enrollment):
    number = new_number()
    card = await issue_card(enrollment, number)

    await enrollment.send(RecordDeath(my_number=number, died_on=date(2025, 5, 30)))
    deceased = await enrollment.fact(ResidentDeceased.event_type, person_ref=card["person_ref"])
    revoked = await enrollment.fact("jp.mynumber.enrollment.card_revoked.v1", person_ref=card["person_ref"])
    after = await apply(enrollment, application(number.reveal()))

    assert deceased["died_on"] == "2025-05-30"
    assert (revoked["card_number"], revoked["reason"]) == (card["card_number"], "deceased")
    assert (after["reason"], after["person_ref"]) == ("resident_state", card["person_ref"])


async def test_a_name_change_invalidates_the_signing_certificate_and_tells_the_five_attributes(enrollment: Enrollment):
    holder, no_card = new_number(), new_number()
    card = await issue_card(enrollment, holder)
    other = await enrollment.register(no_card)

    await enrollment.send(ChangeResidentAttributes(my_number=holder, name_kanji="佐藤 太郎", name_kana="サトウ タロウ",
                                                   address="東京都千代田区永田町1-7-1", effective_on=TODAY))
    await enrollment.send(ChangeResidentAttributes(my_number=no_card, address="大阪府大阪市北区1-1", effective_on=TODAY))
    changed = await enrollment.fact(ResidentAttributesChanged.event_type, person_ref=card["person_ref"])
    moved = await enrollment.fact(ResidentAttributesChanged.event_type, person_ref=other)

    assert changed["attributes"] == {"name_kanji": "佐藤 太郎", "name_kana": "サトウ タロウ", "date_of_birth": "1990-04-01",
                                     "sex": "male", "address": "東京都千代田区永田町1-7-1"}
    assert changed["changed"] == ["name_kana", "name_kanji"], "an unchanged address is not a change"
    assert changed["signing_certificate_invalidated"] is True
    assert (await enrollment.store.card(card["card_number"])).signing_certificate_valid is False
    assert (moved["changed"], moved["signing_certificate_invalidated"]) == (["address"], False)


async def test_moving_abroad_turns_the_address_into_moved_abroad_with_the_date(enrollment: Enrollment):
    number = new_number()
    card = await issue_card(enrollment, number)

    await enrollment.send(RecordMoveAbroad(my_number=number, moved_on=date(2025, 5, 20), destination_country="DE"))
    moved = await enrollment.fact(ResidentMovedAbroad.event_type, person_ref=card["person_ref"])

    assert moved["attributes"]["address"] == "moved abroad (2025-05-20)"
    assert moved["moved_on"] == "2025-05-20"
    assert set(moved["attributes"]) == {"name_kanji", "name_kana", "date_of_birth", "sex", "address"}
    assert (await enrollment.store.card(card["card_number"])).signing_certificate_valid is False
    assert (await enrollment.store.resident(card["person_ref"])).resident.moved_abroad_on == date(2025, 5, 20)


async def test_registry_changes_for_an_unknown_number_are_rejected_with_a_reason(enrollment: Enrollment):
    await enrollment.send(RecordMoveAbroad(my_number=new_number(), moved_on=TODAY))
    rejected = await enrollment.fact(ResidentRequestRejected.event_type)
    assert (rejected["reason"], rejected["request_type"], rejected["person_ref"]) == (
        "unknown_resident", RecordMoveAbroad.event_type, None)
