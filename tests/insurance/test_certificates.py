"""Eligibility certificates against the real broker and database: issued without an application
whenever the card cannot serve, issued on application, validity per insurer, the renewal and
expiry sweeps, and the rule that a person never holds both a certificate and card-based insurance."""

from __future__ import annotations

from datetime import UTC, date, datetime

from mynumber_contracts.enrollment import (
    CardExpired,
    CardReissued,
    CardResumed,
    CardReturned,
    CardSuspended,
    ResidentDeceased,
)
from mynumber_contracts.insurance import (
    ApplyForEligibilityCertificate,
    CancelInsuranceUse,
    CertificateApplicationReason,
    ConfigureInsurer,
    EligibilityCertificateExpired,
    EligibilityCertificateIssued,
    EligibilityCertificateRenewed,
    EligibilityCertificateWithdrawn,
    EnrollMember,
    InsurerConfigured,
    RegisterCardForInsurance,
    WithdrawMember,
)

from tests.insurance.conftest import INSURER, OPERATOR, Insurance, a_number, attributes_of, of_type, types

NOW = datetime(2026, 4, 1, 1, 0, tzinfo=UTC)


def enrollment(number_seed: int, member: str, insurer: str = INSURER, **changes: object) -> EnrollMember:
    return EnrollMember(request_id=f"enroll-{member}", insurer_number=insurer, member_symbol="記号", member_number=member,
                        my_number=a_number(number_seed), attributes=attributes_of(number_seed, **changes), enrolled_on=date(2026, 4, 1))


async def never_both(insurance: Insurance, person_ref: str, certificate_id: str | None) -> bool:
    """The rule itself, checked after every step: eligible by card XOR an active certificate.
    Returns whether the person is eligible by card."""
    active = [c for c in await insurance.certificates(person_ref) if c["status"] == "active"]
    eligible = certificate_id is not None and (await insurance.eligibility(certificate_id))["eligible"]
    assert eligible != bool(active), f"card eligible={eligible} but active certificates={active}"
    return eligible


async def card_based_member(insurance: Insurance, seed: int, member: str, certificate_id: str, **card: object) -> str:
    """A resident with a card registered for insurance use, enrolled by the insurer: no certificate."""
    person_ref = await insurance.resident(seed)
    await insurance.card(person_ref, certificate_id, **card)
    assert types(await insurance.holder(RegisterCardForInsurance(request_id=f"reg-{member}", certificate_id=certificate_id))) == [
        "card_registered_for_insurance"]
    assert types(await insurance.insurer(enrollment(seed, member))) == ["member_linked"]
    assert await never_both(insurance, person_ref, certificate_id)
    return person_ref


