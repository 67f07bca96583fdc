"""`mynumber dlq`: read a service's dead-letter topic, show an entry, replay it after a fix.

Every replay is recorded in the `dlq_replays` collection of the `mynumber_operations`
database: who replayed which record, when, to which topic.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mynumber_contracts import topics


@dataclass(frozen=True)
class DeadLetter:
    number: int
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    reason: str
    detail: str
    source_topic: str
    source_partition: str
    source_offset: str
    original_headers: list[tuple[str, bytes]]

    @property
    def event_type(self) -> str | None:
        return next((v.decode(errors="replace") for k, v in self.original_headers if k == "ce_type"), None)

    @property
    def offset_in_source(self) -> str:
        return f"{self.source_partition}:{self.source_offset}"

    def describe(self) -> dict[str, object]:
        return {
            "number": self.number, "reason": self.reason, "detail": self.detail,
            "source": {"topic": self.source_topic, "partition": self.source_partition, "offset": self.source_offset},
            "headers": {k: v.decode(errors="replace") for k, v in self.original_headers},
            "value_bytes": len(self.value),
            "value_preview": self.value[:500].decode(errors="replace"),
        }


async def read(kafka: dict[str, Any], service: str, namespace: str = "mynumber", *, timeout_ms: int = 3000) -> list[DeadLetter]:
    """Every dead letter of `service`; `kafka` holds aiokafka's connection arguments (address, TLS, SASL)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    topic = topics.for_service(service, namespace).dead_letter
    consumer = AIOKafkaConsumer(**kafka, enable_auto_commit=False, group_id=None)
    await consumer.start()
    letters: list[DeadLetter] = []
    try:
        partitions = consumer.partitions_for_topic(topic) or (await consumer._client.fetch_all_metadata()).partitions_for_topic(topic) or set()
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not assigned:
            return []
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        while [tp for tp in assigned if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=timeout_ms)
            if not batch:
                break
            for records in batch.values():
                for record in records:
                    headers = {k: v.decode(errors="replace") for k, v in record.headers}
                    original = [(k, base64.b64decode(v)) for k, v in json.loads(headers.get("dlq_original_headers", "[]"))]
                    letters.append(DeadLetter(
                        number=0, partition=record.partition, offset=record.offset, key=record.key,
                        value=record.value or b"", reason=headers.get("dlq_reason", ""), detail=headers.get("dlq_detail", ""),
                        source_topic=headers.get("dlq_source_topic", ""), source_partition=headers.get("dlq_partition", ""),
                        source_offset=headers.get("dlq_offset", ""), original_headers=original,
                    ))
    finally:
        await consumer.stop()
    letters.sort(key=lambda letter: (letter.partition, letter.offset))
    return [DeadLetter(**{**letter.__dict__, "number": index}) for index, letter in enumerate(letters, start=1)]


def pick(letters: list[DeadLetter], number: int) -> DeadLetter | None:
    return next((letter for letter in letters if letter.number == number), None)


async def replay(letter: DeadLetter, kafka: dict[str, Any], mongodb: str, *, operator: str) -> None:
    from aiokafka import AIOKafkaProducer
    from pymongo import AsyncMongoClient

    producer = AIOKafkaProducer(**kafka, acks="all", enable_idempotence=True)
    try:  # stopped also when it never started
        await producer.start()
        await producer.send_and_wait(letter.source_topic, letter.value, key=letter.key, headers=letter.original_headers)
    finally:
        await producer.stop()
    client = AsyncMongoClient(mongodb, serverSelectionTimeoutMS=5000, tz_aware=True)
    try:
        await client["mynumber_operations"]["dlq_replays"].insert_one({
            "at": datetime.now(UTC), "operator": operator, "dead_letter_topic_partition": letter.partition,
            "dead_letter_offset": letter.offset, "source_topic": letter.source_topic,
            "source_offset": letter.offset_in_source, "reason": letter.reason, "event_type": letter.event_type,
        })
    finally:
        await client.close()
