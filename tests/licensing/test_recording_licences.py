"""Recording a licence: each holder choice with its fee, on an active card of the holder only."""

from __future__ import annotations

from datetime import date

from mynumber_contracts import ResidentAttributes, Sex
from mynumber_contracts.enrollment import CardRevoked, CardSuspended, ResidentAttributesChanged, ResidentDeceased
from mynumber_contracts.licensing import (
    HolderChoice,
    LicenceClass,
    LicenceRecorded,
    LicenceRequestRejected,
    LicenceReRecordingNeeded,
    LicenceTransaction,
)

from tests.licensing.conftest import ADDRESS, NOW, Licensing, a_licence_number, a_number, licence_request
from tests.support.polling import eventually


async def test_each_holder_choice_is_recorded_with_its_fee(licensing: Licensing):
    card_only, conventional_only, both, newcomer = [await licensing.resident_with_card(seed) for seed in (101, 102, 103, 104)]
    # The police identify the holder by number, by card, or by both.
    await licensing.police(licence_request(card_only, 101, choice=HolderChoice.card_only))
    await licensing.police(licence_request(conventional_only, 102, choice=HolderChoice.conventional_only,
                                           by_number=False, by_card=True))
    await licensing.police(licence_request(both, 103, choice=HolderChoice.both, by_card=True))
    await licensing.police(licence_request(newcomer, 104, choice=HolderChoice.card_only,
                                           transaction=LicenceTransaction.new))

    recorded = {p.ref: await licensing.fact(LicenceRecorded, person_ref=p.ref)
                for p in (card_only, conventional_only, both, newcomer)}
    assert recorded[card_only.ref]["fee_yen"] == 2100
    assert recorded[conventional_only.ref]["fee_yen"] == 2850
    assert recorded[both.ref]["fee_yen"] == 2950
    assert recorded[newcomer.ref]["fee_yen"] == 1550, "a new card-only licence: the default new-licence fee"
    assert recorded[card_only.ref]["card_number"] == card_only.card_number
    assert recorded[both.ref]["card_number"] == both.card_number
    assert recorded[conventional_only.ref]["card_number"] is None, "a conventional licence is not put on the card"

    record = (await licensing.http.get(f"/licences/{a_licence_number(103)}")).json()
    assert (record["person_ref"], record["holder_choice"], record["card_number"]) == (both.ref, "both", both.card_number)
    assert record["address"] == "東京都千代田区永田町1-7-1", "the address comes from the resident registry"
    on_card = await licensing.roadside(both.card_number)
    assert (on_card["valid"], on_card["status"]) == (True, "valid")
    not_on_card = await licensing.roadside(conventional_only.card_number)
    assert (not_on_card["valid"], not_on_card["status"]) == (False, "no_licence_on_card")

    fees = (await licensing.http.get("/fees")).json()
    assert fees["renewal"] == {"card_only": 2100, "conventional_only": 2850, "both": 2950}

    for person in (card_only, conventional_only, both, newcomer):  # facts carry the reference, never the number
        digits = person.number.reveal().encode()
        for received in licensing.facts.records:
            assert digits not in received.record.value and digits not in (received.record.key or b"")
            assert all(digits not in value for _, value in received.record.headers)


async def test_a_licence_is_recorded_only_on_an_active_card_of_its_holder(licensing: Licensing):
    holder, other, lost_card_holder = [await licensing.resident_with_card(seed) for seed in (111, 112, 113)]
    await licensing.enrollment_fact(CardSuspended(person_ref=lost_card_holder.ref, card_number=lost_card_holder.card_number,
                                                  suspended_at=NOW))
    await licensing.until_roadside(lost_card_holder.card_number, lambda r: r["card_status"] == "suspended")
    no_card_ref = licensing.people.for_number(a_number(114))

    cases = {
        "unknown_card": licence_request(holder, 121, by_number=False, by_card=True, card_number="C-NOSUCHCARD"),
        "card_holder_mismatch": licence_request(holder, 122, by_card=True, card_number=other.card_number),
        "card_not_active": licence_request(lost_card_holder, 123, choice=HolderChoice.both),
        "no_active_card": licence_request(holder, 124, my_number=a_number(114)),
    }
    for request in cases.values():
        await licensing.police(request)
    await licensing.police(licence_request(holder, 125))  # accepted: the holder's licence 125
    await licensing.fact(LicenceRecorded, person_ref=holder.ref)
    in_use_request = licence_request(other, 126, licence_number=a_licence_number(125))
    await licensing.police(in_use_request)

    rejections = {reason: await licensing.fact(LicenceRequestRejected, request_id=request.request_id)
                  for reason, request in cases.items()}
    for reason, rejection in rejections.items():
        assert rejection["reason"] == reason, rejection
    assert rejections["no_active_card"]["person_ref"] == no_card_ref
    # A number or a card that may be mistyped: the refusal names no one.
    assert rejections["card_holder_mismatch"]["person_ref"] is None
    in_use = await licensing.fact(LicenceRequestRejected, request_id=in_use_request.request_id)
    assert (in_use["reason"], in_use["person_ref"]) == ("licence_number_in_use", None)
    for seed in (121, 122, 123, 124):
        assert (await licensing.http.get(f"/licences/{a_licence_number(seed)}")).status_code == 404
    assert (await licensing.http.get(f"/licences/{a_licence_number(125)}")).json()["person_ref"] == holder.ref
    assert licensing.facts_of(LicenceRecorded, person_ref=other.ref) == []


