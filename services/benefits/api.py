"""The benefits HTTP API: operator commands (sweeps, flag resolution, reconciliation) and queries.

Operator commands are POST routes with an optional `as_of`, so a CLI or a scheduler can call them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from mynumber_contracts import PersonRef
from mynumber_contracts.benefits import (
    AccountDeleted,
    AccountFlagResolved,
    AccountSummary,
    DeletionReason,
    FlagOutcome,
    PayoutBatchReconciled,
)
from pydantic import BaseModel, Field

from services.kit.auth import operator
from services.kit.clock import today
from services.kit.http import NOT_JSON, OPERATORS_ONLY, SweepDay, errors, service_deps, service_of
from services.kit.messaging import EventService

from . import domain
from .domain import AccountStatus
from .handlers import BenefitsDeps, close_refused_registration, finish_opt_out, sweep_opt_out_proposals

# Accounts, payments and audit trails are personal data: every route is for operators.
router = APIRouter(tags=["benefits"], dependencies=[Depends(operator)], responses=errors(OPERATORS_ONLY))


class AccountView(BaseModel):
    person_ref: str
    status: AccountStatus
    channel: str
    account: AccountSummary


class FlagView(BaseModel):
    flag_id: str
    status: str
    holders: list[str]
    reason: str


class FlagResolution(BaseModel):
    operator: str = Field(min_length=1, max_length=100, description="Who resolves the flag.")
    reason: str = Field(min_length=1, max_length=500, description="Why, in the operator's words.")
    keep: list[PersonRef] | None = Field(
        default=None, description="Holders whose registration is genuine and is released; the others are removed. "
        "Absent: every holder is released.")


class FlagResolutionResult(BaseModel):
    flag_id: str
    released: list[str]
    removed: list[str]


class SweepResult(BaseModel):
    as_of: date
    proposals: dict[str, str] = Field(description="Outcome per proposal id.")


class DispatchResult(BaseModel):
    payments_handled: int


class BatchView(BaseModel):
    batch_id: str
    state: str
    programme: str
    period: str
    recipient_count: int
    total_yen: int
    chunk_count: int
    chunks_received: int
    decision: dict[str, Any] | None = None


class WaitingBatchView(BaseModel):
    batch_id: str
    chunks_kept: list[int] = Field(description="The indexes of the chunks that came, kept until the header comes.")
    recipients: int
    total_yen: int
    first_kept_at: datetime | None = Field(description="When the first of them came (absent for chunks kept before "
                                                       "the time was recorded).")
    waiting_seconds: float | None


class PaymentView(BaseModel):
    payment_id: str
    batch_id: str
    amount_yen: int
    status: str = Field(description="settled, held, failed or pending.")
    reason: str | None = None


# --- accounts, flags, audit -------------------------------------------------------------------


@router.get("/accounts/{person_ref}", response_model=AccountView, summary="A person's receiving account.",
            responses=errors({404: "No receiving account is registered for this person."}))
async def get_account(person_ref: PersonRef, deps: BenefitsDeps = Depends(service_deps)) -> AccountView:
    account = await deps.store.account(person_ref)
    if account is None:
        raise HTTPException(404, "no receiving account is registered for this person")
    return AccountView(person_ref=person_ref, status=account.status, channel=str(account.channel),
                       account=account.summary())


@router.get("/flags", response_model=list[FlagView], summary="Open shared-account flags.")
async def get_flags(deps: BenefitsDeps = Depends(service_deps)) -> list[FlagView]:
    return [FlagView(flag_id=f["_id"], status=f["status"], holders=f["person_refs"], reason=f["reason"])
            for f in await deps.store.open_flags()]


@router.post("/flags/{flag_id}/resolve", response_model=FlagResolutionResult,
             responses=errors({**NOT_JSON, 404: "No such flag.", 409: "The flag is already resolved."}),
             summary="Resolve a shared-account flag: release the genuine holders, remove the others.")
async def resolve_flag(flag_id: str, resolution: FlagResolution, service: EventService[BenefitsDeps] = Depends(service_of)
                       ) -> FlagResolutionResult:
    store, now = service.deps.store, service.clock.now()
    flag = await store.flag(flag_id)
    if flag is None:
        raise HTTPException(404, "no such flag")
    holders: list[str] = flag["person_refs"]
    keep = set(holders if resolution.keep is None else resolution.keep)
    unknown = keep - set(holders)
    if unknown:
        raise HTTPException(422, "keep names people who do not hold this account")
    if not await store.keep_holders(flag_id, sorted(keep)):
        raise HTTPException(409, "the flag is already resolved")
    facts, released, removed = [], [], []
    for person_ref in holders:
        account = await store.account(person_ref)
        holds_it = account is not None and account.key == flag["key"]
        if person_ref in keep:
            if holds_it:
                await store.set_account_status([account], AccountStatus.active)
                await store.release_for(person_ref)
            released.append(person_ref)
            outcome = FlagOutcome.released
        else:
            if holds_it:
                await store.delete_account(person_ref, registration=account.source_id)
                facts.append(AccountDeleted(person_ref=person_ref, request_id=f"resolve:{flag_id}",
                                            reason=DeletionReason.removed_by_operator))
            removed.append(person_ref)
            outcome = FlagOutcome.removed
        await store.audit(f"resolve:{flag_id}:{person_ref}", actor=resolution.operator, action=f"flag_{outcome.value}",
                          person_ref=person_ref, reason=resolution.reason, subject=flag["key"], at=now)
        facts.append(AccountFlagResolved(person_ref=person_ref, flag_id=flag_id, outcome=outcome,
                                         operator=resolution.operator, reason=resolution.reason))
    await service.publish_facts(facts, cause=service.synthetic_cause(f"flag-resolution:{flag_id}",
                                                                     "jp.mynumber.operations.flag_resolution.v1"))
    await store.close_flag(flag_id, operator=resolution.operator, reason=resolution.reason, now=now)
    return FlagResolutionResult(flag_id=flag_id, released=released, removed=removed)


# --- the opt-out route -----------------------------------------------------------------------


@router.post("/operations/opt-out-sweep", response_model=SweepResult,
             summary="Register the pension accounts whose reply period ran out without a refusal.")
async def opt_out_sweep(as_of: SweepDay = None, service: EventService[BenefitsDeps] = Depends(service_of)) -> SweepResult:
    as_of = as_of or today(service.clock)
    outcomes = {}
    for outcome in await sweep_opt_out_proposals(service.deps, as_of, service.clock):
        await service.publish_facts(outcome.facts, cause=service.synthetic_cause(f"opt-out-sweep:{outcome.proposal_id}"))
        finished = await finish_opt_out(service.deps, outcome, on=as_of)
        if finished.facts:  # after the sweep's own facts, with ids of their own, the same on a re-run
            await service.publish_facts(finished.facts, cause=service.synthetic_cause(
                f"opt-out-sweep:{outcome.proposal_id}:refused-meanwhile"))
        await close_refused_registration(service.deps, outcome.proposal_id)
        outcomes[outcome.proposal_id] = finished.status.value
    return SweepResult(as_of=as_of, proposals=outcomes)


@router.get("/proposals/{proposal_id}", response_model=dict[str, Any], summary="A pension account proposal.",
            responses=errors({404: "No such proposal."}))
async def get_proposal(proposal_id: str, deps: BenefitsDeps = Depends(service_deps)) -> dict[str, Any]:
    proposal = await deps.store.proposal(proposal_id)
    if proposal is None:
        raise HTTPException(404, "no such proposal")
    return {"proposal_id": proposal["_id"], "person_ref": proposal["person_ref"], "status": proposal["status"],
            "notified_on": proposal["notified_on"], "reply_by": proposal["reply_by"]}


# --- payouts ---------------------------------------------------------------------------------


@router.get("/operations/batches-waiting-for-header", response_model=list[WaitingBatchView],
            summary="Batches whose chunks came but whose header has not, oldest first: a paying agency to chase.")
async def batches_waiting_for_header(service: EventService[BenefitsDeps] = Depends(service_of)) -> list[WaitingBatchView]:
    now = service.clock.now()
    return [WaitingBatchView(batch_id=batch.batch_id, chunks_kept=list(batch.chunk_indexes), recipients=batch.recipients,
                             total_yen=batch.total_yen, first_kept_at=batch.first_kept_at,
                             waiting_seconds=(now - batch.first_kept_at).total_seconds() if batch.first_kept_at else None)
            for batch in await service.deps.store.batches_waiting_for_header()]


@router.get("/batches/{batch_id}", response_model=BatchView, summary="A payout batch and its decision.",
            responses=errors({404: "No such batch (the detail says how many of its chunks wait for its header)."}))
async def get_batch(batch_id: str, deps: BenefitsDeps = Depends(service_deps)) -> BatchView:
    batch = await deps.store.batch(batch_id)
    if batch is None:
        waiting = await deps.store.parked_chunk_count(batch_id)
        raise HTTPException(404, f"no such batch: {waiting} chunk(s) of it wait for its header" if waiting
                            else "no such batch")
    return BatchView(batch_id=batch_id, state=batch["state"], programme=batch["programme"], period=batch["period"],
                     recipient_count=batch["recipient_count"], total_yen=batch["total_yen"],
                     chunk_count=batch["chunk_count"], chunks_received=len(await deps.store.chunk_tallies(batch_id)),
                     decision=batch.get("decision"))


async def _reconciliation(service: EventService[BenefitsDeps], batch_id: str, as_of: datetime) -> PayoutBatchReconciled:
    deps = service.deps
    batch = await deps.store.batch(batch_id)
    if batch is None:
        raise HTTPException(404, "no such batch")
    if batch["state"] != "accepted":
        raise HTTPException(409, f"the batch is {batch['state']}: only an accepted batch is reconciled")
    figures = await deps.store.batch_figures(batch_id)
    bank_count, bank_total = await deps.gateway.statement_summary(batch_id)
    report = domain.reconcile(
        domain.Tally(batch["recipient_count"], batch["total_yen"]), **figures,
        bank_statement=domain.Tally(bank_count, bank_total),
    )
    return PayoutBatchReconciled(
        batch_id=batch_id, programme=batch["programme"], period=batch["period"], control=report.control.line(),
        paid=report.paid.line(), held=report.held.line(), failed=report.failed.line(), pending=report.pending.line(),
        bank_statement=report.bank_statement.line(), balanced=report.balanced,
        matches_bank_statement=report.matches_bank_statement, as_of=as_of,
    )


@router.get("/batches/{batch_id}/reconciliation", response_model=PayoutBatchReconciled,
            responses=errors({404: "No such batch.", 409: "The batch is not accepted: only an accepted batch is reconciled."}),
            summary="Paid, held, failed and pending against the control totals and the bank statement.")
async def get_reconciliation(batch_id: str, service: EventService[BenefitsDeps] = Depends(service_of)
                             ) -> PayoutBatchReconciled:
    return await _reconciliation(service, batch_id, service.clock.now())


@router.post("/batches/{batch_id}/reconcile", response_model=PayoutBatchReconciled,
            responses=errors({404: "No such batch.", 409: "The batch is not accepted: only an accepted batch is reconciled."}),
             summary="Reconcile a batch and publish the report as a fact.")
async def reconcile_batch(batch_id: str, as_of: datetime | None = None,
                          service: EventService[BenefitsDeps] = Depends(service_of)) -> PayoutBatchReconciled:
    as_of = (as_of or service.clock.now()).astimezone(UTC)
    report = await _reconciliation(service, batch_id, as_of)
    await service.publish_facts([report], cause=service.synthetic_cause(
        f"reconcile:{batch_id}:{as_of.isoformat()}", "jp.mynumber.operations.reconciliation.v1"))
    return report


@router.get("/payments/{payment_id}", response_model=PaymentView, summary="Where one payment is.",
            responses=errors({404: "No such payment."}))
async def get_payment(payment_id: str, deps: BenefitsDeps = Depends(service_deps)) -> PaymentView:
    payment = await deps.store.payment(payment_id)
    if payment is None:
        raise HTTPException(404, "no such payment")
    where = await deps.store.payment_status(payment_id)
    status, reason = "pending", None
    for name in ("settled", "held", "failed"):
        if where[name] is not None:
            status, reason = name, where[name].get("reason")
            break
    return PaymentView(payment_id=payment_id, batch_id=payment["batch_id"], amount_yen=payment["amount_yen"],
                       status=status, reason=reason)


@router.post("/payments/{payment_id}/retry", response_model=PaymentView, summary="Send a failed payment again.",
             responses=errors({409: "No failed payment has this id."}))
async def retry_payment(payment_id: str, deps: BenefitsDeps = Depends(service_deps)) -> PaymentView:
    if not await deps.store.retry_failed(payment_id):
        raise HTTPException(409, "the payment has not failed")
    return await get_payment(payment_id, deps)


@router.post("/operations/dispatch", response_model=DispatchResult, responses=errors({503: "No dispatcher is configured."}),
             summary="Run one payment dispatch round now (the dispatcher loop does this by itself).")
async def dispatch_now(service: EventService[BenefitsDeps] = Depends(service_of)) -> DispatchResult:
    dispatcher = service.deps.dispatcher
    if dispatcher is None:
        raise HTTPException(503, "no dispatcher is configured")
    return DispatchResult(payments_handled=await dispatcher.run_round())
