"""A use case that loses its database connection between two of its writes runs again when the
event is redelivered; the rerun must complete every effect and produce the same facts, once.

Each test makes one store write fail once with AutoReconnect (the write itself done or not, as
stated) and checks the state and the facts after the redelivered event, against the real broker
and database."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from mynumber_contracts.enrollment import CardReissued, ResidentAttributesChanged, ResidentRegistered
from mynumber_contracts.insurance import (
    EligibilityCertificateWithdrawn,
    EnrollMember,
    MedicalDataReleased,
    MedicalDataType,
    Medicine,
    RecordConsent,
    RecordPrescription,
    RegisterCardForInsurance,
    RequestMedicalData,
    WithdrawMember,
)
from pymongo.errors import AutoReconnect

from tests.insurance.conftest import (
    INSTITUTION,
    INSURER,
    OPERATOR,
    Insurance,
    a_number,
    as_institution,
    attributes_of,
    of_type,
    types,
)


def enrollment(member: str, number_seed: int | None, attributes_seed: int, **changes: object) -> EnrollMember:
    return EnrollMember(
        request_id=f"enroll-{member}", insurer_number=INSURER, member_symbol="記号", member_number=member,
        my_number=a_number(number_seed) if number_seed is not None else None,
        attributes=attributes_of(attributes_seed, **changes), enrolled_on=date(2026, 4, 1),
    )


async def audit_actions(insurance: Insurance, person_ref: str, prefix: str) -> list[str]:
    trail = (await insurance.http.get(f"/audit/persons/{person_ref}", headers=OPERATOR)).json()
    return [entry["action"] for entry in trail if entry["action"].startswith(prefix)]


async def test_a_card_reissue_rerun_still_retires_the_replaced_cards_eligibility(insurance: Insurance, monkeypatch):
    """The new card is saved on the person, then the eligibility documents of the new and the
    replaced card are written. A rerun after a crash in between must still end the old card."""
    holder = await insurance.resident(31)
    await insurance.card(holder, "cert-31")
    await insurance.holder(RegisterCardForInsurance(request_id="reg-31", certificate_id="cert-31"))
    assert types(await insurance.insurer(enrollment("31", 31, 31))) == ["member_linked"]
    assert (await insurance.eligibility("cert-31"))["eligible"]

    store = insurance.running.service.deps.store
    change_person = store.change_person
    crashed: list[str] = []

    async def connection_lost_once_after_the_write(person_ref: str, changes: dict, **options: Any):
        person = await change_person(person_ref, changes, **options)
        if options.get("retire_card") and not crashed:
            crashed.append(person_ref)
            raise AutoReconnect("connection lost after the new card was saved (simulated)")
        return person

    monkeypatch.setattr(store, "change_person", connection_lost_once_after_the_write)
    facts = await insurance.registry(CardReissued(
        person_ref=holder, previous_card_number="C-cert-31", card_number="C-cert-31b", certificate_id="cert-31b",
        issued_on=date(2026, 4, 1), expires_on=date(2036, 6, 15), certificate_expires_on=date(2031, 6, 15), photo_less=False))

    assert crashed == [holder]
    assert facts == []
    assert (await insurance.eligibility("cert-31b"))["eligible"]
    old = await insurance.eligibility("cert-31")
    assert (old["eligible"], old["reason"]) == (False, "card_replaced")


async def test_an_enrollment_rerun_still_holds_the_record_for_the_resident_not_yet_known(insurance: Insurance, monkeypatch):
    """A record whose number points to a resident not known yet is saved as held, then noted as
    waiting for that resident. After a crash in between, the rerun must still note it, or the
    record is never linked when the resident registers."""
    store = insurance.running.service.deps.store
    hold_until_resident_known = store.hold_until_resident_known
    crashed: list[str] = []

    async def connection_lost_once(person_ref: str, member_key: str) -> None:
        if not crashed:
            crashed.append(person_ref)
            raise AutoReconnect("connection lost after the member record was saved (simulated)")
        await hold_until_resident_known(person_ref, member_key)

    monkeypatch.setattr(store, "hold_until_resident_known", connection_lost_once)
    facts = await insurance.insurer(enrollment("m-81", 81, 81))
    late = insurance.ref(a_number(81))
    assert crashed == [late]
    assert [(f["type"].split(".")[-2], f["reason"]) for f in facts] == [("member_link_held", "resident_not_found")]

    facts = await insurance.registry(ResidentRegistered(person_ref=late, municipality_code="131016",
                                                        attributes=attributes_of(81), nationality="JP"))
    assert types(facts) == ["member_linked", "eligibility_certificate_issued"], facts
    assert await audit_actions(insurance, late, "insurance.link") == ["insurance.link_held", "insurance.link"]


@pytest.mark.parametrize("lost", ["before adding the link to the person", "after issuing the certificate"])
async def test_a_resident_registered_rerun_finishes_linking_the_records_held_for_them(insurance: Insurance, monkeypatch, lost: str):
    """A record held because the resident was not known yet is linked when they register: the link
    is saved on the member record, added to the person, and a certificate issued. A crash in
    between must not leave a linked member without eligibility, certificate, fact or audit entry."""
    assert types(await insurance.insurer(enrollment("m-41", 41, 41))) == ["member_link_held"]
    store = insurance.running.service.deps.store
    change_person, issue_certificate = store.change_person, store.issue_certificate
    crashed: list[str] = []

    async def connection_lost_before_adding_the_link(person_ref: str, changes: dict, **options: Any):
        if options.get("add_member_key") and not crashed:
            crashed.append(person_ref)
            raise AutoReconnect("connection lost after the member record was saved (simulated)")
        return await change_person(person_ref, changes, **options)

    async def connection_lost_after_issuing(certificate: Any, **options: Any):
        issued = await issue_certificate(certificate, **options)
        if not crashed:
            crashed.append(certificate.person_ref)
            raise AutoReconnect("connection lost after the certificate was issued (simulated)")
        return issued

    if lost == "before adding the link to the person":
        monkeypatch.setattr(store, "change_person", connection_lost_before_adding_the_link)
    else:
        monkeypatch.setattr(store, "issue_certificate", connection_lost_after_issuing)
    late = insurance.ref(a_number(41))
    facts = await insurance.registry(ResidentRegistered(person_ref=late, municipality_code="131016",
                                                        attributes=attributes_of(41), nationality="JP"))

    assert crashed == [late]
    assert types(facts) == ["member_linked", "eligibility_certificate_issued"], facts
    assert [c["status"] for c in await insurance.certificates(late)] == ["active"]
    assert await audit_actions(insurance, late, "insurance.link") == ["insurance.link_held", "insurance.link"]
    assert await store.pending_for(late) == []


async def test_an_operator_resolution_retried_after_a_crash_adds_the_link_to_the_person(insurance: Insurance, monkeypatch):
    """The operator's link is saved on the member record, then added to the person. The operator
    retries the same command after a crash in between: the retry must complete the link."""
    bob = await insurance.resident(51)
    await insurance.insurer(enrollment("m-51", None, 51))
    path = f"/members/{INSURER}/記号/m-51/link-resolution"
    command = {"resolution_id": "res-51", "operator": "sato", "decision": "link", "person_ref": bob,
               "reason": "identity confirmed at the counter"}
    store = insurance.running.service.deps.store
    change_person = store.change_person
    crashed: list[str] = []

    async def connection_lost_once(person_ref: str, changes: dict, **options: Any):
        if options.get("add_member_key") and not crashed:
            crashed.append(person_ref)
            raise AutoReconnect("connection lost after the member record was saved (simulated)")
        return await change_person(person_ref, changes, **options)

    monkeypatch.setattr(store, "change_person", connection_lost_once)
    try:
        failed = await insurance.http.post(path, json=command, headers=OPERATOR)
        assert failed.status_code >= 500
    except AutoReconnect:
        pass
    assert crashed == [bob]

    before = len(insurance.facts.records)
    response = await insurance.http.post(path, json=command, headers=OPERATOR)
    assert response.status_code == 200, response.text
    await insurance.facts.wait_count(before + 2)
    published = [{"type": r.type, **r.json()} for r in insurance.facts.records[before:]]
    assert types(published) == ["member_link_resolved", "eligibility_certificate_issued"]
    assert [c["status"] for c in await insurance.certificates(bob)] == ["active"]
    assert await audit_actions(insurance, bob, "insurance.link.") == ["insurance.link.link"]


async def test_a_withdrawal_rerun_republishes_the_certificate_withdrawal_with_its_reason(insurance: Insurance, monkeypatch):
    """The certificate is withdrawn, then the eligibility documents are written. A rerun after a
    crash in between produces the same facts: the withdrawal keeps its reason."""
    member = await insurance.resident(61)
    assert types(await insurance.insurer(enrollment("m-61", 61, 61))) == ["member_linked", "eligibility_certificate_issued"]
    store = insurance.running.service.deps.store
    end_certificate = store.end_certificate
    crashed: list[str] = []

    async def connection_lost_once_after_the_write(certificate: Any, status: Any, **options: Any):
        ended = await end_certificate(certificate, status, **options)
        if not crashed:
            crashed.append(certificate.person_ref)
            raise AutoReconnect("connection lost after the certificate was withdrawn (simulated)")
        return ended

    monkeypatch.setattr(store, "end_certificate", connection_lost_once_after_the_write)
    facts = await insurance.insurer(WithdrawMember(request_id="w-61", insurer_number=INSURER, member_symbol="記号",
                                                   member_number="m-61", withdrawn_on=date(2026, 4, 30)))

    assert crashed == [member]
    assert types(facts) == ["member_withdrawn", "eligibility_certificate_withdrawn"]
    assert [f["reason"] for f in of_type(facts, EligibilityCertificateWithdrawn)] == ["member_withdrawn"]
    assert [c["status"] for c in await insurance.certificates(member)] == ["withdrawn"]


class _PullLostOnce:
    """The match index collection, losing the connection once when asked to remove a resident."""

    def __init__(self, collection: Any, crashed: list[str]) -> None:
        self._collection, self._crashed = collection, crashed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)

    async def update_one(self, query: dict, update: dict, **options: Any) -> Any:
        if "$pull" in update and not self._crashed:
            self._crashed.append(query["_id"])
            raise AutoReconnect("connection lost before the old attributes left the match index (simulated)")
        return await self._collection.update_one(query, update, **options)


async def test_an_attributes_change_rerun_removes_the_resident_from_the_old_match_index_entry(insurance: Insurance, monkeypatch):
    """A resident's new attributes are saved and the match index follows. After a crash between
    the two, the rerun must still take the resident off their old attributes' entry, or a later
    record with those attributes would be held as ambiguous."""
    moved = await insurance.resident(71)
    store = insurance.running.service.deps.store
    crashed: list[str] = []
    monkeypatch.setattr(store, "match_index", _PullLostOnce(store.match_index, crashed))
    assert await insurance.registry(ResidentAttributesChanged(
        person_ref=moved, attributes=attributes_of(72), changed=["address"], effective_on=date(2026, 4, 1),
        signing_certificate_invalidated=True)) == []
    assert len(crashed) == 1
    monkeypatch.undo()

    assert await store.residents_with(attributes_of(71)) == []
    assert await store.residents_with(attributes_of(72)) == [moved]
    newcomer = await insurance.resident(73, attributes_of(71))  # someone else now has the old attributes
    facts = await insurance.insurer(enrollment("m-73", 73, 71))
    assert types(facts) == ["member_linked", "eligibility_certificate_issued"] and facts[0]["person_ref"] == newcomer


async def test_a_medical_data_request_rerun_later_keeps_the_first_decision(insurance: Insurance, monkeypatch):
    """Whether data is released depends on the time of the decision. A request that released data,
    audited it and then lost the connection is decided again when redelivered, possibly after the
    consent window ended: the rerun must report the release that was made, not a denial."""
    patient = await insurance.resident(91)
    await insurance.card(patient, "cert-91")
    await insurance.holder(RegisterCardForInsurance(request_id="reg-91", certificate_id="cert-91"))
    await insurance.insurer(enrollment("91", 91, 91))
    await insurance.insurer(RecordPrescription(
        record_id="rx-91", insurer_number=INSURER, member_symbol="記号", member_number="91", dispensed_on=date(2026, 3, 15),
        medicines=[Medicine(name="ロキソプロフェン錠60mg", quantity=3, unit="錠", days=5)]))
    await insurance.institution(RecordConsent(request_id="consent-91", institution_code=INSTITUTION, certificate_id="cert-91",
                                              data_types=[MedicalDataType.prescriptions]))
    audit = insurance.running.service.deps.audit
    record = audit.record
    crashed: list[str] = []

    async def connection_lost_once_after_the_release_was_audited(**entry: Any):
        written = await record(**entry)
        if entry["action"] == "insurance.medical_data.released" and not crashed:
            crashed.append(entry["person_ref"])
            insurance.clock.advance(timedelta(hours=25))  # redelivered after the consent window ended
            raise AutoReconnect("connection lost after the release was audited (simulated)")
        return written

    monkeypatch.setattr(audit, "record", connection_lost_once_after_the_release_was_audited)
    released_at = insurance.clock.now()
    [fact] = await insurance.institution(RequestMedicalData(
        request_id="ask-91", institution_code=INSTITUTION, certificate_id="cert-91", data_types=[MedicalDataType.prescriptions]))

    assert crashed == [patient]
    assert (fact["type"], fact["record_count"], fact["covers_until"]) == (MedicalDataReleased.event_type, 1, "2026-04-01")
    path = f"/medical-data/releases/{fact['release_id']}"
    past_its_reading_period = await insurance.http.get(path, headers=as_institution())  # 25 hours after the release
    insurance.clock.set(released_at + timedelta(hours=1))
    release = await insurance.http.get(path, headers=as_institution())
    assert past_its_reading_period.status_code == 410
    assert [r["record_id"] for r in release.json()["records"]] == ["rx-91"]
    assert await audit_actions(insurance, patient, "insurance.medical_data.") == ["insurance.medical_data.released"]
