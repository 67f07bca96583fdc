"""Enrollment's rules, in plain Python: who may apply where, what a card looks like, how it lives.

No framework and no driver here: the handlers load state, call these functions, save the
result and return the facts built here.
"""

from __future__ import annotations

import base64
import calendar
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from enum import StrEnum

from mynumber_contracts import MyNumber, ResidentAttributes, Sex, check_digit
from mynumber_contracts.enrollment import (
    PERMANENT_RESIDENCE_STATUSES,
    ApplicationAccepted,
    ApplicationRejected,
    ApplyForCard,
    CardExpired,
    CardIssued,
    CardReissued,
    CardResumed,
    CardReturned,
    CardRevoked,
    CardSuspended,
    CertificateDocument,
    CertificateRefusal,
    Channel,
    RejectionReason,
)

# --- rules that are settings (facts: "make the difference a setting, not a code path") ----


@dataclass(frozen=True)
class CardRules:
    adult_age: int = 18
    adult_validity_birthdays: int = 10
    minor_validity_birthdays: int = 5
    certificate_validity_birthdays: int = 5
    photo_exempt_below_age: int = 1
    infant_photo_exemption_from: date = date(2024, 12, 2)
    diplomatic_channel_opens_on: date = date(2024, 5, 27)
    abroad_eligible_moved_on_or_after: date = date(2015, 10, 5)


# --- ages and birthdays ----------------------------------------------------------------------


def age_on(date_of_birth: date, on: date) -> int:
    """Completed years on `on`, counted by birthdays, not 365-day years.

    Someone born on 29 February turns a year older on 1 March in a common year: the year
    of age ends with 28 February (Act on Age Calculation with Civil Code art. 143).
    """
    years = on.year - date_of_birth.year
    return years - 1 if (on.month, on.day) < (date_of_birth.month, date_of_birth.day) else years


def birthday_in(date_of_birth: date, year: int) -> date:
    """The birthday in `year`; for 29 February in a common year, 28 February (Civil Code art. 143(2))."""
    if (date_of_birth.month, date_of_birth.day) == (2, 29) and not calendar.isleap(year):
        return date(year, 2, 28)
    return date_of_birth.replace(year=year)


def nth_birthday_after(date_of_birth: date, issued_on: date, n: int) -> date:
    """The n-th birthday strictly after `issued_on` (a card issued on a birthday does not count it)."""
    first_year = issued_on.year if birthday_in(date_of_birth, issued_on.year) > issued_on else issued_on.year + 1
    return birthday_in(date_of_birth, first_year + n - 1)


# --- the number ------------------------------------------------------------------------------


def random_number() -> MyNumber:
    """A new Individual Number: 11 digits from a cryptographically secure generator, and the check digit."""
    base = f"{secrets.randbelow(10**11):011d}"
    return MyNumber(base + str(check_digit(base)))


# --- residents -------------------------------------------------------------------------------


MOVED_ABROAD = "moved abroad"


def moved_abroad_address(moved_on: date) -> str:
    """What the address reads once a resident moved abroad."""
    return f"{MOVED_ABROAD} ({moved_on.isoformat()})"


@dataclass(frozen=True)
class Resident:
    person_ref: str
    municipality_code: str
    attributes: ResidentAttributes
    nationality: str
    residence_status: str | None = None
    residence_period_end: date | None = None
    moved_abroad_on: date | None = None
    destination_country: str | None = None
    deceased_on: date | None = None

    @property
    def is_foreign(self) -> bool:
        return self.nationality != "JP"

    @property
    def card_ends_with_residence_period(self) -> bool:
        return self.is_foreign and self.residence_status not in PERMANENT_RESIDENCE_STATUSES

    @property
    def lives_abroad(self) -> bool:
        return self.moved_abroad_on is not None

    @property
    def is_deceased(self) -> bool:
        return self.deceased_on is not None


NAME_AND_ADDRESS = ("name_kanji", "name_kana", "address")


