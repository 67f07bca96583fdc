"""Enrollment's use cases: one per partner request, plus the operator commands (expiry sweep,
number-key rotation). Each loads state, asks the domain, saves, and returns the facts.

Idempotency beyond the kit's per-event guard: a request replayed under a new event id is
recognised by its own id (`request_outcomes`), and a use case re-run after a crash recognises
its own writes (a resident's registrations and changes, a card's moves, the slot's application
id) and returns the same facts. Writes to a resident or a card are compare-and-set, so that a
stale run (the same request run at once by a second consumer during a rebalance) never writes
back an older record.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from mynumber_contracts import Event, Fact, MyNumber, ResidentAttributes, is_valid_my_number
from mynumber_contracts.enrollment import (
    ApplyForCard,
    CardReissued,
    CardRequestRejected,
    CardResumed,
    CardReturned,
    CardRevoked,
    CardSuspended,
    CardValidityChanged,
    CertificateDocument,
    CertificateRefusal,
    ChangeResidentAttributes,
    Channel,
    CorrectResidentRecord,
    DelegatePostOffice,
    PeriodOfStayChanged,
    PostOfficeDelegationChanged,
    RecordDeath,
    RecordMoveAbroad,
    RecordPeriodOfStay,
    RegisterResident,
    RejectionReason,
    ReportCardFound,
    ReportCardLost,
    RequestCardReissue,
    RequestResidenceCertificate,
    ResidenceCertificateIssued,
    ResidenceCertificateRefused,
    ResidentAttributesChanged,
    ResidentDeceased,
    ResidentMovedAbroad,
    ResidentRegistered,
    ResidentRequestRejected,
    ReturnCard,
    RevokeCard,
)

from services.kit.clock import Clock, today
from services.kit.idempotency import EarlierFacts
from services.kit.messaging import EventService, HandlerContext, HandlerRegistry
from services.kit.people import PersonReferences

from . import domain
from .certificates import CertificateRenderer
from .domain import (
    Card,
    CardAction,
    CardRules,
    CardState,
    CardValidity,
    LastRequest,
    Refusal,
    Rejection,
    ResidenceCertificate,
    Resident,
)
from .store import EnrollmentStore, StoredResident
from .vault import NumberVault

log = logging.getLogger(__name__)

handlers = HandlerRegistry()

CardRequest = ReportCardLost | ReportCardFound | RequestCardReissue | ReturnCard | RevokeCard

# Certificates rendered at once in one process (rendering is CPU work in a thread).
RENDERS_AT_ONCE = 4

# How often a use case re-reads and retries when another instance changed the same card meanwhile.
_CONCURRENT_CHANGE_ATTEMPTS = 5


@dataclass
class EnrollmentDeps:
    store: EnrollmentStore
    vault: NumberVault
    people: PersonReferences
    rules: CardRules
    renderer: CertificateRenderer
    render_timeout_seconds: float
    # The kit runs a batch's requests side by side; certificates are rendered a few at a time, so the
    # render timeout measures the render, not the wait for a free renderer.
    render_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(RENDERS_AT_ONCE))

    async def resident_by_number(self, number: MyNumber) -> StoredResident | None:
        return await self.store.resident_by_number(number, self.people.for_number(number))


class ReusedRequestId(Exception):
    """A request id that was already decided arrived with different content."""


class ConcurrentChange(Exception):
    """The same card kept changing under a use case; the message is dead-lettered for a person to look at."""


# What a request decided, and a summary for the status API. The facts are EarlierFacts when the
# decision finds the request already made under another event (a crash came before its outcome).
Decision = tuple[list[Fact] | EarlierFacts, dict[str, Any]]


def request_fingerprint(deps: EnrollmentDeps, request: Event) -> str:
    """What makes a request with a request id the same request (a keyed digest: the number is not kept)."""
    return deps.vault.fingerprint(request.model_dump_json().encode())


async def decide_once(
    deps: EnrollmentDeps, key: str, request: Event, ctx: HandlerContext[EnrollmentDeps],
    decide: Callable[[], Awaitable[Decision]],
) -> list[Fact] | EarlierFacts:
    """Decide request `key` once: a replay, under any event id, gets the facts that were decided,
    with the ids they had (so the services that keep copies of them apply them once)."""
    fingerprint = request_fingerprint(deps, request)
    outcome = await deps.store.outcome(key)
    if outcome is None:
        decided, summary = await decide()
        first = decided if isinstance(decided, EarlierFacts) else EarlierFacts(ctx.envelope.id, decided)
        outcome = await deps.store.record_outcome(key, fingerprint=fingerprint, facts=first.facts, summary=summary,
                                                  at=ctx.clock.now(), event_id=first.event_id)
    if outcome.fingerprint != fingerprint:
        raise ReusedRequestId(f"{key} was already decided for different content")
    if outcome.event_id is None:  # recorded by earlier code, which did not keep the event
        return outcome.facts
    return EarlierFacts(outcome.event_id, outcome.facts)


def typed_number(digits: str) -> MyNumber | Rejection:
    return MyNumber(digits) if is_valid_my_number(digits) else domain.bad_check_digit()


# --- the resident registry ------------------------------------------------------------------


def resident_rejected(event: Event, request_id: str, rejection: Rejection, person_ref: str | None = None) -> list[Fact]:
    return [
        ResidentRequestRejected(
            person_ref=person_ref, request_id=request_id, request_type=event.event_type,
            reason=rejection.reason, message=rejection.message,
        )
    ]


def change_record(key: str, kind: str, after: Resident, effective_on: date, **details: Any) -> dict[str, Any]:
    """What the resident record keeps of a change (`after` is the resident it leaves): enough to
    give its facts again, byte for byte, to a re-run that comes after later changes (a different
    fact under the same event id would be refused downstream as a reused id)."""
    return {"key": key, "kind": kind, "effective_on": effective_on.isoformat(),
            "attributes": after.attributes.model_dump(mode="json"), **details}


def change_facts(resident: Resident, change: dict[str, Any]) -> list[Fact]:
    """The facts of a resident's recorded change, rebuilt the same way on a re-run."""
    # The attributes the change left (records from before they were kept: the resident's own).
    attributes = ResidentAttributes.model_validate(change["attributes"]) if "attributes" in change else resident.attributes
    match change["kind"]:
        case "attributes" | "correction":
            return [
                ResidentAttributesChanged(
                    person_ref=resident.person_ref,
                    attributes=attributes,
                    changed=change["changed"],
                    effective_on=date.fromisoformat(change["effective_on"]),
                    signing_certificate_invalidated=change["signing_certificate_invalidated"],
                )
            ]
        case "moved_abroad":
            return [ResidentMovedAbroad(person_ref=resident.person_ref, attributes=attributes,
                                        moved_on=date.fromisoformat(change["effective_on"]))]
        case "deceased":
            return [ResidentDeceased(person_ref=resident.person_ref, died_on=date.fromisoformat(change["effective_on"]))]
        case "period_of_stay":
            effective_on = date.fromisoformat(change["effective_on"])
            facts: list[Fact] = [PeriodOfStayChanged(
                person_ref=resident.person_ref, residence_status=change["residence_status"],
                residence_period_end=_date_or_none(change["residence_period_end"]), effective_on=effective_on,
            )]
            if (card := change.get("card")) is not None:
                facts.append(CardValidityChanged(
                    person_ref=resident.person_ref, card_number=card["card_number"],
                    expires_on=date.fromisoformat(card["expires_on"]),
                    certificate_expires_on=date.fromisoformat(card["certificate_expires_on"]), effective_on=effective_on,
                ))
            return facts
    raise ValueError(f"unknown change kind {change['kind']!r}")


