"""A use case that loses its database connection between two of its writes runs again when the
event is redelivered; the rerun must complete every effect and produce the same facts, once.

Each test makes one store write fail once with AutoReconnect (the write itself done or not, as
stated) and checks the state and the facts after the redelivered event, against the real broker
and database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from mynumber_contracts.enrollment import (
    CardIssued,
    CardReissued,
    CardResumed,
    CardSuspended,
    ResidentAttributesChanged,
    ResidentRegistered,
)
from mynumber_contracts.insurance import (
    ApplyForEligibilityCertificate,
    CancelInsuranceUse,
    CertificateApplicationReason,
    ConfigureInsurer,
    ConsentRecorded,
    EligibilityCertificateIssued,
    EligibilityCertificateWithdrawn,
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

from services.insurance.domain import member_key
from tests.insurance.conftest import (
    INSTITUTION,
    INSURER,
    OPERATOR,
    REGISTRY,
    Insurance,
    a_number,
    as_institution,
    attributes_of,
    enrollment,
    of_type,
    types,
)
from tests.support.faults import fail_once
from tests.support.reruns import run_late


def adding_a_member_key(person_ref: str, changes: dict, **options: object) -> bool:
    """The person's write that adds the member record's link (made after the record is saved)."""
    return bool(options.get("add_member_key"))


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
    # The connection is lost after the new card was saved.
    fault = fail_once(monkeypatch, store, "change_person", after=True,
                      when=lambda person_ref, changes, **options: options.get("retire_card"))
    facts = await insurance.registry(CardReissued(
        person_ref=holder, previous_card_number="C-cert-31", card_number="C-cert-31b", certificate_id="cert-31b",
        issued_on=date(2026, 4, 1), expires_on=date(2036, 6, 15), certificate_expires_on=date(2031, 6, 15), photo_less=False))

    assert fault.failed and fault.failed.args[0] == holder
    assert facts == []
    assert (await insurance.eligibility("cert-31b"))["eligible"]
    old = await insurance.eligibility("cert-31")
    assert (old["eligible"], old["reason"]) == (False, "card_replaced")


async def test_an_enrollment_rerun_still_holds_the_record_for_the_resident_not_yet_known(insurance: Insurance, monkeypatch):
    """A record whose number points to a resident not known yet is saved as held, then noted as
    waiting for that resident. After a crash in between, the rerun must still note it, or the
    record is never linked when the resident registers."""
    store = insurance.running.service.deps.store
    # The connection is lost after the member record was saved, before the note is written.
    fault = fail_once(monkeypatch, store, "hold_until_resident_known")
    facts = await insurance.insurer(enrollment("m-81", 81, 81))
    late = insurance.ref(a_number(81))
    assert fault.failed and fault.failed.args[0] == late
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
    if lost == "before adding the link to the person":  # (the link is already saved on the member record)
        fault = fail_once(monkeypatch, store, "change_person", when=adding_a_member_key)
    else:
        fault = fail_once(monkeypatch, store, "issue_certificate", after=True)
    late = insurance.ref(a_number(41))
    facts = await insurance.registry(ResidentRegistered(person_ref=late, municipality_code="131016",
                                                        attributes=attributes_of(41), nationality="JP"))

    assert fault.failed
    failed_for = fault.failed.args[0] if lost == "before adding the link to the person" else fault.failed.args[0].person_ref
    assert failed_for == late
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
    # The connection is lost after the member record was saved, before the person's write.
    fault = fail_once(monkeypatch, store, "change_person", when=adding_a_member_key)
    try:
        failed = await insurance.http.post(path, json=command, headers=OPERATOR)
        assert failed.status_code >= 500
    except AutoReconnect:
        pass
    assert fault.failed and fault.failed.args[0] == bob

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
    insurance.clock.set(datetime(2026, 5, 1, 1, 0, tzinfo=UTC))  # recorded after the last day: withdrawn at once
    # The connection is lost after the certificate was withdrawn.
    fault = fail_once(monkeypatch, store, "end_certificate", after=True)
    facts = await insurance.insurer(WithdrawMember(request_id="w-61", insurer_number=INSURER, member_symbol="記号",
                                                   member_number="m-61", withdrawn_on=date(2026, 4, 30)))

    assert fault.failed and fault.failed.args[0].person_ref == member
    assert types(facts) == ["member_withdrawn", "eligibility_certificate_withdrawn"]
    assert [f["reason"] for f in of_type(facts, EligibilityCertificateWithdrawn)] == ["member_withdrawn"]
    assert [c["status"] for c in await insurance.certificates(member)] == ["withdrawn"]


async def test_a_withdrawal_rerun_says_which_certificate_it_kept_through_the_last_day(insurance: Insurance, monkeypatch):
    """A last day ahead: the certificate is cut to end on it and the withdrawal noted on it. A rerun
    after a crash right after that write (the certificate already cut) gives the same fact, naming
    the certificate and its new last day, and cuts nothing further."""
    member = await insurance.resident(62)
    [issued] = of_type(await insurance.insurer(enrollment("m-62", 62, 62)), EligibilityCertificateIssued)
    store = insurance.running.service.deps.store
    # The connection is lost after the certificate was cut.
    fault = fail_once(monkeypatch, store, "keep_certificate", after=True)
    facts = await insurance.insurer(WithdrawMember(request_id="w-62", insurer_number=INSURER, member_symbol="記号",
                                                   member_number="m-62", withdrawn_on=date(2026, 4, 21)))

    assert fault.failed and len(fault.calls) == 2, "run again after the failure"
    assert types(facts) == ["member_withdrawn"]
    assert (facts[0]["certificate_number"], facts[0]["certificate_valid_until"]) == (issued["certificate_number"], "2026-04-21")
    assert [(c["status"], c["valid_from"], c["valid_until"]) for c in await insurance.certificates(member)] == [
        ("active", "2026-04-01", "2026-04-21")]


async def test_an_attributes_change_rerun_removes_the_resident_from_the_old_match_index_entry(insurance: Insurance, monkeypatch):
    """A resident's new attributes are saved and the match index follows. After a crash between
    the two, the rerun must still take the resident off their old attributes' entry, or a later
    record with those attributes would be held as ambiguous."""
    moved = await insurance.resident(71)
    store = insurance.running.service.deps.store
    # The connection is lost before the old attributes leave the match index.
    fault = fail_once(monkeypatch, store.match_index, "update_one", when=lambda query, update, **options: "$pull" in update)
    assert await insurance.registry(ResidentAttributesChanged(
        person_ref=moved, attributes=attributes_of(72), changed=["address"], effective_on=date(2026, 4, 1),
        signing_certificate_invalidated=True)) == []
    assert fault.failed
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
    # The connection is lost after the release was audited; the event is redelivered after the consent window ended.
    fault = fail_once(monkeypatch, insurance.running.service.deps.audit, "record", after=True,
                      when=lambda **entry: entry["action"] == "insurance.medical_data.released",
                      on_failure=lambda: insurance.clock.advance(timedelta(hours=25)))
    released_at = insurance.clock.now()
    [fact] = await insurance.institution(RequestMedicalData(
        request_id="ask-91", institution_code=INSTITUTION, certificate_id="cert-91", data_types=[MedicalDataType.prescriptions]))

    assert fault.failed and fault.failed.kwargs["person_ref"] == patient
    assert (fact["type"], fact["record_count"], fact["covers_until"]) == (MedicalDataReleased.event_type, 1, "2026-04-01")
    path = f"/medical-data/releases/{fact['release_id']}"
    past_its_reading_period = await insurance.http.get(path, headers=as_institution())  # 25 hours after the release
    insurance.clock.set(released_at + timedelta(hours=1))
    release = await insurance.http.get(path, headers=as_institution())
    assert past_its_reading_period.status_code == 410
    assert [r["record_id"] for r in release.json()["records"]] == ["rx-91"]
    assert await audit_actions(insurance, patient, "insurance.medical_data.") == ["insurance.medical_data.released"]


async def run_again(insurance: Insurance, record, topic: str | None = None) -> None:
    """The same event run again late (`run_late`), by default from enrollment's fact topic."""
    await run_late(insurance.partner, insurance.database, topic or ResidentRegistered.topic(insurance.namespace), record)


