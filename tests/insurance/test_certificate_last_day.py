"""Eligibility certificates and a membership's last day, against the real broker and database.

An insurer announces a withdrawal ahead ("the last day is 21 April"). A member who uses no card
keeps the certificate through the last day: its validity is cut to end on it, the MemberWithdrawn
fact names it, and the expiry sweep ends it after that day without issuing another. A withdrawal
recorded after its last day withdraws the certificate at once, as before."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import pytest
from mynumber_contracts.enrollment import CardSuspended
from mynumber_contracts.insurance import (
    ApplyForEligibilityCertificate,
    CertificateApplicationReason,
    EligibilityCertificateExpired,
    EligibilityCertificateIssued,
    EligibilityCertificateRenewed,
    EligibilityCertificateWithdrawn,
    RegisterCardForInsurance,
    WithdrawMember,
)

from tests.insurance.conftest import INSURER, OPERATOR, Insurance, enrollment, of_type, types
from tests.insurance.test_certificates import card_based_member
from tests.insurance.test_membership_dates import on
from tests.support.faults import fail_once
from tests.support.reruns import run_late

LAST_DAY = date(2026, 4, 21)  # announced on 1 April, the day the tests start


def withdrawal(member: str, last_day: date = LAST_DAY) -> WithdrawMember:
    return WithdrawMember(request_id=f"withdraw-{member}", insurer_number=INSURER, member_symbol="記号", member_number=member,
                          withdrawn_on=last_day)


async def certificate_holder(insurance: Insurance, seed: int, member: str) -> tuple[str, str]:
    """A resident without a card, enrolled on 1 April: (person, certificate number), valid through 31 March 2027."""
    person_ref = await insurance.resident(seed)
    [issued] = of_type(await insurance.insurer(enrollment(member, seed, seed)), EligibilityCertificateIssued)
    assert (issued["valid_from"], issued["valid_until"]) == ("2026-04-01", "2027-03-31")
    return person_ref, issued["certificate_number"]


async def certificates(insurance: Insurance, person_ref: str) -> list[tuple[str, str, str, str]]:
    return [(c["certificate_number"], c["status"], c["valid_from"], c["valid_until"]) for c in await insurance.certificates(person_ref)]


async def sweep(insurance: Insurance, kind: str, as_of: date) -> list[dict[str, Any]]:
    """Run the renewal or expiry sweep as of `as_of` (the clock on that day) and return the facts it published."""
    on(insurance, as_of)
    before = len(insurance.facts.records)
    response = await insurance.http.post(f"/operations/certificate-{kind}", params={"as_of": as_of.isoformat()}, headers=OPERATOR)
    assert response.status_code == 200, response.text
    await insurance.facts.wait_count(before + response.json()["facts_published"])
    return [{"type": r.type, **r.json()} for r in insurance.facts.records[before:]]


@pytest.mark.parametrize("last_day", [LAST_DAY, date(2026, 4, 1)], ids=["ahead", "today"])
async def test_a_withdrawal_announced_ahead_keeps_the_certificate_through_the_last_day(insurance: Insurance, last_day: date):
    """Before, the certificate was withdrawn when the withdrawal was recorded: the member lost their
    cover at the hospital up to three weeks before their last day."""
    person_ref, number = await certificate_holder(insurance, 201, "c-1")

    facts = await insurance.insurer(withdrawal("c-1", last_day))
    assert types(facts) == ["member_withdrawn"], facts
    assert (facts[0]["certificate_number"], facts[0]["certificate_valid_until"]) == (number, last_day.isoformat())
    kept = (number, "active", "2026-04-01", last_day.isoformat())
    assert await certificates(insurance, person_ref) == [kept]

    # Through the last day: not renewed (it is due within 30 days, but the membership ends), not ended.
    assert await sweep(insurance, "renewal", date(2026, 4, 1)) == []
    assert await sweep(insurance, "expiry", last_day) == []
    assert await certificates(insurance, person_ref) == [kept]

    # After it: ended the way a lapsed certificate ends, and not issued again.
    after = last_day + timedelta(days=1)
    expired = await sweep(insurance, "expiry", after)
    assert [(f["type"], f["certificate_number"], f["valid_until"]) for f in expired] == [
        (EligibilityCertificateExpired.event_type, number, last_day.isoformat())]
    assert await certificates(insurance, person_ref) == [(number, "expired", "2026-04-01", last_day.isoformat())]
    assert await sweep(insurance, "renewal", after) == []
    assert await sweep(insurance, "expiry", after + timedelta(days=1)) == []


async def test_a_withdrawal_recorded_after_its_last_day_withdraws_the_certificate_at_once(insurance: Insurance):
    person_ref, number = await certificate_holder(insurance, 202, "c-2")
    on(insurance, date(2026, 4, 25))

    facts = await insurance.insurer(withdrawal("c-2"))
    assert types(facts) == ["member_withdrawn", "eligibility_certificate_withdrawn"]
    assert (facts[0]["certificate_number"], facts[0]["certificate_valid_until"]) == (None, None)
    [withdrawn] = of_type(facts, EligibilityCertificateWithdrawn)
    assert (withdrawn["certificate_number"], withdrawn["reason"], withdrawn["valid_until"]) == (number, "member_withdrawn", "2027-03-31")
    assert await certificates(insurance, person_ref) == [(number, "withdrawn", "2026-04-01", "2027-03-31")]
    assert await sweep(insurance, "expiry", date(2026, 4, 25)) == []


async def test_a_withdrawal_run_again_late_neither_cuts_nor_withdraws_again(insurance: Insurance):
    """The withdrawal runs again (a consumer that fell behind) before the last day, after it but
    before the expiry sweep, and after the sweep: each time it gives the facts of its first run, the
    certificate stays as it kept it (not withdrawn once lapsed), and the sweep alone ends it."""
    person_ref, number = await certificate_holder(insurance, 203, "c-3")
    request = withdrawal("c-3")
    record = insurance.partner.record(request, subject="subject", source=f"insurer/{INSURER}")
    event_id = record.header("ce_id").decode()
    topic = request.topic(insurance.namespace)

    async def run(day: date) -> None:
        on(insurance, day)
        await run_late(insurance.partner, insurance.database, topic, record)

    await run(date(2026, 4, 1))
    [first] = await insurance.caused_by(event_id, 1)
    assert first.type == "jp.mynumber.insurance.member_withdrawn.v1"
    kept = [(number, "active", "2026-04-01", "2026-04-21")]
    assert await certificates(insurance, person_ref) == kept

    for day in (date(2026, 4, 10), date(2026, 4, 25)):
        await run(day)
        assert await certificates(insurance, person_ref) == kept, day
    expired = await sweep(insurance, "expiry", date(2026, 4, 25))
    assert [(f["type"], f["certificate_number"]) for f in expired] == [(EligibilityCertificateExpired.event_type, number)]
    await run(date(2026, 4, 26))
    assert await certificates(insurance, person_ref) == [(number, "expired", "2026-04-01", "2026-04-21")]

    runs = [r for r in await insurance.facts.settle() if r.header("ce_causationid") == event_id]
    assert len(runs) == 4 and {(r.id, r.record.value) for r in runs} == {(first.id, first.record.value)}, \
        "every run gives the first run's fact, and no other"
    assert (first.json()["certificate_number"], first.json()["certificate_valid_until"]) == (number, "2026-04-21")
    assert not [r for r in insurance.facts.records if r.type in (EligibilityCertificateWithdrawn.event_type,
                                                                  EligibilityCertificateIssued.event_type)
                and r.json()["person_ref"] == person_ref and r.json()["certificate_number"] != number]


async def test_a_member_enrolled_again_before_the_last_day_keeps_the_certificate_and_it_is_renewed(insurance: Insurance):
    """The insurer takes the withdrawal back by enrolling the member again: the certificate, cut to
    the last day, goes on; the renewal sweep extends it (same number) as it would any other."""
    person_ref, number = await certificate_holder(insurance, 204, "c-4")
    await insurance.insurer(withdrawal("c-4"))

    facts = await insurance.insurer(enrollment("c-4", 204, 204, request_id="enroll-c-4-again"))
    assert types(facts) == ["member_linked"]
    assert await certificates(insurance, person_ref) == [(number, "active", "2026-04-01", "2026-04-21")]
    renewed = await sweep(insurance, "renewal", date(2026, 4, 1))
    assert [(f["type"], f["certificate_number"], f["previous_valid_until"], f["valid_from"], f["valid_until"]) for f in renewed] == [
        (EligibilityCertificateRenewed.event_type, number, "2026-04-21", "2026-04-22", "2027-04-21")]
    assert await sweep(insurance, "expiry", date(2026, 4, 22)) == []


async def test_a_member_record_enrolled_again_for_someone_else_ends_the_kept_certificate(insurance: Insurance):
    """The fix for a wrong-person link: the insurer withdraws member c-5 from P (last day ahead) and
    enrolls the record again with Q's number. P's certificate, kept through the last day, ends as the
    membership's end, and Q gets theirs."""
    p, number = await certificate_holder(insurance, 205, "c-5")
    await insurance.insurer(withdrawal("c-5"))
    q = await insurance.resident(206)

    facts = await insurance.insurer(enrollment("c-5", 206, 206, request_id="enroll-c-5-again"))
    # P's and Q's facts travel on their own partitions: read back, they come in either order.
    assert sorted(types(facts)) == ["eligibility_certificate_issued", "eligibility_certificate_withdrawn", "member_linked"]
    [withdrawn] = of_type(facts, EligibilityCertificateWithdrawn)
    assert (withdrawn["person_ref"], withdrawn["certificate_number"], withdrawn["reason"]) == (p, number, "member_withdrawn")
    [issued] = of_type(facts, EligibilityCertificateIssued)
    assert (issued["person_ref"], issued["valid_until"]) == (q, "2027-03-31")
    assert await certificates(insurance, p) == []
    assert await certificates(insurance, q) == [(issued["certificate_number"], "active", "2026-04-01", "2027-03-31")]


