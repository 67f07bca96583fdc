"""Enrollment: the resident registry, card applications and the card lifecycle.

Partner requests (topic `mynumber.enrollment.requests`) are named as instructions
(`ApplyForCard`); facts (topic `mynumber.enrollment.facts`) are named as what happened
(`CardIssued`). Facts never carry the Individual Number: they carry the person reference.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import AwareDatetime, Field, StringConstraints, model_validator

from .base import Fact, PartnerRequest
from .identity import Address, MyNumber, NameKana, NameKanji, PersonRef, ResidentAttributes, Sex
from .partners import PartnerType

SERVICE = "enrollment"

TypedNumber = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9]{12}$"),
    Field(
        description=(
            "The Individual Number as typed at the counter: 12 digits. The service checks the check digit "
            "and rejects a wrong one with reason `bad_check_digit`."
        ),
        examples=["123456789018"],
    ),
]
MunicipalityCode = Annotated[
    str, StringConstraints(pattern=r"^[0-9]{6}$"), Field(description="Local government code (6 digits).", examples=["131016"])
]
OfficeId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._/-]*$"),
    Field(description="Id of the office in the partner registry.", examples=["post-office/tokyo-chuo"]),
]
CountryCode = Annotated[
    str, StringConstraints(pattern=r"^[A-Z]{2}$"), Field(description="ISO 3166-1 alpha-2 nationality.", examples=["JP"])
]
CardNumber = Annotated[str, Field(description="Card serial number, as printed on the card.", examples=["C-7K3M9Q2X"])]
CertificateId = Annotated[
    str,
    Field(
        description=(
            "Identifier of the card's user-authentication certificate. Hospitals and kiosks send this, "
            "never the Individual Number."
        )
    ),
]


# Foreign residents with one of these statuses have no period of stay: their card follows the birthday rule.
PERMANENT_RESIDENCE_STATUSES = frozenset({"permanent_resident", "special_permanent_resident"})


KioskId = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$"),
    Field(description="The kiosk's id; the kiosk publishes as `kiosk/<kiosk_id>`.", examples=["7eleven-chiyoda-0001"]),
]


class Channel(StrEnum):
    municipal_office = "municipal_office"
    post_office = "post_office"
    diplomatic_office = "diplomatic_office"


class RejectionReason(StrEnum):
    unknown_resident = "unknown_resident"
    bad_check_digit = "bad_check_digit"
    photo_missing = "photo_missing"
    channel_not_allowed = "channel_not_allowed"
    no_delegation = "no_delegation"
    not_eligible_abroad = "not_eligible_abroad"
    duplicate = "duplicate"
    card_state = "card_state"
    resident_state = "resident_state"
    # A correction's date of birth or sex "on record" is not what the record under the number says:
    # most likely the number is mistyped into another resident's (session 15).
    record_differs = "record_differs"


class _Request(PartnerRequest):
    service: ClassVar[str] = SERVICE
    # The resident registry and the card lifecycle are the municipality's.
    publishers: ClassVar[frozenset[str]] = frozenset({PartnerType.municipality})


class _Fact(Fact):
    service: ClassVar[str] = SERVICE


# --- partner requests: the resident registry (municipal offices) ---------------------------


class RegisterResident(_Request):
    """A municipal office registers a resident. Without a number, the service assigns one: the
    municipality that asked picks it up over HTTP (`GET /assignments/{request_id}` with its own
    token); it never travels on a topic."""

    event_type: ClassVar[str] = "jp.mynumber.enrollment.register_resident.v1"

    request_id: str = Field(min_length=1, max_length=100, description="The office's id for this request; a replay returns the same result.")
    municipality_code: MunicipalityCode
    my_number: MyNumber | None = Field(
        default=None, description="The resident's Individual Number; omitted for a newborn or an arriving foreign resident."
    )
    attributes: ResidentAttributes
    nationality: CountryCode
    residence_status: str | None = Field(
        default=None, max_length=64, description="Status of residence for foreign residents, e.g. `permanent_resident`, `engineer`."
    )
    residence_period_end: date | None = Field(
        default=None, description="Last day of the period of stay, for foreign residents other than permanent residents."
    )

    @model_validator(mode="after")
    def _residence_fits_nationality(self) -> RegisterResident:
        if self.nationality == "JP":
            if self.residence_status is not None or self.residence_period_end is not None:
                raise ValueError("a Japanese national has no status of residence or period of stay")
        elif self.residence_status is None:
            raise ValueError("a foreign resident needs a residence_status")
        elif self.residence_status not in PERMANENT_RESIDENCE_STATUSES and self.residence_period_end is None:
            raise ValueError("a foreign resident other than a permanent resident needs a residence_period_end")
        return self


# Optional (session 17): older partners send none, and contracts only ever gain optional fields.
_CHANGE_REQUEST_ID = (
    "The office's id for this request; a replay under any event id returns the same result, even after later "
    "changes. Without it, a replay is recognised by its content: the same values and `effective_on` as a change "
    "recorded before a later one (a real return to an earlier value has another `effective_on`)."
)


class ChangeResidentAttributes(_Request):
    """A name or address change within the municipality. Invalidates the card's signing certificate.
    Only the municipality of residence may send it; a move to another municipality is that
    municipality's `RegisterResident`."""

    event_type: ClassVar[str] = "jp.mynumber.enrollment.change_resident_attributes.v1"

    request_id: str | None = Field(default=None, min_length=1, max_length=100, description=_CHANGE_REQUEST_ID)
    my_number: MyNumber
    name_kanji: NameKanji | None = None
    name_kana: NameKana | None = None
    address: Address | None = None
    effective_on: date = Field(description="The day the change took effect.")


