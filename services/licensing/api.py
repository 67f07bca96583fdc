"""The licensing HTTP API: the roadside check, and look-ups for the police and the transport bureaus.

Every route but the fee table needs a bearer token (the kit's MYNUMBER_HTTP_API_TOKENS): the roadside
check and licence look-ups the police's (`police/<id>`) or an operator's, vehicle look-ups also a
transport bureau's (`transport-bureau/<id>`); any other partner's token gets 403. Each roadside check
and licence look-up is written to the audit trail with the caller and the holder.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from mynumber_contracts.licensing import CardNumber, HolderChoice, LicenceClass, LicenceNumber, VehicleId
from mynumber_contracts.partners import PartnerType
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.kit.auth import operator_or
from services.kit.http import NO_TOKEN, NOT_JSON, errors, service_deps, service_of
from services.kit.messaging import EventService

from . import domain
from .domain import CardStatus, RoadsideStatus, japan_date
from .handlers import LicensingDeps

router = APIRouter()

Deps = Annotated[LicensingDeps, Depends(service_deps)]
Service = Annotated[EventService[LicensingDeps], Depends(service_of)]
# Licence holders' references, addresses and cards: for the police and operators, not for every partner with a token.
Police = Annotated[str, Depends(operator_or(PartnerType.police, refusal="licence checks and look-ups are for the police"))]
VehicleReader = Annotated[str, Depends(operator_or(
    PartnerType.police, PartnerType.transport_bureau, refusal="vehicle look-ups are for transport bureaus and the police"))]
NOT_POLICE = {403: "The token is neither the police's nor an operator's."}
NOT_VEHICLE_READER = {403: "The token is neither a transport bureau's, the police's nor an operator's."}


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


class RoadsideCheckRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    card_number: CardNumber
    at: AwareDatetime | None = Field(default=None, description="When to check; defaults to now.")


class RoadsideCheckResult(_Response):
    card_number: str
    checked_at: datetime = Field(description="The moment checked (given or now).")
    checked_on: date = Field(description="The Japan date the licence was checked for.")
    valid: bool = Field(description="True when the holder may drive on this licence now.")
    status: RoadsideStatus = Field(description="Why the licence is or is not valid.")
    card_status: CardStatus | None = Field(description="The card's status on that date; absent for an unknown card.")
    licence_number: str | None = None
    classes: list[LicenceClass] = Field(default_factory=list)
    conditions: list[str] = Field(default_factory=list)
    issued_on: date | None = None
    expires_on: date | None = Field(default=None, description="Shown here because it is not printed on the card.")
    suspended_until: date | None = Field(default=None, description="Last day of a suspension in force.")


class LicenceRecord(_Response):
    person_ref: str
    licence_number: str
    holder_choice: HolderChoice
    card_number: str | None = Field(description="The card the licence is recorded on.")
    re_recording_card_number: str | None = Field(description="A new card the police still have to record it on.")
    issued_on: date
    expires_on: date
    classes: list[LicenceClass]
    conditions: list[str]
    photo_ref: str
    address: str | None = Field(description="The address on the licence record.")
    suspended_from: date | None
    suspended_until: date | None
    revoked_on: date | None


class OwnershipRecord(_Response):
    person_ref: str
    card_number: str
    registration_number: str
    owned_from: date
    owned_until: date | None


class VehicleRecord(_Response):
    vehicle_id: str
    owner: OwnershipRecord = Field(description="The current owner.")
    owners: list[OwnershipRecord] = Field(description="Every owner, oldest first.")


class FeeSchedule(_Response):
    new: dict[HolderChoice, int] = Field(description="Yen for a new licence, by holder choice.")
    renewal: dict[HolderChoice, int] = Field(description="Yen for a renewal, by holder choice.")
    re_recording: int = Field(description="Yen to record a valid licence on a reissued card.")




@router.post(
    "/roadside-checks", response_model=RoadsideCheckResult, responses=errors({**NO_TOKEN, **NOT_POLICE, **NOT_JSON}), tags=["police"],
    summary="Roadside check: is the licence recorded on this card valid now (or at `at`)?",
)
async def roadside_check(request: RoadsideCheckRequest, service: Service, caller: Police) -> RoadsideCheckResult:
    # POST, so the card number stays out of URLs and access logs.
    store = service.deps.store
    at = request.at or service.clock.now()
    day = japan_date(at)
    card = await store.card(request.card_number)
    verdict = domain.roadside_check(card, await store.licence_for_card(request.card_number), day)
    await service.audit.record(
        at=service.clock.now(), actor=caller, action="licensing.roadside_check",
        person_ref=card.person_ref if card else None, reason=f"roadside check: {verdict.status.value}",
        details={"card_number": request.card_number, "checked_on": day.isoformat()},
    )
    licence = verdict.licence
    return RoadsideCheckResult(
        card_number=request.card_number, checked_at=at, checked_on=day, valid=verdict.valid, status=verdict.status,
        card_status=verdict.card_status,
        licence_number=licence.licence_number if licence else None,
        classes=licence.classes if licence else [],
        conditions=licence.conditions if licence else [],
        issued_on=licence.issued_on if licence else None,
        expires_on=licence.expires_on if licence else None,
        suspended_until=licence.suspended_until if licence and licence.suspended_on(day) else None,
    )


@router.get(
    "/licences/{licence_number}", response_model=LicenceRecord,
    responses=errors({**NO_TOKEN, **NOT_POLICE, 404: "No licence with this number is on record."}), tags=["police"],
    summary="The licence on record: its holder's choice, card, dates, classes, conditions and address.",
)
async def licence(licence_number: LicenceNumber, service: Service, caller: Police) -> LicenceRecord:
    found = await service.deps.store.licence_by_number(licence_number)
    if found is None:
        raise HTTPException(404, "no licence with this number is on record")
    await service.audit.record(at=service.clock.now(), actor=caller, action="licensing.licence.lookup",
                               person_ref=found.person_ref, reason="licence record looked up")
    return LicenceRecord.model_validate(found.model_dump())


@router.get(
    "/vehicles/{vehicle_id}", response_model=VehicleRecord,
    responses=errors({**NO_TOKEN, **NOT_VEHICLE_READER, 404: "No vehicle with this id is registered."}),
    tags=["transport bureaus"],
    summary="A registered vehicle: its current owner and its ownership history.",
)
async def vehicle(vehicle_id: VehicleId, deps: Deps, _: VehicleReader) -> VehicleRecord:
    found = await deps.store.vehicle(vehicle_id)
    if found is None:
        raise HTTPException(404, "no vehicle with this id is registered")
    owners = [OwnershipRecord.model_validate(o.model_dump()) for o in found.owners]
    return VehicleRecord(vehicle_id=found.vehicle_id, owner=owners[-1], owners=owners)


@router.get("/fees", response_model=FeeSchedule, tags=["police"], summary="The fee table in force (from the settings).")
async def fees(deps: Deps) -> FeeSchedule:
    return FeeSchedule(new=dict(deps.fees.new), renewal=dict(deps.fees.renewal), re_recording=deps.fees.re_recording)
