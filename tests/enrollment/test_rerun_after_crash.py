"""A use case may run twice for one event (a crash after its writes, before the kit recorded
them). The second run recognises its own writes and returns the same facts, with no second
effect. Simulated by running the use case, forgetting its recorded outcome, and running it again."""

from __future__ import annotations

from datetime import date

from mynumber_contracts.enrollment import (
    ChangeResidentAttributes,
    RecordDeath,
    ReportCardLost,
    RequestCardReissue,
    ReturnCard,
)

from services.enrollment.handlers import (
    apply_for_card,
    change_resident_attributes,
    record_death,
    register_resident,
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
            (report_card_lost, ReportCardLost(request_id="r1", my_number=digits, office_id="hotline/24h"), "e3"),
            (request_card_reissue, RequestCardReissue(request_id="r2", my_number=digits, office_id="municipality/131016",
                                                      requested_on=TODAY, photo_ref="p"), "e4"),
            (change_resident_attributes, ChangeResidentAttributes(my_number=number, address="東京都港区1-1", effective_on=TODAY), "e5"),
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