async def invalidate_signing_certificate(deps: EnrollmentDeps, person_ref: str) -> bool:
    """A change to the four basic facts the signing certificate carries (name, address, date of
    birth, sex) invalidates the certificate of the person's card, if any."""
    card = await deps.store.held_card(person_ref)
    if card is None:
        return False
    await deps.store.invalidate_signing_certificate(card.card_number)
    return True


def signed_attributes(deps: EnrollmentDeps, attributes: ResidentAttributes) -> str:
    """A keyed digest of the attributes a new card's signing certificate is issued with."""
    return deps.vault.digest("signed-attributes", attributes.model_dump_json().encode())


async def invalidate_if_outdated(deps: EnrollmentDeps, card: Card | None, attributes: ResidentAttributes) -> None:
    """Invalidate the card's signing certificate if it was issued with other attributes than `attributes`.

    Run by a change after it wrote the resident, and by a new card after it was stored: a card
    built from the attributes read before a change, and stored while the change ran, is caught by
    one of the two (the change's own invalidation, before its write, cannot see that card)."""
    if (card is not None and card.signing_certificate_valid and card.signed_attributes is not None
            and card.signed_attributes != signed_attributes(deps, attributes)):
        await deps.store.invalidate_signing_certificate(card.card_number)


@handlers.handles(RegisterResident)
async def register_resident(event: RegisterResident, ctx: HandlerContext[EnrollmentDeps]) -> Sequence[Fact] | EarlierFacts:
    deps = ctx.deps
    # Refused before anything is decided under the municipality's key: another's request id stays its own.
    wrong_sender = domain.check_municipality(event.municipality_code, ctx.envelope.source)
    if wrong_sender is not None:
        return resident_rejected(event, event.request_id, wrong_sender)
    key = f"registration/{event.municipality_code}/{event.request_id}"

    async def decide() -> Decision:
        number = event.my_number
        if number is None:  # a newborn or an arriving foreign resident: the service assigns one
            assignment_key = f"{event.municipality_code}/{event.request_id}"
            number = (await deps.store.assign_numbers([assignment_key], at=ctx.clock.now()))[assignment_key]
        resident = Resident(
            person_ref=deps.people.for_number(number),
            municipality_code=event.municipality_code,
            attributes=event.attributes,
            nationality=event.nationality,
            residence_status=event.residence_status,
            residence_period_end=event.residence_period_end,
        )
        summary = {"kind": "registration", "person_ref": resident.person_ref}
        if await deps.store.insert_resident(resident, number, registration_key=key):
            return _registration_facts(resident, None, event), summary
        for _ in range(_CONCURRENT_CHANGE_ATTEMPTS):
            stored = await deps.store.resident(resident.person_ref)
            assert stored is not None
            if stored.registered_by(key):  # a re-run (perhaps after later requests): this request wrote the record
                return _registration_facts(resident, stored.change_made_by(key), event), summary
            if stored.resident.is_deceased:
                return resident_rejected(event, event.request_id, domain.deceased(), resident.person_ref), summary
            if (someone_else := domain.held_by_someone_else(stored.resident.attributes, event.attributes)) is not None:
                return resident_rejected(event, event.request_id, someone_else), {"kind": "registration"}
            changes = domain.attribute_changes(stored.resident.attributes, **event.attributes.model_dump(include=set(domain.NAME_AND_ADDRESS)))
            change = None
            if changes:
                change = change_record(key, "attributes", resident, today(ctx.clock), changed=sorted(changes),
                                       signing_certificate_invalidated=await invalidate_signing_certificate(deps, resident.person_ref))
            if await deps.store.update_registration(resident, registration_key=key, change=change, version=stored.version):
                if change is not None:
                    await invalidate_if_outdated(deps, await deps.store.held_card(resident.person_ref), resident.attributes)
                return _registration_facts(resident, change, event), summary
            # Changed meanwhile (by this request, run at once by a second consumer, or another): look again.
        raise ConcurrentChange(f"{key}: the resident kept changing")

    return await decide_once(deps, key, event, ctx, decide)


def _registration_facts(resident: Resident, change: dict[str, Any] | None, event: RegisterResident) -> list[Fact]:
    """The facts of a registration: the resident as the request registers them (what the record
    holds right after it), and the name or address change it made, if any."""
    facts: list[Fact] = [
        ResidentRegistered(
            person_ref=resident.person_ref, municipality_code=resident.municipality_code, attributes=resident.attributes,
            nationality=resident.nationality, residence_status=resident.residence_status,
            residence_period_end=resident.residence_period_end, request_id=event.request_id,
            number_assigned=event.my_number is None,
        )
    ]
    if change is not None:
        facts += change_facts(resident, change)
    return facts


class ChangedMeanwhile:
    """A resident change found the record changed since it was read, and wrote nothing."""


CHANGED_MEANWHILE = ChangedMeanwhile()


@dataclass(frozen=True)
class ChangeRequestId:
    """A name or address change, or a correction, sent with the municipality's own request id
    (optional in the contract, session 17): decided once under `key` (request type, sender and
    request id). The change it writes keeps the key and the request's fingerprint, so a retry
    that runs before the outcome was recorded (a crash in between) still finds the change made."""

    key: str
    fingerprint: str

    def marks(self) -> dict[str, str]:
        """What the resident's change record keeps of the request."""
        return {"request": self.key, "request_fingerprint": self.fingerprint}