async def card_of(insurance: Insurance, person_ref: str) -> dict:
    return (await insurance.database["people"].find_one({"_id": person_ref}))["card"]


async def test_a_card_fact_run_again_after_later_ones_changes_nothing(insurance: Insurance):
    """A card reported lost, then found: the loss run again must not suspend the card again. A card
    issued, then reissued: the issue run again must not put the first card back as the current one."""
    holder = await insurance.resident(41)
    issued = insurance.partner.record(CardIssued(
        person_ref=holder, card_number="C-cert-41", certificate_id="cert-41", application_id="app-41",
        issued_on=date(2026, 1, 10), expires_on=date(2036, 6, 15), certificate_expires_on=date(2031, 6, 15),
        photo_less=False), subject=holder, source=REGISTRY)
    lost = insurance.partner.record(CardSuspended(person_ref=holder, card_number="C-cert-41",
                                                  suspended_at=datetime(2026, 5, 1, tzinfo=UTC)), subject=holder, source=REGISTRY)
    for record in (issued, lost):
        await insurance.partner.send_record(CardSuspended.topic(insurance.namespace), record)
        await insurance.processed(record.header("ce_id").decode())
    await insurance.registry(CardResumed(person_ref=holder, card_number="C-cert-41", resumed_at=datetime(2026, 5, 2, tzinfo=UTC)))

    await run_again(insurance, lost)
    assert (await card_of(insurance, holder))["status"] == "active", "found after it was lost: it stays found"

    await insurance.registry(CardReissued(
        person_ref=holder, previous_card_number="C-cert-41", card_number="C-cert-41b", certificate_id="cert-41b",
        issued_on=date(2026, 6, 1), expires_on=date(2036, 6, 15), certificate_expires_on=date(2031, 6, 15), photo_less=False))
    await run_again(insurance, issued)
    card = await card_of(insurance, holder)
    assert (card["card_number"], card["status"]) == ("C-cert-41b", "active"), "the reissued card stays the current one"


