"""The insurance use cases: load state from the store, ask the domain, save, return facts.

Event handlers are registered on `handlers`; the operator commands (link resolution) and the
sweeps are plain functions the HTTP API calls, returning the facts for it to publish.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from mynumber_contracts import Fact, ResidentAttributes
from mynumber_contracts.enrollment import (
    CardExpired,
    CardIssued,
    CardReissued,
    CardResumed,
    CardReturned,
    CardRevoked,
    CardSuspended,
    CardValidityChanged,
    ResidentAttributesChanged,
    ResidentDeceased,
    ResidentMovedAbroad,
    ResidentRegistered,
)
from mynumber_contracts.insurance import (
    ApplyForEligibilityCertificate,
    CancelInsuranceUse,
    CardRegisteredForInsurance,
    CertificateWithdrawalReason,
    CheckEligibility,
    ConfigureInsurer,
    ConsentRecorded,
    EligibilityCertificateExpired,
    EligibilityCertificateIssued,
    EligibilityCertificateRenewed,
    EligibilityCertificateWithdrawn,
    EligibilityConfirmed,
    EligibilityDenialReason,
    EligibilityDenied,
    EnrollMember,
    HeldReason,
    InsuranceRequestRejected,
    InsuranceUseCancelled,
    InsurerConfigured,
    LinkDecision,
    MatchedAttribute,
    MedicalDataDenialReason,
    MedicalDataDenied,
    MedicalDataReleased,
    MedicalDataType,
    MedicalRecordStored,
    MemberLinked,
    MemberLinkHeld,
    MemberLinkResolved,
    MemberWithdrawn,
    RecordCheckupResult,
    RecordConsent,
    RecordPrescription,
    RegisterCardForInsurance,
    RejectionReason,
    RequestMedicalData,
    WithdrawMember,
)

from services.kit.audit import AuditTrail
from services.kit.clock import Clock, today
from services.kit.idempotency import EarlierFacts
from services.kit.messaging import HandlerContext, HandlerRegistry
from services.kit.people import PersonReferences

from .domain import (
    Card,
    CardStatus,
    CertificateStatus,
    EligibilityCertificate,
    InsuranceUse,
    IssueCertificate,
    LinkOutcome,
    LinkState,
    MedicalDataPolicy,
    MembershipStatus,
    Person,
    RegisteredResident,
    WithdrawalStep,
    WithdrawCertificate,
    after_card_back,
    answer_eligibility,
    card_usable_for_registration,
    decide_link,
    decide_withdrawal,
    eligibility_records,
    holder_card_refusal,
    kept_through_last_day,
    member_key,
    plan_certificates,
    release_id,
    renewal_due,
    renewed,
    request_id_reused,
    still_needed,
)
from .settings import InsuranceSettings
from .store import InsuranceStore, SweepWork, WithdrawalOutcome

SERVICE_ACTOR = "service/insurance"


class PersonLocks:
    """Serialises one person's use cases within this process (two topics are consumed concurrently)."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._waiting: dict[str, int] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key], self._locks[key]


@dataclass
class InsuranceDeps:
    store: InsuranceStore
    people: PersonReferences
    settings: InsuranceSettings
    clock: Clock  # for the HTTP API and sweeps; event use cases take the clock from their context
    audit: AuditTrail
    locks: PersonLocks = field(default_factory=PersonLocks)

    @property
    def medical_data(self) -> MedicalDataPolicy:
        return MedicalDataPolicy(
            consent_window=timedelta(hours=self.settings.consent_window_hours),
            history_years={
                MedicalDataType.prescriptions: self.settings.prescription_history_years,
                MedicalDataType.checkups: self.settings.checkup_history_years,
            },
        )


handlers = HandlerRegistry()


def _rejected(event: Any, reason: RejectionReason, message: str, person_ref: str | None = None) -> InsuranceRequestRejected:
    request_id = getattr(event, "request_id", None) or event.record_id
    return InsuranceRequestRejected(
        person_ref=person_ref, request_id=request_id, request_type=event.event_type, reason=reason, message=message
    )


async def _audited_refusal(ctx: HandlerContext[InsuranceDeps], rejected: InsuranceRequestRejected, *, action: str, key: str,
                           person_ref: str | None) -> InsuranceRequestRejected:
    """An insurer's request refused on a member record is audited on the person it concerned, as it
    would have been had it been carried out (a link, an unlink); one that names no one is not."""
    if person_ref is not None:
        await ctx.deps.audit.record(
            at=ctx.clock.now(), actor=ctx.envelope.source, action=action, person_ref=person_ref,
            reason=f"refused ({rejected.reason.value}): {rejected.message}",
            details={"member_key": key, "request_id": rejected.request_id}, audit_id=f"{action}:{ctx.envelope.id}:{key}",
        )
    return rejected


def _wrong_source(ctx: HandlerContext[InsuranceDeps], event: Any, agency: str, code: str) -> InsuranceRequestRejected | None:
    """Only an insurer may act on its own members, and only an institution on its own requests."""
    expected = f"{agency}/{code}"
    if ctx.envelope.source != expected:
        return _rejected(event, RejectionReason.source_mismatch, f"the request names {expected} but came from {ctx.envelope.source}")
    return None


# --- certificates and eligibility: settle one person ---------------------------------------------


def _certificate_fact(fact_type: type[Fact], certificate: EligibilityCertificate, **extra: Any) -> Any:
    return fact_type(
        person_ref=certificate.person_ref,
        insurer_number=certificate.insurer_number,
        member_symbol=certificate.member_symbol,
        member_number=certificate.member_number,
        certificate_number=certificate.certificate_number,
        valid_from=certificate.valid_from,
        valid_until=certificate.valid_until,
        **extra,
    )


def _issued(certificate: EligibilityCertificate) -> EligibilityCertificateIssued:
    return _certificate_fact(
        EligibilityCertificateIssued, certificate, reason=certificate.reason, on_application=certificate.on_application
    )


async def settle_person(
    deps: InsuranceDeps, person_ref: str, *, on: date, cause_id: str, retired: Card | None = None
) -> list[Fact]:
    """Bring the person's certificates and eligibility documents in line with their state:
    a certificate for every membership that still counts (withdrawn, through its last day) that
    the card cannot serve, and none otherwise."""
    store, now = deps.store, deps.clock.now()
    facts: list[Fact] = []
    planned_on = -1  # the person's version the plan was made on
    for _pass in range(2):  # a second pass after issuing catches a change made meanwhile elsewhere
        person = await store.person(person_ref)
        if person is None:
            return facts
        if person.version == planned_on:
            # Nothing the plan read has changed since: every use case that changes the person, a
            # membership or a card bumps the person's version before it settles the person itself.
            # (A sweep changes only a certificate, and settles the person after it; the plans of
            # two settles of the same state agree.) A change after this read settles on its own.
            break
        planned_on = person.version
        memberships = await store.memberships(person.member_keys)
        certificates = {m.member_key: await store.certificate(m.member_key) for m in memberships}
        years = await store.validity_years({m.insurer_number for m in memberships}, deps.settings.default_certificate_validity_years)
        actions = plan_certificates(person, memberships, certificates, today=on, validity_years=years, cause_id=cause_id)
        issued_any = False
        for action in actions:
            if isinstance(action, IssueCertificate):
                if await store.issue_certificate(action.certificate, cause_id=cause_id, now=now):
                    facts.append(_issued(action.certificate))
                    issued_any = True
            elif isinstance(action, WithdrawCertificate):
                ended = await store.end_certificate(
                    action.certificate, CertificateStatus.withdrawn, reason=action.reason.value, cause_id=cause_id, now=now
                )
                if ended:
                    facts.append(_certificate_fact(EligibilityCertificateWithdrawn, action.certificate, reason=action.reason))
        if _pass == 0:
            facts = await _replayed(deps, person_ref, memberships, certificates, actions, cause_id) + facts
        # Read from today on, whatever day a sweep runs as of: a membership that ends sooner still counts today.
        written_on = min(on, today(deps.clock))
        for record in eligibility_records(person, memberships, retired=[retired] if retired else [], on=written_on):
            await store.save_eligibility(record)
        if not issued_any:
            break
    return facts


