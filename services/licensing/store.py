"""The licensing repository: cards (as enrollment told us), residents (address, date of birth, death, card numbers), licences and vehicles.

Licences and vehicles are saved whole with an optimistic version check: a police request and
an enrollment fact about the same person are consumed from different topics at the same time,
so a stale write is refused (`ConcurrentChange`) and the use case is decided again.

Lookups by anything but `_id` go through lists and small lookup documents keyed by `_id` (a
person's card numbers, kept on their resident document; a licence number's holder): a MongoDB
server would use the secondary indexes, but FerretDB v1 answers a query on any other field by
reading the whole collection. A lookup is written before the record it points to and checked
against that record when read, so a crash between the two writes never makes a lookup answer
wrongly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar

from mynumber_contracts import Fact
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.kit.idempotency import facts_from_documents, facts_to_documents
from services.kit.store import apply_fact, insert_or_read, update_by_id

from .domain import Card, CardStatus, Licence, Vehicle

T = TypeVar("T")


class ConcurrentChange(Exception):
    """Someone else saved the same licence or vehicle since it was read."""


async def retry_on_conflict(operation: Callable[[], Awaitable[T]], *, attempts: int = 5) -> T:
    """Run a read-decide-save use case again when its save lost a race."""
    for attempt in range(attempts):
        try:
            return await operation()
        except ConcurrentChange:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _without_id(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != "_id"}


@dataclass(frozen=True)
class Resident:
    """What enrollment's facts told licensing about a person: the address and the cards."""

    address: str | None
    cards: list[Card]
    address_effective_on: date | None = None
    deceased_on: date | None = None
    date_of_birth: date | None = None
    document: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # as read, before the cards


@dataclass(frozen=True)
class Outcome:
    """What a partner's request decided: the facts, the event that decided it, and a fingerprint of the request."""

    fingerprint: str
    event_id: str
    facts: list[Fact]