def change_request_id(deps: EnrollmentDeps, event: ChangeResidentAttributes | CorrectResidentRecord | RecordPeriodOfStay,
                      ctx: HandlerContext[EnrollmentDeps], request_type: str) -> ChangeRequestId | None:
    if event.request_id is None:
        return None
    return ChangeRequestId(f"{request_type}/{ctx.envelope.source}/{event.request_id}", request_fingerprint(deps, event))


ResidentChangeRequest = ChangeResidentAttributes | CorrectResidentRecord | RecordPeriodOfStay | RecordMoveAbroad | RecordDeath
ResidentChange = Callable[[StoredResident, str], Awaitable[list[Fact] | EarlierFacts | Rejection | ChangedMeanwhile]]


async def _resident_change(
    event: ResidentChangeRequest,
    ctx: HandlerContext[EnrollmentDeps],
    change: ResidentChange,
    request: ChangeRequestId | None = None,
) -> Sequence[Fact] | EarlierFacts:
    """Shared steps of the registry changes (`_make_change`); one sent with a request id is decided
    once under it, so a retry under any event id gets the first facts with the ids they had."""
    if request is None:
        return await _make_change(event, ctx, change, None)

    async def decide() -> Decision:
        return await _make_change(event, ctx, change, request), {"kind": "resident_change"}

    return await decide_once(ctx.deps, request.key, event, ctx, decide)


async def _make_change(
    event: ResidentChangeRequest,
    ctx: HandlerContext[EnrollmentDeps],
    change: ResidentChange,
    request: ChangeRequestId | None,
) -> list[Fact] | EarlierFacts:
    """Find the resident, recognise a re-run (of this event, or of its request id under another
    event), refuse a municipality that does not keep the record, then make the change.

    A change is written only if the record is still as it was read. When it is not (another
    request changed it, or this same request ran at once in a second consumer during a
    rebalance), the change reads again: either it finds itself done, or it decides again on
    what is there now, so a stale run never writes back an older record.
    """
    key = f"change/{ctx.envelope.id}"
    request_id = getattr(event, "request_id", None) or ctx.envelope.id  # as a refusal names the request
    for _ in range(_CONCURRENT_CHANGE_ATTEMPTS):
        stored = await ctx.deps.resident_by_number(event.my_number)
        if stored is None:
            return resident_rejected(event, request_id, domain.unknown_resident())
        done = stored.change_made_by(key) or (stored.change_requested_as(request.key) if request else None)
        if done is not None:  # a re-run, perhaps after later changes
            return await _change_made(ctx, stored, done, request)
        wrong_sender = domain.check_municipality_of_residence(stored.resident, ctx.envelope.source)
        if wrong_sender is not None:
            return resident_rejected(event, request_id, wrong_sender)  # no person reference for another municipality
        outcome = await change(stored, key)
        if isinstance(outcome, ChangedMeanwhile):
            continue
        if isinstance(outcome, Rejection):
            # A record that differs from what the request says it shows is most likely someone else's.
            someone_else = outcome.reason is RejectionReason.record_differs
            return resident_rejected(event, request_id, outcome, None if someone_else else stored.person_ref)
        return outcome
    raise ConcurrentChange(f"{key}: the resident kept changing")


async def _change_made(ctx: HandlerContext[EnrollmentDeps], stored: StoredResident, done: dict[str, Any],
                       request: ChangeRequestId | None) -> list[Fact] | EarlierFacts:
    """The facts of a change already made, given again: to a re-run of its event after a crash, or
    to a retry of its request id whose outcome a crash left unrecorded (under the first event's
    ids). A death or a move abroad finishes (or finds) the card's revocation first."""
    if request is not None and done.get("request") == request.key and done.get("request_fingerprint") != request.fingerprint:
        raise ReusedRequestId(f"{request.key} was already decided for different content")
    first_key = done["key"]
    facts = change_facts(stored.resident, done)
    if done["kind"] == "period_of_stay":  # written first: finish the card's new validity
        await _card_follows_period_of_stay(ctx.deps, stored.resident, done)
    elif _left_as_it_was(stored.resident, done):  # written first: finish (or find) the card's revocation
        facts += await _end_card(ctx.deps, stored.resident, first_key, ctx.clock)
    else:
        moved = await ctx.deps.store.card_moved_by(first_key)
        facts += [domain.transition_fact(moved)] if moved else []
    if first_key == f"change/{ctx.envelope.id}":
        return facts
    return EarlierFacts(first_key.removeprefix("change/"), facts)


@handlers.handles(ChangeResidentAttributes)
async def change_resident_attributes(event: ChangeResidentAttributes, ctx: HandlerContext[EnrollmentDeps]) -> Sequence[Fact] | EarlierFacts:
    """A name or address change within the municipality; it invalidates the card's signing
    certificate. Only the municipality of residence may send it; a move to another municipality is
    that municipality's `RegisterResident`.

    Sent again under a new event id (a retry after a timeout), it gets the first facts under the ids
    they had and never puts an older value back over a later change: it is decided once by its
    request id, or, without one, known by the same values and effective day as a change that a
    later change has followed (a real move back to an earlier address has another effective day)."""
    deps = ctx.deps
    request = change_request_id(deps, event, ctx, "attribute-change")

    async def change(stored: StoredResident, key: str) -> list[Fact] | EarlierFacts | Rejection | ChangedMeanwhile:
        resident = stored.resident
        if request is None:
            requested = {field: value for field in domain.NAME_AND_ADDRESS if (value := getattr(event, field)) is not None}
            if earlier := await _told_again(deps, stored, "attributes", event.effective_on, requested, superseded_only=True):
                return earlier
        if resident.is_deceased:
            return domain.deceased()
        changes = domain.attribute_changes(
            resident.attributes, name_kanji=event.name_kanji, name_kana=event.name_kana, address=event.address
        )
        if not changes:
            return []  # nothing changes (e.g. the same change replayed): nothing to say
        if "address" in changes and resident.lives_abroad:
            return Rejection(RejectionReason.resident_state,
                             "the resident lives abroad: a return to Japan is registered with RegisterResident")
        return await _change_attributes(deps, stored, key, "attributes", changes, event.effective_on, request)

    return await _resident_change(event, ctx, change, request)


