"""Card applications on the three channels, through the real broker, read back from the
service's facts and store."""

from __future__ import annotations

from datetime import date

from mynumber_contracts.enrollment import (
    ApplicationAccepted,
    ApplicationRejected,
    ApplyForCard,
    CardIssued,
    Channel,
    RecordMoveAbroad,
)

from tests.enrollment.support import (
    EMBASSY,
    MUNICIPAL_OFFICE,
    POST_OFFICE,
    TODAY,
    Enrollment,
    application,
    apply,
    new_number,
    wrong_check_digit,
)


async def test_a_municipal_office_application_is_accepted_and_a_card_issued(enrollment: Enrollment):
    number = new_number()
    person_ref = await enrollment.register(number, born=date(1990, 4, 1))
    request = application(number.reveal())

    decision = await apply(enrollment, request)
    issued = await enrollment.fact(CardIssued.event_type, application_id=request.application_id)

    assert decision["type"] == ApplicationAccepted.event_type
    assert decision == {**decision, "person_ref": person_ref, "channel": "municipal_office",
                        "issuing_municipality": "131016", "photo_less": False}
    assert issued["person_ref"] == person_ref and issued["photo_less"] is False
    assert issued["issued_on"] == "2025-06-02"
    assert issued["expires_on"] == "2035-04-01", "an adult's card ends on the 10th birthday after issue"
    assert issued["certificate_expires_on"] == "2030-04-01", "the certificates end on the 5th birthday after issue"
    card = await enrollment.store.card(issued["card_number"])
    assert card.state == "active" and card.person_ref == person_ref and card.certificate_id == issued["certificate_id"]
    assert number.reveal() not in issued["card_number"] + issued["certificate_id"]


async def test_a_minor_gets_a_card_until_the_5th_birthday(enrollment: Enrollment):
    number = new_number()
    await enrollment.register(number, born=date(2010, 9, 15))
    request = application(number.reveal())
    await apply(enrollment, request)
    issued = await enrollment.fact(CardIssued.event_type, application_id=request.application_id)
    assert issued["expires_on"] == "2029-09-15"  # 14 at issue: the 5th birthday after 2 June 2025
    assert issued["certificate_expires_on"] == "2029-09-15"


async def test_a_post_office_with_a_delegation_accepts_and_the_municipality_issues(enrollment: Enrollment):
    number = new_number()
    person_ref = await enrollment.register(number)
    await enrollment.delegate(POST_OFFICE)

    decision = await apply(enrollment, application(number.reveal(), Channel.post_office))

    assert decision["type"] == ApplicationAccepted.event_type
    assert decision["office_id"] == POST_OFFICE and decision["issuing_municipality"] == "131016"
    assert decision["person_ref"] == person_ref


async def test_a_post_office_without_a_delegation_is_rejected(enrollment: Enrollment):
    number = new_number()
    await enrollment.register(number)
    await enrollment.delegate("post-office/osaka-kita", municipality_code="271276")  # by another municipality, for itself
    await enrollment.delegate("post-office/shibuya", active=False)  # withdrawn

    for office in ("post-office/osaka-kita", "post-office/shibuya", POST_OFFICE):
        decision = await apply(enrollment, application(number.reveal(), Channel.post_office, office_id=office))
        assert decision["type"] == ApplicationRejected.event_type, office
        assert decision["reason"] == "no_delegation" and office in decision["message"]
    assert await enrollment.store.held_card(decision["person_ref"]) is None


async def test_a_japanese_national_abroad_since_2015_applies_at_a_diplomatic_office(enrollment: Enrollment):
    number = new_number()
    person_ref = await enrollment.register(number)
    await enrollment.send(RecordMoveAbroad(my_number=number, moved_on=date(2015, 10, 5), destination_country="US"))
    await enrollment.fact("jp.mynumber.enrollment.resident_moved_abroad.v1", person_ref=person_ref)

    decision = await apply(enrollment, application(number.reveal(), Channel.diplomatic_office))

    assert decision["type"] == ApplicationAccepted.event_type and decision["office_id"] == EMBASSY


async def test_the_diplomatic_channel_rejects_foreigners_early_movers_residents_in_japan_and_early_dates(enrollment: Enrollment):
    foreigner, early_mover, in_japan, late = new_number(), new_number(), new_number(), new_number()
    await enrollment.register(foreigner, nationality="US", residence_status="engineer", residence_period_end=date(2027, 3, 31))
    for number, moved_on in ((early_mover, date(2015, 10, 4)), (late, date(2020, 1, 1))):
        person_ref = await enrollment.register(number)
        await enrollment.send(RecordMoveAbroad(my_number=number, moved_on=moved_on))
        await enrollment.fact("jp.mynumber.enrollment.resident_moved_abroad.v1", person_ref=person_ref)
    await enrollment.register(in_japan)

    cases = [
        (foreigner, TODAY, "not_eligible_abroad", "foreign nationals"),
        (early_mover, TODAY, "not_eligible_abroad", "2015-10-05"),
        (in_japan, TODAY, "channel_not_allowed", "lives in Japan"),
        (late, date(2024, 5, 26), "channel_not_allowed", "2024-05-27"),
    ]
    for number, applied_on, reason, words in cases:
        decision = await apply(enrollment, application(number.reveal(), Channel.diplomatic_office, applied_on=applied_on))
        assert decision["type"] == ApplicationRejected.event_type
        assert (decision["reason"], words in decision["message"]) == (reason, True), decision