async def test_a_certificate_is_issued_without_application_whenever_the_card_cannot_serve(insurance: Insurance):
    # No card at all.
    no_card = await insurance.resident(1)
    facts = await insurance.insurer(enrollment(1, "1"))
    assert types(facts) == ["member_linked", "eligibility_certificate_issued"]
    [issued] = of_type(facts, EligibilityCertificateIssued)
    assert (issued["reason"], issued["on_application"], issued["person_ref"]) == ("no_card", False, no_card)
    assert (issued["valid_from"], issued["valid_until"]) == ("2026-04-01", "2027-03-31")  # 1 year by default
    assert await never_both(insurance, no_card, None) is False

    # A card that is not registered for insurance use.
    unregistered = await insurance.resident(2)
    await insurance.card(unregistered, "cert-2")
    [issued] = of_type(await insurance.insurer(enrollment(2, "2")), EligibilityCertificateIssued)
    assert issued["reason"] == "card_not_registered"
    assert (await insurance.eligibility("cert-2"))["reason"] == "not_registered_for_insurance"
    await never_both(insurance, unregistered, "cert-2")

    # Insurance use cancelled by the holder.
    cancelled = await card_based_member(insurance, 3, "3", "cert-3")
    facts = await insurance.holder(CancelInsuranceUse(request_id="cancel-3", certificate_id="cert-3"))
    assert types(facts) == ["insurance_use_cancelled", "eligibility_certificate_issued"]
    assert of_type(facts, EligibilityCertificateIssued)[0]["reason"] == "insurance_use_cancelled"
    assert await never_both(insurance, cancelled, "cert-3") is False

    # The card returned, lost (then found), expired.
    returned = await card_based_member(insurance, 4, "4", "cert-4")
    facts = await insurance.registry(CardReturned(person_ref=returned, card_number="C-cert-4", returned_at=NOW))
    assert [f["reason"] for f in of_type(facts, EligibilityCertificateIssued)] == ["card_returned"]
    await never_both(insurance, returned, "cert-4")

    lost = await card_based_member(insurance, 5, "5", "cert-5")
    facts = await insurance.registry(CardSuspended(person_ref=lost, card_number="C-cert-5", suspended_at=NOW))
    assert [f["reason"] for f in of_type(facts, EligibilityCertificateIssued)] == ["card_lost"]
    assert (await insurance.eligibility("cert-5"))["reason"] == "card_not_usable"
    await never_both(insurance, lost, "cert-5")
    facts = await insurance.registry(CardResumed(person_ref=lost, card_number="C-cert-5", resumed_at=NOW))
    assert [f["reason"] for f in of_type(facts, EligibilityCertificateWithdrawn)] == ["card_linked"]
    assert await never_both(insurance, lost, "cert-5") is True

    ended = await card_based_member(insurance, 6, "6", "cert-6")
    facts = await insurance.registry(CardExpired(person_ref=ended, card_number="C-cert-6", expired_on=date(2026, 3, 31)))
    assert [f["reason"] for f in of_type(facts, EligibilityCertificateIssued)] == ["card_unusable"]
    await never_both(insurance, ended, "cert-6")

    # The electronic certificate expires on a date: no event says so, the renewal sweep finds it.
    expiring = await card_based_member(insurance, 7, "7", "cert-7", certificate_expires_on=date(2026, 4, 10))
    insurance.clock.set(datetime(2026, 4, 11, 1, 0, tzinfo=UTC))
    assert (await insurance.eligibility("cert-7"))["reason"] == "card_certificate_expired"
    before = len(insurance.facts.records)
    report = (await insurance.http.post("/operations/certificate-renewal", params={"as_of": "2026-04-11"}, headers=OPERATOR)).json()
    assert report["facts_published"] == 1
    await insurance.facts.wait_count(before + 1)
    [issued] = [r.json() for r in insurance.facts.records[before:]]
    assert (issued["person_ref"], issued["reason"], issued["valid_from"]) == (expiring, "card_certificate_expired", "2026-04-11")
    await never_both(insurance, expiring, "cert-7")


