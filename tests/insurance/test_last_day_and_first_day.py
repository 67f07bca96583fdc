"""An insurer's withdrawal names a last day; the membership has a first day. Against the real broker
and database.

The last day is the first day at the earliest (a membership of one day), or the day before it: the
membership then never takes effect (the insurer cancels a membership enrolled ahead, or in error),
the certificate issued at enrollment is withdrawn at once and no day is insured. A last day earlier
still is refused (`last_day_before_first_day`) and changes nothing. Before, any day was taken: a
last day before the first day withdrew the member, and a certificate was kept through it though
the membership covered no day. The operator's view of the member shows the last day."""

from __future__ import annotations

from datetime import date
from typing import Any

from mynumber_contracts.insurance import (
    EligibilityCertificateIssued,
    EligibilityCertificateWithdrawn,
    InsuranceRequestRejected,
    WithdrawMember,
)

from tests.insurance.conftest import INSURER, OPERATOR, Insurance, of_type, types
from tests.insurance.test_certificate_last_day import certificates
from tests.insurance.test_membership_dates import card_holder, enroll, insured_by, on

FIRST_DAY = date(2026, 5, 1)  # enrolled ahead on 1 April, the day the tests start


def withdrawal(member: str, last_day: date, request_id: str | None = None) -> WithdrawMember:
    return WithdrawMember(request_id=request_id or f"withdraw-{member}", insurer_number=INSURER, member_symbol="記号",
                          member_number=member, withdrawn_on=last_day)


async def member_view(insurance: Insurance, member: str) -> dict[str, Any]:
    """The member as the operator sees it over HTTP."""
    response = await insurance.http.get(f"/members/{INSURER}/記号/{member}", headers=OPERATOR)
    assert response.status_code == 200, response.text
    return response.json()


async def enrolled_ahead(insurance: Insurance, seed: int, member: str) -> tuple[str, str]:
    """A resident without a card, enrolled on 1 April with a first day of 1 May: (person, certificate number)."""
    person_ref = await insurance.resident(seed)
    [issued] = of_type(await insurance.insurer(enroll(seed, member, FIRST_DAY)), EligibilityCertificateIssued)
    return person_ref, issued["certificate_number"]


def refused_as_too_early(facts: list[dict[str, Any]], person_ref: str, last_day: str, first_day: str) -> None:
    [refused] = facts
    assert (refused["type"], refused["reason"], refused["person_ref"]) == (
        InsuranceRequestRejected.event_type, "last_day_before_first_day", person_ref), refused
    assert f"the last day, {last_day}, is before the membership's first day, {first_day}" in refused["message"]


async def test_a_last_day_more_than_a_day_before_the_first_day_is_refused_and_changes_nothing(insurance: Insurance):
    """Enrolled ahead for 1 May, a last day of 29 April; enrolled for 1 April, a last day of 15
    March. Neither member is withdrawn: the certificate stays, and the card user is insured from 1 May."""
    person_ref, number = await enrolled_ahead(insurance, 261, "f-61")
    card_user = await card_holder(insurance, 262, "cert-62")
    await insurance.insurer(enroll(262, "f-62", date(2026, 4, 1)))

    refused_as_too_early(await insurance.insurer(withdrawal("f-61", date(2026, 4, 29))), person_ref, "2026-04-29", "2026-05-01")
    refused_as_too_early(await insurance.insurer(withdrawal("f-62", date(2026, 3, 15))), card_user, "2026-03-15", "2026-04-01")

    view = await member_view(insurance, "f-61")
    assert (view["status"], view["withdrawn_on"]) == ("active", None)
    assert await certificates(insurance, person_ref) == [(number, "active", "2026-04-01", "2027-03-31")]
    on(insurance, date(2026, 6, 1))
    assert await insured_by(insurance, "cert-62", "chk-62") == (INSURER, "f-62")


