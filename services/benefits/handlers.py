"""The use cases of the benefits service: load state, ask the domain, save, return facts.

Handlers never publish; the kit publishes what they return. Every write is keyed (by person
reference, request id, proposal id, payment id), so a use case that runs again after a crash
finds its own writes and returns the same facts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from mynumber_contracts import Fact
from mynumber_contracts.benefits import (
    AccountChanged,
    AccountChannel,
    AccountDeleted,
    AccountFlagged,
    AccountInvalidated,
    AccountRegistered,
    AccountRegistrationRefused,
    AnnouncePayoutBatch,
    BankAccount,
    BatchRejectionReason,
    DeleteReceivingAccount,
    DeletionReason,
    OptOutConcluded,
    OptOutNoticeSent,
    OptOutOutcome,
    PayoutBatchAccepted,
    PayoutBatchRejected,
    ProposePensionAccount,
    RecordBankCodeChange,
    RefusalReason,
    RefusePensionAccount,
    RegisterReceivingAccount,
    SubmitPayoutChunk,
)
from mynumber_contracts.enrollment import (
    ResidentAttributesChanged,
    ResidentDeceased,
    ResidentMovedAbroad,
    ResidentRegistered,
)

from services.kit.clock import Clock
from services.kit.messaging import HandlerContext, HandlerRegistry
from services.kit.people import PersonReferences

from . import domain
from .domain import Account, AccountStatus, BatchHeader, ProposalStatus, Resident, ResidentStatus
from .settings import BenefitsSettings
from .store import BenefitsStore

handlers = HandlerRegistry()


@dataclass
class BenefitsDeps:
    store: BenefitsStore
    people: PersonReferences
    settings: BenefitsSettings
    gateway: Any  # BankGateway; Any keeps this module free of httpx
    dispatcher: Any = None  # PaymentDispatcher, set by the composition root


class ConflictingRequest(ValueError):
    """A request that contradicts what was recorded under the same id: dead-lettered."""


# --- the resident read model ---------------------------------------------------------------


def _resident(person_ref: str, attributes: Any, status: ResidentStatus = ResidentStatus.resident) -> Resident:
    return Resident(person_ref=person_ref, name_kana=attributes.name_kana, name_kanji=attributes.name_kanji,
                    address=attributes.address, status=status)


@handlers.handles(ResidentRegistered)
async def remember_resident(event: ResidentRegistered, ctx: HandlerContext[BenefitsDeps]) -> list[Fact]:
    await ctx.deps.store.save_resident(_resident(event.person_ref, event.attributes), fact_id=ctx.envelope.id)
    return []


@handlers.handles(ResidentAttributesChanged)
async def remember_changed_attributes(event: ResidentAttributesChanged, ctx: HandlerContext[BenefitsDeps]) -> list[Fact]:
    """A new surname or address can make an account this person shares with others suspicious:
    if the change does, every holder is withheld and flagged. Sharing that was suspicious before
    the change (and that an operator may have kept) is not flagged again."""
    deps, store = ctx.deps, ctx.deps.store
    if await store.resident_fact_applied(event.person_ref, ctx.envelope.id):
        return []  # run again, perhaps after later changes: the resident as saved then stands
    before = await store.resident(event.person_ref)  # still the old attributes: they are saved last
    after = _resident(event.person_ref, event.attributes)
    account = await store.account(event.person_ref)
    facts: list[Fact] = []
    if before is not None and account is not None and account.status in (AccountStatus.active, AccountStatus.withheld):
        sharing = await _sharing(store, account, instead=after)
        if sharing.suspicious and not (await _sharing(store, account, instead=before)).suspicious:
            await store.set_account_status([account], AccountStatus.withheld)
            facts = await _flag_shared_account(deps, replace(account, status=AccountStatus.withheld), sharing,
                                               now=ctx.clock.now())
    await store.save_resident(after, fact_id=ctx.envelope.id)
    return facts


@handlers.handles(ResidentMovedAbroad)
async def remember_move_abroad(event: ResidentMovedAbroad, ctx: HandlerContext[BenefitsDeps]) -> list[Fact]:
    await ctx.deps.store.save_resident(_resident(event.person_ref, event.attributes, ResidentStatus.moved_abroad),
                                       fact_id=ctx.envelope.id)
    return []


@handlers.handles(ResidentDeceased)
async def remember_death(event: ResidentDeceased, ctx: HandlerContext[BenefitsDeps]) -> list[Fact]:
    await ctx.deps.store.mark_resident(event.person_ref, ResidentStatus.deceased, fact_id=ctx.envelope.id)
    return []


# --- the receiving account -------------------------------------------------------------------


def _account(person_ref: str, account: BankAccount, *, channel: AccountChannel, source_id: str) -> Account:
    return Account(
        person_ref=person_ref, bank_code=account.bank_code, branch_code=account.branch_code,
        account_type=account.account_type, account_number=account.account_number,
        holder_name_kana=account.holder_name_kana, channel=channel, source_id=source_id,
    )


async def register_account(deps: BenefitsDeps, account: Account, *, now: datetime, actor: str,
                           release: bool = True) -> list[Fact]:
    """Register (or replace) a person's account, check it for suspicious sharing, release waiting
    payments (unless `release` is False: the opt-out sweep releases them once it knows no refusal
    came while it registered)."""
    store = deps.store
    existing = await store.account(account.person_ref)
    if (existing is None or existing.source_id != account.source_id) and await store.registration_made(account.person_ref, account.source_id):
        # Made, then replaced or deleted since: this registration runs again late (a consumer that fell
        # behind later requests). It must not bring the account back; its facts went out when it was made.
        return []
    if existing is not None and existing.source_id == account.source_id:
        account = replace(account, replaced_another=existing.replaced_another, status=existing.status)  # a re-run
    else:
        account = replace(account, replaced_another=existing is not None)
    # Saved as `checking` before the look at the other holders, so no payment goes to it before
    # that look has decided; and of two registrations of one account at the same moment (another
    # partition, or another instance), the later look sees the earlier save.
    after_check = AccountStatus.active if account.status is AccountStatus.checking else account.status
    await store.save_account(replace(account, status=AccountStatus.checking), now=now)
    sharing = await _sharing(store, account)
    shared = sharing.suspicious
    # If the other registration looked after our save, it has withheld us both and flagged us:
    # that status stands, and the flag is its to report.
    checked = await store.finish_check(account.person_ref, AccountStatus.withheld if shared else after_check)
    status = checked or after_check  # None: deleted meanwhile (a refusal during the opt-out sweep), nothing to pay into
    account = replace(account, status=status)
    await store.audit(domain.registration_entry_id(account.source_id, account.person_ref), actor=actor,
                      action="account_changed" if account.replaced_another else "account_registered",
                      person_ref=account.person_ref, reason=str(account.channel), subject=account.key, at=now)
    fact_type = AccountChanged if account.replaced_another else AccountRegistered
    facts: list[Fact] = [fact_type(person_ref=account.person_ref, request_id=account.source_id, channel=account.channel,
                                   account=account.summary(), withheld=status is AccountStatus.withheld)]
    if shared:
        facts += await _flag_shared_account(deps, account, sharing, now=now)
    elif checked is AccountStatus.active and release:
        await store.release_for(account.person_ref)
    return facts


@dataclass(frozen=True)
class _Sharing:
    """Who else holds an account, and whether this person's holding it with them is suspicious."""

    co_holders: list[Account]
    suspicious: bool
    kept: frozenset[str] = frozenset()  # the holders an operator resolving the account's flag kept


