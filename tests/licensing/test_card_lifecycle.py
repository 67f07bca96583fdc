"""Card events and the licence on the card: lost makes it unusable, found makes it usable again,
a reissued card needs the licence recorded again (the police are told), and the licence stays valid."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

from mynumber_contracts.enrollment import CardReissued, CardResumed, CardSuspended, CardValidityChanged
from mynumber_contracts.licensing import (
    HolderChoice,
    LicenceRecorded,
    LicenceRecordedOnNewCard,
    LicenceRequestRejected,
    LicenceReRecordingNeeded,
    LicenceTransaction,
    LicenceUnusable,
    LicenceUsableAgain,
    RecordLicenceOnNewCard,
)

from tests.licensing.conftest import NOW, Licensing, a_licence_number, licence_request
from tests.support.polling import eventually


async def test_lost_then_reissued_then_the_licence_is_recorded_again(licensing: Licensing):
    holder = await licensing.resident_with_card(201)
    licence_number = a_licence_number(201)
    old_card = holder.card_number
    await licensing.police(licence_request(holder, 201, choice=HolderChoice.both))
    await licensing.fact(LicenceRecorded, person_ref=holder.ref)

    # Lost, then found: unusable, then usable again.
    await licensing.enrollment_fact(CardSuspended(person_ref=holder.ref, card_number=old_card, suspended_at=NOW))
    unusable = await licensing.fact(LicenceUnusable, person_ref=holder.ref)
    assert (unusable["reason"], unusable["card_number"], unusable["licence_number"]) == ("lost", old_card, licence_number)
    assert (await licensing.roadside(old_card))["status"] == "card_unusable"
    await licensing.enrollment_fact(CardResumed(person_ref=holder.ref, card_number=old_card, resumed_at=NOW + timedelta(hours=2)))
    assert (await licensing.fact(LicenceUsableAgain, person_ref=holder.ref))["card_number"] == old_card
    assert (await licensing.roadside(old_card))["valid"] is True

    # Lost for good, and reissued: the police are told to record the licence on the new card.
    new_card = await licensing.card_lost_and_reissued(holder.ref, old_card, lost_at=NOW + timedelta(days=1),
                                                      issued_on=date(2026, 6, 10))
    needed = await licensing.fact(LicenceReRecordingNeeded, person_ref=holder.ref)
    assert (needed["previous_card_number"], needed["card_number"], needed["licence_number"]) == (old_card, new_card, licence_number)
    assert len(licensing.facts_of(LicenceUnusable, person_ref=holder.ref)) == 2
    record = (await licensing.http.get(f"/licences/{licence_number}")).json()
    assert record["revoked_on"] is None and record["re_recording_card_number"] == new_card, "the licence stays valid"
    pending = await licensing.roadside(new_card)
    assert (pending["valid"], pending["status"], pending["licence_number"]) == (True, "re_recording_pending", licence_number)
    assert (await licensing.roadside(old_card))["card_status"] == "replaced"

    # The police record it again, by number only: it goes on the holder's current card.
    rerecord = RecordLicenceOnNewCard(request_id="pol-rerecord-201", my_number=holder.number, licence_number=licence_number)
    await licensing.police(rerecord)
    recorded = await licensing.fact(LicenceRecordedOnNewCard, person_ref=holder.ref)
    assert (recorded["card_number"], recorded["previous_card_number"], recorded["fee_yen"]) == (new_card, old_card, 0)
    valid = await licensing.roadside(new_card)
    assert (valid["valid"], valid["status"], valid["classes"]) == (True, "valid", ["ordinary", "ordinary_motorcycle"])
    old = await licensing.roadside(old_card)
    assert (old["valid"], old["status"]) == (False, "no_licence_on_card")

    # The same request redelivered under a new event id is answered the same; another one is refused.
    await licensing.police(rerecord)
    await licensing.police(RecordLicenceOnNewCard(request_id="pol-rerecord-201-again", card_number=new_card,
                                                  licence_number=licence_number))
    refused = await licensing.fact(LicenceRequestRejected, request_id="pol-rerecord-201-again")
    assert refused["reason"] == "already_recorded"
    assert len(licensing.facts_of(LicenceRecordedOnNewCard, request_id="pol-rerecord-201")) == 2
    assert (await licensing.http.get(f"/licences/{licence_number}")).json()["card_number"] == new_card


async def test_a_conventional_licence_is_untouched_by_card_events_and_cannot_be_recorded_on_a_card(licensing: Licensing):
    holder = await licensing.resident_with_card(211)
    await licensing.police(licence_request(holder, 211, choice=HolderChoice.conventional_only))
    await licensing.fact(LicenceRecorded, person_ref=holder.ref)
    new_card = await licensing.card_lost_and_reissued(holder.ref, holder.card_number, lost_at=NOW,
                                                      issued_on=date(2026, 6, 10))
    await licensing.until_roadside(new_card, lambda r: r["status"] != "unknown_card")
    await licensing.police(RecordLicenceOnNewCard(request_id="pol-211", card_number=new_card,
                                                  licence_number=a_licence_number(211)))
    assert (await licensing.fact(LicenceRequestRejected, request_id="pol-211"))["reason"] == "not_a_card_licence"
    # Published in order on one partition: had the card events caused facts, they would precede the rejection.
    assert licensing.facts_of(LicenceUnusable) == [] and licensing.facts_of(LicenceReRecordingNeeded) == []


async def test_a_card_reissued_while_a_new_licence_is_being_recorded_asks_for_the_licence_on_the_new_card(
    licensing: Licensing, monkeypatch
):
    """The police's request read the holder's card before enrollment's reissue replaced it, and saves
    the licence after the reissue's use case found no licence to move: the licence must not stay on
    the replaced card unknown to the new one (the holder would be stopped with no licence on their card)."""
    holder = await licensing.resident_with_card(221)
    new_card = f"C-{uuid.uuid4().hex[:10].upper()}"
    licensing.take_in_before_the_next_licence_save(monkeypatch, CardReissued(
        person_ref=holder.ref, previous_card_number=holder.card_number, card_number=new_card, certificate_id="cert-221",
        issued_on=date(2026, 6, 1), expires_on=date(2036, 4, 1), certificate_expires_on=date(2031, 4, 1), photo_less=False,
    ))
    await licensing.police(licence_request(holder, 221, choice=HolderChoice.card_only, transaction=LicenceTransaction.new))
    assert (await licensing.fact(LicenceRecorded, person_ref=holder.ref))["card_number"] == holder.card_number

    on_new_card = await licensing.roadside(new_card)
    assert (on_new_card["valid"], on_new_card["status"], on_new_card["licence_number"]) == (
        True, "re_recording_pending", a_licence_number(221))
    needed = licensing.facts_of(LicenceReRecordingNeeded, person_ref=holder.ref)
    assert [(n["previous_card_number"], n["card_number"]) for n in needed] == [(holder.card_number, new_card)]


async def test_a_card_lost_while_a_new_licence_is_being_recorded_tells_the_police_the_licence_is_unusable(
    licensing: Licensing, monkeypatch
):
    holder = await licensing.resident_with_card(231)
    licensing.take_in_before_the_next_licence_save(
        monkeypatch, CardSuspended(person_ref=holder.ref, card_number=holder.card_number, suspended_at=NOW))
    await licensing.police(licence_request(holder, 231, choice=HolderChoice.both, transaction=LicenceTransaction.new))
    await licensing.fact(LicenceRecorded, person_ref=holder.ref)

    unusable = licensing.facts_of(LicenceUnusable, person_ref=holder.ref)
    assert [(u["reason"], u["card_number"], u["licence_number"]) for u in unusable] == [
        ("lost", holder.card_number, a_licence_number(231))]
    assert (await licensing.roadside(holder.card_number))["status"] == "card_unusable"


async def test_a_licence_saved_with_nothing_taken_in_meanwhile_reads_the_holders_cards_once(
    licensing: Licensing, monkeypatch
):
    """The catch-up after a save (the two tests above) rereads the holder's cards only when one of
    enrollment's facts changed the resident document in between; otherwise one read of the document."""
    store, card_reads = licensing.running.service.deps.store, []
    resident = store.resident

    async def counted(person_ref, *, with_cards=True):
        card_reads.append(with_cards)
        return await resident(person_ref, with_cards=with_cards)

    holder = await licensing.resident_with_card(241)
    monkeypatch.setattr(store, "resident", counted)
    await licensing.police(licence_request(holder, 241, choice=HolderChoice.card_only, transaction=LicenceTransaction.new))
    assert (await licensing.fact(LicenceRecorded, person_ref=holder.ref))["card_number"] == holder.card_number
    assert card_reads == [True], "the holder and their cards read once, before the save"