class CorrectionReason(StrEnum):
    """Why a date of birth or sex on record is corrected. Two reasons only: they are what the
    registry's own audit needs to tell apart, and every value is kept for good (contracts only
    ever gain values)."""

    # The registry recorded it wrongly (a slip at registration or a wrong source document).
    clerical_error = "clerical_error"
    # The person's legal record changed since: e.g. a change of legal sex entered in the family
    # register, or a date of birth corrected there by a family court.
    legal_change = "legal_change"


class CorrectResidentRecord(_Request):
    """The municipality of residence corrects the date of birth or sex on a resident's record.

    A registration under a number on record never changes them (another date of birth or sex
    means the number is someone else's, most likely mistyped), and `ChangeResidentAttributes`
    changes only the name and address: this is the one way to put them right. Only the
    municipality of residence may send it, and not for a deceased resident. It is told as
    `ResidentAttributesChanged`, with the five corrected attributes; the reason stays in the
    registry (a legal change of sex is not something every service needs to know). Like a name
    or address change it invalidates the card's signing certificate, which carries the four
    basic facts; an issued card is not changed: the holder asks for a reissue.

    It also names the date of birth and sex the record shows now (`..._on_record`), as the clerk
    reads them: a correction is made only to a record that says so, so a number mistyped into
    another resident's (about 1.7 % of single-digit typos pass the check digit) is refused
    (`record_differs`) instead of changing that resident's identity.
    """

    event_type: ClassVar[str] = "jp.mynumber.enrollment.correct_resident_record.v1"

    request_id: str | None = Field(default=None, min_length=1, max_length=100, description=_CHANGE_REQUEST_ID)
    my_number: MyNumber
    date_of_birth: date | None = Field(default=None, description="The correct date of birth; omitted when it stays.")
    sex: Sex | None = Field(default=None, description="The correct sex; omitted when it stays.")
    date_of_birth_on_record: date = Field(description="The date of birth the record shows now, before the correction.")
    sex_on_record: Sex = Field(description="The sex the record shows now, before the correction.")
    effective_on: date = Field(description="The day the correction took effect in the registry.")
    reason: CorrectionReason

    @model_validator(mode="after")
    def _corrects_something(self) -> CorrectResidentRecord:
        if self.date_of_birth is None and self.sex is None:
            raise ValueError("a correction needs a date_of_birth, a sex, or both")
        return self


