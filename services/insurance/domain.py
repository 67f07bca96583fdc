"""Insurance rules, pure: identity matching, the card as insurance card, eligibility
certificates, eligibility answers, consent and the medical-data windows.

No framework or driver is imported here; every rule is a function of plain values.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import StrEnum

from mynumber_contracts import ResidentAttributes
from mynumber_contracts.insurance import (
    CertificateApplicationReason,
    CertificateIssueReason,
    CertificateWithdrawalReason,
    CopayCategory,
    EligibilityDenialReason,
    HeldReason,
    MatchedAttribute,
    MedicalDataDenialReason,
    MedicalDataType,
    RejectionReason,
)

from services.kit.notation import normalise_address, normalise_name_kana, normalise_name_kanji

# --- identity matching ------------------------------------------------------------------------
#
# Names and addresses are compared in normalised notation (services/kit/notation.py): width,
# spacing, small/large kana, hiragana/katakana and address number notation never make two records
# of one person differ, and no two different names are ever folded into one.


@dataclass(frozen=True)
class MatchKey:
    """The five attributes in normalised notation. Two records match when their keys are equal."""

    name_kanji: str
    name_kana: str
    date_of_birth: str
    sex: str
    address: str

    @classmethod
    def of(cls, attributes: ResidentAttributes) -> MatchKey:
        return cls(
            name_kanji=normalise_name_kanji(attributes.name_kanji),
            name_kana=normalise_name_kana(attributes.name_kana),
            date_of_birth=attributes.date_of_birth.isoformat(),
            sex=str(attributes.sex),
            address=normalise_address(attributes.address),
        )

    def digest(self) -> str:
        """A stable id for the key, so 'who else has these attributes' is one lookup."""
        text = "\x1f".join((self.name_kanji, self.name_kana, self.date_of_birth, self.sex, self.address))
        return hashlib.sha256(text.encode()).hexdigest()

    def differences(self, other: MatchKey) -> tuple[MatchedAttribute, ...]:
        return tuple(a for a in MatchedAttribute if getattr(self, a.value) != getattr(other, a.value))


@dataclass(frozen=True)
class RegisteredResident:
    """What the registry says about the person the insurer's number points to."""

    person_ref: str
    attributes: ResidentAttributes
    deceased: bool = False


@dataclass(frozen=True)
class LinkOutcome:
    person_ref: str | None  # the linked person; None unless linked
    held_reason: HeldReason | None = None
    mismatched: tuple[MatchedAttribute, ...] = ()

    @property
    def linked(self) -> bool:
        return self.held_reason is None


def decide_link(
    *,
    claimed_person_ref: str | None,
    resident: RegisteredResident | None,
    insurer_attributes: ResidentAttributes,
    residents_with_same_attributes: Iterable[str],
) -> LinkOutcome:
    """Link only the person the number points to, only when all five attributes match, and only
    when no other resident has the same normalised attributes (else normalisation might have
    merged two people)."""
    if claimed_person_ref is None:
        return LinkOutcome(None, HeldReason.number_missing)
    if resident is None:
        return LinkOutcome(None, HeldReason.resident_not_found)
    if resident.deceased:
        return LinkOutcome(None, HeldReason.resident_not_active)
    mismatched = MatchKey.of(insurer_attributes).differences(MatchKey.of(resident.attributes))
    if mismatched:
        return LinkOutcome(None, HeldReason.attribute_mismatch, mismatched)
    if set(residents_with_same_attributes) - {resident.person_ref}:
        return LinkOutcome(None, HeldReason.ambiguous)
    return LinkOutcome(resident.person_ref)


# --- the card as insurance card -----------------------------------------------------------------


class CardStatus(StrEnum):
    active = "active"
    suspended = "suspended"  # reported lost
    returned = "returned"
    revoked = "revoked"
    expired = "expired"
    replaced = "replaced"  # a reissued card took its place


class InsuranceUse(StrEnum):
    unregistered = "unregistered"
    registered = "registered"
    cancelled = "cancelled"


@dataclass(frozen=True)
class Card:
    card_number: str
    certificate_id: str
    status: CardStatus
    expires_on: date
    certificate_expires_on: date