async def test_a_move_to_a_last_day_more_than_a_day_before_the_first_day_is_refused(insurance: Insurance):
    person_ref, number = await enrolled_ahead(insurance, 263, "f-63")
    assert types(await insurance.insurer(withdrawal("f-63", date(2026, 5, 31)))) == ["member_withdrawn"]

    facts = await insurance.insurer(withdrawal("f-63", date(2026, 4, 20), "withdraw-f-63-earlier"))
    refused_as_too_early(facts, person_ref, "2026-04-20", "2026-05-01")
    assert (await member_view(insurance, "f-63"))["withdrawn_on"] == "2026-05-31", "the last day announced stays"
    assert await certificates(insurance, person_ref) == [(number, "active", "2026-04-01", "2026-05-31")]


async def test_a_last_day_the_day_before_the_first_day_cancels_a_membership_that_never_takes_effect(insurance: Insurance):
    """The job offer fell through: the certificate issued at enrollment is withdrawn at once, and
    the card user is never insured by the membership (not on 30 April, not on 1 May)."""
    person_ref, number = await enrolled_ahead(insurance, 264, "f-64")
    await card_holder(insurance, 265, "cert-65")
    await insurance.insurer(enroll(265, "f-65", FIRST_DAY))

    facts = await insurance.insurer(withdrawal("f-64", date(2026, 4, 30)))
    assert types(facts) == ["member_withdrawn", "eligibility_certificate_withdrawn"], facts
    assert (facts[0]["withdrawn_on"], facts[0]["certificate_number"]) == ("2026-04-30", None)
    [withdrawn] = of_type(facts, EligibilityCertificateWithdrawn)
    assert (withdrawn["certificate_number"], withdrawn["reason"]) == (number, "member_withdrawn")
    assert await certificates(insurance, person_ref) == [(number, "withdrawn", "2026-04-01", "2027-03-31")]
    view = await member_view(insurance, "f-64")
    assert (view["status"], view["enrolled_on"], view["withdrawn_on"]) == ("withdrawn", "2026-05-01", "2026-04-30")

    assert types(await insurance.insurer(withdrawal("f-65", date(2026, 4, 30)))) == ["member_withdrawn"]
    for request_id, day in (("chk-65-1", date(2026, 4, 30)), ("chk-65-2", FIRST_DAY)):
        on(insurance, day)
        assert await insured_by(insurance, "cert-65", request_id) == "no_active_membership", day


async def test_a_last_day_on_the_first_day_keeps_the_certificate_through_that_one_day(insurance: Insurance):
    person_ref, number = await enrolled_ahead(insurance, 266, "f-66")

    facts = await insurance.insurer(withdrawal("f-66", FIRST_DAY))
    assert types(facts) == ["member_withdrawn"], facts
    assert (facts[0]["certificate_number"], facts[0]["certificate_valid_until"]) == (number, "2026-05-01")
    assert await certificates(insurance, person_ref) == [(number, "active", "2026-04-01", "2026-05-01")]
    assert (await member_view(insurance, "f-66"))["withdrawn_on"] == "2026-05-01"


async def test_the_operators_view_of_a_member_shows_the_last_day_once_withdrawn(insurance: Insurance):
    """None while enrolled; the day announced; the day it was moved to; none again once enrolled again."""
    await enrolled_ahead(insurance, 267, "f-67")
    assert (await member_view(insurance, "f-67"))["withdrawn_on"] is None

    await insurance.insurer(withdrawal("f-67", date(2026, 6, 30)))
    view = await member_view(insurance, "f-67")
    assert (view["status"], view["enrolled_on"], view["withdrawn_on"]) == ("withdrawn", "2026-05-01", "2026-06-30")
    await insurance.insurer(withdrawal("f-67", date(2026, 5, 31), "withdraw-f-67-earlier"))
    assert (await member_view(insurance, "f-67"))["withdrawn_on"] == "2026-05-31"

    assert types(await insurance.insurer(enroll(267, "f-67", date(2026, 7, 1)).model_copy(
        update={"request_id": "enroll-f-67-again"}))) == ["member_linked"]
    view = await member_view(insurance, "f-67")
    assert (view["status"], view["enrolled_on"], view["withdrawn_on"]) == ("active", "2026-07-01", None)
