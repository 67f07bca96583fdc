"""The insurance HTTP API: eligibility checks for hospitals, the link review queue and the
operator's decision, certificates per person, released medical data, and the sweeps.

Every route needs a bearer token (the kit's MYNUMBER_HTTP_API_TOKENS). Operator routes need the
principal `operator`; a medical institution's principal is `medical-institution/<code>`, and a
release of medical data is readable by the institution it was released to only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from mynumber_contracts import Fact, PersonRef
from mynumber_contracts.insurance import (
    CertificateIssueReason,
    CopayCategory,
    EligibilityDenialReason,
    HeldReason,
    LinkDecision,
    MatchedAttribute,
    MedicalDataType,
)
from mynumber_contracts.partners import PartnerType
from pydantic import BaseModel, ConfigDict, Field

from services.kit.auth import authenticated_principal, operator, operator_or
from services.kit.clock import today
from services.kit.http import NO_TOKEN, NOT_JSON, OPERATORS_ONLY, SweepDay, errors, service_deps, service_of
from services.kit.messaging import EventService

from .domain import CertificateStatus, LinkState, MembershipStatus, answer_eligibility, member_key
from .handlers import (
    InsuranceDeps,
    LinkResolution,
    NotHeld,
    Publish,
    SweepOutcome,
    UnknownMember,
    UnknownPerson,
    expire_certificates,
    renew_certificates,
    resolve_link,
)

router = APIRouter()
Deps = Annotated[InsuranceDeps, Depends(service_deps)]
Service = Annotated[EventService[InsuranceDeps], Depends(service_of)]
Operator = Annotated[str, Depends(operator)]
Principal = Annotated[str, Depends(authenticated_principal)]
INSTITUTION_PREFIX = "medical-institution/"


# Eligibility is for medical institutions (and operators).
Checker = Annotated[str, Depends(operator_or(PartnerType.medical_institution,
                                             refusal="eligibility checks are for medical institutions"))]


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class EligibilityView(_View):
    certificate_id: str = Field(description="The card certificate id that was checked.")
    eligible: bool
    reason: EligibilityDenialReason | None = Field(default=None, description="Why not, when not eligible.")
    insurer_number: str | None = None
    member_symbol: str | None = None
    member_number: str | None = None
    copay_category: CopayCategory | None = None
    no_card_surcharge: bool = Field(description="Whether the no-card surcharge applies.")


class MemberView(_View):
    insurer_number: str
    member_symbol: str
    member_number: str
    status: MembershipStatus
    link_state: LinkState
    person_ref: str | None = Field(default=None, description="The linked person, once linked.")
    claimed_person_ref: str | None = Field(default=None, description="The person the insurer's number points to.")
    held_reason: HeldReason | None = None
    mismatched: list[MatchedAttribute] = Field(default_factory=list)
    copay_category: CopayCategory
    enrolled_on: date = Field(description="The membership's first day.")
    withdrawn_on: date | None = Field(
        default=None,
        description=(
            "The membership's last day, once the insurer has withdrawn the member (announced ahead, it may still be to "
            "come); the day before `enrolled_on` for a membership that never took effect. Null while the member is not withdrawn."
        ),
    )


class LinkResolutionCommand(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    resolution_id: str = Field(min_length=1, max_length=100, description="The operator's id for this decision; a retry returns the same result.")
    operator: str = Field(min_length=1, max_length=100, description="Who decides (recorded in the audit trail).")
    decision: LinkDecision
    person_ref: PersonRef | None = Field(default=None, description="The person to link; required to link.")
    reason: str = Field(min_length=1, max_length=500, description="Why (recorded in the audit trail).")


class CertificateView(_View):
    certificate_number: str
    insurer_number: str
    member_symbol: str
    member_number: str
    status: CertificateStatus
    reason: CertificateIssueReason
    on_application: bool
    valid_from: date
    valid_until: date


class MedicalRecordView(_View):
    record_id: str
    recorded_for: date
    content: dict[str, Any]


class MedicalDataReleaseView(_View):
    release_id: str
    data_type: MedicalDataType
    covers_from: date
    covers_until: date
    records: list[MedicalRecordView]


class SweepReport(_View):
    as_of: date
    examined: int
    skipped: int = Field(description="Certificates that were due but are no longer needed (left to expire).")
    facts_published: int


@router.get(
    "/eligibility/{certificate_id}",
    response_model=EligibilityView,
    tags=["eligibility"],
    summary="Online eligibility check by the card's certificate id (one indexed lookup).",
    responses=errors({**NO_TOKEN, 403: "The token is neither a medical institution's nor an operator's."}),
)
async def get_eligibility(deps: Deps, _: Checker, certificate_id: Annotated[str, Path(min_length=1, max_length=128)]) -> EligibilityView:
    record = await deps.store.eligibility_record(certificate_id)
    answer = answer_eligibility(record, today=today(deps.clock), no_card_surcharge=deps.settings.no_card_surcharge)
    membership = answer.membership
    return EligibilityView(
        certificate_id=certificate_id, eligible=answer.eligible, reason=answer.reason,
        insurer_number=membership.insurer_number if membership else None,
        member_symbol=membership.member_symbol if membership else None,
        member_number=membership.member_number if membership else None,
        copay_category=membership.copay_category if membership else None,
        no_card_surcharge=answer.no_card_surcharge,
    )


def _member_view(document: dict[str, Any]) -> MemberView:
    return MemberView.model_validate({name: document.get(name) for name in MemberView.model_fields} | {
        "mismatched": document.get("mismatched") or []})


@router.get(
    "/members/{insurer_number}/{member_symbol}/{member_number}",
    response_model=MemberView,
    tags=["linking"],
    summary="A member record and its link state.",
    responses=errors({**OPERATORS_ONLY, 404: "No such member record."}),
)
async def get_member(deps: Deps, _: Operator, insurer_number: str, member_symbol: str, member_number: str) -> MemberView:
    document = await deps.store.member_document(member_key(insurer_number, member_symbol, member_number))
    if document is None:
        raise HTTPException(404, "no such member record")
    return _member_view(document)


@router.get("/links/held", response_model=list[MemberView], tags=["linking"], responses=errors(OPERATORS_ONLY),
            summary="The review queue: member records held, with the reason.")
async def list_held(deps: Deps, _: Operator, insurer_number: Annotated[str | None, Query(pattern=r"^[0-9]{6,8}$")] = None) -> list[MemberView]:
    return [_member_view(d) for d in await deps.store.held_members(insurer_number)]


@router.post(
    "/members/{insurer_number}/{member_symbol}/{member_number}/link-resolution",
    response_model=MemberView,
    tags=["linking"],
    summary="Operator command: link a held record to a confirmed person, or reject it (audited).",
    responses={**errors({**OPERATORS_ONLY, **NOT_JSON, 404: "No such member record.", 409: "The record is not held."}),
               422: {"description": "The person is unknown or deceased, or the command is invalid."}},
)
async def post_link_resolution(deps: Deps, service: Service, _: Operator, insurer_number: str, member_symbol: str, member_number: str,
                               command: LinkResolutionCommand) -> MemberView:
    if command.decision is LinkDecision.link and command.person_ref is None:
        raise HTTPException(422, "linking needs person_ref")
    cause_id = f"link-resolution:{command.resolution_id}"
    try:
        document, facts = await resolve_link(
            deps, member_key(insurer_number, member_symbol, member_number),
            LinkResolution(**command.model_dump()), cause_id=cause_id,
        )
    except UnknownMember:
        raise HTTPException(404, "no such member record") from None
    except NotHeld as exc:
        raise HTTPException(409, str(exc)) from None
    except UnknownPerson as exc:
        raise HTTPException(422, str(exc)) from None
    await service.publish_facts(facts, cause=service.synthetic_cause(cause_id, "jp.mynumber.operations.link_resolution.v1"))
    return _member_view(document)


@router.get("/people/{person_ref}/certificates", response_model=list[CertificateView], tags=["certificates"],
            responses=errors(OPERATORS_ONLY),
            summary="The person's eligibility certificates (current one per membership).")
async def get_certificates(deps: Deps, _: Operator, person_ref: PersonRef) -> list[CertificateView]:
    person = await deps.store.person(person_ref)
    views = []
    for key in person.member_keys if person else ():
        certificate = await deps.store.certificate(key)
        if certificate is not None and certificate.person_ref == person_ref:
            views.append(CertificateView(
                certificate_number=certificate.certificate_number, insurer_number=certificate.insurer_number,
                member_symbol=certificate.member_symbol, member_number=certificate.member_number, status=certificate.status,
                reason=certificate.reason, on_application=certificate.on_application,
                valid_from=certificate.valid_from, valid_until=certificate.valid_until,
            ))
    return views


@router.get(
    "/medical-data/releases/{release_id}",
    response_model=MedicalDataReleaseView,
    tags=["medical data"],
    summary="The records of a release, for the institution it was released to only (by its token).",
    responses=errors({**NO_TOKEN, 404: "No such release for this institution.",
                      410: "The release's reading period (MYNUMBER_RELEASE_READABLE_HOURS) has passed."}),
)
async def get_release(deps: Deps, principal: Principal, release_id: str) -> MedicalDataReleaseView:
    release = await deps.store.release(release_id)
    if release is None or principal != f"{INSTITUTION_PREFIX}{release['institution_code']}":
        raise HTTPException(404, "no such release for this institution")  # never confirm another institution's release
    readable = timedelta(hours=deps.settings.release_readable_hours)
    if deps.clock.now() > release["released_at"] + readable:  # the kit's client reads datetimes with their zone
        raise HTTPException(410, f"a release can be read for {deps.settings.release_readable_hours} hours after it was "
                                 "made: ask again, with the patient's consent")
    data_type = MedicalDataType(release["data_type"])
    covers_from, covers_until = date.fromisoformat(release["covers_from"]), date.fromisoformat(release["covers_until"])
    records = await deps.store.medical_records_for(release.get("member_keys", []), data_type, covers_from, covers_until)
    return MedicalDataReleaseView(
        release_id=release_id, data_type=data_type, covers_from=covers_from, covers_until=covers_until,
        records=[MedicalRecordView(record_id=r["_id"].split("/", 2)[2], recorded_for=date.fromisoformat(r["recorded_for"]),
                                   content=r["content"]) for r in records],
    )


async def _sweep(deps: InsuranceDeps, service: EventService[InsuranceDeps],
                 sweep: Callable[[InsuranceDeps, date, Publish], Awaitable[SweepOutcome]], as_of: date) -> SweepReport:
    """Each certificate's or person's facts are published as soon as that work is done."""

    async def publish(cause_id: str, facts: list[Fact]) -> None:
        await service.publish_facts(facts, cause=service.synthetic_cause(cause_id))

    outcome = await sweep(deps, as_of, publish)
    return SweepReport(as_of=as_of, examined=outcome.examined, skipped=outcome.skipped, facts_published=outcome.facts_published)


@router.post("/operations/certificate-renewal", response_model=SweepReport, tags=["operations"], responses=errors(OPERATORS_ONLY),
             summary="Renewal sweep: renew certificates ending soon that are still needed; issue them where card certificates expired.")
async def post_certificate_renewal(deps: Deps, service: Service, _: Operator, as_of: SweepDay = None) -> SweepReport:
    return await _sweep(deps, service, renew_certificates, as_of or today(deps.clock))


@router.post("/operations/certificate-expiry", response_model=SweepReport, tags=["operations"], responses=errors(OPERATORS_ONLY),
             summary="Expiry sweep: end certificates whose validity has passed (a new one if still needed).")
async def post_certificate_expiry(deps: Deps, service: Service, _: Operator, as_of: SweepDay = None) -> SweepReport:
    return await _sweep(deps, service, expire_certificates, as_of or today(deps.clock))
