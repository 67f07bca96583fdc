"""Plain aiokafka clients for tests: they play the partner agencies and read what services publish."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from mynumber_contracts import Event, KafkaRecord, encode_event, topics
from mynumber_contracts.signing import sign_record

from services.kit.messaging import create_topics as kit_create_topics
from tests.support import partners


async def create_topics(bootstrap: str, names: Sequence[str], partitions: int = topics.PARTITIONS) -> None:
    await kit_create_topics({"bootstrap_servers": bootstrap}, names, partitions=partitions)


class PartnerPublisher:
    """Publishes partner requests the way an agency would, with a plain aiokafka producer."""

    def __init__(self, bootstrap: str, namespace: str, source: str = "municipality/131016", *, signed: bool = True,
                 producer: AIOKafkaProducer | None = None) -> None:
        """`producer`: one set up otherwise (another principal, over TLS) instead of the plain one."""
        self.bootstrap = bootstrap
        self.namespace = namespace
        self.source = source
        self.signed = signed  # partners sign every event; unsigned only to test the quarantine
        self._producer = producer or AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                                      max_request_size=4 * 1024 * 1024)

    async def __aenter__(self) -> PartnerPublisher:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    def record(self, payload: Event, *, subject: str, event_id: str | None = None, source: str | None = None,
               time: datetime | None = None) -> KafkaRecord:
        source = source or self.source
        record = encode_event(payload, source=source, key=topics.ordering_key(subject),
                              event_id=event_id or str(uuid.uuid4()), time=time or datetime.now(UTC))
        if not self.signed or source.startswith("service/"):
            return record  # services' own facts are not partner-signed
        key, key_id = partners.ensure_registered(self.namespace, source)
        return sign_record(record, key, key_id)

    async def send(self, payload: Event, *, subject: str, event_id: str | None = None,
                   source: str | None = None) -> KafkaRecord:
        record = self.record(payload, subject=subject, event_id=event_id, source=source)
        await self.send_record(payload.topic(self.namespace), record)
        return record

    async def send_record(self, topic: str, record: KafkaRecord) -> None:
        await self._producer.send_and_wait(topic, record.value, key=record.key, headers=record.headers)

    async def send_raw(self, topic: str, value: bytes | None, *, key: bytes | None = None,
                       headers: Sequence[tuple[str, bytes]] = ()) -> list[tuple[str, bytes]]:
        """Send arbitrary bytes. Like a real partner, it signs whatever it sends (garbage included)
        when the headers carry the attributes a signature covers; returns the headers sent."""
        headers = list(headers)
        source = dict(headers).get("ce_source")
        if self.signed and source is not None:
            try:
                key_pair = partners.ensure_registered(self.namespace, source.decode())
                headers = sign_record(KafkaRecord(key, value or b"", headers), *key_pair).headers
            except (ValueError, UnicodeDecodeError):
                pass  # a signed attribute is missing or unreadable: the envelope check rejects it first
        await self._producer.send_and_wait(topic, value, key=key, headers=headers)
        return headers


@dataclass
class Received:
    record: ConsumerRecord

    @property
    def headers(self) -> dict[str, bytes]:
        return {k: v for k, v in (self.record.headers or ())}

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return value.decode() if value is not None else None

    @property
    def type(self) -> str | None:
        return self.header("ce_type")

    @property
    def id(self) -> str | None:
        return self.header("ce_id")

    def json(self) -> dict:
        import json

        return json.loads(self.record.value)


class TopicReader:
    """Reads a topic from the beginning, in the background, and keeps every record."""

    def __init__(self, bootstrap: str, topic: str, *, consumer: AIOKafkaConsumer | None = None) -> None:
        """`consumer`: one set up otherwise (another principal, over TLS) instead of the plain one."""
        self.topic = topic
        self.records: list[Received] = []
        self._consumer = consumer or AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                                      auto_offset_reset="earliest", group_id=None)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> TopicReader:
        await self._consumer.start()
        deadline = time.monotonic() + 30
        while True:
            cluster = await self._consumer._client.fetch_all_metadata()
            partitions = cluster.partitions_for_topic(self.topic)
            if partitions or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        if not partitions:
            raise RuntimeError(f"topic {self.topic} does not exist")
        assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self._consumer.assign(assigned)
        await self._consumer.seek_to_beginning(*assigned)
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            for records in batch.values():
                self.records.extend(Received(r) for r in records)

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self._consumer.stop()

    def of_type(self, event_type: str) -> list[Received]:
        return [r for r in self.records if r.type == event_type]

    async def wait_for(self, predicate: Callable[[list[Received]], bool], *, timeout: float = 60.0,
                       what: str = "records") -> list[Received]:
        """Wait until `predicate(records)` holds. A deadline, not a timed assertion: it only bounds a hang."""
        deadline = time.monotonic() + timeout
        while not predicate(self.records):
            if time.monotonic() > deadline:
                seen = [r.type or r.header("dlq_reason") for r in self.records]
                raise AssertionError(f"gave up waiting for {what} on {self.topic}; saw {seen[-20:]}")
            await asyncio.sleep(0.1)
        return self.records

    async def wait_count(self, n: int, event_type: str | None = None, *, timeout: float = 60.0) -> list[Received]:
        def enough(records: list[Received]) -> bool:
            return len([r for r in records if event_type is None or r.type == event_type]) >= n

        await self.wait_for(enough, timeout=timeout, what=f"{n} x {event_type or 'any'}")
        return [r for r in self.records if event_type is None or r.type == event_type]

    async def settle(self, quiet_seconds: float = 2.0, timeout: float = 60.0) -> list[Received]:
        """Wait until no new record has arrived for `quiet_seconds` (used to prove that nothing MORE arrives)."""
        deadline = time.monotonic() + timeout
        last = -1
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            if len(self.records) != last:
                last = len(self.records)
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_seconds:
                break
            await asyncio.sleep(0.1)
        return self.records
