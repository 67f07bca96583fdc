"""The licensing rules: pure Python and contracts, no broker, database or web framework.

A licence is kept per person (a person holds one driver's licence, whatever its classes).
The card a licence is recorded on is looked up at the time of use, so a card event changes
the card's status and the licence follows without being rewritten.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Generic, TypeVar
from zoneinfo import ZoneInfo

from mynumber_contracts import Fact
from mynumber_contracts.licensing import (
    CardUnusableReason,
    ConventionalLicenceUpdateRequired,
    HolderChoice,
    LicenceAddressUpdated,
    LicenceClass,
    LicenceRecorded,
    LicenceRecordedOnNewCard,
    LicenceRejectionReason,
    LicenceRequestRejected,
    LicenceReRecordingNeeded,
    LicenceRevoked,
    LicenceSuspended,
    LicenceTransaction,
    LicenceUnusable,
    LicenceUsableAgain,
    RecordLicence,
    RecordLicenceOnNewCard,
    RegisterVehicle,
    RevokeLicence,
    SuspendLicence,
    TransferVehicle,
    VehicleRegistered,
    VehicleRejectionReason,
    VehicleRequestRejected,
    VehicleTransferred,
)
from pydantic import BaseModel, ConfigDict

T = TypeVar("T")
JAPAN = ZoneInfo("Asia/Tokyo")


def japan_date(moment: datetime) -> date:
    """The date in Japan, where every licensing date is counted."""
    return moment.astimezone(JAPAN).date()


# --- cards (as told by enrollment) -------------------------------------------------------------


class CardStatus(StrEnum):
    active = "active"
    suspended = "suspended"  # reported lost
    replaced = "replaced"  # a reissued card took its place
    revoked = "revoked"
    returned = "returned"
    expired = "expired"


class Card(BaseModel):
    model_config = ConfigDict(frozen=True)

    card_number: str
    person_ref: str
    status: CardStatus
    issued_on: date
    expires_on: date

    def status_on(self, day: date) -> CardStatus:
        """The status on `day`: an active card past its expiry date is expired, even before enrollment says so."""
        if self.status is CardStatus.active and day > self.expires_on:
            return CardStatus.expired
        return self.status


def current_card(cards: list[Card]) -> Card | None:
    """The card a holder named only by number carries: the newest active one, else the newest (to say why not)."""
    if not cards:
        return None
    return max(cards, key=lambda card: (card.status is CardStatus.active, card.issued_on))


# --- licences -------------------------------------------------------------------------------------


class Licence(BaseModel):
    model_config = ConfigDict(frozen=True)

    person_ref: str
    licence_number: str
    holder_choice: HolderChoice
    card_number: str | None  # the card the licence is recorded on; None for a conventional licence only
    issued_on: date
    expires_on: date
    classes: list[LicenceClass]
    conditions: list[str]
    photo_ref: str
    address: str | None = None
    recorded_by: str  # request id of the issue or renewal
    earlier_records: list[str] = []  # request ids of the issues and renewals of this licence before `recorded_by`
    card_recorded_by: str | None = None  # request id that put the licence on its current card
    previous_card_number: str | None = None
    re_recording_card_number: str | None = None  # a new card the police still have to record the licence on
    suspended_from: date | None = None
    suspended_until: date | None = None
    suspended_by: str | None = None
    earlier_suspensions: list[str] = []  # request ids of the suspensions of this licence before `suspended_by`
    revoked_on: date | None = None
    revoked_by: str | None = None
    earlier_revocations: list[str] = []  # request ids of revocations of this number before it was issued new
    version: int = 0  # optimistic-concurrency version kept by the store; 0 = never saved

    @property
    def on_card(self) -> bool:
        return self.holder_choice.on_card and self.card_number is not None

    @property
    def revoked(self) -> bool:
        return self.revoked_on is not None

    def recorded_by_request(self, request: RecordLicence) -> bool:
        """Whether this issue or renewal request already recorded the licence, even if later ones followed.
        (The last one also with the same content: the same request id with other content records it again,
        as it always did.)"""
        if request.request_id in self.earlier_records:
            return True
        return request.request_id == self.recorded_by and (
            request.holder_choice, request.issued_on, request.expires_on, list(request.classes), list(request.conditions),
            request.photo_ref,
        ) == (self.holder_choice, self.issued_on, self.expires_on, self.classes, self.conditions, self.photo_ref)

    def suspended_on(self, day: date) -> bool:
        return self.suspended_from is not None and self.suspended_until is not None and (
            self.suspended_from <= day <= self.suspended_until
        )


@dataclass(frozen=True)
class FeeTable:
    """Fees in yen by transaction and holder choice, plus the fee to record a licence on a reissued card."""

    new: Mapping[HolderChoice, int]
    renewal: Mapping[HolderChoice, int]
    re_recording: int

    def fee(self, transaction: LicenceTransaction, choice: HolderChoice) -> int:
        table = self.new if transaction is LicenceTransaction.new else self.renewal
        return table[choice]


@dataclass(frozen=True)
class Decision(Generic[T]):
    """What a rule decided: the state to save (None: nothing changes) and the facts to publish."""

    saved: T | None = None
    facts: list[Fact] = field(default_factory=list)


def _licence_rejection(
    request: RecordLicence | RecordLicenceOnNewCard | SuspendLicence | RevokeLicence,
    reason: LicenceRejectionReason,
    message: str,
    person_ref: str | None = None,
) -> Decision[Licence]:
    return Decision(facts=[LicenceRequestRejected(
        person_ref=person_ref, request_id=request.request_id, request_type=request.event_type,
        licence_number=request.licence_number, reason=reason, message=message,
    )])


@dataclass(frozen=True)
class Holder:
    person_ref: str
    card: Card | None  # the card named in the request, or the person's current card


def identify_holder(
    request: RecordLicence | RecordLicenceOnNewCard, *, number_ref: str | None, card: Card | None
) -> Holder | Decision[Licence]:
    """The holder the police named. `card` is the named card, or the holder's current card when none was named."""
    if request.card_number is not None and card is None:
        return _licence_rejection(request, LicenceRejectionReason.unknown_card, "no card with this number is known",
                                  number_ref)
    if number_ref is not None and card is not None and card.person_ref != number_ref:
        # The number or the card is wrong (about 1.7 % of typos pass the check digit): neither person is named.
        return _licence_rejection(request, LicenceRejectionReason.card_holder_mismatch,
                                  "the card belongs to someone other than the licence holder: check the number and the card")
    person_ref = number_ref or (card.person_ref if card else None)
    assert person_ref is not None  # the contract requires a number or a card
    return Holder(person_ref, card)


