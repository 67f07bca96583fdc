"""Each linking decision and its reason, and the operator's audited resolution of a held
record, against the real broker and database."""

from __future__ import annotations

import dataclasses
from datetime import date

from mynumber_contracts.enrollment import ResidentDeceased, ResidentRegistered
from mynumber_contracts.insurance import MemberLinkResolved, WithdrawMember

from tests.insurance.conftest import (
    INSURER,
    OPERATOR,
    Insurance,
    a_number,
    as_institution,
    attributes_of,
    enrollment,
    types,
)
from tests.support.faults import fail_once


async def test_each_linking_decision_and_its_reason(insurance: Insurance):
    alice = await insurance.resident(1)
    await insurance.resident(2)
    await insurance.resident(3, attributes_of(2, name_kana="ﾔﾏﾀﾞ ﾊﾅｺ", name_kanji="山田　花子"))  # the same person twice, in notation
    deceased = await insurance.resident(4)
    await insurance.registry(ResidentDeceased(person_ref=deceased, died_on=date(2026, 3, 1)))

    linked = await insurance.insurer(enrollment("m-1", 1, 1, name_kana="ﾔﾏﾀﾞ ﾊﾅｺ", address="東京都千代田区永田町一丁目7番地1"))
    assert types(linked) == ["member_linked", "eligibility_certificate_issued"] and linked[0]["person_ref"] == alice
    [again] = await insurance.insurer(enrollment("m-1", 1, 1, request_id="enroll-m-1-again"))
    assert again["reason"] == "already_enrolled"

    def held(facts: list[dict]) -> tuple:
        [fact] = facts
        assert types(facts) == ["member_link_held"]
        return fact["reason"], fact["person_ref"], sorted(fact["mismatched"])

    assert held(await insurance.insurer(enrollment("m-2", None, 1))) == ("number_missing", None, [])
    assert held(await insurance.insurer(enrollment("m-3", 1, 1, address="東京都千代田区永田町1-7-100"))) == (
        "attribute_mismatch", alice, ["address"])
    assert held(await insurance.insurer(enrollment("m-4", 2, 2)))[0] == "ambiguous"
    assert held(await insurance.insurer(enrollment("m-5", 4, 4)))[0] == "resident_not_active"
    assert held(await insurance.insurer(enrollment("m-6", 9, 9)))[0] == "resident_not_found"

    # Held only because the resident was not known yet: decided as soon as the registry says so.
    late = insurance.ref(a_number(9))
    facts = await insurance.registry(ResidentRegistered(person_ref=late, municipality_code="131016",
                                                        attributes=attributes_of(9), nationality="JP"))
    assert types(facts) == ["member_linked", "eligibility_certificate_issued"] and facts[0]["person_ref"] == late

    # Only the insurer itself may enroll its members.
    [foreign] = await insurance.insurer(enrollment("m-7", 1, 1), insurer="01130012")
    assert foreign["reason"] == "source_mismatch"

    queue = await insurance.http.get("/links/held", headers=OPERATOR)
    assert {(m["member_number"], m["held_reason"]) for m in queue.json()} == {
        ("m-2", "number_missing"), ("m-3", "attribute_mismatch"), ("m-4", "ambiguous"), ("m-5", "resident_not_active")}