@dataclass(frozen=True)
class Person:
    """The local read model of one resident plus their insurance state."""

    person_ref: str
    deceased: bool = False
    card: Card | None = None
    insurance_use: InsuranceUse = InsuranceUse.unregistered
    certificate_application: CertificateApplicationReason | None = None
    member_keys: tuple[str, ...] = ()
    version: int = 0
    registry_facts: tuple[str, ...] = ()  # ids of enrollment's card and attribute facts applied: each changes the person once


_APPLIED = {
    CertificateApplicationReason.card_lost: CertificateIssueReason.applied_card_lost,
    CertificateApplicationReason.card_being_reissued: CertificateIssueReason.applied_card_being_reissued,
    CertificateApplicationReason.needs_assistance: CertificateIssueReason.applied_needs_assistance,
}
_CARD_BLOCKERS = {
    CardStatus.suspended: CertificateIssueReason.card_lost,
    CardStatus.returned: CertificateIssueReason.card_returned,
    CardStatus.revoked: CertificateIssueReason.card_unusable,
    CardStatus.expired: CertificateIssueReason.card_unusable,
    CardStatus.replaced: CertificateIssueReason.card_unusable,
}


def card_insurance_blocker(person: Person, today: date) -> CertificateIssueReason | None:
    """Why the person cannot use the card as the insurance card today; None when they can.

    This one rule decides both eligibility by card and who needs a certificate, so a person
    never has both."""
    card = person.card
    if card is None:
        return CertificateIssueReason.no_card
    if card.status in _CARD_BLOCKERS:
        return _CARD_BLOCKERS[card.status]
    if card.certificate_expires_on < today:
        return CertificateIssueReason.card_certificate_expired
    if person.insurance_use is InsuranceUse.unregistered:
        return CertificateIssueReason.card_not_registered
    if person.insurance_use is InsuranceUse.cancelled:
        return CertificateIssueReason.insurance_use_cancelled
    if person.certificate_application is not None:
        return _APPLIED[person.certificate_application]
    return None


def after_card_back(application: CertificateApplicationReason | None) -> CertificateApplicationReason | None:
    """An application made because the card was lost or being reissued ends when a card is back."""
    if application in (CertificateApplicationReason.card_lost, CertificateApplicationReason.card_being_reissued):
        return None
    return application


# --- memberships and eligibility certificates ------------------------------------------------


class LinkState(StrEnum):
    linked = "linked"
    held = "held"
    rejected = "rejected"


class MembershipStatus(StrEnum):
    active = "active"
    withdrawn = "withdrawn"


@dataclass(frozen=True)
class Membership:
    member_key: str
    insurer_number: str
    member_symbol: str
    member_number: str
    copay_category: CopayCategory
    enrolled_on: date
    status: MembershipStatus
    link_state: LinkState
    person_ref: str | None = None
    withdrawn_on: date | None = None  # the last day, once withdrawn

    @property
    def in_force(self) -> bool:
        """On the insurer's record now: linked and not withdrawn, whatever its dates (a renewal follows this)."""
        return self.status is MembershipStatus.active and self.link_state is LinkState.linked

    @property
    def never_took_effect(self) -> bool:
        """Withdrawn with its last day before its first day: cancelled before it started (no day is covered)."""
        return self.withdrawn_on is not None and self.withdrawn_on < self.enrolled_on

    def can_still_count(self, day: date) -> bool:
        """Linked and not ended before `day`: on the insurer's record, or withdrawn with its last day still to come
        (and not before its first day)."""
        return self.link_state is LinkState.linked and not self.ended_before(day) and not self.never_took_effect

    def in_force_on(self, day: date) -> bool:
        """Linked, and `day` is within the membership: from its first day through its last, once withdrawn."""
        if self.link_state is not LinkState.linked or day < self.enrolled_on:
            return False
        return self.status is MembershipStatus.active or (self.withdrawn_on is not None and day <= self.withdrawn_on)

    def ended_before(self, day: date) -> bool:
        """Withdrawn, with its last day before `day` (a withdrawal without a last day has ended)."""
        return self.status is MembershipStatus.withdrawn and (self.withdrawn_on is None or self.withdrawn_on < day)


def member_key(insurer_number: str, member_symbol: str, member_number: str) -> str:
    return f"{insurer_number}/{member_symbol}/{member_number}"