def _card_refusal(card: Card | None, today: date) -> tuple[LicenceRejectionReason, str] | None:
    if card is None:
        return LicenceRejectionReason.no_active_card, "the holder has no card to record the licence on"
    status = card.status_on(today)
    if status is not CardStatus.active:
        return LicenceRejectionReason.card_not_active, f"the card is {status.value}"
    return None


def record_licence(
    request: RecordLicence,
    holder: Holder,
    *,
    current: Licence | None,
    number_holder: str | None,
    address: str | None,
    fees: FeeTable,
    today: date,
    holder_deceased: bool = False,
    date_of_birth_on_record: date | None = None,
) -> Decision[Licence]:
    """A licence issued or renewed: recorded on an active card of the holder unless they chose a conventional licence only.

    `current` is the holder's licence on record, `number_holder` whoever holds this licence number now,
    `holder_deceased` whether enrollment told us the holder died, `date_of_birth_on_record` the holder's
    date of birth as enrollment told us (None if not known).
    """
    person_ref = holder.person_ref
    if number_holder is not None and number_holder != person_ref:
        # The holder's number or the licence number is wrong: the person the number names is not named.
        return _licence_rejection(request, LicenceRejectionReason.licence_number_in_use,
                                  "this licence number is recorded for another person: check the numbers")
    same_licence = current is not None and current.licence_number == request.licence_number
    if current is not None and current.recorded_by_request(request):
        # This very request, run again (after a crash, or by a consumer that fell behind, after later requests):
        # its fact again, and nothing written, so that a renewal, suspension or revocation made since stands,
        # and so does a licence under a new number that replaced the one it recorded.
        on_card = request.holder_choice.on_card and holder.card is not None
        return Decision(None, [_recorded(request, person_ref, holder.card.card_number if on_card else None, fees)])
    if (request.holder_date_of_birth is not None and date_of_birth_on_record is not None
            and request.holder_date_of_birth != date_of_birth_on_record):
        # The number or the card names someone else: no one is named.
        return _licence_rejection(request, LicenceRejectionReason.record_differs,
                                  "the person this request names was born on another day: check the number and the card")
    if holder_deceased:
        # No licence for the dead; most likely the number or the card is mistyped: no one is named.
        return _licence_rejection(request, LicenceRejectionReason.holder_deceased,
                                  "the person this request names is recorded as deceased: check the number and the card")
    if same_licence and current.revoked and request.transaction is LicenceTransaction.renewal:
        return _licence_rejection(request, LicenceRejectionReason.licence_revoked,
                                  "a revoked licence cannot be renewed", person_ref)
    if (current is not None and not same_licence and request.card_number is None and not current.revoked
            and current.expires_on >= today and not _reissue_of(current.licence_number, request.licence_number)):
        # Named by the number alone, which proves no identity (about 1.7 % of typos pass the check digit): a
        # licence under another number does not replace one that is still valid unless the card confirms the holder.
        return _licence_rejection(request, LicenceRejectionReason.other_licence_on_record,
                                  "the person this Individual Number names holds another licence that is still valid: "
                                  "check the number, or name the holder's card as well")
    card_number = None
    if request.holder_choice.on_card:
        refusal = _card_refusal(holder.card, today)
        if refusal:
            return _licence_rejection(request, *refusal, person_ref=person_ref)
        card_number = holder.card.card_number
    # A suspension stays in force through a renewal and a new issue (e.g. a class added) of the same
    # licence; only a revocation ends it, and a revoked licence is only ever issued new.
    kept_suspension = current if same_licence and not current.revoked else None
    suspensions = list(current.earlier_suspensions) if same_licence else []
    if same_licence and current.suspended_by and kept_suspension is None:
        suspensions.append(current.suspended_by)
    licence = Licence(
        person_ref=person_ref,
        licence_number=request.licence_number,
        holder_choice=request.holder_choice,
        card_number=card_number,
        issued_on=request.issued_on,
        expires_on=request.expires_on,
        classes=list(request.classes),
        conditions=list(request.conditions),
        photo_ref=request.photo_ref,
        address=address if address is not None else (current.address if current else None),
        recorded_by=request.request_id,
        # The person's earlier records, under this number or one the person held before: a run again of any is known.
        earlier_records=[*current.earlier_records, current.recorded_by] if current else [],
        card_recorded_by=request.request_id if card_number else None,
        suspended_from=kept_suspension.suspended_from if kept_suspension else None,
        suspended_until=kept_suspension.suspended_until if kept_suspension else None,
        suspended_by=kept_suspension.suspended_by if kept_suspension else None,
        earlier_suspensions=suspensions,
        earlier_revocations=[*current.earlier_revocations, *([current.revoked_by] if current.revoked_by else [])]
        if same_licence else [],
        version=current.version if current else 0,
    )
    return Decision(licence, [_recorded(request, person_ref, card_number, fees)])


