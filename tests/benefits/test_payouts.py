"""Payout batches against the real broker, the real database and the bank simulator: payments
without a usable account are held and released when one is registered, a refused transfer fails
and is retried after the holder fixes the account, the batch reconciles to the yen, a replay pays
no one twice, and a batch whose totals do not match is rejected whole."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest
from mynumber_contracts import MyNumber
from mynumber_contracts.benefits import (
    AccountChanged,
    AccountChannel,
    AccountInvalidated,
    AccountRegistered,
    AnnouncePayoutBatch,
    PaymentFailed,
    PaymentHeld,
    PaymentSent,
    PaymentSettled,
    PayoutBatchAccepted,
    PayoutBatchReconciled,
    PayoutBatchRejected,
    PayoutRecipient,
    RecordBankCodeChange,
    RegisterReceivingAccount,
    SubmitPayoutChunk,
)
from prometheus_client.parser import text_string_to_metric_families
from pymongo.errors import AutoReconnect

from services.benefits.domain import BatchHeader
from tests.benefits.conftest import PAYING_AGENCY, PORTAL, ZENGIN, Benefits, a_number, an_account, eventually
from tests.support.faults import fail_once
from tests.support.kafka import TopicReader


async def publish_batch(benefits: Benefits, batch_id: str, chunks: Sequence[Sequence[tuple[MyNumber, int]]], *,
                        count: int | None = None, total: int | None = None, period: str = "2026-06") -> None:
    lines = [line for chunk in chunks for line in chunk]
    header = AnnouncePayoutBatch(batch_id=batch_id, programme="child_benefit", period=period,
                                 recipient_count=count if count is not None else len(lines),
                                 total_yen=total if total is not None else sum(a for _, a in lines),
                                 chunk_count=len(chunks))
    await benefits.send(header, subject=batch_id, source=PAYING_AGENCY)
    for index, chunk in enumerate(chunks):
        recipients = [PayoutRecipient(my_number=n, amount_yen=a) for n, a in chunk]
        await benefits.send(SubmitPayoutChunk(batch_id=batch_id, chunk_index=index, recipients=recipients),
                            subject=batch_id, source=PAYING_AGENCY)


async def register(benefits: Benefits, number: MyNumber, request_id: str, account_number: str, holder: str) -> None:
    await benefits.send(RegisterReceivingAccount(request_id=request_id, my_number=number, channel=AccountChannel.portal,
                                                 account=an_account(number=account_number, holder=holder)),
                        subject=request_id, source=PORTAL)
    await benefits.wait_fact(AccountRegistered, request_id=request_id)


async def reconciliation(benefits: Benefits, batch_id: str) -> dict:
    response = await benefits.http.get(f"/batches/{batch_id}/reconciliation")
    assert response.status_code == 200, response.text
    return response.json()


def line(count: int, total: int) -> dict:
    return {"count": count, "total_yen": total}


async def test_held_and_failed_payments_are_released_after_the_account_is_fixed_and_the_batch_reconciles(benefits: Benefits):
    names = ["コバヤシ アイ", "コバヤシ ユウ", "コバヤシ ミキ", "コバヤシ ケイ", "コバヤシ ジュン"]
    people = [await benefits.resident(500 + i, kana=name, kanji=f"小林 {i}", address=f"東京都{i}")
              for i, name in enumerate(names)]
    paid_now, unregistered, closed, renumbered = people[:2], people[2], people[3], people[4]
    for i, number in enumerate(paid_now):
        await register(benefits, number, f"reg-{i}", f"100000{i}", names[i])
    await register(benefits, closed, "reg-3", "1000003", names[3])
    await register(benefits, renumbered, "reg-4", "1000004", names[4])
    await benefits.send(RecordBankCodeChange(request_id="merger", old_bank_code="0005", old_branch_code="123",
                                             new_bank_code="0006", effective_on="2026-06-01"), subject="m", source=ZENGIN)
    await benefits.wait_fact(AccountInvalidated, 4)
    # The merger renumbered everyone: register the first four again at the new bank code.
    for i, number in enumerate(people[:4]):
        if number is unregistered:
            continue
        await benefits.send(RegisterReceivingAccount(
            request_id=f"again-{i}", my_number=number, channel=AccountChannel.portal,
            account=an_account(number=f"100000{i}", holder=names[i], bank="0006")), subject=f"a{i}", source=PORTAL)
    for i in (0, 1, 3):
        await benefits.wait_fact(AccountChanged, request_id=f"again-{i}")
    benefits.bank.closed = {"0006-123-1000003"}

    amounts = [15_000, 10_000, 20_000, 15_000, 30_000]
    lines = list(zip(people, amounts, strict=True))
    await publish_batch(benefits, "cb-2026-06", [lines[:3], lines[3:]])
    accepted = (await benefits.wait_fact(PayoutBatchAccepted, batch_id="cb-2026-06"))[0]
    assert (accepted["recipient_count"], accepted["total_yen"]) == (5, 90_000)

    await benefits.dispatch_until_idle()
    sent = await benefits.wait_fact(PaymentSent, 2)
    assert {s["person_ref"] for s in sent} == {benefits.ref(n) for n in paid_now}
    held = {h["person_ref"]: h["reason"] for h in await benefits.wait_fact(PaymentHeld, 2)}
    assert held == {benefits.ref(unregistered): "no_account", benefits.ref(renumbered): "account_invalidated"}
    failed = (await benefits.wait_fact(PaymentFailed))[0]
    assert (failed["person_ref"], failed["reason"], failed["attempt"]) == (benefits.ref(closed), "account_closed", 1)
    await benefits.wait_fact(PaymentSettled, 2)
    report = await reconciliation(benefits, "cb-2026-06")
    assert report["control"] == line(5, 90_000)
    assert report["paid"] == line(2, 25_000) and report["held"] == line(2, 50_000)
    assert report["failed"] == line(1, 15_000) and report["pending"] == line(0, 0)
    assert report["balanced"] and report["matches_bank_statement"] and report["bank_statement"] == line(2, 25_000)

    # The holders fix their accounts: the held payment is released, the failed one is retried (attempt 2).
    await benefits.send(RegisterReceivingAccount(
        request_id="fix-unregistered", my_number=unregistered, channel=AccountChannel.portal,
        account=an_account(number="1000002", holder=names[2], bank="0006")), subject="f2", source=PORTAL)
    await benefits.send(RegisterReceivingAccount(
        request_id="fix-closed", my_number=closed, channel=AccountChannel.bank_counter,
        account=an_account(number="2000003", holder=names[3], bank="0006")), subject="f3", source=PORTAL)
    await benefits.wait_fact(AccountRegistered, request_id="fix-unregistered")
    await benefits.wait_fact(AccountChanged, request_id="fix-closed")
    await benefits.dispatch_until_idle()
    settled = await benefits.wait_fact(PaymentSettled, 4)
    retried = next(s for s in settled if s["person_ref"] == benefits.ref(closed))
    assert retried["attempt"] == 2

    # A replay of the whole batch (new event ids, same content) pays no one again.
    await publish_batch(benefits, "cb-2026-06", [lines[:3], lines[3:]])
    await benefits.dispatch_until_idle()
    response = await benefits.http.post("/batches/cb-2026-06/reconcile")
    assert response.status_code == 200, response.text
    final = (await benefits.wait_fact(PayoutBatchReconciled, batch_id="cb-2026-06"))[0]
    assert final["paid"] == line(4, 60_000) and final["held"] == line(1, 30_000)
    assert final["failed"] == line(0, 0) and final["pending"] == line(0, 0)
    assert final["balanced"] and final["matches_bank_statement"]
    ledger = benefits.bank
    credits = {}
    for entry in ledger.entries:
        credits[entry.end_to_end_id] = credits.get(entry.end_to_end_id, 0) + 1
    assert sorted(credits.values()) == [1, 1, 1, 1], "every paid person was credited exactly once"
    assert sum(e.amount_yen for e in ledger.entries) == 60_000
    assert len(benefits.of_type(PayoutBatchAccepted, batch_id="cb-2026-06")) == 1


async def test_a_batch_whose_totals_do_not_match_is_rejected_whole_and_a_corrected_one_is_paid(benefits: Benefits):
    people = [await benefits.resident(600 + i, kana="ナカムラ ユイ", kanji="中村 唯", address="京都府1") for i in range(1)]
    await register(benefits, people[0], "reg-600", "3000000", "ナカムラ ユイ")
    await benefits.wait_fact(AccountRegistered, request_id="reg-600")
    others = [a_number(610 + i) for i in range(3)]
    lines = [(people[0], 10_000)] + [(n, 5_000) for n in others]

    await publish_batch(benefits, "bad-total", [lines[:2], lines[2:]], total=26_000)
    await publish_batch(benefits, "bad-count", [lines[:2], lines[2:]], count=5, period="2026-08")
    await publish_batch(benefits, "twice-listed", [lines[:2], [lines[2], lines[0]]], count=4, total=30_000, period="2026-10")
    rejected = {r["batch_id"]: r for r in await benefits.wait_fact(PayoutBatchRejected, 3)}
    assert rejected["bad-total"]["reason"] == "control_total_mismatch"
    assert (rejected["bad-total"]["declared_total_yen"], rejected["bad-total"]["received_total_yen"]) == (26_000, 25_000)
    assert rejected["bad-count"]["reason"] == "control_count_mismatch"
    assert rejected["twice-listed"]["reason"] == "duplicate_recipient"
    await benefits.dispatch_until_idle()
    assert benefits.bank.entries == [], "nobody in a rejected batch is paid"
    assert (await benefits.http.get("/batches/bad-total")).json()["state"] == "rejected"
    assert await benefits.store.payments.count_documents({}) == 0
    assert await benefits.store.chunks_waiting() == 0, "a rejected batch's chunks leave the queue"
    assert (await benefits.http.get("/batches/bad-total/reconciliation")).status_code == 409

    # The corrected batch pays the same people for the same period: the rejected lines did not block it.
    await publish_batch(benefits, "good", [lines[:2], lines[2:]])
    await benefits.wait_fact(PayoutBatchAccepted, batch_id="good")
    # The same person twice in one period, in another batch, is refused whole.
    await publish_batch(benefits, "pays-again", [[lines[0]]])
    again = (await benefits.wait_fact(PayoutBatchRejected, batch_id="pays-again"))[0]
    assert again["reason"] == "already_paid_in_another_batch"
    await benefits.dispatch_until_idle()
    assert [e.amount_yen for e in benefits.bank.entries] == [10_000]
    report = await reconciliation(benefits, "good")
    assert report["paid"] == line(1, 10_000) and report["held"] == line(3, 15_000) and report["balanced"]


async def payees(benefits: Benefits, first_seed: int, count: int) -> list[MyNumber]:
    people = []
    for seed in range(first_seed, first_seed + count):
        number = await benefits.resident(seed, kana="サトウ ケン", kanji="佐藤 健", address="大阪府1")
        await register(benefits, number, f"reg-{seed}", f"{seed:07d}", "サトウ ケン")
        people.append(number)
    return people


async def test_a_dispatcher_that_dies_before_moving_past_a_chunks_lines_sends_them_again_and_pays_each_once(
        benefits: Benefits, monkeypatch):
    people = await payees(benefits, 700, 3)
    await publish_batch(benefits, "b-700", [[(number, 5_000) for number in people]])
    await benefits.wait_fact(PayoutBatchAccepted, batch_id="b-700")
    dispatcher = benefits.running.service.deps.dispatcher
    fault = fail_once(monkeypatch, benefits.store, "move_chunk_position")

    with pytest.raises(AutoReconnect):
        await dispatcher.dispatch_queued()
    assert fault.failed is not None
    assert len(benefits.bank.entries) == 3, "sent before the position moves"
    requests = benefits.bank.requests

    await benefits.dispatch_until_idle()
    assert benefits.bank.requests > requests, "the lines were sent again, with the same keys"
    assert len(benefits.bank.entries) == 3, "and the bank paid each person once"
    settled = await benefits.wait_fact(PaymentSettled, 3, batch_id="b-700")
    assert len({fact["payment_id"] for fact in settled}) == 3
    assert await benefits.store.chunks_waiting() == 0
    report = await reconciliation(benefits, "b-700")
    assert report["paid"] == line(3, 15_000) and report["pending"] == line(0, 0)
    assert report["balanced"] and report["matches_bank_statement"]


async def test_a_statement_page_read_again_after_a_crash_counts_each_credit_once(benefits: Benefits, monkeypatch):
    """The settlement pass dies after recording a page and before moving its cursor; by the time
    it runs again the statement has grown. The page is read again as it was the first time, and
    the new credit is counted on the next page: each batch reconciles with the bank."""
    first, second = await payees(benefits, 710, 2), await payees(benefits, 720, 1)
    dispatcher = benefits.running.service.deps.dispatcher
    await publish_batch(benefits, "b-710", [[(number, 6_000) for number in first]])
    await benefits.wait_fact(PayoutBatchAccepted, batch_id="b-710")
    await dispatcher.dispatch_queued()
    fault = fail_once(monkeypatch, benefits.store, "move_cursor")
    with pytest.raises(AutoReconnect):
        await dispatcher.settle_from_statement()
    assert fault.failed is not None

    await publish_batch(benefits, "b-720", [[(second[0], 9_000)]])
    await benefits.wait_fact(PayoutBatchAccepted, batch_id="b-720")
    await dispatcher.dispatch_queued()
    assert len(benefits.bank.entries) == 3
    assert await dispatcher.settle_from_statement() == 2, "the first page again, as it was"
    assert await dispatcher.settle_from_statement() == 1
    assert await dispatcher.settle_from_statement() == 0

    for batch_id, paid in (("b-710", line(2, 12_000)), ("b-720", line(1, 9_000))):
        report = await reconciliation(benefits, batch_id)
        assert report["paid"] == paid and report["bank_statement"] == paid, batch_id
        assert report["pending"] == line(0, 0) and report["balanced"] and report["matches_bank_statement"]


async def test_a_claim_runs_on_from_one_chunk_into_the_next_and_each_chunk_leaves_the_queue_when_sent(
        benefits: Benefits, monkeypatch):
    people = await payees(benefits, 730, 6)
    await publish_batch(benefits, "b-730", [[(number, 4_000) for number in people[i:i + 2]] for i in (0, 2, 4)])
    await benefits.wait_fact(PayoutBatchAccepted, batch_id="b-730")
    dispatcher = benefits.running.service.deps.dispatcher
    monkeypatch.setattr(dispatcher.settings, "dispatcher_claim_size", 3)

    assert await dispatcher.dispatch_queued() == 3, "the first chunk's two lines and one of the second's"
    assert len(benefits.bank.entries) == 3 and await benefits.store.chunks_waiting() == 2
    assert await dispatcher.dispatch_queued() == 3, "the second chunk's last line and the third chunk"
    assert len(benefits.bank.entries) == 6 and await benefits.store.chunks_waiting() == 0
    assert await dispatcher.dispatch_queued() == 0

    await benefits.dispatch_until_idle()
    paid = {entry.end_to_end_id for entry in benefits.bank.entries}
    assert len(paid) == 6, "each person once"
    report = await reconciliation(benefits, "b-730")
    assert report["paid"] == line(6, 24_000) and report["pending"] == line(0, 0) and report["balanced"]


async def test_chunks_that_come_before_their_header_wait_for_it_and_the_batch_is_then_paid(benefits: Benefits, servers):
    people = await payees(benefits, 760, 3)
    chunks = [[(people[0], 7_000), (people[1], 8_000)], [(people[2], 9_000)]]
    async with TopicReader(servers.kafka_bootstrap, benefits.running.service.topics.dead_letter) as dead_letters:
        for index, chunk in enumerate(chunks):  # keyed one by one, as docs/decisions.md recommends
            recipients = [PayoutRecipient(my_number=n, amount_yen=a) for n, a in chunk]
            await benefits.send(SubmitPayoutChunk(batch_id="early", chunk_index=index, recipients=recipients),
                                subject=f"early/{index}", source=PAYING_AGENCY)
        await eventually(lambda: _equals(benefits.store.parked_chunk_count("early"), 2), what="both chunks kept")
        kept = str(await benefits.store.parked_chunks.find({"batch_id": "early"}).to_list())
        assert benefits.ref(people[0]) in kept
        assert not any(number.reveal() in kept for number in people), "a kept chunk holds references, not numbers"
        waiting = await benefits.http.get("/batches/early")
        assert waiting.status_code == 404 and "2 chunk(s) of it wait for its header" in waiting.text
        assert benefits.of_type(PayoutBatchAccepted, batch_id="early") == []
        # An operator sees what waits, and for how long, to chase the paying agency.
        benefits.clock.advance(timedelta(hours=3))
        listed = (await benefits.http.get("/operations/batches-waiting-for-header")).json()
        assert listed == [{"batch_id": "early", "chunks_kept": [0, 1], "recipients": 3, "total_yen": 24_000,
                           "first_kept_at": "2026-06-01T00:00:00Z", "waiting_seconds": 10_800.0}]
        assert await waiting_gauges(benefits) == {"mynumber_payout_chunks_waiting_for_header": 2.0,
                                                  "mynumber_payout_oldest_chunk_waiting_seconds": 10_800.0}

        await benefits.send(AnnouncePayoutBatch(batch_id="early", programme="child_benefit", period="2026-06",
                                                recipient_count=3, total_yen=24_000, chunk_count=2),
                            subject="early", source=PAYING_AGENCY)
        await benefits.wait_fact(PayoutBatchAccepted, batch_id="early")
        assert await dead_letters.settle(quiet_seconds=1.0) == [], "a chunk before its header is not bad input"
    assert await benefits.store.parked_chunk_count("early") == 0
    assert (await benefits.http.get("/operations/batches-waiting-for-header")).json() == []
    assert await waiting_gauges(benefits) == {"mynumber_payout_chunks_waiting_for_header": 0.0,
                                              "mynumber_payout_oldest_chunk_waiting_seconds": 0.0}
    await benefits.dispatch_until_idle()
    assert sorted(e.amount_yen for e in benefits.bank.entries) == [7_000, 8_000, 9_000]
    assert (await reconciliation(benefits, "early"))["paid"] == line(3, 24_000)


async def _equals(value, expected) -> bool:
    return await value == expected


async def waiting_gauges(benefits: Benefits) -> dict[str, float]:
    scraped = (await benefits.http.get("/metrics/")).text
    return {sample.name: sample.value for family in text_string_to_metric_families(scraped) for sample in family.samples
            if sample.name.startswith("mynumber_payout_") and sample.labels == {"service": "benefits"}}


async def test_a_chunk_written_while_another_chunk_rejects_its_batch_leaves_no_payment_behind(
        benefits: Benefits, monkeypatch):
    """Chunks of a batch are taken in side by side: a chunk may still be writing its payments when
    another chunk's event rejects the batch and discards its payments. What the late chunk wrote
    must go too, or it would block a corrected batch for the same people. Here the rejection
    comes just before the chunk's write, and the clean-up itself first loses its connection."""
    people = await payees(benefits, 780, 2)
    store = benefits.store
    original_add_payments = store.add_payments

    async def rejected_meanwhile(lines):
        if lines and lines[0]["batch_id"] == "raced":
            await store.decide_batch("raced", "rejected", decided_by="another-chunk's-event", now=benefits.clock.now(),
                                     detail={"reason": "chunk_out_of_range", "message": "chunk 5 is beyond the announced 1 chunks",
                                             "received_count": 0, "received_total_yen": 0})
            await store.discard_batch_payments("raced", 1)
        return await original_add_payments(lines)

    monkeypatch.setattr(store, "add_payments", rejected_meanwhile)
    fault = fail_once(monkeypatch, store, "discard_chunk")
    await publish_batch(benefits, "raced", [[(people[0], 5_000), (people[1], 6_000)]])
    await eventually(lambda: _equals(_state(benefits, "raced"), "rejected"), what="the batch rejected")
    await eventually(lambda: _equals(_called(fault), True), what="the clean-up tried, lost its connection, tried again")
    await eventually(lambda: _equals(store.payments.count_documents({"batch_id": "raced"}), 0),
                     what="the late chunk's payments gone")
    await eventually(lambda: _equals(store.chunks_waiting(), 0), what="the late chunk's queue entry gone")

    monkeypatch.undo()
    await publish_batch(benefits, "raced-corrected", [[(people[0], 5_000), (people[1], 6_000)]])
    await benefits.wait_fact(PayoutBatchAccepted, batch_id="raced-corrected")
    await benefits.dispatch_until_idle()
    assert sorted(e.amount_yen for e in benefits.bank.entries) == [5_000, 6_000]