@handlers.handles(CorrectResidentRecord)
async def correct_resident_record(event: CorrectResidentRecord, ctx: HandlerContext[EnrollmentDeps]) -> Sequence[Fact] | EarlierFacts:
    """A date of birth or sex on record put right. Told as a change of the attributes; an issued
    card is not changed (its signing certificate is invalidated; the holder asks for a reissue).
    Sent again under a new event id, it is recognised as a name or address change is (by its
    request id, or by the same values and effective day)."""
    deps = ctx.deps
    request = change_request_id(deps, event, ctx, "correction")

    async def change(stored: StoredResident, key: str) -> list[Fact] | EarlierFacts | Rejection | ChangedMeanwhile:
        resident = stored.resident
        if request is None:
            requested = {field: value for field, value in (("date_of_birth", event.date_of_birth), ("sex", event.sex))
                         if value is not None}
            if earlier := await _told_again(deps, stored, "correction", event.effective_on, requested, superseded_only=True):
                return earlier
        if resident.is_deceased:
            return domain.deceased()
        plan = domain.plan_correction(resident.attributes, date_of_birth=event.date_of_birth, sex=event.sex,
                                      date_of_birth_on_record=event.date_of_birth_on_record, sex_on_record=event.sex_on_record)
        if isinstance(plan, Rejection):
            return plan
        if not plan:
            return []  # the record already says so (e.g. the same correction sent again): nothing to say
        return await _change_attributes(deps, stored, key, "correction", plan, event.effective_on, request,
                                        reason=event.reason.value)

    return await _resident_change(event, ctx, change, request)


async def _change_attributes(
    deps: EnrollmentDeps, stored: StoredResident, key: str, kind: str, changes: dict[str, Any], effective_on: date,
    request: ChangeRequestId | None, **details: Any,
) -> list[Fact] | ChangedMeanwhile:
    """Write new attributes with the record of the change (compare-and-set), and give its facts."""
    resident = stored.resident
    changed = replace(resident, attributes=resident.attributes.model_copy(update=changes))
    if request is not None:
        details |= request.marks()
    record = change_record(key, kind, changed, effective_on, changed=sorted(changes), **details,
                           signing_certificate_invalidated=await invalidate_signing_certificate(deps, resident.person_ref))
    if not await deps.store.change_resident(changed, change=record, version=stored.version):
        return CHANGED_MEANWHILE
    await invalidate_if_outdated(deps, await deps.store.held_card(resident.person_ref), changed.attributes)
    return change_facts(changed, record)


@handlers.handles(RecordPeriodOfStay)
async def record_period_of_stay(event: RecordPeriodOfStay, ctx: HandlerContext[EnrollmentDeps]) -> Sequence[Fact] | EarlierFacts:
    """A renewed or changed period of stay, or a new status of residence: the resident takes it, and
    the card they hold expires on the earlier of the birthday rule and the new period end.

    The resident is written first, with what the card becomes, then the card (compare-and-set on
    the validity it had): a re-run finds the change made and finishes the card. Sent again under a
    new event id, it is decided once by its request id, or, without one, known by the same status,
    period end and `effective_on` as a change recorded before, whose facts it gets again."""
    deps = ctx.deps
    request = change_request_id(deps, event, ctx, "period-of-stay")
    status, period_end = event.residence_status, event.residence_period_end

    async def change(stored: StoredResident, key: str) -> list[Fact] | EarlierFacts | Rejection | ChangedMeanwhile:
        resident = stored.resident
        if request is None and (earlier := _period_of_stay_recorded(stored, event)) is not None:
            return await _change_made(ctx, stored, earlier, None)
        if (refusal := domain.check_period_of_stay(resident, period_end, today(ctx.clock))) is not None:
            return refusal
        renewed = replace(resident, residence_status=status, residence_period_end=period_end)
        held = await deps.store.held_card(resident.person_ref)
        validity = domain.validity_with_period_of_stay(held, renewed, today(ctx.clock), deps.rules)
        if renewed == resident and validity is None:
            return []  # the record and the card already say so: nothing to say
        card = None
        if held is not None and validity is not None:
            card = {"card_number": held.card_number, "was_expires_on": held.expires_on.isoformat(),
                    "was_certificate_expires_on": held.certificate_expires_on.isoformat(),
                    "expires_on": validity.expires_on.isoformat(),
                    "certificate_expires_on": validity.certificate_expires_on.isoformat()}
        record = change_record(key, "period_of_stay", renewed, event.effective_on, residence_status=status,
                               residence_period_end=period_end.isoformat() if period_end else None, card=card,
                               **(request.marks() if request else {}))
        if not await deps.store.change_resident(renewed, change=record, version=stored.version):
            return CHANGED_MEANWHILE
        await _card_follows_period_of_stay(deps, renewed, record)
        return change_facts(renewed, record)

    return await _resident_change(event, ctx, change, request)


def _period_of_stay_recorded(stored: StoredResident, event: RecordPeriodOfStay) -> dict[str, Any] | None:
    """The last change recorded under another event with the request's status, period end and
    effective day (a partner's retry without a request id), or None."""
    period_end = event.residence_period_end.isoformat() if event.residence_period_end else None
    found = [change for change in stored.history
             if change.get("kind") == "period_of_stay" and change.get("effective_on") == event.effective_on.isoformat()
             and change.get("residence_status") == event.residence_status
             and change.get("residence_period_end") == period_end and str(change.get("key", "")).startswith("change/")]
    return found[-1] if found else None


async def _card_follows_period_of_stay(deps: EnrollmentDeps, resident: Resident, change: dict[str, Any]) -> None:
    """Give the card the validity a recorded change of the period of stay decided for it, while the
    resident is still as that change left them and the card still has the validity it had then
    (so a re-run after a later change never puts back an older expiry)."""
    card = change.get("card")
    period_end = resident.residence_period_end.isoformat() if resident.residence_period_end else None
    if card is None or (resident.residence_status, period_end) != (change["residence_status"], change["residence_period_end"]):
        return
    await deps.store.change_card_validity(
        card["card_number"],
        was=CardValidity(date.fromisoformat(card["was_expires_on"]), date.fromisoformat(card["was_certificate_expires_on"])),
        becomes=CardValidity(date.fromisoformat(card["expires_on"]), date.fromisoformat(card["certificate_expires_on"])),
    )