def _reissue_of(licence_number: str, other: str) -> bool:
    """Whether `other` is the same licence reissued: a reissue (after a loss) changes only the last digit, its count."""
    return licence_number[:-1] == other[:-1]


def _recorded(request: RecordLicence, person_ref: str, card_number: str | None, fees: FeeTable) -> LicenceRecorded:
    return LicenceRecorded(
        person_ref=person_ref, request_id=request.request_id, licence_number=request.licence_number,
        transaction=request.transaction, holder_choice=request.holder_choice, card_number=card_number,
        fee_yen=fees.fee(request.transaction, request.holder_choice), issued_on=request.issued_on,
        expires_on=request.expires_on, classes=list(request.classes), conditions=list(request.conditions),
    )


def record_licence_on_new_card(
    request: RecordLicenceOnNewCard, holder: Holder, *, licence: Licence | None, fees: FeeTable, today: date
) -> Decision[Licence]:
    """A valid licence recorded again, on the holder's new card (after a reissue)."""
    person_ref = holder.person_ref
    if licence is None or licence.person_ref != person_ref:
        return _licence_rejection(request, LicenceRejectionReason.unknown_licence,
                                  "the holder has no licence with this number on record", person_ref)
    if licence.revoked:
        return _licence_rejection(request, LicenceRejectionReason.licence_revoked, "the licence is revoked", person_ref)
    if not licence.holder_choice.on_card:
        return _licence_rejection(request, LicenceRejectionReason.not_a_card_licence,
                                  "the holder chose a conventional licence only", person_ref)
    refusal = _card_refusal(holder.card, today)
    if refusal:
        return _licence_rejection(request, *refusal, person_ref=person_ref)
    card_number = holder.card.card_number
    if licence.card_number == card_number and licence.card_recorded_by != request.request_id:
        return _licence_rejection(request, LicenceRejectionReason.already_recorded,
                                  "the licence is already recorded on this card", person_ref)
    if licence.card_number != card_number:  # not a replay of this very request
        licence = licence.model_copy(update={
            "card_number": card_number, "previous_card_number": licence.card_number,
            "card_recorded_by": request.request_id, "re_recording_card_number": None,
        })
    return Decision(licence, [LicenceRecordedOnNewCard(
        person_ref=person_ref, request_id=request.request_id, licence_number=licence.licence_number,
        card_number=card_number, previous_card_number=licence.previous_card_number, fee_yen=fees.re_recording,
    )])