class RecordPeriodOfStay(_Request):
    """A foreign resident reports at the municipality of residence that the Immigration Services
    Agency renewed or changed their period of stay, or their status of residence (e.g. to
    permanent resident): the card's validity changes with it (有効期間の変更).

    The resident's record takes the new status and period. The card the resident holds (active or
    suspended) then expires on the earlier of the birthday rule, counted from the card's issue
    day, and the new period end (a permanent status: the birthday rule alone), told as
    `CardValidityChanged`; its certificates never outlast the card. A card already expired (past
    its last day, or by the expiry sweep) is not revived: the holder applies for a new card.

    Only the municipality of residence may send it, and not for a deceased resident, a Japanese
    national or a resident abroad; a period end before today is refused (`resident_state`)."""

    event_type: ClassVar[str] = "jp.mynumber.enrollment.record_period_of_stay.v1"

    request_id: str | None = Field(default=None, min_length=1, max_length=100, description=_CHANGE_REQUEST_ID)
    my_number: MyNumber
    residence_status: str = Field(
        min_length=1, max_length=64, description="The new status of residence, e.g. `engineer`, `permanent_resident`."
    )
    residence_period_end: date | None = Field(
        default=None, description="The new last day of the period of stay; omitted for a permanent status."
    )
    effective_on: date = Field(description="The day the Immigration Services Agency's decision took effect.")

    @model_validator(mode="after")
    def _period_fits_status(self) -> RecordPeriodOfStay:
        if self.residence_status in PERMANENT_RESIDENCE_STATUSES:
            if self.residence_period_end is not None:
                raise ValueError("a permanent status of residence has no period of stay")
        elif self.residence_period_end is None:
            raise ValueError("a status of residence other than a permanent one needs a residence_period_end")
        return self


class RecordMoveAbroad(_Request):
    """A resident moved abroad. Only the municipality of residence may send it; it keeps the record.

    A Japanese national who moves abroad on or after 27 May 2024 keeps the card (it reads "moved
    abroad" with the date); a foreign national's card, or the card of anyone who moved before that
    day, is revoked (`CardRevoked`, reason "moved abroad")."""

    event_type: ClassVar[str] = "jp.mynumber.enrollment.record_move_abroad.v1"

    my_number: MyNumber
    moved_on: date = Field(description="The day the resident moved abroad.")
    destination_country: CountryCode | None = None


class RecordDeath(_Request):
    """A resident died: the card is revoked. Only the municipality on the resident's record may send it."""

    event_type: ClassVar[str] = "jp.mynumber.enrollment.record_death.v1"

    my_number: MyNumber
    died_on: date


class DelegatePostOffice(_Request):
    """A municipality delegates application acceptance to a post office (or withdraws it)."""

    event_type: ClassVar[str] = "jp.mynumber.enrollment.delegate_post_office.v1"

    municipality_code: MunicipalityCode
    post_office_id: OfficeId
    active: bool = Field(default=True, description="False withdraws the delegation.")


# --- partner requests: applications and the card lifecycle --------------------------------


class ApplyForCard(_Request):
    """A card application, accepted at a municipal office, a post office or a diplomatic office."""

    event_type: ClassVar[str] = "jp.mynumber.enrollment.apply_for_card.v1"
    publishers: ClassVar[frozenset[str]] = frozenset(
        {PartnerType.municipality, PartnerType.post_office, PartnerType.diplomatic_office}
    )

    application_id: str = Field(min_length=1, max_length=100, description="Unique id of the application.")
    channel: Channel
    office_id: OfficeId
    my_number: TypedNumber
    applied_on: date = Field(description="Date of application (Japan time).")
    photo_ref: str | None = Field(
        default=None, max_length=200, description="Reference to the facial photo; not needed for infants under 1."
    )


