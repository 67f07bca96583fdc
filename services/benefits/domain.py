"""The business rules of the receiving account and of payouts. Pure: no I/O, no frameworks.

Facts, section 5: one account per person, in the person's own name; one account registered
for people with different surnames or addresses is withheld until an operator looks at it;
a bank merger invalidates the accounts it renumbers; the pension account is registered when
the holder does not refuse within the reply period; payout batches are paid exactly once and
reconcile to the yen.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum

from mynumber_contracts.benefits import (
    AccountSummary,
    AccountType,
    BatchRejectionReason,
    HoldReason,
    ReconciliationLine,
    RefusalReason,
)

from services.kit.notation import normalise_address, normalise_name_kana

# --- names -----------------------------------------------------------------------------

def kana_surname(name: str) -> str:
    """The first space-separated part of a kana name, normalised."""
    parts = unicodedata.normalize("NFKC", name).split()
    return normalise_name_kana(parts[0]) if parts else ""


def kanji_surname(name: str) -> str:
    parts = unicodedata.normalize("NFKC", name).split()
    return parts[0] if parts else ""


class ResidentStatus(StrEnum):
    resident = "resident"
    moved_abroad = "moved_abroad"
    deceased = "deceased"


@dataclass(frozen=True)
class Resident:
    """What benefits knows of a person, from the enrollment facts."""

    person_ref: str
    name_kana: str
    name_kanji: str
    address: str
    status: ResidentStatus = ResidentStatus.resident


@dataclass(frozen=True)
class Refusal:
    reason: RefusalReason
    message: str


def check_own_name(resident: Resident | None, holder_name_kana: str) -> Refusal | None:
    """The account must be in the person's own name; a family member's account is refused."""
    if resident is None:
        return Refusal(RefusalReason.unknown_resident, "No resident record is known for this person.")
    if resident.status is ResidentStatus.deceased:
        return Refusal(RefusalReason.resident_deceased, "The person is recorded as deceased.")
    if normalise_name_kana(holder_name_kana) == normalise_name_kana(resident.name_kana):
        return None
    if kana_surname(holder_name_kana) == kana_surname(resident.name_kana):
        return Refusal(
            RefusalReason.family_member_account,
            "The account holder's name does not match the person's name: it looks like a family member's "
            "account. Only an account in the person's own name can be registered.",
        )
    return Refusal(
        RefusalReason.holder_name_mismatch,
        "The account holder's name in kana does not match the person's registered name in kana.",
    )


# --- accounts --------------------------------------------------------------------------


class AccountStatus(StrEnum):
    checking = "checking"  # just saved: not paid until the shared-account check has looked at it
    active = "active"
    withheld = "withheld"  # flagged as shared: no payouts until an operator resolves it
    invalidated = "invalidated"  # renumbered by a bank merger: the holder must register again


@dataclass(frozen=True)
class Account:
    person_ref: str
    bank_code: str
    branch_code: str
    account_type: AccountType
    account_number: str
    holder_name_kana: str
    channel: str
    status: AccountStatus = AccountStatus.active
    source_id: str = ""  # the request or proposal that registered it
    replaced_another: bool = False  # it replaced an earlier account: a change, not a registration

    @property
    def key(self) -> str:
        return account_key(self.bank_code, self.branch_code, self.account_number)

    def summary(self) -> AccountSummary:
        return AccountSummary(
            bank_code=self.bank_code,
            branch_code=self.branch_code,
            account_type=self.account_type,
            account_number_masked="****" + self.account_number[-3:],
        )


def account_key(bank_code: str, branch_code: str, account_number: str) -> str:
    """What makes two registrations 'the same account' (facts, section 5)."""
    return f"{bank_code}-{branch_code}-{account_number}"


def is_suspicious_sharing(holder: Resident | None, co_holders: Iterable[Resident | None]) -> bool:
    """One account for several people is suspicious when their surnames or addresses differ."""
    others = list(co_holders)
    if not others:
        return False
    if holder is None or any(other is None for other in others):
        return True  # an unknown co-holder cannot be vouched for
    surname, address = kanji_surname(holder.name_kanji), normalise_address(holder.address)
    return any(
        kanji_surname(other.name_kanji) != surname or normalise_address(other.address) != address
        for other in others
        if other is not None
    )


def flag_id_for(key: str) -> str:
    return f"shared:{key}"


def registration_entry_id(source_id: str, person_ref: str) -> str:
    """The audit entry of an account registration, the last of its writes. Request ids are each
    partner's own, so the person scopes it: two partners' registrations of two people under one
    request id are two entries (before session 14 the second was never written)."""
    return f"account:{source_id}:{person_ref}"


def deletion_entry_id(partner: str, request_id: str, person_ref: str) -> str:
    """The audit entry of a deletion: request ids are each partner's own (as the kit's guard takes
    the source as part of what makes a request the same), so the partner and the person scope it."""
    return f"delete:{partner}:{request_id}:{person_ref}"


@dataclass(frozen=True)
class AuditedDeletion:
    """What a deletion's audit entry, written before it acts, says it does: run again, it does that."""

    registration: str  # whose account it deletes; "" in an entry written before deletions named it
    deletes: bool = True  # False: the account was already replaced or gone when it came
    kept: str = ""  # then: the registration on record that it left alone, if there was one


