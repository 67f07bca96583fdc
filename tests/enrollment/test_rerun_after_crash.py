"""A use case may run twice for one event (a crash after its writes, before the kit recorded
them). The second run recognises its own writes and returns the same facts, with no second
effect. Simulated by running the use case, forgetting its recorded outcome, and running it again."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest
from mynumber_contracts import MyNumber, Sex
from mynumber_contracts.enrollment import (
    ChangeResidentAttributes,
    CorrectionReason,
    CorrectResidentRecord,
    RecordDeath,
    ReportCardFound,
    ReportCardLost,
    RequestCardReissue,
    ReturnCard,
)

from services.enrollment.domain import new_certificate_id
from services.enrollment.handlers import (
    ConcurrentChange,
    apply_for_card,
    change_resident_attributes,
    correct_resident_record,
    record_death,
    register_resident,
    report_card_found,
    report_card_lost,
    request_card_reissue,
    return_card,
)
from tests.enrollment.support import TODAY, application, new_number, registration, use_cases


async def forget_outcomes(deps) -> None:
    await deps.store.outcomes.delete_many({})


async def test_every_use_case_rerun_after_a_crash_returns_the_same_facts(settings_for):
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        digits = number.reveal()
        steps = [
            (register_resident, registration(number), "e1"),
            (apply_for_card, application(digits, application_id="app-1"), "e2"),
            (report_card_lost, ReportCardLost(request_id="r1", my_number=digits, office_id="portal/myna-portal"), "e3"),
            (request_card_reissue, RequestCardReissue(request_id="r2", my_number=digits, office_id="municipality/131016",
                                                      requested_on=TODAY, photo_ref="p"), "e4"),
            (change_resident_attributes, ChangeResidentAttributes(my_number=number, address="東京都港区1-1", effective_on=TODAY), "e5"),
            (correct_resident_record, CorrectResidentRecord(my_number=number, date_of_birth=date(1990, 4, 10), effective_on=TODAY,
                                                            date_of_birth_on_record=date(1990, 4, 1), sex_on_record=Sex.male,
                                                            reason=CorrectionReason.clerical_error), "e5b"),
            (return_card, ReturnCard(request_id="r3", my_number=digits, office_id="municipality/131016"), "e6"),
            (apply_for_card, application(digits, application_id="app-2"), "e7"),
            (record_death, RecordDeath(my_number=number, died_on=date(2025, 6, 1)), "e8"),
        ]
        for use_case, event, event_id in steps:
            first = await run.run(use_case, event, event_id=event_id)
            await forget_outcomes(run.deps)
            second = await run.run(use_case, event, event_id=event_id)
            assert second == first, use_case.__name__
            assert first and "Rejected" not in type(first[0]).__name__, (use_case.__name__, first)

        person_ref = run.deps.people.for_number(number)
        cards = await run.deps.store.cards_of(person_ref)
        assert [c.state for c in cards] == ["reissued", "returned", "revoked"], "one card per step, never two"
        assert await run.deps.store.card_claims.count_documents({}) == 0


async def test_a_card_is_found_by_its_certificate_id_and_only_by_the_one_it_kept(settings_for):
    """Kiosks name a card by its certificate id. A re-run of the card's insert draws another id,
    which the stored card never takes; that id must find nothing."""
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        await run.run(register_resident, registration(number), event_id="e1")
        await run.run(apply_for_card, application(number.reveal(), application_id="app-1"), event_id="e2")
        store = run.deps.store
        [card] = await store.cards_of(run.deps.people.for_number(number))
        assert await store.card_by_certificate(card.certificate_id) == card

        rerun = replace(card, certificate_id=new_certificate_id())
        assert await store.insert_card(rerun) == card, "the first insert stands"
        assert await store.card_by_certificate(rerun.certificate_id) is None
        assert await store.card_by_certificate(new_certificate_id()) is None
        assert await store.card_by_certificate(card.certificate_id) == card


async def test_a_move_recorded_but_never_made_is_not_taken_for_done(settings_for):
    """transition_card writes its lookup (request key -> card) before it moves the card. After a
    crash between the two, the re-run must see the card as not yet moved, and move it."""
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        digits = number.reveal()
        await run.run(register_resident, registration(number), event_id="e1")
        await run.run(apply_for_card, application(digits, application_id="app-1"), event_id="e2")
        store = run.deps.store
        [card] = await store.cards_of(run.deps.people.for_number(number))
        lost = ReportCardLost(request_id="r1", my_number=digits, office_id="municipality/131016")
        key = "card-request/report_lost/municipality/131016/r1"
        await store.card_moves.insert_one({"_id": key, "card_number": card.card_number})  # the crash
        assert await store.card_moved_by(key) is None

        facts = await run.run(report_card_lost, lost, event_id="e3")
        assert type(facts[0]).__name__ == "CardSuspended", facts
        moved = await store.card_moved_by(key)
        assert moved is not None and moved.card_number == card.card_number and moved.state == "suspended"


async def a_card_reported_lost(run) -> tuple[MyNumber, ReportCardLost]:
    """A registered resident with a card (events e1, e2), and the report of its loss (not yet run)."""
    number = new_number()
    await run.run(register_resident, registration(number), event_id="e1")
    await run.run(apply_for_card, application(number.reveal(), application_id="app-1"), event_id="e2")
    return number, ReportCardLost(request_id="lost-1", my_number=number.reveal(), office_id="portal/myna-portal")


async def test_two_consumers_running_one_card_request_at_once_agree_that_it_moved_the_card(settings_for, monkeypatch):
    """During a rebalance, a consumer that has not yet noticed it lost a partition and the one that
    took it over can run the same request at once. If the other run moves the card between this
    run's two reads (has this request moved it? what state is it in?), the state refuses the action
    because of this very request: both runs must still report the move, not a refusal."""
    async with use_cases(settings_for("enrollment")) as run:
        number, lost = await a_card_reported_lost(run)

        store, other_run = run.deps.store, []
        held_card = store.held_card

        async def the_other_consumer_moves_it_first(person_ref):
            if not other_run:  # between this run's two reads, the duplicate runs to its end
                monkeypatch.setattr(store, "held_card", held_card)
                other_run.append(await run.run(report_card_lost, lost, event_id="e3"))
                await forget_outcomes(run.deps)  # its outcome not yet recorded when this run decides
            return await held_card(person_ref)

        monkeypatch.setattr(store, "held_card", the_other_consumer_moves_it_first)
        this_run = await run.run(report_card_lost, lost, event_id="e3")

        assert [type(fact).__name__ for fact in other_run[0]] == ["CardSuspended"]
        assert this_run == other_run[0]
        [card] = await store.cards_of(run.deps.people.for_number(number))
        assert card.state == "suspended"


async def test_a_card_request_run_again_after_a_later_request_moved_the_card_changes_nothing(settings_for):
    """The second consumer can also reach a request after the first has run that request and the
    next one (the card lost, then found): the card is active again, which allows 'lost', but this
    request's move is already done. It must give the same facts and not suspend the card again."""
    async with use_cases(settings_for("enrollment")) as run:
        number, lost = await a_card_reported_lost(run)
        found = ReportCardFound(request_id="found-1", my_number=number.reveal(), office_id="municipality/131016")
        first = await run.run(report_card_lost, lost, event_id="e3")
        run.clock.advance(timedelta(minutes=5))
        assert [type(f).__name__ for f in await run.run(report_card_found, found, event_id="e4")] == ["CardResumed"]

        await forget_outcomes(run.deps)  # the second consumer decided before the first recorded them
        again = await run.run(report_card_lost, lost, event_id="e3")

        assert again == first and [type(f).__name__ for f in first] == ["CardSuspended"]
        [card] = await run.deps.store.cards_of(run.deps.people.for_number(number))
        assert card.state == "active"
        await forget_outcomes(run.deps)
        found_again = await run.run(report_card_found, found, event_id="e4")  # its own move, the card's last
        assert [type(f).__name__ for f in found_again] == ["CardResumed"]
        [card] = await run.deps.store.cards_of(run.deps.people.for_number(number))
        assert card.state == "active"