async def _replayed(deps: InsuranceDeps, person_ref: str, memberships: Sequence[Any],
                    certificates: dict[str, EligibilityCertificate | None], actions: Sequence[Any], cause_id: str) -> list[Fact]:
    """On a rerun of the same cause, the certificate changes it already made yield the same facts
    (only the person's own certificates: the plan touches no other)."""
    planned = {action.certificate.member_key for action in actions}
    facts: list[Fact] = []
    for membership in memberships:
        key = membership.member_key
        certificate = certificates.get(key)
        if certificate is None or key in planned:
            continue
        if certificate.person_ref != person_ref:
            # The record's new holder's certificate may have replaced the one this cause withdrew from this person.
            replaced = await deps.store.replaced_certificate(key) if membership.person_ref != person_ref else None
            if replaced is not None and replaced[0].person_ref == person_ref:
                facts += _withdrawn_again(*replaced, cause_id=cause_id)
            continue
        causes = await deps.store.certificate_cause(key) or {}
        if causes.get("issued_by") == cause_id:
            facts.append(_issued(certificate))
        facts += _withdrawn_again(certificate, causes, cause_id=cause_id)
    return facts


def _withdrawn_again(certificate: EligibilityCertificate, causes: dict[str, Any], *, cause_id: str) -> list[Fact]:
    """The withdrawal fact of a certificate `cause_id` withdrew, as it gave it then."""
    if causes.get("ended_by") != cause_id or certificate.status is not CertificateStatus.withdrawn:
        return []
    reason = CertificateWithdrawalReason(causes.get("ended_reason", CertificateWithdrawalReason.card_linked.value))
    return [_certificate_fact(EligibilityCertificateWithdrawn, certificate, reason=reason)]


# --- linking member records to people ---------------------------------------------------------


def _link_facts(document: dict[str, Any]) -> list[Fact]:
    member = {k: document[k] for k in ("insurer_number", "member_symbol", "member_number")}
    if document["link_state"] == LinkState.linked.value:
        return [MemberLinked(**member, person_ref=document["person_ref"], copay_category=document["copay_category"],
                             enrolled_on=date.fromisoformat(document["enrolled_on"]))]
    return [MemberLinkHeld(**member, person_ref=document.get("claimed_person_ref"), reason=HeldReason(document["held_reason"]),
                           mismatched=[MatchedAttribute(m) for m in document.get("mismatched", [])])]


async def _link_outcome(deps: InsuranceDeps, claimed: str | None, attributes: ResidentAttributes) -> LinkOutcome:
    """Whether the insurer's record links to the person its number points to, on the registry as it is."""
    resident: RegisteredResident | None = await deps.store.registered_resident(claimed) if claimed else None
    same_attributes = await deps.store.residents_with(attributes) if resident else []
    return decide_link(claimed_person_ref=claimed, resident=resident, insurer_attributes=attributes,
                       residents_with_same_attributes=same_attributes)


def _decision(outcome: LinkOutcome, claimed: str | None, ctx: HandlerContext[InsuranceDeps]) -> dict[str, Any]:
    """The fields a link decision sets on the member record."""
    return {
        "claimed_person_ref": claimed,
        "link_state": LinkState.linked if outcome.linked else LinkState.held,
        "person_ref": outcome.person_ref,
        "held_reason": outcome.held_reason,
        "mismatched": list(outcome.mismatched),
        "status": MembershipStatus.active,
        "decided_by": ctx.envelope.id,
    }


async def _decide_and_save(deps: InsuranceDeps, key: str, *, claimed: str | None, attributes: ResidentAttributes,
                           fields: dict[str, Any], existing: bool, ctx: HandlerContext[InsuranceDeps],
                           actor: str) -> tuple[dict[str, Any], LinkOutcome]:
    outcome = await _link_outcome(deps, claimed, attributes)
    save = deps.store.save_member if existing else deps.store.create_member
    document = await save(key, {**fields, **_decision(outcome, claimed, ctx)})
    await _after_link_decision(deps, key, document, ctx=ctx, actor=actor)
    return document, outcome


async def _after_link_decision(deps: InsuranceDeps, key: str, document: dict[str, Any], *,
                               ctx: HandlerContext[InsuranceDeps], actor: str) -> None:
    """What follows a saved automatic link decision, from the saved record alone: each write is
    idempotent, so a rerun after a crash repeats them all."""
    linked = document["link_state"] == LinkState.linked.value
    claimed, held_reason = document.get("claimed_person_ref"), document.get("held_reason")
    if linked:
        await deps.store.change_person(document["person_ref"], {}, add_member_key=key)
    elif held_reason == HeldReason.resident_not_found.value and claimed:
        await deps.store.hold_until_resident_known(claimed, key)
    # Every automatic link decision is audited, linked or held (the manual ones in resolve_link).
    await deps.audit.record(
        at=ctx.clock.now(), actor=actor, action="insurance.link" if linked else "insurance.link_held",
        person_ref=document.get("person_ref") or claimed,
        reason="the five attributes match the resident registry" if linked else f"held: {held_reason or 'unknown'}",
        details={"member_key": key, "mismatched": list(document.get("mismatched", []))},
        audit_id=f"insurance.link-decision:{ctx.envelope.id}:{key}",
    )