def suspend_licence(request: SuspendLicence, licence: Licence | None) -> Decision[Licence]:
    if licence is None:
        return _licence_rejection(request, LicenceRejectionReason.unknown_licence, "no licence with this number is known")
    suspended_fact = LicenceSuspended(
        person_ref=licence.person_ref, request_id=request.request_id, licence_number=licence.licence_number,
        suspended_from=request.suspended_from, suspended_until=request.suspended_until,
    )
    if request.request_id == licence.suspended_by or request.request_id in licence.earlier_suspensions:
        return Decision(None, [suspended_fact])  # this suspension run again: what came after it stands
    if licence.revoked:
        return _licence_rejection(request, LicenceRejectionReason.licence_revoked, "the licence is revoked",
                                  licence.person_ref)
    earlier = [*licence.earlier_suspensions, *([licence.suspended_by] if licence.suspended_by else [])]
    suspended = licence.model_copy(update={
        "suspended_from": request.suspended_from, "suspended_until": request.suspended_until,
        "suspended_by": request.request_id, "earlier_suspensions": earlier,
    })
    return Decision(suspended, [suspended_fact])


def revoke_licence(request: RevokeLicence, licence: Licence | None) -> Decision[Licence]:
    if licence is None:
        return _licence_rejection(request, LicenceRejectionReason.unknown_licence, "no licence with this number is known")
    revoked_fact = LicenceRevoked(
        person_ref=licence.person_ref, request_id=request.request_id, licence_number=licence.licence_number,
        revoked_on=request.revoked_on,
    )
    if request.request_id in licence.earlier_revocations:
        return Decision(None, [revoked_fact])  # run again after the number was issued new: the new licence stands
    if licence.revoked and licence.revoked_by != request.request_id:
        return _licence_rejection(request, LicenceRejectionReason.licence_revoked, "the licence is already revoked",
                                  licence.person_ref)
    revoked = licence.model_copy(update={"revoked_on": request.revoked_on, "revoked_by": request.request_id})
    return Decision(revoked, [revoked_fact])


# --- what card events do to the licence ------------------------------------------------------------


def _recorded_on(licence: Licence | None, card_number: str) -> bool:
    return licence is not None and licence.on_card and not licence.revoked and licence.card_number == card_number


def card_unusable(licence: Licence | None, card_number: str, reason: CardUnusableReason, since: date) -> list[Fact]:
    """A lost, expired, revoked or returned card makes the licence recorded on it unusable."""
    if not _recorded_on(licence, card_number):
        return []
    return [LicenceUnusable(person_ref=licence.person_ref, licence_number=licence.licence_number,
                            card_number=card_number, reason=reason, since=since)]


def card_found(licence: Licence | None, card_number: str, since: date) -> list[Fact]:
    if not _recorded_on(licence, card_number):
        return []
    return [LicenceUsableAgain(person_ref=licence.person_ref, licence_number=licence.licence_number,
                               card_number=card_number, since=since)]


VOID_CARD_STATUSES = frozenset({CardStatus.replaced, CardStatus.revoked, CardStatus.returned, CardStatus.expired})