async def test_an_operator_resolves_a_held_record_and_every_decision_is_audited(insurance: Insurance):
    bob = await insurance.resident(5)
    carol = await insurance.resident(6)
    await insurance.insurer(enrollment("m-no-number", None, 5))
    await insurance.insurer(enrollment("m-mismatch", 6, 6, address="東京都千代田区永田町9-9-9"))
    path = f"/members/{INSURER}/記号/m-no-number/link-resolution"
    command = {"resolution_id": "res-1", "operator": "sato", "decision": "link", "person_ref": bob,
               "reason": "identity confirmed against the registry with the member's card at the counter"}

    # Operators only.
    assert (await insurance.http.post(path, json=command)).status_code == 401
    assert (await insurance.http.post(path, json=command, headers=as_institution())).status_code == 403

    before = len(insurance.facts.records)
    response = await insurance.http.post(path, json=command, headers=OPERATOR)
    assert response.status_code == 200, response.text
    assert (response.json()["link_state"], response.json()["person_ref"]) == ("linked", bob)
    await insurance.facts.wait_count(before + 2)
    published = [{"type": r.type, **r.json()} for r in insurance.facts.records[before:]]
    assert types(published) == ["member_link_resolved", "eligibility_certificate_issued"]
    assert (published[0]["decision"], published[0]["operator"], published[0]["person_ref"]) == ("link", "sato", bob)

    # The same command again is the same decision, recorded once.
    again = await insurance.http.post(path, json=command, headers=OPERATOR)
    assert again.status_code == 200 and again.json() == response.json()
    trail = (await insurance.http.get(f"/audit/persons/{bob}", headers=OPERATOR)).json()
    [entry] = [e for e in trail if e["action"].startswith("insurance.link.")]
    assert (entry["actor"], entry["action"], entry["person_ref"], entry["reason"]) == (
        "operator/sato", "insurance.link.link", bob, command["reason"])
    assert entry["details"]["member_key"] == f"{INSURER}/記号/m-no-number" and entry["at"]
    assert (await insurance.http.get(f"/audit/persons/{bob}")).status_code == 401

    # A record that is not held, an unknown record, an unknown person, a link without a person.
    assert (await insurance.http.post(path, json={**command, "resolution_id": "res-2"}, headers=OPERATOR)).status_code == 409
    unknown = f"/members/{INSURER}/記号/m-none/link-resolution"
    assert (await insurance.http.post(unknown, json=command, headers=OPERATOR)).status_code == 404
    mismatch = f"/members/{INSURER}/記号/m-mismatch/link-resolution"
    nobody = {**command, "resolution_id": "res-3", "person_ref": "pr_" + "a" * 26}
    assert (await insurance.http.post(mismatch, json=nobody, headers=OPERATOR)).status_code == 422
    assert (await insurance.http.post(mismatch, json={**command, "resolution_id": "res-4", "person_ref": None},
                                      headers=OPERATOR)).status_code == 422

    # Rejected: not linked, audited on the person the number pointed to; the insurer then corrects its record.
    before = len(insurance.facts.records)
    reject = {"resolution_id": "res-5", "operator": "suzuki", "decision": "reject", "reason": "the insurer's address is wrong"}
    response = await insurance.http.post(mismatch, json=reject, headers=OPERATOR)
    assert (response.status_code, response.json()["link_state"], response.json()["person_ref"]) == (200, "rejected", None)
    await insurance.facts.wait_count(before + 1)
    assert insurance.facts.records[before].type == MemberLinkResolved.event_type
    trail = (await insurance.http.get(f"/audit/persons/{carol}", headers=OPERATOR)).json()
    assert [(e["actor"], e["action"]) for e in trail] == [
        (f"insurer/{INSURER}", "insurance.link_held"), ("operator/suzuki", "insurance.link.reject")]
    assert trail[0]["reason"] == "held: attribute_mismatch" and trail[0]["details"]["mismatched"] == ["address"]
    corrected = await insurance.insurer(enrollment("m-mismatch", 6, 6, request_id="enroll-m-mismatch-2"))
    assert types(corrected) == ["member_linked", "eligibility_certificate_issued"] and corrected[0]["person_ref"] == carol
    trail = (await insurance.http.get(f"/audit/persons/{carol}", headers=OPERATOR)).json()
    assert (trail[-1]["actor"], trail[-1]["action"]) == (f"insurer/{INSURER}", "insurance.link"), "automatic links are audited"
    member = await insurance.http.get(f"/members/{INSURER}/記号/m-mismatch", headers=OPERATOR)
    assert (member.json()["link_state"], member.json()["person_ref"]) == ("linked", carol)


