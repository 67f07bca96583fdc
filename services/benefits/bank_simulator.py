"""A bank simulator for the demo and the tests: the bank side of the benefits gateway.

The API the benefits service calls (the same shape a real bank's bulk-transfer API has):

- `POST /v1/bulk-transfers` with up to 5,000 transfers, each with its own `idempotency_key`.
  The answer lists one result per transfer: `accepted` (the account is credited and the credit
  shows on the statement) or `rejected` with a reason (`account_closed`,
  `idempotency_key_reused`). A transfer whose key was seen before is not executed again:
  its first answer is returned, marked `replayed`. A malformed request is answered 422.
- `GET /v1/statement?after=<seq>&limit=<n>`: the credits in booking order (the bank statement).
- `GET /v1/statement/summary?reference=<batch id>`: count and yen total credited for one reference.

Test controls (not part of a real bank): `PUT /admin/faults` injects failures by request
number (500 before or after booking, a timeout after booking, every answer sent twice),
`PUT /admin/closed-accounts` closes accounts, and `GET /admin/ledger` shows every credit,
with how many times each payment (`end_to_end_id`) was credited.

Run it alone with `uvicorn services.benefits.bank_simulator:app --port 8900`, or in-process
through `httpx.ASGITransport(app=create_bank_simulator())`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field


class Transfer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    idempotency_key: str = Field(min_length=1, max_length=200, description="Unique per transfer; a retry reuses it.")
    end_to_end_id: str = Field(min_length=1, max_length=200, description="The payer's id of the payment.")
    reference: str = Field(min_length=1, max_length=100, description="The payer's reference (the batch id).")
    bank_code: str = Field(pattern=r"^[0-9]{4}$")
    branch_code: str = Field(pattern=r"^[0-9]{3}$")
    account_type: str
    account_number: str = Field(pattern=r"^[0-9]{7}$")
    holder_name_kana: str = Field(min_length=1, max_length=100)
    amount_yen: int = Field(ge=1)


class BulkTransferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    transfers: list[Transfer] = Field(min_length=1, max_length=5000)


class TransferAnswer(BaseModel):
    idempotency_key: str
    status: Literal["accepted", "rejected"]
    transfer_id: str | None = None
    reason: str | None = None
    replayed: bool = False


class BulkTransferAnswer(BaseModel):
    results: list[TransferAnswer]


class StatementEntry(BaseModel):
    sequence: int
    transfer_id: str
    idempotency_key: str
    end_to_end_id: str
    reference: str
    account: str
    amount_yen: int
    credited_at: datetime


class Statement(BaseModel):
    entries: list[StatementEntry]
    next_after: int


class StatementSummary(BaseModel):
    reference: str
    count: int
    total_yen: int


class FaultPlan(BaseModel):
    """Faults by bulk-request number (1-based): `every` N means requests N, 2N, 3N..."""

    error_500_every: int = Field(0, ge=0, description="Answer 500 without booking anything.")
    error_500_after_booking_every: int = Field(0, ge=0, description="Book the transfers, then answer 500.")
    timeout_every: int = Field(0, ge=0, description="Book the transfers, then answer too late.")
    duplicate_answers_every: int = Field(0, ge=0, description="Send every result twice.")
    timeout_seconds: float = Field(30.0, ge=0, description="How late a 'timeout' answer comes.")


class ClosedAccounts(BaseModel):
    accounts: list[str] = Field(description="Closed accounts as `bank-branch-number`, e.g. `0005-123-1234567`.")


class Ledger(BaseModel):
    entries: list[StatementEntry]
    credits_per_payment: dict[str, int]
    total_yen: int
    requests: int
    faults_injected: dict[str, int]


@dataclass
class BankState:
    entries: list[StatementEntry] = field(default_factory=list)
    answers: dict[str, tuple[str, TransferAnswer]] = field(default_factory=dict)  # key -> (content, answer)
    closed: set[str] = field(default_factory=set)
    faults: FaultPlan = field(default_factory=FaultPlan)
    requests: int = 0
    faults_injected: Counter[str] = field(default_factory=Counter)

    def execute(self, transfer: Transfer) -> TransferAnswer:
        """Book one transfer once; a repeated key gets the first answer back."""
        content = transfer.model_dump_json(exclude={"idempotency_key"})
        seen = self.answers.get(transfer.idempotency_key)
        if seen is not None:
            first_content, answer = seen
            if first_content != content:
                return TransferAnswer(idempotency_key=transfer.idempotency_key, status="rejected",
                                      reason="idempotency_key_reused")
            return answer.model_copy(update={"replayed": True})
        account = f"{transfer.bank_code}-{transfer.branch_code}-{transfer.account_number}"
        if account in self.closed:
            answer = TransferAnswer(idempotency_key=transfer.idempotency_key, status="rejected", reason="account_closed")
        else:
            sequence = len(self.entries) + 1
            transfer_id = f"TX{sequence:010d}"
            self.entries.append(StatementEntry(
                sequence=sequence, transfer_id=transfer_id, idempotency_key=transfer.idempotency_key,
                end_to_end_id=transfer.end_to_end_id, reference=transfer.reference, account=account,
                amount_yen=transfer.amount_yen, credited_at=datetime.now(UTC),
            ))
            answer = TransferAnswer(idempotency_key=transfer.idempotency_key, status="accepted", transfer_id=transfer_id)
        self.answers[transfer.idempotency_key] = (content, answer)
        return answer


def _due(every: int, request_number: int) -> bool:
    return every > 0 and request_number % every == 0


def create_bank_simulator(state: BankState | None = None) -> FastAPI:
    bank = state or BankState()
    app = FastAPI(title="Bank simulator", description=__doc__, version="1.0.0")
    app.state.bank = bank

    @app.post("/v1/bulk-transfers", response_model=BulkTransferAnswer, summary="Execute transfers, once per key.")
    async def bulk_transfers(request: BulkTransferRequest) -> JSONResponse:
        bank.requests += 1
        number, plan = bank.requests, bank.faults
        if _due(plan.error_500_every, number):
            bank.faults_injected["error_500"] += 1
            return JSONResponse({"error": "internal error (injected)"}, status_code=500)
        results = [bank.execute(transfer) for transfer in request.transfers]
        if _due(plan.error_500_after_booking_every, number):
            bank.faults_injected["error_500_after_booking"] += 1
            return JSONResponse({"error": "internal error after booking (injected)"}, status_code=500)
        if _due(plan.timeout_every, number):
            bank.faults_injected["timeout"] += 1
            await asyncio.sleep(plan.timeout_seconds)
        if _due(plan.duplicate_answers_every, number):
            bank.faults_injected["duplicate_answers"] += 1
            results = [r for result in results for r in (result, result)]
        return JSONResponse(BulkTransferAnswer(results=results).model_dump(mode="json"))

    @app.get("/v1/statement", response_model=Statement, summary="Credits in booking order, after a sequence number.")
    async def statement(after: int = Query(0, ge=0), limit: int = Query(1000, ge=1, le=5000)) -> Statement:
        entries = bank.entries[after:after + limit]
        return Statement(entries=entries, next_after=entries[-1].sequence if entries else after)

    @app.get("/v1/statement/summary", response_model=StatementSummary, summary="Credits for one reference.")
    async def statement_summary(reference: str) -> StatementSummary:
        mine = [e for e in bank.entries if e.reference == reference]
        return StatementSummary(reference=reference, count=len(mine), total_yen=sum(e.amount_yen for e in mine))

    @app.put("/admin/faults", response_model=FaultPlan, summary="Inject faults (test control).")
    async def set_faults(plan: FaultPlan) -> FaultPlan:
        bank.faults = plan
        return plan

    @app.put("/admin/closed-accounts", response_model=ClosedAccounts, summary="Close accounts (test control).")
    async def set_closed(closed: ClosedAccounts) -> ClosedAccounts:
        bank.closed = set(closed.accounts)
        return closed

    @app.get("/admin/ledger", response_model=Ledger, summary="Every credit, and credits per payment (test control).")
    async def ledger() -> Ledger:
        return Ledger(
            entries=bank.entries,
            credits_per_payment=dict(Counter(e.end_to_end_id for e in bank.entries)),
            total_yen=sum(e.amount_yen for e in bank.entries),
            requests=bank.requests,
            faults_injected=dict(bank.faults_injected),
        )

    return app


app = create_bank_simulator()
