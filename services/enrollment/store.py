"""Enrollment's MongoDB repository: residents (number sealed, found by blind index), cards,
the one-card-per-person claims, post-office delegations and request outcomes.

Only single-document atomic writes, unique indexes and upserts (MongoDB and FerretDB v1).
'One active card per person' is the unique `_id` of `card_claims` (the person reference):
whoever inserts the claim first holds the slot, however many instances run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from mynumber_contracts import Fact, MyNumber, ResidentAttributes
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.kit.idempotency import facts_from_documents, facts_to_documents
from services.kit.store import insert_new, insert_or_read, insert_unless_there

from .domain import (
    HELD_STATES,
    TRANSITIONS,
    Card,
    CardAction,
    CardState,
    CardValidity,
    LastRequest,
    Resident,
    random_number,
)
from .vault import NumberVault, SealedNumber


def _day(value: date | None) -> str | None:
    return value.isoformat() if value else None  # ISO dates sort and compare as strings


def _date(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


@dataclass(frozen=True)
class StoredResident:
    """A resident as stored: the marks that let a re-run recognise its own write (every
    registration, every change), and the version that a write of it is conditioned on.
    `last_registration` and `last_change` are read only from records written before the lists
    (session 12), which kept just the last of each."""

    resident: Resident
    last_registration: str | None
    last_change: dict[str, Any] | None
    version: int = 0
    changes: tuple[dict[str, Any], ...] = ()
    registrations: tuple[str, ...] = ()

    @property
    def person_ref(self) -> str:
        return self.resident.person_ref

    def registered_by(self, key: str) -> bool:
        """Whether registration request `key` wrote this record, even when later ones followed it."""
        return key == self.last_registration or key in self.registrations

    def change_made_by(self, key: str) -> dict[str, Any] | None:
        """The record of the change that request `key` made, even when later changes followed it."""
        if self.last_change and self.last_change["key"] == key:  # records from before the list of changes
            return self.last_change
        return next((change for change in self.changes if change["key"] == key), None)

    @property
    def history(self) -> tuple[dict[str, Any], ...]:
        """Every change recorded on the resident, oldest first (from before the list: the last one)."""
        earlier = (self.last_change,) if self.last_change and self.last_change not in self.changes else ()
        return earlier + self.changes

    def change_requested_as(self, request_key: str) -> dict[str, Any] | None:
        """The record of the change that the request with this request key made, under any event id."""
        return next((change for change in self.history if change.get("request") == request_key), None)


@dataclass(frozen=True)
class Outcome:
    """What a request decided: the facts it caused and a summary for the status API."""

    key: str
    fingerprint: str
    facts: list[Fact]
    summary: dict[str, Any]
    decided_at: datetime
    event_id: str | None = None  # the event that decided it (None in outcomes recorded before session 14)


class EnrollmentStore:
    def __init__(self, database: AsyncDatabase, vault: NumberVault) -> None:
        self.database = database
        self.vault = vault
        self.residents = database["residents"]
        self.cards = database["cards"]
        self.card_moves = database["card_moves"]  # _id: request key -> the card that request moves
        self.cards_by_certificate = database["cards_by_certificate"]  # _id: certificate id -> card number
        self.card_claims = database["card_claims"]
        self.delegations = database["post_office_delegations"]
        self.outcomes = database["request_outcomes"]
        self.number_registry = database["number_registry"]  # every number ever known: never reused
        self.assignments = database["number_assignments"]
        self.certificates = database["issued_certificates"]
        self.verification_codes = database["certificate_codes"]
        self._sealed = (self.residents, self.assignments)  # collections holding sealed numbers

    async def ensure_indexes(self) -> None:
        await self.residents.create_index("number_index", unique=True, name="number_index_unique")
        await self.residents.create_index("number_key_id")
        await self.cards.create_index("certificate_id", unique=True, name="certificate_id_unique")
        await self.cards.create_index("person_ref")
        await self.cards.create_index([("state", 1), ("expires_on", 1)])
        await self.cards.create_index("expiry_fact_pending", sparse=True)
        await self.residents.create_index([("municipality_code", 1), ("attributes.address", 1)])
        await self.assignments.create_index("number_key_id")

    # -- residents --------------------------------------------------------------------------

    async def insert_resident(self, resident: Resident, number: MyNumber, *, registration_key: str) -> bool:
        """Insert a new resident; False when the number (or person) is already registered."""
        number_index = self.vault.blind_index(number)
        await insert_unless_there(self.number_registry, {"_id": number_index, "source": "registered"})
        sealed = self.vault.seal(number, bound_to=resident.person_ref)
        document = {
            "_id": resident.person_ref,
            "number_index": number_index,
            "number_key_id": sealed.key_id,
            "number_ciphertext": sealed.ciphertext,
            **_resident_fields(resident),
            "registrations": [registration_key],
            "version": 0,
        }
        try:
            await self.residents.insert_one(document)
        except DuplicateKeyError:
            return False
        return True

    async def update_registration(
        self, resident: Resident, *, registration_key: str, change: dict[str, Any] | None, version: int
    ) -> bool:
        """Re-register a living resident (moved in from elsewhere or back from abroad), if the
        record is still at `version`; False when another request changed it meanwhile."""
        pushed: dict[str, Any] = {"registrations": registration_key}
        if change is not None:
            pushed["changes"] = change
        update = {"$set": _resident_fields(resident), "$inc": {"version": 1}, "$push": pushed}
        result = await self.residents.update_one({"_id": resident.person_ref, "deceased_on": None, **_at_version(version)}, update)
        return result.matched_count == 1

    async def resident_by_number(self, number: MyNumber, person_ref: str) -> StoredResident | None:
        """The resident holding `number`; `person_ref` is the reference derived from that number.

        Read by `_id`, the one key every MongoDB-compatible server finds without reading the
        collection, and checked against the number's blind index.
        """
        document = await self.residents.find_one({"_id": person_ref})
        if document is None or document["number_index"] != self.vault.blind_index(number):
            return None
        return _stored_resident(document)

    async def resident(self, person_ref: str) -> StoredResident | None:
        document = await self.residents.find_one({"_id": person_ref})
        return _stored_resident(document) if document else None

    async def resident_with_number(self, person_ref: str) -> tuple[Resident, MyNumber] | None:
        """The resident and their number, decrypted: only for the operator's (masked) lookup."""
        document = await self.residents.find_one({"_id": person_ref})
        return (_resident(document), self._open(document)) if document else None

    async def change_resident(self, resident: Resident, *, change: dict[str, Any], version: int) -> bool:
        """Save new attributes (or the move abroad, or the death) with the record of the change, if
        the record is still at `version`; False when another request changed it meanwhile.

        Every change is kept in the record's list of changes (a resident's few changes of a
        lifetime), so that a request run again after later changes knows it is done."""
        result = await self.residents.update_one(
            {"_id": resident.person_ref, **_at_version(version)},
            {"$set": _resident_fields(resident), "$inc": {"version": 1}, "$push": {"changes": change}},
        )
        return result.matched_count == 1

    async def sealed_under_old_keys(self, limit: int) -> list[tuple[Any, dict[str, Any]]]:
        """Records whose number is sealed under a key other than the current one (rotation's work list)."""
        found: list[tuple[Any, dict[str, Any]]] = []
        for collection in self._sealed:
            cursor = collection.find(
                {"number_key_id": {"$ne": self.vault.current_key_id}}, {"number_key_id": 1, "number_ciphertext": 1}
            ).limit(limit - len(found))
            found += [(collection, document) for document in await cursor.to_list()]
            if len(found) >= limit:
                break
        return found

    async def reseal(self, collection: Any, document: Mapping[str, Any]) -> bool:
        """Re-encrypt one record's number under the current key; False if someone else just did."""
        sealed = SealedNumber(document["number_key_id"], bytes(document["number_ciphertext"]))
        resealed = self.vault.reseal(sealed, bound_to=document["_id"])
        result = await collection.update_one(
            {"_id": document["_id"], "number_key_id": sealed.key_id},
            {"$set": {"number_key_id": resealed.key_id, "number_ciphertext": resealed.ciphertext}},
        )
        return result.modified_count == 1

    async def count_sealed_by_key(self) -> dict[str, int]:
        return {
            key_id: sum([await c.count_documents({"number_key_id": key_id}) for c in self._sealed])
            for key_id in self.vault.key_ids
        }

    # -- number assignment ------------------------------------------------------------------

    async def assign_numbers(self, keys: Sequence[str], *, at: datetime) -> dict[str, MyNumber]:
        """The number assigned to each request key, assigning new ones where needed.

        Insert-first, so it holds with any number of instances and never reads before it writes:
        a number is drawn with `secrets` and reserved in `number_registry`, whose unique `_id`
        (the blind index) refuses any number the registry ever held, so a collision is drawn
        again. Then the key is claimed in `number_assignments` (unique `_id`): if the key was
        claimed before (a replay, on any instance), the first number stands and the one just
        reserved is retired unused. Numbers are never released, so none is ever reused.
        """
        assigned: dict[str, MyNumber] = {}
        pending = list(dict.fromkeys(keys))
        while pending:
            drawn = {key: random_number() for key in pending}
            collided = await insert_new(
                self.number_registry,
                [{"_id": self.vault.blind_index(number), "source": "assigned", "key": key, "at": at}
                 for key, number in drawn.items()],
            )
            reserved = [(key, number) for i, (key, number) in enumerate(drawn.items()) if i not in collided]
            documents = []
            for key, number in reserved:
                sealed = self.vault.seal(number, bound_to=key)
                documents.append({"_id": key, "number_key_id": sealed.key_id, "number_ciphertext": sealed.ciphertext,
                                  "assigned_at": at})
            claimed_before = await insert_new(self.assignments, documents)
            assigned |= {key: number for i, (key, number) in enumerate(reserved) if i not in claimed_before}
            replayed = [reserved[i][0] for i in sorted(claimed_before)]
            if replayed:
                assigned |= {d["_id"]: self._open(d) async for d in self.assignments.find({"_id": {"$in": replayed}})}
            pending = [key for key in pending if key not in assigned]
        return {key: assigned[key] for key in keys}

    async def assignment(self, key: str) -> tuple[MyNumber, datetime] | None:
        document = await self.assignments.find_one({"_id": key})
        return (self._open(document), document["assigned_at"]) if document else None

    def _open(self, document: Mapping[str, Any]) -> MyNumber:
        return self.vault.open(SealedNumber(document["number_key_id"], bytes(document["number_ciphertext"])),
                               bound_to=document["_id"])

    # -- post-office delegations ------------------------------------------------------------

    async def set_delegation(self, municipality_code: str, post_office_id: str, *, active: bool, at: datetime) -> None:
        await self.delegations.update_one(
            {"_id": f"{municipality_code}|{post_office_id}"},
            {"$set": {"municipality_code": municipality_code, "post_office_id": post_office_id, "active": active,
                      "changed_at": at}},
            upsert=True,
        )

    async def is_delegated(self, municipality_code: str, post_office_id: str) -> bool:
        document = await self.delegations.find_one({"_id": f"{municipality_code}|{post_office_id}"})
        return bool(document and document["active"])

    # -- cards and the one-card slot --------------------------------------------------------

    async def claim_card_slot(self, person_ref: str, *, application_id: str, card_number: str, at: datetime) -> dict | None:
        """Take the person's one card slot for this application, or return who holds it (None: just freed)."""
        claim = {"_id": person_ref, "application_id": application_id, "card_number": card_number, "claimed_at": at}
        try:
            await self.card_claims.insert_one(claim)
            return claim
        except DuplicateKeyError:
            return await self.card_claims.find_one({"_id": person_ref})

    async def card_claim(self, person_ref: str) -> dict | None:
        """Who holds the person's one card slot (the application and the card), if anyone."""
        return await self.card_claims.find_one({"_id": person_ref})

    async def release_card_slot(self, person_ref: str, card_number: str) -> None:
        await self.card_claims.delete_one({"_id": person_ref, "card_number": card_number})

    async def move_card_slot(self, person_ref: str, *, from_card: str, to_card: str) -> None:
        await self.card_claims.update_one({"_id": person_ref, "card_number": from_card}, {"$set": {"card_number": to_card}})

    async def insert_card(self, card: Card) -> Card:
        """Insert the card unless it exists (a re-run); return the stored one."""
        await insert_unless_there(self.cards_by_certificate, {"_id": card.certificate_id, "card_number": card.card_number})
        return _card(await insert_or_read(self.cards, {"_id": card.card_number, **_card_document(card)}))

    async def note_card_of_application(self, key: str, card_number: str) -> None:
        """Before an application's card is stored: which card application `key` issues (in `card_moves`,
        under `issued/<key>`), so a re-run finds it after the slot has moved on or been freed."""
        await insert_unless_there(self.card_moves, {"_id": f"issued/{key}", "card_number": card_number})

    async def card_of_application(self, key: str) -> Card | None:
        """The card application `key` issued, if it stored one (a lookup the card does not confirm is
        one a crash left before the card was stored)."""
        lookup = await self.card_moves.find_one({"_id": f"issued/{key}"})
        document = await self.cards.find_one({"_id": lookup["card_number"]}) if lookup else None
        return _card(document) if document is not None and document["origin_key"] == key else None

    async def card(self, card_number: str) -> Card | None:
        document = await self.cards.find_one({"_id": card_number})
        return _card(document) if document else None

    async def card_by_certificate(self, certificate_id: str) -> Card | None:
        """Through `cards_by_certificate` by `_id`; the card must still carry that certificate id
        (a re-run of insert_card leaves a lookup for a certificate id that was never stored)."""
        lookup = await self.cards_by_certificate.find_one({"_id": certificate_id})
        document = await self.cards.find_one({"_id": lookup["card_number"]}) if lookup else None
        return _card(document) if document is not None and document["certificate_id"] == certificate_id else None

    async def cards_of(self, person_ref: str) -> list[Card]:
        return [_card(d) async for d in self.cards.find({"person_ref": person_ref}).sort("issued_on", 1)]

    async def held_card(self, person_ref: str) -> Card | None:
        """The person's one active or suspended card, if any."""
        claim = await self.card_claims.find_one({"_id": person_ref})
        if claim is None:
            return None
        card = await self.card(claim["card_number"])
        return card if card is not None and card.is_held else None

    async def card_moved_by(self, request_key: str) -> Card | None:
        """The card that request `request_key` already moved (a re-run after a crash, or the same
        request run at once by a second consumer), as that move left it.

        Found through `card_moves` by `_id` (FerretDB v1 would read every card to answer a query
        on `last_request.key`); the card itself must name the request, as its last move or, when a
        later request moved it again, in its list of moves. A lookup the card does not confirm is
        one a crash left between the two writes of `transition_card`.
        """
        move = await self.card_moves.find_one({"_id": request_key})
        document = await self.cards.find_one({"_id": move["card_number"]}) if move else None
        if document is None:
            return None
        card = _card(document)
        if card.last_request is not None and card.last_request.key == request_key:
            return card
        for entry in document.get("moves", ()):
            if entry["key"] == request_key:
                return replace(card, state=CardState(entry["state"]), last_request=_last_request(entry))
        return None

    async def transition_card(
        self, card: Card, action: CardAction, request: LastRequest, *, replaced_by: str | None = None
    ) -> Card | None:
        """Compare-and-set: move the card only from a state that allows `action`; None if it moved meanwhile."""
        allowed, target = TRANSITIONS[action]
        changes: dict[str, Any] = {"state": target.value, "last_request": _last_request_document(request)}
        if replaced_by:
            changes["replaced_by"] = replaced_by
        if action is CardAction.expire:
            changes["expiry_fact_pending"] = True
        # The lookup first, so a crash between the two writes leaves nothing that card_moved_by believes.
        await self.card_moves.update_one({"_id": request.key}, {"$set": {"card_number": card.card_number}}, upsert=True)
        document = await self.cards.find_one_and_update(
            {"_id": card.card_number, "state": {"$in": [s.value for s in allowed]}},
            # Every move is kept on the card too, so a request is known as done after later moves.
            {"$set": changes, "$push": {"moves": {**_last_request_document(request), "state": target.value}}},
            return_document=ReturnDocument.AFTER,
        )
        return _card(document) if document else None

    async def change_card_validity(self, card_number: str, *, was: CardValidity, becomes: CardValidity) -> bool:
        """Compare-and-set: give a held card a new validity while it still has the validity `was`
        (a later change of the period of stay gave it its own); False when it did not."""
        result = await self.cards.update_one(
            {"_id": card_number, "state": {"$in": [state.value for state in HELD_STATES]},
             "expires_on": _day(was.expires_on), "certificate_expires_on": _day(was.certificate_expires_on)},
            {"$set": {"expires_on": _day(becomes.expires_on), "certificate_expires_on": _day(becomes.certificate_expires_on)}},
        )
        return result.matched_count == 1

    async def invalidate_signing_certificate(self, card_number: str) -> None:
        await self.cards.update_one({"_id": card_number}, {"$set": {"signing_certificate_valid": False}})

    async def held_cards_past_expiry(self, today: date, limit: int) -> list[Card]:
        cursor = self.cards.find(
            {"state": {"$in": [CardState.active.value, CardState.suspended.value]}, "expires_on": {"$lt": today.isoformat()}}
        ).limit(limit)
        return [_card(d) for d in await cursor.to_list()]

    async def expired_cards_awaiting_fact(self, limit: int) -> list[Card]:
        return [_card(d) for d in await self.cards.find({"expiry_fact_pending": True}).limit(limit).to_list()]

    async def expiry_fact_published(self, card_number: str) -> None:
        await self.cards.update_one({"_id": card_number}, {"$unset": {"expiry_fact_pending": ""}})

    # -- residence certificates -------------------------------------------------------------

    async def residents_at(self, municipality_code: str, address: str) -> list[Resident]:
        cursor = self.residents.find({"municipality_code": municipality_code, "attributes.address": address})
        return [_resident(d) async for d in cursor.limit(50)]

    async def save_certificate(
        self, key: str, *, kiosk_id: str, request_id: str, document: str, pdf: bytes, pdf_sha256: str,
        verification_index: str, issued_at: datetime,
    ) -> dict[str, Any]:
        """Keep one request's PDF under that request's key alone; a re-run keeps the first."""
        stored = await self.certificates.find_one_and_update(
            {"_id": key},
            {"$setOnInsert": {"kiosk_id": kiosk_id, "request_id": request_id, "document": document, "pdf": pdf,
                              "pdf_sha256": pdf_sha256, "verification_index": verification_index, "issued_at": issued_at}},
            upsert=True, return_document=ReturnDocument.AFTER,
        )
        await self.verification_codes.update_one(
            {"_id": stored["verification_index"]},
            {"$setOnInsert": {"issued_at": stored["issued_at"], "document": stored["document"]}}, upsert=True,
        )
        return stored

    async def remove_certificate_pdfs(self, issued_before: datetime, *, now: datetime) -> int:
        """Drop the PDF of every certificate issued before `issued_before`; its record stays."""
        result = await self.certificates.update_many(
            {"issued_at": {"$lt": issued_before}, "pdf": {"$exists": True}},
            {"$unset": {"pdf": ""}, "$set": {"pdf_removed_at": now}},
        )
        return result.modified_count

    async def remove_verification_codes(self, issued_before: datetime) -> int:
        return (await self.verification_codes.delete_many({"issued_at": {"$lt": issued_before}})).deleted_count

    async def certificate(self, kiosk_id: str, request_id: str) -> dict[str, Any] | None:
        return await self.certificates.find_one({"_id": f"certificate/{kiosk_id}/{request_id}"})

    async def verification(self, verification_index: str) -> dict[str, Any] | None:
        return await self.verification_codes.find_one({"_id": verification_index})

    # -- request outcomes -------------------------------------------------------------------

    async def outcome(self, key: str) -> Outcome | None:
        document = await self.outcomes.find_one({"_id": key})
        return _outcome(document) if document else None

    async def record_outcome(
        self, key: str, *, fingerprint: str, facts: Sequence[Fact], summary: Mapping[str, Any], at: datetime,
        event_id: str,
    ) -> Outcome:
        """Record what `key` decided, and the event that decided it, unless a racer recorded it
        first; return the one that stands."""
        return _outcome(await insert_or_read(self.outcomes, {
            "_id": key,
            "fingerprint": fingerprint,
            "facts": facts_to_documents(facts),
            "summary": dict(summary),
            "decided_at": at,
            "event_id": event_id,
        }))


