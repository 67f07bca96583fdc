"""The eligibility document of a card is written by every change of its holder, from several
topics and processes at once: the newest version of the person stands, whatever order the
writes come in, and the writes of side-by-side use cases go to the database together."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date

import pytest
from pymongo import AsyncMongoClient

from services.insurance.domain import CardStatus, EligibilityRecord, InsuranceUse
from services.insurance.store import InsuranceStore
from services.kit.store import BatchingDatabase
from tests.support.mongo import CommandCounter


@pytest.fixture
async def counted_store(servers, namespace) -> AsyncIterator[tuple[InsuranceStore, CommandCounter]]:
    counter = CommandCounter()
    client: AsyncMongoClient = AsyncMongoClient(servers.mongodb_url, event_listeners=[counter], retryWrites=False)
    yield InsuranceStore(BatchingDatabase(client[f"{namespace}_eligibility"])), counter  # type: ignore[arg-type]
    await client.close()


def a_record(certificate_id: str, version: int, status: CardStatus = CardStatus.active) -> EligibilityRecord:
    return EligibilityRecord(
        certificate_id=certificate_id, person_ref=f"pr_{certificate_id}", card_status=status,
        card_certificate_expires_on=date(2030, 4, 1), insurance_use=InsuranceUse.registered,
        certificate_application=None, deceased=False, membership=None, version=version,
    )


async def test_the_newest_version_stands_whatever_order_the_writes_come_in(counted_store):
    store, _ = counted_store
    newer, older = a_record("cert-1", 3, CardStatus.suspended), a_record("cert-1", 2)

    await store.save_eligibility(newer)
    await store.save_eligibility(older)  # a write from an earlier change, late
    assert await store.eligibility_record("cert-1") == newer

    newest = replace(newer, card_status=CardStatus.active, version=4)
    await store.save_eligibility(newest)
    assert await store.eligibility_record("cert-1") == newest

    again = replace(newest, deceased=True)  # the same version written again: a rerun's own record
    await store.save_eligibility(again)
    assert await store.eligibility_record("cert-1") == again


async def test_writes_of_one_card_at_the_same_moment_leave_the_newest(counted_store):
    store, _ = counted_store
    versions = [5, 9, 7, 8, 6]

    await asyncio.gather(*(store.save_eligibility(a_record("cert-2", v)) for v in versions))

    stored = await store.eligibility_record("cert-2")
    assert stored is not None and stored.version == 9


async def test_the_writes_of_many_cards_at_the_same_moment_go_together(counted_store):
    store, counter = counted_store
    await asyncio.gather(*(store.save_eligibility(a_record(f"card-{i}", 1)) for i in range(20)))
    counter.commands.clear()

    await asyncio.gather(*(store.save_eligibility(a_record(f"card-{i}", 2)) for i in range(20)))

    assert counter.commands == Counter({"find": 1, "update": 1})
    stored = await asyncio.gather(*(store.eligibility_record(f"card-{i}") for i in range(20)))
    assert [record.version if record else None for record in stored] == [2] * 20

    counter.commands.clear()
    await asyncio.gather(*(store.save_eligibility(a_record(f"card-{i}", 2)) for i in range(20)))
    assert counter.commands == Counter({"find": 1}), "a record already written as it is is not written again"