async def test_certificates_on_application_and_the_card_taking_over_again(insurance: Insurance):
    # Someone who needs help with the card switches to a certificate, and back.
    helped = await card_based_member(insurance, 11, "11", "cert-11")
    facts = await insurance.insurer(ApplyForEligibilityCertificate(
        request_id="apply-11", insurer_number=INSURER, member_symbol="記号", member_number="11",
        reason=CertificateApplicationReason.needs_assistance))
    [issued] = of_type(facts, EligibilityCertificateIssued)
    assert (issued["reason"], issued["on_application"]) == ("applied_needs_assistance", True)
    assert (await insurance.eligibility("cert-11"))["reason"] == "holds_eligibility_certificate"
    await never_both(insurance, helped, "cert-11")
    again = await insurance.insurer(ApplyForEligibilityCertificate(
        request_id="apply-11b", insurer_number=INSURER, member_symbol="記号", member_number="11",
        reason=CertificateApplicationReason.card_lost))
    assert [(f["type"].split(".")[-2], f["reason"]) for f in again] == [("request_rejected", "certificate_already_held")]
    facts = await insurance.holder(RegisterCardForInsurance(request_id="reg-11b", certificate_id="cert-11"))
    assert types(facts) == ["card_registered_for_insurance", "eligibility_certificate_withdrawn"]
    assert await never_both(insurance, helped, "cert-11") is True

    # A lost card: the certificate on application, then the reissued card takes over (registration kept).
    lost = await card_based_member(insurance, 12, "12", "cert-12")
    [issued] = of_type(await insurance.insurer(ApplyForEligibilityCertificate(
        request_id="apply-12", insurer_number=INSURER, member_symbol="記号", member_number="12",
        reason=CertificateApplicationReason.card_lost)), EligibilityCertificateIssued)
    assert issued["reason"] == "applied_card_lost"
    facts = await insurance.registry(CardReissued(
        person_ref=lost, previous_card_number="C-cert-12", card_number="C-cert-12b", certificate_id="cert-12b",
        issued_on=date(2026, 4, 1), expires_on=date(2036, 6, 15), certificate_expires_on=date(2031, 6, 15), photo_less=False))
    assert [f["reason"] for f in of_type(facts, EligibilityCertificateWithdrawn)] == ["card_linked"]
    assert await never_both(insurance, lost, "cert-12b") is True
    assert (await insurance.eligibility("cert-12"))["reason"] == "card_replaced"

    # Refusals: an unknown member, a record that is not linked, a withdrawn member, another insurer.
    def apply(member: str, request_id: str) -> ApplyForEligibilityCertificate:
        return ApplyForEligibilityCertificate(request_id=request_id, insurer_number=INSURER, member_symbol="記号",
                                              member_number=member, reason=CertificateApplicationReason.needs_assistance)

    assert (await insurance.insurer(apply("999", "apply-x1")))[0]["reason"] == "unknown_member"
    await insurance.insurer(enrollment(13, "13").model_copy(update={"my_number": None}))
    assert (await insurance.insurer(apply("13", "apply-x2")))[0]["reason"] == "member_not_linked"
    await insurance.resident(14)
    await insurance.insurer(enrollment(14, "14"))
    await insurance.insurer(WithdrawMember(request_id="w-14", insurer_number=INSURER, member_symbol="記号",
                                           member_number="14", withdrawn_on=date(2026, 4, 30)))
    insurance.clock.set(datetime(2026, 5, 1, 1, 0, tzinfo=UTC))  # its last day has passed (a notice period still counts)
    assert (await insurance.insurer(apply("14", "apply-x3")))[0]["reason"] == "member_withdrawn"
    assert (await insurance.insurer(apply("11", "apply-x4"), insurer="01130012"))[0]["reason"] == "source_mismatch"


async def test_a_certificate_ends_with_the_membership_or_the_person(insurance: Insurance):
    withdrawn = await insurance.resident(21)
    await insurance.insurer(enrollment(21, "21"))
    # Recorded after the last day: withdrawn at once (a last day to come keeps it: test_certificate_last_day.py).
    insurance.clock.set(datetime(2026, 5, 1, 1, 0, tzinfo=UTC))
    facts = await insurance.insurer(WithdrawMember(request_id="w-21", insurer_number=INSURER, member_symbol="記号",
                                                   member_number="21", withdrawn_on=date(2026, 4, 30)))
    assert types(facts) == ["member_withdrawn", "eligibility_certificate_withdrawn"]
    assert of_type(facts, EligibilityCertificateWithdrawn)[0]["reason"] == "member_withdrawn"
    assert [c["status"] for c in await insurance.certificates(withdrawn)] == ["withdrawn"]

    deceased = await insurance.resident(22)
    await insurance.insurer(enrollment(22, "22"))
    facts = await insurance.registry(ResidentDeceased(person_ref=deceased, died_on=date(2026, 4, 1)))
    assert [f["reason"] for f in of_type(facts, EligibilityCertificateWithdrawn)] == ["resident_deceased"]


