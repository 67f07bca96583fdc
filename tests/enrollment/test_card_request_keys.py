"""Card requests are decided once under a key that names their type (session 17): a loss report and
a found report from one office that share a request id are two requests. A request decided by
earlier code, under the key without the type, is still known by it: a retry gets its first facts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from mynumber_contracts.enrollment import ReportCardFound, ReportCardLost, ReturnCard

from services.enrollment.domain import CardAction, LastRequest
from services.enrollment.handlers import (
    ReusedRequestId,
    report_card_found,
    report_card_lost,
    request_fingerprint,
    return_card,
)
from services.kit.idempotency import EarlierFacts
from tests.enrollment.support import MUNICIPAL_OFFICE, a_card_holder, kinds, new_number, use_cases


async def test_a_loss_and_a_found_report_sharing_a_request_id_are_both_carried_out(settings_for):
    async with use_cases(settings_for("enrollment")) as run:
        digits, card = await a_card_holder(run)
        person_ref = card.person_ref

        lost = await run.run(report_card_lost, ReportCardLost(request_id="r-1", my_number=digits, office_id=MUNICIPAL_OFFICE))
        found = await run.run(report_card_found, ReportCardFound(request_id="r-1", my_number=digits, office_id=MUNICIPAL_OFFICE))

        assert (kinds(lost), kinds(found)) == (["CardSuspended"], ["CardResumed"])
        [card] = await run.deps.store.cards_of(person_ref)
        assert card.state == "active"
        # Each is still decided once: the loss report sent again gets its first fact, not a second move.
        again = await run.answer(report_card_lost, ReportCardLost(request_id="r-1", my_number=digits, office_id=MUNICIPAL_OFFICE))
        assert isinstance(again, EarlierFacts) and kinds(again.facts) == ["CardSuspended"]
        assert (await run.deps.store.cards_of(person_ref))[0].state == "active"


async def test_a_request_decided_under_the_key_of_earlier_code_gets_its_first_facts_and_another_type_is_its_own(settings_for):
    async with use_cases(settings_for("enrollment")) as run:
        digits, card = await a_card_holder(run)
        person_ref = card.person_ref
        lost = ReportCardLost(request_id="r-2", my_number=digits, office_id=MUNICIPAL_OFFICE)
        # Decided by earlier code: its outcome stands under the key without the request type.
        first = await run.run(report_card_lost, lost, event_id="e-lost")
        store = run.deps.store
        new_key, earlier_key = f"card-request/report_lost/{MUNICIPAL_OFFICE}/r-2", f"card-request/{MUNICIPAL_OFFICE}/r-2"
        if (outcome := await store.outcome(new_key)) is not None:
            await store.outcomes.delete_one({"_id": new_key})
            await store.record_outcome(earlier_key, fingerprint=outcome.fingerprint, facts=outcome.facts,
                                       summary=outcome.summary, at=outcome.decided_at, event_id=outcome.event_id)
        assert await store.outcome(earlier_key) is not None

        again = await run.answer(report_card_lost, lost, event_id="e-retry")

        assert isinstance(again, EarlierFacts) and again.event_id == "e-lost" and again.facts == first
        assert await store.outcome(new_key) is None, "decided once, under the key it was decided under"
        with pytest.raises(ReusedRequestId):  # the same request id with other content, as before
            await run.answer(report_card_lost, lost.model_copy(update={"my_number": new_number().reveal()}))

        found = await run.run(report_card_found, ReportCardFound(request_id="r-2", my_number=digits, office_id=MUNICIPAL_OFFICE))
        assert kinds(found) == ["CardResumed"], "a found report is not the loss report decided under the earlier key"
        assert (await store.cards_of(person_ref))[0].state == "active"


async def test_a_retry_of_a_move_a_crash_left_under_the_key_of_earlier_code_finishes_it(settings_for):
    """Earlier code moved the card under the key without the type, and crashed before its outcome."""
    async with use_cases(settings_for("enrollment")) as run:
        digits, card = await a_card_holder(run)
        person_ref = card.person_ref
        store = run.deps.store
        [card] = await store.cards_of(person_ref)
        earlier_key = f"card-request/{MUNICIPAL_OFFICE}/r-3"
        at = datetime(2025, 6, 2, 1, 0, tzinfo=UTC)
        assert await store.transition_card(card, CardAction.report_lost, LastRequest(earlier_key, CardAction.report_lost, at))
        lost = ReportCardLost(request_id="r-3", my_number=digits, office_id=MUNICIPAL_OFFICE)

        facts = await run.run(report_card_lost, lost, event_id="e-retry")

        assert kinds(facts) == ["CardSuspended"], "not refused as a card already suspended"
        assert facts[0].suspended_at == at, "the move the earlier code made"
        assert (await store.outcome(earlier_key)).fingerprint == request_fingerprint(run.deps, lost)

        returned = await run.run(return_card, ReturnCard(request_id="r-3", my_number=digits, office_id=MUNICIPAL_OFFICE))
        assert kinds(returned) == ["CardReturned"], "a return under the same request id is its own request"