class LicensingStore:
    def __init__(self, database: AsyncDatabase) -> None:
        self._cards = database["cards"]
        self._residents = database["residents"]  # _id: person_ref -> address, date of birth, death, card_numbers
        self._licences = database["licences"]
        self._vehicles = database["vehicles"]
        # Where a person's card numbers were kept before they moved onto the resident document
        # (one read less for every licence request): read only for a resident document without them.
        self._cards_by_person = database["cards_by_person"]  # _id: person_ref -> card_numbers
        self._licence_holders = database["licence_holders"]  # _id: licence number -> person_ref
        self._outcomes = database["request_outcomes"]  # _id: request type, sender and request id -> what it decided

    async def ensure_indexes(self) -> None:
        await self._cards.create_index([("person_ref", ASCENDING)], name="person_ref")
        await self._licences.create_index([("licence_number", ASCENDING)], name="licence_number", unique=True)
        await self._licences.create_index([("card_number", ASCENDING)], name="card_number")
        await self._licences.create_index([("re_recording_card_number", ASCENDING)], name="re_recording_card_number")

    # -- cards ----------------------------------------------------------------------------------

    # Cards and addresses are written only by enrollment's facts, each once (`apply_fact`): a fact
    # run again after later ones (a card issued, then reported lost) never puts back an older state.

    async def save_card(self, card: Card, *, fact_id: str) -> None:
        """Record a card as the fact `fact_id` (its issue or reissue) gives it, then add it to the
        holder's resident document (always: a run again after a crash in between adds it then).

        The resident document changes after the card is written, and before the fact's use case
        reads the licence: see `resident_unchanged`. Until then the person's cards do not list it,
        as if the fact were not taken in yet."""
        await apply_fact(self._cards, card.card_number, card.model_dump(mode="json"), fact_id=fact_id, create=True)
        await self._add_card_number(card.person_ref, card.card_number)

    async def _add_card_number(self, person_ref: str, card_number: str) -> None:
        """Add the card number to the person's resident document (made if missing). A document
        written before the numbers moved there gets the numbers of `cards_by_person` with it."""
        document = await self._residents.find_one({"_id": person_ref})
        numbers = [card_number]
        if document is None or "card_numbers" not in document:
            numbers = [*await self._old_card_numbers(person_ref), card_number]
        await update_by_id(self._residents, person_ref, {"$addToSet": {"card_numbers": {"$each": numbers}}}, upsert=True)

    async def _old_card_numbers(self, person_ref: str) -> list[str]:
        lookup = await self._cards_by_person.find_one({"_id": person_ref})
        return lookup["card_numbers"] if lookup else []

    async def set_card_status(self, card_number: str, status: CardStatus, *, person_ref: str, fact_id: str) -> None:
        """Set the status the fact `fact_id` gives the card of `person_ref` (a card not known stays unknown)."""
        await self._change_card(card_number, {"status": status.value}, person_ref=person_ref, fact_id=fact_id)

    async def set_card_expiry(self, card_number: str, expires_on: date, *, person_ref: str, fact_id: str) -> None:
        """Set the expiry the fact `fact_id` gives the card (a renewed period of stay; a card not known stays unknown)."""
        await self._change_card(card_number, {"expires_on": expires_on.isoformat()}, person_ref=person_ref, fact_id=fact_id)

    async def _change_card(self, card_number: str, fields: dict[str, Any], *, person_ref: str, fact_id: str) -> None:
        """Apply a card fact to the card, then mark the holder's resident document with it (see `resident_unchanged`)."""
        await apply_fact(self._cards, card_number, fields, fact_id=fact_id)
        await update_by_id(self._residents, person_ref, {"$set": {"cards_changed_by": fact_id}}, upsert=True)

    async def card(self, card_number: str) -> Card | None:
        document = await self._cards.find_one({"_id": card_number})
        return Card.model_validate(_without_id(document)) if document else None

    # -- residents (the person reference, the address and the card numbers) ---------------------

    async def resident_unchanged(self, person_ref: str, resident: Resident) -> bool:
        """Whether the person's resident document is still as it was when `resident` was read.

        Every enrollment fact licensing takes in about a person changes their resident document
        after its other writes (a card's status or a new card, then the document; an address or a
        death is the document) and before its use case reads the licence. So a use case that read
        the resident document, then the cards, then saved a licence, and finds the document
        unchanged after the save, knows that no such fact was taken in between its reads and its
        save: each one either changed the document before the first read (and the reads saw its
        writes), or reads the licence after the save (and catches it up itself)."""
        return (await self._residents.find_one({"_id": person_ref}) or {}) == resident.document

    async def resident(self, person_ref: str, *, with_cards: bool = True) -> Resident:
        """The person's address, death and cards: one read of the resident document, then one read by
        `_id` per card (usually one), so side-by-side use cases read their cards together."""
        document = await self._residents.find_one({"_id": person_ref}) or {}
        cards: list[Card] = []
        if with_cards:
            numbers = document.get("card_numbers")
            if numbers is None:
                numbers = await self._old_card_numbers(person_ref)
            documents = await asyncio.gather(*(self._cards.find_one({"_id": number}) for number in numbers))
            cards = [Card.model_validate(_without_id(d)) for d in documents if d is not None and d["person_ref"] == person_ref]
        return Resident(address=document.get("address"), cards=cards, document=document,
                        address_effective_on=_day(document.get("address_effective_on")),
                        deceased_on=_day(document.get("deceased_on")), date_of_birth=_day(document.get("date_of_birth")))

    async def save_address(self, person_ref: str, address: str, effective_on: date, *, date_of_birth: date,
                           fact_id: str) -> bool:
        """Save the address (and the date of birth) a resident fact gives; False when that fact was applied
        before (a run again: the address it gave may have been replaced by a later one since, which then stands)."""
        fields = {"address": address, "address_effective_on": effective_on.isoformat(), "date_of_birth": date_of_birth.isoformat()}
        return await apply_fact(self._residents, person_ref, fields, fact_id=fact_id, create=True)

    async def save_date_of_birth(self, person_ref: str, date_of_birth: date, *, fact_id: str) -> None:
        """Save the date of birth a resident fact that changes no address gives (a correction, or a name change)."""
        await apply_fact(self._residents, person_ref, {"date_of_birth": date_of_birth.isoformat()}, fact_id=fact_id, create=True)

    async def save_death(self, person_ref: str, died_on: date, *, fact_id: str) -> None:
        """Record the death enrollment's fact `fact_id` tells of."""
        await apply_fact(self._residents, person_ref, {"deceased_on": died_on.isoformat()}, fact_id=fact_id, create=True)

    async def address_of(self, person_ref: str) -> str | None:
        document = await self._residents.find_one({"_id": person_ref})
        return document.get("address") if document else None  # a document made by a card fact has none yet

    # -- licences -------------------------------------------------------------------------------

    async def licence_of(self, person_ref: str) -> Licence | None:
        return _licence(await self._licences.find_one({"_id": person_ref}))

    async def licence_by_number(self, licence_number: str) -> Licence | None:
        lookup = await self._licence_holders.find_one({"_id": licence_number})
        if lookup is None:
            return None
        licence = await self.licence_of(lookup["person_ref"])
        if licence is not None and licence.licence_number == licence_number:
            return licence
        # The lookup names someone whose licence has another number: a save that lost a race for
        # this number, or a crash before the save. Rare, so ask the licences themselves.
        return _licence(await self._licences.find_one({"licence_number": licence_number}))

    async def licence_for_card(self, card_number: str) -> Licence | None:
        """The licence recorded on this card, or waiting to be recorded on it."""
        return _licence(await self._licences.find_one(
            {"$or": [{"card_number": card_number}, {"re_recording_card_number": card_number}]}
        ))

    async def save_licence(self, licence: Licence) -> Licence:
        # Most saves keep the number's holder (or record a new number): an insert, or a read.
        standing = await insert_or_read(self._licence_holders, {"_id": licence.licence_number, "person_ref": licence.person_ref})
        if standing["person_ref"] != licence.person_ref:
            await update_by_id(self._licence_holders, licence.licence_number, {"$set": {"person_ref": licence.person_ref}})
        return await _save_versioned(self._licences, licence.person_ref, licence)

    # -- partners' requests ---------------------------------------------------------------------

    async def outcome(self, key: str) -> Outcome | None:
        document = await self._outcomes.find_one({"_id": key})
        return _outcome(document) if document else None

    async def record_outcome(self, key: str, *, fingerprint: str, facts: list[Fact], event_id: str) -> Outcome:
        """Record what request `key` decided, caused by the event `event_id`, unless a racer recorded it first;
        return the one that stands."""
        return _outcome(await insert_or_read(self._outcomes, {
            "_id": key, "fingerprint": fingerprint, "event_id": event_id,
            "facts": facts_to_documents(facts),
        }))

    # -- vehicles -------------------------------------------------------------------------------

    async def vehicle(self, vehicle_id: str) -> Vehicle | None:
        document = await self._vehicles.find_one({"_id": vehicle_id})
        return Vehicle.model_validate(_without_id(document)) if document else None

    async def save_vehicle(self, vehicle: Vehicle) -> Vehicle:
        return await _save_versioned(self._vehicles, vehicle.vehicle_id, vehicle)


def _day(iso: str | None) -> date | None:
    return date.fromisoformat(iso) if iso else None


def _outcome(document: dict[str, Any]) -> Outcome:
    facts = facts_from_documents(document.get("facts", []))  # FerretDB v1 may drop an empty array
    return Outcome(document["fingerprint"], document["event_id"], facts)


def _licence(document: dict[str, Any] | None) -> Licence | None:
    return Licence.model_validate(_without_id(document)) if document else None


async def _save_versioned(collection: Any, key: str, entity: T) -> T:
    """Insert a new entity (version 0) or replace the version that was read; refuse a stale write."""
    version = entity.version  # type: ignore[attr-defined]
    document = {**entity.model_dump(mode="json"), "_id": key, "version": version + 1}  # type: ignore[attr-defined]
    try:
        if version == 0:
            await collection.insert_one(document)
        else:
            result = await collection.replace_one({"_id": key, "version": version}, document)
            if result.matched_count == 0:
                raise ConcurrentChange(f"{key} changed since it was read")
    except DuplicateKeyError as exc:
        raise ConcurrentChange(f"{key} was saved by someone else") from exc
    return entity.model_copy(update={"version": version + 1})  # type: ignore[attr-defined]