async def recorded_facts(insurance: Insurance, event_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The facts the service recorded for the event, in their order: (fact id, its JSON with `type`)."""
    document = await insurance.processed(event_id)
    recorded = []
    for fact in document.get("facts", []):
        headers = {h["name"]: bytes(h["value"]).decode() for h in fact["headers"]}
        recorded.append((headers["ce_id"], {"type": headers["ce_type"], **json.loads(bytes(fact["value"]))}))
    return recorded


@pytest.mark.parametrize("crash", ["after the new holder's certificate was issued", "before its facts were recorded"])
async def test_a_member_record_enrolled_again_for_someone_else_run_again_after_a_crash_withdraws_the_kept_certificate_again(
        insurance: Insurance, monkeypatch, crash: str):
    """P's kept certificate is withdrawn, then Q's is issued in the same certificate document. The
    enrollment run again after a crash (its facts not yet recorded) must give the first run's facts,
    P's withdrawal among them, with the same ids. Before, the rerun found Q's certificate there,
    settled Q alone, and P's withdrawal never went out: partners kept seeing P's certificate as active."""
    p, number = await certificate_holder(insurance, 208, "c-8")
    await insurance.insurer(withdrawal("c-8"))
    q = await insurance.resident(209)
    request = enrollment("c-8", 209, 209, request_id="enroll-c-8-again")
    record = insurance.partner.record(request, subject="subject", source=f"insurer/{INSURER}")
    event_id, topic = record.header("ce_id").decode(), request.topic(insurance.namespace)

    if crash == "after the new holder's certificate was issued":
        fault = fail_once(monkeypatch, insurance.running.service.deps.store, "issue_certificate", after=True,
                          when=lambda certificate, **_: certificate.person_ref == q)
        await insurance.partner.send_record(topic, record)
        recorded = await recorded_facts(insurance, event_id)  # the rerun's: the first run's were never recorded
        assert fault.failed and fault.failed.args[0].person_ref == q
    else:
        await run_late(insurance.partner, insurance.database, topic, record)  # its first run
        first = await recorded_facts(insurance, event_id)
        await run_late(insurance.partner, insurance.database, topic, record)
        recorded = await recorded_facts(insurance, event_id)
        assert recorded == first, "the rerun gives the first run's facts, with their ids, in their order"

    facts = [fact for _, fact in recorded]
    assert types(facts) == ["member_linked", "eligibility_certificate_withdrawn", "eligibility_certificate_issued"], facts
    [withdrawn] = of_type(facts, EligibilityCertificateWithdrawn)
    assert (withdrawn["person_ref"], withdrawn["certificate_number"], withdrawn["reason"], withdrawn["valid_until"]) == (
        p, number, "member_withdrawn", LAST_DAY.isoformat())
    [issued] = of_type(facts, EligibilityCertificateIssued)
    assert (issued["person_ref"], issued["valid_until"]) == (q, "2027-03-31")
    published = await insurance.caused_by(event_id, len(recorded))
    assert {r.header("ce_id") for r in published} == {fact_id for fact_id, _ in recorded}, "published with those ids"
    assert await certificates(insurance, p) == []
    assert await certificates(insurance, q) == [(issued["certificate_number"], "active", "2026-04-01", "2027-03-31")]


async def test_a_card_lost_before_the_last_day_gives_a_certificate_ending_on_it(insurance: Insurance):
    """A card-based member whose withdrawal is announced ahead is still insured until the last day:
    a card lost meanwhile gives a certificate through the last day, which the sweep ends after it."""
    person_ref = await insurance.resident(207)
    await insurance.card(person_ref, "cert-207")
    await insurance.holder(RegisterCardForInsurance(request_id="reg-207", certificate_id="cert-207"))
    assert types(await insurance.insurer(enrollment("c-7", 207, 207))) == ["member_linked"]
    assert types(await insurance.insurer(withdrawal("c-7"))) == ["member_withdrawn"]

    on(insurance, date(2026, 4, 10))
    facts = await insurance.registry(CardSuspended(person_ref=person_ref, card_number="C-cert-207",
                                                   suspended_at=insurance.clock.now()))
    [issued] = of_type(facts, EligibilityCertificateIssued)
    assert (issued["reason"], issued["valid_from"], issued["valid_until"]) == ("card_lost", "2026-04-10", "2026-04-21")
    assert await sweep(insurance, "expiry", date(2026, 4, 21)) == []
    assert types(await sweep(insurance, "expiry", date(2026, 4, 22))) == ["eligibility_certificate_expired"]
    assert [c["status"] for c in await insurance.certificates(person_ref)] == ["expired"]


async def test_a_member_in_the_notice_period_may_apply_for_a_certificate_through_the_last_day(insurance: Insurance):
    """Insured until the last day, a card user who loses the card or needs help in the notice
    period gets a certificate that ends on it; after the last day the application is refused."""
    await card_based_member(insurance, 231, "c-31", "cert-31")
    assert types(await insurance.insurer(withdrawal("c-31"))) == ["member_withdrawn"]

    def application(request_id: str) -> ApplyForEligibilityCertificate:
        return ApplyForEligibilityCertificate(request_id=request_id, insurer_number=INSURER, member_symbol="記号",
                                              member_number="c-31", reason=CertificateApplicationReason.needs_assistance)

    [issued] = of_type(await insurance.insurer(application("apply-c-31")), EligibilityCertificateIssued)
    assert (issued["valid_from"], issued["valid_until"], issued["on_application"]) == ("2026-04-01", LAST_DAY.isoformat(), True)

    on(insurance, LAST_DAY + timedelta(days=1))
    [refused] = await insurance.insurer(application("apply-c-31-late"))
    assert refused["reason"] == "member_withdrawn"
