"""Eligibility checks (HTTP and request/reply events) and medical data behind the 24-hour
consent, against the real broker and database."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from mynumber_contracts.enrollment import CardReissued, CardResumed, CardSuspended, ResidentDeceased
from mynumber_contracts.insurance import (
    CheckEligibility,
    CheckupItem,
    ConsentRecorded,
    CopayCategory,
    EligibilityConfirmed,
    EligibilityDenied,
    EnrollMember,
    InsuranceRequestRejected,
    MedicalDataDenied,
    MedicalDataReleased,
    MedicalDataType,
    Medicine,
    RecordCheckupResult,
    RecordConsent,
    RecordPrescription,
    RegisterCardForInsurance,
    RequestMedicalData,
)

from tests.insurance.conftest import (
    INSTITUTION,
    INSURER,
    KIOSK,
    OPERATOR,
    START,
    Insurance,
    a_number,
    as_institution,
    attributes_of,
    of_type,
    types,
)

OTHER_INSTITUTION = "1399999999"


async def card_based_member(insurance: Insurance, seed: int, certificate_id: str,
                            copay: CopayCategory = CopayCategory.thirty_percent) -> str:
    person_ref = await insurance.resident(seed)
    await insurance.card(person_ref, certificate_id)
    await insurance.holder(RegisterCardForInsurance(request_id=f"reg-{seed}", certificate_id=certificate_id))
    await insurance.insurer(EnrollMember(
        request_id=f"enroll-{seed}", insurer_number=INSURER, member_symbol="記号", member_number=str(seed),
        my_number=a_number(seed), attributes=attributes_of(seed), copay_category=copay, enrolled_on=date(2026, 4, 1)))
    return person_ref


def check(certificate_id: str, request_id: str) -> CheckEligibility:
    return CheckEligibility(request_id=request_id, institution_code=INSTITUTION, certificate_id=certificate_id)


async def test_eligibility_by_card_certificate_over_http_and_as_a_reply_event(insurance: Insurance):
    member = await card_based_member(insurance, 1, "cert-1", CopayCategory.twenty_percent)
    answer = await insurance.eligibility("cert-1")
    assert answer == {"certificate_id": "cert-1", "eligible": True, "reason": None, "insurer_number": INSURER,
                      "member_symbol": "記号", "member_number": "1", "copay_category": "twenty_percent",
                      "no_card_surcharge": False}
    [confirmed] = await insurance.institution(check("cert-1", "chk-1"))
    assert confirmed["type"] == EligibilityConfirmed.event_type
    assert (confirmed["request_id"], confirmed["institution_code"], confirmed["person_ref"]) == ("chk-1", INSTITUTION, member)
    assert (confirmed["copay_category"], confirmed["no_card_surcharge"]) == ("twenty_percent", False)
    [record] = [r for r in insurance.facts.records if r.type == EligibilityConfirmed.event_type]
    assert record.record.key == f"eligibility-check/{INSTITUTION}/chk-1".encode()  # the reply is keyed to the request

    # Each way a card can fail, over HTTP and as events, with the surcharge for treatment without the card.
    unregistered = await insurance.resident(2)
    await insurance.card(unregistered, "cert-2")
    no_membership = await insurance.resident(3)
    await insurance.card(no_membership, "cert-3")
    await insurance.holder(RegisterCardForInsurance(request_id="reg-3", certificate_id="cert-3"))
    suspended = await card_based_member(insurance, 4, "cert-4")
    await insurance.registry(CardSuspended(person_ref=suspended, card_number="C-cert-4", suspended_at=START))
    expected = {
        "cert-unknown": ("unknown_card", None),
        "cert-2": ("not_registered_for_insurance", unregistered),
        "cert-3": ("no_active_membership", no_membership),
        "cert-4": ("card_not_usable", suspended),
    }
    for index, (certificate_id, (reason, person_ref)) in enumerate(expected.items()):
        answer = await insurance.eligibility(certificate_id)
        assert (answer["eligible"], answer["reason"], answer["no_card_surcharge"]) == (False, reason, True), certificate_id
        [denied] = await insurance.institution(check(certificate_id, f"chk-d{index}"))
        assert denied["type"] == EligibilityDenied.event_type
        assert (denied["reason"], denied["person_ref"], denied["request_id"]) == (reason, person_ref, f"chk-d{index}")

    # Eligibility is for medical institutions and operators: another partner's token gets 403.
    refused = await insurance.http.get("/eligibility/cert-1", headers=KIOSK)
    assert refused.status_code == 403 and "medical institutions" in refused.text and member not in refused.text
    assert (await insurance.http.get("/eligibility/cert-1", headers=OPERATOR)).json()["eligible"] is True

    # An institution may not ask in another institution's name.
    [rejected] = await insurance.institution(check("cert-1", "chk-x"), institution=OTHER_INSTITUTION)
    assert (types([rejected]), rejected["reason"]) == (["request_rejected"], "source_mismatch")


async def test_medical_data_only_with_that_institutions_consent_given_within_24_hours(insurance: Insurance):
    patient = await card_based_member(insurance, 11, "cert-11")

    def prescription(record_id: str, dispensed_on: date, medicine: str = "ロキソプロフェン錠60mg") -> RecordPrescription:
        return RecordPrescription(record_id=record_id, insurer_number=INSURER, member_symbol="記号", member_number="11",
                                  dispensed_on=dispensed_on, medicines=[Medicine(name=medicine, quantity=3, unit="錠", days=5)])

    def checkup(record_id: str, examined_on: date) -> RecordCheckupResult:
        return RecordCheckupResult(record_id=record_id, insurer_number=INSURER, member_symbol="記号", member_number="11",
                                   examined_on=examined_on, items=[CheckupItem(code="HbA1c", name="HbA1c", value="5.4", unit="%")])

    # The requests come on 2 April 2026 (Japan): 3 years of prescriptions and 5 of checkups reach back to 2 April.
    for request in (prescription("rx-old", date(2023, 4, 1)), prescription("rx-1", date(2023, 4, 2)),
                    prescription("rx-2", date(2026, 3, 15)), checkup("hc-old", date(2021, 4, 1)),
                    checkup("hc-1", date(2021, 4, 2)), checkup("hc-2", date(2025, 10, 1))):
        assert types(await insurance.insurer(request)) == ["medical_record_stored"]
    [duplicate] = await insurance.insurer(prescription("rx-1", date(2023, 4, 2), medicine="別の薬"))
    assert duplicate["reason"] == "duplicate_record"
    [unknown] = await insurance.insurer(prescription("rx-9", date(2026, 1, 1)).model_copy(update={"member_number": "999"}))
    assert unknown["reason"] == "unknown_member"

    def ask(request_id: str, *data_types: MedicalDataType, institution: str = INSTITUTION, card: str = "cert-11") -> RequestMedicalData:
        return RequestMedicalData(request_id=request_id, institution_code=institution, certificate_id=card, data_types=list(data_types))

    both = (MedicalDataType.prescriptions, MedicalDataType.checkups)
    before = await insurance.institution(ask("ask-0", *both))
    assert [(f["data_type"], f["reason"]) for f in before] == [("prescriptions", "no_consent"), ("checkups", "no_consent")]

    [consent] = await insurance.institution(RecordConsent(request_id="consent-1", institution_code=INSTITUTION,
                                                          certificate_id="cert-11", data_types=[MedicalDataType.prescriptions]))
    assert consent["type"] == ConsentRecorded.event_type
    given_at = datetime.fromisoformat(consent["given_at"])
    assert given_at == START and datetime.fromisoformat(consent["valid_until"]) == START + timedelta(hours=24)

    insurance.clock.set(given_at + timedelta(hours=24) - timedelta(seconds=1))  # just inside
    inside = await insurance.institution(ask("ask-1", *both))
    [released] = of_type(inside, MedicalDataReleased)
    [denied] = of_type(inside, MedicalDataDenied)
    assert (released["data_type"], released["record_count"], released["covers_from"]) == ("prescriptions", 2, "2023-04-02")
    assert (denied["data_type"], denied["reason"]) == ("checkups", "no_consent")  # consent is per data type
    release = await insurance.http.get(f"/medical-data/releases/{released['release_id']}", headers=as_institution())
    assert release.status_code == 200
    assert [r["record_id"] for r in release.json()["records"]] == ["rx-2", "rx-1"]
    assert release.json()["records"][0]["content"]["medicines"][0]["name"] == "ロキソプロフェン錠60mg"
    for other_reader in (as_institution(OTHER_INSTITUTION), OPERATOR):  # released to the requesting institution only
        response = await insurance.http.get(f"/medical-data/releases/{released['release_id']}", headers=other_reader)
        assert response.status_code == 404
    [other] = await insurance.institution(ask("ask-2", MedicalDataType.prescriptions, institution=OTHER_INSTITUTION),
                                          institution=OTHER_INSTITUTION)
    assert (other["type"], other["reason"]) == (MedicalDataDenied.event_type, "no_consent")  # consent is per institution

    insurance.clock.set(given_at + timedelta(hours=24) + timedelta(seconds=1))  # just outside
    [outside] = await insurance.institution(ask("ask-3", MedicalDataType.prescriptions))
    assert (outside["type"], outside["reason"]) == (MedicalDataDenied.event_type, "consent_expired")

    await insurance.institution(RecordConsent(request_id="consent-2", institution_code=INSTITUTION, certificate_id="cert-11",
                                              data_types=[MedicalDataType.checkups]))
    [checkups] = await insurance.institution(ask("ask-4", MedicalDataType.checkups))
    assert (checkups["type"], checkups["record_count"], checkups["covers_from"]) == (MedicalDataReleased.event_type, 2, "2021-04-02")
    [nobody] = await insurance.institution(ask("ask-5", MedicalDataType.checkups, card="cert-unknown"))
    assert (nobody["reason"], nobody["person_ref"]) == ("unknown_card", None)

    # Every request, granted or denied, is in the person's append-only audit trail.
    response = await insurance.http.get(f"/audit/persons/{patient}", headers=OPERATOR)
    assert response.status_code == 200, response.text
    trail = response.json()
    decisions = [(e["actor"], e["action"].rsplit(".", 1)[1], e["details"]["request_id"], e["details"]["data_type"], e["reason"])
                 for e in trail if e["action"].startswith("insurance.medical_data.")]
    assert decisions == [
        (f"medical-institution/{INSTITUTION}", "denied", "ask-0", "prescriptions", "no_consent"),
        (f"medical-institution/{INSTITUTION}", "denied", "ask-0", "checkups", "no_consent"),
        (f"medical-institution/{INSTITUTION}", "released", "ask-1", "prescriptions", "consent given within the consent window"),
        (f"medical-institution/{INSTITUTION}", "denied", "ask-1", "checkups", "no_consent"),
        (f"medical-institution/{OTHER_INSTITUTION}", "denied", "ask-2", "prescriptions", "no_consent"),
        (f"medical-institution/{INSTITUTION}", "denied", "ask-3", "prescriptions", "consent_expired"),
        (f"medical-institution/{INSTITUTION}", "released", "ask-4", "checkups", "consent given within the consent window"),
    ]

    # A release is read soon after it is made (the visit), not kept open: after its period it answers 410.
    released_at = given_at + timedelta(hours=24) - timedelta(seconds=1)
    insurance.clock.set(released_at + timedelta(hours=24))
    still = await insurance.http.get(f"/medical-data/releases/{released['release_id']}", headers=as_institution())
    insurance.clock.set(released_at + timedelta(hours=24, seconds=1))
    gone = await insurance.http.get(f"/medical-data/releases/{released['release_id']}", headers=as_institution())
    assert still.status_code == 200 and len(still.json()["records"]) == 2
    assert gone.status_code == 410 and "ask again" in gone.json()["detail"]

    # The records themselves never travel in a fact.
    assert not [r for r in insurance.facts.records if "ロキソプロフェン".encode() in r.record.value or b"HbA1c" in r.record.value]



def consent(request_id: str, card: str) -> RecordConsent:
    return RecordConsent(request_id=request_id, institution_code=INSTITUTION, certificate_id=card,
                         data_types=[MedicalDataType.prescriptions])


def ask(request_id: str, card: str) -> RequestMedicalData:
    return RequestMedicalData(request_id=request_id, institution_code=INSTITUTION, certificate_id=card,
                              data_types=[MedicalDataType.prescriptions])


async def patient_with_a_prescription(insurance: Insurance, seed: int) -> str:
    """A card-based member (card `cert-<seed>`) with one prescription, who consented through the card."""
    patient = await card_based_member(insurance, seed, f"cert-{seed}")
    assert types(await insurance.insurer(RecordPrescription(
        record_id=f"rx-{seed}", insurer_number=INSURER, member_symbol="記号", member_number=str(seed),
        dispensed_on=date(2026, 3, 1), medicines=[Medicine(name="アムロジピン錠5mg", quantity=1, unit="錠", days=28)]))) == [
        "medical_record_stored"]
    assert types(await insurance.institution(consent("consent-1", f"cert-{seed}"))) == ["consent_recorded"]
    return patient


async def refused(insurance: Insurance, patient: str, request_id: str, card: str, because: str) -> None:
    """Consent through `card` is rejected, and a request for data denied, both as card_not_usable."""
    [rejected] = await insurance.institution(consent(f"consent-{request_id}", card))
    assert rejected["type"] == InsuranceRequestRejected.event_type, rejected
    assert (rejected["reason"], rejected["person_ref"]) == ("card_not_usable", patient) and because in rejected["message"]
    [denied] = await insurance.institution(ask(f"ask-{request_id}", card))
    assert denied["type"] == MedicalDataDenied.event_type, denied
    assert (denied["reason"], denied["person_ref"]) == ("card_not_usable", patient)


async def card_denials(insurance: Insurance, patient: str) -> list[tuple[str, str, str | None]]:
    response = await insurance.http.get(f"/audit/persons/{patient}", headers=OPERATOR)
    return [(e["details"]["request_id"], e["reason"], e["details"].get("card")) for e in response.json()
            if e["action"] == "insurance.medical_data.denied"]


async def test_a_lost_card_or_a_deceased_holders_card_gives_no_consent_and_releases_nothing(insurance: Insurance):
    """The consent given before the card was reported lost does not open it either; once the card is
    found again it does, until the holder dies."""
    patient = await patient_with_a_prescription(insurance, 21)
    await insurance.registry(CardSuspended(person_ref=patient, card_number="C-cert-21", suspended_at=START))
    await refused(insurance, patient, "lost", "cert-21", "reported lost")

    await insurance.registry(CardResumed(person_ref=patient, card_number="C-cert-21", resumed_at=START))
    [released] = await insurance.institution(ask("ask-found", "cert-21"))
    assert (released["type"], released["record_count"]) == (MedicalDataReleased.event_type, 1)

    await insurance.registry(ResidentDeceased(person_ref=patient, died_on=date(2026, 4, 1)))
    await refused(insurance, patient, "deceased", "cert-21", "deceased")

    # The consents refused were never recorded: the one given with the usable card stands alone.
    stored = await insurance.database["consents"].find_one({"_id": f"{INSTITUTION}/{patient}/prescriptions"})
    assert (stored["request_id"], stored.get("earlier", [])) == ("consent-1", [])
    assert await card_denials(insurance, patient) == [("ask-lost", "card_not_usable", "card_not_usable"),
                                                      ("ask-deceased", "card_not_usable", "resident_deceased")]


async def test_after_a_reissue_the_old_certificate_id_is_refused_and_the_new_one_works(insurance: Insurance):
    patient = await patient_with_a_prescription(insurance, 22)
    await insurance.registry(CardReissued(
        person_ref=patient, previous_card_number="C-cert-22", card_number="C-cert-22b", certificate_id="cert-22b",
        issued_on=date(2026, 4, 1), expires_on=date(2036, 6, 15), certificate_expires_on=date(2031, 6, 15), photo_less=False))
    await refused(insurance, patient, "old", "cert-22", "replaced")

    [recorded] = await insurance.institution(consent("consent-2", "cert-22b"))
    assert (recorded["type"], recorded["person_ref"]) == (ConsentRecorded.event_type, patient)
    [released] = await insurance.institution(ask("ask-new", "cert-22b"))
    assert (released["type"], released["record_count"]) == (MedicalDataReleased.event_type, 1)
    await refused(insurance, patient, "old-again", "cert-22", "replaced")  # the new consent does not open the old card

    stored = await insurance.database["consents"].find_one({"_id": f"{INSTITUTION}/{patient}/prescriptions"})
    assert (stored["request_id"], [e["request_id"] for e in stored["earlier"]]) == ("consent-2", ["consent-1"])
    assert await card_denials(insurance, patient) == [("ask-old", "card_not_usable", "card_replaced"),
                                                      ("ask-old-again", "card_not_usable", "card_replaced")]