async def test_settling_a_person_leaves_the_certificate_of_a_member_record_now_linked_to_someone_else(insurance: Insurance):
    """The insurer enrolled member 41 with P's number, withdrew it and enrolled it again with Q's
    (the fix for a wrong-person link). The record stays among P's member keys, and its certificate
    is now Q's: nothing that settles P may withdraw it."""
    p = await card_based_member(insurance, 41, "41", "cert-41")
    facts = await insurance.insurer(WithdrawMember(request_id="w-41", insurer_number=INSURER, member_symbol="記号",
                                                   member_number="41", withdrawn_on=date(2026, 4, 1)))
    assert types(facts) == ["member_withdrawn"]
    q = await insurance.resident(42)
    facts = await insurance.insurer(EnrollMember(
        request_id="enroll-41-again", insurer_number=INSURER, member_symbol="記号", member_number="41",
        my_number=a_number(42), attributes=attributes_of(42), enrolled_on=date(2026, 4, 1)))
    assert types(facts) == ["member_linked", "eligibility_certificate_issued"] and facts[0]["person_ref"] == q
    [issued] = of_type(facts, EligibilityCertificateIssued)
    assert (issued["person_ref"], issued["reason"]) == (q, "no_card")

    for settles_p in (CardSuspended(person_ref=p, card_number="C-cert-41", suspended_at=NOW),
                      CardResumed(person_ref=p, card_number="C-cert-41", resumed_at=NOW),
                      ResidentDeceased(person_ref=p, died_on=date(2026, 4, 1))):
        facts = await insurance.registry(settles_p)
        assert of_type(facts, EligibilityCertificateWithdrawn) == [], (settles_p.event_type, facts)
        assert [(c["certificate_number"], c["status"]) for c in await insurance.certificates(q)] == [
            (issued["certificate_number"], "active")], settles_p.event_type
    assert await insurance.certificates(p) == []
    assert not [r for r in insurance.facts.records if r.type == EligibilityCertificateWithdrawn.event_type]


async def test_validity_per_insurer_and_the_renewal_and_expiry_sweeps(insurance: Insurance):
    other_insurer = "01130012"
    facts = await insurance.insurer(ConfigureInsurer(request_id="cfg-1", insurer_number=other_insurer,
                                                     certificate_validity_years=3), insurer=other_insurer)
    assert of_type(facts, InsurerConfigured)[0]["certificate_validity_years"] == 3
    three_years = await insurance.resident(31)
    [issued] = of_type(await insurance.insurer(enrollment(31, "31", insurer=other_insurer), insurer=other_insurer),
                       EligibilityCertificateIssued)
    assert issued["valid_until"] == "2029-03-31"
    one_year = await insurance.resident(32)
    [first] = of_type(await insurance.insurer(enrollment(32, "32")), EligibilityCertificateIssued)
    assert first["valid_until"] == "2027-03-31"
    insurance.clock.set(datetime(2026, 5, 1, 1, 0, tzinfo=UTC))
    later = await insurance.resident(33)
    [late] = of_type(await insurance.insurer(enrollment(33, "33")), EligibilityCertificateIssued)
    assert late["valid_until"] == "2027-04-30"

    async def sweep(kind: str, as_of: str) -> list[dict]:
        before = len(insurance.facts.records)
        report = (await insurance.http.post(f"/operations/certificate-{kind}", params={"as_of": as_of}, headers=OPERATOR)).json()
        await insurance.facts.wait_count(before + report["facts_published"])
        return [{"type": r.type, **r.json()} for r in insurance.facts.records[before:]]

    assert await sweep("renewal", "2027-02-28") == []  # 31 days before the end: not yet
    renewed = await sweep("renewal", "2027-03-05")
    assert [(f["person_ref"], f["previous_valid_until"], f["valid_from"], f["valid_until"]) for f in renewed] == [
        (one_year, "2027-03-31", "2027-04-01", "2028-03-31")]
    assert renewed[0]["type"] == EligibilityCertificateRenewed.event_type
    assert await sweep("renewal", "2027-03-05") == []  # a rerun renews nothing twice

    # Not renewed in time: the expiry sweep ends it, and the person, still without a card, gets a new one.
    expired = await sweep("expiry", "2027-05-01")
    assert [(f["type"], f["person_ref"]) for f in expired] == [
        (EligibilityCertificateExpired.event_type, later), (EligibilityCertificateIssued.event_type, later)]
    assert (expired[1]["valid_from"], expired[1]["valid_until"]) == ("2027-05-01", "2028-04-30")
    assert expired[0]["certificate_number"] != expired[1]["certificate_number"]
    assert await sweep("expiry", "2027-05-01") == []
    statuses = {c["valid_until"]: c["status"] for c in await insurance.certificates(three_years)}
    assert statuses == {"2029-03-31": "active"}
