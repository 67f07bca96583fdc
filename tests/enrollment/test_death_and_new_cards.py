"""A death recorded while a card is being issued (an application or a reissue) leaves no active
card behind: the death is written before the held card is revoked, and a new card looks at the
resident once it is stored, so one of the two always sees the other. Run at the use cases, with
the other request slipped in between two steps."""

from __future__ import annotations

from datetime import date

import pytest
from mynumber_contracts.enrollment import (
    ChangeResidentAttributes,
    Channel,
    RecordDeath,
    RecordMoveAbroad,
    ReportCardLost,
    RequestCardReissue,
)

from services.enrollment.handlers import (
    apply_for_card,
    change_resident_attributes,
    record_death,
    record_move_abroad,
    register_resident,
    report_card_lost,
    request_card_reissue,
)
from services.kit.idempotency import EarlierFacts
from tests.enrollment.support import TODAY, application, kinds, new_number, registration, use_cases

DIED_ON = date(2025, 6, 1)


async def forget_outcomes(deps) -> None:
    await deps.store.outcomes.delete_many({})


def slipped_in(run, monkeypatch, use_case, event, *, after_insert: bool = False, **how) -> list:
    """Run `use_case` on `event` once, just before (or just after) the next card is stored; the
    list gets its facts."""
    store, insert_card, ran = run.deps.store, run.deps.store.insert_card, []

    async def insert_around(card):
        if not after_insert and not ran:
            ran.append(await run.run(use_case, event, **how))
        stored = await insert_card(card)
        if after_insert and not ran:
            ran.append(await run.run(use_case, event, **how))
        return stored

    monkeypatch.setattr(store, "insert_card", insert_around)
    return ran


def the_death_slipped_in(run, monkeypatch, number, *, after_insert: bool = False) -> list:
    """Record the death once, just before (or just after) the next card is stored."""
    return slipped_in(run, monkeypatch, record_death, RecordDeath(my_number=number, died_on=DIED_ON),
                      after_insert=after_insert, event_id="death")


async def test_a_death_recorded_while_an_application_is_issued_revokes_the_new_card(settings_for, monkeypatch):
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        await run.run(register_resident, registration(number), event_id="e1")
        person_ref = run.deps.people.for_number(number)
        deaths = the_death_slipped_in(run, monkeypatch, number)

        facts = await run.run(apply_for_card, application(number.reveal(), application_id="app-1"), event_id="e2")

        assert kinds(deaths[0]) == ["ResidentDeceased"], "the slot was claimed, but no card was stored yet"
        [card] = await run.deps.store.cards_of(person_ref)
        assert card.state == "revoked", "a dead person's card must not stay active"
        assert kinds(facts) == ["ApplicationAccepted", "CardIssued", "CardRevoked"]
        assert (facts[2].card_number, facts[2].reason) == (card.card_number, "deceased")
        assert await run.deps.store.card_claims.count_documents({"_id": person_ref}) == 0

        await forget_outcomes(run.deps)  # a crash before the outcome was recorded: run again
        assert await run.run(apply_for_card, application(number.reveal(), application_id="app-1"), event_id="e2") == facts


async def test_a_death_recorded_just_after_the_card_is_stored_is_told_with_the_application(settings_for, monkeypatch):
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        await run.run(register_resident, registration(number), event_id="e1")
        person_ref = run.deps.people.for_number(number)
        deaths = the_death_slipped_in(run, monkeypatch, number, after_insert=True)

        facts = await run.run(apply_for_card, application(number.reveal(), application_id="app-1"), event_id="e2")

        assert kinds(deaths[0]) == ["ResidentDeceased", "CardRevoked"], "the death found the stored card"
        [card] = await run.deps.store.cards_of(person_ref)
        assert card.state == "revoked"
        assert kinds(facts) == ["ApplicationAccepted", "CardIssued", "CardRevoked"]


async def test_a_death_recorded_while_a_card_is_reissued_revokes_the_new_card(settings_for, monkeypatch):
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        digits = number.reveal()
        await run.run(register_resident, registration(number), event_id="e1")
        await run.run(apply_for_card, application(digits, application_id="app-1"), event_id="e2")
        person_ref = run.deps.people.for_number(number)
        deaths = the_death_slipped_in(run, monkeypatch, number)
        reissue = RequestCardReissue(request_id="re-1", my_number=digits, office_id="municipality/131016",
                                     requested_on=TODAY, photo_ref="photo/new")

        facts = await run.run(request_card_reissue, reissue, event_id="e3")

        assert kinds(deaths[0]) == ["ResidentDeceased"], "the old card was already replaced, the new one not yet stored"
        old, new = await run.deps.store.cards_of(person_ref)
        assert (old.state, new.state) == ("reissued", "revoked")
        assert kinds(facts) == ["CardReissued", "CardRevoked"]
        assert (facts[1].card_number, facts[1].reason) == (new.card_number, "deceased")
        assert await run.deps.store.card_claims.count_documents({"_id": person_ref}) == 0

        await forget_outcomes(run.deps)
        assert await run.run(request_card_reissue, reissue, event_id="e3") == facts