def attribute_changes(current: ResidentAttributes, **proposed: str | None) -> dict[str, str]:
    """The name and address fields that a change request really changes."""
    return {
        field: value
        for field, value in proposed.items()
        if field in NAME_AND_ADDRESS and value is not None and getattr(current, field) != value
    }


def repeats_change(changed: Iterable[str], left: ResidentAttributes | None, requested: Mapping[str, object]) -> bool:
    """Whether a request that sets the values `requested` asks for what a recorded change did: that
    change changed only attributes the request sets, and left each at the value the request gives
    (`left`: the attributes after it; None for records that did not keep them)."""
    if not set(changed) <= requested.keys():
        return False
    return not requested or (left is not None and all(getattr(left, field) == value for field, value in requested.items()))


def plan_correction(current: ResidentAttributes, *, date_of_birth: date | None, sex: Sex | None,
                    date_of_birth_on_record: date, sex_on_record: Sex) -> dict[str, date | Sex] | Rejection:
    """The date of birth and sex a correction changes, or why it changes nothing.

    A correction is made only to a record that shows what the correction says it shows (its
    `..._on_record` values): a number mistyped into another resident's must not change that
    resident's identity. A record that already shows the corrected values (the same correction
    sent again) needs nothing: an empty plan."""
    shown = (current.date_of_birth, current.sex)
    corrected = (date_of_birth or date_of_birth_on_record, sex or sex_on_record)
    if shown == corrected:
        return {}
    if shown != (date_of_birth_on_record, sex_on_record):
        return Rejection(RejectionReason.record_differs,
                         "the record under this number does not show the date of birth and sex given as on record: "
                         "check the number")
    fields = {"date_of_birth": corrected[0], "sex": corrected[1]}
    return {field: value for field, value in fields.items() if getattr(current, field) != value}


def held_by_someone_else(current: ResidentAttributes, proposed: ResidentAttributes) -> Rejection | None:
    """A registration of a number already on record is the same person moving in (a new name or
    address is a change); another date of birth or sex means the number is someone else's, most
    likely mistyped (about 1.7 % of single-digit typos pass the check digit, facts §1), and
    registering over it would give that person another's identity."""
    if (current.date_of_birth, current.sex) == (proposed.date_of_birth, proposed.sex):
        return None
    return Rejection(RejectionReason.duplicate,
                     "the number is registered for a person with another date of birth or sex: check the number "
                     "(a registration does not change a date of birth or sex)")


# --- rejections ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rejection:
    reason: RejectionReason
    message: str


def bad_check_digit() -> Rejection:
    return Rejection(RejectionReason.bad_check_digit, "the Individual Number's check digit (12th digit) does not match")


def unknown_resident() -> Rejection:
    return Rejection(RejectionReason.unknown_resident, "no resident with this Individual Number is registered")


def deceased() -> Rejection:
    return Rejection(RejectionReason.resident_state, "the resident is recorded as deceased")


def check_municipality(municipality_code: str, sender: str) -> Rejection | None:
    """A municipality acts in its own name only: the code a request names must be the sender's own,
    or one municipality could register residents for, or move the post-office delegation of, another."""
    if sender != f"{CHANNEL_SENDERS[Channel.municipal_office]}{municipality_code}":
        return Rejection(RejectionReason.channel_not_allowed,
                         f"{sender} may not act for municipality {municipality_code}: only municipality/{municipality_code} may")
    return None


def check_municipality_of_residence(resident: Resident, sender: str) -> Rejection | None:
    """A change to a resident's record (name, address, a move abroad, a death) comes from the
    municipality that keeps it: the one the resident last registered in. Another municipality
    learns nothing of where the resident lives from the refusal."""
    if sender != f"{CHANNEL_SENDERS[Channel.municipal_office]}{resident.municipality_code}":
        return Rejection(RejectionReason.channel_not_allowed,
                         f"{sender} does not keep this resident's record: only the municipality of residence may change it")
    return None