async def test_a_card_whose_validity_follows_a_renewed_period_of_stay_keeps_the_licence_usable(licensing: Licensing):
    """A foreign resident's card ends with the period of stay; enrollment's `CardValidityChanged`
    (a renewed stay, session 17) moves the expiry the roadside check reads."""
    old_end, new_end = date(2026, 9, 30), date(2029, 9, 30)
    holder = await licensing.resident_with_card(202, card_expires_on=old_end)
    await licensing.police(licence_request(holder, 202))
    await licensing.fact(LicenceRecorded, person_ref=holder.ref)
    after_old_end = datetime(2026, 10, 15, 1, 0, tzinfo=UTC)
    before = await licensing.roadside(holder.card_number, at=after_old_end)
    assert (before["valid"], before["card_status"]) == (False, "expired")

    await licensing.enrollment_fact(CardValidityChanged(person_ref=holder.ref, card_number=holder.card_number,
                                                        expires_on=new_end, certificate_expires_on=new_end,
                                                        effective_on=date(2026, 6, 1)))

    async def usable() -> dict | None:
        check = await licensing.roadside(holder.card_number, at=after_old_end)
        return check if check["valid"] else None

    after = await eventually(usable, what="the card's new expiry taken in")
    assert (after["status"], after["card_status"]) == ("valid", "active")
    later = await licensing.roadside(holder.card_number, at=datetime(2029, 10, 1, 1, 0, tzinfo=UTC))
    assert later["card_status"] == "expired", "expired after the new period"
    assert licensing.facts_of(LicenceUnusable, person_ref=holder.ref) == []


async def test_a_card_validity_fact_run_again_after_a_later_one_does_not_put_the_older_expiry_back(licensing: Licensing):
    holder = await licensing.resident_with_card(203, card_expires_on=date(2026, 9, 30))
    store = licensing.running.service.deps.store

    await store.set_card_expiry(holder.card_number, date(2027, 9, 30), person_ref=holder.ref, fact_id="validity-1")
    await store.set_card_expiry(holder.card_number, date(2029, 9, 30), person_ref=holder.ref, fact_id="validity-2")
    await store.set_card_expiry(holder.card_number, date(2027, 9, 30), person_ref=holder.ref, fact_id="validity-1")  # a late re-run
    await store.set_card_expiry("C-NOT-KNOWN", date(2027, 9, 30), person_ref="pr_nobody", fact_id="validity-3")

    assert (await store.card(holder.card_number)).expires_on == date(2029, 9, 30)
    assert await store.card("C-NOT-KNOWN") is None, "a card not known stays unknown"