class CertificateStatus(StrEnum):
    active = "active"
    withdrawn = "withdrawn"
    expired = "expired"


@dataclass(frozen=True)
class EligibilityCertificate:
    member_key: str
    certificate_number: str
    person_ref: str
    insurer_number: str
    member_symbol: str
    member_number: str
    valid_from: date
    valid_until: date
    status: CertificateStatus
    reason: CertificateIssueReason
    on_application: bool
    # The last day of validity it had before a membership's last day cut it (None when not cut):
    # a last day moved later gives it back, up to this day and no further.
    uncut_until: date | None = None


@dataclass(frozen=True)
class IssueCertificate:
    certificate: EligibilityCertificate


@dataclass(frozen=True)
class WithdrawCertificate:
    certificate: EligibilityCertificate
    reason: CertificateWithdrawalReason


CertificateAction = IssueCertificate | WithdrawCertificate

MAX_CERTIFICATE_VALIDITY_YEARS = 5


def add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February in a common year
        return day.replace(year=day.year + years, day=28)


def validity_period(start: date, years: int) -> tuple[date, date]:
    """From `start` through the day before the same date `years` later; from 29 February into a
    year without one, through 28 February, the last day of that month (Civil Code art. 143)."""
    if not 1 <= years <= MAX_CERTIFICATE_VALIDITY_YEARS:
        raise ValueError("an eligibility certificate is valid for 1 to 5 years")
    try:
        return start, start.replace(year=start.year + years) - timedelta(days=1)
    except ValueError:  # 29 February, and the last year has none
        return start, start.replace(year=start.year + years, day=28)


def certificate_number(member_key: str, cause_id: str) -> str:
    """Deterministic from the membership and the event that caused the issue, so a rerun gives the same number."""
    digest = hashlib.sha256(f"eligibility-certificate/v1\n{member_key}\n{cause_id}".encode()).digest()
    return "EC" + base64.b32encode(digest).decode()[:16]


def plan_certificates(
    person: Person,
    memberships: Sequence[Membership],
    certificates: Mapping[str, EligibilityCertificate | None],
    *,
    today: date,
    validity_years: Mapping[str, int],
    cause_id: str,
) -> list[CertificateAction]:
    """Issue a certificate for every membership that still counts (on the insurer's record, or
    withdrawn with its last day today or later) whose holder cannot use the card; withdraw every
    active certificate of this person that is no longer needed.

    For a withdrawn membership a certificate is issued to end on the last day at the latest, and
    one whose validity ended by the last day has lapsed once it passed: the expiry sweep ends it.

    Only the person's own certificates are touched: a member record the person has left (withdrawn,
    then enrolled again for someone else) stays in their `member_keys`, and its certificate may
    now be that other person's."""
    blocker = None if person.deceased else card_insurance_blocker(person, today)
    actions: list[CertificateAction] = []
    for membership in memberships:
        current = certificates.get(membership.member_key)
        if current is not None and (current.status is not CertificateStatus.active or current.person_ref != person.person_ref):
            current = None
        own = membership.person_ref == person.person_ref
        needed = membership.can_still_count(today) and own and not person.deceased and blocker is not None
        if needed and current is None and blocker is not None:
            valid_from, uncut_until = validity_period(today, validity_years.get(membership.insurer_number, 1))
            valid_until = uncut_until
            if membership.withdrawn_on is not None:  # withdrawn, its last day today or later
                valid_until = min(valid_until, membership.withdrawn_on)
            actions.append(
                IssueCertificate(
                    EligibilityCertificate(
                        member_key=membership.member_key,
                        certificate_number=certificate_number(membership.member_key, cause_id),
                        person_ref=person.person_ref,
                        insurer_number=membership.insurer_number,
                        member_symbol=membership.member_symbol,
                        member_number=membership.member_number,
                        valid_from=valid_from,
                        valid_until=valid_until,
                        status=CertificateStatus.active,
                        reason=blocker,
                        on_application=blocker in _APPLIED.values(),
                        uncut_until=uncut_until if valid_until < uncut_until else None,
                    )
                )
            )
        elif not needed and current is not None:
            if own and lapsed_within(current, membership, today):
                continue  # ended with its validity, like any lapsed certificate: the expiry sweep ends it
            if not membership.can_still_count(today) or not own:
                reason = CertificateWithdrawalReason.member_withdrawn
            elif person.deceased:
                reason = CertificateWithdrawalReason.resident_deceased
            else:
                reason = CertificateWithdrawalReason.card_linked
            actions.append(WithdrawCertificate(current, reason))
    return actions