async def test_a_resident_abroad_cannot_apply_at_home_channels(enrollment: Enrollment):
    number = new_number()
    person_ref = await enrollment.register(number)
    await enrollment.delegate(POST_OFFICE)
    await enrollment.send(RecordMoveAbroad(my_number=number, moved_on=date(2024, 1, 10)))
    await enrollment.fact("jp.mynumber.enrollment.resident_moved_abroad.v1", person_ref=person_ref)
    for channel in (Channel.municipal_office, Channel.post_office):
        decision = await apply(enrollment, application(number.reveal(), channel))
        assert (decision["type"], decision["reason"]) == (ApplicationRejected.event_type, "channel_not_allowed")


async def test_an_application_comes_from_the_office_it_names_on_that_offices_channel(enrollment: Enrollment):
    number = new_number()
    await enrollment.register(number)
    await enrollment.delegate(POST_OFFICE)
    borrowed = application(number.reveal(), Channel.post_office)  # the delegated post office's id...
    await enrollment.send(borrowed, source="post-office/undelegated")  # ...claimed by another post office
    municipality_abroad = application(number.reveal(), Channel.diplomatic_office, office_id=MUNICIPAL_OFFICE)
    await enrollment.send(municipality_abroad, source=MUNICIPAL_OFFICE)

    for request in (borrowed, municipality_abroad):
        decision = await enrollment.fact(ApplicationRejected.event_type, application_id=request.application_id)
        assert decision["reason"] == "channel_not_allowed" and "may not file" in decision["message"]


async def test_unknown_residents_and_bad_check_digits_are_rejected_with_reasons(enrollment: Enrollment):
    known = new_number()
    await enrollment.register(known)
    stranger = new_number()

    typo = await apply(enrollment, application(wrong_check_digit(known)))
    unknown = await apply(enrollment, application(stranger.reveal()))

    assert (typo["reason"], typo["person_ref"]) == ("bad_check_digit", None)
    assert (unknown["reason"], unknown["person_ref"]) == ("unknown_resident", None)
    assert typo["message"] and unknown["message"]


async def test_an_infant_under_1_needs_no_photo_and_gets_a_photo_less_card(enrollment: Enrollment):
    infant, toddler = new_number(), new_number()
    await enrollment.register(infant, born=date(2024, 6, 3))  # 364 days old on 2 June 2025
    await enrollment.register(toddler, born=date(2024, 6, 2))  # 1 today

    accepted = await apply(enrollment, application(infant.reveal(), photo_ref=None))
    issued = await enrollment.fact(CardIssued.event_type, application_id=accepted["application_id"])
    refused = await apply(enrollment, application(toddler.reveal(), photo_ref=None))

    assert accepted["type"] == ApplicationAccepted.event_type and accepted["photo_less"] is True
    assert issued["photo_less"] is True and issued["expires_on"] == "2029-06-03"
    assert (refused["type"], refused["reason"]) == (ApplicationRejected.event_type, "photo_missing")


async def test_the_infant_exemption_starts_on_2_december_2024(enrollment: Enrollment):
    number = new_number()
    await enrollment.register(number, born=date(2024, 6, 1))
    before = await apply(enrollment, application(number.reveal(), photo_ref=None, applied_on=date(2024, 12, 1)))
    on_the_day = await apply(enrollment, application(number.reveal(), photo_ref=None, applied_on=date(2024, 12, 2)))
    assert before["reason"] == "photo_missing"
    assert on_the_day["type"] == ApplicationAccepted.event_type


async def test_a_29_february_birthday(enrollment: Enrollment):
    """Born 29 Feb 2024: still under 1 on 28 Feb 2025, a year old on 1 March 2025; a card issued
    on 2 June 2025 to a minor ends on the 5th birthday after issue: 28 Feb 2030 (a common year)."""
    leapling, twin = new_number(), new_number()
    await enrollment.register(leapling, born=date(2024, 2, 29))
    await enrollment.register(twin, born=date(2024, 2, 29))

    on_28_feb = await apply(enrollment, application(leapling.reveal(), photo_ref=None, applied_on=date(2025, 2, 28)))
    on_1_march = await apply(enrollment, application(twin.reveal(), photo_ref=None, applied_on=date(2025, 3, 1)))
    issued = await enrollment.fact(CardIssued.event_type, application_id=on_28_feb["application_id"])

    assert on_28_feb["type"] == ApplicationAccepted.event_type and on_28_feb["photo_less"] is True
    assert on_1_march["reason"] == "photo_missing"
    assert issued["expires_on"] == "2030-02-28"
    assert issued["certificate_expires_on"] == "2030-02-28"