async def test_a_crash_between_saving_the_link_and_the_persons_record_is_finished_by_the_rerun(insurance: Insurance, monkeypatch):
    """The link is saved on the member record, then added to the person's record. A crash between
    the two writes (here: the database connection lost at that moment, so the event runs again)
    must not leave a linked member that the person's eligibility and certificates never see."""
    alice = await insurance.resident(1)
    store = insurance.running.service.deps.store
    # The connection is lost after the member record was saved, before the link is added to the person.
    fault = fail_once(monkeypatch, store, "change_person",
                      when=lambda person_ref, changes, **options: options.get("add_member_key"))
    facts = await insurance.insurer(enrollment("m-crash", 1, 1))

    assert fault.failed and fault.failed.args[0] == alice
    assert types(facts) == ["member_linked", "eligibility_certificate_issued"], facts
    assert [c["status"] for c in await insurance.certificates(alice)] == ["active"]


def withdrawal_of(member: str, last_day: date) -> WithdrawMember:
    return WithdrawMember(request_id=f"withdraw-{member}", insurer_number=INSURER, member_symbol="記号", member_number=member,
                          withdrawn_on=last_day)


def withdrawn_at_the_next_resident_look_up(insurance: Insurance, monkeypatch, member: str) -> list[list[dict]]:
    """The insurer withdraws `member` (last day 30 April 2026), on its own topic, just after the next
    look-up of a registered resident; the list gets the withdrawal's facts."""
    store = insurance.running.service.deps.store
    look_up, withdrawal = store.registered_resident, []

    async def withdrawn_meanwhile(person_ref):
        resident = await look_up(person_ref)
        if not withdrawal:
            withdrawal.append(await insurance.insurer(withdrawal_of(member, date(2026, 4, 30))))
        return resident

    monkeypatch.setattr(store, "registered_resident", withdrawn_meanwhile)
    return withdrawal


async def test_a_record_withdrawn_while_its_resident_registers_stays_withdrawn(insurance: Insurance, monkeypatch):
    """The registry's fact and the insurer's withdrawal come on different topics, so they may run
    side by side: the held record is decided only while it is still held as it was read."""
    [held] = await insurance.insurer(enrollment("m-31", 31, 31))
    assert held["reason"] == "resident_not_found"
    store = insurance.running.service.deps.store
    withdrawal = withdrawn_at_the_next_resident_look_up(insurance, monkeypatch, "m-31")
    facts = await insurance.registry(ResidentRegistered(person_ref=insurance.ref(a_number(31)), municipality_code="131016",
                                                        attributes=attributes_of(31), nationality="JP"))

    assert types(withdrawal[0]) == ["member_withdrawn"]
    assert facts == [], "no link for a record the insurer withdrew"
    member = await store.member_document(f"{INSURER}/記号/m-31")
    assert (member["status"], member["link_state"]) == ("withdrawn", "held")
    assert await store.pending_for(insurance.ref(a_number(31))) == []


async def test_an_operator_cannot_link_a_record_the_insurer_withdrew_while_the_resolution_ran(insurance: Insurance, monkeypatch):
    """The operator's resolution (HTTP) and the insurer's withdrawal (its own topic) take different
    locks: the resolution's person's, the withdrawal's record's (a held record has no person). A
    withdrawal that lands after the resolution read the record held, and before it saved, must not
    be followed by a link. Before, the record ended withdrawn and linked: the operator was told it
    was linked, `MemberLinkResolved` went out for a withdrawn record and the person got a certificate."""
    dan = await insurance.resident(32)
    await insurance.insurer(enrollment("m-32", None, 32))
    store = insurance.running.service.deps.store
    withdrawal = withdrawn_at_the_next_resident_look_up(insurance, monkeypatch, "m-32")
    before = len(insurance.facts.records)
    response = await insurance.http.post(f"/members/{INSURER}/記号/m-32/link-resolution", headers=OPERATOR, json={
        "resolution_id": "res-32", "operator": "sato", "decision": "link", "person_ref": dan, "reason": "confirmed at the counter"})

    assert types(withdrawal[0]) == ["member_withdrawn"] and withdrawal[0][0]["person_ref"] is None
    assert response.status_code == 409, response.text
    member = await store.member_document(f"{INSURER}/記号/m-32")
    assert (member["status"], member["link_state"], member.get("person_ref")) == ("withdrawn", "held", None)
    assert not [r for r in (await insurance.facts.settle())[before:] if r.type != "jp.mynumber.insurance.member_withdrawn.v1"]
    assert await insurance.certificates(dan) == []