async def test_a_mistyped_number_does_not_replace_the_valid_licence_of_the_person_it_names(licensing: Licensing):
    """About 1.7 % of typos pass the check digit (facts §1): a new licence whose holder's number was
    mistyped into another holder's must not replace that holder's licence."""
    newcomer, other_holder = await licensing.resident_with_card(131), await licensing.resident_with_card(152)
    await licensing.police(licence_request(other_holder, 152, choice=HolderChoice.both))
    await licensing.fact(LicenceRecorded, person_ref=other_holder.ref)

    # The newcomer's first licence, sent with the other holder's number (the typo), and no card named.
    mistyped = licence_request(newcomer, 131, transaction=LicenceTransaction.new, my_number=other_holder.number,
                               classes=[LicenceClass.large])
    await licensing.police(mistyped)
    refused = await licensing.fact(LicenceRequestRejected, request_id=mistyped.request_id)
    assert refused["reason"] == "other_licence_on_record"
    assert refused["person_ref"] is None, "the refusal does not name the person the mistyped number belongs to"
    assert other_holder.number.reveal() not in refused["message"]
    kept = (await licensing.http.get(f"/licences/{a_licence_number(152)}")).json()
    assert (kept["person_ref"], kept["holder_choice"], kept["classes"]) == (
        other_holder.ref, "both", ["ordinary", "ordinary_motorcycle"]), "the other holder's licence is untouched"
    assert (await licensing.http.get(f"/licences/{a_licence_number(131)}")).status_code == 404
    at_roadside = await licensing.roadside(other_holder.card_number)
    assert (at_roadside["status"], at_roadside["licence_number"]) == ("valid", a_licence_number(152))

    # With the right number the newcomer's licence is recorded.
    await licensing.police(licence_request(newcomer, 131, transaction=LicenceTransaction.new))
    assert (await licensing.fact(LicenceRecorded, person_ref=newcomer.ref))["licence_number"] == a_licence_number(131)


async def test_a_holder_born_on_another_day_is_refused_so_a_mistyped_number_gets_no_stranger_a_licence(
        licensing: Licensing):
    """The stranger a mistyped number names has no licence to protect them (the check above), so the
    police's date of birth is what tells the two apart; a corrected date on record is followed."""
    holder, stranger = await licensing.resident_with_card(181), await licensing.resident_with_card(182)
    born = date(1980, 4, 1)  # as resident_with_card registers everyone
    mistyped = licence_request(holder, 181, transaction=LicenceTransaction.new, my_number=stranger.number,
                               holder_date_of_birth=date(1992, 11, 3))
    await licensing.police(mistyped)
    refused = await licensing.fact(LicenceRequestRejected, request_id=mistyped.request_id)
    assert (refused["reason"], refused["person_ref"]) == ("record_differs", None)
    assert stranger.number.reveal() not in refused["message"]
    assert (await licensing.roadside(stranger.card_number))["status"] == "no_licence_on_card"

    # Enrollment corrects the holder's date of birth: the corrected day is the one that matches.
    store = licensing.running.service.deps.store
    assert (await store.resident(holder.ref)).date_of_birth == born, "kept from the registration"
    attributes = ResidentAttributes(name_kanji="山田 太郎", name_kana="ヤマダ タロウ", date_of_birth=date(1980, 4, 2),
                                    sex=Sex.male, address=ADDRESS)
    await licensing.enrollment_fact(ResidentAttributesChanged(person_ref=holder.ref, attributes=attributes,
                                                              changed=["date_of_birth"], effective_on=date(2026, 5, 1),
                                                              signing_certificate_invalidated=True))
    await eventually(lambda: _born_on(store, holder.ref, date(1980, 4, 2)), what="the corrected date of birth kept")
    old_day = licence_request(holder, 181, transaction=LicenceTransaction.new, holder_date_of_birth=born)
    await licensing.police(old_day)
    assert (await licensing.fact(LicenceRequestRejected, request_id=old_day.request_id))["reason"] == "record_differs"
    right = licence_request(holder, 181, transaction=LicenceTransaction.new, holder_date_of_birth=date(1980, 4, 2))
    await licensing.police(right)
    assert (await licensing.fact(LicenceRecorded, request_id=right.request_id))["person_ref"] == holder.ref


