"""A foreign resident's card ends with the period of stay: no card is issued, new or reissued, on a
day after the period has ended (it would be expired on the day it is issued). A renewed or changed
period of stay, or a permanent status, recorded by the municipality of residence changes the held
card's expiry with it (`RecordPeriodOfStay`); a card already expired is not revived."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import pytest
from mynumber_contracts import MyNumber
from mynumber_contracts.enrollment import (
    ApplicationAccepted,
    CardValidityChanged,
    PeriodOfStayChanged,
    RecordDeath,
    RecordMoveAbroad,
    RecordPeriodOfStay,
    ReportCardLost,
    RequestCardReissue,
)

from services.enrollment.domain import CardAction, LastRequest
from services.enrollment.handlers import (
    ReusedRequestId,
    apply_for_card,
    change_record,
    record_death,
    record_move_abroad,
    record_period_of_stay,
    register_resident,
    report_card_lost,
    request_card_reissue,
)
from services.kit.idempotency import EarlierFacts
from tests.enrollment.support import (
    MUNICIPAL_OFFICE,
    TODAY,
    Enrollment,
    UseCases,
    application,
    apply,
    kinds,
    new_number,
    registration,
    use_cases,
)


async def test_an_application_made_before_the_period_of_stay_ended_gets_no_card_after_it(settings_for):
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        await run.run(register_resident, registration(number, nationality="VN", residence_status="student",
                                                      residence_period_end=TODAY - timedelta(days=1)), event_id="e1")

        facts = await run.run(apply_for_card, application(number.reveal(), applied_on=TODAY - timedelta(days=3)))

        assert kinds(facts) == ["ApplicationRejected"], facts
        assert facts[0].reason == "resident_state"
        assert await run.deps.store.cards_of(run.deps.people.for_number(number)) == []


async def test_a_reissue_after_the_period_of_stay_ended_is_refused(settings_for):
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        digits = number.reveal()
        period_end = TODAY + timedelta(days=10)
        await run.run(register_resident, registration(number, nationality="VN", residence_status="student",
                                                      residence_period_end=period_end), event_id="e1")
        [accepted, issued] = await run.run(apply_for_card, application(digits, application_id="app-1"))
        assert issued.expires_on == period_end

        run.clock.advance(timedelta(days=20))
        later = TODAY + timedelta(days=20)
        facts = await run.run(request_card_reissue, RequestCardReissue(
            request_id="re-1", my_number=digits, office_id="municipality/131016", requested_on=later, photo_ref="p"))

        assert kinds(facts) == ["CardRequestRejected"], facts
        assert facts[0].reason == "resident_state"
        [card] = await run.deps.store.cards_of(run.deps.people.for_number(number))
        assert (card.state, card.expires_on) == ("active", period_end), "the old card is left for the expiry sweep"


async def test_a_card_issued_on_the_last_day_of_the_period_of_stay_is_valid_that_day(settings_for):
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        await run.run(register_resident, registration(number, nationality="VN", residence_status="student",
                                                      residence_period_end=TODAY), event_id="e1")
        facts = await run.run(apply_for_card, application(number.reveal(), applied_on=TODAY - timedelta(days=3)))
        assert kinds(facts) == ["ApplicationAccepted", "CardIssued"]
        assert (facts[1].issued_on, facts[1].expires_on, facts[1].certificate_expires_on) == (TODAY, TODAY, TODAY)


# --- a renewed or changed period of stay (`RecordPeriodOfStay`, session 17) ---------------------

OLD_END = TODAY + timedelta(days=120)  # 30 September 2025
NEW_END = date(2028, 9, 30)
TWELVE_DIGITS = re.compile(r"\d{12}")


def renewal(number: MyNumber, *, status: str = "engineer", period_end: date | None = NEW_END,
            request_id: str | None = None, effective_on: date = TODAY) -> RecordPeriodOfStay:
    return RecordPeriodOfStay(request_id=request_id, my_number=number, residence_status=status,
                              residence_period_end=period_end, effective_on=effective_on)


async def foreign_card_holder(run: UseCases, *, period_end: date = OLD_END) -> tuple[MyNumber, str, Any]:
    """A student from Viet Nam, born on 1 April 1990, with a card issued today that ends with the period of stay."""
    number = new_number()
    await run.run(register_resident, registration(number, nationality="VN", residence_status="student",
                                                  residence_period_end=period_end), event_id=f"reg-{number.reveal()}")
    [_, issued] = await run.run(apply_for_card, application(number.reveal()))
    assert (issued.expires_on, issued.certificate_expires_on) == (period_end, period_end)
    return number, run.deps.people.for_number(number), issued


async def the_card(run: UseCases, person_ref: str):
    [card] = await run.deps.store.cards_of(person_ref)
    return card


async def test_a_renewed_period_of_stay_extends_the_held_card_and_the_expiry_sweep_leaves_it(settings_for):
    async with use_cases(settings_for("enrollment")) as run:
        number, person_ref, issued = await foreign_card_holder(run)

        facts = await run.run(record_period_of_stay, renewal(number), event_id="renewal-1")

        assert kinds(facts) == ["PeriodOfStayChanged", "CardValidityChanged"], facts
        changed, validity = facts
        assert (changed.person_ref, changed.residence_status, changed.residence_period_end, changed.effective_on) == (
            person_ref, "engineer", NEW_END, TODAY)
        assert (validity.person_ref, validity.card_number, validity.expires_on, validity.certificate_expires_on) == (
            person_ref, issued.card_number, NEW_END, NEW_END)
        stored = await run.deps.store.resident(person_ref)
        assert (stored.resident.residence_status, stored.resident.residence_period_end) == ("engineer", NEW_END)
        card = await the_card(run, person_ref)
        assert (card.state, card.expires_on, card.certificate_expires_on, card.certificate_id) == (
            "active", NEW_END, NEW_END, issued.certificate_id), "the same card, valid for the new period"
        day_after_old_end = OLD_END + timedelta(days=1)
        assert card.card_number not in [c.card_number for c in await run.deps.store.held_cards_past_expiry(day_after_old_end, 500)]
        assert not any(TWELVE_DIGITS.search(fact.model_dump_json()) for fact in facts)


async def test_a_permanent_status_gives_the_card_the_birthday_rule_expiry(settings_for):
    async with use_cases(settings_for("enrollment")) as run:
        number, person_ref, issued = await foreign_card_holder(run)

        facts = await run.run(record_period_of_stay, renewal(number, status="permanent_resident", period_end=None))

        assert kinds(facts) == ["PeriodOfStayChanged", "CardValidityChanged"], facts
        assert facts[0].residence_period_end is None
        # Born on 1 April 1990, issued on 2 June 2025: the 10th birthday after, the certificates' 5th.
        assert (facts[1].expires_on, facts[1].certificate_expires_on) == (date(2035, 4, 1), date(2030, 4, 1))
        card = await the_card(run, person_ref)
        assert (card.expires_on, card.certificate_expires_on) == (date(2035, 4, 1), date(2030, 4, 1))


async def test_a_card_reported_lost_follows_the_new_period_and_is_still_suspended(settings_for):
    async with use_cases(settings_for("enrollment")) as run:
        number, person_ref, issued = await foreign_card_holder(run)
        await run.run(report_card_lost, ReportCardLost(request_id="lost-1", my_number=number.reveal(), office_id=MUNICIPAL_OFFICE))

        facts = await run.run(record_period_of_stay, renewal(number))

        assert kinds(facts) == ["PeriodOfStayChanged", "CardValidityChanged"], facts
        card = await the_card(run, person_ref)
        assert (card.state, card.expires_on) == ("suspended", NEW_END)


async def test_a_resident_without_a_card_gets_one_for_the_new_period(settings_for):
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        await run.run(register_resident, registration(number, nationality="VN", residence_status="student",
                                                      residence_period_end=OLD_END), event_id="reg")

        facts = await run.run(record_period_of_stay, renewal(number))
        assert kinds(facts) == ["PeriodOfStayChanged"], "no card to change"

        [_, issued] = await run.run(apply_for_card, application(number.reveal()))
        assert issued.expires_on == NEW_END


async def test_a_card_already_expired_by_the_sweep_is_not_revived(settings_for):
    async with use_cases(settings_for("enrollment")) as run:
        number, person_ref, issued = await foreign_card_holder(run)
        run.clock.advance(timedelta(days=121))  # the day after the old period ended
        card = await the_card(run, person_ref)
        sweep = LastRequest(key=f"expiry/{card.card_number}", action=CardAction.expire, at=run.clock.now())
        assert await run.deps.store.transition_card(card, CardAction.expire, sweep) is not None
        await run.deps.store.release_card_slot(person_ref, card.card_number)

        facts = await run.run(record_period_of_stay, renewal(number, effective_on=OLD_END))

        assert kinds(facts) == ["PeriodOfStayChanged"], "the holder applies again"
        card = await the_card(run, person_ref)
        assert (card.state, card.expires_on) == ("expired", OLD_END)


async def test_a_card_past_its_last_day_that_the_sweep_has_not_reached_is_not_revived(settings_for):
    async with use_cases(settings_for("enrollment")) as run:
        number, person_ref, issued = await foreign_card_holder(run)
        run.clock.advance(timedelta(days=121))

        facts = await run.run(record_period_of_stay, renewal(number, effective_on=OLD_END))

        assert kinds(facts) == ["PeriodOfStayChanged"], facts
        card = await the_card(run, person_ref)
        assert (card.state, card.expires_on) == ("active", OLD_END), "left for the expiry sweep"


async def test_a_shorter_period_of_stay_shortens_the_card(settings_for):
    async with use_cases(settings_for("enrollment")) as run:
        number, person_ref, issued = await foreign_card_holder(run)
        shorter = TODAY + timedelta(days=30)

        facts = await run.run(record_period_of_stay, renewal(number, status="designated_activities", period_end=shorter))

        assert [(f.expires_on, f.certificate_expires_on) for f in facts if kinds([f]) == ["CardValidityChanged"]] == [
            (shorter, shorter)]
        assert (await the_card(run, person_ref)).expires_on == shorter


@pytest.mark.parametrize("case", ["deceased", "japanese", "abroad", "ended", "another_municipality", "unknown"])
async def test_a_period_of_stay_that_cannot_be_recorded_is_refused_and_changes_nothing(settings_for, case):
    async with use_cases(settings_for("enrollment")) as run:
        if case == "japanese":
            number = new_number()
            await run.run(register_resident, registration(number), event_id="reg")
            person_ref = run.deps.people.for_number(number)
        else:
            number, person_ref, issued = await foreign_card_holder(run)
        request, source = renewal(number), MUNICIPAL_OFFICE
        if case == "deceased":
            await run.run(record_death, RecordDeath(my_number=number, died_on=TODAY))
        elif case == "abroad":
            await run.run(record_move_abroad, RecordMoveAbroad(my_number=number, moved_on=TODAY))
        elif case == "ended":
            request = renewal(number, period_end=TODAY - timedelta(days=1))
        elif case == "another_municipality":
            source = "municipality/271004"
        elif case == "unknown":
            request = renewal(new_number())
        before = await run.deps.store.resident(person_ref)
        cards_before = await run.deps.store.cards_of(person_ref)

        facts = await run.run(record_period_of_stay, request.model_copy(update={"request_id": f"pos-{case}"}), source=source)

        assert kinds(facts) == ["ResidentRequestRejected"], facts
        [refused] = facts
        expected = {"another_municipality": "channel_not_allowed", "unknown": "unknown_resident"}.get(case, "resident_state")
        assert (refused.reason, refused.request_id, refused.request_type) == (
            expected, f"pos-{case}", RecordPeriodOfStay.event_type)
        assert refused.person_ref == (None if case in ("another_municipality", "unknown") else person_ref)
        assert not TWELVE_DIGITS.search(refused.model_dump_json())
        after = await run.deps.store.resident(person_ref)
        assert after.resident == before.resident and len(after.changes) == len(before.changes), "nothing recorded"
        assert [(c.state, c.expires_on) for c in await run.deps.store.cards_of(person_ref)] == [
            (c.state, c.expires_on) for c in cards_before]


async def test_a_period_of_stay_sent_again_with_its_request_id_after_a_later_one_gets_its_first_facts(settings_for):
    async with use_cases(settings_for("enrollment")) as run:
        number, person_ref, issued = await foreign_card_holder(run)
        first = await run.run(record_period_of_stay, renewal(number, request_id="pos-1"), event_id="e1")
        later_end = date(2030, 9, 30)
        await run.run(record_period_of_stay, renewal(number, period_end=later_end, request_id="pos-2",
                                                     effective_on=TODAY + timedelta(days=1)), event_id="e2")

        again = await run.answer(record_period_of_stay, renewal(number, request_id="pos-1"), event_id="e3")

        assert isinstance(again, EarlierFacts) and again.event_id == "e1", "the first facts, under the ids they had"
        assert again.facts == first
        card = await the_card(run, person_ref)
        assert card.expires_on == later_end, "the later period stays on the card"
        assert (await run.deps.store.resident(person_ref)).resident.residence_period_end == later_end

        with pytest.raises(ReusedRequestId):
            await run.answer(record_period_of_stay, renewal(number, period_end=date(2027, 1, 1), request_id="pos-1"),
                             event_id="e4")
        assert (await the_card(run, person_ref)).expires_on == later_end


async def renewed_twice(run: UseCases) -> tuple[MyNumber, str, list[Any], date]:
    """A card holder whose period of stay is renewed (event e1), then renewed again the next day (e2):
    the number, the person reference, e1's facts and the later period end."""
    number, person_ref, _ = await foreign_card_holder(run)
    first = await run.run(record_period_of_stay, renewal(number), event_id="e1")
    later_end = date(2030, 9, 30)
    await run.run(record_period_of_stay, renewal(number, period_end=later_end, effective_on=TODAY + timedelta(days=1)),
                  event_id="e2")
    return number, person_ref, first, later_end