@handlers.handles(EnrollMember)
async def enroll_member(event: EnrollMember, ctx: HandlerContext[InsuranceDeps]) -> list[Fact]:
    """Link the member record to a person only when the five attributes match the registry."""
    if rejected := _wrong_source(ctx, event, "insurer", event.insurer_number):
        return [rejected]
    deps, key = ctx.deps, member_key(event.insurer_number, event.member_symbol, event.member_number)
    claimed = deps.people.for_number(event.my_number) if event.my_number is not None else None
    on, cause_id = today(ctx.clock), ctx.envelope.id
    async with deps.locks.hold(claimed or key):
        existing = await deps.store.member_document(key)
        if existing and existing.get("request_id") == event.request_id:  # a rerun after a crash
            document, facts = existing, _link_facts(existing)
            if existing.get("decided_by") == ctx.envelope.id:
                # The crash may have come between saving the decision and adding the link to the person,
                # holding the record for the resident, or auditing it.
                await _after_link_decision(deps, key, existing, ctx=ctx, actor=ctx.envelope.source)
        else:
            if existing and existing["status"] == MembershipStatus.active.value and existing["link_state"] == LinkState.linked.value:
                rejected = _rejected(event, RejectionReason.already_enrolled, "this member record is already enrolled and linked")
                # On the person the insurer's number points to (else the record's): the one it meant to link.
                return [await _audited_refusal(ctx, rejected, action="insurance.enrollment.refused", key=key,
                                               person_ref=claimed or existing.get("person_ref"))]
            document, _outcome = await _decide_and_save(deps, key, claimed=claimed, attributes=event.attributes, existing=existing is not None, ctx=ctx, actor=ctx.envelope.source, fields={
                "insurer_number": event.insurer_number, "member_symbol": event.member_symbol, "member_number": event.member_number,
                "attributes": event.attributes, "copay_category": event.copay_category, "enrolled_on": event.enrolled_on,
                "request_id": event.request_id, "resolution": None, "withdrawn_on": None,
            })
            facts = _link_facts(document)
        holder = document["person_ref"] if document["link_state"] == LinkState.linked.value else None
        rerun = existing is not None and existing.get("decided_by") == cause_id
        previous = await _previous_holder(deps, key, holder, cause_id=cause_id, rerun=rerun) if existing else None
        if holder and previous is None:
            facts += await settle_person(deps, holder, on=on, cause_id=cause_id)
    if previous is not None:
        # Enrolled again for someone else, or held: the certificate the previous holder kept through
        # their last day ends first, then the record's new holder gets theirs (one person's lock at a time).
        async with deps.locks.hold(previous):
            facts += await settle_person(deps, previous, on=on, cause_id=cause_id)
        if holder:
            async with deps.locks.hold(holder):
                facts += await settle_person(deps, holder, on=on, cause_id=cause_id)
    return facts


async def _previous_holder(deps: InsuranceDeps, key: str, holder: str | None, *, cause_id: str, rerun: bool) -> str | None:
    """The person whose certificate the member record still has though they no longer hold the
    record (kept through the last day of their withdrawn membership), or ended by this enrollment
    (a rerun gives its facts again, also once the holder's certificate has replaced theirs); None
    when there is none."""
    certificate = await deps.store.certificate(key)
    if certificate is None:
        return None
    if certificate.person_ref == holder:
        # Only a rerun of this enrollment can find one it withdrew kept as replaced (the holder's was issued after it).
        replaced = await deps.store.replaced_certificate(key) if rerun else None
        if replaced is None or replaced[1].get("ended_by") != cause_id or replaced[0].person_ref == holder:
            return None
        return replaced[0].person_ref
    if certificate.status is not CertificateStatus.active:
        causes = await deps.store.certificate_cause(key) or {}
        if causes.get("ended_by") != cause_id:
            return None
    return certificate.person_ref


async def _link_pending_members(deps: InsuranceDeps, person_ref: str, ctx: HandlerContext[InsuranceDeps]) -> list[Fact]:
    """Records held only because this resident was not known yet are decided now."""
    facts: list[Fact] = []
    linked_any = False
    pending = await deps.store.pending_for(person_ref)
    for key in pending:
        document = await deps.store.member_document(key)
        if document is not None and document.get("decided_by") == ctx.envelope.id:  # a rerun after a crash
            await _after_link_decision(deps, key, document, ctx=ctx, actor=SERVICE_ACTOR)
            facts += _link_facts(document)
            linked_any = linked_any or document["link_state"] == LinkState.linked.value
        elif (
            document is not None
            and document["link_state"] == LinkState.held.value
            and document.get("held_reason") == HeldReason.resident_not_found.value
            and document.get("claimed_person_ref") == person_ref
            and document["status"] == MembershipStatus.active.value
        ):
            outcome = await _link_outcome(deps, person_ref, ResidentAttributes.model_validate(document["attributes"]))
            # Only while it is still held as read: the insurer may withdraw it, or an operator resolve
            # it, meanwhile (another partition, or another instance), and neither is undone here.
            decided = await deps.store.save_member_if(key, _decision(outcome, person_ref, ctx), still={
                "status": MembershipStatus.active, "link_state": LinkState.held, "held_reason": HeldReason.resident_not_found})
            if decided is None:
                continue
            await _after_link_decision(deps, key, decided, ctx=ctx, actor="service/insurance")
            facts += _link_facts(decided)
            linked_any = linked_any or outcome.linked
    if linked_any:
        facts += await settle_person(deps, person_ref, on=today(ctx.clock), cause_id=ctx.envelope.id)
    # Cleared last, in one write: until then a rerun after a crash finds every record it decided.
    await deps.store.clear_pending(person_ref, pending)
    return facts


WITHDRAWAL_REFUSED = "insurance.withdrawal.refused"  # audited like the unlink it would have been


@handlers.handles(WithdrawMember)
async def withdraw_member(event: WithdrawMember, ctx: HandlerContext[InsuranceDeps]) -> list[Fact] | EarlierFacts:
    """Withdraw the member with the last day given; while an announced last day has not passed,
    another withdrawal moves it. A request made before gives the facts it gave, with their ids."""
    if rejected := _wrong_source(ctx, event, "insurer", event.insurer_number):
        return [rejected]
    deps, key = ctx.deps, member_key(event.insurer_number, event.member_symbol, event.member_number)
    if (outcome := await deps.store.withdrawal_outcome(key, event.request_id)) is not None:
        return await _withdrawal_again(ctx, event, key, outcome)
    while True:
        existing = await deps.store.member_document(key)
        if existing is None:
            return [_rejected(event, RejectionReason.unknown_member, "no such member record")]
        async with deps.locks.hold(existing.get("person_ref") or key):
            facts = await _withdraw(ctx, event, key, existing)
        if facts is not None:
            return facts
        # The record changed after it was read (an operator linked or rejected it, the insurer enrolled
        # it again or moved its last day, under another lock or in another instance): decided again as it is now.


async def _withdrawal_again(ctx: HandlerContext[InsuranceDeps], event: WithdrawMember, key: str,
                            outcome: WithdrawalOutcome) -> list[Fact] | EarlierFacts:
    if outcome.withdrawn_on != event.withdrawn_on:
        person_ref = next((f.person_ref for f in outcome.facts if isinstance(f, MemberWithdrawn)), None)
        rejected = _rejected(event, RejectionReason.member_withdrawn, request_id_reused(outcome.withdrawn_on), person_ref)
        return [await _audited_refusal(ctx, rejected, action=WITHDRAWAL_REFUSED, key=key, person_ref=person_ref)]
    return EarlierFacts(outcome.event_id, outcome.facts)