async def test_a_card_request_run_again_after_the_death_gives_its_own_facts(settings_for):
    """A loss report that suspended the card, then the death that revoked it; the report run again
    (a crash before its outcome was recorded) finds its own move instead of refusing a dead person."""
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        digits = number.reveal()
        await run.run(register_resident, registration(number), event_id="e1")
        await run.run(apply_for_card, application(digits, application_id="app-1"), event_id="e2")
        lost = ReportCardLost(request_id="lost-1", my_number=digits, office_id="portal/myna-portal")
        first = await run.run(report_card_lost, lost, event_id="e3")
        death = await run.run(record_death, RecordDeath(my_number=number, died_on=DIED_ON), event_id="e4")

        await forget_outcomes(run.deps)
        again = await run.run(report_card_lost, lost, event_id="e3")

        assert kinds(first) == ["CardSuspended"] and kinds(death) == ["ResidentDeceased", "CardRevoked"]
        assert again == first
        [card] = await run.deps.store.cards_of(run.deps.people.for_number(number))
        assert card.state == "revoked"


async def answer(run, use_case, event, event_id: str):
    """The use case's own answer (facts, or the kit's EarlierFacts) for an event with this id."""
    from mynumber_contracts import Envelope

    from services.kit.messaging import HandlerContext

    envelope = Envelope(id=event_id, source="municipality/131016", type=event.event_type, time=run.clock.now())
    return await use_case(event, HandlerContext(envelope=envelope, clock=run.clock, deps=run.deps))


async def test_a_death_sent_again_under_a_new_event_id_gives_its_facts_with_their_ids(settings_for):
    """The municipality's retry after a timeout: the same death, the card's revocation with it,
    under the first event's ids, so the services that keep copies apply them once."""
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        await run.run(register_resident, registration(number), event_id="e1")
        await run.run(apply_for_card, application(number.reveal(), application_id="app-1"), event_id="e2")
        death = RecordDeath(my_number=number, died_on=DIED_ON)
        first = await answer(run, record_death, death, "death-1")

        again = await answer(run, record_death, death, "death-2")

        assert kinds(first) == ["ResidentDeceased", "CardRevoked"]
        assert isinstance(again, EarlierFacts) and again.event_id == "death-1"
        assert list(again.facts) == list(first)


async def test_a_move_abroad_sent_again_under_a_new_event_id_gives_its_fact_with_its_id(settings_for):
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        await run.run(register_resident, registration(number), event_id="e1")
        move = RecordMoveAbroad(my_number=number, moved_on=DIED_ON, destination_country="DE")
        first = await answer(run, record_move_abroad, move, "move-1")

        again = await answer(run, record_move_abroad, move, "move-2")

        assert kinds(first) == ["ResidentMovedAbroad"]
        assert isinstance(again, EarlierFacts) and again.event_id == "move-1"
        assert list(again.facts) == list(first)


async def a_holder(run, **details):
    number = new_number()
    await run.run(register_resident, registration(number, **details), event_id=f"reg-{number.reveal()[:8]}")
    await run.run(apply_for_card, application(number.reveal()))
    [card] = await run.deps.store.cards_of(run.deps.people.for_number(number))
    return number, card


async def test_a_foreign_nationals_move_abroad_ends_the_card(settings_for):
    """Foreign nationals cannot keep a card abroad (facts §2): the move revokes it and frees the slot."""
    async with use_cases(settings_for("enrollment")) as run:
        number, card = await a_holder(run, nationality="VN", residence_status="permanent_resident")

        facts = await run.run(record_move_abroad, RecordMoveAbroad(my_number=number, moved_on=DIED_ON, destination_country="VN"))

        assert kinds(facts) == ["ResidentMovedAbroad", "CardRevoked"]
        assert (facts[1].card_number, facts[1].reason) == (card.card_number, "moved abroad")
        assert (await run.deps.store.card(card.card_number)).state == "revoked"
        assert await run.deps.store.card_claims.count_documents({"_id": card.person_ref}) == 0


