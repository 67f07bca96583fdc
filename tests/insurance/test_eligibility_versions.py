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
from mynumber_contracts.insurance import CopayCategory, EligibilityDenialReason
from pymongo import AsyncMongoClient

from services.insurance.domain import (
    CardStatus,
    EligibilityRecord,
    InsuranceUse,
    LinkState,
    Membership,
    MembershipStatus,
    answer_eligibility,
)
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
        certificate_application=None, deceased=False, memberships=(), version=version,
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


def a_document_before_memberships_had_dates(certificate_id: str, membership: dict | None) -> dict:
    """An eligibility document as written before session 15: one `membership` (the primary one in
    force when written, without its last day) or None."""
    return {"_id": certificate_id, "person_ref": "pr_old", "card_status": "active", "card_certificate_expires_on": "2030-04-01",
            "insurance_use": "registered", "certificate_application": None, "deceased": False, "membership": membership,
            "version": 3}


async def test_a_document_written_before_memberships_had_dates_is_read_and_rewritten(counted_store):
    store, _ = counted_store
    member = {"member_key": "06139999/記号/1", "insurer_number": "06139999", "member_symbol": "記号", "member_number": "1",
              "copay_category": "twenty_percent", "enrolled_on": "2026-04-01"}
    await store.eligibility.insert_one(a_document_before_memberships_had_dates("cert-old", member))
    await store.eligibility.insert_one(a_document_before_memberships_had_dates("cert-old-none", None))

    record = await store.eligibility_record("cert-old")
    assert record is not None
    assert record.memberships == (Membership(
        member_key="06139999/記号/1", insurer_number="06139999", member_symbol="記号", member_number="1",
        copay_category=CopayCategory.twenty_percent, enrolled_on=date(2026, 4, 1), status=MembershipStatus.active,
        link_state=LinkState.linked, person_ref="pr_old", withdrawn_on=None),)
    answer = answer_eligibility(record, today=date(2026, 4, 1), no_card_surcharge=True)
    assert answer.eligible and answer.membership == record.memberships[0]
    before = answer_eligibility(record, today=date(2026, 3, 31), no_card_surcharge=True)  # its first day applies too
    assert (before.eligible, before.reason) == (False, EligibilityDenialReason.no_active_membership)
    none = await store.eligibility_record("cert-old-none")
    assert none is not None and none.memberships == ()
    assert answer_eligibility(none, today=date(2026, 4, 1), no_card_surcharge=True).reason is EligibilityDenialReason.no_active_membership

    # The next change of the holder writes the new shape: the old field goes.
    leaving = replace(record.memberships[0], status=MembershipStatus.withdrawn, withdrawn_on=date(2026, 4, 30))
    await store.save_eligibility(replace(record, memberships=(leaving,), version=4))
    stored = await store.eligibility.find_one({"_id": "cert-old"})
    assert "membership" not in stored and stored["memberships"][0]["withdrawn_on"] == "2026-04-30"
    assert await store.eligibility_record("cert-old") == replace(record, memberships=(leaving,), version=4)
