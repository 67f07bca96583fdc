"""Assigning the number: random (secrets), valid check digit, unique across the registry and
never reused, the same on a replay, and handed only to the municipality that asked, never
on a topic."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import time
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from mynumber_contracts import MyNumber, is_valid_my_number
from mynumber_contracts.enrollment import RecordDeath, ResidentRegistered

from services.enrollment import store as store_module
from services.enrollment.handlers import record_death, register_resident
from tests.enrollment.support import NOW, new_number, registration, running_enrollment, use_cases
from tests.support.kafka import TopicReader

# Full size (100,000) wherever the suite runs by hand; CI (CI=true) proves the same race at 20,000.
ASSIGNMENT_COUNT = int(os.environ.get("MYNUMBER_ASSIGNMENT_COUNT", "20000" if os.environ.get("CI") else "100000"))
E2E_COUNT = int(os.environ.get("MYNUMBER_ASSIGNMENT_E2E_COUNT", "200"))
CHUNK = 1000
TOKENS = "operator=development-only-operator-token,municipality/131016=chiyoda-token-0001,municipality/271276=kita-token-00001"
CHIYODA = {"Authorization": "Bearer chiyoda-token-0001"}
KITA = {"Authorization": "Bearer kita-token-00001"}
_DIGIT_RUN = re.compile(rb"[0-9]{12,}")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def valid_numbers_in(data: bytes) -> list[str]:
    """Every valid Individual Number hiding in `data`: each 12-digit window of each digit run."""
    found = []
    for run in _DIGIT_RUN.findall(data):
        found += [run[i:i + 12].decode() for i in range(len(run) - 11) if is_valid_my_number(run[i:i + 12].decode())]
    return found


async def scan_fact_topics_for_numbers(bootstrap: str, namespace: str, known: set[str]) -> tuple[int, list[str]]:
    """Read every fact topic of the namespace from the beginning; return (records read, numbers found).

    Found: any of the `known` numbers anywhere (value, key, any header), and any valid number in a
    12-digit run anywhere except inside a UUID-shaped header value (event and correlation ids,
    identifiers by construction, whose last group is 12 hex characters)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        fact_topics = [t for t in await admin.list_topics() if t.startswith(f"{namespace}.") and t.endswith(".facts")]
    finally:
        await admin.close()
    assert fact_topics
    read, found = 0, []
    for topic in fact_topics:
        async with TopicReader(bootstrap, topic) as reader:
            await reader.settle(quiet_seconds=1.5)
        for received in reader.records:
            read += 1
            record = received.record
            parts = [record.value or b"", record.key or b"", *(value for _, value in record.headers or ())]
            found += [n for n in known for part in parts if n.encode() in part]
            for part in parts:
                if not _UUID.match(part.decode(errors="replace")):
                    found += valid_numbers_in(part)
    return read, found