async def test_a_move_abroad_before_27_may_2024_ended_the_card_and_an_embassy_may_issue_a_new_one(settings_for):
    async with use_cases(settings_for("enrollment")) as run:
        number, card = await a_holder(run)
        moved = await run.run(record_move_abroad, RecordMoveAbroad(my_number=number, moved_on=date(2024, 5, 1)))
        assert kinds(moved) == ["ResidentMovedAbroad", "CardRevoked"]

        at_embassy = application(number.reveal(), Channel.diplomatic_office, photo_ref="photo/1")
        facts = await run.run(apply_for_card, at_embassy)

        assert kinds(facts) == ["ApplicationAccepted", "CardIssued"], "a Japanese national abroad may hold a new card"
        new = await run.deps.store.card(facts[1].card_number)
        assert new.state == "active"


async def test_a_japanese_national_who_moves_abroad_now_keeps_the_card(settings_for):
    async with use_cases(settings_for("enrollment")) as run:
        number, card = await a_holder(run)
        facts = await run.run(record_move_abroad, RecordMoveAbroad(my_number=number, moved_on=DIED_ON))
        assert kinds(facts) == ["ResidentMovedAbroad"]
        assert (await run.deps.store.card(card.card_number)).state == "active"


async def test_a_death_or_move_abroad_run_again_after_a_crash_before_the_revocation_finishes_it(settings_for, monkeypatch):
    async with use_cases(settings_for("enrollment")) as run:
        died, _ = await a_holder(run)
        left, _ = await a_holder(run, nationality="US", residence_status="permanent_resident")
        for use_case, event in [(record_death, RecordDeath(my_number=died, died_on=DIED_ON)),
                                (record_move_abroad, RecordMoveAbroad(my_number=left, moved_on=DIED_ON))]:
            store, transition_card = run.deps.store, run.deps.store.transition_card

            async def crash(*args, **kwargs):
                raise ConnectionError("the process died")

            monkeypatch.setattr(store, "transition_card", crash)
            with pytest.raises(ConnectionError):
                await run.run(use_case, event, event_id=f"crash-{use_case.__name__}")
            monkeypatch.setattr(store, "transition_card", transition_card)

            facts = await run.run(use_case, event, event_id=f"crash-{use_case.__name__}")

            assert kinds(facts)[1:] == ["CardRevoked"], use_case.__name__
            [card] = await store.cards_of(run.deps.people.for_number(event.my_number))
            assert card.state == "revoked"


async def test_a_name_change_while_a_card_is_issued_invalidates_the_new_cards_signing_certificate(settings_for, monkeypatch):
    """The new card was built from the name read before the change; the change found no card yet."""
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        await run.run(register_resident, registration(number), event_id="e1")
        rename = ChangeResidentAttributes(my_number=number, name_kanji="佐藤 太郎", name_kana="サトウ タロウ", effective_on=TODAY)
        ran = slipped_in(run, monkeypatch, change_resident_attributes, rename)

        await run.run(apply_for_card, application(number.reveal(), application_id="app-1"))

        assert ran[0][0].signing_certificate_invalidated is False, "no card was stored when the change ran"
        [card] = await run.deps.store.cards_of(run.deps.people.for_number(number))
        assert card.signing_certificate_valid is False


async def test_an_address_change_while_a_card_is_reissued_invalidates_the_new_cards_signing_certificate(settings_for, monkeypatch):
    async with use_cases(settings_for("enrollment")) as run:
        number, _ = await a_holder(run)
        move = ChangeResidentAttributes(my_number=number, address="東京都港区芝公園4-2-8", effective_on=TODAY)
        slipped_in(run, monkeypatch, change_resident_attributes, move)

        facts = await run.run(request_card_reissue, RequestCardReissue(
            request_id="re-1", my_number=number.reveal(), office_id="municipality/131016", requested_on=TODAY, photo_ref="p"))

        new = await run.deps.store.card(facts[0].card_number)
        assert (new.state, new.signing_certificate_valid) == ("active", False)


async def test_a_card_issued_after_a_change_keeps_a_valid_signing_certificate(settings_for):
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        await run.run(register_resident, registration(number), event_id="e1")
        await run.run(change_resident_attributes, ChangeResidentAttributes(my_number=number, name_kanji="佐藤 太郎",
                                                                           name_kana="サトウ タロウ", effective_on=TODAY))
        facts = await run.run(apply_for_card, application(number.reveal()))
        assert (await run.deps.store.card(facts[1].card_number)).signing_certificate_valid is True