async def test_a_foreign_residents_card_ends_with_the_residence_period(enrollment: Enrollment):
    engineer, permanent = new_number(), new_number()
    await enrollment.register(engineer, nationality="VN", residence_status="engineer", residence_period_end=date(2027, 3, 31))
    await enrollment.register(permanent, nationality="VN", residence_status="permanent_resident")

    engineer_app = await apply(enrollment, application(engineer.reveal()))
    permanent_app = await apply(enrollment, application(permanent.reveal()))
    engineer_card = await enrollment.fact(CardIssued.event_type, application_id=engineer_app["application_id"])
    permanent_card = await enrollment.fact(CardIssued.event_type, application_id=permanent_app["application_id"])

    assert engineer_card["expires_on"] == "2027-03-31"
    assert engineer_card["certificate_expires_on"] == "2027-03-31"
    assert permanent_card["expires_on"] == "2035-04-01", "a permanent resident follows the birthday rule"


async def test_a_replayed_application_is_the_same_application_not_a_duplicate(enrollment: Enrollment):
    number = new_number()
    await enrollment.register(number)
    request = application(number.reveal())

    first = await apply(enrollment, request)
    await enrollment.send(request, source=request.office_id)  # the office sends it again, under a new event id
    await enrollment.facts_of(ApplicationAccepted.event_type, 2, application_id=request.application_id)
    cards = await enrollment.facts_of(CardIssued.event_type, 2, application_id=request.application_id)

    assert first["type"] == ApplicationAccepted.event_type
    assert cards[0] == cards[1], "the replay answers with the same card"
    assert not [r for r in enrollment.facts.records if r.type == ApplicationRejected.event_type]
    assert len(await enrollment.store.cards_of(first["person_ref"])) == 1


async def test_a_second_application_while_holding_a_card_is_a_duplicate(enrollment: Enrollment):
    number = new_number()
    await enrollment.register(number)
    first = await apply(enrollment, application(number.reveal()))
    second = await apply(enrollment, application(number.reveal()))
    assert first["type"] == ApplicationAccepted.event_type
    assert (second["type"], second["reason"], second["person_ref"]) == (ApplicationRejected.event_type, "duplicate", first["person_ref"])


async def test_bad_input_is_dead_lettered_and_the_next_request_still_processed(enrollment: Enrollment):
    number = new_number()
    requests = enrollment.service.service.topics.requests
    await enrollment.partner.send_raw(requests, b"{not json", key=b"k", headers=[
        ("ce_specversion", b"1.0"), ("ce_id", b"bad-1"), ("ce_source", b"municipality/131016"),
        ("ce_type", ApplyForCard.event_type.encode()), ("ce_time", b"2025-06-02T01:00:00Z"),
        ("content-type", b"application/json")])
    foreigner_without_status = {
        "request_id": "r-1", "municipality_code": "131016", "my_number": number.reveal(), "nationality": "US",
        "attributes": {"name_kanji": "ジョン スミス", "name_kana": "ジョン スミス", "date_of_birth": "1990-01-01",
                       "sex": "male", "address": "東京都港区1-1"},
    }
    import json

    from mynumber_contracts.enrollment import RegisterResident
    await enrollment.partner.send_raw(requests, json.dumps(foreigner_without_status).encode(), key=b"k", headers=[
        ("ce_specversion", b"1.0"), ("ce_id", b"bad-2"), ("ce_source", b"municipality/131016"),
        ("ce_type", RegisterResident.event_type.encode()), ("ce_time", b"2025-06-02T01:00:00Z"),
        ("content-type", b"application/json")])
    person_ref = await enrollment.register(new_number())

    letters = await enrollment.dead_letters.wait_count(2)
    reasons = {r.header("dlq_reason") for r in letters}
    assert reasons == {"not_json", "schema_violation"}
    assert "residence_status" in next(r.header("dlq_detail") for r in letters if r.header("dlq_reason") == "schema_violation")
    assert number.reveal() not in "".join(r.header("dlq_detail") for r in letters)
    assert person_ref


async def test_a_request_sent_again_under_a_new_event_id_answers_with_the_facts_it_had_under_their_ids(
        enrollment: Enrollment):
    """The services that keep copies of enrollment's facts apply each fact id once. With new ids,
    an answer sent again would be a new fact to them, and their copies could go back in time."""
    number = new_number()
    await enrollment.register(number)
    request = application(number.reveal())
    await apply(enrollment, request)
    await enrollment.send(request, source=request.office_id)  # the office sends it again, under a new event id
    await enrollment.facts_of(CardIssued.event_type, 2, application_id=request.application_id)
    issued = [r for r in enrollment.facts.of_type(CardIssued.event_type) if r.json()["application_id"] == request.application_id]
    assert issued[0].header("ce_id") == issued[1].header("ce_id")
    assert issued[0].record.value == issued[1].record.value
