"""The fault scenarios: each streams the mixed workload, breaks something in the middle, waits
until all work has settled and audits it. Tests in tests/faults/ call these; so does
`python -m reliability`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from mynumber_cli import partner_keys

from . import poison
from .audit import Figures
from .fleet import SERVICE_NAMES
from .harness import Scenario, interleave_by_key, run_scenario
from .stack import PrivateStack

POISON_SHARE = 0.05


def _at(fractions: list[float], action: Callable[[Scenario, int], Awaitable[None]]) -> Callable[[Scenario, int], Awaitable[None]]:
    """A hook that runs `action(scenario, i)` once when the stream passes each fraction of its events."""
    done: set[int] = set()

    async def hook(scenario: Scenario, sent: int) -> None:
        for position, fraction in enumerate(fractions):
            if position not in done and sent >= fraction * scenario.total:
                done.add(position)
                await action(scenario, position)

    return hook


async def kill_each_service(stack: PrivateStack, events: int, work_dir: Path) -> Figures:
    """1. kill -9 one instance of each service in turn, in the middle of the stream, then restart it."""

    async def kill(scenario: Scenario, position: int) -> None:
        service = SERVICE_NAMES[position]
        pid = scenario.fleet.kill(service)
        scenario.note(f"kill -9 {service} (pid {pid}) after {scenario.sent} events")
        scenario.fleet.start(service, wait=False)  # like a supervisor; the stream goes on meanwhile

    figures = await run_scenario("kill -9 each service in turn", stack, events=events, work_dir=work_dir,
                                 hook=_at([0.3, 0.45, 0.6, 0.75], kill))
    return figures


async def restart_kafka(stack: PrivateStack, events: int, work_dir: Path) -> Figures:
    """2. restart the Kafka broker in the middle of the stream."""

    async def restart(scenario: Scenario, _: int) -> None:
        started = time.monotonic()
        await asyncio.to_thread(scenario.stack.restart_kafka)
        scenario.note(f"Kafka restarted after {scenario.sent} events (down and up in {time.monotonic() - started:.0f} s)")

    return await run_scenario("restart the Kafka broker", stack, events=events, work_dir=work_dir,
                              hook=_at([0.5], restart))


async def restart_mongodb(stack: PrivateStack, events: int, work_dir: Path) -> Figures:
    """3. restart the MongoDB-compatible server in the middle of the stream: back off, recover, no crash loop."""

    async def restart(scenario: Scenario, _: int) -> None:
        await asyncio.to_thread(scenario.stack.stop_mongodb)
        scenario.note(f"FerretDB stopped after {scenario.sent} events")
        await asyncio.sleep(3)  # an outage the services must ride out with back-off
        await asyncio.to_thread(scenario.stack.start_mongodb)
        scenario.note("FerretDB started again")

    figures = await run_scenario("restart the MongoDB-compatible server", stack, events=events, work_dir=work_dir,
                                 hook=_at([0.5], restart), after_stream=_no_crash_loop)
    return figures


def _no_crash_loop(scenario: Scenario, figures: Figures) -> None:
    crashed = scenario.fleet.crashed()
    restarts = {name: count - 1 for name, count in scenario.fleet.starts().items() if count > 1}
    figures.notes.append(f"instances that exited on their own: {crashed or 'none'}; restarts: {restarts or 'none'}")
    if crashed:
        figures.lost.append(f"crashed instead of backing off: {crashed}")


async def bank_faults(stack: PrivateStack, events: int, work_dir: Path) -> Figures:
    """4. the bank simulator times out and answers 500 for a while during the payouts."""
    clearing: list[asyncio.Task] = []

    async def clear_later(scenario: Scenario) -> None:
        deadline = time.monotonic() + 120  # bounds the outage if few bulk calls are made
        while time.monotonic() < deadline:
            injected = sum((await asyncio.to_thread(scenario.fleet.bank_ledger))["faults_injected"].values())
            if injected >= 8:
                break
            await asyncio.sleep(0.5)
        await asyncio.to_thread(scenario.fleet.bank_faults)  # all zero: the bank is well again
        scenario.note(f"bank faults cleared after {injected} injected")

    async def start_faults(scenario: Scenario, phase: str) -> None:
        if phase != "the day's traffic":
            return
        await asyncio.to_thread(scenario.fleet.bank_faults, error_500_every=3, error_500_after_booking_every=4,
                                timeout_every=5, timeout_seconds=3.0, duplicate_answers_every=7)
        scenario.note("bank: 500 before booking every 3rd call, 500 after booking every 4th, "
                      "a late answer (after booking) every 5th, doubled answers every 7th")
        clearing.append(asyncio.create_task(clear_later(scenario)))

    env = {"MYNUMBER_BANK_TIMEOUT_SECONDS": "1.5", "MYNUMBER_BANK_TRANSFER_BATCH_SIZE": "5",
           "MYNUMBER_BANK_BACKOFF_SECONDS": "0.2", "MYNUMBER_BREAKER_RESET_SECONDS": "2",
           "MYNUMBER_DISPATCHER_CLAIM_SIZE": "50"}
    try:
        return await run_scenario("bank times out and answers 500", stack, events=events, work_dir=work_dir,
                                  extra_env=env, phase_done=start_faults)
    finally:
        for task in clearing:
            task.cancel()


async def poison_messages(stack: PrivateStack, events: int, work_dir: Path) -> Figures:
    """5. poison messages mixed in at 5 %: all dead-lettered or quarantined, no partition stalls."""
    rng = random.Random(5)
    counter = iter(range(10**9))

    def mix(scenario: Scenario, batch: list) -> list:
        keys = {target.source: partner_keys.load_or_create_key(scenario.keys_dir, target.source)
                for target in poison.TARGETS.values()}
        out = list(batch)
        for _ in range(max(1, round(len(batch) * POISON_SHARE))):
            n = next(counter)
            kind = poison.KINDS[n % len(poison.KINDS)]
            topic, record, subject = poison.record(kind, n, scenario.namespace, keys, rng)
            scenario.poison.append({"kind": kind, "ce_id": record.header("ce_id").decode()})
            out.insert(rng.randrange(len(out) + 1), (topic, record, subject))
        return out

    return await run_scenario("poison messages at 5 %", stack, events=events, work_dir=work_dir, transform=mix)


async def duplicates_and_reordering(stack: PrivateStack, events: int, work_dir: Path) -> Figures:
    """6. every message delivered twice, and reordered across keys (never within one key)."""
    rng = random.Random(6)

    def twice(scenario: Scenario, batch: list) -> list:
        doubled = [item for original in batch for item in (original, original)]
        return interleave_by_key(doubled, rng)

    return await run_scenario("every event twice, reordered across keys", stack, events=events, work_dir=work_dir,
                              transform=twice, after_audit=prove_the_audit_sees)


async def prove_the_audit_sees(scenario: Scenario, figures: Figures) -> None:
    """A control: remove one card, give someone a second card and republish one fact id with other bytes,
    then audit again. The audit must report each, or its zeros would mean nothing."""
    from aiokafka import AIOKafkaProducer
    from mynumber_contracts import topics
    from pymongo import AsyncMongoClient

    from . import audit

    client: AsyncMongoClient = AsyncMongoClient(scenario.fleet.mongodb, serverSelectionTimeoutMS=10000)
    try:
        cards = client[f"{scenario.namespace}_enrollment"]["cards"]
        removed, doubled = await cards.find({"state": "active"}).limit(2).to_list()
        await cards.delete_one({"_id": removed["_id"]})
        await cards.insert_one({**doubled, "_id": f"{doubled['_id']}-copy", "certificate_id": f"{doubled['certificate_id']}-copy"})
    finally:
        await client.close()
    facts = await audit.read_topics(scenario.fleet.kafka, [topics.for_service("enrollment", scenario.namespace).facts])
    producer = AIOKafkaProducer(bootstrap_servers=scenario.fleet.kafka)
    await producer.start()
    try:
        await producer.send_and_wait(facts[0].topic, facts[0].value + b" ", key=facts[0].key,
                                     headers=[(k, v.encode()) for k, v in facts[0].headers.items()])
    finally:
        await producer.stop()
    tampered = await audit.audit(scenario)
    figures.notes.append(
        f"control: after removing a card, giving someone a second card and reusing a fact id the audit reports "
        f"{len(tampered.lost)} lost and {len(tampered.duplicated)} duplicated")
    figures.control = tampered


async def scale_out(stack: PrivateStack, events: int, work_dir: Path) -> Figures:
    """Two instances of every service in one consumer group; a third joins and the first leaves mid-stream."""

    async def rebalance(scenario: Scenario, position: int) -> None:
        if position == 0:
            for service in SERVICE_NAMES:
                scenario.fleet.start(service, 2, wait=False)
            scenario.note(f"a third instance of every service joined after {scenario.sent} events")
        else:
            await asyncio.to_thread(lambda: [scenario.fleet.stop(s, 0) for s in SERVICE_NAMES])
            scenario.note(f"the first instance of every service left after {scenario.sent} events")

    return await run_scenario("scale-out: 2 instances, one joins, one leaves", stack, events=events, work_dir=work_dir,
                              instances_per_service=2, hook=_at([0.35, 0.65], rebalance))


ALL = {
    "kill": kill_each_service,
    "kafka": restart_kafka,
    "mongodb": restart_mongodb,
    "bank": bank_faults,
    "poison": poison_messages,
    "duplicates": duplicates_and_reordering,
    "scale_out": scale_out,
}