async def _sharing(store: BenefitsStore, account: Account, *, instead: Resident | None = None) -> _Sharing:
    """The account's other holders, and whether sharing it with them is suspicious (with `instead`
    in place of that person's stored resident record). An operator's decision stands: a holder the
    operator kept is not suspicious again (their registration run again, or their later move)."""
    co_holders = [a for a in await store.accounts_with_key(account.key) if a.person_ref != account.person_ref]
    if not co_holders:
        return _Sharing([], False)
    kept = await store.kept_holders(domain.flag_id_for(account.key))
    if account.person_ref in kept:
        return _Sharing(co_holders, False, kept)
    residents = await store.residents_by_ref([account.person_ref, *(a.person_ref for a in co_holders)])
    if instead is not None:
        residents[instead.person_ref] = instead
    shared = domain.is_suspicious_sharing(
        residents.get(account.person_ref), [residents.get(a.person_ref) for a in co_holders]
    )
    return _Sharing(co_holders, shared, kept)


async def _flag_shared_account(deps: BenefitsDeps, account: Account, sharing: _Sharing, *, now: datetime) -> list[Fact]:
    """Withhold the holders of a shared account until an operator resolves the flag, all but those
    an operator already kept; audit each step. The flag lists every holder."""
    store = deps.store
    flag_id = domain.flag_id_for(account.key)
    holders = [account.person_ref, *(a.person_ref for a in sharing.co_holders)]
    to_withhold = [a for a in sharing.co_holders if a.person_ref not in sharing.kept]
    reason = "one account is registered for people with different surnames or addresses"
    await store.set_account_status(to_withhold, AccountStatus.withheld)
    await store.open_flag(flag_id, account.key, holders, reason=reason, now=now)
    withheld = [account.person_ref, *(a.person_ref for a in to_withhold)]
    for person_ref in withheld:
        await store.audit(f"flag:{flag_id}:{account.source_id}:{person_ref}", actor="service/benefits",
                          action="account_flagged", person_ref=person_ref, reason=reason, subject=account.key, at=now)
    return [AccountFlagged(person_ref=p, flag_id=flag_id, holders=len(holders), reason=reason) for p in withheld]