def address_change(number: MyNumber, address: str) -> ChangeResidentAttributes:
    return ChangeResidentAttributes(my_number=number, address=address, effective_on=TODAY)


async def address_of(run, number: MyNumber) -> str:
    stored = await run.deps.store.resident(run.deps.people.for_number(number))
    return stored.resident.attributes.address


async def test_a_resident_change_run_again_after_a_later_change_gives_its_facts_and_changes_nothing(settings_for):
    """A second consumer can reach a change after the first has run it and the next one: the
    record no longer shows this change as its last, but it must not be written back."""
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        await run.run(register_resident, registration(number), event_id="e1")
        first = await run.run(change_resident_attributes, address_change(number, "東京都港区1-1"), event_id="e2")
        await run.run(change_resident_attributes, address_change(number, "東京都新宿区2-2"), event_id="e3")

        again = await run.run(change_resident_attributes, address_change(number, "東京都港区1-1"), event_id="e2")

        assert [type(f).__name__ for f in first] == ["ResidentAttributesChanged"]
        assert again == first, "the same facts, byte for byte, so no service downstream sees a reused event id"
        assert await address_of(run, number) == "東京都新宿区2-2"


async def test_a_correction_run_again_after_later_changes_gives_its_facts_and_changes_nothing(settings_for):
    """The same for a corrected date of birth: run again after a later address change and a later
    correction of the sex, it gives its own facts (the attributes it left) and writes nothing back."""
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        await run.run(register_resident, registration(number), event_id="e1")
        birthday = CorrectResidentRecord(my_number=number, date_of_birth=date(1990, 4, 10), effective_on=TODAY,
                                         date_of_birth_on_record=date(1990, 4, 1), sex_on_record=Sex.male,
                                         reason=CorrectionReason.clerical_error)
        first = await run.run(correct_resident_record, birthday, event_id="e2")
        await run.run(change_resident_attributes, address_change(number, "東京都港区1-1"), event_id="e3")
        await run.run(correct_resident_record, CorrectResidentRecord(my_number=number, sex=Sex.female, effective_on=TODAY,
                                                                     date_of_birth_on_record=date(1990, 4, 10), sex_on_record=Sex.male,
                                                                     reason=CorrectionReason.legal_change), event_id="e4")

        again = await run.run(correct_resident_record, birthday, event_id="e2")

        [fact] = first
        assert (fact.changed, fact.attributes.date_of_birth, fact.attributes.sex) == (["date_of_birth"], date(1990, 4, 10), Sex.male)
        assert again == first, "the same facts, byte for byte"
        stored = await run.deps.store.resident(run.deps.people.for_number(number))
        attributes = stored.resident.attributes
        assert (attributes.date_of_birth, attributes.sex, attributes.address) == (date(1990, 4, 10), Sex.female, "東京都港区1-1")
        assert [c["key"] for c in stored.changes] == ["change/e2", "change/e3", "change/e4"], "each change written once"


