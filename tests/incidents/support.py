"""The platform for incident replays: the services an incident crosses, running in-process
against the real broker and database, fed only through Kafka by signed partner requests
(enrollment's own facts reach the others as they would in production)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import httpx
from mynumber_contracts import Event, MyNumber, ResidentAttributes, Sex, check_digit, topics
from mynumber_contracts.enrollment import RegisterResident

from services.benefits.bank_simulator import BankState, create_bank_simulator
from services.kit.clock import FixedClock
from services.kit.people import PersonReferences
from tests.support import polling
from tests.support.kafka import PartnerPublisher, Received, TopicReader
from tests.support.services import RunningService, run_service

# 10:00 in Japan on 1 June 2026.
NOW = datetime(2026, 6, 1, 1, 0, tzinfo=UTC)
TODAY = date(2026, 6, 1)
MUNICIPALITY = "131016"
MUNICIPAL_OFFICE = "municipality/131016"


def a_number(seed: int) -> MyNumber:
    base = f"{seed:011d}"
    return MyNumber(base + str(check_digit(base)))


def person(name_kanji: str, name_kana: str, *, born: date = date(1980, 4, 2), sex: Sex = Sex.male,
           address: str = "東京都千代田区永田町1-7-1") -> ResidentAttributes:
    return ResidentAttributes(name_kanji=name_kanji, name_kana=name_kana, date_of_birth=born, sex=sex, address=address)


async def eventually(check: Callable[[], Awaitable[Any]], *, what: str, timeout: float = 90.0) -> Any:
    """Wait until `check()` gives something truthy (a whole-platform scenario: a longer deadline)."""
    return await polling.eventually(check, what=what, timeout=timeout)


@dataclass
class Platform:
    namespace: str
    clock: FixedClock
    partner: PartnerPublisher
    people: PersonReferences
    instances: dict[str, list[RunningService]]
    facts: dict[str, TopicReader]
    bank: BankState | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    kafka_bootstrap: str = ""

    def ref(self, number: MyNumber) -> str:
        return self.people.for_number(number)

    def service(self, name: str) -> RunningService:
        return self.instances[name][0]

    def database(self, name: str) -> Any:
        return self.service(name).service.database

    async def send(self, request: Event, *, source: str, subject: str, event_id: str | None = None) -> None:
        await self.partner.send(request, subject=subject, source=source, event_id=event_id)

    def of_type(self, service: str, event_type: str, **match: Any) -> list[dict[str, Any]]:
        payloads = [r.json() for r in self.facts[service].records if r.type == event_type]
        return [p for p in payloads if all(p.get(k) == v for k, v in match.items())]

    async def fact(self, service: str, event_type: str, count: int = 1, **match: Any) -> list[dict[str, Any]]:
        def enough(_: list[Received]) -> bool:
            return len(self.of_type(service, event_type, **match)) >= count

        await self.facts[service].wait_for(enough, timeout=120, what=f"{count} x {event_type} {match}")
        return self.of_type(service, event_type, **match)

    async def register(self, number: MyNumber, attributes: ResidentAttributes, *, request_id: str) -> str:
        """A municipality registers a resident; returns the person reference once enrollment has them."""
        await self.send(RegisterResident(request_id=request_id, municipality_code=MUNICIPALITY, my_number=number,
                                         attributes=attributes, nationality="JP"),
                        source=MUNICIPAL_OFFICE, subject=number.reveal())
        person_ref = self.ref(number)
        await self.fact("enrollment", "jp.mynumber.enrollment.resident_registered.v1", person_ref=person_ref)
        return person_ref

    async def caught_up(self, service: str, topic: str) -> None:
        """Wait until `service` has taken in (and committed) everything on `topic` so far: an event
        that changes nothing leaves no other trace to wait for."""
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.admin import AIOKafkaAdminClient

        consumer = AIOKafkaConsumer(bootstrap_servers=self.kafka_bootstrap)
        admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka_bootstrap)
        await consumer.start()
        await admin.start()
        try:
            cluster = await consumer._client.fetch_all_metadata()
            partitions = [TopicPartition(topic, p) for p in sorted(cluster.partitions_for_topic(topic) or ())]
            ends = await consumer.end_offsets(partitions)
            group = self.settings[service].group_id(service)

            async def done() -> bool:
                committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
                return all(committed.get(tp) is not None and committed[tp].offset >= end
                           for tp, end in ends.items() if end > 0)

            await eventually(done, what=f"{service} caught up on {topic}")
        finally:
            await admin.close()
            await consumer.stop()

    async def consumed(self, service: str, event_type: str, count: int) -> None:
        """Wait until every instance of `service` together has processed `count` events of `event_type`."""
        async def done() -> bool:
            return await self.database(service)["processed_events"].count_documents({"type": event_type}) >= count

        await eventually(done, what=f"{service} processed {count} x {event_type}")


@asynccontextmanager
async def running_platform(servers: Any, settings_for: Callable[..., Any], namespace: str, services: dict[str, int],
                           *, overrides: dict[str, dict[str, Any]] | None = None,
                           doubles: dict[str, dict[str, Any]] | None = None) -> AsyncIterator[Platform]:
    """Run `services` ({name: instances}) with one fixed clock; the bank simulator answers benefits in-process."""
    clock = FixedClock(NOW)
    bank: BankState | None = None
    async with AsyncExitStack() as stack:
        instances: dict[str, list[RunningService]] = {}
        settings_of: dict[str, Any] = {}
        for name, count in services.items():
            settings = settings_for(name, **(overrides or {}).get(name, {}))
            settings_of[name] = settings
            kwargs: dict[str, Any] = dict((doubles or {}).get(name, {}))
            if name == "benefits":
                bank = bank or BankState()
                kwargs.setdefault("bank_transport", httpx.ASGITransport(app=create_bank_simulator(bank)))
            instances[name] = [await stack.enter_async_context(run_service(name, settings, clock=clock, **kwargs))
                               for _ in range(count)]
        partner = await stack.enter_async_context(PartnerPublisher(servers.kafka_bootstrap, namespace))
        facts = {name: await stack.enter_async_context(
            TopicReader(servers.kafka_bootstrap, topics.for_service(name, namespace).facts)) for name in services}
        any_settings = next(iter(settings_of.values()))
        yield Platform(namespace, clock, partner, PersonReferences(any_settings.person_ref_key.get_secret_value()),
                       instances, facts, bank, settings_of, kafka_bootstrap=servers.kafka_bootstrap)