@handlers.handles(RegisterReceivingAccount)
async def register_receiving_account(event: RegisterReceivingAccount, ctx: HandlerContext[BenefitsDeps]) -> list[Fact]:
    deps = ctx.deps
    person_ref = deps.people.for_number(event.my_number)
    refusal = domain.check_own_name(await deps.store.resident(person_ref), event.account.holder_name_kana)
    if refusal is not None:
        return [AccountRegistrationRefused(person_ref=person_ref, request_id=event.request_id, reason=refusal.reason,
                                           message=refusal.message)]
    account = _account(person_ref, event.account, channel=event.channel, source_id=event.request_id)
    return await register_account(deps, account, now=ctx.clock.now(), actor=ctx.envelope.source)


@handlers.handles(DeleteReceivingAccount)
async def delete_receiving_account(event: DeleteReceivingAccount, ctx: HandlerContext[BenefitsDeps]) -> list[Fact]:
    store = ctx.deps.store
    person_ref = ctx.deps.people.for_number(event.my_number)
    deleted = AccountDeleted(person_ref=person_ref, request_id=event.request_id, reason=DeletionReason.deleted_by_holder)
    partner = ctx.envelope.source
    entry_id = domain.deletion_entry_id(partner, event.request_id, person_ref)
    # The deletion is audited first, naming the registration it deletes: run again (after a crash,
    # or late, after the holder registered another account), it deletes that registration's
    # account if it is still there, and never one registered since.
    audited = await store.deletion(entry_id, partner=partner, request_id=event.request_id, person_ref=person_ref)
    if audited is not None:
        registration = audited.registration
    else:
        account = await store.account(person_ref)
        if account is None:
            return [AccountRegistrationRefused(person_ref=person_ref, request_id=event.request_id,
                                               reason=RefusalReason.no_account, message="No receiving account is registered.")]
        registration = account.source_id
        await store.audit(entry_id, actor=partner, action="account_deleted", person_ref=person_ref,
                          reason=DeletionReason.deleted_by_holder, subject="", at=ctx.clock.now(), registration=registration)
    if registration:  # "": audited by earlier code, which deleted before it audited
        await store.delete_account(person_ref, registration=registration)
    return [deleted]