# -- documents <-> domain ------------------------------------------------------------------------


def _resident_fields(resident: Resident) -> dict[str, Any]:
    attributes = resident.attributes.model_dump(mode="json")
    return {
        "municipality_code": resident.municipality_code,
        "attributes": attributes,
        "nationality": resident.nationality,
        "residence_status": resident.residence_status,
        "residence_period_end": _day(resident.residence_period_end),
        "moved_abroad_on": _day(resident.moved_abroad_on),
        "destination_country": resident.destination_country,
        "deceased_on": _day(resident.deceased_on),
    }


def _resident(document: Mapping[str, Any]) -> Resident:
    return Resident(
        person_ref=document["_id"],
        municipality_code=document["municipality_code"],
        attributes=ResidentAttributes.model_validate(document["attributes"]),
        nationality=document["nationality"],
        residence_status=document.get("residence_status"),
        residence_period_end=_date(document.get("residence_period_end")),
        moved_abroad_on=_date(document.get("moved_abroad_on")),
        destination_country=document.get("destination_country"),
        deceased_on=_date(document.get("deceased_on")),
    )


def _stored_resident(document: Mapping[str, Any]) -> StoredResident:
    return StoredResident(_resident(document), document.get("last_registration"), document.get("last_change"),
                          document.get("version", 0), tuple(document.get("changes", ())),
                          tuple(document.get("registrations", ())))