def card_end_reason(resident: Resident, rules: CardRules) -> str | None:
    """Why a death or a move abroad just recorded ends the card the person holds (the revocation's
    reason), or None. Only Japanese nationals who moved abroad on or after the day the diplomatic
    channel opened (27 May 2024) keep their card; foreign nationals never can; those who moved
    before lost it then (and may apply again at an embassy)."""
    if resident.is_deceased:
        return "deceased"
    if resident.moved_abroad_on is not None and (
        resident.is_foreign or resident.moved_abroad_on < rules.diplomatic_channel_opens_on
    ):
        return "moved abroad"
    return None


def holds_no_card(resident: Resident) -> str | None:
    """Why the person may hold no card at all now (a card issued to them is revoked), or None: the
    dead, and foreign nationals who moved abroad (a Japanese national abroad may get one at an embassy)."""
    if resident.is_deceased:
        return "deceased"
    if resident.lives_abroad and resident.is_foreign:
        return "moved abroad"
    return None


def check_card_office(resident: Resident, sender: str, action: CardAction, rules: CardRules) -> Rejection | None:
    """A loss is reported to any municipality, the 24-hour hotline or a diplomatic office
    (suspended at once); finding, reissue, return and revocation are the card holder's
    municipality of residence's, so a number mistyped at another municipality (about 1.7 % of
    typos pass the check digit) cannot end a stranger's card. A Japanese national abroad who kept
    the card (facts §2) has it found, reissued or takes it back at an embassy or consulate as
    well; revocation stays with the municipality. The refusal tells nothing of where the holder lives."""
    if action is CardAction.report_lost or sender == f"{CHANNEL_SENDERS[Channel.municipal_office]}{resident.municipality_code}":
        return None
    if (sender.startswith(CHANNEL_SENDERS[Channel.diplomatic_office]) and action is not CardAction.revoke
            and resident.lives_abroad and card_end_reason(resident, rules) is None):
        return None
    return Rejection(RejectionReason.channel_not_allowed,
                     f"{sender} does not keep this card holder's record: only the municipality of residence may "
                     "resume, reissue, take back or revoke the card (a diplomatic office only for a holder abroad)")


# --- applications ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Approval:
    issuing_municipality: str
    photo_less: bool


# The partner type (`ce_source` prefix) that may send an application on each channel.
CHANNEL_SENDERS = {
    Channel.municipal_office: "municipality/",
    Channel.post_office: "post-office/",
    Channel.diplomatic_office: "diplomatic-office/",
}


def check_sender(application: ApplyForCard, sender: str) -> Rejection | None:
    """An application comes from the office it names, on that office's own channel: a post office
    cannot claim another office's delegation, nor a municipality file on a diplomatic channel."""
    if application.office_id != sender or not sender.startswith(CHANNEL_SENDERS[application.channel]):
        return Rejection(
            RejectionReason.channel_not_allowed,
            f"{sender} may not file an application as {application.office_id} on the {application.channel.value} channel",
        )
    return None


def photo_required(date_of_birth: date, applied_on: date, rules: CardRules) -> bool:
    infant = age_on(date_of_birth, applied_on) < rules.photo_exempt_below_age
    return not (infant and applied_on >= rules.infant_photo_exemption_from)


def review_application(
    application: ApplyForCard, resident: Resident, *, post_office_delegated: bool, rules: CardRules
) -> Approval | Rejection:
    """Everything about an application except 'one active card per person', which the store decides."""
    if resident.is_deceased:
        return deceased()
    channel = application.channel
    if channel is Channel.post_office and not post_office_delegated:
        return Rejection(
            RejectionReason.no_delegation,
            f"post office {application.office_id} has no delegation from municipality {resident.municipality_code}",
        )
    if channel is Channel.diplomatic_office:
        if application.applied_on < rules.diplomatic_channel_opens_on:
            return Rejection(
                RejectionReason.channel_not_allowed,
                f"diplomatic offices take applications from {rules.diplomatic_channel_opens_on.isoformat()}",
            )
        if resident.is_foreign:
            return Rejection(
                RejectionReason.not_eligible_abroad, "foreign nationals cannot apply at a Japanese diplomatic office"
            )
        if not resident.lives_abroad:
            return Rejection(
                RejectionReason.channel_not_allowed, "the resident lives in Japan: apply at the municipal office"
            )
        assert resident.moved_abroad_on is not None
        if resident.moved_abroad_on < rules.abroad_eligible_moved_on_or_after:
            return Rejection(
                RejectionReason.not_eligible_abroad,
                f"only Japanese nationals who moved abroad on or after "
                f"{rules.abroad_eligible_moved_on_or_after.isoformat()} can apply abroad",
            )
    elif resident.lives_abroad:
        return Rejection(
            RejectionReason.channel_not_allowed, "the resident moved abroad: apply at an embassy or consulate"
        )
    if (ended := period_of_stay_ended(resident, application.applied_on)) is not None:
        return ended
    if application.photo_ref is None and photo_required(resident.attributes.date_of_birth, application.applied_on, rules):
        return Rejection(RejectionReason.photo_missing, "a facial photo is required (only infants under 1 are exempt)")
    return Approval(issuing_municipality=resident.municipality_code, photo_less=application.photo_ref is None)


