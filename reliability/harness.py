"""One fault scenario from start to end: a namespace on the private stack, the partner registry,
the services, the workload streamed in slices with a fault hook between them, waiting until all
work has settled, and the audit.

Publishing and settling reuse the demo's machinery (`SignedPublisher`, `wait_until_settled`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from mynumber_cli import partner_keys
from mynumber_cli.demo.runner import Outgoing, SignedPublisher, wait_until_settled
from mynumber_contracts import KafkaRecord, topics
from mynumber_contracts.partners import Partner

from . import audit, workload
from .fleet import Fleet
from .stack import REPO, PrivateStack

log = logging.getLogger("reliability")
SEED_FILE = REPO / "config" / "partners.demo.json"
SLICE = 100  # events per slice at most; small runs use smaller slices so faults land mid-stream

def registry_partners(keys_dir: Path) -> list[Partner]:
    """The demo's agencies (config/partners.demo.json), each with its key in `keys_dir`."""
    return partner_keys.partners_from_seed(SEED_FILE, keys_dir)


async def seed_registry(mongodb: str, namespace: str, keys_dir: Path) -> None:
    from pymongo import AsyncMongoClient

    from services.kit.security import PartnerRegistry

    client: AsyncMongoClient = AsyncMongoClient(mongodb, tz_aware=True, serverSelectionTimeoutMS=10000)
    try:
        await PartnerRegistry(client[f"{namespace}_partners"], cache_seconds=0).seed(registry_partners(keys_dir))
    finally:
        await client.close()


async def create_topics(kafka: str, namespace: str) -> None:
    """Create every topic up front, so partners can publish before the services first start."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [NewTopic(n, num_partitions=topics.PARTITIONS, replication_factor=1)
                  for n in topics.all_topics(namespace) if n not in existing]
        if wanted:
            await admin.create_topics(wanted)
    finally:
        await admin.close()


Hook = Callable[["Scenario", int], Awaitable[None]]


@dataclass
class Scenario:
    """A scenario's state while it runs; hooks receive it with the count of events sent so far."""

    name: str
    stack: PrivateStack
    fleet: Fleet
    namespace: str
    load: workload.Workload
    keys_dir: Path
    publisher: SignedPublisher | None = None
    sent: int = 0
    sent_records: list[tuple[str, KafkaRecord]] = field(default_factory=list)  # (topic, record) of every send
    poison: list[dict[str, Any]] = field(default_factory=list)  # what was sent as bad input, and what must follow
    notes: list[str] = field(default_factory=list)
    timings: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def total(self) -> int:
        return self.load.total

    def note(self, text: str) -> None:
        log.warning("[%s] %s", self.name, text)
        self.notes.append(text)


Transform = Callable[[Scenario, list[tuple[str, KafkaRecord, str]]], list[tuple[str, KafkaRecord, str]]]


async def send_slice(scenario: Scenario, batch: Sequence[tuple[str, KafkaRecord, str]]) -> None:
    """Send records; after a broker error, send the whole slice again (same event ids: a partner's retry)."""
    assert scenario.publisher is not None
    producer = scenario.publisher._producer
    deadline = time.monotonic() + 300  # bounds a hang while the broker is away
    while True:
        try:
            futures = [await producer.send(topic, record.value, key=record.key, headers=record.headers)
                       for topic, record, _subject in batch]
            await asyncio.gather(*futures)
            scenario.sent_records.extend((topic, record) for topic, record, _ in batch)
            return
        except KafkaError as problem:
            if isinstance(problem, MessageSizeTooLargeError) or time.monotonic() > deadline:
                raise
            scenario.note(f"publishing paused by {type(problem).__name__}; sending the slice again")
            await asyncio.sleep(1.0)