def lapsed_within(certificate: EligibilityCertificate, membership: Membership, today: date) -> bool:
    """The membership has ended and the certificate's validity ended by its last day: it lapsed
    while the membership counted (a certificate kept through an announced last day does)."""
    return (
        membership.ended_before(today)
        and membership.withdrawn_on is not None
        and certificate.valid_until <= membership.withdrawn_on
    )


def kept_through_last_day(certificate: EligibilityCertificate | None, membership: Membership,
                          today: date) -> EligibilityCertificate | None:
    """The member's active certificate as it stays after a withdrawal whose last day is today or
    later: valid through the last day at the latest (cut to it if it ran later), then ended by the
    expiry sweep and not issued again. None when no certificate stays: none is held, it is someone
    else's, the last day has passed (then it is withdrawn at once), or the membership never took
    effect (its last day is the day before its first: withdrawn at once too, it covered no day).

    A last day moved later gives a certificate that an earlier last day cut its validity back, up
    to the new last day and never past the validity it had (`uncut_until`); one that ended (for
    whatever reason) stays ended."""
    last_day = membership.withdrawn_on
    if (
        certificate is None
        or certificate.status is not CertificateStatus.active
        or certificate.person_ref != membership.person_ref
        or membership.status is not MembershipStatus.withdrawn
        or last_day is None
        or last_day < today
        or membership.never_took_effect
    ):
        return None
    uncut = max(certificate.valid_until, certificate.uncut_until or certificate.valid_until)
    valid_until = min(uncut, last_day)
    if valid_until == certificate.valid_until:
        return certificate
    # A renewal made ahead moves `valid_from` past today; the certificate is valid today all the same.
    return replace(certificate, valid_from=min(certificate.valid_from, today), valid_until=valid_until,
                   uncut_until=uncut if valid_until < uncut else None)


# --- an insurer's withdrawal, and moving its last day ------------------------------------------


class WithdrawalStep(StrEnum):
    withdraw = "withdraw"  # the member's withdrawal (or this request's again: a rerun finishes it)
    move = "move"  # the last day announced before moves to the day requested
    nothing = "nothing"  # this request was made before, and the record has changed since: its facts went out then
    refuse = "refuse"


@dataclass(frozen=True)
class WithdrawalDecision:
    step: WithdrawalStep
    previous_last_day: date | None = None  # the last day a move moves
    refusal: str | None = None  # why it is refused, for the insurer
    refusal_reason: RejectionReason | None = None  # the same, as a code


def _refused(reason: RejectionReason, message: str) -> WithdrawalDecision:
    return WithdrawalDecision(WithdrawalStep.refuse, refusal=message, refusal_reason=reason)


def request_id_reused(last_day: date) -> str:
    """Why a withdrawal whose request id already set another last day is refused."""
    return f"this request id already set the member's last day to {last_day.isoformat()}; send another request to move it"


def last_day_before_first_day(requested_last_day: date, first_day: date) -> str:
    """Why a withdrawal whose last day comes more than one day before the membership's first day is refused."""
    return (f"the last day, {requested_last_day.isoformat()}, is before the membership's first day, {first_day.isoformat()}: "
            f"the earliest is {(first_day - timedelta(days=1)).isoformat()}, the day before it, for a membership that "
            "never takes effect")