async def test_a_registration_run_again_after_a_change_leaves_the_changed_attributes(insurance: Insurance):
    """The attributes decide whom an insurer's record is linked to: a registration run again after
    the resident moved must not put the old address (and its match key) back."""
    person_ref = insurance.ref(a_number(42))
    registered = insurance.partner.record(ResidentRegistered(
        person_ref=person_ref, municipality_code="131016", attributes=attributes_of(42), nationality="JP"),
        subject=person_ref, source=REGISTRY)
    await insurance.partner.send_record(ResidentRegistered.topic(insurance.namespace), registered)
    await insurance.processed(registered.header("ce_id").decode())
    moved = attributes_of(42, address="東京都港区芝公園4-2-8")
    await insurance.registry(ResidentAttributesChanged(person_ref=person_ref, attributes=moved, changed=["address"],
                                                       effective_on=date(2026, 5, 1), signing_certificate_invalidated=False))
    after_the_move = await insurance.database["people"].find_one({"_id": person_ref})

    await run_again(insurance, registered)

    person = await insurance.database["people"].find_one({"_id": person_ref})
    assert person["attributes"]["address"] == "東京都港区芝公園4-2-8"
    assert person["match_key"] == after_the_move["match_key"]


async def test_a_registration_for_insurance_use_run_again_after_the_cancellation_leaves_it_cancelled(insurance: Insurance):
    holder = await insurance.resident(43)
    await insurance.card(holder, "cert-43")
    registration = RegisterCardForInsurance(request_id="use-43", certificate_id="cert-43")
    registered = insurance.partner.record(registration, subject="subject", source="portal/myna")
    await run_again(insurance, registered, registration.topic(insurance.namespace))  # its first run
    assert (await insurance.database["people"].find_one({"_id": holder}))["insurance_use"] == "registered"
    assert types(await insurance.holder(CancelInsuranceUse(request_id="cancel-43", certificate_id="cert-43"))) == [
        "insurance_use_cancelled"]

    await run_again(insurance, registered, registration.topic(insurance.namespace))

    assert (await insurance.database["people"].find_one({"_id": holder}))["insurance_use"] == "cancelled", \
        "the cancellation stands"