async def _withdraw(ctx: HandlerContext[InsuranceDeps], event: WithdrawMember, key: str,
                    existing: dict[str, Any]) -> list[Fact] | EarlierFacts | None:
    """The withdrawal (or the move of its last day) on the record as read, under its person's lock;
    None when the record has changed since it was read (nothing written)."""
    deps, person_ref, on = ctx.deps, existing.get("person_ref"), today(ctx.clock)
    decision = decide_withdrawal(
        status=MembershipStatus(existing["status"]), first_day=date.fromisoformat(existing["enrolled_on"]),
        last_day=_day(existing.get("withdrawn_on")),
        withdrawn_by=existing.get("withdrawn_by"), request_id=event.request_id, requested_last_day=event.withdrawn_on, today=on,
        # `withdrawn_by` alone answers for records from before `withdrawals` was kept.
        made_before=event.request_id in existing.get("withdrawals", ()) or existing.get("withdrawn_by") == event.request_id)
    if decision.step is WithdrawalStep.nothing:
        return []  # its facts went out when it was made
    if decision.step is WithdrawalStep.refuse:
        rejected = _rejected(event, decision.refusal_reason or RejectionReason.member_withdrawn,
                             decision.refusal or "the member record is withdrawn", person_ref)
        return [await _audited_refusal(ctx, rejected, action=WITHDRAWAL_REFUSED, key=key, person_ref=person_ref)]
    moving = decision.step is WithdrawalStep.move
    if existing["status"] == MembershipStatus.withdrawn.value and not moving:
        previous = _day(existing.get("previous_withdrawn_on"))  # this request's own, run again: as it saved it
    else:
        previous = decision.previous_last_day
    read = {name: existing[name] for name in ("status", "link_state", "person_ref", "withdrawn_on", "withdrawn_by")
            if existing.get(name) is not None}
    saved = await deps.store.save_member_if(key, {
        "status": MembershipStatus.withdrawn, "withdrawn_on": event.withdrawn_on, "withdrawn_by": event.request_id,
        "previous_withdrawn_on": previous}, still=read, withdrawal=event.request_id)
    if saved is None:
        return None
    settled: list[Fact] = []
    kept: tuple[str, date] | None = None
    if person_ref:
        reason = "the insurer withdrew the member" if previous is None else \
            f"the insurer moved the member's last day from {previous.isoformat()} to {event.withdrawn_on.isoformat()}"
        await deps.audit.record(at=ctx.clock.now(), actor=ctx.envelope.source, action="insurance.unlink",
                                person_ref=person_ref, reason=reason,
                                details={"member_key": key}, audit_id=f"insurance.unlink:{ctx.envelope.id}:{key}")
        await deps.store.change_person(person_ref, {})  # a new version: its eligibility documents are rewritten
        settled = await settle_person(deps, person_ref, on=on, cause_id=ctx.envelope.id)
        kept = await _keep_certificate(deps, key, event.request_id, on=on)
    facts: list[Fact] = [
        MemberWithdrawn(insurer_number=event.insurer_number, member_symbol=event.member_symbol,
                        member_number=event.member_number, person_ref=person_ref, withdrawn_on=event.withdrawn_on,
                        certificate_number=kept[0] if kept else None, certificate_valid_until=kept[1] if kept else None,
                        previous_withdrawn_on=previous),
        *settled,
    ]
    # Recorded last: until then a rerun after a crash finishes the writes above, each idempotent.
    outcome = await deps.store.record_withdrawal_outcome(key, event.request_id, event_id=ctx.envelope.id,
                                                         withdrawn_on=event.withdrawn_on, facts=facts, at=ctx.clock.now())
    return EarlierFacts(outcome.event_id, outcome.facts)


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


async def _keep_certificate(deps: InsuranceDeps, key: str, withdrawal: str, *, on: date) -> tuple[str, date] | None:
    """A last day of `on` or later: the member's certificate stays through it (settling the person
    left it active), cut to end on it. The number and last day of validity the withdrawal kept, as
    the first run kept them (a run again after the last day finds the certificate lapsed or expired)."""
    membership, certificate = await deps.store.membership(key), await deps.store.certificate(key)
    kept = kept_through_last_day(certificate, membership, on) if membership else None
    if kept is not None and certificate is not None:
        await deps.store.keep_certificate(certificate, kept, withdrawal=withdrawal, now=deps.clock.now())
    return await deps.store.certificate_kept_by(key, withdrawal)


@handlers.handles(ConfigureInsurer)
async def configure_insurer(event: ConfigureInsurer, ctx: HandlerContext[InsuranceDeps]) -> list[Fact]:
    if rejected := _wrong_source(ctx, event, "insurer", event.insurer_number):
        return [rejected]
    await ctx.deps.store.configure_insurer(event.insurer_number, event.certificate_validity_years, ctx.clock.now(),
                                           request_id=event.request_id)
    return [InsurerConfigured(insurer_number=event.insurer_number, certificate_validity_years=event.certificate_validity_years)]


# --- the operator's decision on a held record (called by the HTTP API) -------------------------


class UnknownMember(LookupError):
    pass


class NotHeld(ValueError):
    pass


class UnknownPerson(ValueError):
    pass


@dataclass(frozen=True)
class LinkResolution:
    resolution_id: str
    operator: str
    decision: LinkDecision
    reason: str
    person_ref: str | None = None


def _resolved_fact(document: dict[str, Any]) -> MemberLinkResolved:
    resolution = document["resolution"]
    return MemberLinkResolved(
        insurer_number=document["insurer_number"], member_symbol=document["member_symbol"],
        member_number=document["member_number"], person_ref=document.get("person_ref") or document.get("claimed_person_ref"),
        decision=LinkDecision(resolution["decision"]), resolution_id=resolution["resolution_id"],
        operator=resolution["operator"], reason=resolution["reason"],
    )


async def resolve_link(deps: InsuranceDeps, key: str, command: LinkResolution, *, cause_id: str) -> tuple[dict[str, Any], list[Fact]]:
    """Link a held record to the person the operator confirmed, or reject it; audited either way."""
    store = deps.store
    document = await store.member_document(key)
    if document is None:
        raise UnknownMember(key)
    person_ref = document.get("person_ref") or command.person_ref or document.get("claimed_person_ref")
    async with deps.locks.hold(person_ref or key):
        document = await store.member_document(key) or document
        previous = document.get("resolution") or {}
        if previous.get("resolution_id") == command.resolution_id:  # the same command again: same answer
            return document, await _resolved_again(deps, key, document, cause_id=cause_id)
        if document["link_state"] != LinkState.held.value or document["status"] != MembershipStatus.active.value:
            raise NotHeld(f"the member record is {document['link_state']} ({document['status']}), not held for review")
        linking = command.decision is LinkDecision.link
        if linking:
            resident = await store.registered_resident(command.person_ref) if command.person_ref else None
            if resident is None or resident.deceased:
                raise UnknownPerson("linking needs the person reference of a living registered resident")
        now = deps.clock.now()
        # Only while it is still held as read: the insurer's withdrawal comes on its own topic and
        # may run meanwhile (under the record's lock, not the person's), and is not undone here.
        saved = await store.save_member_if(key, {
            "link_state": LinkState.linked if linking else LinkState.rejected,
            "person_ref": command.person_ref if linking else None,
            "resolution": {"resolution_id": command.resolution_id, "operator": command.operator,
                           "decision": command.decision.value, "reason": command.reason, "at": now},
        }, still={"link_state": LinkState.held, "status": MembershipStatus.active})
        if saved is None:
            changed = await store.member_document(key) or document
            if (changed.get("resolution") or {}).get("resolution_id") == command.resolution_id:  # the same command, side by side
                return changed, await _resolved_again(deps, key, changed, cause_id=cause_id)
            raise NotHeld(f"the member record is {changed['link_state']} ({changed['status']}), not held for review")
        document = saved
        await _after_resolution(deps, key, document)
        facts = [_resolved_fact(document)]
        if linking and command.person_ref:
            facts += await settle_person(deps, command.person_ref, on=today(deps.clock), cause_id=cause_id)
    return document, facts