def being_checked(account: Account | None) -> bool:
    """A payment to an account still under the shared-account check waits in the queue (no fact)."""
    return account is not None and account.status is AccountStatus.checking


def hold_reason(account: Account | None) -> HoldReason | None:
    """Why a payment cannot be sent to this account now, or None when it can."""
    if account is None:
        return HoldReason.no_account
    if account.status is AccountStatus.withheld:
        return HoldReason.account_withheld
    if account.status is AccountStatus.invalidated:
        return HoldReason.account_invalidated
    return None


HOLD_MESSAGES = {
    HoldReason.no_account: "No receiving account is registered. The payment is paid once one is registered.",
    HoldReason.account_withheld: "The receiving account is under review (shared by several people). The payment waits.",
    HoldReason.account_invalidated: "The receiving account changed its bank or branch code. Please register it again.",
}


# --- the opt-out route -----------------------------------------------------------------


class ProposalStatus(StrEnum):
    awaiting_reply = "awaiting_reply"
    registering = "registering"  # a sweep took it: its registration is under way
    refused = "refused"
    registered = "registered"
    # A refusal came while a sweep registered: the sweep (or the next one, if it stopped) deletes
    # the account it saved and publishes the deletion last, then records `deleted`.
    refused_while_registering = "refused_while_registering"
    deleted = "deleted"  # registered, then refused late: counts as a deletion
    already_registered = "already_registered"


def refusal_after_registration(proposal_id: str, status: ProposalStatus, account: Account | None) -> AuditedDeletion:
    """What a refusal that came after a sweep took the proposal deletes: the proposal's account,
    unless the holder has since registered their own in its place, or the account is gone
    and the sweep is done (a sweep still registering saves it later, and deletes it)."""
    if account is not None and account.source_id != proposal_id:
        return AuditedDeletion(registration="", deletes=False, kept=account.source_id)
    if account is None and status not in (ProposalStatus.registering, ProposalStatus.refused_while_registering):
        return AuditedDeletion(registration="", deletes=False)
    return AuditedDeletion(registration=proposal_id)


def reply_by(notified_on: date, reply_days: int) -> date:
    """The last day of the reply period; a sweep on or after it registers the account."""
    return notified_on + timedelta(days=reply_days)


def is_due_for_registration(notified_on: date, as_of: date, reply_days: int) -> bool:
    """No reply after `reply_days` days (day 45 by default) registers the account."""
    return as_of >= reply_by(notified_on, reply_days)


# --- payout batches --------------------------------------------------------------------


def payment_id(programme: str, period: str, person_ref: str) -> str:
    """One payment per programme, period and person: this id is the unique key."""
    return f"{programme}:{period}:{person_ref}"


def transfer_key(payment: str, attempt: int) -> str:
    """The idempotency key of one transfer. A new attempt only follows a final refusal, which moved no money."""
    return f"{payment}#{attempt}"


@dataclass(frozen=True)
class ChunkTally:
    chunk_index: int
    count: int
    total_yen: int
    conflicts: int = 0  # recipients already paid in this batch's other chunks or in another batch
    duplicates: int = 0  # recipients listed twice within this chunk


@dataclass(frozen=True)
class BatchHeader:
    batch_id: str
    programme: str
    period: str
    recipient_count: int
    total_yen: int
    chunk_count: int


@dataclass(frozen=True)
class WaitingBatch:
    """A batch whose chunks came but whose header has not: what an operator chases the agency for."""

    batch_id: str
    chunk_indexes: tuple[int, ...]
    recipients: int
    total_yen: int
    first_kept_at: datetime | None  # None only for chunks kept before the time was recorded


@dataclass(frozen=True)
class BatchDecision:
    accepted: bool
    reason: BatchRejectionReason | None = None
    message: str = ""
    received_count: int = 0
    received_total_yen: int = 0