class _CardRequest(_Request):
    request_id: str = Field(min_length=1, max_length=100)
    my_number: TypedNumber
    office_id: OfficeId = Field(description="The sender's own id (the event's `source`): a request that names "
                                            "another office is refused (`channel_not_allowed`).")


# A Japanese national abroad keeps the card through an embassy or consulate (facts §2): a
# diplomatic office may report it lost or found, have it reissued, or take it back, for a holder
# who lives abroad; revocation stays with the municipality that keeps the record.
_ABROAD_TOO: frozenset[str] = frozenset({PartnerType.municipality, PartnerType.diplomatic_office})


class ReportCardLost(_CardRequest):
    """A lost card, reported to the 24-hour hotline or an office: suspended at once."""

    event_type: ClassVar[str] = "jp.mynumber.enrollment.report_card_lost.v1"
    # The 24-hour hotline takes loss reports through the portal as well as at the counter.
    publishers: ClassVar[frozenset[str]] = _ABROAD_TOO | {PartnerType.portal}


class ReportCardFound(_CardRequest):
    """A card reported lost is found: resumed (the municipality of residence, or a diplomatic
    office for a holder abroad)."""

    event_type: ClassVar[str] = "jp.mynumber.enrollment.report_card_found.v1"
    publishers: ClassVar[frozenset[str]] = _ABROAD_TOO


class RequestCardReissue(_CardRequest):
    """A new card in place of the held one (the municipality of residence, or a diplomatic office
    for a holder abroad)."""

    event_type: ClassVar[str] = "jp.mynumber.enrollment.request_card_reissue.v1"
    publishers: ClassVar[frozenset[str]] = _ABROAD_TOO

    requested_on: date
    photo_ref: str | None = Field(default=None, max_length=200)


class ReturnCard(_CardRequest):
    """The holder hands the card back (the municipality of residence, or a diplomatic office for a
    holder abroad)."""

    event_type: ClassVar[str] = "jp.mynumber.enrollment.return_card.v1"
    publishers: ClassVar[frozenset[str]] = _ABROAD_TOO


class RevokeCard(_CardRequest):
    event_type: ClassVar[str] = "jp.mynumber.enrollment.revoke_card.v1"

    reason: str = Field(min_length=1, max_length=200)


# --- facts ---------------------------------------------------------------------------------


class ResidentRegistered(_Fact):
    event_type: ClassVar[str] = "jp.mynumber.enrollment.resident_registered.v1"

    person_ref: PersonRef
    municipality_code: str
    attributes: ResidentAttributes = Field(description="The five matching attributes.")
    nationality: str
    residence_status: str | None = None
    residence_period_end: date | None = None
    request_id: str | None = Field(default=None, description="The municipality's request id.")
    number_assigned: bool = Field(
        default=False,
        description="True when the service assigned the number: the municipality picks it up with "
        "`GET /assignments/{request_id}`.",
    )


ChangedAttribute = Literal["name_kanji", "name_kana", "address", "date_of_birth", "sex"]


class ResidentAttributesChanged(_Fact):
    """A resident's name or address changed, or their date of birth or sex was corrected
    (`CorrectResidentRecord`). `changed` names the attributes that changed.

    `changed` gained `date_of_birth` and `sex` with the correction: its values are only ever
    added to, never renamed or removed, within this version. A consumer on an older contracts
    package refuses a fact naming a value it does not know, so consumers are upgraded first.
    """

    event_type: ClassVar[str] = "jp.mynumber.enrollment.resident_attributes_changed.v1"

    person_ref: PersonRef
    attributes: ResidentAttributes = Field(description="The five matching attributes after the change.")
    changed: list[ChangedAttribute] = Field(description="The attributes that changed (names only), in alphabetical order.")
    effective_on: date
    signing_certificate_invalidated: bool