async def _resolved_again(deps: InsuranceDeps, key: str, document: dict[str, Any], *, cause_id: str) -> list[Fact]:
    """The answer to a resolution made before: the first attempt may have failed before what follows it."""
    await _after_resolution(deps, key, document)
    facts: list[Fact] = [_resolved_fact(document)]
    if document["link_state"] == LinkState.linked.value:
        facts += await settle_person(deps, document["person_ref"], on=today(deps.clock), cause_id=cause_id)
    return facts


async def _after_resolution(deps: InsuranceDeps, key: str, document: dict[str, Any]) -> None:
    """What follows a saved resolution, from the saved record alone (idempotent, so a retry repeats it)."""
    resolution = document["resolution"]
    linked = document["link_state"] == LinkState.linked.value
    await deps.audit.record(
        at=resolution["at"], actor=f"operator/{resolution['operator']}", action=f"insurance.link.{resolution['decision']}",
        person_ref=document["person_ref"] if linked else document.get("claimed_person_ref"), reason=resolution["reason"],
        details={"member_key": key, "held_reason": document.get("held_reason"), "resolution_id": resolution["resolution_id"]},
        audit_id=f"insurance.link-resolution:{resolution['resolution_id']}",
    )
    if linked and document.get("person_ref"):
        await deps.store.change_person(document["person_ref"], {}, add_member_key=key)


# --- the registry's facts: the local read model -----------------------------------------------


@handlers.handles(ResidentRegistered)
async def resident_registered(event: ResidentRegistered, ctx: HandlerContext[InsuranceDeps]) -> list[Fact]:
    async with ctx.deps.locks.hold(event.person_ref):
        await ctx.deps.store.record_attributes(event.person_ref, event.attributes, registry_fact=ctx.envelope.id)
        return await _link_pending_members(ctx.deps, event.person_ref, ctx)


@handlers.handles(ResidentAttributesChanged)
async def resident_attributes_changed(event: ResidentAttributesChanged, ctx: HandlerContext[InsuranceDeps]) -> list[Fact]:
    async with ctx.deps.locks.hold(event.person_ref):
        await ctx.deps.store.record_attributes(event.person_ref, event.attributes, registry_fact=ctx.envelope.id)
    return []


@handlers.handles(ResidentMovedAbroad)
async def resident_moved_abroad(event: ResidentMovedAbroad, ctx: HandlerContext[InsuranceDeps]) -> list[Fact]:
    async with ctx.deps.locks.hold(event.person_ref):
        await ctx.deps.store.record_attributes(event.person_ref, event.attributes, registry_fact=ctx.envelope.id)
    return []


@handlers.handles(ResidentDeceased)
async def resident_deceased(event: ResidentDeceased, ctx: HandlerContext[InsuranceDeps]) -> list[Fact]:
    async with ctx.deps.locks.hold(event.person_ref):
        await ctx.deps.store.change_person(event.person_ref, {"deceased": True})
        return await settle_person(ctx.deps, event.person_ref, on=today(ctx.clock), cause_id=ctx.envelope.id)


async def _new_card(ctx: HandlerContext[InsuranceDeps], event: CardIssued | CardReissued, *, keeps_insurance_use: bool) -> list[Fact]:
    deps = ctx.deps
    async with deps.locks.hold(event.person_ref):
        person = await deps.store.person(event.person_ref) or Person(person_ref=event.person_ref)
        # Already known: a rerun, perhaps after later card facts (then the card it brought is no longer current).
        if person.card is not None and (person.card.certificate_id == event.certificate_id or ctx.envelope.id in person.registry_facts):
            # The crash may have come before the replaced card's eligibility document was rewritten.
            retired_cards = await deps.store.retired_cards(event.person_ref)
            return await settle_person(deps, event.person_ref, on=today(ctx.clock), cause_id=ctx.envelope.id,
                                       retired=retired_cards[-1] if retired_cards else None)
        card = Card(card_number=event.card_number, certificate_id=event.certificate_id, status=CardStatus.active,
                    expires_on=event.expires_on, certificate_expires_on=event.certificate_expires_on)
        retired = dataclasses.replace(person.card, status=CardStatus.replaced) if person.card else None
        use = person.insurance_use if keeps_insurance_use else InsuranceUse.unregistered
        await deps.store.change_person(event.person_ref, {
            "card": card, "insurance_use": use, "certificate_application": after_card_back(person.certificate_application),
        }, retire_card=retired, registry_fact=ctx.envelope.id)
        return await settle_person(deps, event.person_ref, on=today(ctx.clock), cause_id=ctx.envelope.id, retired=retired)


@handlers.handles(CardIssued)
async def card_issued(event: CardIssued, ctx: HandlerContext[InsuranceDeps]) -> list[Fact]:
    """A new card must be registered for insurance use before it serves as the insurance card."""
    return await _new_card(ctx, event, keeps_insurance_use=False)


@handlers.handles(CardReissued)
async def card_reissued(event: CardReissued, ctx: HandlerContext[InsuranceDeps]) -> list[Fact]:
    """A reissued card keeps the holder's registration for insurance use; the old certificate id stops working."""
    return await _new_card(ctx, event, keeps_insurance_use=True)


async def _card_status(ctx: HandlerContext[InsuranceDeps], person_ref: str, card_number: str, status: CardStatus) -> list[Fact]:
    def changes(person: Person, card: Card) -> dict[str, Any]:
        changed: dict[str, Any] = {"card": dataclasses.replace(card, status=status)}
        if status is CardStatus.active:
            changed["certificate_application"] = after_card_back(person.certificate_application)
        return changed

    return await _change_current_card(ctx, person_ref, card_number, changes)


async def _change_current_card(ctx: HandlerContext[InsuranceDeps], person_ref: str, card_number: str,
                               changes: Callable[[Person, Card], dict[str, Any]]) -> list[Fact]:
    """Apply an enrollment fact about the person's current card once, then settle the person."""
    deps = ctx.deps
    async with deps.locks.hold(person_ref):
        person = await deps.store.person(person_ref)
        if person is None or person.card is None or person.card.card_number != card_number:
            return []  # not the card we know as current: an older card's news changes nothing
        if ctx.envelope.id in person.registry_facts:  # a rerun, perhaps after later card facts: they stand
            return await settle_person(deps, person_ref, on=today(ctx.clock), cause_id=ctx.envelope.id)
        await deps.store.change_person(person_ref, changes(person, person.card), registry_fact=ctx.envelope.id)
        return await settle_person(deps, person_ref, on=today(ctx.clock), cause_id=ctx.envelope.id)


@handlers.handles(CardSuspended)
async def card_suspended(event: CardSuspended, ctx: HandlerContext[InsuranceDeps]) -> list[Fact]:
    return await _card_status(ctx, event.person_ref, event.card_number, CardStatus.suspended)