def period_of_stay_ended(resident: Resident, on: date) -> Rejection | None:
    """A card ends with the period of stay (foreign residents other than permanent residents): none
    is issued once the period has ended, as it would be expired on the day it is issued."""
    if resident.card_ends_with_residence_period and resident.residence_period_end is not None:
        if resident.residence_period_end < on:
            return Rejection(RejectionReason.resident_state, "the resident's period of stay has ended")
    return None


def duplicate(application_id: str) -> Rejection:
    return Rejection(
        RejectionReason.duplicate,
        f"the person already holds or is being issued a card (application {application_id} is not the one that holds it)",
    )


def rejected_application(application: ApplyForCard, rejection: Rejection, person_ref: str | None) -> ApplicationRejected:
    return ApplicationRejected(
        person_ref=person_ref,
        application_id=application.application_id,
        channel=application.channel,
        office_id=application.office_id,
        reason=rejection.reason,
        message=rejection.message,
    )


# --- cards -----------------------------------------------------------------------------------


class CardState(StrEnum):
    active = "active"
    suspended = "suspended"  # reported lost
    reissued = "reissued"  # replaced by a new card
    returned = "returned"
    revoked = "revoked"
    expired = "expired"


HELD_STATES = frozenset({CardState.active, CardState.suspended})  # the person's one card


class CardAction(StrEnum):
    report_lost = "report_lost"
    report_found = "report_found"
    reissue = "reissue"
    return_card = "return_card"
    revoke = "revoke"
    expire = "expire"


TRANSITIONS: dict[CardAction, tuple[frozenset[CardState], CardState]] = {
    CardAction.report_lost: (frozenset({CardState.active}), CardState.suspended),
    CardAction.report_found: (frozenset({CardState.suspended}), CardState.active),
    CardAction.reissue: (HELD_STATES, CardState.reissued),
    CardAction.return_card: (HELD_STATES, CardState.returned),
    CardAction.revoke: (HELD_STATES, CardState.revoked),
    CardAction.expire: (HELD_STATES, CardState.expired),
}


@dataclass(frozen=True)
class CardValidity:
    expires_on: date
    certificate_expires_on: date


def card_validity(resident: Resident, issued_on: date, rules: CardRules) -> CardValidity:
    date_of_birth = resident.attributes.date_of_birth
    adult = age_on(date_of_birth, issued_on) >= rules.adult_age
    birthdays = rules.adult_validity_birthdays if adult else rules.minor_validity_birthdays
    expires_on = nth_birthday_after(date_of_birth, issued_on, birthdays)
    if resident.card_ends_with_residence_period and resident.residence_period_end is not None:
        expires_on = min(expires_on, resident.residence_period_end)
    certificate = nth_birthday_after(date_of_birth, issued_on, rules.certificate_validity_birthdays)
    return CardValidity(expires_on=expires_on, certificate_expires_on=min(certificate, expires_on))