async def _born_on(store, person_ref: str, day: date) -> bool:
    return (await store.resident(person_ref, with_cards=False)).date_of_birth == day


async def test_no_licence_is_recorded_for_a_deceased_holder(licensing: Licensing):
    """A conventional licence needs no card, so the card's revocation alone did not stop a licence
    being recorded for a dead person (most likely a mistyped number): the death itself does."""
    deceased, living = await licensing.resident_with_card(171), await licensing.resident_with_card(172)
    await licensing.enrollment_fact(ResidentDeceased(person_ref=deceased.ref, died_on=date(2026, 5, 30)))
    await licensing.enrollment_fact(CardRevoked(person_ref=deceased.ref, card_number=deceased.card_number,
                                                 reason="deceased", revoked_at=NOW))
    await licensing.until_roadside(deceased.card_number, lambda r: r["card_status"] == "revoked")

    by_number = licence_request(deceased, 171, choice=HolderChoice.conventional_only, transaction=LicenceTransaction.new)
    by_card = licence_request(deceased, 173, choice=HolderChoice.both, by_number=False, by_card=True)
    for request in (by_number, by_card):
        await licensing.police(request)
        refused = await licensing.fact(LicenceRequestRejected, request_id=request.request_id)
        assert (refused["reason"], refused["person_ref"]) == ("holder_deceased", None)
        assert deceased.number.reveal() not in refused["message"]
        assert (await licensing.http.get(f"/licences/{request.licence_number}")).status_code == 404

    await licensing.police(licence_request(living, 172, choice=HolderChoice.conventional_only))
    assert (await licensing.fact(LicenceRecorded, person_ref=living.ref))["holder_choice"] == "conventional_only"


async def test_a_request_sent_again_under_a_new_event_id_gets_the_facts_it_got_then_with_their_ids(licensing: Licensing):
    """A police retry after a timeout: the answer is the one given then (the card it was recorded on,
    not the holder's card now), under the same fact ids, so the police can tell it is the same answer."""
    holder = await licensing.resident_with_card(141)
    first = licence_request(holder, 141, choice=HolderChoice.both)
    await licensing.police(first)
    await licensing.fact(LicenceRecorded, request_id=first.request_id)
    await licensing.card_lost_and_reissued(holder.ref, holder.card_number, lost_at=NOW, issued_on=date(2026, 6, 2))
    await licensing.fact(LicenceReRecordingNeeded, person_ref=holder.ref)
    refused = licence_request(holder, 142, my_number=a_number(149))  # nobody's card: refused
    await licensing.police(refused)
    await licensing.fact(LicenceRequestRejected, request_id=refused.request_id)

    await licensing.police(first)  # both sent again, each under a new event id
    await licensing.police(refused)
    answers = {}
    for request, fact_type in ((first, LicenceRecorded), (refused, LicenceRequestRejected)):
        await licensing.facts.wait_for(
            lambda records, t=fact_type, r=request: len([x for x in records if x.type == t.event_type
                                                         and x.json()["request_id"] == r.request_id]) == 2,
            what=f"{fact_type.__name__} again")
        answers[request.request_id] = [(r.id, r.json()) for r in licensing.facts.of_type(fact_type.event_type)
                                       if r.json()["request_id"] == request.request_id]
    for then, again in answers.values():
        assert again == then, "the same fact, under the same id"
    assert answers[first.request_id][1][1]["card_number"] == holder.card_number, "the card it was recorded on"