def new_card_for_holder(licence: Licence | None, *, void_card_number: str | None, new_card_number: str) -> Decision[Licence]:
    """The holder got a new card in place of a void one: the licence stays valid, and the police must record it again."""
    if licence is None or not licence.on_card or licence.revoked or licence.card_number == new_card_number:
        return Decision()
    replay = licence.re_recording_card_number == new_card_number
    replaces = void_card_number is not None and void_card_number in (licence.card_number, licence.re_recording_card_number)
    if not (replay or replaces):
        return Decision()
    pending = licence.model_copy(update={"re_recording_card_number": new_card_number})
    return Decision(pending, [LicenceReRecordingNeeded(
        person_ref=licence.person_ref, licence_number=licence.licence_number,
        previous_card_number=licence.card_number, card_number=new_card_number,
    )])


def card_issued(licence: Licence | None, licence_card: Card | None, new_card_number: str, today: date) -> Decision[Licence]:
    """A first-time issue after the licence's card became void (expired, returned, revoked) also needs a re-recording."""
    void = licence_card is not None and licence_card.status_on(today) in VOID_CARD_STATUSES
    return new_card_for_holder(licence, void_card_number=licence_card.card_number if void else None,
                               new_card_number=new_card_number)


def address_changed(licence: Licence | None, address: str, effective_on: date) -> Decision[Licence]:
    """One-stop: a card-only licence follows the resident's move; a conventional licence must be updated by its holder."""
    if licence is None or licence.revoked:
        return Decision()
    if licence.holder_choice is HolderChoice.card_only:
        return Decision(licence.model_copy(update={"address": address}), [LicenceAddressUpdated(
            person_ref=licence.person_ref, licence_number=licence.licence_number, address=address,
            effective_on=effective_on,
        )])
    return Decision(facts=[ConventionalLicenceUpdateRequired(
        person_ref=licence.person_ref, licence_number=licence.licence_number, holder_choice=licence.holder_choice,
        effective_on=effective_on,
    )])


# --- the roadside check ------------------------------------------------------------------------------


class RoadsideStatus(StrEnum):
    valid = "valid"
    re_recording_pending = "re_recording_pending"  # valid, but not yet recorded on this (new) card
    licence_expired = "licence_expired"
    licence_not_yet_valid = "licence_not_yet_valid"
    licence_suspended = "licence_suspended"
    licence_revoked = "licence_revoked"
    card_unusable = "card_unusable"
    no_licence_on_card = "no_licence_on_card"
    unknown_card = "unknown_card"


_VALID_STATUSES = {RoadsideStatus.valid, RoadsideStatus.re_recording_pending}


@dataclass(frozen=True)
class RoadsideVerdict:
    status: RoadsideStatus
    card_status: CardStatus | None = None
    licence: Licence | None = None

    @property
    def valid(self) -> bool:
        return self.status in _VALID_STATUSES


def roadside_check(card: Card | None, licence: Licence | None, day: date) -> RoadsideVerdict:
    """Is the licence recorded on this card valid on `day`? `licence` is the one recorded (or pending) on the card."""
    if card is None:
        return RoadsideVerdict(RoadsideStatus.unknown_card)
    card_status = card.status_on(day)
    on_this_card = licence is not None and licence.on_card and licence.card_number == card.card_number
    pending_on_this_card = licence is not None and licence.re_recording_card_number == card.card_number
    if not (on_this_card or pending_on_this_card):
        return RoadsideVerdict(RoadsideStatus.no_licence_on_card, card_status)
    if card_status is not CardStatus.active:
        status = RoadsideStatus.card_unusable
    elif licence.revoked and day >= licence.revoked_on:
        status = RoadsideStatus.licence_revoked
    elif day < licence.issued_on:
        status = RoadsideStatus.licence_not_yet_valid
    elif day > licence.expires_on:
        status = RoadsideStatus.licence_expired
    elif licence.suspended_on(day):
        status = RoadsideStatus.licence_suspended
    elif not on_this_card:
        status = RoadsideStatus.re_recording_pending
    else:
        status = RoadsideStatus.valid
    return RoadsideVerdict(status, card_status, licence)


# --- vehicles ------------------------------------------------------------------------------------------


class Ownership(BaseModel):
    model_config = ConfigDict(frozen=True)

    person_ref: str
    card_number: str
    registration_number: str
    owned_from: date
    owned_until: date | None = None
    request_id: str


class Vehicle(BaseModel):
    model_config = ConfigDict(frozen=True)

    vehicle_id: str
    owners: list[Ownership]  # oldest first; the last is the current owner
    version: int = 0

    @property
    def owner(self) -> Ownership:
        return self.owners[-1]