class PeriodOfStayChanged(_Fact):
    """A foreign resident's status of residence or period of stay changed (`RecordPeriodOfStay`)."""

    event_type: ClassVar[str] = "jp.mynumber.enrollment.period_of_stay_changed.v1"

    person_ref: PersonRef
    residence_status: str
    residence_period_end: date | None = Field(default=None, description="Absent for a permanent status.")
    effective_on: date


class CardValidityChanged(_Fact):
    """The held card's validity changed with the holder's period of stay: it now expires on
    `expires_on`, and its electronic certificates on `certificate_expires_on` (both replace the
    values of `CardIssued` or `CardReissued`). The card number and certificate id stay."""

    event_type: ClassVar[str] = "jp.mynumber.enrollment.card_validity_changed.v1"

    person_ref: PersonRef
    card_number: CardNumber
    expires_on: date = Field(description="The card's new expiry date (its last valid day).")
    certificate_expires_on: date = Field(description="The electronic certificates' expiry date, never after the card's.")
    effective_on: date = Field(description="The day the change of the period of stay took effect.")


class ResidentMovedAbroad(_Fact):
    event_type: ClassVar[str] = "jp.mynumber.enrollment.resident_moved_abroad.v1"

    person_ref: PersonRef
    attributes: ResidentAttributes = Field(description="Address reads 'moved abroad' with the date.")
    moved_on: date


class ResidentDeceased(_Fact):
    event_type: ClassVar[str] = "jp.mynumber.enrollment.resident_deceased.v1"

    person_ref: PersonRef
    died_on: date


class ApplicationAccepted(_Fact):
    event_type: ClassVar[str] = "jp.mynumber.enrollment.application_accepted.v1"

    person_ref: PersonRef
    application_id: str
    channel: Channel
    office_id: str
    issuing_municipality: str = Field(description="The municipality that issues the card.")
    photo_less: bool = Field(description="True for an infant under 1 applying without a photo.")


class ApplicationRejected(_Fact):
    event_type: ClassVar[str] = "jp.mynumber.enrollment.application_rejected.v1"

    person_ref: PersonRef | None = Field(default=None, description="Absent when the applicant is not known.")
    application_id: str
    channel: Channel
    office_id: str
    reason: RejectionReason
    message: str

    def subject_key(self) -> str:
        return f"application/{self.application_id}"


class CardIssued(_Fact):
    event_type: ClassVar[str] = "jp.mynumber.enrollment.card_issued.v1"

    person_ref: PersonRef
    card_number: CardNumber
    certificate_id: CertificateId
    application_id: str
    issued_on: date
    expires_on: date
    certificate_expires_on: date = Field(description="Expiry of the electronic certificates: the 5th birthday after issue.")
    photo_less: bool


class CardSuspended(_Fact):
    event_type: ClassVar[str] = "jp.mynumber.enrollment.card_suspended.v1"

    person_ref: PersonRef
    card_number: CardNumber
    reason: Literal["lost"] = "lost"
    suspended_at: AwareDatetime


class CardResumed(_Fact):
    event_type: ClassVar[str] = "jp.mynumber.enrollment.card_resumed.v1"

    person_ref: PersonRef
    card_number: CardNumber
    resumed_at: AwareDatetime


class CardReissued(_Fact):
    """The old card is void; the new card carries a new certificate."""

    event_type: ClassVar[str] = "jp.mynumber.enrollment.card_reissued.v1"

    person_ref: PersonRef
    previous_card_number: CardNumber
    card_number: CardNumber
    certificate_id: CertificateId
    issued_on: date
    expires_on: date
    certificate_expires_on: date
    photo_less: bool


class CardReturned(_Fact):
    event_type: ClassVar[str] = "jp.mynumber.enrollment.card_returned.v1"

    person_ref: PersonRef
    card_number: CardNumber
    returned_at: AwareDatetime


class CardRevoked(_Fact):
    event_type: ClassVar[str] = "jp.mynumber.enrollment.card_revoked.v1"

    person_ref: PersonRef
    card_number: CardNumber
    reason: str
    revoked_at: AwareDatetime


