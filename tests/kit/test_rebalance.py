"""A rebalance waits for the batches in flight, against the real broker and database: a member
that joins while a batch runs never runs the same records at the same moment, and every
request runs once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from mynumber_contracts import topics
from mynumber_contracts.enrollment import RegisterResident, ResidentRegistered

from services.kit.clock import SystemClock
from services.kit.messaging import BatchesInFlight, EventService, HandlerContext, HandlerRegistry
from services.kit.people import PersonReferences
from services.kit.settings import ServiceSettings
from services.kit.store import connect
from tests.kit.test_batch_intake import a_request, registered, the_topics
from tests.support.kafka import PartnerPublisher, TopicReader


@dataclass
class Gate:
    """Where a member's use cases wait until the test lets them go on; and what they ran."""

    people: PersonReferences
    open: asyncio.Event = field(default_factory=asyncio.Event)
    runs: list[str] = field(default_factory=list)


handlers = HandlerRegistry()


@handlers.handles(RegisterResident)
async def wait_at_the_gate(event: RegisterResident, ctx: HandlerContext[Gate]) -> Sequence[ResidentRegistered]:
    ctx.deps.runs.append(event.request_id)
    await ctx.deps.open.wait()
    return [registered(event, ctx.deps.people)]


@asynccontextmanager
async def a_member(settings: ServiceSettings, gate: Gate) -> AsyncIterator[EventService[Gate]]:
    client, database = connect(settings.mongodb_url, settings.database, app_name="rebalance")
    service = EventService("enrollment", settings=settings, database=database, clock=SystemClock(), deps=gate)
    service.include(handlers)
    try:
        yield service
    finally:
        await service.stop()
        await client.close()


async def until(condition, *, what: str, timeout: float = 60.0) -> None:
    """A deadline, not a timed assertion: it only bounds a hang."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.05)


async def test_a_member_joining_while_a_batch_runs_waits_for_it_and_every_request_runs_once(servers, namespace):
    await the_topics(servers, namespace)
    settings = ServiceSettings(
        kafka_bootstrap_servers=servers.kafka_bootstrap, mongodb_url=servers.mongodb_url, topic_namespace=namespace,
        database=f"{namespace}_rebalance", partner_registry_database=f"{namespace}_partners", batch_consumers=1,
        heartbeat_interval_ms=500,
    )
    people = PersonReferences(settings.person_ref_key.get_secret_value())
    first, second = Gate(people), Gate(people)
    second.open.set()
    requests = [a_request(person, 0) for person in ("ann", "ben", "cat", "dan", "eve", "fay", "gus", "hal")]
    async with PartnerPublisher(servers.kafka_bootstrap, namespace) as partner:
        for request in requests:
            await partner.send(request, subject=request.request_id)

    async with (
        TopicReader(servers.kafka_bootstrap, topics.for_service("enrollment", namespace).facts) as facts,
        a_member(settings, first) as first_member,
        a_member(settings, second) as second_member,
    ):
        await first_member.start()
        await until(lambda: len(first.runs) > 0, what="the first member's batch began")
        in_flight = set(first.runs)
        joining = asyncio.create_task(second_member.start())  # the group rebalances
        # Either the first member's rebalance waits for its batch (the fix), or the second member
        # was given partitions at once and ran records of that batch beside it (the fault).
        await until(lambda: first_member.batches_in_flight.waiting > 0 or bool(second.runs),
                    what="the rebalance began")

        assert not set(second.runs) & in_flight, "the joining member ran records of a batch still running"
        first.open.set()
        await joining
        await facts.wait_for(lambda records: {r.json()["request_id"] for r in records} >= {r.request_id for r in requests},
                             what="every request's fact")

    assert Counter(first.runs + second.runs) == Counter(r.request_id for r in requests), "every request ran once"
    assert first_member.batches_in_flight.waiting == 0


async def test_batches_in_flight_let_a_rebalance_go_on_only_when_its_own_partitions_are_done():
    in_flight = BatchesInFlight()

    class Record:
        def __init__(self, partition: int) -> None:
            self.topic, self.partition = "requests", partition

    with in_flight.taking_in([Record(0), Record(1)]):
        assert in_flight.busy([("requests", 1)]) and not in_flight.busy([("requests", 2), ("other", 0)])
        await asyncio.wait_for(in_flight.ended([("requests", 2)]), 5)  # nothing of partition 2 runs
        waiting = asyncio.ensure_future(in_flight.ended([("requests", 0)]))
        await asyncio.sleep(0)
        assert not waiting.done() and in_flight.waiting == 1
    await asyncio.wait_for(waiting, 5)
    assert in_flight.waiting == 0 and not in_flight.busy([("requests", 0), ("requests", 1)])

    try:
        with in_flight.taking_in([Record(3)]):
            raise RuntimeError("the batch failed")
    except RuntimeError:
        pass
    assert not in_flight.busy([("requests", 3)]), "a failed batch is no longer in flight"


async def test_the_consumers_of_a_service_start_side_by_side(servers, namespace, monkeypatch):
    """Each consumer that joins its group makes the members already in it rejoin at their next
    heartbeat, so a service whose consumers start one by one (FastStream's own start) takes a
    round per consumer. Every consumer's start must be under way before any of them has finished."""
    await the_topics(servers, namespace)
    settings = ServiceSettings(
        kafka_bootstrap_servers=servers.kafka_bootstrap, mongodb_url=servers.mongodb_url, topic_namespace=namespace,
        database=f"{namespace}_start", partner_registry_database=f"{namespace}_partners", batch_consumers=3,
    )
    async with a_member(settings, Gate(PersonReferences(settings.person_ref_key.get_secret_value()))) as member:
        subscribers = member.broker.subscribers
        all_begun = asyncio.Barrier(len(subscribers))
        assert len(subscribers) == 3

        for subscriber in subscribers:
            async def start(begin=subscriber.start) -> None:
                # Bounds a hang: started one by one, the first waits here for the others in vain.
                await asyncio.wait_for(all_begun.wait(), timeout=30)
                await begin()

            monkeypatch.setattr(subscriber, "start", start)
        await member.start()
        assert all(subscriber.consumer is not None for subscriber in subscribers), "every consumer started"