def decide_withdrawal(*, status: MembershipStatus, first_day: date, last_day: date | None, withdrawn_by: str | None,
                      made_before: bool, request_id: str, requested_last_day: date, today: date) -> WithdrawalDecision:
    """What an insurer's withdrawal `request_id` (last day `requested_last_day`) does to the member
    record as it is: withdrawn or not, with its first day, its last day and the request that set it.

    While the announced last day has not passed (it is today or later), another withdrawal with
    another day moves it, earlier (even into the past: the membership then ends at once) or later.
    Once it has passed the member is withdrawn for good: another day is refused, as is the same day
    again under a new request (there is nothing to change).

    A new last day is the membership's first day at the earliest, or the day before it: the
    membership then never takes effect (the insurer cancels one enrolled ahead, or in error).
    Earlier is refused; a request that already withdrew the record finishes as it was saved."""
    too_early = requested_last_day < first_day - timedelta(days=1)
    if status is MembershipStatus.active:
        # Made before, then enrolled again: this withdrawal runs again late, and the enrollment stands.
        if made_before:
            return WithdrawalDecision(WithdrawalStep.nothing)
        if too_early:
            return _refused(RejectionReason.last_day_before_first_day, last_day_before_first_day(requested_last_day, first_day))
        return WithdrawalDecision(WithdrawalStep.withdraw)
    if withdrawn_by == request_id:
        if last_day is not None and last_day != requested_last_day:
            return _refused(RejectionReason.member_withdrawn, request_id_reused(last_day))
        return WithdrawalDecision(WithdrawalStep.withdraw)
    if made_before:  # made, then moved by a later request: that one stands
        return WithdrawalDecision(WithdrawalStep.nothing)
    if last_day is None or last_day < today:
        passed = f"its last day, {last_day.isoformat()}, has passed" if last_day else "it has no last day to move"
        return _refused(RejectionReason.member_withdrawn, f"the member record is withdrawn and {passed}")
    if last_day == requested_last_day:
        return _refused(RejectionReason.member_withdrawn,
                        f"the member record is already withdrawn with this last day, {last_day.isoformat()}")
    if too_early:
        return _refused(RejectionReason.last_day_before_first_day, last_day_before_first_day(requested_last_day, first_day))
    return WithdrawalDecision(WithdrawalStep.move, previous_last_day=last_day)


def renewal_due(certificate: EligibilityCertificate, as_of: date, lead_days: int) -> bool:
    """An active certificate that ends within `lead_days` of `as_of` (and has not ended yet)."""
    return (
        certificate.status is CertificateStatus.active
        and as_of <= certificate.valid_until <= as_of + timedelta(days=lead_days)
    )


def renewed(certificate: EligibilityCertificate, years: int) -> EligibilityCertificate:
    valid_from, valid_until = validity_period(certificate.valid_until + timedelta(days=1), years)
    return replace(certificate, valid_from=valid_from, valid_until=valid_until)


def has_expired(certificate: EligibilityCertificate, as_of: date) -> bool:
    return certificate.status is CertificateStatus.active and certificate.valid_until < as_of


def still_needed(person: Person, membership: Membership, as_of: date) -> bool:
    return (
        membership.in_force
        and membership.person_ref == person.person_ref
        and not person.deceased
        and card_insurance_blocker(person, as_of) is not None
    )


# --- eligibility by card --------------------------------------------------------------------


@dataclass(frozen=True)
class EligibilityRecord:
    """The denormalised answer for one card certificate id: everything a check needs, in one document."""

    certificate_id: str
    person_ref: str
    card_status: CardStatus
    card_certificate_expires_on: date
    insurance_use: InsuranceUse
    certificate_application: CertificateApplicationReason | None
    deceased: bool
    memberships: tuple[Membership, ...]  # the holder's linked memberships not ended when written, with their dates
    version: int


@dataclass(frozen=True)
class EligibilityAnswer:
    eligible: bool
    person_ref: str | None
    reason: EligibilityDenialReason | None
    membership: Membership | None
    no_card_surcharge: bool


def primary_membership(person_ref: str, memberships: Iterable[Membership], *, on: date) -> Membership | None:
    """Of the person's memberships in force on `on`, the one that started last (a new insurer takes
    over on a job change, from the new membership's first day)."""
    in_force = [m for m in memberships if m.person_ref == person_ref and m.in_force_on(on)]
    return max(in_force, key=lambda m: (m.enrolled_on, m.member_key), default=None)


def memberships_that_can_still_count(person_ref: str, memberships: Iterable[Membership], *, on: date) -> tuple[Membership, ...]:
    """The person's linked memberships that count on `on` or a later day: started or not, and not
    ended before `on`. An ended one never counts again, so the list stays as short as the person's
    current and announced memberships."""
    kept = [m for m in memberships if m.person_ref == person_ref and m.can_still_count(on)]
    return tuple(sorted(kept, key=lambda m: (m.enrolled_on, m.member_key)))