def check_period_of_stay(resident: Resident, residence_period_end: date | None, today: date) -> Rejection | None:
    """Why a new status of residence or period of stay cannot be recorded for the resident, or None."""
    if resident.is_deceased:
        return deceased()
    if not resident.is_foreign:
        return Rejection(RejectionReason.resident_state, "a Japanese national has no status of residence or period of stay")
    if resident.lives_abroad:
        return Rejection(RejectionReason.resident_state,
                         "the resident lives abroad: a return to Japan is registered with RegisterResident")
    if residence_period_end is not None and residence_period_end < today:
        return Rejection(RejectionReason.resident_state, "the new period of stay has already ended")
    return None


def validity_with_period_of_stay(card: Card | None, renewed: Resident, today: date, rules: CardRules) -> CardValidity | None:
    """The validity the held card takes once the resident's new period of stay is recorded
    (`renewed`: the resident with it): the earlier of the birthday rule, from the card's issue
    day, and the new period end. None when the card keeps its own: no card held, the same
    validity, or a card already past its last day (not revived: the holder applies again)."""
    if card is None or not card.is_held or card.expires_on < today:
        return None
    validity = card_validity(renewed, card.issued_on, rules)
    if validity == CardValidity(expires_on=card.expires_on, certificate_expires_on=card.certificate_expires_on):
        return None
    return validity


_CARD_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U


def new_card_number() -> str:
    """A random serial (50 bits), never derived from the number."""
    return "C-" + "".join(secrets.choice(_CARD_ALPHABET) for _ in range(10))


def new_certificate_id() -> str:
    """128 random bits in lowercase base32 (letters and 2-7: no long digit runs to mistake for a number)."""
    return "cert_" + base64.b32encode(secrets.token_bytes(20)).decode().lower()


@dataclass(frozen=True)
class LastRequest:
    """The request that moved the card last: lets a re-run after a crash rebuild its fact."""

    key: str
    action: CardAction
    at: datetime
    reason: str | None = None


@dataclass(frozen=True)
class Card:
    card_number: str
    person_ref: str
    certificate_id: str
    state: CardState
    issued_on: date
    expires_on: date
    certificate_expires_on: date
    photo_less: bool
    issuing_municipality: str
    origin_key: str  # "application/<id>" or the reissue request's key
    application_id: str
    previous_card_number: str | None = None
    replaced_by: str | None = None
    signing_certificate_valid: bool = True
    last_request: LastRequest | None = None
    # A keyed digest of the attributes the signing certificate was issued with (None: cards from before it was kept).
    signed_attributes: str | None = None

    @property
    def is_held(self) -> bool:
        return self.state in HELD_STATES


def new_card(
    *,
    card_number: str,
    resident: Resident,
    issued_on: date,
    photo_less: bool,
    issuing_municipality: str,
    origin_key: str,
    application_id: str,
    rules: CardRules,
    previous_card_number: str | None = None,
    signed_attributes: str | None = None,
) -> Card:
    validity = card_validity(resident, issued_on, rules)
    return Card(
        card_number=card_number,
        person_ref=resident.person_ref,
        certificate_id=new_certificate_id(),
        state=CardState.active,
        issued_on=issued_on,
        expires_on=validity.expires_on,
        certificate_expires_on=validity.certificate_expires_on,
        photo_less=photo_less,
        issuing_municipality=issuing_municipality,
        origin_key=origin_key,
        application_id=application_id,
        previous_card_number=previous_card_number,
        signed_attributes=signed_attributes,
    )


def review_transition(card: Card | None, action: CardAction) -> CardState | Rejection:
    """The state `action` moves the card to, or why it cannot."""
    if card is None:
        return Rejection(RejectionReason.card_state, "the person holds no active or suspended card")
    allowed, target = TRANSITIONS[action]
    if card.state not in allowed:
        return Rejection(
            RejectionReason.card_state, f"a card that is {card.state.value} does not allow {action.value.replace('_', ' ')}"
        )
    return target


def after_transition(card: Card, action: CardAction, request: LastRequest, *, replaced_by: str | None = None) -> Card:
    return replace(card, state=TRANSITIONS[action][1], last_request=request, replaced_by=replaced_by or card.replaced_by)


# --- facts -----------------------------------------------------------------------------------


