"""Licensing: driver's licences recorded on the My Number card, and vehicle registration by card.

Partner requests (topic `mynumber.licensing.requests`) come from the police (a licence
issued, renewed, re-recorded, suspended or revoked) and from the transport bureaus (a
vehicle registered or transferred). Facts (topic `mynumber.licensing.facts`) say what the
service decided. The police may identify a holder by the Individual Number; facts never
carry it, only the person reference.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import Field, StringConstraints, model_validator

from .base import Fact, PartnerRequest
from .identity import Address, MyNumber, PersonRef
from .partners import PartnerType

SERVICE = "licensing"

RequestId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100),
    Field(description="The agency's id for this request; a replay returns the same result.", examples=["pol-2026-000123"]),
]
CardNumber = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[\x21-\x7E]+$"),
    Field(description="Card serial number, as printed on the My Number card.", examples=["C-7K3M9Q2X"]),
]
LicenceNumber = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9]{12}$"),
    Field(description="Driver's licence number: 12 digits, as printed on a conventional licence.", examples=["301234567890"]),
]
LicenceCondition = Annotated[
    str,
    StringConstraints(min_length=1, max_length=60, strip_whitespace=True),
    Field(description="A condition of the licence, as worded by the police.", examples=["眼鏡等", "AT車に限る"]),
]
PhotoRef = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200),
    Field(description="Reference to the licence photo held by the police.", examples=["photo/police/tokyo/2026/000123"]),
]
VehicleId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9-]+$"),
    Field(description="Chassis number (車台番号): identifies the vehicle for life.", examples=["ZVW30-1234567"]),
]
RegistrationNumber = Annotated[
    str,
    StringConstraints(min_length=1, max_length=40, strip_whitespace=True),
    Field(description="Registration number on the number plate.", examples=["品川 330 あ 12-34"]),
]


class LicenceClass(StrEnum):
    """The classes a Japanese driver's licence can cover."""

    large = "large"
    medium = "medium"
    semi_medium = "semi_medium"
    ordinary = "ordinary"
    large_special = "large_special"
    large_motorcycle = "large_motorcycle"
    ordinary_motorcycle = "ordinary_motorcycle"
    small_special = "small_special"
    moped = "moped"
    towing = "towing"
    large_second_class = "large_second_class"
    medium_second_class = "medium_second_class"
    ordinary_second_class = "ordinary_second_class"
    large_special_second_class = "large_special_second_class"
    towing_second_class = "towing_second_class"


class HolderChoice(StrEnum):
    """The form of the licence the holder chose (facts, section 6)."""

    card_only = "card_only"
    conventional_only = "conventional_only"
    both = "both"

    @property
    def on_card(self) -> bool:
        return self is not HolderChoice.conventional_only

    @property
    def conventional(self) -> bool:
        return self is not HolderChoice.card_only


class LicenceTransaction(StrEnum):
    new = "new"
    renewal = "renewal"


class CardUnusableReason(StrEnum):
    """Why the card a licence is recorded on cannot be used."""

    lost = "lost"
    expired = "expired"
    revoked = "revoked"
    returned = "returned"


class LicenceRejectionReason(StrEnum):
    unknown_card = "unknown_card"
    card_not_active = "card_not_active"
    card_holder_mismatch = "card_holder_mismatch"
    no_active_card = "no_active_card"
    unknown_licence = "unknown_licence"
    licence_number_in_use = "licence_number_in_use"
    licence_revoked = "licence_revoked"
    not_a_card_licence = "not_a_card_licence"
    already_recorded = "already_recorded"
    # Added later (values are only ever added): the person the Individual Number names holds another
    # licence that is still valid, and the request named no card to confirm them (a mistyped number?).
    other_licence_on_record = "other_licence_on_record"
    # Added later: the person the Individual Number (or the card) names is recorded as deceased.
    holder_deceased = "holder_deceased"
    # Added later: the holder's date of birth in the request differs from the one on record for the
    # person the number or the card names (a mistyped number?).
    record_differs = "record_differs"


class VehicleRejectionReason(StrEnum):
    unknown_card = "unknown_card"
    card_suspended = "card_suspended"
    card_expired = "card_expired"
    card_not_active = "card_not_active"
    unknown_vehicle = "unknown_vehicle"
    vehicle_already_registered = "vehicle_already_registered"
    same_owner = "same_owner"


class _Request(PartnerRequest):
    service: ClassVar[str] = SERVICE


class _Fact(Fact):
    service: ClassVar[str] = SERVICE


class _PoliceRequest(_Request):
    publishers: ClassVar[frozenset[str]] = frozenset({PartnerType.police})


class _TransportBureauRequest(_Request):
    publishers: ClassVar[frozenset[str]] = frozenset({PartnerType.transport_bureau})