def eligibility_records(person: Person, memberships: Iterable[Membership], retired: Iterable[Card] = (), *,
                        on: date) -> list[EligibilityRecord]:
    """One record for the current card and one for each card it replaced, written on `on` and read
    on that day or later: each keeps the memberships with their dates, and the check picks by day."""
    kept = memberships_that_can_still_count(person.person_ref, memberships, on=on)
    cards = [*retired, *([person.card] if person.card else [])]
    return [
        EligibilityRecord(
            certificate_id=card.certificate_id,
            person_ref=person.person_ref,
            card_status=card.status,
            card_certificate_expires_on=card.certificate_expires_on,
            insurance_use=person.insurance_use,
            certificate_application=person.certificate_application,
            deceased=person.deceased,
            memberships=kept,
            version=person.version,
        )
        for card in cards
    ]


def answer_eligibility(record: EligibilityRecord | None, *, today: date, no_card_surcharge: bool) -> EligibilityAnswer:
    """The answer for `today`: the record may have been written days before, so the membership is picked by day."""
    def denied(reason: EligibilityDenialReason) -> EligibilityAnswer:
        return EligibilityAnswer(False, record.person_ref if record else None, reason, None, no_card_surcharge)

    if record is None:
        return denied(EligibilityDenialReason.unknown_card)
    if record.deceased:
        return denied(EligibilityDenialReason.resident_deceased)
    if record.card_status is CardStatus.replaced:
        return denied(EligibilityDenialReason.card_replaced)
    if record.card_status is not CardStatus.active:
        return denied(EligibilityDenialReason.card_not_usable)
    if record.card_certificate_expires_on < today:
        return denied(EligibilityDenialReason.card_certificate_expired)
    if record.insurance_use is not InsuranceUse.registered:
        return denied(EligibilityDenialReason.not_registered_for_insurance)
    if record.certificate_application is not None:
        return denied(EligibilityDenialReason.holds_eligibility_certificate)
    membership = primary_membership(record.person_ref, record.memberships, on=today)
    if membership is None:  # none yet, or none any more: not insured today
        return denied(EligibilityDenialReason.no_active_membership)
    return EligibilityAnswer(True, record.person_ref, None, membership, False)


def card_usable_for_registration(card: Card | None, today: date) -> bool:
    return card is not None and card.status is CardStatus.active and card.certificate_expires_on >= today


def holder_card_refusal(person: Person | None, certificate_id: str, today: date) -> EligibilityDenialReason | None:
    """Why this card cannot give consent or release medical data; None when it is the living
    holder's current card, active, with its electronic certificate unexpired."""
    if person is None:
        return EligibilityDenialReason.unknown_card
    if person.deceased:
        return EligibilityDenialReason.resident_deceased
    card = person.card
    if card is None or card.certificate_id != certificate_id:
        return EligibilityDenialReason.card_replaced
    if card.status is not CardStatus.active:
        return EligibilityDenialReason.card_not_usable
    if card.certificate_expires_on < today:
        return EligibilityDenialReason.card_certificate_expired
    return None


# --- consent and medical data ------------------------------------------------------------------


@dataclass(frozen=True)
class MedicalDataPolicy:
    consent_window: timedelta = timedelta(hours=24)
    history_years: Mapping[MedicalDataType, int] = field(
        default_factory=lambda: {MedicalDataType.prescriptions: 3, MedicalDataType.checkups: 5}
    )

    def consent_denial(self, given_at: datetime | None, now: datetime) -> MedicalDataDenialReason | None:
        """Consent counts when this institution recorded it for this data type less than 24 hours ago."""
        if given_at is None or given_at > now:
            return MedicalDataDenialReason.no_consent
        if now - given_at >= self.consent_window:
            return MedicalDataDenialReason.consent_expired
        return None

    def covers_from(self, data_type: MedicalDataType, today: date) -> date:
        return add_years(today, -self.history_years[data_type])


def release_id(institution_code: str, request_id: str, data_type: MedicalDataType) -> str:
    digest = hashlib.sha256(f"medical-data-release/v1\n{institution_code}\n{request_id}\n{data_type}".encode()).digest()
    return "rel_" + base64.b32encode(digest).decode().lower()[:26]