def _date_or_none(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


@handlers.handles(RecordMoveAbroad)
async def record_move_abroad(event: RecordMoveAbroad, ctx: HandlerContext[EnrollmentDeps]) -> Sequence[Fact] | EarlierFacts:
    deps = ctx.deps

    async def change(stored: StoredResident, key: str) -> list[Fact] | EarlierFacts | Rejection | ChangedMeanwhile:
        resident = stored.resident
        if resident.is_deceased:
            return domain.deceased()
        if resident.lives_abroad:
            if resident.moved_abroad_on == event.moved_on:  # the same move, told again
                earlier = await _told_again(deps, stored, "moved_abroad", event.moved_on)
                return earlier or [ResidentMovedAbroad(person_ref=resident.person_ref, attributes=resident.attributes,
                                                       moved_on=event.moved_on)]
            return Rejection(RejectionReason.resident_state, "the resident is already recorded as living abroad")
        moved = replace(
            resident,
            moved_abroad_on=event.moved_on,
            destination_country=event.destination_country,
            attributes=resident.attributes.model_copy(update={"address": domain.moved_abroad_address(event.moved_on)}),
        )
        record = change_record(key, "moved_abroad", moved, event.moved_on,
                               signing_certificate_invalidated=await invalidate_signing_certificate(deps, resident.person_ref))
        if not await deps.store.change_resident(moved, change=record, version=stored.version):
            return CHANGED_MEANWHILE
        # Written first, as a death is: a card stored meanwhile sees the move and ends itself.
        await invalidate_if_outdated(deps, await deps.store.held_card(resident.person_ref), moved.attributes)
        return change_facts(moved, record) + await _end_card(deps, moved, key, ctx.clock)

    return await _resident_change(event, ctx, change)


@handlers.handles(RecordDeath)
async def record_death(event: RecordDeath, ctx: HandlerContext[EnrollmentDeps]) -> Sequence[Fact] | EarlierFacts:
    deps = ctx.deps

    async def change(stored: StoredResident, key: str) -> list[Fact] | EarlierFacts | Rejection | ChangedMeanwhile:
        resident = stored.resident
        if resident.is_deceased:
            if resident.deceased_on == event.died_on:  # the same death, told again
                earlier = await _told_again(deps, stored, "deceased", event.died_on)
                return earlier or [ResidentDeceased(person_ref=resident.person_ref, died_on=event.died_on)]
            return domain.deceased()
        # The death first, then the card: an application or a reissue that issues a card meanwhile
        # looks at the resident after its card is stored, so one of the two always sees the other
        # (before, a card issued between this revocation and the death's write stayed active). A
        # re-run finds the death recorded and finishes the revocation by this request's key.
        deceased = replace(resident, deceased_on=event.died_on)
        record = change_record(key, "deceased", deceased, event.died_on)
        if not await deps.store.change_resident(deceased, change=record, version=stored.version):
            return CHANGED_MEANWHILE
        return change_facts(resident, record) + await _end_card(deps, deceased, key, ctx.clock)

    return await _resident_change(event, ctx, change)


async def _told_again(
    deps: EnrollmentDeps, stored: StoredResident, kind: str, effective_on: date,
    requested: dict[str, Any] | None = None, *, superseded_only: bool = False,
) -> EarlierFacts | None:
    """A registry change sent again under a new event id without a request id (a partner's retry):
    the facts the first one gave (the card's revocation with the death), under the ids they had,
    so the services that keep copies apply them once. The first one is the last change recorded
    of this kind and day that left the values `requested` (what a name, address or correction
    request sets) and changed nothing else; with `superseded_only`, only if a later change
    followed it (a record that still shows it needs nothing). None for a record that does not
    name the first event."""
    history = stored.history
    found = [index for index, change in enumerate(history)
             if change.get("kind") == kind and change.get("effective_on") == effective_on.isoformat()
             and str(change.get("key", "")).startswith("change/") and _repeats(change, requested or {})]
    if not found or (superseded_only and found[-1] == len(history) - 1):
        return None
    change = history[found[-1]]
    moved = await deps.store.card_moved_by(change["key"])
    facts = change_facts(stored.resident, change) + ([domain.transition_fact(moved)] if moved else [])
    return EarlierFacts(change["key"].removeprefix("change/"), facts)


def _repeats(change: dict[str, Any], requested: dict[str, Any]) -> bool:
    left = ResidentAttributes.model_validate(change["attributes"]) if "attributes" in change else None
    return domain.repeats_change(change.get("changed", ()), left, requested)


def _left_as_it_was(resident: Resident, change: dict[str, Any]) -> bool:
    """Whether the resident is still as a death or a move abroad left them (a death always is; a
    move abroad until the person registers in Japan again, after which its card is not touched)."""
    if change["kind"] == "deceased":
        return True
    return change["kind"] == "moved_abroad" and resident.moved_abroad_on == date.fromisoformat(change["effective_on"])


async def _end_card(deps: EnrollmentDeps, resident: Resident, key: str, clock: Clock) -> list[Fact]:
    """Revoke the card the person holds, if any, when the person may hold none (dead, or moved
    abroad without the right to keep it), by the death's or the move's request key."""
    reason = domain.card_end_reason(resident, deps.rules)
    if reason is None:
        return []
    revoked = await move_card(deps, resident, CardAction.revoke, key, clock, reason=reason)  # or no card
    return [domain.transition_fact(*revoked)] if isinstance(revoked, tuple) else []


async def settle_new_card(deps: EnrollmentDeps, card: Card, key: str, clock: Clock) -> Card | None:
    """A card just stored (by an application or a reissue) for a person whose death, or a foreign
    national's move abroad, was recorded meanwhile is revoked at once; returns the card as
    revoked, or None when the person may hold it. Its signing certificate is invalidated if the
    attributes changed since it was built.

    Pairs with `record_death` and `record_move_abroad`, which write the resident before they revoke
    the held card: when their revocation ran before this card was stored, this check sees the
    change. If the change revoked the card itself, that revocation is returned."""
    stored = await deps.store.resident(card.person_ref)
    if stored is not None:  # and a name, address, date of birth or sex changed meanwhile invalidates its signing certificate
        await invalidate_if_outdated(deps, card, stored.resident.attributes)
    reason = domain.holds_no_card(stored.resident) if stored is not None else None
    if stored is None or reason is None:
        return None
    result = await move_card(deps, stored.resident, CardAction.revoke, f"{key}/card-ended", clock, reason=reason)
    if isinstance(result, tuple):
        return result[0]
    current = await deps.store.card(card.card_number)
    return current if current is not None and current.state is CardState.revoked else None


@handlers.handles(DelegatePostOffice)
async def delegate_post_office(event: DelegatePostOffice, ctx: HandlerContext[EnrollmentDeps]) -> Sequence[Fact]:
    wrong_sender = domain.check_municipality(event.municipality_code, ctx.envelope.source)
    if wrong_sender is not None:
        return resident_rejected(event, ctx.envelope.id, wrong_sender)
    await ctx.deps.store.set_delegation(event.municipality_code, event.post_office_id, active=event.active, at=ctx.clock.now())
    return [PostOfficeDelegationChanged(municipality_code=event.municipality_code, post_office_id=event.post_office_id,
                                        active=event.active)]


# --- applications ---------------------------------------------------------------------------


@handlers.handles(ApplyForCard)
async def apply_for_card(event: ApplyForCard, ctx: HandlerContext[EnrollmentDeps]) -> Sequence[Fact] | EarlierFacts:
    deps = ctx.deps
    key = f"application/{event.application_id}"

    def rejected(rejection: Rejection, person_ref: str | None = None) -> Decision:
        summary = {"kind": "application", "status": "rejected", "person_ref": person_ref,
                   "reason": rejection.reason.value, "message": rejection.message}
        return [domain.rejected_application(event, rejection, person_ref)], summary

    async def decide() -> Decision:
        number = typed_number(event.my_number)
        if isinstance(number, Rejection):
            return rejected(number)
        stored = await deps.resident_by_number(number)
        if stored is None:
            return rejected(domain.unknown_resident())
        resident = stored.resident
        wrong_sender = domain.check_sender(event, ctx.envelope.source)
        if wrong_sender is not None:
            return rejected(wrong_sender, resident.person_ref)
        issued = await deps.store.card_of_application(key)
        if issued is not None:  # run again after a crash, perhaps after the card moved on: the facts it gave
            return accepted(issued, await deps.store.card_moved_by(f"{key}/card-ended"))
        delegated = event.channel is Channel.post_office and await deps.store.is_delegated(resident.municipality_code, event.office_id)
        review = domain.review_application(event, resident, post_office_delegated=delegated, rules=deps.rules)
        if not isinstance(review, Rejection):  # the card is issued today: a period of stay that ended since the
            review = domain.period_of_stay_ended(resident, today(ctx.clock)) or review  # application ends it
        if isinstance(review, Rejection):
            # Run again after a crash, an application that stored its card before the holder's death (or
            # move abroad) was recorded finishes as it did: the card issued (and revoked), not a refusal.
            claim = await deps.store.card_claim(resident.person_ref)
            if claim is not None and claim["application_id"] == event.application_id:
                review = domain.Approval(issuing_municipality=resident.municipality_code, photo_less=event.photo_ref is None)
        if isinstance(review, Rejection):
            return rejected(review, resident.person_ref)
        for _ in range(_CONCURRENT_CHANGE_ATTEMPTS):
            claim = await deps.store.claim_card_slot(
                resident.person_ref, application_id=event.application_id, card_number=domain.new_card_number(),
                at=ctx.clock.now(),
            )
            if claim is None:
                continue  # the slot was freed between our insert and our read: try again
            if claim["application_id"] != event.application_id:
                holder = await deps.store.card(claim["card_number"])
                if holder is not None and holder.state in (CardState.returned, CardState.revoked, CardState.expired):
                    await deps.store.release_card_slot(resident.person_ref, holder.card_number)  # left by a crash
                    continue
                return rejected(domain.duplicate(event.application_id), resident.person_ref)
            await deps.store.note_card_of_application(key, claim["card_number"])
            card = await deps.store.insert_card(
                domain.new_card(
                    card_number=claim["card_number"], resident=resident, issued_on=today(ctx.clock),
                    photo_less=review.photo_less, issuing_municipality=review.issuing_municipality,
                    origin_key=key, application_id=event.application_id, rules=deps.rules,
                    signed_attributes=signed_attributes(deps, resident.attributes),
                )
            )
            # A death (or a move abroad) recorded meanwhile may have found no card to revoke: revoked here.
            return accepted(card, await settle_new_card(deps, card, key, ctx.clock))
        raise ConcurrentChange(f"{key}: the person's card slot kept changing")

    def accepted(card: Card, revoked: Card | None) -> Decision:
        summary = {"kind": "application", "status": "accepted", "person_ref": card.person_ref,
                   "card_number": card.card_number}
        facts: list[Fact] = list(domain.accepted_application(event, card))
        return facts + ([domain.transition_fact(revoked)] if revoked is not None else []), summary

    return await decide_once(deps, key, event, ctx, decide)


# --- the card lifecycle ---------------------------------------------------------------------


async def move_card(
    deps: EnrollmentDeps,
    resident: Resident,
    action: CardAction,
    key: str,
    clock: Clock,
    *,
    reason: str | None = None,
    photo_ref: str | None = None,
    requested_on: date | None = None,
) -> tuple[Card, Card | None] | Rejection:
    """Move the person's card by `action` (compare-and-set), then finish what follows from it.

    Returns the moved card and its successor (after a reissue), or why it cannot move. A re-run finds the card this request
    already moved by its key, and only finishes the follow-up steps again.
    """
    for _ in range(_CONCURRENT_CHANGE_ATTEMPTS):
        moved = await deps.store.card_moved_by(key)
        if moved is None:
            held = await deps.store.held_card(resident.person_ref)
            review = domain.review_transition(held, action)
            if isinstance(review, Rejection):
                # The same request, run at the same moment by another consumer (one that has not yet
                # noticed a rebalance took its partition), may have moved the card between our two
                # reads: then the card's state refuses the action because of this request itself.
                moved = await deps.store.card_moved_by(key)
                if moved is None:
                    return review
                return moved, await finish_move(deps, resident, moved, clock, photo_ref=photo_ref)
            assert held is not None
            if action is CardAction.reissue:
                assert requested_on is not None
                if photo_ref is None and domain.photo_required(resident.attributes.date_of_birth, requested_on, deps.rules):
                    return Rejection(RejectionReason.photo_missing, "a facial photo is required for the new card")
                if (ended := domain.period_of_stay_ended(resident, today(clock))) is not None:
                    return ended  # the new card would be expired on the day it is issued
            request = LastRequest(key=key, action=action, at=clock.now(), reason=reason)
            replaced_by = domain.new_card_number() if action is CardAction.reissue else None
            moved = await deps.store.transition_card(held, action, request, replaced_by=replaced_by)
            if moved is None:
                continue  # another request moved the card meanwhile: look again
        return moved, await finish_move(deps, resident, moved, clock, photo_ref=photo_ref)
    raise ConcurrentChange(f"{key}: the card kept changing")


async def finish_move(deps: EnrollmentDeps, resident: Resident, moved: Card, clock: Clock, *, photo_ref: str | None) -> Card | None:
    """The steps after a card moved, each idempotent: free the slot, or issue the successor and hand it the slot."""
    if moved.state in (CardState.returned, CardState.revoked, CardState.expired):
        await deps.store.release_card_slot(moved.person_ref, moved.card_number)
        return None
    if moved.state is CardState.reissued:
        assert moved.replaced_by is not None and moved.last_request is not None
        successor = await deps.store.insert_card(
            domain.new_card(
                card_number=moved.replaced_by, resident=resident, issued_on=today(clock), photo_less=photo_ref is None,
                issuing_municipality=moved.issuing_municipality, origin_key=moved.last_request.key,
                application_id=moved.application_id, rules=deps.rules, previous_card_number=moved.card_number,
                signed_attributes=signed_attributes(deps, resident.attributes),
            )
        )
        await deps.store.move_card_slot(moved.person_ref, from_card=moved.card_number, to_card=successor.card_number)
        return successor
    return None


def card_request_rejected(event: CardRequest, rejection: Rejection, person_ref: str | None = None) -> Decision:
    summary = {"kind": "card_request", "status": "rejected", "person_ref": person_ref,
               "reason": rejection.reason.value, "message": rejection.message}
    fact = CardRequestRejected(person_ref=person_ref, request_id=event.request_id, request_type=event.event_type,
                               reason=rejection.reason, message=rejection.message)
    return [fact], summary


# The card fact each card request gives first when it is carried out.
_FIRST_FACT_OF = {
    CardSuspended: CardAction.report_lost, CardResumed: CardAction.report_found, CardReissued: CardAction.reissue,
    CardReturned: CardAction.return_card, CardRevoked: CardAction.revoke,
}


async def card_request_key(deps: EnrollmentDeps, event: CardRequest, action: CardAction) -> str:
    """The key a card request is decided once under: its type, the office and the office's request
    id (session 17), so a loss report and a found report that share a request id are two requests.

    Earlier code left the type out (`card-request/<office>/<request id>`). A request of this type
    decided under that key, or whose card move a crash left there before its outcome, is still
    known by it: a retry gets its first facts, and the same request id with other content is still
    refused. A request of another type under it is not this one."""
    key = f"card-request/{action.value}/{event.office_id}/{event.request_id}"
    earlier_key = f"card-request/{event.office_id}/{event.request_id}"
    # (Never both: a request of this type found under the earlier key is decided under it for good.)
    earlier = await deps.store.outcome(earlier_key)
    if earlier is not None:
        return earlier_key if _card_action_of(earlier.facts) is action else key
    moved = await deps.store.card_moved_by(earlier_key)
    if moved is not None and moved.last_request is not None and moved.last_request.action is action:
        return earlier_key
    return key


def _card_action_of(facts: Sequence[Fact]) -> CardAction | None:
    """The card request a recorded outcome decided, told by its first fact."""
    first = facts[0] if facts else None
    if isinstance(first, CardRequestRejected):
        return next((action for action, request in _CARD_REQUESTS.items() if request.event_type == first.request_type), None)
    return _FIRST_FACT_OF.get(type(first))


_CARD_REQUESTS: dict[CardAction, type[CardRequest]] = {
    CardAction.report_lost: ReportCardLost, CardAction.report_found: ReportCardFound,
    CardAction.reissue: RequestCardReissue, CardAction.return_card: ReturnCard, CardAction.revoke: RevokeCard,
}


async def card_request(
    event: CardRequest, ctx: HandlerContext[EnrollmentDeps], action: CardAction, **details: Any
) -> Sequence[Fact] | EarlierFacts:
    """A card request comes from the office it names (refused before anything is decided under that
    office's key, so its request id stays its own). A loss is reported to any municipality or the
    24-hour hotline; finding, reissue, return and revocation are the municipality of residence's."""
    deps = ctx.deps
    if event.office_id != ctx.envelope.source:
        return card_request_rejected(event, Rejection(
            RejectionReason.channel_not_allowed,
            f"{ctx.envelope.source} may not send a request as {event.office_id}: an office acts in its own name only"))[0]
    key = await card_request_key(deps, event, action)

    async def decide() -> Decision:
        number = typed_number(event.my_number)
        if isinstance(number, Rejection):
            return card_request_rejected(event, number)
        stored = await deps.resident_by_number(number)
        if stored is None:
            return card_request_rejected(event, domain.unknown_resident())
        resident = stored.resident
        elsewhere = domain.check_card_office(resident, ctx.envelope.source, action, deps.rules)
        if elsewhere is not None and await deps.store.card_moved_by(key) is None:  # (a re-run after a move finishes)
            return card_request_rejected(event, elsewhere)  # most likely a mistyped number: no person reference
        if resident.is_deceased and action is not CardAction.return_card and await deps.store.card_moved_by(key) is None:
            return card_request_rejected(event, domain.deceased(), resident.person_ref)  # (a re-run finishes its move)
        result = await move_card(deps, resident, action, key, ctx.clock, **details)
        if isinstance(result, Rejection):
            return card_request_rejected(event, result, resident.person_ref)
        moved, successor = result
        summary = {"kind": "card_request", "status": "done", "person_ref": resident.person_ref,
                   "card_number": moved.card_number, "card_state": moved.state.value}
        facts: list[Fact] = [domain.transition_fact(moved, successor)]
        if successor is not None:  # a new card: revoked at once if the holder's death or move was recorded meanwhile
            revoked = await settle_new_card(deps, successor, key, ctx.clock)
            facts += [domain.transition_fact(revoked)] if revoked is not None else []
        return facts, summary

    return await decide_once(deps, key, event, ctx, decide)


@handlers.handles(ReportCardLost)
async def report_card_lost(event: ReportCardLost, ctx: HandlerContext[EnrollmentDeps]) -> Sequence[Fact] | EarlierFacts:
    """A lost card is suspended at once."""
    return await card_request(event, ctx, CardAction.report_lost)


@handlers.handles(ReportCardFound)
async def report_card_found(event: ReportCardFound, ctx: HandlerContext[EnrollmentDeps]) -> Sequence[Fact] | EarlierFacts:
    return await card_request(event, ctx, CardAction.report_found)


@handlers.handles(RequestCardReissue)
async def request_card_reissue(event: RequestCardReissue, ctx: HandlerContext[EnrollmentDeps]) -> Sequence[Fact] | EarlierFacts:
    return await card_request(event, ctx, CardAction.reissue, photo_ref=event.photo_ref, requested_on=event.requested_on)


@handlers.handles(ReturnCard)
async def return_card(event: ReturnCard, ctx: HandlerContext[EnrollmentDeps]) -> Sequence[Fact] | EarlierFacts:
    return await card_request(event, ctx, CardAction.return_card)


@handlers.handles(RevokeCard)
async def revoke_card(event: RevokeCard, ctx: HandlerContext[EnrollmentDeps]) -> Sequence[Fact] | EarlierFacts:
    return await card_request(event, ctx, CardAction.revoke, reason=event.reason)


# --- residence certificates at convenience-store kiosks -------------------------------------


@handlers.handles(RequestResidenceCertificate)
async def request_residence_certificate(event: RequestResidenceCertificate, ctx: HandlerContext[EnrollmentDeps]) -> Sequence[Fact] | EarlierFacts:
    """Answer one kiosk request. Everything is keyed to this request: a render that times out or
    fails aborts the whole request (a refusal, no PDF), and an answer only ever goes to this
    kiosk under this request id."""
    deps = ctx.deps
    key = f"certificate/{event.kiosk_id}/{event.request_id}"

    def refused(refusal: Refusal) -> Decision:
        fact = ResidenceCertificateRefused(kiosk_id=event.kiosk_id, request_id=event.request_id,
                                           reason=refusal.reason, message=refusal.message)
        return [fact], {"kind": "certificate", "status": "refused", "reason": refusal.reason.value}

    async def decide() -> Decision:
        if ctx.envelope.source != f"kiosk/{event.kiosk_id}":
            return refused(Refusal(CertificateRefusal.not_this_kiosk, "a kiosk may only ask for its own terminal"))
        if not event.pin_verified:
            return refused(Refusal(CertificateRefusal.pin_check_failed, "the PIN check failed at the kiosk"))
        card = await deps.store.card_by_certificate(event.certificate_id)
        stored = await deps.store.resident(card.person_ref) if card else None
        resident = stored.resident if stored else None
        refusal = domain.certificate_refusal(card, resident, today(ctx.clock))
        if refusal is not None:
            return refused(refusal)
        assert resident is not None
        people: tuple = (resident.attributes,)
        if event.document is CertificateDocument.residence_certificate_with_household:
            neighbours = await deps.store.residents_at(resident.municipality_code, resident.attributes.address)
            people = domain.household(resident, neighbours)
        certificate = ResidenceCertificate(
            document=event.document, municipality_code=resident.municipality_code, people=people,
            issued_at=ctx.clock.now(), verification_code=domain.new_verification_code(),
            kiosk_id=event.kiosk_id, request_id=event.request_id,
        )
        try:
            async with deps.render_slots:
                pdf = await asyncio.wait_for(deps.renderer.render(certificate), timeout=deps.render_timeout_seconds)
        except TimeoutError:
            return refused(Refusal(CertificateRefusal.timed_out, "the certificate was not ready in time; nothing was issued"))
        except Exception:
            log.exception("rendering a residence certificate failed", extra={"kiosk_id": event.kiosk_id})
            return refused(Refusal(CertificateRefusal.failed, "the certificate could not be produced; nothing was issued"))
        digest = base64.urlsafe_b64encode(hashlib.sha256(pdf).digest()).decode().rstrip("=")
        saved = await deps.store.save_certificate(
            key, kiosk_id=event.kiosk_id, request_id=event.request_id, document=event.document.value, pdf=pdf,
            pdf_sha256=digest, verification_index=deps.vault.digest("verification-code", certificate.verification_code.encode()),
            issued_at=certificate.issued_at,
        )
        fact = ResidenceCertificateIssued(
            kiosk_id=event.kiosk_id, request_id=event.request_id, document=event.document, issued_at=saved["issued_at"],
            pickup_path=f"/kiosks/{event.kiosk_id}/certificates/{event.request_id}", pdf_sha256=saved["pdf_sha256"],
        )
        return [fact], {"kind": "certificate", "status": "issued"}

    return await decide_once(deps, key, event, ctx, decide)


# --- operator commands ----------------------------------------------------------------------

_BATCH = 500


async def run_expiry_sweep(service: EventService[EnrollmentDeps], *, as_of: date | None = None) -> dict[str, Any]:
    """Expire every held card past its expiry date and publish one CardExpired per card.

    Safe to run twice, and from several instances: the compare-and-set expires a card once,
    and a card whose fact is not yet published keeps a mark until it is (same event id each time).
    """
    store = service.deps.store
    as_of = as_of or today(service.clock)
    expired = published = 0
    while batch := await store.held_cards_past_expiry(as_of, _BATCH):
        for card in batch:
            request = LastRequest(key=f"expiry/{card.card_number}", action=CardAction.expire, at=service.clock.now())
            moved = await store.transition_card(card, CardAction.expire, request)
            if moved is not None:
                await store.release_card_slot(moved.person_ref, moved.card_number)
                expired += 1
    while batch := await store.expired_cards_awaiting_fact(_BATCH):
        for card in batch:
            await service.publish_facts(
                [domain.transition_fact(card)], cause=service.synthetic_cause(f"card-expiry/{card.card_number}")
            )
            await store.expiry_fact_published(card.card_number)
            published += 1
    log.info("expiry sweep done", extra={"as_of": as_of.isoformat(), "expired": expired, "published": published})
    return {"as_of": as_of, "cards_expired": expired, "facts_published": published}


async def rotate_number_keys(store: EnrollmentStore) -> dict[str, Any]:
    """Re-encrypt every stored number under the current key (the operator's key-rotation command).

    Run it after putting a new key first in MYNUMBER_ENROLLMENT_NUMBER_KEYS; once it reports
    nothing left under the old keys, the old keys can be removed from the list.
    """
    re_encrypted = 0
    while batch := await store.sealed_under_old_keys(_BATCH):
        for collection, document in batch:
            re_encrypted += await store.reseal(collection, document)
    counts = await store.count_sealed_by_key()
    log.info("number keys rotated", extra={"current_key_id": store.vault.current_key_id, "re_encrypted": re_encrypted})
    return {"current_key_id": store.vault.current_key_id, "re_encrypted": re_encrypted, "records_by_key": counts}
