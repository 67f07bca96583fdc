"""Eligibility checks (HTTP and request/reply events) and medical data behind the 24-hour
consent, against the real broker and database."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from mynumber_contracts.enrollment import CardSuspended
from mynumber_contracts.insurance import (
    CheckEligibility,
    CheckupItem,
    ConsentRecorded,
    CopayCategory,
    EligibilityConfirmed,
    EligibilityDenied,
    EnrollMember,
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
