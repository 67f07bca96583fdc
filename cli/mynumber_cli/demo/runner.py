"""The machinery of `mynumber demo`: a fresh namespace, the partner registry, the services,
signed publishing, waiting until every consumer has caught up, and reading every topic back."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from mynumber_contracts import Event, KafkaRecord, encode_event, topics
from mynumber_contracts.signing import private_key_from_pem, sign_record

from .. import partner_keys


@dataclass(frozen=True)
class Outgoing:
    """One partner event to publish: the payload, who sends it, and whose order it keeps."""

    payload: Event
    source: str
    subject: str
    event_id: str | None = None


@dataclass
class Published:
    sent: int = 0
    by_type: Counter[str] = field(default_factory=Counter)


class SignedPublisher:
    """Publishes partner events signed with each agency's demo key."""

    def __init__(self, kafka: str, namespace: str, keys_dir: Path) -> None:
        self.namespace = namespace
        self.keys_dir = keys_dir
        self._keys: dict[str, object] = {}
        self._producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=True, linger_ms=10,
                                          max_request_size=4 * 1024 * 1024)
        self.published = Published()

    async def __aenter__(self) -> SignedPublisher:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    def record(self, event: Outgoing) -> KafkaRecord:
        key = self._keys.get(event.source)
        if key is None:
            key = self._keys[event.source] = private_key_from_pem(
                partner_keys.key_path(self.keys_dir, event.source).read_bytes())
        record = encode_event(event.payload, source=event.source, key=topics.ordering_key(event.subject),
                              event_id=event.event_id)
        return sign_record(record, key, f"{event.source}#1")  # type: ignore[arg-type]

    async def send(self, events: Iterable[Outgoing], on_sent=None) -> None:
        futures = []
        for event in events:
            record = self.record(event)
            futures.append(await self._producer.send(event.payload.topic(self.namespace), record.value, key=record.key,
                                                     headers=record.headers))
            self.published.sent += 1
            self.published.by_type[event.payload.event_type] += 1
            if on_sent:
                on_sent(1)
        await asyncio.gather(*futures)

    async def send_raw(self, topic: str, value: bytes, headers: Sequence[tuple[str, bytes]], key: bytes | None = None) -> None:
        await self._producer.send_and_wait(topic, value, key=key, headers=list(headers))
        self.published.sent += 1
        self.published.by_type["(malformed or forged)"] += 1


async def consumer_lag(kafka: str, namespace: str) -> dict[str, int]:
    """How many messages each service's consumer group has still to process."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=None, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        lag: dict[str, int] = {}
        for service in topics.SERVICES:
            group = f"{namespace}-{service}"
            committed = await admin.list_consumer_group_offsets(group)
            read_topics = {topics.for_service(service, namespace).requests}
            if service != "enrollment":
                read_topics.add(topics.for_service("enrollment", namespace).facts)
            partitions = [tp for tp in committed] or []
            cluster = await consumer._client.fetch_all_metadata()
            for topic in read_topics:
                for p in cluster.partitions_for_topic(topic) or ():
                    tp = TopicPartition(topic, p)
                    if tp not in partitions:
                        partitions.append(tp)
            partitions = [tp for tp in partitions if tp.topic in read_topics]
            if not partitions:
                lag[service] = 0
                continue
            ends = await consumer.end_offsets(partitions)
            lag[service] = sum(max(0, ends[tp] - (committed[tp].offset if tp in committed else 0)) for tp in partitions)
        return lag
    finally:
        await consumer.stop()
        await admin.close()


async def wait_until_settled(kafka: str, namespace: str, *, deadline_seconds: float = 600, on_progress=None) -> dict[str, int]:
    """Wait until every service has processed everything (zero lag twice in a row)."""
    deadline = time.monotonic() + deadline_seconds
    calm = 0
    lag: dict[str, int] = {}
    while time.monotonic() < deadline:
        lag = await consumer_lag(kafka, namespace)
        if on_progress:
            on_progress(lag)
        calm = calm + 1 if sum(lag.values()) == 0 else 0
        if calm >= 2:
            return lag
        await asyncio.sleep(1.0)
    return lag


@dataclass
class TopicContents:
    facts: dict[str, list[dict]] = field(default_factory=dict)  # event type -> payloads
    dead_letters: Counter[tuple[str, str]] = field(default_factory=Counter)  # (service, reason)
    quarantined: Counter[str] = field(default_factory=Counter)  # reason

    def of(self, event_type: str) -> list[dict]:
        return self.facts.get(event_type, [])


async def read_everything(kafka: str, namespace: str) -> TopicContents:
    """Read every fact, dead-letter and quarantine topic of the namespace from the beginning."""
    contents = TopicContents()
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=None, enable_auto_commit=False, max_poll_records=2000)
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        names = [*topics.fact_topics(namespace), topics.quarantine_topic(namespace),
                 *(topics.for_service(s, namespace).dead_letter for s in topics.SERVICES)]
        assigned = [TopicPartition(t, p) for t in names for p in (cluster.partitions_for_topic(t) or ())]
        if not assigned:
            return contents
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        while [tp for tp in assigned if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=2000)
            for tp, records in batch.items():
                for record in records:
                    headers = {k: v.decode(errors="replace") for k, v in record.headers}
                    if tp.topic.endswith(".dead-letter"):
                        contents.dead_letters[(tp.topic.split(".")[1], headers.get("dlq_reason", "?"))] += 1
                    elif tp.topic == topics.quarantine_topic(namespace):
                        contents.quarantined[headers.get("dlq_reason", "?")] += 1
                    else:
                        contents.facts.setdefault(headers.get("ce_type", "?"), []).append(json.loads(record.value))
    finally:
        await consumer.stop()
    return contents