@handlers.handles(CardResumed)
async def card_resumed(event: CardResumed, ctx: HandlerContext[InsuranceDeps]) -> list[Fact]:
    return await _card_status(ctx, event.person_ref, event.card_number, CardStatus.active)


@handlers.handles(CardReturned)
async def card_returned(event: CardReturned, ctx: HandlerContext[InsuranceDeps]) -> list[Fact]:
    return await _card_status(ctx, event.person_ref, event.card_number, CardStatus.returned)


@handlers.handles(CardRevoked)
async def card_revoked(event: CardRevoked, ctx: HandlerContext[InsuranceDeps]) -> list[Fact]:
    return await _card_status(ctx, event.person_ref, event.card_number, CardStatus.revoked)


@handlers.handles(CardExpired)
async def card_expired(event: CardExpired, ctx: HandlerContext[InsuranceDeps]) -> list[Fact]:
    return await _card_status(ctx, event.person_ref, event.card_number, CardStatus.expired)


@handlers.handles(CardValidityChanged)
async def card_validity_changed(event: CardValidityChanged, ctx: HandlerContext[InsuranceDeps]) -> list[Fact]:
    """The holder's period of stay changed: the current card takes the new expiry and certificate
    expiry (a longer stay keeps the card serving as the insurance card past the old day)."""
    def changes(person: Person, card: Card) -> dict[str, Any]:
        return {"card": dataclasses.replace(card, expires_on=event.expires_on,
                                            certificate_expires_on=event.certificate_expires_on)}

    return await _change_current_card(ctx, event.person_ref, event.card_number, changes)


# --- the holder: registering the card for insurance use -------------------------------------------


async def _holder_of(ctx: HandlerContext[InsuranceDeps], event: RegisterCardForInsurance | CancelInsuranceUse) -> Person | InsuranceRequestRejected:
    record = await ctx.deps.store.eligibility_record(event.certificate_id)
    if record is None:
        return _rejected(event, RejectionReason.unknown_card, "no card with this certificate id")
    person = await ctx.deps.store.person(record.person_ref)
    if person is None or person.card is None or person.card.certificate_id != event.certificate_id:
        return _rejected(event, RejectionReason.card_not_usable, "this card has been replaced", record.person_ref)
    return person


@handlers.handles(RegisterCardForInsurance)
async def register_card_for_insurance(event: RegisterCardForInsurance, ctx: HandlerContext[InsuranceDeps]) -> list[Fact]:
    """The one-time link of the card to insurance use; any eligibility certificate is withdrawn."""
    deps = ctx.deps
    person = await _holder_of(ctx, event)
    if isinstance(person, InsuranceRequestRejected):
        return [person]
    async with deps.locks.hold(person.person_ref):
        person = await deps.store.person(person.person_ref) or person
        # A rerun, perhaps after a later cancellation: that one stands.
        rerun = await deps.store.insurance_use_requested(person.person_ref, event.request_id)
        if not rerun:
            if not card_usable_for_registration(person.card, today(ctx.clock)):
                return [_rejected(event, RejectionReason.card_not_usable, "the card is not usable (suspended, ended or its certificate expired)", person.person_ref)]
            if person.insurance_use is InsuranceUse.registered and person.certificate_application is None:
                return [_rejected(event, RejectionReason.already_registered, "the card is already registered for insurance use", person.person_ref)]
            await deps.store.change_person(person.person_ref, {
                "insurance_use": InsuranceUse.registered, "certificate_application": None,
            }, insurance_use_request=event.request_id)
        facts: list[Fact] = [CardRegisteredForInsurance(person_ref=person.person_ref, request_id=event.request_id)]
        return facts + await settle_person(deps, person.person_ref, on=today(ctx.clock), cause_id=ctx.envelope.id)


@handlers.handles(CancelInsuranceUse)
async def cancel_insurance_use(event: CancelInsuranceUse, ctx: HandlerContext[InsuranceDeps]) -> list[Fact]:
    """The holder stops using the card as insurance card; a certificate is issued without an application."""
    deps = ctx.deps
    person = await _holder_of(ctx, event)
    if isinstance(person, InsuranceRequestRejected):
        return [person]
    async with deps.locks.hold(person.person_ref):
        person = await deps.store.person(person.person_ref) or person
        rerun = await deps.store.insurance_use_requested(person.person_ref, event.request_id)  # perhaps after a later one
        if not rerun:
            if person.insurance_use is not InsuranceUse.registered:
                return [_rejected(event, RejectionReason.not_registered, "the card is not registered for insurance use", person.person_ref)]
            await deps.store.change_person(person.person_ref, {"insurance_use": InsuranceUse.cancelled},
                                           insurance_use_request=event.request_id)
        facts: list[Fact] = [InsuranceUseCancelled(person_ref=person.person_ref, request_id=event.request_id)]
        return facts + await settle_person(deps, person.person_ref, on=today(ctx.clock), cause_id=ctx.envelope.id)


@handlers.handles(ApplyForEligibilityCertificate)
async def apply_for_eligibility_certificate(event: ApplyForEligibilityCertificate, ctx: HandlerContext[InsuranceDeps]) -> list[Fact]:
    """On application (card lost, being reissued, or the holder needs help): the person switches to a certificate."""
    if rejected := _wrong_source(ctx, event, "insurer", event.insurer_number):
        return [rejected]
    deps, key = ctx.deps, member_key(event.insurer_number, event.member_symbol, event.member_number)
    membership = await deps.store.membership(key)
    if membership is None:
        return [_rejected(event, RejectionReason.unknown_member, "no such member record")]
    if membership.link_state is not LinkState.linked or membership.person_ref is None:
        return [_rejected(event, RejectionReason.member_not_linked, "the member record is not linked to a person")]
    if not membership.can_still_count(today(ctx.clock)):  # withdrawn, its last day passed: a notice period still counts
        return [_rejected(event, RejectionReason.member_withdrawn, "the member record is withdrawn", membership.person_ref)]
    async with deps.locks.hold(membership.person_ref):
        current = await deps.store.certificate(key)
        causes = await deps.store.certificate_cause(key) or {}
        rerun = current is not None and causes.get("issued_by") == ctx.envelope.id
        if current is not None and current.status is CertificateStatus.active and not rerun:
            return [_rejected(event, RejectionReason.certificate_already_held, "the member already holds a valid certificate", membership.person_ref)]
        # Made before (a rerun after a crash, or late, after the card came back and ended the
        # application): not applied again, so a late run never switches the person back to a certificate.
        if not await deps.store.certificate_application_made(membership.person_ref, event.request_id):
            await deps.store.change_person(membership.person_ref, {"certificate_application": event.reason},
                                           certificate_application=event.request_id)
        return await settle_person(deps, membership.person_ref, on=today(ctx.clock), cause_id=ctx.envelope.id)


# --- medical institutions: eligibility, consent, medical data ------------------------------------