async def test_two_consumers_running_one_resident_change_at_once_write_it_once(settings_for, monkeypatch):
    """The stale run read the record before the other consumer ran this change and the next one;
    its write must find the record changed, and it must then see its change as done."""
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        await run.run(register_resident, registration(number), event_id="e1")
        store, other_run = run.deps.store, []
        change_resident = store.change_resident

        async def the_other_consumer_runs_it_and_the_next_first(resident, **details):
            if not other_run:  # between this run's read and its write
                monkeypatch.setattr(store, "change_resident", change_resident)
                other_run.append(await run.run(change_resident_attributes, address_change(number, "東京都港区1-1"), event_id="e2"))
                await run.run(change_resident_attributes, address_change(number, "東京都新宿区2-2"), event_id="e3")
            return await change_resident(resident, **details)

        monkeypatch.setattr(store, "change_resident", the_other_consumer_runs_it_and_the_next_first)
        this_run = await run.run(change_resident_attributes, address_change(number, "東京都港区1-1"), event_id="e2")

        assert this_run == other_run[0] and [type(f).__name__ for f in this_run] == ["ResidentAttributesChanged"]
        assert await address_of(run, number) == "東京都新宿区2-2"
        stored = await store.resident(run.deps.people.for_number(number))
        assert [c["key"] for c in stored.changes] == ["change/e2", "change/e3"], "each change written once"


async def test_a_resident_that_keeps_changing_under_a_change_is_given_up_on(settings_for, monkeypatch):
    """Five reads, five records changed meanwhile: the event is dead-lettered for a person to look at."""
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        await run.run(register_resident, registration(number), event_id="e1")
        writes = []

        async def always_changed_meanwhile(resident, **details):
            writes.append(details["version"])
            return False

        monkeypatch.setattr(run.deps.store, "change_resident", always_changed_meanwhile)
        with pytest.raises(ConcurrentChange, match="the resident kept changing"):
            await run.run(change_resident_attributes, address_change(number, "東京都港区1-1"), event_id="e2")
        assert len(writes) == 5
        assert await address_of(run, number) == "東京都千代田区永田町1-7-1"