def _vehicle_rejection(
    request: RegisterVehicle | TransferVehicle, reason: VehicleRejectionReason, message: str, person_ref: str | None = None
) -> Decision[Vehicle]:
    return Decision(facts=[VehicleRequestRejected(
        person_ref=person_ref, request_id=request.request_id, request_type=request.event_type,
        vehicle_id=request.vehicle_id, reason=reason, message=message,
    )])


def _owner_card_refusal(card: Card | None, day: date) -> tuple[VehicleRejectionReason, str] | None:
    if card is None:
        return VehicleRejectionReason.unknown_card, "no card with this number is known"
    status = card.status_on(day)
    if status is CardStatus.suspended:
        return VehicleRejectionReason.card_suspended, "the card is suspended (reported lost)"
    if status is CardStatus.expired:
        return VehicleRejectionReason.card_expired, "the card has expired"
    if status is not CardStatus.active:
        return VehicleRejectionReason.card_not_active, f"the card is {status.value}"
    return None


def register_vehicle(request: RegisterVehicle, card: Card | None, existing: Vehicle | None) -> Decision[Vehicle]:
    """A vehicle registered to the owner who presented an active card."""
    if existing is not None and existing.owners[0].request_id == request.request_id:
        first = existing.owners[0]  # a replay of this request
        return Decision(facts=[VehicleRegistered(
            person_ref=first.person_ref, request_id=request.request_id, vehicle_id=existing.vehicle_id,
            registration_number=first.registration_number, card_number=first.card_number, registered_on=first.owned_from,
        )])
    if existing is not None:
        return _vehicle_rejection(request, VehicleRejectionReason.vehicle_already_registered,
                                  "the vehicle is already registered; transfer it instead")
    refusal = _owner_card_refusal(card, request.registered_on)
    if refusal:
        return _vehicle_rejection(request, *refusal, person_ref=card.person_ref if card else None)
    owner = Ownership(person_ref=card.person_ref, card_number=card.card_number,
                      registration_number=request.registration_number, owned_from=request.registered_on,
                      request_id=request.request_id)
    vehicle = Vehicle(vehicle_id=request.vehicle_id, owners=[owner])
    return Decision(vehicle, [VehicleRegistered(
        person_ref=owner.person_ref, request_id=request.request_id, vehicle_id=vehicle.vehicle_id,
        registration_number=owner.registration_number, card_number=owner.card_number, registered_on=owner.owned_from,
    )])


def transfer_vehicle(request: TransferVehicle, card: Card | None, vehicle: Vehicle | None) -> Decision[Vehicle]:
    """Ownership moves to the new owner, who presented an active card; the history is kept."""
    if vehicle is None:
        return _vehicle_rejection(request, VehicleRejectionReason.unknown_vehicle, "no vehicle with this id is registered",
                                  card.person_ref if card else None)
    replayed = next((i for i, o in enumerate(vehicle.owners) if o.request_id == request.request_id and i > 0), None)
    if replayed is not None:
        return Decision(facts=[_transferred(request, vehicle.owners[replayed - 1], vehicle.owners[replayed])])
    refusal = _owner_card_refusal(card, request.transferred_on)
    if refusal:
        return _vehicle_rejection(request, *refusal, person_ref=card.person_ref if card else None)
    previous = vehicle.owner
    if previous.person_ref == card.person_ref:
        return _vehicle_rejection(request, VehicleRejectionReason.same_owner, "the vehicle already belongs to this owner",
                                  card.person_ref)
    new_owner = Ownership(person_ref=card.person_ref, card_number=card.card_number,
                          registration_number=request.registration_number or previous.registration_number,
                          owned_from=request.transferred_on, request_id=request.request_id)
    owners = [*vehicle.owners[:-1], previous.model_copy(update={"owned_until": request.transferred_on}), new_owner]
    return Decision(vehicle.model_copy(update={"owners": owners}), [_transferred(request, previous, new_owner)])


def _transferred(request: TransferVehicle, previous: Ownership, new_owner: Ownership) -> VehicleTransferred:
    return VehicleTransferred(
        person_ref=new_owner.person_ref, previous_owner_ref=previous.person_ref, request_id=request.request_id,
        vehicle_id=request.vehicle_id, registration_number=new_owner.registration_number,
        card_number=new_owner.card_number, transferred_on=new_owner.owned_from,
    )