def tally_chunk(chunk_index: int, recipients: Sequence[tuple[str, int]]) -> ChunkTally:
    """Count and sum a chunk's (person_ref, amount) lines, noting people listed twice."""
    people = [person for person, _ in recipients]
    return ChunkTally(
        chunk_index=chunk_index,
        count=len(recipients),
        total_yen=sum(amount for _, amount in recipients),
        duplicates=len(people) - len(set(people)),
    )


def decide_batch(header: BatchHeader, chunks: Sequence[ChunkTally]) -> BatchDecision | None:
    """Accept or reject a batch once every chunk is in; None while chunks are missing."""
    count = sum(c.count for c in chunks)
    total = sum(c.total_yen for c in chunks)

    def reject(reason: BatchRejectionReason, message: str) -> BatchDecision:
        return BatchDecision(False, reason, message, count, total)

    out_of_range = [c.chunk_index for c in chunks if c.chunk_index >= header.chunk_count]
    if out_of_range:
        return reject(
            BatchRejectionReason.chunk_out_of_range,
            f"chunk {out_of_range[0]} is beyond the announced {header.chunk_count} chunks",
        )
    if len({c.chunk_index for c in chunks}) < header.chunk_count:
        return None
    if count != header.recipient_count:
        return reject(
            BatchRejectionReason.control_count_mismatch,
            f"the chunks hold {count} recipients; the header announced {header.recipient_count}",
        )
    if total != header.total_yen:
        return reject(
            BatchRejectionReason.control_total_mismatch,
            f"the chunks add up to {total} yen; the header announced {header.total_yen} yen",
        )
    if any(c.duplicates for c in chunks):
        return reject(BatchRejectionReason.duplicate_recipient, "a recipient is listed twice in the batch")
    if any(c.conflicts for c in chunks):
        return reject(
            BatchRejectionReason.already_paid_in_another_batch,
            "a recipient already has a payment for this programme and period",
        )
    return BatchDecision(True, received_count=count, received_total_yen=total)


# --- reconciliation --------------------------------------------------------------------


@dataclass
class Tally:
    count: int = 0
    total_yen: int = 0

    def add(self, amount: int) -> None:
        self.count += 1
        self.total_yen += amount

    def line(self) -> ReconciliationLine:
        return ReconciliationLine(count=self.count, total_yen=self.total_yen)


@dataclass
class Reconciliation:
    control: Tally
    paid: Tally = field(default_factory=Tally)
    held: Tally = field(default_factory=Tally)
    failed: Tally = field(default_factory=Tally)
    pending: Tally = field(default_factory=Tally)
    bank_statement: Tally = field(default_factory=Tally)

    @property
    def balanced(self) -> bool:
        """Every line adds up to the control totals, and no line is negative (a credit counted
        twice, or a payment both paid and still held, would drive `pending` below zero)."""
        lines = (self.paid, self.held, self.failed, self.pending)
        return (
            sum(t.count for t in lines) == self.control.count
            and sum(t.total_yen for t in lines) == self.control.total_yen
            and all(t.count >= 0 and t.total_yen >= 0 for t in lines)
        )

    @property
    def matches_bank_statement(self) -> bool:
        return (self.paid.count, self.paid.total_yen) == (self.bank_statement.count, self.bank_statement.total_yen)


def reconcile(
    control: Tally,
    *,
    taken_in: Tally,
    paid: Tally,
    held: Mapping[str, int],
    failed: Mapping[str, int],
    settled: set[str],
    bank_statement: Tally,
) -> Reconciliation:
    """Put the batch's lines into paid, held, failed and pending.

    `taken_in` is what the batch's chunks brought in, `paid` what the statement credited to the
    batch; `held` and `failed` map payment ids to amounts. A held or failed payment the statement
    has since credited (`settled`) counts as paid only; a payment both held and failed counts as
    held. Pending is every line taken in that is in none of the others: sent and not yet
    credited, or still queued.
    """
    report = Reconciliation(control=control, paid=Tally(paid.count, paid.total_yen), bank_statement=bank_statement)
    for payment, amount in held.items():
        if payment not in settled:
            report.held.add(amount)
    for payment, amount in failed.items():
        if payment not in settled and payment not in held:
            report.failed.add(amount)
    decided = (report.paid, report.held, report.failed)
    report.pending = Tally(taken_in.count - sum(t.count for t in decided),
                           taken_in.total_yen - sum(t.total_yen for t in decided))
    return report
