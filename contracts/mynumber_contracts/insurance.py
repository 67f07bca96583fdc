"""Insurance: the card as the health insurance card, eligibility certificates and medical data.

Partner requests (topic `mynumber.insurance.requests`) come from insurers, card holders and
medical institutions and are named as instructions (`EnrollMember`); facts (topic
`mynumber.insurance.facts`) are named as what happened (`MemberLinked`).

Facts never carry the Individual Number. Facts about a person carry the person reference; a
fact about something that is not (yet) tied to a person is keyed by that thing instead
(a member record held for review, an institution's request about an unknown card).
Medical data itself never travels in a fact: `MedicalDataReleased` carries a summary and a
`release_id`, and only the requesting institution reads the records over HTTP.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from .base import Fact, PartnerRequest
from .identity import MyNumber, PersonRef, ResidentAttributes
from .partners import PartnerType

SERVICE = "insurance"

RequestId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"),
    Field(description="The sender's id for this request; a replay returns the same result.", examples=["req-2026-000123"]),
]
InsurerNumber = Annotated[
    str,
    StringConstraints(pattern=r"^(?:[0-9]{6}|[0-9]{8})$"),
    Field(description="Insurer number (保険者番号): 6 digits (national health insurance) or 8 digits.", examples=["06139999"]),
]
MemberSymbol = Annotated[
    str,
    StringConstraints(min_length=1, max_length=20, strip_whitespace=True, pattern=r"^[^/\s]+$"),
    Field(description="The member's symbol (記号) on the insurer's record; no slash or whitespace.", examples=["東京1"]),
]
MemberNumber = Annotated[
    str,
    StringConstraints(min_length=1, max_length=20, strip_whitespace=True, pattern=r"^[0-9A-Za-z-]+$"),
    Field(description="The member's number (番号) on the insurer's record.", examples=["1234"]),
]
InstitutionCode = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9]{10}$"),
    Field(description="Medical institution code (10 digits).", examples=["1312345678"]),
]
CardCertificateId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$"),
    Field(
        description=(
            "Identifier of the card's user-authentication certificate, as read by the card reader. "
            "Never the Individual Number."
        ),
        examples=["cert-7K3M9Q2XAB"],
    ),
]
EligibilityCertificateNumber = Annotated[
    str,
    StringConstraints(pattern=r"^EC[A-Z2-7]{16}$"),
    Field(description="Number printed on an eligibility certificate (資格確認書).", examples=["ECABCDEFGHIJKLMNOP"]),
]


class CopayCategory(StrEnum):
    """The share of the cost the patient pays at the counter."""

    ten_percent = "ten_percent"
    twenty_percent = "twenty_percent"
    thirty_percent = "thirty_percent"


class HeldReason(StrEnum):
    """Why a member record was not linked to a person. Each one waits for an operator."""

    number_missing = "number_missing"
    resident_not_found = "resident_not_found"
    resident_not_active = "resident_not_active"
    attribute_mismatch = "attribute_mismatch"
    ambiguous = "ambiguous"


class MatchedAttribute(StrEnum):
    name_kanji = "name_kanji"
    name_kana = "name_kana"
    date_of_birth = "date_of_birth"
    sex = "sex"
    address = "address"


class LinkDecision(StrEnum):
    link = "link"
    reject = "reject"


class CertificateIssueReason(StrEnum):
    """Why an eligibility certificate was issued. The first six need no application."""

    no_card = "no_card"
    card_not_registered = "card_not_registered"
    card_certificate_expired = "card_certificate_expired"
    insurance_use_cancelled = "insurance_use_cancelled"
    card_returned = "card_returned"
    card_lost = "card_lost"
    card_unusable = "card_unusable"
    applied_card_lost = "applied_card_lost"
    applied_card_being_reissued = "applied_card_being_reissued"
    applied_needs_assistance = "applied_needs_assistance"


class CertificateApplicationReason(StrEnum):
    card_lost = "card_lost"
    card_being_reissued = "card_being_reissued"
    needs_assistance = "needs_assistance"


class CertificateWithdrawalReason(StrEnum):
    card_linked = "card_linked"
    member_withdrawn = "member_withdrawn"
    resident_deceased = "resident_deceased"


class EligibilityDenialReason(StrEnum):
    unknown_card = "unknown_card"
    card_not_usable = "card_not_usable"
    card_replaced = "card_replaced"
    card_certificate_expired = "card_certificate_expired"
    not_registered_for_insurance = "not_registered_for_insurance"
    holds_eligibility_certificate = "holds_eligibility_certificate"
    no_active_membership = "no_active_membership"
    resident_deceased = "resident_deceased"


class MedicalDataType(StrEnum):
    prescriptions = "prescriptions"
    checkups = "checkups"


class MedicalDataDenialReason(StrEnum):
    unknown_card = "unknown_card"
    no_consent = "no_consent"
    consent_expired = "consent_expired"
    # Added after the first three (values are only added): not the holder's own usable card (lost, replaced,
    # returned, revoked or expired, its electronic certificate expired) or the holder is deceased.
    card_not_usable = "card_not_usable"


class RejectionReason(StrEnum):
    source_mismatch = "source_mismatch"
    unknown_member = "unknown_member"
    already_enrolled = "already_enrolled"
    member_not_linked = "member_not_linked"
    member_withdrawn = "member_withdrawn"
    unknown_card = "unknown_card"
    card_not_usable = "card_not_usable"
    already_registered = "already_registered"
    not_registered = "not_registered"
    certificate_already_held = "certificate_already_held"
    duplicate_record = "duplicate_record"
    # Added later: a withdrawal whose last day is more than one day before the membership's first day.
    last_day_before_first_day = "last_day_before_first_day"


class _Request(PartnerRequest):
    service: ClassVar[str] = SERVICE


class _Fact(Fact):
    service: ClassVar[str] = SERVICE


class _InsurerRequest(_Request):
    publishers: ClassVar[frozenset[str]] = frozenset({PartnerType.insurer})


class _HolderRequest(_Request):
    """Sent for the holder by the card reader that read the card: the portal, a kiosk or a hospital's reader."""

    publishers: ClassVar[frozenset[str]] = frozenset(
        {PartnerType.portal, PartnerType.convenience_store_kiosk, PartnerType.medical_institution}
    )