async def test_a_period_of_stay_sent_again_without_a_request_id_after_a_later_one_gets_its_first_facts(settings_for):
    async with use_cases(settings_for("enrollment")) as run:
        number, person_ref, first, later_end = await renewed_twice(run)

        again = await run.answer(record_period_of_stay, renewal(number), event_id="e3")

        assert isinstance(again, EarlierFacts) and again.event_id == "e1"
        assert again.facts == first
        assert (await the_card(run, person_ref)).expires_on == later_end, "not put back to the older period"
        stored = await run.deps.store.resident(person_ref)
        assert stored.resident.residence_period_end == later_end and len(stored.changes) == 2


async def test_a_rerun_after_a_crash_between_the_resident_and_the_card_finishes_the_card(settings_for, monkeypatch):
    async with use_cases(settings_for("enrollment")) as run:
        number, person_ref, issued = await foreign_card_holder(run)
        store = run.deps.store

        async def crash(*args, **kwargs):
            raise ConnectionError("the process died before the card was written")

        with monkeypatch.context() as patched:
            patched.setattr(store, "change_card_validity", crash)
            with pytest.raises(ConnectionError):
                await run.run(record_period_of_stay, renewal(number, request_id="pos-1"), event_id="e1")
        assert (await the_card(run, person_ref)).expires_on == OLD_END

        again = await run.run(record_period_of_stay, renewal(number, request_id="pos-1"), event_id="e2")

        assert kinds(again) == ["PeriodOfStayChanged", "CardValidityChanged"]
        assert (await the_card(run, person_ref)).expires_on == NEW_END
        assert len((await store.resident(person_ref)).changes) == 1, "written once"