@handlers.handles(RecordBankCodeChange)
async def invalidate_renumbered_accounts(event: RecordBankCodeChange, ctx: HandlerContext[BenefitsDeps]) -> list[Fact]:
    """A merger renumbers a bank or branch: its accounts are invalidated and each holder is told.
    A holder who registered another account after the accounts were read keeps it, and is not told."""
    store = ctx.deps.store
    accounts = await store.accounts_at_bank(event.old_bank_code, event.old_branch_code)
    await store.set_account_status(accounts, AccountStatus.invalidated)
    now_on_record = await store.accounts_by_ref(a.person_ref for a in accounts)
    accounts = [a for a in accounts if (now := now_on_record.get(a.person_ref)) is not None and now.source_id == a.source_id]
    message = (f"Bank code {event.old_bank_code} changed to {event.new_bank_code} on {event.effective_on}. "
               "Please register your receiving account again with the new codes.")
    facts: list[Fact] = []
    for account in accounts:
        await store.audit(f"invalidate:{event.request_id}:{account.person_ref}", actor=ctx.envelope.source,
                          action="account_invalidated", person_ref=account.person_ref, reason="bank_code_changed",
                          subject=account.key, at=ctx.clock.now())
        facts.append(AccountInvalidated(
            person_ref=account.person_ref, request_id=event.request_id, account=account.summary(),
            new_bank_code=event.new_bank_code, new_branch_code=event.new_branch_code or account.branch_code,
            effective_on=event.effective_on, message=message,
        ))
    return facts


# --- the opt-out route -----------------------------------------------------------------------


@handlers.handles(ProposePensionAccount)
async def propose_pension_account(event: ProposePensionAccount, ctx: HandlerContext[BenefitsDeps]) -> list[Fact]:
    """The pension service proposes its account: write to the holder; silence for the reply period agrees."""
    deps = ctx.deps
    person_ref = deps.people.for_number(event.my_number)
    refusal = domain.check_own_name(await deps.store.resident(person_ref), event.account.holder_name_kana)
    if refusal is not None:
        return [OptOutConcluded(person_ref=person_ref, proposal_id=event.proposal_id, outcome=OptOutOutcome.not_eligible,
                                concluded_on=event.notified_on, message=refusal.message)]
    account = _account(person_ref, event.account, channel=AccountChannel.pension_opt_out, source_id=event.proposal_id)
    reply_by = domain.reply_by(event.notified_on, deps.settings.opt_out_reply_days)
    await deps.store.record_proposal(event.proposal_id, person_ref, account, notified_on=event.notified_on,
                                     reply_by=reply_by, status=ProposalStatus.awaiting_reply.value)
    return [OptOutNoticeSent(person_ref=person_ref, proposal_id=event.proposal_id, account=account.summary(),
                             reply_by=reply_by)]


