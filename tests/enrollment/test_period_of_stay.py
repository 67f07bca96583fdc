"""A foreign resident's card ends with the period of stay: no card is issued, new or reissued, on a
day after the period has ended (it would be expired on the day it is issued)."""

from __future__ import annotations

from datetime import timedelta

from mynumber_contracts.enrollment import RequestCardReissue

from services.enrollment.handlers import apply_for_card, register_resident, request_card_reissue
from tests.enrollment.support import TODAY, application, new_number, registration, use_cases


def kinds(facts) -> list[str]:
    return [type(fact).__name__ for fact in facts]


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
