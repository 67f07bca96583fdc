"""An insurer moves an announced last day, against the real broker and database.

The insurer announced on 1 April that member c-N leaves on 21 April. While that day has not
passed, another WithdrawMember (a new request id) with another day moves it, earlier or later
(the employer corrected the leaving date): eligibility by card and a kept certificate follow, and
MemberWithdrawn says the new last day and the one it replaces. Once the last day has passed the
member is withdrawn for good and another day is refused. Before, every second withdrawal was
refused (`member_withdrawn`), whatever its day: the insurer had to enroll the member again."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import date
from typing import Any

from mynumber_contracts import Envelope, KafkaRecord
from mynumber_contracts.insurance import (
    EligibilityCertificateExpired,
    EligibilityCertificateIssued,
    EligibilityCertificateWithdrawn,
    InsuranceRequestRejected,
    MemberWithdrawn,
    RegisterCardForInsurance,
    WithdrawMember,
)

from services.insurance.handlers import PersonLocks, withdraw_member
from services.kit.idempotency import EarlierFacts
from services.kit.messaging import HandlerContext
from tests.insurance.conftest import INSURER, Insurance, enrollment, of_type, types
from tests.insurance.test_certificate_last_day import LAST_DAY, certificate_holder, certificates, sweep
from tests.insurance.test_certificates import card_based_member
from tests.insurance.test_membership_dates import insured_by, on
from tests.support.faults import fail_once
from tests.support.reruns import run_late


def withdrawal(member: str, last_day: date, request_id: str) -> WithdrawMember:
    return WithdrawMember(request_id=request_id, insurer_number=INSURER, member_symbol="記号", member_number=member,
                          withdrawn_on=last_day)


def said(facts: list[dict[str, Any]]) -> tuple[Any, ...]:
    """What the MemberWithdrawn among `facts` says: (last day, the one it moved, certificate, its last day of validity)."""
    [withdrawn] = of_type(facts, MemberWithdrawn)
    return (withdrawn["withdrawn_on"], withdrawn.get("previous_withdrawn_on"), withdrawn["certificate_number"],
            withdrawn["certificate_valid_until"])


async def member(insurance: Insurance, number: str) -> dict[str, Any]:
    """The member record as stored (the operator's view shows the last day too, since session 17)."""
    document = await insurance.running.service.deps.store.member_document(f"{INSURER}/記号/{number}")
    assert document is not None
    return document


async def test_a_last_day_moved_earlier_cuts_the_kept_certificate_and_ends_cover_by_card_sooner(insurance: Insurance):
    person_ref, number = await certificate_holder(insurance, 241, "c-41")
    card_user = await card_based_member(insurance, 242, "c-42", "cert-42")
    for member_number in ("c-41", "c-42"):
        assert types(await insurance.insurer(withdrawal(member_number, LAST_DAY, f"withdraw-{member_number}"))) == ["member_withdrawn"]

    on(insurance, date(2026, 4, 5))
    facts = await insurance.insurer(withdrawal("c-41", date(2026, 4, 10), "withdraw-c-41-corrected"))
    assert types(facts) == ["member_withdrawn"], facts
    assert said(facts) == ("2026-04-10", "2026-04-21", number, "2026-04-10")
    assert await certificates(insurance, person_ref) == [(number, "active", "2026-04-01", "2026-04-10")]
    facts = await insurance.insurer(withdrawal("c-42", date(2026, 4, 10), "withdraw-c-42-corrected"))
    assert said(facts) == ("2026-04-10", "2026-04-21", None, None) and facts[0]["person_ref"] == card_user

    on(insurance, date(2026, 4, 10))
    assert await insured_by(insurance, "cert-42", "chk-42-1") == (INSURER, "c-42"), "insured through the new last day"
    on(insurance, date(2026, 4, 11))
    assert await insured_by(insurance, "cert-42", "chk-42-2") == "no_active_membership"
    expired = await sweep(insurance, "expiry", date(2026, 4, 11))
    assert [(f["type"], f["certificate_number"], f["valid_until"]) for f in expired] == [
        (EligibilityCertificateExpired.event_type, number, "2026-04-10")]
    assert (await member(insurance, "c-41"))["status"] == "withdrawn"


async def test_a_last_day_moved_later_extends_the_kept_certificate_up_to_its_own_validity(insurance: Insurance):
    person_ref, number = await certificate_holder(insurance, 243, "c-43")  # valid through 31 March 2027
    await card_based_member(insurance, 244, "c-44", "cert-44")
    await insurance.insurer(withdrawal("c-43", LAST_DAY, "withdraw-c-43"))
    await insurance.insurer(withdrawal("c-44", LAST_DAY, "withdraw-c-44"))

    on(insurance, LAST_DAY)  # the last day itself: not passed yet
    facts = await insurance.insurer(withdrawal("c-43", date(2026, 6, 30), "withdraw-c-43-later"))
    assert types(facts) == ["member_withdrawn"] and said(facts) == ("2026-06-30", "2026-04-21", number, "2026-06-30")
    assert await certificates(insurance, person_ref) == [(number, "active", "2026-04-01", "2026-06-30")]
    assert said(await insurance.insurer(withdrawal("c-44", date(2026, 6, 30), "withdraw-c-44-later")))[:2] == (
        "2026-06-30", "2026-04-21")
    assert await sweep(insurance, "expiry", date(2026, 4, 22)) == [], "not ended after the old last day"
    on(insurance, date(2026, 6, 30))
    assert await insured_by(insurance, "cert-44", "chk-44-1") == (INSURER, "c-44")
    on(insurance, date(2026, 7, 1))
    assert await insured_by(insurance, "cert-44", "chk-44-2") == "no_active_membership"

    # Later than the certificate's own validity: it runs to the end of that, no further (same number).
    on(insurance, date(2026, 6, 1))
    facts = await insurance.insurer(withdrawal("c-43", date(2027, 9, 30), "withdraw-c-43-much-later"))
    assert said(facts) == ("2027-09-30", "2026-06-30", number, "2027-03-31")
    assert await certificates(insurance, person_ref) == [(number, "active", "2026-04-01", "2027-03-31")]


async def test_a_last_day_moved_later_does_not_bring_back_a_certificate_that_ended_for_another_reason(insurance: Insurance):
    """The member registered the card for insurance use in the notice period: the certificate was
    withdrawn (card_linked). Moving the last day later gives them cover by card longer, and no certificate."""
    person_ref = await insurance.resident(245)
    await insurance.card(person_ref, "cert-45")
    [issued] = of_type(await insurance.insurer(enrollment("c-45", 245, 245)), EligibilityCertificateIssued)
    number = issued["certificate_number"]
    await insurance.insurer(withdrawal("c-45", LAST_DAY, "withdraw-c-45"))
    registered = await insurance.holder(RegisterCardForInsurance(request_id="reg-c-45", certificate_id="cert-45"))
    assert [(f["reason"]) for f in of_type(registered, EligibilityCertificateWithdrawn)] == ["card_linked"]

    facts = await insurance.insurer(withdrawal("c-45", date(2026, 6, 30), "withdraw-c-45-later"))
    assert types(facts) == ["member_withdrawn"] and said(facts) == ("2026-06-30", "2026-04-21", None, None)
    assert await certificates(insurance, person_ref) == [(number, "withdrawn", "2026-04-01", "2026-04-21")]
    on(insurance, date(2026, 6, 30))
    assert await insured_by(insurance, "cert-45", "chk-45") == (INSURER, "c-45")


async def test_a_last_day_moved_into_the_past_ends_the_membership_and_withdraws_the_certificate_at_once(insurance: Insurance):
    person_ref, number = await certificate_holder(insurance, 246, "c-46")
    await card_based_member(insurance, 247, "c-47", "cert-47")
    await insurance.insurer(withdrawal("c-46", LAST_DAY, "withdraw-c-46"))
    await insurance.insurer(withdrawal("c-47", LAST_DAY, "withdraw-c-47"))

    on(insurance, date(2026, 4, 15))
    facts = await insurance.insurer(withdrawal("c-46", date(2026, 4, 10), "withdraw-c-46-earlier"))
    assert types(facts) == ["member_withdrawn", "eligibility_certificate_withdrawn"], facts
    assert said(facts) == ("2026-04-10", "2026-04-21", None, None)
    [withdrawn] = of_type(facts, EligibilityCertificateWithdrawn)
    assert (withdrawn["certificate_number"], withdrawn["reason"]) == (number, "member_withdrawn")
    assert await certificates(insurance, person_ref) == [(number, "withdrawn", "2026-04-01", "2026-04-21")]
    await insurance.insurer(withdrawal("c-47", date(2026, 4, 10), "withdraw-c-47-earlier"))
    assert await insured_by(insurance, "cert-47", "chk-47") == "no_active_membership"


async def test_once_the_last_day_has_passed_another_day_is_refused(insurance: Insurance):
    """And before, the same day under a new request is refused too: there is nothing to change."""
    person_ref, number = await certificate_holder(insurance, 248, "c-48")
    await insurance.insurer(withdrawal("c-48", LAST_DAY, "withdraw-c-48"))

    [same] = await insurance.insurer(withdrawal("c-48", LAST_DAY, "withdraw-c-48-same-day"))
    assert (same["type"], same["reason"], same["person_ref"]) == (InsuranceRequestRejected.event_type, "member_withdrawn", person_ref)
    assert "already withdrawn with this last day, 2026-04-21" in same["message"]

    on(insurance, date(2026, 4, 22))
    for request_id, last_day in (("withdraw-c-48-later", date(2026, 6, 30)), ("withdraw-c-48-earlier", date(2026, 4, 10))):
        [refused] = await insurance.insurer(withdrawal("c-48", last_day, request_id))
        assert (refused["type"], refused["reason"]) == (InsuranceRequestRejected.event_type, "member_withdrawn"), refused
        assert "its last day, 2026-04-21, has passed" in refused["message"]
    assert ((await member(insurance, "c-48"))["withdrawn_on"]) == "2026-04-21"
    assert await certificates(insurance, person_ref) == [(number, "active", "2026-04-01", "2026-04-21")]
    assert types(await sweep(insurance, "expiry", date(2026, 4, 22))) == ["eligibility_certificate_expired"]


async def sent(insurance: Insurance, request: WithdrawMember) -> tuple[KafkaRecord, list[tuple[str, dict[str, Any]]]]:
    """Send the request under a new event id: (its record, the facts it caused as (fact id, JSON with `type`))."""
    record = insurance.partner.record(request, subject="subject", source=f"insurer/{INSURER}")
    await insurance.partner.send_record(request.topic(insurance.namespace), record)
    return record, await facts_of(insurance, record)


async def facts_of(insurance: Insurance, record: KafkaRecord) -> list[tuple[str, dict[str, Any]]]:
    """The facts the service recorded for the record's event, as (fact id, JSON with `type`), once published."""
    event_id = record.header("ce_id").decode()
    outcome = await insurance.processed(event_id)
    received = await insurance.caused_by(event_id, len(outcome.get("facts", [])))
    return [(r.id, {"type": r.type, **r.json()}) for r in received][-len(outcome.get("facts", [])):]


async def test_a_withdrawal_sent_again_gives_its_first_facts_with_their_ids_and_moves_nothing_back(insurance: Insurance):
    """The first withdrawal and the move, each sent again under a new event id (an insurer's retry)
    and run again late with the same one (a consumer that fell behind), after a later move: each
    gives the facts it gave first, with their ids, and the last day stays the latest one. The same
    request id with another day is refused."""
    person_ref, number = await certificate_holder(insurance, 249, "c-49")
    first_request = withdrawal("c-49", LAST_DAY, "withdraw-c-49")
    move = withdrawal("c-49", date(2026, 4, 30), "withdraw-c-49-moved")
    _, first = await sent(insurance, first_request)
    move_record, moved = await sent(insurance, move)
    assert said([f for _, f in moved]) == ("2026-04-30", "2026-04-21", number, "2026-04-30")
    on(insurance, date(2026, 4, 10))
    _, latest = await sent(insurance, withdrawal("c-49", date(2026, 5, 15), "withdraw-c-49-moved-again"))
    assert said([f for _, f in latest]) == ("2026-05-15", "2026-04-30", number, "2026-05-15")

    for request, facts in ((first_request, first), (move, moved)):
        _, again = await sent(insurance, request)
        assert again == facts, "the same facts, with the same ids"
    await run_late(insurance.partner, insurance.database, move.topic(insurance.namespace), move_record)
    assert await facts_of(insurance, move_record) == moved, "run again late: the same facts, with the same ids"

    _, refused = await sent(insurance, withdrawal("c-49", date(2026, 6, 30), "withdraw-c-49-moved"))
    [(_, rejection)] = refused
    assert (rejection["type"], rejection["reason"]) == (InsuranceRequestRejected.event_type, "member_withdrawn")
    assert "this request id already set the member's last day to 2026-04-30" in rejection["message"]
    assert rejection["person_ref"] == person_ref
    assert (await member(insurance, "c-49"))["withdrawn_on"] == "2026-05-15"
    assert await certificates(insurance, person_ref) == [(number, "active", "2026-04-01", "2026-05-15")]


async def test_a_move_run_again_after_a_crash_gives_the_facts_it_would_have_given(insurance: Insurance, monkeypatch):
    """The crash comes after the move was saved and the certificate extended, before what it gave
    was recorded: the rerun finds the record moved by this very request and finishes it."""
    person_ref, number = await certificate_holder(insurance, 250, "c-50")
    await insurance.insurer(withdrawal("c-50", LAST_DAY, "withdraw-c-50"))
    store = insurance.running.service.deps.store
    fault = fail_once(monkeypatch, store, "record_withdrawal_outcome", when=lambda key, request_id, **_: request_id.endswith("later"))

    facts = await insurance.insurer(withdrawal("c-50", date(2026, 6, 30), "withdraw-c-50-later"))
    assert fault.failed is not None
    assert types(facts) == ["member_withdrawn"] and said(facts) == ("2026-06-30", "2026-04-21", number, "2026-06-30")
    assert await certificates(insurance, person_ref) == [(number, "active", "2026-04-01", "2026-06-30")]


async def test_two_moves_side_by_side_are_applied_one_after_the_other(insurance: Insurance, monkeypatch):
    """Two moves of one member run at once (another instance): the one that finds the record moved
    since it read it decides again on the record as it is, so its fact names the day it really moved."""
    person_ref, number = await certificate_holder(insurance, 251, "c-51")
    await insurance.insurer(withdrawal("c-51", LAST_DAY, "withdraw-c-51"))
    store = insurance.running.service.deps.store
    read = store.member_document
    other: list[list[dict[str, Any]]] = []

    async def moved_meanwhile(key):
        document = await read(key)
        if key == f"{INSURER}/記号/c-51" and not other:  # another instance: its own locks, the same database
            other.append([])
            deps = dataclasses.replace(insurance.running.service.deps, locks=PersonLocks())
            envelope = Envelope(id=str(uuid.uuid4()), source=f"insurer/{INSURER}", type=WithdrawMember.event_type,
                                time=insurance.clock.now())
            answer = await withdraw_member(withdrawal("c-51", date(2026, 5, 31), "withdraw-c-51-b"),
                                           HandlerContext(envelope=envelope, clock=insurance.clock, deps=deps))
            other[0] = [{"type": f.event_type, **f.model_dump(mode="json")}
                        for f in (answer.facts if isinstance(answer, EarlierFacts) else answer)]
        return document

    monkeypatch.setattr(store, "member_document", moved_meanwhile)
    facts = await insurance.insurer(withdrawal("c-51", date(2026, 4, 25), "withdraw-c-51-a"))

    assert said(other[0]) == ("2026-05-31", "2026-04-21", number, "2026-05-31")
    assert said(facts) == ("2026-04-25", "2026-05-31", number, "2026-04-25")
    assert (await member(insurance, "c-51"))["withdrawn_on"] == "2026-04-25"
    assert await certificates(insurance, person_ref) == [(number, "active", "2026-04-01", "2026-04-25")]