def accepted_application(application: ApplyForCard, card: Card) -> list[ApplicationAccepted | CardIssued]:
    return [
        ApplicationAccepted(
            person_ref=card.person_ref,
            application_id=application.application_id,
            channel=application.channel,
            office_id=application.office_id,
            issuing_municipality=card.issuing_municipality,
            photo_less=card.photo_less,
        ),
        CardIssued(
            person_ref=card.person_ref,
            card_number=card.card_number,
            certificate_id=card.certificate_id,
            application_id=card.application_id,
            issued_on=card.issued_on,
            expires_on=card.expires_on,
            certificate_expires_on=card.certificate_expires_on,
            photo_less=card.photo_less,
        ),
    ]


def transition_fact(card: Card, successor: Card | None = None):  # noqa: ANN201 - one of the card facts
    """The fact of the card's last transition, rebuilt from the card itself."""
    request = card.last_request
    assert request is not None
    common = {"person_ref": card.person_ref, "card_number": card.card_number}
    match request.action:
        case CardAction.report_lost:
            return CardSuspended(**common, suspended_at=request.at)
        case CardAction.report_found:
            return CardResumed(**common, resumed_at=request.at)
        case CardAction.return_card:
            return CardReturned(**common, returned_at=request.at)
        case CardAction.revoke:
            return CardRevoked(**common, reason=request.reason or "revoked", revoked_at=request.at)
        case CardAction.expire:
            return CardExpired(**common, expired_on=card.expires_on)
        case CardAction.reissue:
            assert successor is not None
            return CardReissued(
                person_ref=card.person_ref,
                previous_card_number=card.card_number,
                card_number=successor.card_number,
                certificate_id=successor.certificate_id,
                issued_on=successor.issued_on,
                expires_on=successor.expires_on,
                certificate_expires_on=successor.certificate_expires_on,
                photo_less=successor.photo_less,
            )


# --- residence certificates at convenience-store kiosks ---------------------------------------


@dataclass(frozen=True)
class ResidenceCertificate:
    """What one certificate says: built for one request, rendered for it alone."""

    document: CertificateDocument
    municipality_code: str
    people: tuple[ResidentAttributes, ...]  # the requester first, then the household
    issued_at: datetime
    verification_code: str
    kiosk_id: str
    request_id: str


@dataclass(frozen=True)
class Refusal:
    reason: CertificateRefusal
    message: str


def certificate_refusal(card: Card | None, resident: Resident | None, today: date) -> Refusal | None:
    """Why the card at the kiosk cannot get a certificate, or None."""
    if card is None:
        return Refusal(CertificateRefusal.unknown_certificate, "no card carries this certificate")
    if card.state is CardState.suspended:
        return Refusal(CertificateRefusal.card_suspended, "the card is suspended (reported lost)")
    if card.state in (CardState.revoked, CardState.returned, CardState.reissued):
        return Refusal(CertificateRefusal.card_revoked, f"the card is no longer valid ({card.state.value})")
    if card.state is CardState.expired or card.expires_on < today:
        return Refusal(CertificateRefusal.card_expired, "the card has expired")
    if card.certificate_expires_on < today:
        return Refusal(CertificateRefusal.card_expired, "the card's electronic certificate has expired")
    if resident is None or resident.is_deceased or resident.lives_abroad:
        return Refusal(CertificateRefusal.resident_state, "the holder is not a resident of a municipality")
    return None


def household(requester: Resident, neighbours: list[Resident]) -> tuple[ResidentAttributes, ...]:
    """The requester, then the living residents registered at the same address (the household)."""
    others = sorted(
        (n for n in neighbours if n.person_ref != requester.person_ref and not n.is_deceased and not n.lives_abroad),
        key=lambda n: (n.attributes.date_of_birth, n.attributes.name_kana),
    )
    return (requester.attributes, *(n.attributes for n in others))


def new_verification_code() -> str:
    """80 random bits, printed on the certificate; the service keeps only a keyed digest of it."""
    symbols = "".join(secrets.choice(_CARD_ALPHABET) for _ in range(16))
    return "-".join(symbols[i : i + 4] for i in range(0, 16, 4))
