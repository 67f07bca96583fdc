"""Eligibility by card answers for the day it is asked, against the real broker and database: a
membership counts from its first day (`enrolled_on`) through its last (`withdrawn_on`), and
insurers announce both ahead. Nothing is written between the days asked about: the eligibility
document carries the memberships with their dates."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from mynumber_contracts.insurance import (
    CheckEligibility,
    CopayCategory,
    EligibilityConfirmed,
    EligibilityDenied,
    EnrollMember,
    RegisterCardForInsurance,
    WithdrawMember,
)

from tests.insurance.conftest import INSTITUTION, INSURER, Insurance, a_number, attributes_of, types

NEW_INSURER = "01130012"


def on(insurance: Insurance, day: date) -> None:
    """10:00 in Japan on `day`."""
    insurance.clock.set(datetime(day.year, day.month, day.day, 1, 0, tzinfo=UTC))


def enroll(seed: int, member: str, enrolled_on: date, insurer: str = INSURER,
           copay: CopayCategory = CopayCategory.thirty_percent) -> EnrollMember:
    return EnrollMember(request_id=f"enroll-{member}", insurer_number=insurer, member_symbol="記号", member_number=member,
                        my_number=a_number(seed), attributes=attributes_of(seed), copay_category=copay, enrolled_on=enrolled_on)


def withdraw(member: str, last_day: date) -> WithdrawMember:
    return WithdrawMember(request_id=f"withdraw-{member}", insurer_number=INSURER, member_symbol="記号", member_number=member,
                          withdrawn_on=last_day)


async def card_holder(insurance: Insurance, seed: int, certificate_id: str) -> str:
    """A resident with a card registered for insurance use, and no membership yet."""
    person_ref = await insurance.resident(seed)
    await insurance.card(person_ref, certificate_id)
    await insurance.holder(RegisterCardForInsurance(request_id=f"reg-{seed}", certificate_id=certificate_id))
    return person_ref


async def insured_by(insurance: Insurance, certificate_id: str, request_id: str) -> tuple[str, str] | str:
    """(insurer, member number) when eligible, else the denial reason; over HTTP and as a reply event, which agree."""
    answer = await insurance.eligibility(certificate_id)
    [reply] = await insurance.institution(CheckEligibility(request_id=request_id, institution_code=INSTITUTION,
                                                           certificate_id=certificate_id))
    if answer["eligible"]:
        assert reply["type"] == EligibilityConfirmed.event_type, reply
        assert (reply["insurer_number"], reply["member_number"]) == (answer["insurer_number"], answer["member_number"])
        return answer["insurer_number"], answer["member_number"]
    assert reply["type"] == EligibilityDenied.event_type and reply["reason"] == answer["reason"], reply
    return answer["reason"]


async def test_a_member_enrolled_ahead_is_insured_from_the_first_day_only(insurance: Insurance):
    """Enrolled on 1 April with a first day of 1 May: a hospital asking in April is told not insured."""
    await card_holder(insurance, 1, "cert-1")
    assert types(await insurance.insurer(enroll(1, "1", date(2026, 5, 1)))) == ["member_linked"]

    assert await insured_by(insurance, "cert-1", "chk-1") == "no_active_membership"
    on(insurance, date(2026, 4, 30))
    assert await insured_by(insurance, "cert-1", "chk-2") == "no_active_membership"
    on(insurance, date(2026, 5, 1))
    assert await insured_by(insurance, "cert-1", "chk-3") == (INSURER, "1")


async def test_a_withdrawal_announced_ahead_keeps_the_member_insured_through_the_last_day(insurance: Insurance):
    """On 1 April the insurer announces a last day of 30 April: the member stays insured until then."""
    await card_holder(insurance, 2, "cert-2")
    await insurance.insurer(enroll(2, "2", date(2025, 4, 1)))
    assert types(await insurance.insurer(withdraw("2", date(2026, 4, 30)))) == ["member_withdrawn"]

    assert await insured_by(insurance, "cert-2", "chk-1") == (INSURER, "2")
    on(insurance, date(2026, 4, 30))
    assert await insured_by(insurance, "cert-2", "chk-2") == (INSURER, "2")
    on(insurance, date(2026, 5, 1))
    assert await insured_by(insurance, "cert-2", "chk-3") == "no_active_membership"


@pytest.mark.parametrize("withdrawal_first", [False, True], ids=["new-insurer-first", "withdrawal-first"])
async def test_a_job_change_announced_ahead_answers_the_old_insurer_through_its_last_day(insurance: Insurance,
                                                                                         withdrawal_first: bool):
    """The old insurer's last day is 31 May and the new insurer's first day 1 June, both sent on
    1 April (in either order): the old insurer answers through 31 May, the new one from 1 June."""
    await card_holder(insurance, 3, "cert-3")
    await insurance.insurer(enroll(3, "3", date(2020, 4, 1)))
    announcements = [insurance.insurer(withdraw("3", date(2026, 5, 31))),
                     insurance.insurer(enroll(3, "3-new", date(2026, 6, 1), NEW_INSURER, CopayCategory.twenty_percent),
                                       insurer=NEW_INSURER)]
    for announcement in (announcements if withdrawal_first else announcements[::-1]):
        await announcement

    for index, (day, expected) in enumerate([(date(2026, 4, 1), (INSURER, "3")), (date(2026, 5, 20), (INSURER, "3")),
                                             (date(2026, 5, 31), (INSURER, "3")), (date(2026, 6, 1), (NEW_INSURER, "3-new"))]):
        on(insurance, day)
        assert await insured_by(insurance, "cert-3", f"chk-{index}") == expected, day
    assert (await insurance.eligibility("cert-3"))["copay_category"] == "twenty_percent"


async def test_an_eligibility_document_written_by_the_earlier_code_is_read_with_its_first_day(insurance: Insurance):
    """Documents written before memberships had dates hold one `membership` (or None): they are read
    as they are, and the membership's first day applies to them as well."""
    def document(certificate_id: str, seed: int, enrolled_on: str | None) -> dict:
        membership = None if enrolled_on is None else {
            "member_key": f"{INSURER}/記号/{seed}", "insurer_number": INSURER, "member_symbol": "記号", "member_number": str(seed),
            "copay_category": "ten_percent", "enrolled_on": enrolled_on}
        return {"_id": certificate_id, "person_ref": insurance.ref(a_number(seed)), "card_status": "active",
                "card_certificate_expires_on": "2031-06-15", "insurance_use": "registered", "certificate_application": None,
                "deceased": False, "membership": membership, "version": 4}

    await insurance.database["eligibility"].insert_many([
        document("cert-old-started", 4, "2026-04-01"), document("cert-old-ahead", 5, "2026-05-01"),
        document("cert-old-none", 6, None)])

    started = await insurance.eligibility("cert-old-started")
    assert (started["eligible"], started["member_number"], started["copay_category"]) == (True, "4", "ten_percent")
    assert await insured_by(insurance, "cert-old-ahead", "chk-1") == "no_active_membership"
    assert await insured_by(insurance, "cert-old-none", "chk-2") == "no_active_membership"
    on(insurance, date(2026, 5, 1))
    assert await insured_by(insurance, "cert-old-ahead", "chk-3") == (INSURER, "5")