async def _state(benefits: Benefits, batch_id: str) -> str | None:
    response = await benefits.http.get(f"/batches/{batch_id}")
    return response.json()["state"] if response.status_code == 200 else None


async def _called(fault) -> bool:
    return fault.failed is not None and len(fault.calls) >= 2


async def test_a_chunk_whose_header_comes_while_it_is_being_kept_is_taken_in_by_its_own_event(
        benefits: Benefits, monkeypatch):
    """The chunk's event finds no header and keeps the chunk; the header is recorded just then, and
    its event read the kept chunks before this one was written. The chunk's own event must then
    take it in, decide the batch, and not leave the kept copy behind."""
    people = await payees(benefits, 790, 1)
    store = benefits.store
    original_park_chunk = store.park_chunk

    async def header_comes_meanwhile(batch_id, chunk_index, lines, *, now):
        await original_park_chunk(batch_id, chunk_index, lines, now=now)
        await store.record_header(BatchHeader(batch_id="meanwhile", programme="child_benefit", period="2026-06",
                                              recipient_count=1, total_yen=4_000, chunk_count=1),
                                  now=benefits.clock.now())

    monkeypatch.setattr(store, "park_chunk", header_comes_meanwhile)
    await benefits.send(SubmitPayoutChunk(batch_id="meanwhile", chunk_index=0,
                                          recipients=[PayoutRecipient(my_number=people[0], amount_yen=4_000)]),
                        subject="meanwhile/0", source=PAYING_AGENCY)
    await benefits.wait_fact(PayoutBatchAccepted, batch_id="meanwhile")
    assert await store.parked_chunk_count("meanwhile") == 0
    await benefits.dispatch_until_idle()
    assert [e.amount_yen for e in benefits.bank.entries] == [4_000]