@handlers.handles(RefusePensionAccount)
async def refuse_pension_account(event: RefusePensionAccount, ctx: HandlerContext[BenefitsDeps]) -> list[Fact]:
    """A refusal before a sweep registers the account stops the registration; once a sweep has
    taken the proposal (its reply period ran out), it deletes the account instead."""
    store = ctx.deps.store
    person_ref = ctx.deps.people.for_number(event.my_number)
    proposal = await store.proposal(event.proposal_id)
    if proposal is None or proposal["person_ref"] != person_ref:
        raise ConflictingRequest(f"no pension proposal {event.proposal_id!r} for this person")
    status = ProposalStatus(proposal["status"])
    in_time = (ProposalStatus.awaiting_reply, ProposalStatus.refused)
    if status in in_time:
        if await store.move_proposal(event.proposal_id, from_=in_time, to=ProposalStatus.refused, on=event.received_on):
            return [OptOutConcluded(person_ref=person_ref, proposal_id=event.proposal_id, outcome=OptOutOutcome.refused,
                                    concluded_on=event.received_on,
                                    message="The refusal arrived in time: nothing is registered.")]
        status = ProposalStatus((await store.proposal(event.proposal_id))["status"])  # a sweep took it meanwhile
    taken = (ProposalStatus.registering, ProposalStatus.refused_while_registering, ProposalStatus.registered,
             ProposalStatus.deleted)
    if status not in taken:
        return []  # the person registered another account before the deadline: nothing to undo
    # Audited first, like a holder's deletion, and keyed the same way; it deletes only the
    # proposal's registration, so run again it never deletes an account registered since. Whether
    # there was anything to delete is decided on the first run and audited: a re-run says the same.
    partner = ctx.envelope.source
    entry_id = domain.deletion_entry_id(partner, event.proposal_id, person_ref)
    audited = await store.deletion(entry_id, partner=partner, request_id=event.proposal_id, person_ref=person_ref)
    if audited is None:
        audited = domain.refusal_after_registration(event.proposal_id, status, await store.account(person_ref))
        await store.audit(entry_id, actor=partner, action="account_deleted" if audited.deletes else "account_not_deleted",
                          person_ref=person_ref, reason=DeletionReason.refused_after_registration, subject="",
                          at=ctx.clock.now(), registration=audited.registration, kept=audited.kept)
    # The proposal says so first, and then the account goes: a sweep still registering then finds
    # the refusal when it finishes (it deletes the account it saved and publishes the deletion
    # last), and a sweep that finished before the move saved the account this deletes.
    await _mark_refused_after_taken(store, event.proposal_id, on=event.received_on)
    if audited.deletes:
        await store.delete_account(person_ref, registration=event.proposal_id)  # if the proposal's account is there
    if not audited.deletes:
        gone = ("had already been replaced by the holder's own account, which stays" if audited.kept
                else "had already been deleted")
        return [OptOutConcluded(person_ref=person_ref, proposal_id=event.proposal_id,
                                outcome=OptOutOutcome.refused_after_registration, concluded_on=event.received_on,
                                message=f"The refusal arrived after registration, but the pension account {gone}: "
                                        "nothing was deleted.")]
    return [
        AccountDeleted(person_ref=person_ref, request_id=event.proposal_id, reason=DeletionReason.refused_after_registration),
        OptOutConcluded(person_ref=person_ref, proposal_id=event.proposal_id,
                        outcome=OptOutOutcome.refused_after_registration, concluded_on=event.received_on,
                        message="The refusal arrived after registration: the account is deleted."),
    ]


# A refusal came after a sweep took the proposal (the holder refused: no sweep may leave the account).
_REFUSED_AFTER_TAKEN = (ProposalStatus.refused_while_registering.value, ProposalStatus.deleted.value)


async def _mark_refused_after_taken(store: BenefitsStore, proposal_id: str, *, on: date) -> None:
    """A refusal of a proposal a sweep has taken: `refused_while_registering` while the sweep is
    still on it, `deleted` once it has finished (either way, the holder refused, so no sweep may
    leave the account). Already marked, it stays as it is."""
    if not await store.move_proposal(proposal_id, from_=(ProposalStatus.registering,),
                                     to=ProposalStatus.refused_while_registering, on=on):
        await store.move_proposal(proposal_id, from_=(ProposalStatus.registered,), to=ProposalStatus.deleted, on=on)


@dataclass(frozen=True)
class SweepOutcome:
    """What the opt-out sweep did with one proposal: the facts to publish and the status to record.
    `resumed`: a proposal an earlier sweep left refused while it registered; this sweep only
    finishes it (what the earlier one published is not known)."""

    proposal_id: str
    person_ref: str
    facts: list[Fact]
    status: ProposalStatus
    resumed: bool = False


