"""Licensing use cases: load from the store, let the domain decide, save, return the facts.

Police and transport-bureau requests arrive on the licensing request topic; the card and
resident facts come from the enrollment fact topic.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, timedelta

from mynumber_contracts import Event, Fact, ResidentAttributes
from mynumber_contracts.enrollment import (
    CardExpired,
    CardIssued,
    CardReissued,
    CardResumed,
    CardReturned,
    CardRevoked,
    CardSuspended,
    CardValidityChanged,
    ResidentAttributesChanged,
    ResidentDeceased,
    ResidentMovedAbroad,
    ResidentRegistered,
)
from mynumber_contracts.licensing import (
    CardUnusableReason,
    HolderChoice,
    RecordLicence,
    RecordLicenceOnNewCard,
    RegisterVehicle,
    RevokeLicence,
    SuspendLicence,
    TransferVehicle,
)

from services.kit.clock import today
from services.kit.idempotency import EarlierFacts
from services.kit.messaging import HandlerContext, HandlerRegistry
from services.kit.people import PersonReferences

from . import domain
from .domain import Card, CardStatus, Decision, FeeTable, Licence, japan_date
from .store import LicensingStore, Resident, retry_on_conflict


@dataclass(frozen=True)
class LicensingDeps:
    store: LicensingStore
    people: PersonReferences
    fees: FeeTable


Context = HandlerContext[LicensingDeps]
handlers = HandlerRegistry()


async def _apply(decision: Decision, save: Callable[[object], Awaitable[object]]) -> list[Fact]:
    if decision.saved is not None:
        await save(decision.saved)
    return decision.facts


async def _holder(
    event: RecordLicence | RecordLicenceOnNewCard, deps: LicensingDeps
) -> tuple[domain.Holder | Decision, Resident | None]:
    """The holder the police named, with the card they named or, failing that, the holder's current
    card; and, when no card was named, the resident record that card came from (the holder's)."""
    number_ref = deps.people.for_number(event.my_number) if event.my_number is not None else None
    if event.card_number is not None:
        card, resident = await deps.store.card(event.card_number), None
    else:
        resident = await deps.store.resident(number_ref)
        card = domain.current_card(resident.cards)
    return domain.identify_holder(event, number_ref=number_ref, card=card), resident


PartnerRequest = RecordLicence | RecordLicenceOnNewCard | SuspendLicence | RevokeLicence | RegisterVehicle | TransferVehicle


def _fingerprint(event: PartnerRequest, deps: LicensingDeps) -> str:
    """What makes a request the same request, with the holder's number as their reference (the number is not kept)."""
    content = event.model_dump(mode="json", exclude={"my_number"})
    if isinstance(event, RecordLicence | RecordLicenceOnNewCard) and event.my_number is not None:
        content["holder_ref"] = deps.people.for_number(event.my_number)
    return hashlib.sha256(json.dumps([event.event_type, content], sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def decided_once(use_case: Callable[[Event, Context], Awaitable[list[Fact]]]) -> Callable[[Event, Context], Awaitable[
        list[Fact] | EarlierFacts]]:
    """A partner's request decided once: sent again under a new event id (a retry after a timeout), it
    gets the facts decided then, with the ids they had, instead of being decided again on what has
    changed since (a licence recorded, then reissued onto a new card, was answered as recorded on the
    new card; a refusal could turn into a record). The same request id with other content is decided
    afresh, as before. A crash between the use case and its outcome runs the use case again, which
    recognises its own writes (request ids on the licence and the vehicle)."""

    async def once(event: Event, ctx: Context) -> list[Fact] | EarlierFacts:
        assert isinstance(event, PartnerRequest)
        store = ctx.deps.store
        key = f"{event.event_type}/{ctx.envelope.source}/{event.request_id}"
        fingerprint = _fingerprint(event, ctx.deps)
        outcome = await store.outcome(key)
        if outcome is None:
            facts = await use_case(event, ctx)
            outcome = await store.record_outcome(key, fingerprint=fingerprint, facts=facts, event_id=ctx.envelope.id)
            if outcome.fingerprint != fingerprint:  # another request under this id was recorded first
                return facts
        elif outcome.fingerprint != fingerprint:
            return await use_case(event, ctx)
        return EarlierFacts(outcome.event_id, outcome.facts)

    once.__name__, once.__doc__ = use_case.__name__, use_case.__doc__
    return once


# --- the police ---------------------------------------------------------------------------------


@handlers.handles(RecordLicence)
@decided_once
async def record_licence(event: RecordLicence, ctx: Context) -> list[Fact]:
    store = ctx.deps.store
    recorded: Licence | None = None  # the licence as this request recorded it (saved now, or before)
    saved_now = False
    read_before_cards: Resident | None = None  # the resident as read before the cards, when so (by the number)

    async def decide() -> list[Fact]:
        nonlocal recorded, saved_now, read_before_cards
        recorded, saved_now = None, False
        holder, read_before_cards = await _holder(event, ctx.deps)
        if isinstance(holder, Decision):
            return holder.facts
        number_holder = await store.licence_by_number(event.licence_number)
        current = await store.licence_of(holder.person_ref)
        resident = read_before_cards or await store.resident(holder.person_ref, with_cards=False)
        decision = domain.record_licence(
            event, holder,
            current=current,
            number_holder=number_holder.person_ref if number_holder else None,
            address=resident.address, holder_deceased=resident.deceased_on is not None,
            date_of_birth_on_record=resident.date_of_birth,
            fees=ctx.deps.fees, today=today(ctx.clock),
        )
        if decision.saved is not None:
            recorded, saved_now = await store.save_licence(decision.saved), True
        elif current is not None and current.recorded_by == event.request_id:
            recorded = current  # run again: it may still have to catch up (a crash before it did)
        return decision.facts

    facts = await retry_on_conflict(decide)
    if recorded is None:
        return facts
    saved: Licence | None = recorded

    async def catch_up() -> list[Fact]:
        nonlocal saved
        licence, saved = saved or await store.licence_of(recorded.person_ref), None  # read again after a lost race
        return await _caught_up(ctx, licence, event.request_id, saved_now=saved_now, read_before_cards=read_before_cards)

    return facts + await retry_on_conflict(catch_up)


_UNUSABLE = {CardStatus.suspended: CardUnusableReason.lost, CardStatus.revoked: CardUnusableReason.revoked,
             CardStatus.returned: CardUnusableReason.returned, CardStatus.expired: CardUnusableReason.expired}


async def _caught_up(ctx: Context, licence: Licence | None, request_id: str, *, saved_now: bool,
                     read_before_cards: Resident | None) -> list[Fact]:
    """What enrollment's facts taken in meanwhile do to the licence this request recorded.

    A card reissue or a move runs on the enrollment topic beside the police's request: it writes
    the card or the address, then reads the licence, while the request read the card and the
    address before it saved the licence. When the licence was new (or not on the card before),
    the fact's use case found nothing to change, and the licence was saved on a replaced card or
    with the old address. So, after its save, the request reads the resident again and does what
    the fact would have done: the re-recording on the holder's new card, the one-stop address
    change of a card-only licence, or the notice that a conventional one (alone or with the card)
    must be updated by its holder. Run again, it finds the licence caught up and changes nothing
    (the notice is given only by the run that saved the licence: a later move told it itself).
    A card lost, returned or revoked (the holder's death) meanwhile changes nothing on the licence
    (the roadside check reads the card's status), but the police are told, as the card's fact would
    have told them, when the licence was saved now on a card that is no longer active.

    A licence saved now on what was read of the resident before the cards (`read_before_cards`)
    needs none of this while the resident document is unchanged: one read instead of the resident
    and the cards again (`LicensingStore.resident_unchanged` says why that is enough)."""
    if licence is None or licence.recorded_by != request_id:
        return []  # a later request recorded the licence since (and catches up itself)
    if not licence.on_card and not saved_now:
        return []  # a conventional licence only, run again: nothing of a card to catch up, and the notice was given
    store = ctx.deps.store
    if saved_now and read_before_cards is not None and await store.resident_unchanged(licence.person_ref, read_before_cards):
        return []  # nothing of enrollment's about the holder was taken in between the reads and the save
    resident = await store.resident(licence.person_ref, with_cards=licence.on_card)
    day, facts = today(ctx.clock), []
    newest = domain.current_card(resident.cards)
    licence_card = next((card for card in resident.cards if card.card_number == licence.card_number), None)
    if saved_now and licence_card is not None and (reason := _UNUSABLE.get(licence_card.status_on(day))):
        since = licence_card.expires_on + timedelta(days=1) if reason is CardUnusableReason.expired else day
        facts += domain.card_unusable(licence, licence_card.card_number, reason, since)
    if (licence.on_card and newest is not None and newest.status_on(day) is CardStatus.active
            and newest.card_number not in (licence.card_number, licence.re_recording_card_number)):
        decision = domain.card_issued(licence, licence_card, newest.card_number, day)
        if decision.saved is not None:
            licence = await store.save_licence(decision.saved)
        facts += decision.facts
    if (resident.address is not None and licence.address != resident.address
            and (licence.holder_choice is HolderChoice.card_only or saved_now)):
        decision = domain.address_changed(licence, resident.address, resident.address_effective_on or day)
        if decision.saved is not None:
            await store.save_licence(decision.saved)
        facts += decision.facts
    return facts


@handlers.handles(RecordLicenceOnNewCard)
@decided_once
async def record_licence_on_new_card(event: RecordLicenceOnNewCard, ctx: Context) -> list[Fact]:
    store = ctx.deps.store

    async def decide() -> list[Fact]:
        holder, _ = await _holder(event, ctx.deps)
        if isinstance(holder, Decision):
            return holder.facts
        decision = domain.record_licence_on_new_card(
            event, holder, licence=await store.licence_by_number(event.licence_number), fees=ctx.deps.fees,
            today=today(ctx.clock),
        )
        return await _apply(decision, store.save_licence)

    return await retry_on_conflict(decide)


@handlers.handles(SuspendLicence)
@decided_once
async def suspend_licence(event: SuspendLicence, ctx: Context) -> list[Fact]:
    store = ctx.deps.store

    async def decide() -> list[Fact]:
        decision = domain.suspend_licence(event, await store.licence_by_number(event.licence_number))
        return await _apply(decision, store.save_licence)

    return await retry_on_conflict(decide)


@handlers.handles(RevokeLicence)
@decided_once
async def revoke_licence(event: RevokeLicence, ctx: Context) -> list[Fact]:
    store = ctx.deps.store

    async def decide() -> list[Fact]:
        decision = domain.revoke_licence(event, await store.licence_by_number(event.licence_number))
        return await _apply(decision, store.save_licence)

    return await retry_on_conflict(decide)


# --- the transport bureaus ------------------------------------------------------------------------


@handlers.handles(RegisterVehicle)
@decided_once
async def register_vehicle(event: RegisterVehicle, ctx: Context) -> list[Fact]:
    store = ctx.deps.store

    async def decide() -> list[Fact]:
        decision = domain.register_vehicle(
            event, await store.card(event.owner_card_number), await store.vehicle(event.vehicle_id)
        )
        return await _apply(decision, store.save_vehicle)

    return await retry_on_conflict(decide)


@handlers.handles(TransferVehicle)
@decided_once
async def transfer_vehicle(event: TransferVehicle, ctx: Context) -> list[Fact]:
    store = ctx.deps.store

    async def decide() -> list[Fact]:
        decision = domain.transfer_vehicle(
            event, await store.card(event.new_owner_card_number), await store.vehicle(event.vehicle_id)
        )
        return await _apply(decision, store.save_vehicle)

    return await retry_on_conflict(decide)


# --- enrollment: the card lifecycle ------------------------------------------------------------------


@handlers.handles(CardIssued)
async def card_issued(event: CardIssued, ctx: Context) -> list[Fact]:
    store = ctx.deps.store
    await store.save_card(Card(card_number=event.card_number, person_ref=event.person_ref, status=CardStatus.active,
                               issued_on=event.issued_on, expires_on=event.expires_on), fact_id=ctx.envelope.id)

    async def decide() -> list[Fact]:
        licence = await store.licence_of(event.person_ref)
        licence_card = await store.card(licence.card_number) if licence and licence.card_number else None
        decision = domain.card_issued(licence, licence_card, event.card_number, today(ctx.clock))
        return await _apply(decision, store.save_licence)

    return await retry_on_conflict(decide)


@handlers.handles(CardReissued)
async def card_reissued(event: CardReissued, ctx: Context) -> list[Fact]:
    store = ctx.deps.store
    await store.set_card_status(event.previous_card_number, CardStatus.replaced, person_ref=event.person_ref,
                                fact_id=ctx.envelope.id)
    await store.save_card(Card(card_number=event.card_number, person_ref=event.person_ref, status=CardStatus.active,
                               issued_on=event.issued_on, expires_on=event.expires_on), fact_id=ctx.envelope.id)

    async def decide() -> list[Fact]:
        decision = domain.new_card_for_holder(
            await store.licence_of(event.person_ref), void_card_number=event.previous_card_number,
            new_card_number=event.card_number,
        )
        return await _apply(decision, store.save_licence)

    return await retry_on_conflict(decide)


async def _card_unusable(ctx: Context, person_ref: str, card_number: str, status: CardStatus,
                         reason: CardUnusableReason, since_day: date) -> list[Fact]:
    await ctx.deps.store.set_card_status(card_number, status, person_ref=person_ref, fact_id=ctx.envelope.id)
    return domain.card_unusable(await ctx.deps.store.licence_of(person_ref), card_number, reason, since_day)


@handlers.handles(CardSuspended)
async def card_suspended(event: CardSuspended, ctx: Context) -> list[Fact]:
    return await _card_unusable(ctx, event.person_ref, event.card_number, CardStatus.suspended,
                                CardUnusableReason.lost, japan_date(event.suspended_at))


@handlers.handles(CardRevoked)
async def card_revoked(event: CardRevoked, ctx: Context) -> list[Fact]:
    return await _card_unusable(ctx, event.person_ref, event.card_number, CardStatus.revoked,
                                CardUnusableReason.revoked, japan_date(event.revoked_at))


@handlers.handles(CardReturned)
async def card_returned(event: CardReturned, ctx: Context) -> list[Fact]:
    return await _card_unusable(ctx, event.person_ref, event.card_number, CardStatus.returned,
                                CardUnusableReason.returned, japan_date(event.returned_at))


@handlers.handles(CardExpired)
async def card_expired(event: CardExpired, ctx: Context) -> list[Fact]:
    # `expired_on` is the card's last valid day: the licence is unusable from the day after.
    return await _card_unusable(ctx, event.person_ref, event.card_number, CardStatus.expired,
                                CardUnusableReason.expired, event.expired_on + timedelta(days=1))


@handlers.handles(CardValidityChanged)
async def card_validity_changed(event: CardValidityChanged, ctx: Context) -> list[Fact]:
    """The holder's period of stay changed: the card's copy takes the new expiry, which the roadside
    check reads (a longer stay keeps the card, and the licence on it, usable past the old day)."""
    await ctx.deps.store.set_card_expiry(event.card_number, event.expires_on, person_ref=event.person_ref,
                                         fact_id=ctx.envelope.id)
    return []


@handlers.handles(CardResumed)
async def card_resumed(event: CardResumed, ctx: Context) -> list[Fact]:
    await ctx.deps.store.set_card_status(event.card_number, CardStatus.active, person_ref=event.person_ref,
                                         fact_id=ctx.envelope.id)
    return domain.card_found(await ctx.deps.store.licence_of(event.person_ref), event.card_number,
                             japan_date(event.resumed_at))


# --- enrollment: the resident registry (the address and the one-stop change) --------------------------


@handlers.handles(ResidentRegistered)
async def resident_registered(event: ResidentRegistered, ctx: Context) -> list[Fact]:
    await ctx.deps.store.save_address(event.person_ref, event.attributes.address, today(ctx.clock),
                                      date_of_birth=event.attributes.date_of_birth, fact_id=ctx.envelope.id)
    return []


async def _resident_moved(ctx: Context, person_ref: str, attributes: ResidentAttributes, effective_on: date) -> list[Fact]:
    store, address = ctx.deps.store, attributes.address
    if not await store.save_address(person_ref, address, effective_on, date_of_birth=attributes.date_of_birth,
                                    fact_id=ctx.envelope.id) and (
        await store.address_of(person_ref) != address
    ):
        return []  # run again after a later move: the later address stands, on the licence too

    async def decide() -> list[Fact]:
        decision = domain.address_changed(await store.licence_of(person_ref), address, effective_on)
        return await _apply(decision, store.save_licence)

    return await retry_on_conflict(decide)


@handlers.handles(ResidentAttributesChanged)
async def resident_attributes_changed(event: ResidentAttributesChanged, ctx: Context) -> list[Fact]:
    if "address" not in event.changed:
        # A name change (the name comes from the card itself) or a corrected date of birth.
        await ctx.deps.store.save_date_of_birth(event.person_ref, event.attributes.date_of_birth, fact_id=ctx.envelope.id)
        return []
    return await _resident_moved(ctx, event.person_ref, event.attributes, event.effective_on)


@handlers.handles(ResidentMovedAbroad)
async def resident_moved_abroad(event: ResidentMovedAbroad, ctx: Context) -> list[Fact]:
    return await _resident_moved(ctx, event.person_ref, event.attributes, event.moved_on)


@handlers.handles(ResidentDeceased)
async def resident_deceased(event: ResidentDeceased, ctx: Context) -> list[Fact]:
    """A death, kept so that no licence is recorded for the dead (the card's revocation tells the police)."""
    await ctx.deps.store.save_death(event.person_ref, event.died_on, fact_id=ctx.envelope.id)
    return []
