"""The idempotency guard: an event delivered any number of times has one effect.

For each consumed event the guard keeps one document in `processed_events`, keyed by the
event's `ce_id`, holding a digest of what was received and the exact fact records the
event produced. On a redelivery the guard does not run the use case again; it re-publishes
the recorded facts, byte for byte, with the same event ids.

If a crash happens after the use case wrote its effects but before the record was saved,
the use case runs again. Use cases are therefore written so their writes are idempotent
(upserts and inserts keyed by request ids); the output ids stay the same because they are
derived from the input id (`output_event_id`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from mynumber_contracts import Envelope, Fact, KafkaRecord, encode_event, event_model
from pymongo.asynchronous.database import AsyncDatabase

from .clock import Clock
from .store import insert_new, insert_unless_there

# Fixed namespace for output ids: uuid5(namespace, input id + output kind + index).
OUTPUT_ID_NAMESPACE = uuid.UUID("6f1c1b3e-5a0e-4d0e-9a51-8d3c0f6b9a10")


def output_event_id(input_event_id: str, event_type: str, index: int) -> str:
    return str(uuid.uuid5(OUTPUT_ID_NAMESPACE, f"{input_event_id}\n{event_type}\n{index}"))


def content_digest(envelope: Envelope, data: bytes) -> str:
    """What makes an event 'the same event': its type, source and exact data bytes."""
    hasher = hashlib.sha256()
    for part in (envelope.type.encode(), envelope.source.encode(), data):
        hasher.update(len(part).to_bytes(8, "big"))
        hasher.update(part)
    return hasher.hexdigest()


class ReusedEventId(Exception):
    """A `ce_id` that was already processed arrived with different content."""


@dataclass(frozen=True)
class ReceivedEvent:
    envelope: Envelope
    digest: str
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class EarlierFacts:
    """What a use case returns when a request it has already decided comes again under a new
    event id (a partner that sends it again): the facts decided then, caused by the event
    `event_id`. They go out again with the ids they had, so a service that keeps a copy of them
    applies them once; with new ids, a copy could go back in time (a registration sent again
    after the death would bring the person back)."""

    event_id: str
    facts: Sequence[Fact]


def facts_to_documents(facts: Sequence[Fact]) -> list[dict[str, str]]:
    """Facts as a request's outcome keeps them (type and JSON payload), to be given again later."""
    return [{"type": fact.event_type, "payload": fact.model_dump_json()} for fact in facts]


def facts_from_documents(documents: Sequence[dict[str, str]]) -> list[Fact]:
    """The facts `facts_to_documents` kept."""
    facts = []
    for stored in documents:
        model = event_model(stored["type"])
        assert model is not None, f"unknown stored fact type {stored['type']}"
        facts.append(model.model_validate_json(stored["payload"]))
    return facts


def to_records(
    facts: Sequence[Fact] | EarlierFacts, *, cause: Envelope, service: str, now: datetime
) -> list[KafkaRecord]:
    """Encode the facts caused by `cause`, with deterministic ids (those they had, for earlier facts)."""
    ids_from = cause.id
    if isinstance(facts, EarlierFacts):
        ids_from, facts = facts.event_id, facts.facts
    return [
        encode_event(
            fact,
            source=f"service/{service}",
            key=fact.partition_key(),
            event_id=output_event_id(ids_from, fact.event_type, index),
            time=now,
            correlation_id=cause.correlation_id,
            causation_id=cause.id,
        )
        for index, fact in enumerate(facts)
    ]


def _record_to_document(record: KafkaRecord) -> dict[str, object]:
    # Headers as documents, not pairs: FerretDB v1 does not store nested arrays.
    return {"key": record.key, "value": record.value, "headers": [{"name": k, "value": v} for k, v in record.headers]}


def _document_to_record(document: dict) -> KafkaRecord:
    return KafkaRecord(
        key=bytes(document["key"]) if document["key"] is not None else None,
        value=bytes(document["value"]),
        headers=[(h["name"], bytes(h["value"])) for h in document["headers"]],
    )


@dataclass(frozen=True)
class Processed:
    """What the guard recorded for an event id: the digest of its content and the facts it produced."""

    digest: str
    where: str
    records: list[KafkaRecord]


class IdempotencyGuard:
    COLLECTION = "processed_events"

    def __init__(self, database: AsyncDatabase, *, service: str, clock: Clock) -> None:
        self._events = database[self.COLLECTION]
        self._service = service
        self._clock = clock

    async def processed(self, event_ids: Sequence[str]) -> dict[str, Processed]:
        """The events among `event_ids` that were processed before, read in one query."""
        found: dict[str, Processed] = {}
        async for seen in self._events.find({"_id": {"$in": list(event_ids)}}):
            found[seen["_id"]] = Processed(
                digest=seen["digest"],
                where=f"{seen['topic']}@{seen['partition']}:{seen['offset']}",
                # No "facts" means none (FerretDB v1 dropped empty arrays from the upserts of older records).
                records=[_document_to_record(d) for d in seen.get("facts", [])],
            )
        return found

    async def record(self, outcomes: Sequence[tuple[ReceivedEvent, Sequence[KafkaRecord]]]) -> None:
        """Record that these events were processed, with the facts each produced, in one write.

        Inserts, never upserts (FerretDB v1 scans a collection on every update). A duplicate key
        means another instance recorded the same event first; its record (same ids) stands.
        """
        documents = [
            {
                "_id": received.envelope.id,
                "digest": received.digest,
                "type": received.envelope.type,
                "source": received.envelope.source,
                "topic": received.topic,
                "partition": received.partition,
                "offset": received.offset,
                "processed_at": self._clock.now(),
                "facts": [_record_to_document(r) for r in records],
            }
            for received, records in outcomes
        ]
        if len(documents) == 1:  # a key's earlier event, recorded before its next: with those of other keys this turn
            await insert_unless_there(self._events, documents[0])
        else:
            await insert_new(self._events, documents)

    def facts_of(self, received: ReceivedEvent, facts: Sequence[Fact] | EarlierFacts) -> list[KafkaRecord]:
        return to_records(facts, cause=received.envelope, service=self._service, now=self._clock.now())
