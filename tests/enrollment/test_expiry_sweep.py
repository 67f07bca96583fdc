"""The expiry sweep: one CardExpired per card past its expiry date, by an operator command
with an injectable clock; safe to run twice, and it finishes what a crash left half done."""

from __future__ import annotations

from datetime import UTC, date, datetime

from mynumber_contracts.enrollment import CardExpired

from services.enrollment.domain import CardAction, LastRequest
from tests.enrollment.support import OPERATOR, Enrollment, application, apply, card_request, issue_card, new_number


async def sweep(enrollment: Enrollment, as_of: date | None = None) -> dict:
    params = {"as_of": as_of.isoformat()} if as_of else {}
    answer = await enrollment.service.http.post("/operator/expiry-sweep", params=params, headers=OPERATOR)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_the_sweep_expires_each_card_past_its_date_once_even_when_run_twice(enrollment: Enrollment):
    child, suspended_child, adult = new_number(), new_number(), new_number()
    child_card = await issue_card(enrollment, child, born=date(2015, 1, 10))  # ends on 10 Jan 2030
    lost_card = await issue_card(enrollment, suspended_child, born=date(2015, 1, 9))  # ends on 9 Jan 2030
    adult_card = await issue_card(enrollment, adult, born=date(1980, 1, 10))  # ends in 2035
    from mynumber_contracts.enrollment import ReportCardLost
    await card_request(enrollment, ReportCardLost(request_id="l1", my_number=suspended_child.reveal(), office_id="portal/myna-portal"))

    on_expiry_day = await sweep(enrollment, as_of=date(2030, 1, 10))  # the last valid day of the child's card
    enrollment.clock.set(datetime(2030, 1, 11, 1, 0, tzinfo=UTC))  # the next morning in Japan
    first = await sweep(enrollment)
    second = await sweep(enrollment)
    await enrollment.facts.settle(quiet_seconds=1.0)

    assert (on_expiry_day["cards_expired"], on_expiry_day["facts_published"]) == (1, 1)  # the 9 January card
    assert (first["as_of"], first["cards_expired"], first["facts_published"]) == ("2030-01-11", 1, 1)
    assert (second["cards_expired"], second["facts_published"]) == (0, 0)
    expired = enrollment.facts.of_type(CardExpired.event_type)
    assert sorted(r.json()["card_number"] for r in expired) == sorted([child_card["card_number"], lost_card["card_number"]])
    assert {r.json()["expired_on"] for r in expired} == {"2030-01-10", "2030-01-09"}
    assert len({r.id for r in expired}) == 2
    assert (await enrollment.store.card(adult_card["card_number"])).state == "active"
    assert (await enrollment.store.card(child_card["card_number"])).state == "expired"
    again = await apply(enrollment, application(child.reveal(), applied_on=date(2030, 1, 11)))
    assert again["type"] == "jp.mynumber.enrollment.application_accepted.v1", "an expired card frees the slot"


async def test_a_sweep_finishes_an_expiry_whose_fact_a_crash_kept_back(enrollment: Enrollment):
    card = await issue_card(enrollment, new_number(), born=date(2015, 1, 10))
    stored = await enrollment.store.card(card["card_number"])
    request = LastRequest(key=f"expiry/{stored.card_number}", action=CardAction.expire, at=enrollment.clock.now())
    await enrollment.store.transition_card(stored, CardAction.expire, request)  # the crash: moved, never published

    report = await sweep(enrollment, as_of=date(2030, 2, 1))
    facts = await enrollment.facts_of(CardExpired.event_type, 1, card_number=card["card_number"])

    assert (report["cards_expired"], report["facts_published"]) == (0, 1)
    assert facts[0]["person_ref"] == card["person_ref"]


async def test_the_sweep_is_an_operator_command(enrollment: Enrollment):
    answer = await enrollment.service.http.post("/operator/expiry-sweep")
    assert answer.status_code == 401
