"""Insurers enroll members (some without the number, some with attributes that do not match:
those are held, never linked to whoever fits), holders register their cards, hospitals check
eligibility and ask for medical data with and without consent."""

from __future__ import annotations

import random
from datetime import date, timedelta

from mynumber_contracts.insurance import (
    CheckEligibility,
    CheckupItem,
    ConfigureInsurer,
    CopayCategory,
    EnrollMember,
    MedicalDataType,
    Medicine,
    RecordCheckupResult,
    RecordConsent,
    RecordPrescription,
    RegisterCardForInsurance,
    RequestMedicalData,
)

from .population import Person
from .runner import Outgoing

INSURERS = {"06130012": "insurer/06130012", "01130012": "insurer/01130012"}
HOSPITAL = ("1312345678", "medical-institution/1312345678")
CLINIC = ("2712345678", "medical-institution/2712345678")


def member_of(person: Person) -> tuple[str, str, str]:
    insurer = "06130012" if "adult" in person.tags else "01130012"
    return insurer, "東京1", person.digits[-8:]  # member numbers are the insurer's own; any stable id will do


def insurer_settings() -> list[Outgoing]:
    return [Outgoing(ConfigureInsurer(request_id=f"cfg-{n}", insurer_number=n, certificate_validity_years=1), source, n)
            for n, source in INSURERS.items()]


def enrollments(people: list[Person], today: date, rng: random.Random) -> list[Outgoing]:
    events = []
    for index, person in enumerate(people):
        if rng.random() > 0.8:
            continue
        insurer, symbol, number = member_of(person)
        attributes = person.attributes
        my_number = person.number
        roll = rng.random()
        if roll < 0.04:
            my_number = None  # the insurer did not record the number, as in the 2021-22 incidents
        elif roll < 0.06:  # the insurer's record has an old address: a mismatch, held for review
            attributes = attributes.model_copy(update={"address": attributes.address + "旧"})
        events.append(Outgoing(
            EnrollMember(request_id=f"enr-{index:06d}", insurer_number=insurer, member_symbol=symbol,
                         member_number=number, my_number=my_number, attributes=attributes,
                         copay_category=CopayCategory.twenty_percent if "child" in person.tags or "infant" in person.tags
                         else CopayCategory.thirty_percent,
                         enrolled_on=today - timedelta(days=rng.randint(0, 3000))),
            INSURERS[insurer], person.digits,
        ))
    return events


def card_registrations(certificates: dict[str, str], rng: random.Random) -> list[Outgoing]:
    """`certificates`: person's number -> the certificate id of their card."""
    return [Outgoing(RegisterCardForInsurance(request_id=f"reg-card-{index:06d}", certificate_id=certificate),
                     "portal/myna", digits)
            for index, (digits, certificate) in enumerate(certificates.items()) if rng.random() < 0.75]


def medical_records(members: list[Person], today: date, rng: random.Random) -> list[Outgoing]:
    events = []
    for index, person in enumerate(members):
        insurer, symbol, number = member_of(person)
        if rng.random() < 0.5:
            events.append(Outgoing(RecordPrescription(
                record_id=f"rx-{index:06d}", insurer_number=insurer, member_symbol=symbol, member_number=number,
                dispensed_on=today - timedelta(days=rng.randint(1, 900)),
                medicines=[Medicine(name="アムロジピン錠5mg", quantity=1, unit="tablet", days=28)]),
                INSURERS[insurer], person.digits))
        if "adult" in person.tags and rng.random() < 0.4:
            events.append(Outgoing(RecordCheckupResult(
                record_id=f"chk-{index:06d}", insurer_number=insurer, member_symbol=symbol, member_number=number,
                examined_on=today - timedelta(days=rng.randint(1, 1500)),
                items=[CheckupItem(code="HbA1c", name="HbA1c", value=f"{rng.uniform(4.8, 7.5):.1f}", unit="%")]),
                INSURERS[insurer], person.digits))
    return events


def hospital_visits(certificates: dict[str, str], rng: random.Random) -> list[Outgoing]:
    """Eligibility checks as events, consents, and requests for data (some without consent)."""
    events = []
    for index, (digits, certificate) in enumerate(certificates.items()):
        if rng.random() > 0.4:
            continue
        code, source = rng.choice([HOSPITAL, CLINIC])
        events.append(Outgoing(CheckEligibility(request_id=f"elig-{index:06d}", institution_code=code,
                                                certificate_id=certificate), source, digits))
        consents = rng.random() < 0.6
        if consents:
            events.append(Outgoing(RecordConsent(request_id=f"consent-{index:06d}", institution_code=code,
                                                 certificate_id=certificate,
                                                 data_types=[MedicalDataType.prescriptions, MedicalDataType.checkups]),
                                   source, digits))
        events.append(Outgoing(RequestMedicalData(request_id=f"data-{index:06d}", institution_code=code,
                                                  certificate_id=certificate, data_types=[MedicalDataType.prescriptions]),
                               source, digits))
    return events
