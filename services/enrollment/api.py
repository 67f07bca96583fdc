"""Enrollment's HTTP API: application and card status, the operator's lookup by person (the
number masked to its last 4 digits) and the operator commands (expiry sweep, key rotation).

Every route needs a bearer token (the kit's MYNUMBER_HTTP_API_TOKENS, 'principal=token,...'):
operator routes the principal `operator` (every lookup is written to the audit trail), number
pickups the asking municipality (`municipality/<code>`), PDF pickups the asking kiosk
(`kiosk/<id>`); status and verification routes any registered principal.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Response
from mynumber_contracts import ResidentAttributes
from pydantic import BaseModel, ConfigDict, Field

from services.kit.auth import authenticated_principal, operator
from services.kit.clock import today
from services.kit.http import NO_TOKEN, OPERATORS_ONLY, SweepDay, errors, service_deps, service_of
from services.kit.messaging import EventService

from .domain import Card
from .handlers import EnrollmentDeps, rotate_number_keys, run_expiry_sweep

router = APIRouter()

Deps = Annotated[EnrollmentDeps, Depends(service_deps)]
Service = Annotated[EventService[EnrollmentDeps], Depends(service_of)]
Operator = Annotated[str, Depends(operator)]
Principal = Annotated[str, Depends(authenticated_principal)]
NO_STORE = {"Cache-Control": "no-store"}


class ApplicationStatus(BaseModel):
    model_config = ConfigDict(frozen=True)

    application_id: str
    status: str = Field(description="accepted or rejected")
    person_ref: str | None = None
    card_number: str | None = Field(None, description="The card issued for an accepted application.")
    reason: str | None = Field(None, description="Machine-readable reason code of a rejection.")
    message: str | None = Field(None, description="Human-readable reason of a rejection.")
    decided_at: datetime


class CardStatus(BaseModel):
    model_config = ConfigDict(frozen=True)

    card_number: str
    status: str = Field(description="active, suspended, reissued, returned, revoked or expired")
    person_ref: str
    issued_on: date
    expires_on: date
    certificate_expires_on: date
    photo_less: bool
    signing_certificate_valid: bool
    issuing_municipality: str
    application_id: str
    previous_card_number: str | None = None
    replaced_by: str | None = None

    @classmethod
    def of(cls, card: Card) -> CardStatus:
        return cls(
            card_number=card.card_number, status=card.state.value, person_ref=card.person_ref, issued_on=card.issued_on,
            expires_on=card.expires_on, certificate_expires_on=card.certificate_expires_on, photo_less=card.photo_less,
            signing_certificate_valid=card.signing_certificate_valid, issuing_municipality=card.issuing_municipality,
            application_id=card.application_id, previous_card_number=card.previous_card_number,
            replaced_by=card.replaced_by,
        )


class ResidentLookup(BaseModel):
    model_config = ConfigDict(frozen=True)

    person_ref: str
    number_masked: str = Field(description="The Individual Number masked to its last 4 digits.", examples=["********9018"])
    municipality_code: str
    attributes: ResidentAttributes
    nationality: str
    residence_status: str | None = None
    residence_period_end: date | None = None
    moved_abroad_on: date | None = None
    deceased_on: date | None = None
    cards: list[CardStatus]


class SweepReport(BaseModel):
    as_of: date
    cards_expired: int = Field(description="Cards this run moved to expired.")
    facts_published: int = Field(description="CardExpired facts this run published.")


class RotationReport(BaseModel):
    current_key_id: str
    re_encrypted: int = Field(description="Numbers this run re-encrypted under the current key.")
    records_by_key: dict[str, int] = Field(description="Resident records per key id after the run.")


@router.get("/applications/{application_id}", response_model=ApplicationStatus, tags=["status"],
            responses=errors({**NO_TOKEN, 404: "No application with this id has been decided."}),
            summary="Status of a card application: accepted (with its card) or rejected (with the reason).")
async def application_status(application_id: str, deps: Deps, _: Principal) -> ApplicationStatus:
    outcome = await deps.store.outcome(f"application/{application_id}")
    if outcome is None:
        raise HTTPException(404, "no application with this id has been decided")
    summary: dict[str, Any] = outcome.summary
    return ApplicationStatus(
        application_id=application_id, status=summary["status"], person_ref=summary.get("person_ref"),
        card_number=summary.get("card_number"), reason=summary.get("reason"), message=summary.get("message"),
        decided_at=outcome.decided_at,
    )


@router.get("/cards/{card_number}", response_model=CardStatus, tags=["status"], summary="Status of a card by its number.",
            responses=errors({**NO_TOKEN, 404: "No card with this number."}))
async def card_status(card_number: str, deps: Deps, _: Principal) -> CardStatus:
    card = await deps.store.card(card_number)
    if card is None:
        raise HTTPException(404, "no card with this number")
    return CardStatus.of(card)


@router.get("/operator/residents/{person_ref}", response_model=ResidentLookup, tags=["operator"],
            responses=errors({**OPERATORS_ONLY, 404: "No resident with this person reference."}),
            summary="An operator's lookup of a person: registry entry, cards, and the number masked to its last 4 digits.")
async def lookup_resident(person_ref: str, service: Service, who: Operator) -> ResidentLookup:
    deps = service.deps
    found = await deps.store.resident_with_number(person_ref)
    if found is None:
        raise HTTPException(404, "no resident with this person reference")
    await service.audit.record(at=service.clock.now(), actor=who, action="enrollment.resident.lookup",
                               person_ref=person_ref, reason="operator lookup (number shown masked)")
    resident, number = found
    return ResidentLookup(
        person_ref=person_ref, number_masked=number.masked(),
        municipality_code=resident.municipality_code, attributes=resident.attributes, nationality=resident.nationality,
        residence_status=resident.residence_status, residence_period_end=resident.residence_period_end,
        moved_abroad_on=resident.moved_abroad_on, deceased_on=resident.deceased_on,
        cards=[CardStatus.of(card) for card in await deps.store.cards_of(person_ref)],
    )


@router.post("/operator/expiry-sweep", response_model=SweepReport, tags=["operator"], responses=errors(OPERATORS_ONLY),
             summary="Expire every card past its expiry date and publish CardExpired; safe to run twice.")
async def expiry_sweep(
    _: Operator,
    service: Service,
    as_of: SweepDay = None,
) -> SweepReport:
    return SweepReport(**await run_expiry_sweep(service, as_of=as_of))


@router.post("/operator/number-keys/rotate", response_model=RotationReport, tags=["operator"], responses=errors(OPERATORS_ONLY),
             summary="Re-encrypt every stored number under the current key (the first in MYNUMBER_ENROLLMENT_NUMBER_KEYS).")
async def rotate_keys(_: Operator, deps: Deps) -> RotationReport:
    return RotationReport(**await rotate_number_keys(deps.store))


class NumberAssignment(BaseModel):
    model_config = ConfigDict(frozen=True)

    request_id: str
    municipality_code: str
    my_number: str = Field(description="The assigned Individual Number (12 digits). Only the municipality that asked sees it.")
    person_ref: str
    assigned_at: datetime


@router.get("/assignments/{request_id}", response_model=NumberAssignment, tags=["registry"],
            responses=errors({**NO_TOKEN, 403: "The token is not a municipality's.",
                              404: "This municipality has no number assignment with this request id."}),
            summary="A municipality picks up the number assigned to a resident it registered without one. "
                    "Needs the municipality's own token (principal municipality/<code>); another's request is not found.")
async def pick_up_assignment(request_id: str, service: Service, who: Principal, response: Response) -> NumberAssignment:
    kind, _, municipality_code = who.partition("/")
    if kind != "municipality" or not municipality_code:
        raise HTTPException(403, "only the municipality that registered the resident may pick up its number")
    deps = service.deps
    found = await deps.store.assignment(f"{municipality_code}/{request_id}")
    if found is None:
        raise HTTPException(404, "this municipality has no number assignment with this request id")
    number, assigned_at = found
    person_ref = deps.people.for_number(number)
    await service.audit.record(at=service.clock.now(), actor=who, action="enrollment.number.pickup", person_ref=person_ref,
                               reason=f"assigned number picked up for request {request_id}")
    response.headers.update(NO_STORE)
    return NumberAssignment(request_id=request_id, municipality_code=municipality_code, my_number=number.reveal(),
                            person_ref=person_ref, assigned_at=assigned_at)


class CertificateVerification(BaseModel):
    model_config = ConfigDict(frozen=True)

    valid: bool
    issued_at: datetime | None = Field(None, description="When the certificate was issued; nothing else is told.")


@router.get("/kiosks/{kiosk_id}/certificates/{request_id}", tags=["certificates"],
            responses={200: {"content": {"application/pdf": {}}, "description": "The certificate PDF."},
                       **errors({**NO_TOKEN, 403: "The token is not this kiosk's.",
                                 404: "No certificate was issued for this kiosk and request.",
                                 410: "The pickup period (MYNUMBER_CERTIFICATE_PICKUP_DAYS) has passed."})},
            response_class=Response,
            summary="A kiosk picks up the PDF for one of its own requests (the kiosk's token: principal kiosk/<id>).")
async def pick_up_certificate(kiosk_id: str, request_id: str, service: Service, who: Principal) -> Response:
    if who != f"kiosk/{kiosk_id}":
        raise HTTPException(403, "a kiosk may only pick up its own certificates")
    stored = await service.deps.store.certificate(kiosk_id, request_id)
    if stored is None:
        raise HTTPException(404, "no certificate was issued for this kiosk and request")
    if "pdf" not in stored:
        raise HTTPException(410, f"the PDF is kept {service.settings.certificate_pickup_days} days after issue and "
                                 "has been removed: the holder requests a new certificate")
    await service.audit.record(at=service.clock.now(), actor=who, action="enrollment.certificate.pickup",
                               reason=f"residence certificate for request {request_id}")
    return Response(bytes(stored["pdf"]), media_type="application/pdf", headers=NO_STORE)


@router.get("/certificates/verification/{code}", response_model=CertificateVerification, tags=["certificates"],
            responses=errors(NO_TOKEN),
            summary="A receiving agency checks a certificate's verification code: valid or not, and when it was issued.")
async def verify_certificate(code: str, service: Service, _: Principal) -> CertificateVerification:
    deps, period = service.deps, timedelta(days=service.settings.certificate_verification_days)
    found = await deps.store.verification(deps.vault.digest("verification-code", code.encode()))
    if found is not None and found["issued_at"] < service.clock.now() - period:  # read with its zone (the kit's client)
        found = None  # past its verification period (the retention sweep deletes it)
    return CertificateVerification(valid=found is not None, issued_at=found["issued_at"] if found else None)


class RetentionReport(BaseModel):
    as_of: date
    pdfs_removed: int = Field(description="Certificate PDFs past the pickup period that this run removed.")
    verification_codes_removed: int = Field(description="Verification codes past their period that this run deleted.")


@router.post("/operator/certificate-retention-sweep", response_model=RetentionReport, tags=["operator"],
             responses=errors(OPERATORS_ONLY),
             summary="Remove residence certificate PDFs past the pickup period and verification codes past theirs.")
async def certificate_retention_sweep(
    _: Operator,
    service: Service,
    as_of: SweepDay = None,
) -> RetentionReport:
    store, settings = service.deps.store, service.settings
    as_of = as_of or today(service.clock)
    midnight = datetime.combine(as_of, time(0), tzinfo=ZoneInfo("Asia/Tokyo"))
    pdfs = await store.remove_certificate_pdfs(midnight - timedelta(days=settings.certificate_pickup_days),
                                               now=service.clock.now())
    codes = await store.remove_verification_codes(midnight - timedelta(days=settings.certificate_verification_days))
    return RetentionReport(as_of=as_of, pdfs_removed=pdfs, verification_codes_removed=codes)