@handlers.handles(CheckEligibility)
async def check_eligibility(event: CheckEligibility, ctx: HandlerContext[InsuranceDeps]) -> list[Fact]:
    """The reply event to an online eligibility check; the same answer as `GET /eligibility/{certificate_id}`."""
    if rejected := _wrong_source(ctx, event, "medical-institution", event.institution_code):
        return [rejected]
    record = await ctx.deps.store.eligibility_record(event.certificate_id)
    answer = answer_eligibility(record, today=today(ctx.clock), no_card_surcharge=ctx.deps.settings.no_card_surcharge)
    if answer.eligible and answer.membership is not None and answer.person_ref is not None:
        m = answer.membership
        return [EligibilityConfirmed(
            request_id=event.request_id, institution_code=event.institution_code, person_ref=answer.person_ref,
            insurer_number=m.insurer_number, member_symbol=m.member_symbol, member_number=m.member_number,
            copay_category=m.copay_category, no_card_surcharge=answer.no_card_surcharge,
        )]
    assert answer.reason is not None
    return [EligibilityDenied(request_id=event.request_id, institution_code=event.institution_code,
                              person_ref=answer.person_ref, reason=answer.reason, no_card_surcharge=answer.no_card_surcharge)]


_CARD_REFUSALS = {
    EligibilityDenialReason.resident_deceased: "the card's holder is deceased",
    EligibilityDenialReason.card_replaced: "this card has been replaced by a reissued card",
    EligibilityDenialReason.card_not_usable: "the card is not usable (reported lost, returned, revoked or expired)",
    EligibilityDenialReason.card_certificate_expired: "the card's electronic certificate has expired",
}


@handlers.handles(RecordConsent)
async def record_consent(event: RecordConsent, ctx: HandlerContext[InsuranceDeps]) -> list[Fact]:
    """Consent counts from when this service recorded it, so an institution cannot backdate it; it is
    given only with the living holder's own usable card."""
    if rejected := _wrong_source(ctx, event, "medical-institution", event.institution_code):
        return [rejected]
    deps = ctx.deps
    record = await deps.store.eligibility_record(event.certificate_id)
    if record is None:
        return [_rejected(event, RejectionReason.unknown_card, "no card with this certificate id")]
    person = await deps.store.person(record.person_ref)
    refusal = holder_card_refusal(person, event.certificate_id, today(ctx.clock))
    if refusal is not None:
        # A rerun after a crash finishes a consent recorded while the card was usable.
        recorded = [await deps.store.consent_recorded_by(event.institution_code, record.person_ref, data_type, event.request_id)
                    for data_type in dict.fromkeys(event.data_types)]
        if not any(recorded):
            if refusal is EligibilityDenialReason.unknown_card:
                return [_rejected(event, RejectionReason.unknown_card, "no card with this certificate id")]
            return [_rejected(event, RejectionReason.card_not_usable, _CARD_REFUSALS[refusal], record.person_ref)]
    given_at = ctx.clock.now()
    for data_type in dict.fromkeys(event.data_types):
        given_at = await deps.store.record_consent(event.institution_code, record.person_ref, data_type,
                                                   request_id=event.request_id, given_at=given_at)
    return [ConsentRecorded(person_ref=record.person_ref, request_id=event.request_id, institution_code=event.institution_code,
                            data_types=list(dict.fromkeys(event.data_types)), given_at=given_at,
                            valid_until=given_at + deps.medical_data.consent_window)]


@handlers.handles(RequestMedicalData)
async def request_medical_data(event: RequestMedicalData, ctx: HandlerContext[InsuranceDeps]) -> list[Fact]:
    """Release each data type only with this institution's consent for it, given less than 24 hours ago.
    Every decision is audited; the records go only to the institution (over HTTP), never into a fact."""
    if rejected := _wrong_source(ctx, event, "medical-institution", event.institution_code):
        return [rejected]
    store, now, policy = ctx.deps.store, ctx.clock.now(), ctx.deps.medical_data
    record = await store.eligibility_record(event.certificate_id)
    person_ref = record.person_ref if record else None
    person = await store.person(person_ref) if person_ref else None
    refusal = holder_card_refusal(person, event.certificate_id, today(ctx.clock)) if person_ref else None
    facts: list[Fact] = []
    for data_type in dict.fromkeys(event.data_types):
        release = release_id(event.institution_code, event.request_id, data_type)
        decided_at, denial = now, MedicalDataDenialReason.unknown_card if person_ref is None else None
        if person_ref is not None:
            if refusal is EligibilityDenialReason.unknown_card:
                denial = MedicalDataDenialReason.unknown_card
            elif refusal is not None:  # only the living holder's own usable card releases data, consent or not
                denial = MedicalDataDenialReason.card_not_usable
            else:
                denial = policy.consent_denial(await store.consent_given_at(event.institution_code, person_ref, data_type), now)
            decision: dict[str, Any] = {"person_ref": person_ref, "denial": denial, "decided_at": now}
            if refusal is not None:
                decision["card_refusal"] = refusal
            if denial is None:
                last_day = today(ctx.clock)
                member_keys = [m.member_key for m in await store.memberships(person.member_keys if person else ())
                               if m.link_state is LinkState.linked and m.person_ref == person_ref]
                first_day = policy.covers_from(data_type, last_day)
                decision.update(member_keys=member_keys, covers_from=first_day, covers_until=last_day,
                                record_count=await store.count_medical_records(member_keys, data_type, first_day, last_day))
            # Decided once: a rerun (maybe after the consent window, or with a newer consent) keeps the first decision.
            decision = await store.medical_data_decision(release, decision)
            decided_at = decision["decided_at"]
            denial = MedicalDataDenialReason(decision["denial"]) if decision.get("denial") else None
        audit: dict[str, Any] = {
            "at": decided_at, "actor": f"medical-institution/{event.institution_code}", "person_ref": person_ref,
            "action": "insurance.medical_data.released" if denial is None else "insurance.medical_data.denied",
            "reason": "consent given within the consent window" if denial is None else denial.value,
            "audit_id": f"insurance.medical-data:{ctx.envelope.id}:{data_type}",
        }
        details = {"request_id": event.request_id, "data_type": data_type.value}
        if person_ref is not None and decision.get("card_refusal"):
            details["card"] = decision["card_refusal"]
        if denial is not None:
            await ctx.deps.audit.record(**audit, details=details)
            facts.append(MedicalDataDenied(person_ref=person_ref, request_id=event.request_id,
                                           institution_code=event.institution_code, data_type=data_type, reason=denial))
            continue
        first_day, last_day = date.fromisoformat(decision["covers_from"]), date.fromisoformat(decision["covers_until"])
        count = decision["record_count"]
        await store.save_release(release, {
            "institution_code": event.institution_code, "person_ref": person_ref, "data_type": data_type.value,
            "member_keys": decision["member_keys"], "covers_from": first_day, "covers_until": last_day,
            "request_id": event.request_id, "released_at": decided_at,
        })
        await ctx.deps.audit.record(**audit, details={**details, "release_id": release, "record_count": count})
        facts.append(MedicalDataReleased(person_ref=person_ref, request_id=event.request_id, institution_code=event.institution_code,
                                         data_type=data_type, release_id=release, record_count=count,
                                         covers_from=first_day, covers_until=last_day))
    return facts


