"""The payment dispatcher: the loop that pays queued payments through the bank gateway.

How a payment gets paid (handlers stay thin: they only queue payment lines):

1. The chunk handler writes each chunk's payment lines in bulk and queues the chunk (one entry
   with a position). A batch's chunks wait until the batch is accepted (all chunks in, control
   totals match).
2. One dispatcher at a time holds the `dispatcher` lease (a document with an expiry, renewed
   every round), so two service instances never send the same payments concurrently. When an
   instance dies, its lease runs out and another instance takes over.
3. A round takes up to `dispatcher_claim_size` payments of accepted batches (single queued
   payments first, then the next lines of the queued chunks) and, in groups of one bulk call
   (up to `dispatcher_parallel_calls` groups side by side, each reading its own accounts),
   - holds the payments without a usable account (none, withheld, invalidated): `PaymentHeld`;
   - sends the others to the bank in a bulk call of up to `bank_transfer_batch_size`, each
     transfer with the idempotency key `<payment id>#<attempt>`: `PaymentSent` or `PaymentFailed`.
   Facts are published (with ids derived from the transfer key) before the queue items are
   deleted or the chunk's position moves, so a crash at any point re-sends the same keys: the
   bank answers from its idempotency record and no one is paid twice; nothing leaves a queue
   before it is recorded, so no one is skipped.
4. The settlement pass reads the bank statement from the last cursor and records each credit:
   `PaymentSettled`. The statement is the truth about money that moved. Each page's credits and
   yen per batch are written first (keyed by the cursor the page starts at), so a reconciliation
   adds up page tallies instead of reading every payment and settlement, and a page read again
   after a crash is cut to the entries of its first reading: no credit counts twice.

A held or failed payment goes back in the queue when its person registers a valid account
(a failed one with the next attempt number, since the bank refused it and moved nothing).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from mynumber_contracts import Fact
from mynumber_contracts.benefits import (
    FailureReason,
    PaymentFailed,
    PaymentHeld,
    PaymentSent,
    PaymentSettled,
)

from services.kit.idempotency import to_records
from services.kit.messaging import EventService
from services.kit.store import is_transient, retry_transient

from . import domain
from .bank_gateway import BankGateway, BankRefusedRequest, BankUnavailable, TransferOrder
from .handlers import BenefitsDeps

log = logging.getLogger(__name__)

LEASE = "dispatcher"
STATEMENT_CURSOR = "bank-statement"
STATEMENT_PAGE = 5000  # statement entries read per round (the bank's largest page): settling keeps up with sending
_FAILURE_REASONS = {reason.value for reason in FailureReason}


async def publish_caused(service: EventService[Any], facts: Sequence[tuple[str, Fact]]) -> None:
    """Publish many facts in one go, each with its own deterministic cause, so a re-run repeats the ids."""
    records = []
    for cause_id, fact in facts:
        cause = service.synthetic_cause(cause_id, "jp.mynumber.operations.payment_dispatch.v1")
        records += to_records([fact], cause=cause, service=service.name, now=service.clock.now())
    if records:
        await retry_transient(lambda: service.publish_records(records), what="publish payment facts")


def _payment_fields(item: dict[str, Any]) -> dict[str, Any]:
    return {"person_ref": item["person_ref"], "payment_id": item["_id"], "batch_id": item["batch_id"],
            "programme": item["programme"], "period": item["period"], "amount_yen": item["amount_yen"]}


class PaymentDispatcher:
    def __init__(self, service: EventService[BenefitsDeps], gateway: BankGateway) -> None:
        self.service = service
        self.deps = service.deps
        self.store = service.deps.store
        self.settings = service.deps.settings
        self.gateway = gateway
        self.holder = f"dispatcher-{uuid.uuid4().hex[:12]}"
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="payment-dispatcher")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        try:
            await self.store.drop_lease(LEASE, self.holder)
        except Exception:  # the next instance waits for the lease to expire instead
            log.warning("could not release the dispatcher lease")

    async def _run(self) -> None:
        while not self._stopping.is_set():
            worked = 0
            try:
                if self.service.broker.running:  # the broker starts after the startup hooks
                    worked = await self.run_round()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the loop must survive a bad round; the next one retries
                log.warning("payment dispatch round failed: %s", type(error).__name__,
                            extra={"error": type(error).__name__, "transient": is_transient(error)})
            if not worked:
                try:
                    await asyncio.wait_for(self._stopping.wait(), self.settings.dispatcher_idle_seconds)
                except TimeoutError:
                    pass

    # --- one round ---------------------------------------------------------------------------

    async def run_round(self) -> int:
        """Dispatch one claim of queued payments and read the statement; the amount of work done."""
        if not await self.store.take_lease(LEASE, self.holder, seconds=self.settings.dispatcher_lease_seconds):
            return 0
        # Sending and reading the statement wait on different things (the bank's answers, the
        # database): side by side, each round takes as long as the longer of the two.
        try:
            async with asyncio.TaskGroup() as both:  # one failing cancels the other: both are safe to run again
                dispatched = both.create_task(self.dispatch_queued())
                settled = both.create_task(self.settle_from_statement())
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None  # what went wrong, as one pass would have said it
        return dispatched.result() + settled.result()

    async def dispatch_queued(self) -> int:
        """Send or hold up to a claim of payments: single queued payments first, then the next
        lines of the queued chunks. What could not go this round (the bank was unavailable, the
        account is still being checked, the bank left a transfer unanswered) stays queued with
        the same transfer key: a chunk's such lines move to the single-payment queue before the
        chunk's position moves past them."""
        store, claim = self.store, self.settings.dispatcher_claim_size
        accepted = await store.accepted_batch_ids()
        queued = await store.queued(accepted, claim)
        from_chunks = await store.next_chunk_lines(accepted, claim - len(queued))
        if not queued and not from_chunks:
            return 0
        in_queue = {item["_id"] for item in queued}
        chunk_items = [item for _, lines in from_chunks for item in lines]
        items = queued + [item for item in chunk_items if item["_id"] not in in_queue]  # a crash can leave both
        done = await store.settled_payment_ids(items)  # the statement showed them before a crash let us record the answer
        done |= await self._send_or_hold([item for item in items if item["_id"] not in done])
        await store.dequeue(sorted(in_queue & done))
        await store.enqueue([item for item in chunk_items if item["_id"] not in done and item["_id"] not in in_queue])
        for entry, lines in from_chunks:
            await store.move_chunk_position(entry, len(lines))
        return len(done)

    async def _send_or_hold(self, items: Sequence[dict[str, Any]]) -> set[str]:
        """Pay the items in groups of one bulk call, up to `dispatcher_parallel_calls` groups side
        by side, each looking up its own accounts (FerretDB reads a few thousand documents a
        second per query: reading them in parallel, next to the other groups' bank calls, keeps
        the database busy). The ids done."""
        size, parallel = self.settings.bank_transfer_batch_size, self.settings.dispatcher_parallel_calls
        groups = [items[start:start + size] for start in range(0, len(items), size)]
        done: set[str] = set()
        for first in range(0, len(groups), parallel):
            # The lease outlasts one bulk call with its retries (settings), and the calls of a group run side by side.
            if not await self.store.take_lease(LEASE, self.holder, seconds=self.settings.dispatcher_lease_seconds):
                break  # lost the lease mid-round: another dispatcher carries on from the queue
            try:
                async with asyncio.TaskGroup() as paying:  # one failing group cancels the others: they stay queued
                    answered = [paying.create_task(self._pay(group)) for group in groups[first:first + parallel]]
            except ExceptionGroup as failed:
                raise failed.exceptions[0] from None  # what went wrong, as a single call would have said it
            for task in answered:
                done |= task.result()[0]
            if not all(task.result()[1] for task in answered):
                break  # the bank is unavailable: the loop idles instead of spinning on an open circuit
        return done

    async def _pay(self, items: Sequence[dict[str, Any]]) -> tuple[set[str], bool]:
        """Hold the payments without a usable account and send the others in one bulk call: the
        ids done, and whether the bank could be reached."""
        accounts = await self.store.accounts_by_ref({item["person_ref"] for item in items})
        to_hold: list[tuple[dict[str, Any], Any]] = []
        to_send: list[tuple[dict[str, Any], domain.Account]] = []
        for item in items:
            account = accounts.get(item["person_ref"])
            if domain.being_checked(account):
                continue  # stays queued: a later round pays or holds it once the check has decided
            reason = domain.hold_reason(account)
            if reason is None:
                to_send.append((item, account))
            else:
                to_hold.append((item, reason))
        await self._hold(to_hold)
        held = {item["_id"] for item, _ in to_hold}
        if not to_send:
            return held, True
        sent = await self._send(to_send)
        return held | (sent or set()), sent is not None

    async def _hold(self, held: Sequence[tuple[dict[str, Any], Any]]) -> None:
        if not held:
            return
        facts = [
            (f"hold:{domain.transfer_key(item['_id'], item['attempt'])}:{reason.value}",
             PaymentHeld(**_payment_fields(item), reason=reason, message=domain.HOLD_MESSAGES[reason]))
            for item, reason in held
        ]
        await publish_caused(self.service, facts)
        await self.store.hold([{**item, "reason": reason.value, "held_at": self.service.clock.now()}
                               for item, reason in held])

    async def _send(self, batch: Sequence[tuple[dict[str, Any], domain.Account]]) -> set[str] | None:
        """One bulk call; the payment ids the bank answered. None when the bank is unavailable:
        the payments stay queued, with the same keys."""
        orders = {
            domain.transfer_key(item["_id"], item["attempt"]): (item, TransferOrder(
                idempotency_key=domain.transfer_key(item["_id"], item["attempt"]), end_to_end_id=item["_id"],
                reference=item["batch_id"], bank_code=account.bank_code, branch_code=account.branch_code,
                account_type=str(account.account_type), account_number=account.account_number,
                holder_name_kana=account.holder_name_kana, amount_yen=item["amount_yen"]))
            for item, account in batch
        }
        try:
            results = await self.gateway.send_transfers([order for _, order in orders.values()])
        except BankUnavailable as error:
            log.warning("bank unavailable; payments stay queued: %s", error)
            return None
        except BankRefusedRequest as error:
            log.warning("bank refused a bulk request: %s", error)
            results = None
        now = self.service.clock.now()
        sent: list[tuple[str, str]] = []
        failed: list[dict[str, Any]] = []
        facts: list[tuple[str, Fact]] = []
        for key, (item, _order) in orders.items():
            result = None if results is None else results.get(key)
            if results is not None and result is None:
                continue  # not answered: stays queued and goes again with the same key
            if result is not None and result.accepted:
                sent.append((key, result.transfer_id or ""))
                facts.append((f"sent:{key}", PaymentSent(**_payment_fields(item), attempt=item["attempt"],
                                                          transfer_id=result.transfer_id or "")))
            else:
                reason = _failure_reason(result.reason if result else None)
                failed.append({**item, "reason": reason.value, "failed_at": now})
                facts.append((f"failed:{key}", PaymentFailed(
                    **_payment_fields(item), attempt=item["attempt"], reason=reason,
                    message=f"The bank refused the transfer ({result.reason if result else 'request refused'}).")))
        await publish_caused(self.service, facts)
        await self.store.record_bank_answer(
            _call_id(orders), sent=sent, at=now,
            failed=[(domain.transfer_key(doc["_id"], doc["attempt"]), doc["reason"]) for doc in failed])
        await self.store.record_failures(failed)
        sent_ids = [key.rsplit("#", 1)[0] for key, _ in sent]
        await self.store.clear_holds_and_failures(sent_ids)
        return set(sent_ids) | {doc["_id"] for doc in failed}

    async def settle_from_statement(self) -> int:
        """Record the credits on the bank statement since the last cursor: `PaymentSettled`."""
        store = self.store
        after = await store.cursor(STATEMENT_CURSOR)
        try:
            entries, next_after = await self.gateway.statement(after, limit=STATEMENT_PAGE)
        except (BankUnavailable, BankRefusedRequest) as error:
            log.warning("could not read the bank statement: %s", error)
            return 0
        if not entries:
            return 0
        tallies: dict[str, domain.Tally] = {}
        for entry in entries:
            tallies.setdefault(entry["reference"], domain.Tally()).add(entry["amount_yen"])
        through = await store.record_statement_page(after, next_after, tallies)
        if through != next_after:  # a re-run after a crash: the same entries as the first run, no more
            entries = [entry for entry in entries if entry["sequence"] <= through]
            next_after = through
        settlements, facts = [], []
        for entry in entries:
            payment_id = entry["end_to_end_id"]
            programme, period, person_ref = payment_id.split(":", 2)
            attempt = int(entry["idempotency_key"].rsplit("#", 1)[1])
            credited_at = datetime.fromisoformat(entry["credited_at"])
            settlements.append({"_id": entry["idempotency_key"], "payment_id": payment_id, "batch_id": entry["reference"],
                                "amount_yen": entry["amount_yen"], "transfer_id": entry["transfer_id"],
                                "settled_at": credited_at, "statement_sequence": entry["sequence"]})
            facts.append((f"settled:{entry['idempotency_key']}", PaymentSettled(
                person_ref=person_ref, payment_id=payment_id, batch_id=entry["reference"], programme=programme,
                period=period, amount_yen=entry["amount_yen"], attempt=attempt, transfer_id=entry["transfer_id"],
                settled_at=credited_at)))
        await publish_caused(self.service, facts)
        await store.record_settlements(settlements)
        await store.move_cursor(STATEMENT_CURSOR, next_after)
        return len(entries)


def _call_id(orders: dict[str, Any]) -> str:
    """One bulk call's record id: the same transfer keys give the same id, so a re-sent call is recorded once."""
    return "call:" + hashlib.sha256("\n".join(sorted(orders)).encode()).hexdigest()[:32]


def _failure_reason(bank_reason: str | None) -> FailureReason:
    if bank_reason in _FAILURE_REASONS:
        return FailureReason(bank_reason)
    return FailureReason.bank_rejected_request