class CardExpired(_Fact):
    event_type: ClassVar[str] = "jp.mynumber.enrollment.card_expired.v1"

    person_ref: PersonRef
    card_number: CardNumber
    expired_on: date = Field(description="The card's expiry date (its last valid day), as in `CardIssued.expires_on`.")


class CardRequestRejected(_Fact):
    """A lifecycle request (lost, found, reissue, return, revoke) that could not be carried out."""

    event_type: ClassVar[str] = "jp.mynumber.enrollment.card_request_rejected.v1"

    person_ref: PersonRef | None = None
    request_id: str
    request_type: str
    reason: RejectionReason
    message: str

    def subject_key(self) -> str:
        return f"request/{self.request_id}"


class ResidentRequestRejected(_Fact):
    """A resident registry request (register, change, correction, period of stay, move abroad, death) that could
    not be carried out."""

    event_type: ClassVar[str] = "jp.mynumber.enrollment.resident_request_rejected.v1"

    person_ref: PersonRef | None = Field(default=None, description="Absent when the resident is not known.")
    request_id: str = Field(description="The request's `request_id`, or its event id (`ce_id`) when it has none.")
    request_type: str = Field(description="The `ce_type` of the rejected request.")
    reason: RejectionReason
    message: str

    def subject_key(self) -> str:
        return f"request/{self.request_id}"


class PostOfficeDelegationChanged(_Fact):
    """A municipality delegated application acceptance to a post office, or withdrew it."""

    event_type: ClassVar[str] = "jp.mynumber.enrollment.post_office_delegation_changed.v1"

    municipality_code: str
    post_office_id: str
    active: bool

    def partition_key(self) -> bytes:
        return f"municipality/{self.municipality_code}".encode()


# --- convenience-store kiosks: residence certificates ------------------------------------------


class CertificateDocument(StrEnum):
    residence_certificate = "residence_certificate"
    residence_certificate_with_household = "residence_certificate_with_household"


class CertificateRefusal(StrEnum):
    pin_check_failed = "pin_check_failed"
    unknown_certificate = "unknown_certificate"
    card_suspended = "card_suspended"
    card_revoked = "card_revoked"
    card_expired = "card_expired"
    resident_state = "resident_state"
    not_this_kiosk = "not_this_kiosk"
    timed_out = "timed_out"
    failed = "failed"


class RequestResidenceCertificate(_Request):
    """A convenience-store kiosk asks for a residence certificate for the card holder at its terminal.

    The kiosk read the card's certificate identifier (never the number) and checked the PIN.
    """

    event_type: ClassVar[str] = "jp.mynumber.enrollment.request_residence_certificate.v1"
    publishers: ClassVar[frozenset[str]] = frozenset({PartnerType.convenience_store_kiosk})

    kiosk_id: KioskId
    request_id: str = Field(min_length=1, max_length=100, description="The kiosk's id for this request; the answer carries it.")
    certificate_id: CertificateId
    pin_verified: bool = Field(description="The result of the kiosk's PIN check.")
    document: CertificateDocument


class _KioskReply(_Fact):
    """A reply to one kiosk request: no personal data, keyed by the kiosk."""

    kiosk_id: str
    request_id: str

    def partition_key(self) -> bytes:
        return f"kiosk/{self.kiosk_id}".encode()


class ResidenceCertificateIssued(_KioskReply):
    """The certificate is ready for that kiosk and request only: `pickup_path`, with the kiosk's token."""

    event_type: ClassVar[str] = "jp.mynumber.enrollment.residence_certificate_issued.v1"

    document: CertificateDocument
    issued_at: AwareDatetime
    pickup_path: str = Field(description="HTTP path of the PDF; answers only the kiosk's own token.")
    pdf_sha256: str = Field(description="SHA-256 of the PDF, so the kiosk can check what it prints.")


class ResidenceCertificateRefused(_KioskReply):
    event_type: ClassVar[str] = "jp.mynumber.enrollment.residence_certificate_refused.v1"

    reason: CertificateRefusal
    message: str