async def sweep_opt_out_proposals(deps: BenefitsDeps, as_of: date, clock: Clock) -> list[SweepOutcome]:
    """Register every proposed pension account whose reply period has run out without a refusal.

    Each proposal is taken (`registering`) just before its account is registered, so a refusal
    that arrived while the sweep went through the list stops it. The caller publishes the facts
    (with a cause keyed by the proposal), then `finish_opt_out` records the status, and then the
    caller publishes what that returns and calls `close_refused_registration`. A crash before the
    status is recorded repeats, never loses: the next sweep takes a `registering` proposal up
    again, and finishes a `refused_while_registering` one (deletes its account, publishes the
    deletion again).
    """
    store = deps.store
    outcomes = []
    for proposal in await store.due_proposals(as_of):
        if not domain.is_due_for_registration(date.fromisoformat(proposal["notified_on"]), as_of,
                                              deps.settings.opt_out_reply_days):
            continue
        person_ref, proposal_id = proposal["person_ref"], proposal["_id"]
        if not await store.move_proposal(proposal_id, from_=(ProposalStatus.awaiting_reply, ProposalStatus.registering),
                                         to=ProposalStatus.registering):
            now = await store.proposal(proposal_id)
            if now is not None and now["status"] == ProposalStatus.refused_while_registering.value:
                outcomes.append(SweepOutcome(proposal_id, person_ref, [], ProposalStatus.deleted, resumed=True))
            continue  # refused in time since the list was read, or taken and finished by another sweep
        existing = await store.account(person_ref)
        if existing is not None and existing.source_id != proposal_id:
            facts: list[Fact] = [OptOutConcluded(
                person_ref=person_ref, proposal_id=proposal_id, outcome=OptOutOutcome.already_registered,
                concluded_on=as_of, message="Another account was registered in the meantime; it stays.")]
            status = ProposalStatus.already_registered
        else:
            account = Account(
                person_ref=person_ref, bank_code=proposal["bank_code"], branch_code=proposal["branch_code"],
                account_type=proposal["account_type"], account_number=proposal["account_number"],
                holder_name_kana=proposal["holder_name_kana"], channel=AccountChannel.pension_opt_out,
                source_id=proposal_id,
            )
            facts = await register_account(deps, account, now=clock.now(), actor="service/benefits", release=False)
            await _release_unless_refused(store, person_ref, proposal_id)
            facts.append(OptOutConcluded(
                person_ref=person_ref, proposal_id=proposal_id, outcome=OptOutOutcome.registered, concluded_on=as_of,
                message="No refusal arrived within the reply period: the pension account is registered. "
                        "It can still be changed or deleted at any time."))
            status = ProposalStatus.registered
        outcomes.append(SweepOutcome(proposal_id, person_ref, facts, status))
    return outcomes


async def _release_unless_refused(store: BenefitsStore, person_ref: str, proposal_id: str) -> None:
    """After the sweep saved a proposal's account: a refusal that came before the save deleted
    nothing and moved the proposal to `deleted`, so the account goes at once (and again, with its
    fact, in `finish_opt_out`) and no held payment is sent to it. Otherwise the payments held for
    want of an account are released, as any registration does; a refusal after this point
    deletes the account itself, and what was released is held again."""
    proposal = await store.proposal(proposal_id)
    if proposal is not None and proposal["status"] in _REFUSED_AFTER_TAKEN:
        await store.delete_account(person_ref, registration=proposal_id)
        return
    account = await store.account(person_ref)
    if account is not None and account.source_id == proposal_id and account.status is AccountStatus.active:
        await store.release_for(person_ref)


@dataclass(frozen=True)
class OptOutFinished:
    """How a sweep's proposal ends: the status on record, and the facts still to publish."""

    status: ProposalStatus
    facts: list[Fact]


async def finish_opt_out(deps: BenefitsDeps, outcome: SweepOutcome, *, on: date) -> OptOutFinished:
    """Record what the sweep did with a proposal, once its facts are out. A refusal that came
    while the account was being registered has already marked the proposal: the account saved
    after that refusal looked is deleted here, and, as the sweep's AccountRegistered may have gone
    out after the refusal's AccountDeleted, the deletion is published again so that it is the
    person's last account fact; `close_refused_registration` records `deleted` once it is out, so
    a crash before that leaves the proposal for the next sweep. Another sweep that took the same
    proposal and finished first has recorded the same outcome: it stands."""
    store = deps.store
    if not outcome.resumed and await store.move_proposal(outcome.proposal_id, from_=(ProposalStatus.registering,),
                                                         to=outcome.status, on=on):
        return OptOutFinished(outcome.status, [])
    status = ProposalStatus((await store.proposal(outcome.proposal_id))["status"])
    if status.value not in _REFUSED_AFTER_TAKEN:
        return OptOutFinished(status, [])
    account = await store.account(outcome.person_ref)
    await store.delete_account(outcome.person_ref, registration=outcome.proposal_id)
    if outcome.resumed:  # what the stopped sweep published is not known: say it again, unless the account is another's
        announce = account is None or account.source_id == outcome.proposal_id
    else:
        announce = any(isinstance(fact, AccountRegistered | AccountChanged) for fact in outcome.facts)
    if not announce:
        return OptOutFinished(ProposalStatus.deleted, [])  # the sweep registered nothing (the holder's own account stays)
    return OptOutFinished(ProposalStatus.deleted, [AccountDeleted(
        person_ref=outcome.person_ref, request_id=outcome.proposal_id, reason=DeletionReason.refused_after_registration)])


