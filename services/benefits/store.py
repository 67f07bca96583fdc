"""The benefits repository (MongoDB or FerretDB v1).

Payments are written the way FerretDB v1 on SQLite is fast: bulk inserts and bulk deletes,
never one update per payment (an update costs milliseconds each there). A payment's progress
is which collection holds it, not a state field:

- `payments`: one line per programme, period and person (the `_id` is the unique key), written once;
- `chunk_queue` and `chunk_lines`: a payout chunk's lines waiting to be sent, one small entry
  with a position and one document holding the lines per chunk (a batch's chunks wait until the
  batch is accepted). The dispatcher takes the next lines from the position and moves it on:
  a million recipients cost 200 queue entries, not a million inserts and a million deletes;
- `payment_queue`: single payments waiting to be sent: released holds, retries of failed
  payments, and chunk lines that could not go in their round;
- `held_payments` / `failed_payments`: payments waiting for a valid account;
- `transfers`: the bank's answer to every bulk call, one document per call;
- `settlements`: every credit the bank's statement showed (the idempotency key is the `_id`);
- `statement_pages`: per page of the statement read, how many credits and yen each batch got,
  written before the page's settlements, so a reconciliation adds up a few hundred page tallies
  instead of reading every payment and every settlement.

Moving a payment inserts it in the next place first and deletes it from the last one after,
so a crash in between leaves it in two places, never in none; every step can run again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.kit.audit import AuditTrail
from services.kit.store import apply_fact, fact_applied, insert_new, update_by_id

from .domain import (
    Account,
    AccountStatus,
    AuditedDeletion,
    BatchHeader,
    ChunkTally,
    Resident,
    ResidentStatus,
    Tally,
    WaitingBatch,
    payment_id,
    registration_entry_id,
    transfer_key,
)


def _date(value: Any) -> str:
    return value.isoformat()


async def insert_all(collection: Any, documents: Sequence[dict[str, Any]]) -> set[Any]:
    """Insert every document that is not there yet; return the `_id`s that already existed."""
    return {documents[index]["_id"] for index in await insert_new(collection, documents)}


class BenefitsStore:
    def __init__(self, database: AsyncDatabase) -> None:
        self.database = database
        self.residents = database["residents"]
        self.accounts = database["accounts"]
        # Lookup documents, one per account key: who registered that account. FerretDB v1 uses no
        # index but `_id`, so a query on `accounts.key` would read every account per registration.
        self.account_holders = database["account_holders"]
        self.shared_flags = database["shared_flags"]
        # The kit's append-only audit trail, which every service serves to operators at /audit/persons/{ref}.
        self.audit_trail = AuditTrail(database)
        self.audit_log = database[AuditTrail.COLLECTION]
        self.proposals = database["pension_proposals"]
        self.batches = database["payout_batches"]
        self.chunks = database["payout_chunks"]
        self.payments = database["payments"]
        self.queue = database["payment_queue"]
        self.chunk_queue = database["chunk_queue"]
        self.chunk_lines = database["chunk_lines"]
        # Chunks that came before their batch's header (a chunk keyed on its own travels on another
        # partition than the header): their (person_ref, amount) lines, taken in when the header comes.
        self.parked_chunks = database["parked_chunks"]
        self._chunk_lines_read: dict[str, dict[str, Any]] = {}  # the last two chunks' lines read
        self.held = database["held_payments"]
        self.failed = database["failed_payments"]
        self.transfers = database["transfers"]
        self.settlements = database["settlements"]
        self.statement_pages = database["statement_pages"]
        self.leases = database["leases"]
        self.cursors = database["cursors"]

    async def ensure_indexes(self) -> None:
        await self.accounts.create_index([("bank_code", ASCENDING), ("branch_code", ASCENDING)])
        await self.audit_trail.ensure_indexes()
        await self.proposals.create_index([("status", ASCENDING), ("reply_by", ASCENDING)])
        await self.proposals.create_index([("person_ref", ASCENDING)])
        await self.chunks.create_index([("batch_id", ASCENDING)])
        await self.parked_chunks.create_index([("batch_id", ASCENDING)])
        await self.batches.create_index([("state", ASCENDING)])
        # Exactly once: one payment per programme, period and person, whatever the batch, is the
        # payment's `_id`. The collections written once per recipient (payments, settlements)
        # carry no index they do not need: FerretDB v1 keeps every index up to date on each
        # insert but answers queries from `_id` only.
        await self.payments.create_index([("batch_id", ASCENDING)])  # discarding a rejected batch
        for collection in (self.queue, self.chunk_queue, self.held, self.failed):
            await collection.create_index([("batch_id", ASCENDING)])
        await self.statement_pages.create_index([("tallies.batch_id", ASCENDING)])
        for collection in (self.held, self.failed):
            await collection.create_index([("person_ref", ASCENDING)])
        await self.settlements.create_index([("payment_id", ASCENDING)])

    # --- residents (read model of the enrollment facts) ----------------------------------

    # The read model is written only by enrollment's resident facts, each once (`apply_fact`): a fact
    # run again after later ones (a registration after the death) never puts back an older state.

    async def save_resident(self, resident: Resident, *, fact_id: str) -> None:
        fields = {"name_kana": resident.name_kana, "name_kanji": resident.name_kanji, "address": resident.address,
                  "status": resident.status.value}
        await apply_fact(self.residents, resident.person_ref, fields, fact_id=fact_id, create=True)

    async def mark_resident(self, person_ref: str, status: ResidentStatus, *, fact_id: str) -> None:
        await apply_fact(self.residents, person_ref, {"status": status.value}, fact_id=fact_id)

    async def resident_fact_applied(self, person_ref: str, fact_id: str) -> bool:
        return await fact_applied(self.residents, person_ref, fact_id)

    async def resident(self, person_ref: str) -> Resident | None:
        return (await self.residents_by_ref([person_ref])).get(person_ref)

    async def residents_by_ref(self, person_refs: Iterable[str]) -> dict[str, Resident]:
        found = {}
        async for doc in self.residents.find({"_id": {"$in": list(person_refs)}}):
            found[doc["_id"]] = Resident(
                person_ref=doc["_id"], name_kana=doc["name_kana"], name_kanji=doc["name_kanji"],
                address=doc["address"], status=ResidentStatus(doc.get("status", "resident")),
            )
        return found

    # --- accounts --------------------------------------------------------------------------

    @staticmethod
    def _account(doc: dict[str, Any]) -> Account:
        return Account(
            person_ref=doc["_id"], bank_code=doc["bank_code"], branch_code=doc["branch_code"],
            account_type=doc["account_type"], account_number=doc["account_number"],
            holder_name_kana=doc["holder_name_kana"], channel=doc["channel"],
            status=AccountStatus(doc["status"]), source_id=doc.get("source_id", ""),
            replaced_another=doc.get("replaced_another", False),
        )

    async def account(self, person_ref: str) -> Account | None:
        doc = await self.accounts.find_one({"_id": person_ref})
        return self._account(doc) if doc else None

    async def accounts_by_ref(self, person_refs: Iterable[str]) -> dict[str, Account]:
        return {doc["_id"]: self._account(doc) async for doc in self.accounts.find({"_id": {"$in": list(person_refs)}})}

    async def accounts_with_key(self, key: str) -> list[Account]:
        """Everyone whose account has this key. The lookup is written before the account, and
        checked on read: a person who has since moved to another account is left out."""
        lookup = await self.account_holders.find_one({"_id": key})
        if lookup is None:
            return []
        return [self._account(doc) async for doc in self.accounts.find({"_id": {"$in": lookup["person_refs"]}})
                if doc.get("key") == key]

    async def accounts_at_bank(self, bank_code: str, branch_code: str | None) -> list[Account]:
        query: dict[str, Any] = {"bank_code": bank_code}
        if branch_code is not None:
            query["branch_code"] = branch_code
        return [self._account(doc) async for doc in self.accounts.find(query)]

    async def save_account(self, account: Account, *, now: datetime) -> None:
        await self.account_holders.update_one(
            {"_id": account.key}, {"$addToSet": {"person_refs": account.person_ref}}, upsert=True
        )
        await self.accounts.update_one(
            {"_id": account.person_ref},
            {"$set": {
                "bank_code": account.bank_code, "branch_code": account.branch_code,
                "account_type": str(account.account_type), "account_number": account.account_number,
                "holder_name_kana": account.holder_name_kana, "channel": str(account.channel),
                "status": account.status.value, "source_id": account.source_id, "key": account.key,
                "replaced_another": account.replaced_another,
                "updated_at": now,
            }},
            upsert=True,
        )

    async def import_accounts(self, accounts: Sequence[Account], *, now: datetime) -> set[str]:
        """Bulk-load registrations that were checked elsewhere (a migration); existing ones are kept."""
        holders: dict[str, list[str]] = {}
        for account in accounts:
            holders.setdefault(account.key, []).append(account.person_ref)
        known = await insert_all(self.account_holders, [{"_id": key, "person_refs": refs} for key, refs in holders.items()])
        for key in known:  # accounts already registered by others: add to their lookups
            await self.account_holders.update_one({"_id": key}, {"$addToSet": {"person_refs": {"$each": holders[key]}}})
        return await insert_all(self.accounts, [
            {"_id": a.person_ref, "bank_code": a.bank_code, "branch_code": a.branch_code,
             "account_type": str(a.account_type), "account_number": a.account_number,
             "holder_name_kana": a.holder_name_kana, "channel": str(a.channel), "status": a.status.value,
             "source_id": a.source_id, "key": a.key, "replaced_another": False, "updated_at": now}
            for a in accounts
        ])

    async def finish_check(self, person_ref: str, status: AccountStatus) -> AccountStatus | None:
        """Move an account out of `checking` (one atomic update); if another registration has
        changed it meanwhile (withheld it as shared), that status stands. The status it ends with."""
        document = await self.accounts.find_one_and_update(
            {"_id": person_ref, "status": AccountStatus.checking.value}, {"$set": {"status": status.value}},
            return_document=ReturnDocument.AFTER,
        )
        if document is None:
            document = await self.accounts.find_one({"_id": person_ref}, {"status": 1})
        return AccountStatus(document["status"]) if document else None

    async def set_account_status(self, accounts: Sequence[Account], status: AccountStatus) -> None:
        """Set the status of each of these accounts that its holder has not replaced since it was read
        (the registration that made it is still the one on record): a bank merger, a flag or an
        operator's release never reaches an account registered meanwhile."""
        await asyncio.gather(*(
            update_by_id(self.accounts, account.person_ref, {"$set": {"status": status.value}},
                         condition={"source_id": account.source_id})
            for account in accounts
        ))

    async def delete_account(self, person_ref: str, *, registration: str) -> None:
        """Delete the person's account if it is still the one their registration `registration` made
        (a deletion run again late leaves an account registered since alone)."""
        await self.accounts.delete_one({"_id": person_ref, "source_id": registration})

    # --- shared-account flags and the audit log -----------------------------------------

    async def open_flag(self, flag_id: str, key: str, person_refs: Sequence[str], *, reason: str, now: datetime) -> None:
        await self.shared_flags.update_one(
            {"_id": flag_id},
            {"$set": {"key": key, "person_refs": list(person_refs), "status": "open", "reason": reason,
                      "opened_at": now}},
            upsert=True,
        )

    async def flag(self, flag_id: str) -> dict[str, Any] | None:
        return await self.shared_flags.find_one({"_id": flag_id})

    async def open_flags(self) -> list[dict[str, Any]]:
        return await self.shared_flags.find({"status": "open"}).to_list()

    async def kept_holders(self, flag_id: str) -> frozenset[str]:
        """The holders an operator resolving this flag kept (none while it was never resolved)."""
        flag = await self.shared_flags.find_one({"_id": flag_id}, {"kept": 1})
        return frozenset(flag.get("kept", ())) if flag else frozenset()

    async def keep_holders(self, flag_id: str, person_refs: Sequence[str]) -> bool:
        """Record, before anything is released, which holders the operator resolving an open flag
        keeps, so a registration that runs meanwhile does not withhold them again; False when the
        flag is no longer open."""
        result = await self.shared_flags.update_one({"_id": flag_id, "status": "open"},
                                                    {"$set": {"kept": sorted(person_refs)}})
        return result.matched_count == 1

    async def close_flag(self, flag_id: str, *, operator: str, reason: str, now: datetime) -> bool:
        """Atomically close an open flag; False when it was not open (already resolved)."""
        done = await self.shared_flags.find_one_and_update(
            {"_id": flag_id, "status": "open"},
            {"$set": {"status": "resolved", "resolved_by": operator, "resolution": reason, "resolved_at": now}},
        )
        return done is not None

    async def registration_made(self, person_ref: str, source_id: str) -> bool:
        """Whether the person's account registration `source_id` was made (its audit entry, the last
        of its writes; earlier code keyed it `account:{source_id}`, read in the same query)."""
        entries = await self.audit_log.find(
            {"_id": {"$in": [registration_entry_id(source_id, person_ref), f"account:{source_id}"]}}, {"person_ref": 1}
        ).to_list()
        return any(entry.get("person_ref") == person_ref for entry in entries)

    async def audit(self, entry_id: str, *, actor: str, action: str, person_ref: str, reason: str,
                    subject: str, at: datetime, **details: str) -> None:
        """Append one audit entry. Append-only: an entry id is written once (a rerun after a crash adds nothing)."""
        await self.audit_trail.record(at=at, actor=actor, action=action, person_ref=person_ref, reason=reason,
                                      details={"subject": subject, **details}, audit_id=entry_id)

    async def deletion(self, entry_id: str, *, partner: str, request_id: str, person_ref: str) -> AuditedDeletion | None:
        """What the deletion audited as `entry_id` does: None when it has no entry yet.

        Earlier code keyed the entry by the request id alone (`delete:{request_id}`), which other
        partners use too: such an entry is this deletion's only if it names this person and partner.
        Both are read in one query."""
        legacy_id = f"delete:{request_id}"
        entries = {e["_id"]: e for e in await self.audit_log.find({"_id": {"$in": [entry_id, legacy_id]}}).to_list()}
        entry = entries.get(entry_id)
        if entry is None:
            entry = entries.get(legacy_id)
            if entry is None or entry.get("person_ref") != person_ref or entry.get("actor", partner) != partner:
                return None
        details = entry.get("details", {})
        return AuditedDeletion(registration=details.get("registration", ""),
                               deletes=entry.get("action") != "account_not_deleted", kept=details.get("kept", ""))

    # --- pension proposals (the opt-out route) --------------------------------------------

    async def record_proposal(self, proposal_id: str, person_ref: str, account: Account, *, notified_on: Any,
                              reply_by: Any, status: str) -> dict[str, Any]:
        await self.proposals.update_one(
            {"_id": proposal_id},
            {"$setOnInsert": {
                "person_ref": person_ref, "bank_code": account.bank_code, "branch_code": account.branch_code,
                "account_type": str(account.account_type), "account_number": account.account_number,
                "holder_name_kana": account.holder_name_kana, "notified_on": _date(notified_on),
                "reply_by": _date(reply_by), "status": status,
            }},
            upsert=True,
        )
        return await self.proposals.find_one({"_id": proposal_id})

    async def proposal(self, proposal_id: str) -> dict[str, Any] | None:
        return await self.proposals.find_one({"_id": proposal_id})

    async def due_proposals(self, as_of: Any) -> list[dict[str, Any]]:
        """Proposals whose reply period has run out by `as_of`, still awaiting a reply or left
        mid-registration by a sweep that stopped (refused meanwhile or not)."""
        return await self.proposals.find({"status": {"$in": ["awaiting_reply", "registering", "refused_while_registering"]},
                                          "reply_by": {"$lte": _date(as_of)}}).to_list()

    async def move_proposal(self, proposal_id: str, *, from_: Iterable[str], to: str, on: Any = None) -> bool:
        """Move a proposal to status `to` (concluded `on`, when given) only while its status is one of
        `from_`: one atomic update, so a sweep and a refusal at the same moment cannot both win.
        False when it was not."""
        changes = {"status": to} if on is None else {"status": to, "concluded_on": _date(on)}
        result = await self.proposals.update_one({"_id": proposal_id, "status": {"$in": list(from_)}}, {"$set": changes})
        return result.matched_count == 1

    # --- payout batches ------------------------------------------------------------------

    async def record_header(self, header: BatchHeader, *, now: datetime) -> dict[str, Any]:
        """Record a batch header once; a replayed header finds the first one (returned for comparison)."""
        await self.batches.update_one(
            {"_id": header.batch_id},
            {"$setOnInsert": {"state": "receiving", "received_at": now, "programme": header.programme,
                              "period": header.period, "recipient_count": header.recipient_count,
                              "total_yen": header.total_yen, "chunk_count": header.chunk_count}},
            upsert=True,
        )
        return await self.batches.find_one({"_id": header.batch_id})

    async def batch(self, batch_id: str) -> dict[str, Any] | None:
        return await self.batches.find_one({"_id": batch_id})

    async def chunk_recorded(self, batch_id: str, chunk_index: int) -> bool:
        return await self.chunks.find_one({"_id": _chunk_id(batch_id, chunk_index)}, {"_id": 1}) is not None

    async def record_chunk(self, batch_id: str, tally: ChunkTally) -> None:
        await self.chunks.update_one(
            {"_id": _chunk_id(batch_id, tally.chunk_index)},
            {"$setOnInsert": {"batch_id": batch_id, "chunk_index": tally.chunk_index, "count": tally.count,
                              "total_yen": tally.total_yen, "conflicts": tally.conflicts,
                              "duplicates": tally.duplicates}},
            upsert=True,
        )

    async def chunk_tallies(self, batch_id: str) -> list[ChunkTally]:
        return [
            ChunkTally(doc["chunk_index"], doc["count"], doc["total_yen"], doc["conflicts"], doc["duplicates"])
            async for doc in self.chunks.find({"batch_id": batch_id})
        ]

    async def decide_batch(self, batch_id: str, state: str, *, decided_by: str, detail: dict[str, Any],
                           now: datetime) -> bool:
        """Move a batch out of `receiving` exactly once; True for the event that did it."""
        await self.batches.find_one_and_update(
            {"_id": batch_id, "state": "receiving"},
            {"$set": {"state": state, "decided_by": decided_by, "decided_at": now, "decision": detail}},
        )
        batch = await self.batches.find_one({"_id": batch_id})
        return batch is not None and batch.get("decided_by") == decided_by

    async def accepted_batch_ids(self) -> list[str]:
        return [doc["_id"] async for doc in self.batches.find({"state": "accepted"}, {"_id": 1})]

    async def discard_batch_payments(self, batch_id: str, chunk_count: int) -> None:
        """A rejected batch pays nobody: its lines go, so a corrected batch can pay the same people."""
        chunk_ids = [_chunk_id(batch_id, index) for index in range(chunk_count)]
        await self.chunk_queue.delete_many({"_id": {"$in": chunk_ids}})
        await self.chunk_lines.delete_many({"_id": {"$in": chunk_ids}})
        await self.queue.delete_many({"batch_id": batch_id})
        await self.payments.delete_many({"batch_id": batch_id})

    async def discard_chunk(self, batch_id: str, chunk_index: int, payment_ids: Iterable[str]) -> None:
        """Remove what one chunk wrote for a batch that was rejected while the chunk was being
        taken in (chunks of a batch are taken in side by side): its queue entry, its lines and its
        payments, found by `_id` (other batches' payments for the same people stay)."""
        chunk_id = _chunk_id(batch_id, chunk_index)
        await self.chunk_queue.delete_one({"_id": chunk_id})
        await self.chunk_lines.delete_one({"_id": chunk_id})
        wanted = list(payment_ids)
        if wanted:
            await self.payments.delete_many({"_id": {"$in": wanted}, "batch_id": batch_id})

    async def park_chunk(self, batch_id: str, chunk_index: int, lines: Sequence[tuple[str, int]], *,
                         now: datetime) -> None:
        """Keep a chunk whose batch header has not come yet; a replayed chunk keeps the first."""
        await insert_all(self.parked_chunks, [{
            "_id": _chunk_id(batch_id, chunk_index), "batch_id": batch_id, "chunk_index": chunk_index,
            "person_refs": [ref for ref, _ in lines], "amounts_yen": [amount for _, amount in lines],
            "kept_at": now}])

    async def batches_waiting_for_header(self) -> list[WaitingBatch]:
        """Every batch some of whose chunks are kept until its header comes, oldest first. The
        collection holds only such chunks, so reading all of it is reading what waits."""
        found: dict[str, list[dict[str, Any]]] = {}
        async for doc in self.parked_chunks.find({}, {"batch_id": 1, "chunk_index": 1, "amounts_yen": 1, "kept_at": 1}):
            found.setdefault(doc["batch_id"], []).append(doc)
        waiting = []
        for batch_id, chunks in found.items():
            kept = [doc["kept_at"] for doc in chunks if doc.get("kept_at") is not None]
            waiting.append(WaitingBatch(
                batch_id=batch_id, chunk_indexes=tuple(sorted(doc["chunk_index"] for doc in chunks)),
                recipients=sum(len(doc["amounts_yen"]) for doc in chunks),
                total_yen=sum(sum(doc["amounts_yen"]) for doc in chunks),
                first_kept_at=min(kept) if kept else None))
        unknown = datetime.min.replace(tzinfo=UTC)  # kept before the time was recorded: the oldest
        return sorted(waiting, key=lambda batch: (batch.first_kept_at or unknown, batch.batch_id))

    async def parked_chunks_of(self, batch_id: str) -> list[tuple[int, list[tuple[str, int]]]]:
        """The chunks of `batch_id` waiting for its header: (chunk index, (person_ref, amount) lines)."""
        return [(doc["chunk_index"], list(zip(doc["person_refs"], doc["amounts_yen"], strict=True)))
                async for doc in self.parked_chunks.find({"batch_id": batch_id})]

    async def parked_chunk_count(self, batch_id: str) -> int:
        return await self.parked_chunks.count_documents({"batch_id": batch_id})

    async def unpark_chunk(self, batch_id: str, chunk_index: int) -> None:
        await self.parked_chunks.delete_one({"_id": _chunk_id(batch_id, chunk_index)})

    # --- payments --------------------------------------------------------------------------

    async def add_payments(self, lines: Sequence[dict[str, Any]]) -> set[str]:
        """Write a chunk's payment lines; return the ids that were already there.

        A payment document holds its batch, chunk and amount; the programme, period and person
        are its `_id` (`domain.payment_id`), so they are not stored twice (a million lines are
        written at intake)."""
        return await insert_all(self.payments, [
            {"_id": line["_id"], "batch_id": line["batch_id"], "chunk_index": line["chunk_index"],
             "amount_yen": line["amount_yen"]} for line in lines])

    async def payments_by_id(self, payment_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        wanted = list(payment_ids)
        if not wanted:  # FerretDB v1 answers an empty `$in` by reading the whole collection
            return {}
        return {doc["_id"]: doc async for doc in self.payments.find({"_id": {"$in": wanted}})}

    async def payment(self, payment_id: str) -> dict[str, Any] | None:
        return await self.payments.find_one({"_id": payment_id})

    async def enqueue(self, items: Sequence[dict[str, Any]]) -> None:
        await insert_all(self.queue, items)

    async def enqueue_chunk(self, batch: dict[str, Any], chunk_index: int, lines: Sequence[tuple[str, int]]) -> None:
        """Queue a chunk's (person_ref, amount) lines for sending once the batch is accepted. The
        lines are written before the queue entry that points at them; a re-run finds both."""
        if not lines:
            return
        chunk_id = _chunk_id(batch["_id"], chunk_index)
        await insert_all(self.chunk_lines, [{"_id": chunk_id, "batch_id": batch["_id"], "programme": batch["programme"],
                                             "period": batch["period"],  # two lists side by side: FerretDB v1 stores no nested arrays
                                             "person_refs": [ref for ref, _ in lines],
                                             "amounts_yen": [amount for _, amount in lines]}])
        await insert_all(self.chunk_queue, [{"_id": chunk_id, "batch_id": batch["_id"], "position": 0,
                                             "size": len(lines)}])

    async def next_chunk_lines(self, batch_ids: Sequence[str], limit: int
                               ) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """Up to `limit` lines to send from the queued chunks of accepted batches: per chunk, its
        queue entry and its next lines from the entry's position, shaped as queue items (first
        attempts). A claim runs on into the next chunk when one has fewer lines left."""
        if not batch_ids or limit <= 0:
            return []
        claimed: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        entries = await self.chunk_queue.find({"batch_id": {"$in": list(batch_ids)}}).limit(8).to_list()
        for entry in entries:
            if limit <= 0:
                break
            chunk = self._chunk_lines_read.get(entry["_id"])  # lines are written once, never changed
            if chunk is None:
                chunk = await self.chunk_lines.find_one({"_id": entry["_id"]})
                if chunk is None:  # finished, and the entry's removal was cut short by a crash
                    await self.chunk_queue.delete_one({"_id": entry["_id"]})
                    continue
                before = list(self._chunk_lines_read.items())[-1:]  # keep the one read before this one
                self._chunk_lines_read = dict([*before, (entry["_id"], chunk)])
            taken = slice(entry["position"], entry["position"] + limit)
            items = [
                {"_id": payment_id(chunk["programme"], chunk["period"], person_ref), "batch_id": chunk["batch_id"],
                 "person_ref": person_ref, "programme": chunk["programme"], "period": chunk["period"],
                 "amount_yen": amount, "attempt": 1}
                for person_ref, amount in zip(chunk["person_refs"][taken], chunk["amounts_yen"][taken], strict=True)
            ]
            claimed.append((entry, items))
            limit -= len(items)
        return claimed

    async def move_chunk_position(self, entry: dict[str, Any], taken: int) -> None:
        """Move a chunk's position past `taken` lines (only from where it was read: two dispatchers
        never both move it); a finished chunk leaves the queue, then its lines go."""
        position = entry["position"] + taken
        if position < entry["size"]:
            await self.chunk_queue.update_one({"_id": entry["_id"], "position": entry["position"]},
                                              {"$set": {"position": position}})
            return
        await self.chunk_queue.delete_one({"_id": entry["_id"], "position": entry["position"]})
        await self.chunk_lines.delete_one({"_id": entry["_id"]})

    async def chunks_waiting(self) -> int:
        return await self.chunk_queue.count_documents({})

    async def queued(self, batch_ids: Sequence[str], limit: int) -> list[dict[str, Any]]:
        if not batch_ids:
            return []
        return await self.queue.find({"batch_id": {"$in": list(batch_ids)}}).limit(limit).to_list()

    async def dequeue(self, payment_ids: Sequence[str]) -> None:
        if payment_ids:
            await self.queue.delete_many({"_id": {"$in": list(payment_ids)}})

    async def hold(self, items: Sequence[dict[str, Any]]) -> None:
        await insert_all(self.held, items)

    async def record_failures(self, items: Sequence[dict[str, Any]]) -> None:
        await insert_all(self.failed, items)

    async def clear_holds_and_failures(self, payment_ids: Sequence[str]) -> None:
        if payment_ids:
            await self.held.delete_many({"_id": {"$in": list(payment_ids)}})
            await self.failed.delete_many({"_id": {"$in": list(payment_ids)}})

    async def release_for(self, person_ref: str) -> int:
        """Send a person's held and failed payments again (after a valid account is registered).

        A held payment keeps its attempt: no transfer was made. A failed one gets the next
        attempt, so a new idempotency key: the bank refused the last one, no money moved.
        """
        held = await self.held.find({"person_ref": person_ref}).to_list()
        failed = await self.failed.find({"person_ref": person_ref}).to_list()
        items = [_queue_item(doc, doc["attempt"]) for doc in held]
        items += [_queue_item(doc, doc["attempt"] + 1) for doc in failed]
        await self.enqueue(items)
        await self.clear_holds_and_failures([item["_id"] for item in items])
        return len(items)

    async def retry_failed(self, payment_id: str) -> bool:
        doc = await self.failed.find_one({"_id": payment_id})
        if doc is None:
            return False
        await self.enqueue([_queue_item(doc, doc["attempt"] + 1)])
        await self.failed.delete_one({"_id": payment_id})
        return True

    async def record_bank_answer(self, call_id: str, *, sent: Sequence[tuple[str, str]],
                                 failed: Sequence[tuple[str, str]], at: datetime) -> None:
        """Keep the bank's answer to one bulk call: (transfer key, transfer id) for each transfer
        it accepted, (transfer key, reason) for each it refused. One document per call."""
        await insert_all(self.transfers, [{"_id": call_id, "at": at,  # lists side by side: no nested arrays in FerretDB v1
                                           "sent": [key for key, _ in sent], "transfer_ids": [tid for _, tid in sent],
                                           "failed": [key for key, _ in failed], "reasons": [why for _, why in failed]}])

    async def settled_payment_ids(self, items: Iterable[dict[str, Any]]) -> set[str]:
        """Which queue items the bank statement already showed as credited, by any attempt so far.

        A settlement's `_id` is its transfer key, so this is a lookup by `_id` (FerretDB v1 reads
        the whole collection for any other field: by `payment_id` every round slowed as
        settlements grew)."""
        keys = [transfer_key(item["_id"], attempt) for item in items for attempt in range(1, item["attempt"] + 1)]
        if not keys:
            return set()
        return {doc["payment_id"] async for doc in self.settlements.find({"_id": {"$in": keys}}, {"payment_id": 1})}

    async def record_settlements(self, documents: Sequence[dict[str, Any]]) -> None:
        await insert_all(self.settlements, documents)

    async def record_statement_page(self, after: int, through: int, tallies: dict[str, Tally]) -> int:
        """Keep how many credits and yen each batch got on the statement page after `after`, up to
        `through`, written once. A re-run of the page gets the first run's `through` back, so it
        records the same entries and no credit is counted twice (the statement only grows)."""
        page = {"_id": after, "through": through,
                "tallies": [{"batch_id": batch_id, "count": t.count, "total_yen": t.total_yen}
                            for batch_id, t in sorted(tallies.items())]}
        if await insert_all(self.statement_pages, [page]):
            first = await self.statement_pages.find_one({"_id": after}, {"through": 1})
            return int(first["through"])
        return through

    async def payment_status(self, payment_id: str) -> dict[str, Any]:
        """Where one payment is now, for the HTTP API."""
        where = {
            "settled": await self.settlements.find_one({"payment_id": payment_id}),
            "held": await self.held.find_one({"_id": payment_id}),
            "failed": await self.failed.find_one({"_id": payment_id}),
            "queued": await self.queue.find_one({"_id": payment_id}),
        }
        return where

    async def batch_figures(self, batch_id: str) -> dict[str, Any]:
        """Everything a reconciliation needs about one batch, without reading its payments: the
        lines taken in (the chunk tallies), the credits (the statement page tallies), and the held
        and failed payments with whether the statement has since credited them."""
        taken_in = Tally()
        for tally in await self.chunk_tallies(batch_id):
            taken_in = Tally(taken_in.count + tally.count, taken_in.total_yen + tally.total_yen)
        paid = Tally()
        async for page in self.statement_pages.find({"tallies.batch_id": batch_id}):
            for tally in page["tallies"]:
                if tally["batch_id"] == batch_id:
                    paid = Tally(paid.count + tally["count"], paid.total_yen + tally["total_yen"])
        fields = {"amount_yen": 1, "attempt": 1}
        held = await self.held.find({"batch_id": batch_id}, fields).to_list()
        failed = await self.failed.find({"batch_id": batch_id}, fields).to_list()
        # A failed payment that was sent again may have been credited under its next attempt.
        settled = await self.settled_payment_ids(held + [{**doc, "attempt": doc["attempt"] + 1} for doc in failed])
        return {"taken_in": taken_in, "paid": paid, "settled": settled,
                "held": {doc["_id"]: doc["amount_yen"] for doc in held},
                "failed": {doc["_id"]: doc["amount_yen"] for doc in failed}}

    # --- the dispatcher's lease and the bank statement cursor ------------------------------

    async def take_lease(self, name: str, holder: str, *, seconds: float) -> bool:
        """Hold the named lease for `seconds` (wall clock: it guards processes, not business time)."""
        now = datetime.now(UTC)
        try:
            await self.leases.find_one_and_update(
                {"_id": name, "$or": [{"holder": holder}, {"expires_at": {"$lt": now}}]},
                {"$set": {"holder": holder, "expires_at": now + timedelta(seconds=seconds)}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False  # someone else holds it
        return True  # the filter matched (ours or expired) or the lease did not exist yet

    async def drop_lease(self, name: str, holder: str) -> None:
        await self.leases.delete_one({"_id": name, "holder": holder})

    async def cursor(self, name: str) -> int:
        doc = await self.cursors.find_one({"_id": name})
        return int(doc["position"]) if doc else 0

    async def move_cursor(self, name: str, position: int) -> None:
        await self.cursors.update_one({"_id": name}, {"$set": {"position": position}}, upsert=True)


def _chunk_id(batch_id: str, chunk_index: int) -> str:
    return f"{batch_id}:{chunk_index}"


def _queue_item(doc: dict[str, Any], attempt: int) -> dict[str, Any]:
    return {
        "_id": doc["_id"], "batch_id": doc["batch_id"], "person_ref": doc["person_ref"],
        "programme": doc["programme"], "period": doc["period"], "amount_yen": doc["amount_yen"], "attempt": attempt,
    }