@pytest.mark.parametrize("withdrawals", [1, 2])
async def test_a_withdrawal_run_again_after_the_member_was_enrolled_again_leaves_the_enrollment(
        insurance: Insurance, withdrawals: int):
    """A member withdrawn and enrolled again (once, or twice with a second withdrawal between):
    the first withdrawal run again late must leave the member enrolled and their certificate valid."""
    member = await insurance.resident(44)
    assert types(await insurance.insurer(enrollment("m-44", 44, 44))) == ["member_linked", "eligibility_certificate_issued"]
    first = WithdrawMember(request_id="w-44", insurer_number=INSURER, member_symbol="記号", member_number="m-44",
                           withdrawn_on=date(2026, 4, 30))
    withdrawn = insurance.partner.record(first, subject="subject", source=f"insurer/{INSURER}")
    await run_again(insurance, withdrawn, first.topic(insurance.namespace))  # its first run
    for cycle in range(1, withdrawals + 1):
        await insurance.insurer(enrollment("m-44", 44, 44, request_id=f"enroll-m-44-again-{cycle}"))
        if cycle < withdrawals:
            await insurance.insurer(first.model_copy(update={"request_id": f"w-44-{cycle}"}))
    key = member_key(INSURER, "記号", "m-44")
    assert (await insurance.database["members"].find_one({"_id": key}))["status"] == "active"

    await run_again(insurance, withdrawn, first.topic(insurance.namespace))

    assert (await insurance.database["members"].find_one({"_id": key}))["status"] == "active", \
        "the later enrollment stands"
    assert [c["status"] for c in await insurance.certificates(member)] == ["active"]


async def test_a_consent_run_again_after_a_later_one_does_not_restart_the_consent_window(insurance: Insurance):
    """Consent counts from when it was recorded. A consent run again late, after the patient
    consented again, must neither move the recorded time to the late run's time (which would
    stretch the 24-hour window) nor put the earlier consent back."""
    patient = await insurance.resident(46)
    await insurance.card(patient, "cert-46")
    first = RecordConsent(request_id="consent-46a", institution_code=INSTITUTION, certificate_id="cert-46",
                          data_types=[MedicalDataType.prescriptions])
    consented = insurance.partner.record(first, subject="subject", source=f"medical-institution/{INSTITUTION}")
    first_at = insurance.clock.now()
    await run_again(insurance, consented, first.topic(insurance.namespace))  # its first run
    insurance.clock.advance(timedelta(hours=2))
    second_at = insurance.clock.now()
    await insurance.institution(first.model_copy(update={"request_id": "consent-46b"}))
    insurance.clock.advance(timedelta(hours=23))

    await run_again(insurance, consented, first.topic(insurance.namespace))

    consent = await insurance.database["consents"].find_one({"_id": f"{INSTITUTION}/{patient}/prescriptions"})
    assert (consent["request_id"], consent["given_at"]) == ("consent-46b", second_at), "the later consent stands"
    assert [(e["request_id"], e["given_at"]) for e in consent["earlier"]] == [("consent-46a", first_at)]