async def close_refused_registration(deps: BenefitsDeps, proposal_id: str) -> None:
    """After `finish_opt_out`'s facts are out: a proposal refused while it was registered is
    `deleted` (its refusal's day stays the day it concluded). Nothing for any other status."""
    await deps.store.move_proposal(proposal_id, from_=(ProposalStatus.refused_while_registering,),
                                   to=ProposalStatus.deleted)


# --- payout batches --------------------------------------------------------------------------


def _header(batch: dict[str, Any]) -> BatchHeader:
    return BatchHeader(batch_id=batch["_id"], programme=batch["programme"], period=batch["period"],
                       recipient_count=batch["recipient_count"], total_yen=batch["total_yen"],
                       chunk_count=batch["chunk_count"])


@handlers.handles(AnnouncePayoutBatch)
async def announce_payout_batch(event: AnnouncePayoutBatch, ctx: HandlerContext[BenefitsDeps]) -> list[Fact]:
    """Record the header, take in the chunks that came before it, and decide if every chunk is in."""
    store = ctx.deps.store
    header = BatchHeader(batch_id=event.batch_id, programme=event.programme, period=event.period,
                         recipient_count=event.recipient_count, total_yen=event.total_yen,
                         chunk_count=event.chunk_count)
    batch = await store.record_header(header, now=ctx.clock.now())
    if _header(batch) != header:
        raise ConflictingRequest(f"batch {event.batch_id!r} was announced before with other control totals")
    parked = await store.parked_chunks_of(event.batch_id)
    for chunk_index, lines in parked:
        await _take_in_chunk(ctx, batch, chunk_index, lines)
    facts = await _decide_batch(ctx, event.batch_id)
    for chunk_index, lines in parked:
        if not facts:
            await _leave_nothing_if_rejected(ctx, batch, chunk_index, lines)
        await store.unpark_chunk(event.batch_id, chunk_index)
    return facts


@handlers.handles(SubmitPayoutChunk)
async def submit_payout_chunk(event: SubmitPayoutChunk, ctx: HandlerContext[BenefitsDeps]) -> list[Fact]:
    """Write a chunk's payments in bulk, queued until the batch is accepted; a replayed chunk changes nothing.

    A chunk that comes before its batch's header is kept until the header comes. Chunks keyed
    one by one (docs/decisions.md, "Batch protocol") travel on several partitions, so they are
    taken in side by side and may overtake the header."""
    store, people = ctx.deps.store, ctx.deps.people
    lines = [(people.for_number(recipient.my_number), recipient.amount_yen) for recipient in event.recipients]
    batch = await store.batch(event.batch_id)
    parked = batch is None
    if parked:
        await store.park_chunk(event.batch_id, event.chunk_index, lines, now=ctx.clock.now())
        # The header's handler records the header, then reads the parked chunks: whichever of the
        # two reads second sees the other's write, so the chunk is never left behind (it may be
        # taken in twice, which changes nothing).
        batch = await store.batch(event.batch_id)
        if batch is None:
            return []
    await _take_in_chunk(ctx, batch, event.chunk_index, lines)
    facts = await _decide_batch(ctx, event.batch_id)
    if not facts:
        await _leave_nothing_if_rejected(ctx, batch, event.chunk_index, lines)
    if parked:  # the header came meanwhile, and may have read the parked chunks before this one
        await store.unpark_chunk(event.batch_id, event.chunk_index)
    return facts