async def stream(scenario: Scenario, *, hook: Hook | None = None, transform: Transform | None = None,
                 phase_done: Callable[[Scenario, str], Awaitable[None]] | None = None) -> None:
    """Publish every phase in slices, call `hook` after each slice, settle after each phase."""
    assert scenario.publisher is not None
    for phase in scenario.load.phases:
        for part in workload.slices(phase.events, max(10, min(SLICE, scenario.total // 40))):
            batch = [(e.payload.topic(scenario.namespace), scenario.publisher.record(e), e.subject) for e in part]
            if transform is not None:
                batch = transform(scenario, batch)
            await send_slice(scenario, batch)
            scenario.sent += len(part)
            if hook is not None:
                await hook(scenario, scenario.sent)
        await settle(scenario)
        scenario.timings.append(f"{phase.name}: {len(phase.events)} events settled at {time.monotonic() - scenario.started:.0f} s")
        if phase_done is not None:
            await phase_done(scenario, phase.name)


async def settle(scenario: Scenario, deadline_seconds: float = 1800) -> None:
    """Wait until every consumer group has caught up and the payment dispatcher has nothing left."""
    lag = await _retrying(lambda: wait_until_settled(scenario.fleet.kafka, scenario.namespace,
                                                     deadline_seconds=deadline_seconds))
    if sum(lag.values()):
        raise AssertionError(f"{scenario.name}: the services did not catch up: lag {lag}")
    if scenario.load.expected.payments and scenario.sent >= scenario.total:
        await audit.wait_for_payments(scenario.fleet.mongodb, scenario.namespace, len(scenario.load.expected.payments),
                                      deadline_seconds=deadline_seconds)
        again = await _retrying(lambda: wait_until_settled(scenario.fleet.kafka, scenario.namespace,
                                                           deadline_seconds=deadline_seconds))
        if sum(again.values()):
            raise AssertionError(f"{scenario.name}: the services did not catch up: lag {again}")


async def _retrying(operation: Callable[[], Awaitable[Any]]) -> Any:
    for attempt in range(30):
        try:
            return await operation()
        except KafkaError:
            if attempt == 29:
                raise
            await asyncio.sleep(2)
    return None


async def run_scenario(
    name: str,
    stack: PrivateStack,
    *,
    events: int,
    work_dir: Path,
    hook: Hook | None = None,
    transform: Transform | None = None,
    instances_per_service: int = 1,
    extra_env: dict[str, str] | None = None,
    before_stream: Callable[[Scenario], Awaitable[None]] | None = None,
    phase_done: Callable[[Scenario, str], Awaitable[None]] | None = None,
    after_stream: Callable[[Scenario, audit.Figures], None] | None = None,
    after_audit: Callable[[Scenario, audit.Figures], Awaitable[None]] | None = None,
    base_port: int | None = None,
) -> audit.Figures:
    namespace = f"f{uuid.uuid4().hex[:10]}"
    keys_dir = work_dir / "partner-keys"
    load = workload.build(events)
    slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    fleet = Fleet(stack.kafka, stack.mongodb, namespace, work_dir / "logs" / f"{slug}-{namespace}", base_port=base_port or stack.service_base_port,
                  extra_env=extra_env or {})
    scenario = Scenario(name, stack, fleet, namespace, load, keys_dir)
    await seed_registry(stack.mongodb, namespace, keys_dir)
    await create_topics(stack.kafka, namespace)
    fleet.start_bank()
    try:
        fleet.start_all(instances_per_service=instances_per_service)
        async with SignedPublisher(stack.kafka, namespace, keys_dir) as publisher:
            scenario.publisher = publisher
            if before_stream is not None:
                await before_stream(scenario)
            await stream(scenario, hook=hook, transform=transform, phase_done=phase_done)
        figures = await audit.audit(scenario)
        if after_stream is not None:
            after_stream(scenario, figures)
        if after_audit is not None:
            await after_audit(scenario, figures)
    finally:
        fleet.stop_all()
    figures.seconds = time.monotonic() - scenario.started
    return figures


def interleave_by_key(batch: list[tuple[str, KafkaRecord, str]], rng: random.Random) -> list[tuple[str, KafkaRecord, str]]:
    """Shuffle across keys only: each key's records keep their order (Kafka's per-partition promise)."""
    by_key: dict[bytes | None, list[tuple[str, KafkaRecord, str]]] = {}
    for item in batch:
        by_key.setdefault(item[1].key, []).append(item)
    return [pick for pick in workload._interleave(list(by_key.values()), rng)]  # type: ignore[arg-type]


__all__ = ["Outgoing", "Scenario", "interleave_by_key", "run_scenario", "settle", "stream"]