class _IdentifiesHolder(_PoliceRequest):
    """The police identify the holder by the Individual Number, the card number, or both."""

    my_number: MyNumber | None = Field(default=None, description="The holder's Individual Number, when the police have it.")
    card_number: CardNumber | None = Field(default=None, description="The holder's card, when the police read or typed it.")

    @model_validator(mode="after")
    def _identifies_someone(self) -> _IdentifiesHolder:
        if self.my_number is None and self.card_number is None:
            raise ValueError("identify the holder by my_number, card_number or both")
        return self


# --- partner requests: the police ----------------------------------------------------------


class RecordLicence(_IdentifiesHolder):
    """The police issued or renewed a licence, in the form the holder chose."""

    event_type: ClassVar[str] = "jp.mynumber.licensing.record_licence.v1"

    request_id: RequestId
    transaction: LicenceTransaction = Field(description="A new licence or a renewal; sets the fee with the holder's choice.")
    holder_choice: HolderChoice
    licence_number: LicenceNumber
    issued_on: date = Field(description="Issue date of the licence.")
    expires_on: date = Field(description="Last day the licence is valid; not printed on the card.")
    classes: list[LicenceClass] = Field(min_length=1, max_length=15, description="Classes the licence covers.")
    conditions: list[LicenceCondition] = Field(default_factory=list, max_length=10, description="Conditions, e.g. glasses.")
    photo_ref: PhotoRef
    # Optional (added later): older senders omit it, and contracts only ever gain optional fields.
    holder_date_of_birth: date | None = Field(
        default=None,
        description="The holder's date of birth, as on the licence. When given, a number or card that names someone "
        "born on another day is refused (`record_differs`): about 1.7 % of mistyped numbers pass the check digit.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> RecordLicence:
        if self.expires_on <= self.issued_on:
            raise ValueError("expires_on must be after issued_on")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("classes must not repeat")
        return self


class RecordLicenceOnNewCard(_IdentifiesHolder):
    """The police record a valid licence again, onto the holder's reissued card."""

    event_type: ClassVar[str] = "jp.mynumber.licensing.record_licence_on_new_card.v1"

    request_id: RequestId
    licence_number: LicenceNumber


class SuspendLicence(_PoliceRequest):
    """The police suspended a licence (免許停止) for a period."""

    event_type: ClassVar[str] = "jp.mynumber.licensing.suspend_licence.v1"

    request_id: RequestId
    licence_number: LicenceNumber
    suspended_from: date
    suspended_until: date = Field(description="Last day of the suspension.")

    @model_validator(mode="after")
    def _ordered(self) -> SuspendLicence:
        if self.suspended_until < self.suspended_from:
            raise ValueError("suspended_until must not be before suspended_from")
        return self


class RevokeLicence(_PoliceRequest):
    """The police revoked a licence (免許取消)."""

    event_type: ClassVar[str] = "jp.mynumber.licensing.revoke_licence.v1"

    request_id: RequestId
    licence_number: LicenceNumber
    revoked_on: date


# --- partner requests: the transport bureaus ------------------------------------------------


class RegisterVehicle(_TransportBureauRequest):
    """A transport bureau registers a vehicle to the owner who presented their card."""

    event_type: ClassVar[str] = "jp.mynumber.licensing.register_vehicle.v1"

    request_id: RequestId
    vehicle_id: VehicleId
    registration_number: RegistrationNumber
    owner_card_number: CardNumber
    registered_on: date


class TransferVehicle(_TransportBureauRequest):
    """A transport bureau moves a vehicle to a new owner, who presented their card."""

    event_type: ClassVar[str] = "jp.mynumber.licensing.transfer_vehicle.v1"

    request_id: RequestId
    vehicle_id: VehicleId
    new_owner_card_number: CardNumber
    registration_number: RegistrationNumber | None = Field(default=None, description="The new plate, if it changes.")
    transferred_on: date


# --- facts: licences --------------------------------------------------------------------------


class LicenceRecorded(_Fact):
    """A licence was recorded: on the card unless the holder chose a conventional licence only."""

    event_type: ClassVar[str] = "jp.mynumber.licensing.licence_recorded.v1"

    person_ref: PersonRef
    request_id: str
    licence_number: str
    transaction: LicenceTransaction
    holder_choice: HolderChoice
    card_number: str | None = Field(description="The card the licence is recorded on; absent for a conventional licence only.")
    fee_yen: int = Field(ge=0, description="The fee for this transaction and choice, from the fee table.")
    issued_on: date
    expires_on: date
    classes: list[LicenceClass]
    conditions: list[str]


class LicenceRecordedOnNewCard(_Fact):
    """The licence was recorded again, on the holder's reissued card."""

    event_type: ClassVar[str] = "jp.mynumber.licensing.licence_recorded_on_new_card.v1"

    person_ref: PersonRef
    request_id: str
    licence_number: str
    card_number: str
    previous_card_number: str | None
    fee_yen: int = Field(ge=0, description="The re-recording fee, from the fee table.")


class LicenceUnusable(_Fact):
    """The card the licence is recorded on cannot be used, so neither can the licence on it."""

    event_type: ClassVar[str] = "jp.mynumber.licensing.licence_unusable.v1"

    person_ref: PersonRef
    licence_number: str
    card_number: str
    reason: CardUnusableReason = Field(description="The card's reason.")
    since: date = Field(description="Japan date the card stopped being usable.")


class LicenceUsableAgain(_Fact):
    """A card reported lost was found: the licence on it can be used again."""

    event_type: ClassVar[str] = "jp.mynumber.licensing.licence_usable_again.v1"

    person_ref: PersonRef
    licence_number: str
    card_number: str
    since: date


class LicenceReRecordingNeeded(_Fact):
    """The holder has a new card: the police must record the licence on it. The licence stays valid."""

    event_type: ClassVar[str] = "jp.mynumber.licensing.licence_re_recording_needed.v1"

    person_ref: PersonRef
    licence_number: str
    previous_card_number: str | None
    card_number: str = Field(description="The new card to record the licence on.")


class LicenceAddressUpdated(_Fact):
    """One-stop: a card-only holder's move updated the licence record. Tells the police."""

    event_type: ClassVar[str] = "jp.mynumber.licensing.licence_address_updated.v1"

    person_ref: PersonRef
    licence_number: str
    address: Address
    effective_on: date


class ConventionalLicenceUpdateRequired(_Fact):
    """The holder of a conventional licence moved: they must have the licence updated themselves."""

    event_type: ClassVar[str] = "jp.mynumber.licensing.conventional_licence_update_required.v1"

    person_ref: PersonRef
    licence_number: str
    holder_choice: HolderChoice
    effective_on: date


class LicenceSuspended(_Fact):
    event_type: ClassVar[str] = "jp.mynumber.licensing.licence_suspended.v1"

    person_ref: PersonRef
    request_id: str
    licence_number: str
    suspended_from: date
    suspended_until: date


class LicenceRevoked(_Fact):
    event_type: ClassVar[str] = "jp.mynumber.licensing.licence_revoked.v1"

    person_ref: PersonRef
    request_id: str
    licence_number: str
    revoked_on: date


class LicenceRequestRejected(_Fact):
    """A police request that could not be carried out."""

    event_type: ClassVar[str] = "jp.mynumber.licensing.licence_request_rejected.v1"

    person_ref: PersonRef | None = Field(
        default=None,
        description="Absent when the holder is not known, and when the refusal says a number may be mistyped "
        "(`card_holder_mismatch`, `licence_number_in_use`, `other_licence_on_record`).",
    )
    request_id: str
    request_type: str
    licence_number: str | None = None
    reason: LicenceRejectionReason
    message: str

    def subject_key(self) -> str:
        return f"request/{self.request_id}"


# --- facts: vehicles (keyed by vehicle, so a vehicle's history stays in order) ---------------


class VehicleRegistered(_Fact):
    event_type: ClassVar[str] = "jp.mynumber.licensing.vehicle_registered.v1"

    person_ref: PersonRef = Field(description="The owner.")
    request_id: str
    vehicle_id: str
    registration_number: str
    card_number: str = Field(description="The card the owner presented.")
    registered_on: date

    def partition_key(self) -> bytes:
        return f"vehicle/{self.vehicle_id}".encode()


class VehicleTransferred(_Fact):
    event_type: ClassVar[str] = "jp.mynumber.licensing.vehicle_transferred.v1"

    person_ref: PersonRef = Field(description="The new owner.")
    previous_owner_ref: PersonRef
    request_id: str
    vehicle_id: str
    registration_number: str
    card_number: str = Field(description="The card the new owner presented.")
    transferred_on: date

    def partition_key(self) -> bytes:
        return f"vehicle/{self.vehicle_id}".encode()


class VehicleRequestRejected(_Fact):
    """A transport bureau request that could not be carried out."""

    event_type: ClassVar[str] = "jp.mynumber.licensing.vehicle_request_rejected.v1"

    person_ref: PersonRef | None = Field(default=None, description="The owner the card names, when the card is known.")
    request_id: str
    request_type: str
    vehicle_id: str
    reason: VehicleRejectionReason
    message: str

    def partition_key(self) -> bytes:
        return f"vehicle/{self.vehicle_id}".encode()