async def test_a_withdrawal_that_read_the_record_before_an_operator_linked_it_withdraws_the_linked_member(
        insurance: Insurance, monkeypatch):
    """The other order: the withdrawal read the record held (no person), then the operator linked
    it. Before, the withdrawal saved its decision on the record as read: the person was never
    settled, so their certificate stayed valid for a year and their card kept answering for the
    membership. Now the withdrawal is decided again on the linked record."""
    erin = await insurance.resident(33)
    await insurance.insurer(enrollment("m-33", None, 33))
    store = insurance.running.service.deps.store
    read = store.member_document
    resolution: list[int] = []

    async def linked_meanwhile(key):
        document = await read(key)
        if key == f"{INSURER}/記号/m-33" and not resolution:
            resolution.append(0)
            response = await insurance.http.post(f"/members/{INSURER}/記号/m-33/link-resolution", headers=OPERATOR, json={
                "resolution_id": "res-33", "operator": "sato", "decision": "link", "person_ref": erin, "reason": "confirmed"})
            resolution[0] = response.status_code
        return document

    monkeypatch.setattr(store, "member_document", linked_meanwhile)
    facts = await insurance.insurer(withdrawal_of("m-33", date(2026, 4, 30)))

    assert resolution == [200]
    [withdrawn] = [f for f in facts if f["type"] == "jp.mynumber.insurance.member_withdrawn.v1"]
    assert withdrawn["person_ref"] == erin
    [certificate] = await insurance.certificates(erin)
    assert (certificate["status"], certificate["valid_until"]) == ("active", "2026-04-30"), "kept through the last day only"
    assert (withdrawn["certificate_number"], withdrawn["certificate_valid_until"]) == (certificate["certificate_number"], "2026-04-30")
    member = await read(f"{INSURER}/記号/m-33")
    assert (member["status"], member["link_state"], member["person_ref"]) == ("withdrawn", "linked", erin)


async def test_the_same_resolution_run_side_by_side_by_another_instance_gives_the_same_answer(insurance: Insurance, monkeypatch):
    """Two instances take the same operator command (a retry through another instance): the one
    that finds the record resolved meanwhile by that command answers as it did, and no other link is made."""
    from mynumber_contracts.insurance import LinkDecision

    from services.insurance.handlers import LinkResolution, PersonLocks, resolve_link

    fay = await insurance.resident(34)
    await insurance.insurer(enrollment("m-34", None, 34))
    deps = insurance.running.service.deps
    store, look_up = deps.store, deps.store.registered_resident
    command = {"resolution_id": "res-34", "operator": "sato", "decision": "link", "person_ref": fay, "reason": "confirmed"}
    other: list[tuple[dict, list]] = []
    started: list[bool] = []

    async def resolved_meanwhile(person_ref):
        resident = await look_up(person_ref)
        if not started:  # the other instance: its own locks, the same database
            started.append(True)
            other.append(await resolve_link(dataclasses.replace(deps, locks=PersonLocks()), f"{INSURER}/記号/m-34",
                                            LinkResolution(**{**command, "decision": LinkDecision.link}),
                                            cause_id="link-resolution:res-34"))
        return resident

    monkeypatch.setattr(store, "registered_resident", resolved_meanwhile)
    response = await insurance.http.post(f"/members/{INSURER}/記号/m-34/link-resolution", headers=OPERATOR, json=command)

    assert response.status_code == 200, response.text
    assert (response.json()["link_state"], response.json()["person_ref"]) == ("linked", fay)
    [(document, facts)] = other
    assert document["resolution"]["resolution_id"] == "res-34"
    assert [f.event_type.split(".")[-2] for f in facts] == ["member_link_resolved", "eligibility_certificate_issued"]
    [certificate] = await insurance.certificates(fay)
    assert certificate["certificate_number"] == facts[1].certificate_number, "one certificate, the same in both answers"
    trail = (await insurance.http.get(f"/audit/persons/{fay}", headers=OPERATOR)).json()
    assert [e["action"] for e in trail if e["action"].startswith("insurance.link.")] == ["insurance.link.link"]