async def _store_medical_record(ctx: HandlerContext[InsuranceDeps], event: RecordPrescription | RecordCheckupResult,
                                data_type: MedicalDataType, recorded_for: date, content: dict[str, Any]) -> list[Fact]:
    if rejected := _wrong_source(ctx, event, "insurer", event.insurer_number):
        return [rejected]
    key = member_key(event.insurer_number, event.member_symbol, event.member_number)
    membership = await ctx.deps.store.membership(key)
    if membership is None:
        return [_rejected(event, RejectionReason.unknown_member, "no such member record")]
    stored = await ctx.deps.store.add_medical_record(f"{data_type}/{event.insurer_number}/{event.record_id}", {
        "member_key": key, "data_type": data_type.value, "recorded_for": recorded_for.isoformat(), "content": content,
    })
    person_ref = membership.person_ref if membership.link_state is LinkState.linked else None
    if not stored:
        return [_rejected(event, RejectionReason.duplicate_record, "this record id was already used for a different record", person_ref)]
    return [MedicalRecordStored(insurer_number=event.insurer_number, member_symbol=event.member_symbol,
                                member_number=event.member_number, person_ref=person_ref, data_type=data_type,
                                record_id=event.record_id, recorded_for=recorded_for)]


@handlers.handles(RecordPrescription)
async def record_prescription(event: RecordPrescription, ctx: HandlerContext[InsuranceDeps]) -> list[Fact]:
    content = {"medicines": [m.model_dump(mode="json") for m in event.medicines]}
    return await _store_medical_record(ctx, event, MedicalDataType.prescriptions, event.dispensed_on, content)


@handlers.handles(RecordCheckupResult)
async def record_checkup_result(event: RecordCheckupResult, ctx: HandlerContext[InsuranceDeps]) -> list[Fact]:
    content = {"items": [i.model_dump(mode="json") for i in event.items]}
    return await _store_medical_record(ctx, event, MedicalDataType.checkups, event.examined_on, content)


# --- sweeps (called by the HTTP API with an `as_of` date) ------------------------------------------
#
# A sweep publishes each certificate's or person's facts as soon as that work is done, under a cause
# id derived from the certificate (or the person and card), so a rerun gives the same event ids. The
# renewal and expiry of a certificate are noted in `sweep_work` before their first write and the note
# is removed once the facts are published: a rerun after a failure at any point finishes the noted
# work first (those certificates are no longer found by their validity), then sweeps as usual.

Publish = Callable[[str, list[Fact]], Awaitable[None]]  # (cause id, facts)

RENEWAL, EXPIRY = "certificate-renewal", "certificate-expiry"


@dataclass
class SweepOutcome:
    examined: int = 0
    skipped: int = 0
    facts_published: int = 0


async def _publish(deps: InsuranceDeps, publish: Publish, outcome: SweepOutcome, cause: str, facts: list[Fact],
                   *, work: bool = True) -> None:
    if facts:
        await publish(cause, facts)
        outcome.facts_published += len(facts)
    if work:
        await deps.store.finish_sweep_work(cause)


async def _renew(deps: InsuranceDeps, work: SweepWork) -> list[Fact]:
    certificate = work.certificate
    years = (await deps.store.validity_years({certificate.insurer_number}, deps.settings.default_certificate_validity_years))[certificate.insurer_number]
    extended = renewed(certificate, years)
    current = await deps.store.extend_certificate(certificate, extended.valid_from, extended.valid_until,
                                                  cause_id=work.cause_id, now=deps.clock.now())
    if current is None:  # changed meanwhile by something else
        return []
    return [_certificate_fact(EligibilityCertificateRenewed, current, previous_valid_until=certificate.valid_until)]


async def renew_certificates(deps: InsuranceDeps, as_of: date, publish: Publish) -> SweepOutcome:
    """Renew certificates that end within the lead time and are still needed; and issue
    certificates to members whose card's electronic certificate has expired (no event says so)."""
    store, outcome = deps.store, SweepOutcome()
    lead = deps.settings.certificate_renewal_lead_days
    for work in await store.unfinished_sweep_work(RENEWAL):  # begun by a run that failed
        outcome.examined += 1
        async with deps.locks.hold(work.certificate.person_ref):
            facts = await _renew(deps, work)
        await _publish(deps, publish, outcome, work.cause_id, facts)
    for certificate in await store.active_certificates_ending_by(as_of + timedelta(days=lead)):
        if not renewal_due(certificate, as_of, lead):
            continue
        outcome.examined += 1
        cause = f"sweep:certificate-renewal:{certificate.member_key}:{certificate.valid_until.isoformat()}"
        async with deps.locks.hold(certificate.person_ref):
            person = await store.person(certificate.person_ref)
            membership = await store.membership(certificate.member_key)
            if person is None or membership is None or not still_needed(person, membership, as_of):
                outcome.skipped += 1
                continue
            facts = await _renew(deps, await store.begin_sweep_work(cause, RENEWAL, certificate, as_of))
        await _publish(deps, publish, outcome, cause, facts)
    for person in await store.people_with_card_certificates_ending_before(as_of):
        if not person.member_keys or person.card is None:
            continue
        # Found again by a rerun, which gives the same facts (`settle_person` replays its cause).
        cause = f"sweep:card-certificate-expired:{person.person_ref}:{person.card.certificate_id}"
        async with deps.locks.hold(person.person_ref):
            facts = await settle_person(deps, person.person_ref, on=as_of, cause_id=cause)
        if facts:
            outcome.examined += 1
            await _publish(deps, publish, outcome, cause, facts, work=False)
    return outcome


async def _expire(deps: InsuranceDeps, work: SweepWork) -> list[Fact]:
    """End the certificate, then settle the person (a replacement if still needed) on the sweep's date."""
    certificate, store = work.certificate, deps.store
    ended = work.ended or await store.end_certificate(
        certificate, CertificateStatus.expired, reason="validity_ended", cause_id=work.cause_id, now=deps.clock.now())
    if ended and not work.ended:  # the replacement overwrites the ended certificate: a rerun learns it here
        await store.sweep_work_ended_certificate(work.cause_id)
    facts: list[Fact] = [_certificate_fact(EligibilityCertificateExpired, certificate)] if ended else []
    return facts + await settle_person(deps, certificate.person_ref, on=work.as_of, cause_id=work.cause_id)


async def expire_certificates(deps: InsuranceDeps, as_of: date, publish: Publish) -> SweepOutcome:
    """End certificates whose validity has passed; anyone who still needs one gets a new one."""
    store, outcome = deps.store, SweepOutcome()
    for work in await store.unfinished_sweep_work(EXPIRY):  # begun by a run that failed
        outcome.examined += 1
        async with deps.locks.hold(work.certificate.person_ref):
            facts = await _expire(deps, work)
        await _publish(deps, publish, outcome, work.cause_id, facts)
    for certificate in await store.active_certificates_ending_by(as_of - timedelta(days=1)):
        outcome.examined += 1
        cause = f"sweep:certificate-expiry:{certificate.member_key}:{certificate.certificate_number}"
        async with deps.locks.hold(certificate.person_ref):
            facts = await _expire(deps, await store.begin_sweep_work(cause, EXPIRY, certificate, as_of))
        await _publish(deps, publish, outcome, cause, facts)
    return outcome
