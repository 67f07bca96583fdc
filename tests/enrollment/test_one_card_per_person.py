"""One active card per person: two applications for the same person on two channels at the
same moment -> exactly one accepted, the other rejected as a duplicate, whichever instance
processes which. Proven through the broker with two instances in one consumer group, and
with concurrent use-case calls on separate database clients."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from aiokafka import AIOKafkaProducer
from mynumber_contracts.enrollment import ApplicationAccepted, ApplicationRejected, Channel, DelegatePostOffice

from services.enrollment.handlers import apply_for_card, delegate_post_office, register_resident
from tests.enrollment.support import (
    POST_OFFICE,
    application,
    new_number,
    registration,
    running_enrollment,
    use_cases,
)

ROUNDS = 20


def decisions_published(running) -> float:
    """How many application decisions this instance published (its own metrics registry)."""
    return sum(
        sample.value
        for metric in running.service.metrics.registry.collect()
        for sample in metric.samples
        if sample.name == "mynumber_facts_published_total"
        and sample.labels.get("event_type") in (ApplicationAccepted.event_type, ApplicationRejected.event_type)
    )


def partitions_of(running) -> set[int]:
    service = running.service
    return service.assigned_partitions(service.topics.requests)


async def wait_for_split_assignment(instances, partitions: int = 6, timeout: float = 60.0) -> list[set[int]]:
    """Both instances of the group own part of the request topic (a bounded wait for the rebalance)."""
    deadline = time.monotonic() + timeout
    while True:
        owned = [partitions_of(r) for r in instances]
        if all(owned) and set().union(*owned) == set(range(partitions)) and sum(map(len, owned)) == partitions:
            return owned
        assert time.monotonic() < deadline, f"the group never split the partitions: {owned}"
        await asyncio.sleep(0.2)


async def test_two_channels_at_once_on_two_instances_give_one_card(servers, settings_for):
    async with running_enrollment(servers, settings_for("enrollment"), instances=2) as enrollment:
        owned = await wait_for_split_assignment(enrollment.instances)
        await enrollment.delegate(POST_OFFICE)
        numbers = [new_number() for _ in range(ROUNDS)]
        for number in numbers:
            await enrollment.register(number)

        producer = AIOKafkaProducer(bootstrap_servers=servers.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for round_number, number in enumerate(numbers):
                at_office = application(number.reveal(), Channel.municipal_office, application_id=f"office-{round_number}")
                at_post = application(number.reveal(), Channel.post_office, application_id=f"post-{round_number}")
                # each application goes to a partition of a different instance, and both leave at once
                targets = [(at_office, min(owned[round_number % 2])), (at_post, min(owned[(round_number + 1) % 2]))]
                records = [enrollment.partner.record(a, subject=a.application_id, source=a.office_id) for a, _ in targets]
                await asyncio.gather(*(
                    producer.send_and_wait(enrollment.service.service.topics.requests, record.value, key=record.key,
                                           headers=record.headers, partition=partition)
                    for record, (_, partition) in zip(records, targets, strict=True)
                ))
                await enrollment.facts.wait_for(
                    lambda records, r=round_number: len({x.json()["application_id"] for x in records
                                                         if x.type in (ApplicationAccepted.event_type, ApplicationRejected.event_type)
                                                         and x.json()["application_id"].endswith(f"-{r}")}) == 2,
                    what=f"both decisions of round {round_number}")
        finally:
            await producer.stop()

        decisions = [r for r in enrollment.facts.records
                     if r.type in (ApplicationAccepted.event_type, ApplicationRejected.event_type)]
        by_person = Counter()
        for record in decisions:
            payload = record.json()
            by_person[(payload["person_ref"], record.type, payload.get("reason"))] += 1
        people = enrollment.service.service.deps.people
        for number in numbers:
            person_ref = people.for_number(number)
            assert by_person[(person_ref, ApplicationAccepted.event_type, None)] == 1, number
            assert by_person[(person_ref, ApplicationRejected.event_type, "duplicate")] == 1, number
            assert len(await enrollment.store.cards_of(person_ref)) == 1
        assert len(decisions) == 2 * ROUNDS
        per_instance = [decisions_published(r) for r in enrollment.instances]
        assert all(per_instance), f"both instances decided applications: {per_instance}"


async def test_concurrent_use_case_calls_on_separate_clients_give_one_card(settings_for):
    settings = settings_for("enrollment")
    async with use_cases(settings) as first, use_cases(settings) as second:
        await first.run(delegate_post_office, DelegatePostOffice(municipality_code="131016", post_office_id=POST_OFFICE))
        for round_number in range(ROUNDS):
            number = new_number()
            await first.run(register_resident, registration(number))
            outcomes = await asyncio.gather(
                first.run(apply_for_card, application(number.reveal(), Channel.municipal_office, application_id=f"a-{round_number}")),
                second.run(apply_for_card, application(number.reveal(), Channel.post_office, application_id=f"b-{round_number}")),
            )
            decisions = sorted((type(facts[0]).__name__, getattr(facts[0], "reason", None)) for facts in outcomes)
            assert decisions == [("ApplicationAccepted", None), ("ApplicationRejected", "duplicate")], decisions
            person_ref = first.deps.people.for_number(number)
            assert len(await first.deps.store.cards_of(person_ref)) == 1
            assert await first.deps.store.held_card(person_ref) is not None