def _at_version(version: int) -> dict[str, Any]:
    """The condition that a resident record is still at `version` (records from before versions count as 0)."""
    return {"version": {"$in": [0, None]}} if version == 0 else {"version": version}


def _last_request_document(request: LastRequest) -> dict[str, Any]:
    return {"key": request.key, "action": request.action.value, "at": request.at, "reason": request.reason}


def _card_document(card: Card) -> dict[str, Any]:
    return {
        "person_ref": card.person_ref,
        "certificate_id": card.certificate_id,
        "state": card.state.value,
        "issued_on": _day(card.issued_on),
        "expires_on": _day(card.expires_on),
        "certificate_expires_on": _day(card.certificate_expires_on),
        "photo_less": card.photo_less,
        "issuing_municipality": card.issuing_municipality,
        "origin_key": card.origin_key,
        "application_id": card.application_id,
        "previous_card_number": card.previous_card_number,
        "replaced_by": card.replaced_by,
        "signing_certificate_valid": card.signing_certificate_valid,
        "signed_attributes": card.signed_attributes,
        "last_request": _last_request_document(card.last_request) if card.last_request else None,
    }


def _card(document: Mapping[str, Any]) -> Card:
    last = document.get("last_request")
    return Card(
        card_number=document["_id"],
        person_ref=document["person_ref"],
        certificate_id=document["certificate_id"],
        state=CardState(document["state"]),
        issued_on=date.fromisoformat(document["issued_on"]),
        expires_on=date.fromisoformat(document["expires_on"]),
        certificate_expires_on=date.fromisoformat(document["certificate_expires_on"]),
        photo_less=document["photo_less"],
        issuing_municipality=document["issuing_municipality"],
        origin_key=document["origin_key"],
        application_id=document["application_id"],
        previous_card_number=document.get("previous_card_number"),
        replaced_by=document.get("replaced_by"),
        signing_certificate_valid=document.get("signing_certificate_valid", True),
        signed_attributes=document.get("signed_attributes"),
        last_request=_last_request(last) if last else None,
    )


def _last_request(document: Mapping[str, Any]) -> LastRequest:
    return LastRequest(document["key"], CardAction(document["action"]), document["at"], document.get("reason"))


def _outcome(document: Mapping[str, Any]) -> Outcome:
    facts = facts_from_documents(document["facts"])
    return Outcome(document["_id"], document["fingerprint"], facts, document.get("summary") or {}, document["decided_at"],
                   document.get("event_id"))