async def test_a_rerun_of_an_earlier_period_after_a_later_one_does_not_put_the_older_expiry_back(settings_for):
    async with use_cases(settings_for("enrollment")) as run:
        number, person_ref, first, later_end = await renewed_twice(run)

        again = await run.run(record_period_of_stay, renewal(number), event_id="e1")  # the kit runs it again

        assert again == first
        assert (await the_card(run, person_ref)).expires_on == later_end


async def test_a_renewal_through_the_broker_publishes_facts_without_the_number(enrollment: Enrollment):
    number = new_number()
    person_ref = await enrollment.register(number, nationality="VN", residence_status="student", residence_period_end=OLD_END)
    request = application(number.reveal())
    assert (await apply(enrollment, request))["type"] == ApplicationAccepted.event_type

    await enrollment.send(renewal(number, request_id="pos-kafka"))
    validity = await enrollment.fact(CardValidityChanged.event_type, person_ref=person_ref)

    assert (validity["expires_on"], validity["certificate_expires_on"]) == (NEW_END.isoformat(), NEW_END.isoformat())
    await enrollment.fact(PeriodOfStayChanged.event_type, person_ref=person_ref)
    for record in enrollment.facts.records:
        assert not TWELVE_DIGITS.search(record.record.value.decode()), record.type
        assert number.reveal() not in (record.record.key or b"").decode()


async def test_a_period_recorded_again_brings_a_card_stored_with_the_old_period_up_to_date(settings_for):
    """A card issued from the resident read before the renewal, stored after it (the renewal found
    no card), keeps the old period's expiry: the municipality records the period again."""
    async with use_cases(settings_for("enrollment")) as run:
        number, person_ref, issued = await foreign_card_holder(run)
        stored = await run.deps.store.resident(person_ref)
        renewed = replace(stored.resident, residence_status="engineer", residence_period_end=NEW_END)
        record = change_record("change/renewal-raced", "period_of_stay", renewed, TODAY, residence_status="engineer",
                               residence_period_end=NEW_END.isoformat(), card=None)
        assert await run.deps.store.change_resident(renewed, change=record, version=stored.version)
        assert (await the_card(run, person_ref)).expires_on == OLD_END

        facts = await run.run(record_period_of_stay, renewal(number, request_id="pos-again"))

        assert kinds(facts) == ["PeriodOfStayChanged", "CardValidityChanged"], facts
        assert (await the_card(run, person_ref)).expires_on == NEW_END
        assert await run.run(record_period_of_stay, renewal(number, request_id="pos-third")) == [], "nothing left to do"