@pytest.mark.slow
async def test_numbers_assigned_in_bulk_by_two_concurrent_workers_are_unique_valid_and_replay_the_same(settings_for):
    """ASSIGNMENT_COUNT keys (MYNUMBER_ASSIGNMENT_COUNT, default 100,000), split between two workers on
    separate database clients; both start with the same tenth of the keys at once (a replay racing itself)."""
    settings = settings_for("enrollment")
    keys = [f"131016/newborn-{i}" for i in range(ASSIGNMENT_COUNT)]
    overlap = ASSIGNMENT_COUNT // 10
    middle = overlap + (ASSIGNMENT_COUNT - overlap) // 2
    started = time.monotonic()
    async with use_cases(settings) as first, use_cases(settings) as second:
        async def work(run, share: list[str]) -> dict[str, MyNumber]:
            assigned: dict[str, MyNumber] = {}
            for i in range(0, len(share), CHUNK):
                assigned |= await run.deps.store.assign_numbers(share[i:i + CHUNK], at=NOW)
            return assigned

        async with asyncio.timeout(float(os.environ.get("MYNUMBER_ASSIGNMENT_TIMEOUT", "420"))):  # stop the workers before teardown
            a, b = await asyncio.gather(work(first, keys[:middle]), work(second, keys[:overlap] + keys[middle:]))
        elapsed = time.monotonic() - started
        replay_keys = keys[::max(1, ASSIGNMENT_COUNT // 1000)]
        replayed = await second.deps.store.assign_numbers(replay_keys, at=NOW)
        stored_assignments = await first.deps.store.assignments.count_documents({})
        registry = await first.deps.store.number_registry.count_documents({})

    print(f"\nassigned {ASSIGNMENT_COUNT} numbers with two workers in {elapsed:.1f} s")
    both = a | b
    assert len(both) == ASSIGNMENT_COUNT == stored_assignments
    digits = [n.reveal() for n in both.values()]
    assert len(set(digits)) == ASSIGNMENT_COUNT, "every number is unique"
    assert all(is_valid_my_number(d) for d in digits)
    shared = set(a) & set(b)
    assert len(shared) >= overlap - 1 and all(a[k] == b[k] for k in shared), "both workers got the same number for a key"
    assert all(replayed[k] == both[k] for k in replay_keys), "a replayed request gets the same number"
    assert registry >= ASSIGNMENT_COUNT
    # neither sequential nor clustered: consecutive keys get numbers far apart, spread over the whole range
    ordered = [int(both[k].reveal()[:11]) for k in keys[:1000]]
    assert sum(abs(x - y) < 1000 for x, y in itertools.pairwise(ordered)) == 0
    assert min(ordered) < 10**10 and max(ordered) > 9 * 10**10


async def test_a_number_ever_held_is_never_drawn_again_even_after_death(settings_for, monkeypatch):
    async with use_cases(settings_for("enrollment")) as run:
        held, deceased = new_number(), new_number()
        await run.run(register_resident, registration(held))
        await run.run(register_resident, registration(deceased))
        await run.run(record_death, RecordDeath(my_number=deceased, died_on=NOW.date()))
        fresh = new_number()
        draws = iter([held, deceased, held, fresh])
        monkeypatch.setattr(store_module, "random_number", lambda: next(draws))

        assigned = await run.deps.store.assign_numbers(["131016/arrival-1"], at=NOW)

    assert assigned == {"131016/arrival-1": fresh}


async def test_registering_without_a_number_assigns_one_for_pickup_by_that_municipality_only(servers, settings_for):
    settings = settings_for("enrollment", http_api_tokens=TOKENS)
    async with running_enrollment(servers, settings, instances=2) as enrollment:
        requests = [registration(None, request_id=f"newborn-{uuid.uuid4().hex[:8]}-{i}", born=NOW.date(),
                                 name_kanji=f"山田 {chr(0x4E00 + i)}子") for i in range(E2E_COUNT)]
        await asyncio.gather(*(enrollment.send(r, subject=r.request_id) for r in requests))
        replayed = requests[: max(1, E2E_COUNT // 10)]
        await asyncio.gather(*(enrollment.send(r, subject=f"again-{r.request_id}") for r in replayed))
        facts = await enrollment.facts_of(ResidentRegistered.event_type, E2E_COUNT + len(replayed), timeout=400)

        http = enrollment.service.http
        pickups = {}
        for request in requests:
            answer = await http.get(f"/assignments/{request.request_id}", headers=CHIYODA)
            assert answer.status_code == 200, answer.text
            assert answer.headers["cache-control"] == "no-store"
            pickups[request.request_id] = answer.json()
        elsewhere = await http.get(f"/assignments/{requests[0].request_id}", headers=KITA)
        anonymous = await http.get(f"/assignments/{requests[0].request_id}")
        operator = await http.get(f"/assignments/{requests[0].request_id}",
                                  headers={"Authorization": "Bearer development-only-operator-token"})
        numbers = [p["my_number"] for p in pickups.values()]
        read, leaked = await scan_fact_topics_for_numbers(servers.kafka_bootstrap, settings.topic_namespace, set(numbers))

    assert len(set(numbers)) == E2E_COUNT and all(is_valid_my_number(n) for n in numbers)
    people = enrollment.service.service.deps.people
    assert all(p["person_ref"] == people.for_number(MyNumber(p["my_number"])) for p in pickups.values())
    by_request: dict[str, set[str]] = {}
    for fact in facts:
        assert fact["number_assigned"] is True
        by_request.setdefault(fact["request_id"], set()).add(fact["person_ref"])
    assert all(len(refs) == 1 for refs in by_request.values()), "a replay is the same resident with the same number"
    assert {r: refs.pop() for r, refs in by_request.items()} == {r: p["person_ref"] for r, p in pickups.items()}
    assert (elsewhere.status_code, anonymous.status_code, operator.status_code) == (404, 401, 403)
    assert read >= E2E_COUNT and leaked == [], "no valid number on any fact topic"


def test_the_number_scan_finds_a_number_wherever_it_hides():
    number = new_number().reveal()
    assert valid_numbers_in(f'{{"x":"{number}"}}'.encode()) == [number]
    assert number in valid_numbers_in(f"ab7{number}9".encode()), "inside a longer digit run too"
    assert valid_numbers_in(b"2025-06-02T01:00:00Z pr_abcdefghijklmnopqrstuvwxyz") == []


@pytest.mark.parametrize("count", [3])
async def test_assigned_numbers_are_sealed_like_registered_ones_and_rotate(settings_for, mongo_client, count):
    settings = settings_for("enrollment")
    async with use_cases(settings) as run:
        assigned = await run.deps.store.assign_numbers([f"131016/a{i}" for i in range(count)], at=NOW)
    documents = list(mongo_client[settings.database_name("enrollment")]["number_assignments"].find({}))
    dump = repr(documents).encode() + b"".join(bytes(d["number_ciphertext"]) for d in documents)
    assert all(n.reveal().encode() not in dump for n in assigned.values())
    assert {d["number_key_id"] for d in documents} == {"dev-1"}
