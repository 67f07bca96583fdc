"""The kit verifies the partner signatures of a batch together, in worker threads, and the
partner registry answers a batch's lookups with one read."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import threading
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from mynumber_contracts.partners import Partner, PartnerKey, PartnerType
from mynumber_contracts.signing import canonical_form
from pymongo import AsyncMongoClient

from services.kit import security
from services.kit.security import PartnerRegistry, SignatureChecks, SignedContent
from tests.support.mongo import CommandCounter

PRIVATE_KEY = Ed25519PrivateKey.generate()
PUBLIC_KEY = base64.b64encode(PRIVATE_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def signed(n: int, *, tampered: bool = False, public_key: str = PUBLIC_KEY) -> SignedContent:
    fields = {"event_id": f"event-{n}", "event_type": "RegisterResident", "source": "city-1",
              "time": "2026-11-28T00:00:00Z", "data": f'{{"n": {n}}}'.encode()}
    signature = PRIVATE_KEY.sign(canonical_form(**fields))
    if tampered:
        fields["data"] = b'{"n": -1}'
    return SignedContent(public_key=public_key, signature_b64=base64.b64encode(signature).decode(), **fields)


async def test_signatures_asked_for_together_are_verified_off_the_event_loop_in_a_few_parts(monkeypatch):
    threads_used: Counter[int] = Counter()
    calls: list[int] = []
    verify = security._verify_all

    def counting_verify_all(contents):
        threads_used[threading.get_ident()] += len(contents)
        calls.append(len(contents))
        return verify(contents)

    monkeypatch.setattr(security, "_verify_all", counting_verify_all)
    checks = SignatureChecks(threads=2, least_per_thread=8)
    contents = [signed(n, tampered=n in (5, 77)) for n in range(100)]

    answers = await asyncio.gather(*(checks.hold(content) for content in contents))

    assert answers == [n not in (5, 77) for n in range(100)]  # each caller gets its own answer
    assert sorted(calls) == [50, 50]
    assert threading.get_ident() not in threads_used
    names = {thread.name for thread in threading.enumerate() if thread.ident in threads_used}
    assert names and all(name.startswith("signature-checks") for name in names), "not the default executor"


async def test_a_few_signatures_go_as_one_part_and_a_lone_one_still_gets_its_answer(monkeypatch):
    calls: list[int] = []
    verify = security._verify_all
    monkeypatch.setattr(security, "_verify_all", lambda contents: calls.append(len(contents)) or verify(contents))
    checks = SignatureChecks(threads=4, least_per_thread=8)

    assert await asyncio.gather(*(checks.hold(signed(n)) for n in range(10))) == [True] * 10
    assert await checks.hold(signed(11, tampered=True)) is False
    assert calls == [10, 1]


async def test_a_registered_key_that_is_not_a_key_fails_only_its_own_record():
    checks = SignatureChecks(threads=1)
    not_a_key = base64.b64encode(b"too short").decode()

    answers = await asyncio.gather(
        checks.hold(signed(1)), checks.hold(signed(2, public_key=not_a_key)), checks.hold(signed(3)),
        return_exceptions=True,
    )

    assert answers[0] is True and answers[2] is True
    assert isinstance(answers[1], ValueError)


async def test_a_signature_that_cannot_be_decoded_or_was_made_by_another_key_does_not_hold():
    checks = SignatureChecks(threads=1)
    other_key = Ed25519PrivateKey.generate()
    good = signed(1)
    fields = {"event_id": good.event_id, "event_type": good.event_type, "source": good.source, "time": good.time,
              "data": good.data}
    by_another_key = base64.b64encode(other_key.sign(canonical_form(**fields))).decode()
    cut_short = base64.b64encode(base64.b64decode(good.signature_b64)[:63]).decode()
    contents = [
        good,
        dataclasses.replace(good, signature_b64=by_another_key),
        dataclasses.replace(good, signature_b64=cut_short),
        dataclasses.replace(good, signature_b64="not base64!"),
        dataclasses.replace(good, signature_b64=""),
        dataclasses.replace(good, event_id="event-1\nforged"),  # the signed form refuses line breaks
    ]

    answers = await asyncio.gather(*(checks.hold(content) for content in contents), return_exceptions=True)

    assert answers == [True, False, False, False, False, False]


async def test_a_worker_that_cannot_run_fails_every_caller_of_its_part(monkeypatch):
    def broken(contents):
        raise RuntimeError("no thread to run on")

    monkeypatch.setattr(security, "_verify_all", broken)
    checks = SignatureChecks(threads=1)

    answers = await asyncio.gather(*(checks.hold(signed(n)) for n in range(3)), return_exceptions=True)

    assert [type(answer) for answer in answers] == [RuntimeError] * 3


async def test_when_the_threads_are_shut_down_every_caller_gets_the_error(monkeypatch):
    def closing(*args):
        raise RuntimeError("cannot schedule new futures after shutdown")

    monkeypatch.setattr(asyncio.get_running_loop(), "run_in_executor", closing)
    checks = SignatureChecks(threads=2, least_per_thread=1)

    answers = await asyncio.gather(*(checks.hold(signed(n)) for n in range(4)), return_exceptions=True)

    assert [type(answer) for answer in answers] == [RuntimeError] * 4


@pytest.fixture
async def registry(servers, namespace) -> AsyncIterator[tuple[PartnerRegistry, CommandCounter]]:
    counter = CommandCounter()
    client: AsyncMongoClient = AsyncMongoClient(servers.mongodb_url, event_listeners=[counter])
    partners = PartnerRegistry(client[f"{namespace}_partners"], cache_seconds=60)
    await partners.save(Partner(partner_id="city-1", type=PartnerType.municipality, name="City One",
                                keys=[PartnerKey(key_id="k1", public_key=PUBLIC_KEY)]))
    counter.commands.clear()
    yield partners, counter
    await client.close()


async def test_a_batch_that_finds_the_partner_cache_empty_reads_the_partner_once(registry):
    partners, counter = registry

    found = await asyncio.gather(*(partners.get("city-1") for _ in range(50)))

    assert {partner.partner_id for partner in found} == {"city-1"}
    assert counter.commands == Counter({"find": 1})
    await partners.get("city-1")
    assert counter.commands == Counter({"find": 1}), "then it is cached"


async def test_a_fresh_read_does_not_join_one_that_began_before_it(registry):
    partners, counter = registry

    first, fresh = await asyncio.gather(partners.get("city-1"), partners.get("city-1", fresh=True))

    assert first == fresh
    assert counter.commands == Counter({"find": 2})


async def test_a_failed_read_fails_every_caller_that_waited_for_it_and_the_next_read_starts_afresh(registry, monkeypatch):
    partners, counter = registry
    load = partners._load

    async def unreachable(partner_id):
        raise ConnectionError("the registry's database is down")

    monkeypatch.setattr(partners, "_load", unreachable)
    answers = await asyncio.gather(*(partners.get("city-1") for _ in range(3)), return_exceptions=True)
    assert [type(answer) for answer in answers] == [ConnectionError] * 3

    monkeypatch.setattr(partners, "_load", load)
    assert (await partners.get("city-1")).partner_id == "city-1"


async def test_a_caller_that_gives_up_does_not_cancel_the_read_of_the_others(registry):
    partners, counter = registry
    giving_up = asyncio.ensure_future(partners.get("city-1"))
    staying = asyncio.ensure_future(partners.get("city-1"))
    await asyncio.sleep(0)
    giving_up.cancel()

    assert (await staying).partner_id == "city-1"
    assert giving_up.cancelled()
    assert counter.commands == Counter({"find": 1})