async def test_a_consent_run_again_after_the_card_was_reported_lost_gives_the_consent_it_recorded(insurance: Insurance):
    """Consent is refused through a lost card, but one recorded while the card was usable and run
    again (a crash before its facts went out) is finished as recorded, at its first time."""
    patient = await insurance.resident(48)
    await insurance.card(patient, "cert-48")
    request = RecordConsent(request_id="consent-48", institution_code=INSTITUTION, certificate_id="cert-48",
                            data_types=[MedicalDataType.prescriptions])
    consented = insurance.partner.record(request, subject="subject", source=f"medical-institution/{INSTITUTION}")
    first_at = insurance.clock.now()
    await run_again(insurance, consented, request.topic(insurance.namespace))  # its first run
    await insurance.registry(CardSuspended(person_ref=patient, card_number="C-cert-48", suspended_at=first_at))
    insurance.clock.advance(timedelta(hours=1))

    await run_again(insurance, consented, request.topic(insurance.namespace))

    facts = await insurance.caused_by(consented.header("ce_id").decode(), 2)
    assert [f.type for f in facts] == [ConsentRecorded.event_type] * 2, "the rerun is not refused"
    assert [datetime.fromisoformat(f.json()["given_at"]) for f in facts] == [first_at] * 2
    consent = await insurance.database["consents"].find_one({"_id": f"{INSTITUTION}/{patient}/prescriptions"})
    assert (consent["request_id"], consent["given_at"]) == ("consent-48", first_at)


async def test_an_insurer_configuration_run_again_after_a_later_one_leaves_the_later_settings(insurance: Insurance):
    """Certificates issued after it are valid as long as the insurer's latest configuration says."""
    first = ConfigureInsurer(request_id="cfg-47a", insurer_number=INSURER, certificate_validity_years=2)
    configured = insurance.partner.record(first, subject="subject", source=f"insurer/{INSURER}")
    await run_again(insurance, configured, first.topic(insurance.namespace))  # its first run
    assert types(await insurance.insurer(first.model_copy(update={"request_id": "cfg-47b", "certificate_validity_years": 3}))) \
        == ["insurer_configured"]

    await run_again(insurance, configured, first.topic(insurance.namespace))

    insurer = await insurance.database["insurers"].find_one({"_id": INSURER})
    assert insurer["certificate_validity_years"] == 3, "the later configuration stands"


async def test_a_certificate_application_run_again_after_the_card_took_over_leaves_the_card(insurance: Insurance):
    """A holder who needed help switches to a certificate on the insurer's application, then
    registers the card again (the card takes over, the certificate is withdrawn). The application
    run again late must not switch them back to a certificate."""
    holder = await insurance.resident(48)
    await insurance.card(holder, "cert-48")
    await insurance.holder(RegisterCardForInsurance(request_id="reg-48", certificate_id="cert-48"))
    await insurance.insurer(enrollment("48", 48, 48))
    application = ApplyForEligibilityCertificate(request_id="apply-48", insurer_number=INSURER, member_symbol="記号",
                                                 member_number="48", reason=CertificateApplicationReason.needs_assistance)
    applied = insurance.partner.record(application, subject="subject", source=f"insurer/{INSURER}")
    await run_again(insurance, applied, application.topic(insurance.namespace))  # its first run
    assert [c["status"] for c in await insurance.certificates(holder)] == ["active"]
    assert types(await insurance.holder(RegisterCardForInsurance(request_id="reg-48b", certificate_id="cert-48"))) == [
        "card_registered_for_insurance", "eligibility_certificate_withdrawn"]

    await run_again(insurance, applied, application.topic(insurance.namespace))

    assert [c["status"] for c in await insurance.certificates(holder)] == ["withdrawn"], "the card stays in use"
    assert (await insurance.database["people"].find_one({"_id": holder})).get("certificate_application") is None
    assert (await insurance.eligibility("cert-48"))["eligible"]
