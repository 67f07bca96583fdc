"""The kit takes in records by the batch, against the real broker and database: one person's
events run in their order, different people's side by side, and an event id repeated inside a
batch has one effect (or is quarantined when its content differs)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from mynumber_contracts import topics
from mynumber_contracts.enrollment import RegisterResident, ResidentRegistered
from pydantic import ValidationError

from services.kit.clock import SystemClock
from services.kit.messaging import EventService, HandlerContext, HandlerRegistry
from services.kit.people import PersonReferences
from services.kit.settings import ServiceSettings
from services.kit.store import connect
from tests.kit.test_envelope_dead_letter_idempotency import resident
from tests.support.kafka import PartnerPublisher, TopicReader, create_topics


@dataclass
class Timeline:
    people: PersonReferences
    steps: list[tuple[str, str]] = field(default_factory=list)  # ("start" | "end", request id)
    runs: list[str] = field(default_factory=list)


handlers = HandlerRegistry()


def registered(event: RegisterResident, people: PersonReferences) -> ResidentRegistered:
    assert event.my_number is not None
    return ResidentRegistered(person_ref=people.for_number(event.my_number), municipality_code=event.municipality_code,
                              attributes=event.attributes, nationality=event.nationality, request_id=event.request_id)


@handlers.handles(RegisterResident)
async def take_a_while(event: RegisterResident, ctx: HandlerContext[Timeline]) -> Sequence[ResidentRegistered]:
    """Records when each event starts and ends; each takes long enough for another to start meanwhile."""
    ctx.deps.runs.append(event.request_id)
    ctx.deps.steps.append(("start", event.request_id))
    await asyncio.sleep(0.05)
    ctx.deps.steps.append(("end", event.request_id))
    fact = registered(event, ctx.deps.people)
    if event.request_id.startswith("huge"):  # a fact larger than the broker takes (4 MiB)
        fact = fact.model_copy(update={"request_id": "x" * 5_000_000})
    return [fact]


@asynccontextmanager
async def a_service_started_after(servers, namespace: str, publish, **overrides: Any
                                  ) -> AsyncIterator[tuple[EventService[Timeline], Timeline]]:
    """Publish first, then start the service, so everything published comes in one batch."""
    settings = ServiceSettings(
        kafka_bootstrap_servers=servers.kafka_bootstrap, mongodb_url=servers.mongodb_url, topic_namespace=namespace,
        database=f"{namespace}_intake", partner_registry_database=f"{namespace}_partners", partner_cache_seconds=0.5,
        **{"batch_consumers": 1, **overrides},
    )
    timeline = Timeline(PersonReferences(settings.person_ref_key.get_secret_value()))
    client, database = connect(settings.mongodb_url, settings.database, app_name="intake")
    service = EventService("enrollment", settings=settings, database=database, clock=SystemClock(), deps=timeline)
    service.include(handlers)
    await publish(service)
    await service.start()
    try:
        yield service, timeline
    finally:
        await service.stop()
        await client.close()


async def the_topics(servers, namespace: str) -> None:
    await create_topics(servers.kafka_bootstrap, [*topics.for_service("enrollment", namespace).all(),
                                                  topics.quarantine_topic(namespace)])


def a_request(person: str, step: int) -> RegisterResident:
    return resident(1000 + ord(person[0])).model_copy(update={"request_id": f"{person}-{step}"})  # one number per person


async def test_one_persons_events_run_in_order_and_different_peoples_side_by_side(servers, namespace):
    await the_topics(servers, namespace)
    async with PartnerPublisher(servers.kafka_bootstrap, namespace) as partner:

        async def publish(service: EventService[Timeline]) -> None:
            for step in range(5):
                for person in ("alice", "bob", "carol"):
                    await partner.send(a_request(person, step), subject=person)

        async with (
            TopicReader(servers.kafka_bootstrap, topics.for_service("enrollment", namespace).facts) as facts,
            a_service_started_after(servers, namespace, publish) as (_, timeline),
        ):
            await facts.wait_count(15, ResidentRegistered.event_type)

    for person in ("alice", "bob", "carol"):
        own = [(what, request) for what, request in timeline.steps if request.startswith(person)]
        assert own == [(what, f"{person}-{step}") for step in range(5) for what in ("start", "end")], "in order, one at a time"
    first_end = timeline.steps.index(("end", "alice-0"))
    assert {"bob-0", "carol-0"} <= {request for what, request in timeline.steps[:first_end] if what == "start"}, \
        "other people's events started while alice's first one ran"
    published = [r.json()["request_id"] for r in facts.of_type(ResidentRegistered.event_type)]
    for person in ("alice", "bob", "carol"):
        assert [r for r in published if r.startswith(person)] == [f"{person}-{step}" for step in range(5)], \
            "each person's facts go out in the order of the events"


async def test_a_keys_earlier_events_are_recorded_before_its_next_one_runs(servers, namespace):
    """Should the process die mid-batch, its redelivery answers the earlier events of a key from
    the guard instead of running them again on top of what the later ones wrote. A key with one
    event in the batch is recorded with the batch, as before."""
    await the_topics(servers, namespace)
    async with PartnerPublisher(servers.kafka_bootstrap, namespace) as partner:
        sent = {request.request_id: partner.record(request, subject=request.request_id.split("-")[0])
                for request in (a_request("ivy", 0), a_request("ivy", 1), a_request("ivy", 2), a_request("jon", 0))}
        request_of = {record.header("ce_id").decode(): request_id for request_id, record in sent.items()}

        async def publish(service: EventService[Timeline]) -> None:
            record_in_guard = service.guard.record

            async def noted(outcomes):
                timeline = service.deps
                timeline.steps.append(("recorded", ",".join(sorted(request_of[r.envelope.id] for r, _ in outcomes))))
                return await record_in_guard(outcomes)

            service.guard.record = noted
            for record in sent.values():
                await partner.send_record(service.topics.requests, record)

        async with (
            TopicReader(servers.kafka_bootstrap, topics.for_service("enrollment", namespace).facts) as facts,
            a_service_started_after(servers, namespace, publish) as (service, timeline),
        ):
            await facts.wait_count(4, ResidentRegistered.event_type)
            recorded = await service.guard.processed(list(request_of))

    ivy = [step for step in timeline.steps if step[1].startswith("ivy") or step[0] == "recorded"]
    assert ivy[:8] == [("start", "ivy-0"), ("end", "ivy-0"), ("recorded", "ivy-0"),
                       ("start", "ivy-1"), ("end", "ivy-1"), ("recorded", "ivy-1"),
                       ("start", "ivy-2"), ("end", "ivy-2")]
    assert timeline.steps[-1] == ("recorded", "ivy-2,jon-0"), "the rest with the batch, each event recorded once"
    assert sorted(timeline.runs) == ["ivy-0", "ivy-1", "ivy-2", "jon-0"] and len(recorded) == 4


async def test_an_event_id_repeated_inside_a_batch_runs_once_and_a_reused_one_is_quarantined(servers, namespace):
    quarantine_topic = topics.quarantine_topic(namespace)
    await the_topics(servers, namespace)
    async with PartnerPublisher(servers.kafka_bootstrap, namespace) as partner:
        original = partner.record(a_request("dave", 0), subject="dave")
        reused = partner.record(a_request("dave", 1), subject="dave", event_id=original.header("ce_id").decode())

        async def publish(service: EventService[Timeline]) -> None:
            for record in (original, original, reused):
                await partner.send_record(service.topics.requests, record)

        async with (
            TopicReader(servers.kafka_bootstrap, topics.for_service("enrollment", namespace).facts) as facts,
            TopicReader(servers.kafka_bootstrap, quarantine_topic) as quarantine,
            a_service_started_after(servers, namespace, publish) as (_, timeline),
        ):
            await quarantine.wait_count(1)
            await facts.wait_count(2, ResidentRegistered.event_type)

    assert timeline.runs == ["dave-0"]
    published = facts.of_type(ResidentRegistered.event_type)
    assert len({r.id for r in published}) == 1 and {r.json()["request_id"] for r in published} == {"dave-0"}
    assert quarantine.records[0].record.value == reused.value
    assert quarantine.records[0].header("dlq_reason") == "replayed_event_id"


async def test_an_event_whose_facts_cannot_be_sent_is_dead_lettered_and_the_rest_of_its_batch_goes_on(servers, namespace):
    await the_topics(servers, namespace)
    dead_letter_topic = topics.for_service("enrollment", namespace).dead_letter
    async with PartnerPublisher(servers.kafka_bootstrap, namespace) as partner:
        huge = partner.record(a_request("huge", 0), subject="huge")

        async def publish(service: EventService[Timeline]) -> None:
            await partner.send(a_request("erin", 0), subject="erin")
            await partner.send_record(service.topics.requests, huge)
            await partner.send(a_request("frank", 0), subject="frank")

        async with (
            TopicReader(servers.kafka_bootstrap, topics.for_service("enrollment", namespace).facts) as facts,
            TopicReader(servers.kafka_bootstrap, dead_letter_topic) as dead_letters,
            a_service_started_after(servers, namespace, publish) as (service, timeline),
        ):
            await dead_letters.wait_count(1)
            await facts.wait_for(lambda records: {"erin-0", "frank-0"} <= {r.json()["request_id"] for r in records},
                                 what="the other events' facts")
            taken_in = service.metrics.registry.get_sample_value(
                "mynumber_events_taken_in_total",
                {"service": "enrollment", "event_type": RegisterResident.event_type, "outcome": "new"},
            )

    assert sorted(timeline.runs) == ["erin-0", "frank-0", "huge-0"]
    assert taken_in == 2, "the two events done one by one are counted; the dead-lettered one is not"
    letter = dead_letters.records[0]
    assert letter.record.value == huge.value
    assert letter.header("dlq_reason") == "handler_error" and "MessageSizeTooLarge" in letter.header("dlq_detail")
    assert all(len(r.record.value) < 4 * 1024 * 1024 for r in facts.records)


async def test_a_batch_larger_than_its_byte_limit_is_taken_in_part_after_part(servers, namespace):
    await the_topics(servers, namespace)
    async with PartnerPublisher(servers.kafka_bootstrap, namespace) as partner:

        async def publish(service: EventService[Timeline]) -> None:
            for step in range(3):
                for person in ("gina", "hugo"):
                    await partner.send(a_request(person, step), subject=person)

        async with (
            TopicReader(servers.kafka_bootstrap, topics.for_service("enrollment", namespace).facts) as facts,
            a_service_started_after(servers, namespace, publish, batch_max_bytes=1) as (_, timeline),
        ):
            await facts.wait_count(6, ResidentRegistered.event_type)

    # Every record is larger than one byte: each is a part of its own, so nothing runs side by side.
    assert [what for what, _ in timeline.steps] == ["start", "end"] * 6
    assert sorted(timeline.runs) == sorted(f"{person}-{step}" for person in ("gina", "hugo") for step in range(3))


async def test_the_consumers_heartbeat_as_often_as_the_setting_says(servers, namespace):
    await the_topics(servers, namespace)

    async def publish_nothing(service: EventService[Timeline]) -> None:
        return None

    async with a_service_started_after(servers, namespace, publish_nothing, heartbeat_interval_ms=1_000,
                                       batch_consumers=2) as (service, _):
        topic = service.topics.requests
        consumers = [subscriber.consumer for subscriber in service._subscribers[topic]]
        # aiokafka keeps the interval it was given on the running consumer; nothing public reports it.
        assert [consumer._heartbeat_interval_ms for consumer in consumers] == [1_000, 1_000]


def test_a_heartbeat_too_slow_for_the_session_timeout_is_refused():
    with pytest.raises(ValidationError, match="heartbeat_interval_ms"):
        ServiceSettings(heartbeat_interval_ms=5_000)