async def _take_in_chunk(ctx: HandlerContext[BenefitsDeps], batch: dict[str, Any], chunk_index: int,
                         lines: Sequence[tuple[str, int]]) -> None:
    """Write one chunk's payments and queue them, and record its tally (not the batch's decision)."""
    store = ctx.deps.store
    batch_id = batch["_id"]
    if batch["state"] == "rejected" or await store.chunk_recorded(batch_id, chunk_index):
        return
    if batch["state"] != "receiving":
        raise ConflictingRequest(f"batch {batch_id!r} is already {batch['state']}; chunk {chunk_index} is new")
    payments = [
        {"_id": payment_id, "batch_id": batch_id, "chunk_index": chunk_index, "person_ref": person_ref,
         "amount_yen": amount}
        for payment_id, (person_ref, amount) in zip(_payment_ids(batch, lines), lines, strict=True)
    ]
    tally = domain.tally_chunk(chunk_index, list(lines))
    if not tally.duplicates and chunk_index < batch["chunk_count"]:
        existed = await store.add_payments(payments)
        earlier = await store.payments_by_id(existed)
        # Lines this chunk wrote before a crash are ours again; another chunk's are listed twice;
        # another batch's are already being paid.
        other_chunks = {pid for pid, doc in earlier.items()
                        if doc["batch_id"] == batch_id and doc["chunk_index"] != chunk_index}
        other_batches = {pid for pid, doc in earlier.items() if doc["batch_id"] != batch_id}
        theirs = other_chunks | other_batches
        await store.enqueue_chunk(batch, chunk_index, [(payment["person_ref"], payment["amount_yen"])
                                                       for payment in payments if payment["_id"] not in theirs])
        tally = replace(tally, duplicates=len(other_chunks), conflicts=len(other_batches))
    await store.record_chunk(batch_id, tally)


async def _leave_nothing_if_rejected(ctx: HandlerContext[BenefitsDeps], batch: dict[str, Any], chunk_index: int,
                                     lines: Sequence[tuple[str, int]]) -> None:
    """If another chunk's event rejected the batch (and discarded its payments) while this chunk
    was being written, remove what this chunk wrote after that; also on a replay after a crash."""
    store = ctx.deps.store
    current = await store.batch(batch["_id"])
    if current is not None and current["state"] == "rejected":
        await store.discard_chunk(batch["_id"], chunk_index, _payment_ids(batch, lines))


def _payment_ids(batch: dict[str, Any], lines: Sequence[tuple[str, int]]) -> list[str]:
    """The payment ids of a chunk's (person_ref, amount) lines: one per programme, period and person."""
    return [domain.payment_id(batch["programme"], batch["period"], person_ref) for person_ref, _ in lines]


async def _decide_batch(ctx: HandlerContext[BenefitsDeps], batch_id: str) -> list[Fact]:
    """Once every chunk is in, accept or reject the batch whole. Only the deciding event returns the fact."""
    store = ctx.deps.store
    batch = await store.batch(batch_id)
    if batch is None:
        return []
    header = _header(batch)
    if batch["state"] == "receiving":
        decision = domain.decide_batch(header, await store.chunk_tallies(batch_id))
        if decision is None:
            return []
        detail = {"reason": decision.reason.value if decision.reason else None, "message": decision.message,
                  "received_count": decision.received_count, "received_total_yen": decision.received_total_yen}
        await store.decide_batch(batch_id, "accepted" if decision.accepted else "rejected",
                                 decided_by=ctx.envelope.id, detail=detail, now=ctx.clock.now())
        batch = await store.batch(batch_id)
    if batch.get("decided_by") != ctx.envelope.id:
        return []
    if batch["state"] == "rejected":
        await store.discard_batch_payments(batch_id, header.chunk_count)
        detail = batch["decision"]
        return [PayoutBatchRejected(
            batch_id=batch_id, reason=BatchRejectionReason(detail["reason"]), message=detail["message"],
            declared_count=header.recipient_count, declared_total_yen=header.total_yen,
            received_count=detail["received_count"], received_total_yen=detail["received_total_yen"],
        )]
    return [PayoutBatchAccepted(batch_id=batch_id, programme=header.programme, period=header.period,
                                recipient_count=header.recipient_count, total_yen=header.total_yen)]