class _InstitutionRequest(_Request):
    publishers: ClassVar[frozenset[str]] = frozenset({PartnerType.medical_institution})


class _Document(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


# --- partner requests: insurers -------------------------------------------------------------


class EnrollMember(_InsurerRequest):
    """An insurer enrolls a member. Linked to a person only when all five attributes match the
    resident registry; a missing number, a mismatch or an ambiguity is held for review."""

    event_type: ClassVar[str] = "jp.mynumber.insurance.enroll_member.v1"

    request_id: RequestId
    insurer_number: InsurerNumber
    member_symbol: MemberSymbol
    member_number: MemberNumber
    my_number: MyNumber | None = Field(
        default=None, description="The member's Individual Number; insurers sometimes omit it (the record is then held)."
    )
    attributes: ResidentAttributes = Field(description="The five attributes as the insurer recorded them.")
    copay_category: CopayCategory = Field(default=CopayCategory.thirty_percent, description="The member's copay share.")
    enrolled_on: date = Field(description="First day of the membership.")


class WithdrawMember(_InsurerRequest):
    event_type: ClassVar[str] = "jp.mynumber.insurance.withdraw_member.v1"

    request_id: RequestId
    insurer_number: InsurerNumber
    member_symbol: MemberSymbol
    member_number: MemberNumber
    withdrawn_on: date = Field(description=(
        "Last day of the membership: its first day at the earliest, or the day before it for a membership that never "
        "takes effect (cancelled); earlier is refused (`last_day_before_first_day`)."))


class ConfigureInsurer(_InsurerRequest):
    """An insurer's settings. Certificates are valid 1 year unless the insurer says otherwise (at most 5)."""

    event_type: ClassVar[str] = "jp.mynumber.insurance.configure_insurer.v1"

    request_id: RequestId
    insurer_number: InsurerNumber
    certificate_validity_years: int = Field(ge=1, le=5, description="How long an eligibility certificate is valid.")


class ApplyForEligibilityCertificate(_InsurerRequest):
    """An application for a certificate, filed through the member's insurer."""

    event_type: ClassVar[str] = "jp.mynumber.insurance.apply_for_eligibility_certificate.v1"

    request_id: RequestId
    insurer_number: InsurerNumber
    member_symbol: MemberSymbol
    member_number: MemberNumber
    reason: CertificateApplicationReason


class Medicine(_Document):
    name: str = Field(min_length=1, max_length=200, description="Drug name as dispensed.")
    quantity: float = Field(gt=0, description="Amount per day.")
    unit: str = Field(min_length=1, max_length=20, description="Unit of the amount, e.g. `tablet`.")
    days: int = Field(ge=1, le=366, description="Days supplied.")


class RecordPrescription(_InsurerRequest):
    """A dispensing record from a claim, for the member's prescription history (3 years are shown)."""

    event_type: ClassVar[str] = "jp.mynumber.insurance.record_prescription.v1"

    record_id: RequestId
    insurer_number: InsurerNumber
    member_symbol: MemberSymbol
    member_number: MemberNumber
    dispensed_on: date
    medicines: list[Medicine] = Field(min_length=1, max_length=100)


class CheckupItem(_Document):
    code: str = Field(min_length=1, max_length=40, description="Checkup item code.")
    name: str = Field(min_length=1, max_length=100)
    value: str = Field(min_length=1, max_length=100)
    unit: str | None = Field(default=None, max_length=20)


class RecordCheckupResult(_InsurerRequest):
    """A specific health checkup result (5 years are shown)."""

    event_type: ClassVar[str] = "jp.mynumber.insurance.record_checkup_result.v1"

    record_id: RequestId
    insurer_number: InsurerNumber
    member_symbol: MemberSymbol
    member_number: MemberNumber
    examined_on: date
    items: list[CheckupItem] = Field(min_length=1, max_length=200)


# --- partner requests: card holders (a kiosk, a card reader or the portal) -----------------


class RegisterCardForInsurance(_HolderRequest):
    """The holder registers their card for insurance use (the one-time link)."""

    event_type: ClassVar[str] = "jp.mynumber.insurance.register_card_for_insurance.v1"

    request_id: RequestId
    certificate_id: CardCertificateId


class CancelInsuranceUse(_HolderRequest):
    """The holder stops using the card as the insurance card; a certificate is issued instead."""

    event_type: ClassVar[str] = "jp.mynumber.insurance.cancel_insurance_use.v1"

    request_id: RequestId
    certificate_id: CardCertificateId


# --- partner requests: medical institutions ------------------------------------------------


class CheckEligibility(_InstitutionRequest):
    """Online eligibility check with the card. The reply fact names this request."""

    event_type: ClassVar[str] = "jp.mynumber.insurance.check_eligibility.v1"

    request_id: RequestId
    institution_code: InstitutionCode
    certificate_id: CardCertificateId


class RecordConsent(_InstitutionRequest):
    """The patient consents, at this institution's card reader, to some data being shown here for 24 hours."""

    event_type: ClassVar[str] = "jp.mynumber.insurance.record_consent.v1"

    request_id: RequestId
    institution_code: InstitutionCode
    certificate_id: CardCertificateId
    data_types: list[MedicalDataType] = Field(min_length=1, max_length=2)


class RequestMedicalData(_InstitutionRequest):
    """An institution asks to see a patient's prescriptions and/or checkup results."""

    event_type: ClassVar[str] = "jp.mynumber.insurance.request_medical_data.v1"

    request_id: RequestId
    institution_code: InstitutionCode
    certificate_id: CardCertificateId
    data_types: list[MedicalDataType] = Field(min_length=1, max_length=2)


# --- facts: linking ------------------------------------------------------------------------


class _MemberFact(_Fact):
    insurer_number: str
    member_symbol: str
    member_number: str

    def member_key(self) -> str:
        return f"{self.insurer_number}/{self.member_symbol}/{self.member_number}"


class MemberLinked(_MemberFact):
    """The member record matched the registry on all five attributes and is now the person's."""

    event_type: ClassVar[str] = "jp.mynumber.insurance.member_linked.v1"

    person_ref: PersonRef
    copay_category: CopayCategory
    enrolled_on: date


class MemberLinkHeld(_MemberFact):
    """The member record is NOT linked. It waits for an operator."""

    event_type: ClassVar[str] = "jp.mynumber.insurance.member_link_held.v1"

    person_ref: PersonRef | None = Field(
        default=None,
        description=(
            "The person the insurer's number points to (a claim, not a confirmed link); absent when the "
            "insurer sent no number."
        ),
    )
    reason: HeldReason
    mismatched: list[MatchedAttribute] = Field(
        default_factory=list, description="Which attributes differ (names only, never the values)."
    )

    def subject_key(self) -> str:
        return f"member/{self.member_key()}"


class MemberLinkResolved(_MemberFact):
    """An operator decided a held record."""

    event_type: ClassVar[str] = "jp.mynumber.insurance.member_link_resolved.v1"

    person_ref: PersonRef | None = Field(default=None, description="The linked person; absent when rejected without one.")
    decision: LinkDecision
    resolution_id: str
    operator: str
    reason: str

    def subject_key(self) -> str:
        return f"member/{self.member_key()}"


class MemberWithdrawn(_MemberFact):
    event_type: ClassVar[str] = "jp.mynumber.insurance.member_withdrawn.v1"

    person_ref: PersonRef | None = None
    withdrawn_on: date
    # Added later (optional; older producers leave them out): a certificate kept through an announced last day.
    certificate_number: EligibilityCertificateNumber | None = Field(
        default=None,
        description=(
            "The member's eligibility certificate that stays in use through the last day (a last day of today or "
            "later). Absent when the member holds none, or when it is withdrawn at once "
            "(`EligibilityCertificateWithdrawn` follows)."
        ),
    )
    certificate_valid_until: date | None = Field(
        default=None,
        description=(
            "That certificate's last day of validity, cut to the membership's last day if it ran later. It ends "
            "after that day (`EligibilityCertificateExpired`); none is issued for the membership after its last day."
        ),
    )
    # Added later (optional; older producers leave it out): an announced last day moved.
    previous_withdrawn_on: date | None = Field(
        default=None,
        description=(
            "The last day announced before, when this withdrawal moves it (the insurer sent another while it had "
            "not passed): `withdrawn_on` is the new last day, and the certificate fields say how the kept "
            "certificate stays. Absent for a member's first withdrawal."
        ),
    )

    def subject_key(self) -> str:
        return f"member/{self.member_key()}"


class InsurerConfigured(_Fact):
    event_type: ClassVar[str] = "jp.mynumber.insurance.insurer_configured.v1"

    insurer_number: str
    certificate_validity_years: int

    def partition_key(self) -> bytes:
        return f"insurer/{self.insurer_number}".encode()


# --- facts: the card as the insurance card -------------------------------------------------


class CardRegisteredForInsurance(_Fact):
    event_type: ClassVar[str] = "jp.mynumber.insurance.card_registered_for_insurance.v1"

    person_ref: PersonRef
    request_id: str


class InsuranceUseCancelled(_Fact):
    event_type: ClassVar[str] = "jp.mynumber.insurance.insurance_use_cancelled.v1"

    person_ref: PersonRef
    request_id: str


class EligibilityConfirmed(_Fact):
    """The reply to `CheckEligibility`: the card may be used as the insurance card."""

    event_type: ClassVar[str] = "jp.mynumber.insurance.eligibility_confirmed.v1"

    request_id: str
    institution_code: str
    person_ref: PersonRef
    insurer_number: str
    member_symbol: str
    member_number: str
    copay_category: CopayCategory
    no_card_surcharge: bool = Field(description="Whether the no-card surcharge applies (never, with a usable card).")

    def partition_key(self) -> bytes:
        return f"eligibility-check/{self.institution_code}/{self.request_id}".encode()


class EligibilityDenied(_Fact):
    """The reply to `CheckEligibility`: the card cannot be used as the insurance card."""

    event_type: ClassVar[str] = "jp.mynumber.insurance.eligibility_denied.v1"

    request_id: str
    institution_code: str
    person_ref: PersonRef | None = Field(default=None, description="Absent when the card is unknown.")
    reason: EligibilityDenialReason
    no_card_surcharge: bool = Field(description="Whether the no-card surcharge applies when the patient is treated without the card.")

    def partition_key(self) -> bytes:
        return f"eligibility-check/{self.institution_code}/{self.request_id}".encode()


# --- facts: eligibility certificates -------------------------------------------------------


class _CertificateFact(_MemberFact):
    person_ref: PersonRef
    certificate_number: EligibilityCertificateNumber
    valid_from: date
    valid_until: date = Field(description="Last day of validity.")


class EligibilityCertificateIssued(_CertificateFact):
    event_type: ClassVar[str] = "jp.mynumber.insurance.eligibility_certificate_issued.v1"

    reason: CertificateIssueReason
    on_application: bool


class EligibilityCertificateRenewed(_CertificateFact):
    event_type: ClassVar[str] = "jp.mynumber.insurance.eligibility_certificate_renewed.v1"

    previous_valid_until: date


class EligibilityCertificateWithdrawn(_CertificateFact):
    event_type: ClassVar[str] = "jp.mynumber.insurance.eligibility_certificate_withdrawn.v1"

    reason: CertificateWithdrawalReason


class EligibilityCertificateExpired(_CertificateFact):
    event_type: ClassVar[str] = "jp.mynumber.insurance.eligibility_certificate_expired.v1"


# --- facts: consent and medical data -------------------------------------------------------


class ConsentRecorded(_Fact):
    event_type: ClassVar[str] = "jp.mynumber.insurance.consent_recorded.v1"

    person_ref: PersonRef
    request_id: str
    institution_code: str
    data_types: list[MedicalDataType]
    given_at: AwareDatetime
    valid_until: AwareDatetime


class MedicalRecordStored(_MemberFact):
    """A prescription or checkup record was stored (its content is never in a fact)."""

    event_type: ClassVar[str] = "jp.mynumber.insurance.medical_record_stored.v1"

    person_ref: PersonRef | None = Field(default=None, description="Absent while the member record is not linked.")
    data_type: MedicalDataType
    record_id: str
    recorded_for: date = Field(description="Dispensing or examination date.")

    def subject_key(self) -> str:
        return f"member/{self.member_key()}"


class MedicalDataReleased(_Fact):
    """Medical data was released to the requesting institution only: it reads the records with
    `GET /medical-data/releases/{release_id}`. This fact carries a summary, never the records."""

    event_type: ClassVar[str] = "jp.mynumber.insurance.medical_data_released.v1"

    person_ref: PersonRef
    request_id: str
    institution_code: str
    data_type: MedicalDataType
    release_id: str
    record_count: int
    covers_from: date = Field(description="The oldest date the release covers (3 years of prescriptions, 5 of checkups).")
    covers_until: date


class MedicalDataDenied(_Fact):
    event_type: ClassVar[str] = "jp.mynumber.insurance.medical_data_denied.v1"

    person_ref: PersonRef | None = Field(default=None, description="Absent when the card is unknown.")
    request_id: str
    institution_code: str
    data_type: MedicalDataType
    reason: MedicalDataDenialReason

    def subject_key(self) -> str:
        return f"medical-data/{self.institution_code}/{self.request_id}"


class InsuranceRequestRejected(_Fact):
    """A partner request that could not be carried out."""

    event_type: ClassVar[str] = "jp.mynumber.insurance.request_rejected.v1"

    person_ref: PersonRef | None = None
    request_id: str
    request_type: str
    reason: RejectionReason
    message: str

    def subject_key(self) -> str:
        return f"request/{self.request_id}"