async def test_a_registration_run_again_after_a_later_registration_gives_its_facts_and_changes_nothing(settings_for):
    """The same for a registration (a resident moving in from another municipality): run again
    after the next move was registered, it must not register the earlier move again."""
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        await run.run(register_resident, registration(number), event_id="e1")
        moving_in = registration(number, municipality_code="271004", address="大阪府大阪市北区1-1")
        first = await run.run(register_resident, moving_in, event_id="e2")
        await run.run(register_resident, registration(number, municipality_code="011002", address="北海道札幌市中央区3-3"),
                      event_id="e3")

        await forget_outcomes(run.deps)
        again = await run.run(register_resident, moving_in, event_id="e2")

        assert [type(f).__name__ for f in first] == ["ResidentRegistered", "ResidentAttributesChanged"]
        assert again == first
        stored = await run.deps.store.resident(run.deps.people.for_number(number))
        assert (stored.resident.municipality_code, stored.resident.attributes.address) == ("011002", "北海道札幌市中央区3-3")


async def test_two_consumers_running_one_registration_at_once_write_it_once(settings_for, monkeypatch):
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        await run.run(register_resident, registration(number), event_id="e1")
        moving_in = registration(number, municipality_code="271004", address="大阪府大阪市北区1-1")
        store, other_run = run.deps.store, []
        update_registration = store.update_registration

        async def the_other_consumer_runs_it_and_a_change_first(resident, **details):
            if not other_run:  # between this run's read and its write
                monkeypatch.setattr(store, "update_registration", update_registration)
                other_run.append(await run.run(register_resident, moving_in, event_id="e2"))
                await run.run(change_resident_attributes, address_change(number, "大阪府大阪市中央区4-4"), event_id="e3",
                              source="municipality/271004")  # Osaka keeps the record now
                await forget_outcomes(run.deps)  # its outcome not yet recorded when this run decides
            return await update_registration(resident, **details)

        monkeypatch.setattr(store, "update_registration", the_other_consumer_runs_it_and_a_change_first)
        this_run = await run.run(register_resident, moving_in, event_id="e2")

        assert this_run == other_run[0]
        assert await address_of(run, number) == "大阪府大阪市中央区4-4"
        stored = await store.resident(run.deps.people.for_number(number))
        assert [c["key"] for c in stored.changes] == [f"registration/271004/{moving_in.request_id}", "change/e3"]


async def test_a_record_written_before_the_lists_still_recognises_its_last_registration_and_change(settings_for):
    """Records from before session 12 hold only `last_registration` and `last_change`, and no
    version: a re-run of either is still recognised, and the next change is written."""
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        registered = registration(number)
        await run.run(register_resident, registered, event_id="e1")
        first = await run.run(change_resident_attributes, address_change(number, "東京都港区1-1"), event_id="e2")
        residents, person_ref = run.deps.store.residents, run.deps.people.for_number(number)
        stored = await residents.find_one({"_id": person_ref})
        await residents.update_one({"_id": person_ref}, {
            "$set": {"last_registration": stored["registrations"][0], "last_change": stored["changes"][0]},
            "$unset": {"registrations": "", "changes": "", "version": ""},
        })

        assert await run.run(change_resident_attributes, address_change(number, "東京都港区1-1"), event_id="e2") == first
        await forget_outcomes(run.deps)
        again = await run.run(register_resident, registered, event_id="e1")
        assert [type(f).__name__ for f in again] == ["ResidentRegistered"], "recognised: not registered again"
        await run.run(change_resident_attributes, address_change(number, "東京都新宿区2-2"), event_id="e3")
        assert await address_of(run, number) == "東京都新宿区2-2"


async def test_an_application_run_again_after_its_card_was_returned_issues_no_second_card(settings_for):
    """A second consumer (during a rebalance) can run an application after the card it issued was
    returned and the person's slot freed. It must give the facts it gave, not issue another card."""
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        digits = number.reveal()
        await run.run(register_resident, registration(number), event_id="e1")
        first = await run.run(apply_for_card, application(digits, application_id="app-1"), event_id="e2")
        returned = await run.run(return_card, ReturnCard(request_id="r1", my_number=digits, office_id="municipality/131016"),
                                 event_id="e3")
        assert [type(f).__name__ for f in returned] == ["CardReturned"]

        await forget_outcomes(run.deps)
        again = await run.run(apply_for_card, application(digits, application_id="app-1"), event_id="e2")

        assert again == first
        cards = await run.deps.store.cards_of(run.deps.people.for_number(number))
        assert [c.state for c in cards] == ["returned"], "one card for one application"
        assert await run.deps.store.card_claims.count_documents({}) == 0
