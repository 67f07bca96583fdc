"""Benefits: the public-fund receiving account and the payment of benefits into it.

Partner requests (topic `mynumber.benefits.requests`) are named as instructions
(`RegisterReceivingAccount`, `SubmitPayoutChunk`); facts (topic `mynumber.benefits.facts`)
are named as what happened (`AccountRegistered`, `PaymentSettled`). Facts never carry the
Individual Number: they carry the person reference.

A payout batch arrives in pieces: one `AnnouncePayoutBatch` header with the control totals
and the number of chunks, then `SubmitPayoutChunk` events (at most 5,000 recipients each).
Publish them with the batch id as the ordering subject, so they stay on one partition.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PositiveInt, StringConstraints

from .base import Fact, PartnerRequest
from .identity import MyNumber, NameKana, PersonRef
from .partners import PartnerType

SERVICE = "benefits"
MAX_CHUNK_RECIPIENTS = 5000

BankCode = Annotated[
    str, StringConstraints(pattern=r"^[0-9]{4}$"), Field(description="Zengin bank code (4 digits).", examples=["0005"])
]
BranchCode = Annotated[
    str, StringConstraints(pattern=r"^[0-9]{3}$"), Field(description="Branch code (3 digits).", examples=["123"])
]
AccountNumber = Annotated[
    str, StringConstraints(pattern=r"^[0-9]{7}$"), Field(description="Account number (7 digits).", examples=["1234567"])
]
RequestId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"),
    Field(description="The partner's id for this request; a replay has the same effect once."),
]
BatchId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"),
    Field(description="The paying agency's id of the payout batch.", examples=["child-benefit-2026-06"]),
]
Programme = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z][a-z_]{1,39}$"),
    Field(description="The benefit programme.", examples=["child_benefit"]),
]
Period = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9]{4}-[0-9A-Z]{2}$"),
    Field(description="The period the payment is for, e.g. the month `2026-06` or the quarter `2026-Q2`.", examples=["2026-06"]),
]
Yen = Annotated[int, Field(ge=1, le=10_000_000_000, description="An amount in yen (integer).")]
PaymentId = Annotated[
    str,
    Field(
        description="Unique per programme, period and person: `<programme>:<period>:<person_ref>`.",
        examples=["child_benefit:2026-06:pr_abcdefghijklmnopqrstuvwxyz"],
    ),
]


class AccountType(StrEnum):
    ordinary = "ordinary"  # 普通
    current = "current"  # 当座
    savings = "savings"  # 貯蓄


class AccountChannel(StrEnum):
    portal = "portal"
    tax_return = "tax_return"
    bank_counter = "bank_counter"
    pension_claim = "pension_claim"
    pension_opt_out = "pension_opt_out"


class RefusalReason(StrEnum):
    unknown_resident = "unknown_resident"
    resident_deceased = "resident_deceased"
    family_member_account = "family_member_account"
    holder_name_mismatch = "holder_name_mismatch"
    no_account = "no_account"


class DeletionReason(StrEnum):
    deleted_by_holder = "deleted_by_holder"
    refused_after_registration = "refused_after_registration"
    removed_by_operator = "removed_by_operator"


class FlagOutcome(StrEnum):
    released = "released"
    removed = "removed"


class OptOutOutcome(StrEnum):
    refused = "refused"
    registered = "registered"
    refused_after_registration = "refused_after_registration"
    already_registered = "already_registered"
    not_eligible = "not_eligible"


class HoldReason(StrEnum):
    no_account = "no_account"
    account_withheld = "account_withheld"
    account_invalidated = "account_invalidated"


class FailureReason(StrEnum):
    account_closed = "account_closed"
    account_not_found = "account_not_found"
    holder_name_mismatch = "holder_name_mismatch"
    bank_rejected_request = "bank_rejected_request"


class BatchRejectionReason(StrEnum):
    control_count_mismatch = "control_count_mismatch"
    control_total_mismatch = "control_total_mismatch"
    duplicate_recipient = "duplicate_recipient"
    already_paid_in_another_batch = "already_paid_in_another_batch"
    chunk_out_of_range = "chunk_out_of_range"


class BankAccount(BaseModel):
    """A bank account as given by the holder: codes, number and the holder's name in kana."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    bank_code: BankCode
    branch_code: BranchCode
    account_type: AccountType = Field(default=AccountType.ordinary, description="Kind of deposit account.")
    account_number: AccountNumber
    holder_name_kana: NameKana = Field(description="Account holder's name in kana, as the bank records it.")


class AccountSummary(BaseModel):
    """An account as shown in a notice: the number is cut to its last 3 digits."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    bank_code: str
    branch_code: str
    account_type: AccountType
    account_number_masked: str = Field(description="The account number with all but the last 3 digits hidden.")


class _Request(PartnerRequest):
    service: ClassVar[str] = SERVICE


class _Fact(Fact):
    service: ClassVar[str] = SERVICE


class _BatchFact(_Fact):
    def partition_key(self) -> bytes:
        return f"batch/{self.batch_id}".encode()  # type: ignore[attr-defined]


# --- partner requests: the receiving account --------------------------------------------


class RegisterReceivingAccount(_Request):
    """Register, or replace, a person's receiving account (portal, tax return, bank counter, pension claim)."""

    event_type: ClassVar[str] = "jp.mynumber.benefits.register_receiving_account.v1"
    publishers: ClassVar[frozenset[str]] = frozenset({PartnerType.portal, PartnerType.tax_agency, PartnerType.bank, PartnerType.pension_service})

    request_id: RequestId
    my_number: MyNumber
    channel: AccountChannel
    account: BankAccount


class DeleteReceivingAccount(_Request):
    event_type: ClassVar[str] = "jp.mynumber.benefits.delete_receiving_account.v1"
    publishers: ClassVar[frozenset[str]] = frozenset({PartnerType.portal, PartnerType.bank})

    request_id: RequestId
    my_number: MyNumber


class ProposePensionAccount(_Request):
    """The pension service proposes its account (opt-out route); the notice goes out on `notified_on`."""

    event_type: ClassVar[str] = "jp.mynumber.benefits.propose_pension_account.v1"
    publishers: ClassVar[frozenset[str]] = frozenset({PartnerType.pension_service})

    proposal_id: RequestId
    my_number: MyNumber
    account: BankAccount
    notified_on: date = Field(description="Day the notice is sent: day 0 of the reply period.")


class RefusePensionAccount(_Request):
    """The holder returned the refusal postcard."""

    event_type: ClassVar[str] = "jp.mynumber.benefits.refuse_pension_account.v1"
    publishers: ClassVar[frozenset[str]] = frozenset({PartnerType.pension_service})

    proposal_id: RequestId
    my_number: MyNumber
    received_on: date = Field(description="Day the postcard arrived.")


class RecordBankCodeChange(_Request):
    """A bank merger changed a bank code (every branch) or one branch code."""

    event_type: ClassVar[str] = "jp.mynumber.benefits.record_bank_code_change.v1"
    publishers: ClassVar[frozenset[str]] = frozenset({PartnerType.bank_registry})

    request_id: RequestId
    old_bank_code: BankCode
    old_branch_code: BranchCode | None = Field(default=None, description="Absent: every branch of the bank.")
    new_bank_code: BankCode
    new_branch_code: BranchCode | None = None
    effective_on: date


# --- partner requests: payouts ----------------------------------------------------------


class PayoutRecipient(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    my_number: MyNumber
    amount_yen: Yen


class AnnouncePayoutBatch(_Request):
    """The header of a payout batch: its control totals and how many chunks follow.

    Send it before the chunks, keyed with `topics.ordering_key(batch_id)`.
    """

    event_type: ClassVar[str] = "jp.mynumber.benefits.announce_payout_batch.v1"
    publishers: ClassVar[frozenset[str]] = frozenset({PartnerType.paying_agency})

    batch_id: BatchId
    programme: Programme
    period: Period
    recipient_count: PositiveInt = Field(description="Control total: the number of recipients in every chunk.")
    total_yen: Yen = Field(description="Control total: the sum of every amount, in yen.")
    chunk_count: PositiveInt = Field(description="How many chunks make up the batch (indexes 0..chunk_count-1).")


class SubmitPayoutChunk(_Request):
    """Up to 5,000 recipients of a payout batch.

    Key each chunk on its own, with `topics.ordering_key(f"{batch_id}/{chunk_index}")`: the
    chunks then travel on several partitions and are taken in side by side. A chunk that
    overtakes its header is kept until the header comes. Chunks keyed by the batch id also work,
    one at a time.
    """

    event_type: ClassVar[str] = "jp.mynumber.benefits.submit_payout_chunk.v1"
    publishers: ClassVar[frozenset[str]] = frozenset({PartnerType.paying_agency})

    batch_id: BatchId
    chunk_index: int = Field(ge=0, description="0-based position of the chunk in the batch.")
    recipients: list[PayoutRecipient] = Field(min_length=1, max_length=MAX_CHUNK_RECIPIENTS)


# --- facts: accounts --------------------------------------------------------------------


class AccountRegistered(_Fact):
    event_type: ClassVar[str] = "jp.mynumber.benefits.account_registered.v1"

    person_ref: PersonRef
    request_id: str
    channel: AccountChannel
    account: AccountSummary
    withheld: bool = Field(default=False, description="True when the account is flagged as shared and withheld.")


class AccountChanged(_Fact):
    event_type: ClassVar[str] = "jp.mynumber.benefits.account_changed.v1"

    person_ref: PersonRef
    request_id: str
    channel: AccountChannel
    account: AccountSummary
    withheld: bool = False


class AccountDeleted(_Fact):
    event_type: ClassVar[str] = "jp.mynumber.benefits.account_deleted.v1"

    person_ref: PersonRef
    request_id: str
    reason: DeletionReason


class AccountRegistrationRefused(_Fact):
    event_type: ClassVar[str] = "jp.mynumber.benefits.account_registration_refused.v1"

    person_ref: PersonRef
    request_id: str
    reason: RefusalReason
    message: str


class AccountInvalidated(_Fact):
    """A notice to the holder: the bank or branch code changed, so the account must be registered again."""

    event_type: ClassVar[str] = "jp.mynumber.benefits.account_invalidated.v1"

    person_ref: PersonRef
    request_id: str
    account: AccountSummary
    new_bank_code: str
    new_branch_code: str
    effective_on: date
    message: str


class AccountFlagged(_Fact):
    """One account is registered for people with different surnames or addresses: withheld from payouts."""

    event_type: ClassVar[str] = "jp.mynumber.benefits.account_flagged.v1"

    person_ref: PersonRef
    flag_id: str
    holders: int = Field(description="How many people have this account registered.")
    reason: str


class AccountFlagResolved(_Fact):
    event_type: ClassVar[str] = "jp.mynumber.benefits.account_flag_resolved.v1"

    person_ref: PersonRef
    flag_id: str
    outcome: FlagOutcome
    operator: str
    reason: str


class OptOutNoticeSent(_Fact):
    event_type: ClassVar[str] = "jp.mynumber.benefits.opt_out_notice_sent.v1"

    person_ref: PersonRef
    proposal_id: str
    account: AccountSummary
    reply_by: date = Field(description="Without a refusal by this day, the account is registered.")


class OptOutConcluded(_Fact):
    event_type: ClassVar[str] = "jp.mynumber.benefits.opt_out_concluded.v1"

    person_ref: PersonRef
    proposal_id: str
    outcome: OptOutOutcome
    concluded_on: date
    message: str


# --- facts: payments --------------------------------------------------------------------


class _PaymentFact(_Fact):
    person_ref: PersonRef
    payment_id: PaymentId
    batch_id: str
    programme: str
    period: str
    amount_yen: int


class PaymentHeld(_PaymentFact):
    """A notice to the recipient: the payment waits until a valid account is registered."""

    event_type: ClassVar[str] = "jp.mynumber.benefits.payment_held.v1"

    reason: HoldReason
    message: str


class PaymentSent(_PaymentFact):
    """The bank accepted the transfer. Not every settled payment has one: when the bank booked a
    transfer but its answer was lost, its statement settles the payment (`PaymentSettled`) and no
    `PaymentSent` comes. Count money moved by `PaymentSettled`, never by this."""

    event_type: ClassVar[str] = "jp.mynumber.benefits.payment_sent.v1"

    attempt: int = Field(description="1 for the first transfer; a retry after a fixed account counts up.")
    transfer_id: str = Field(description="The bank's id of the transfer.")


class PaymentSettled(_PaymentFact):
    """The bank's statement shows the account credited: the money moved. A payment's last fact;
    it may come without a `PaymentSent` before it (see there)."""

    event_type: ClassVar[str] = "jp.mynumber.benefits.payment_settled.v1"

    attempt: int
    transfer_id: str
    settled_at: AwareDatetime = Field(description="When the bank credited the account (its statement).")


class PaymentFailed(_PaymentFact):
    event_type: ClassVar[str] = "jp.mynumber.benefits.payment_failed.v1"

    attempt: int
    reason: FailureReason
    message: str


class PayoutBatchAccepted(_BatchFact):
    event_type: ClassVar[str] = "jp.mynumber.benefits.payout_batch_accepted.v1"

    batch_id: str
    programme: str
    period: str
    recipient_count: int
    total_yen: int


class PayoutBatchRejected(_BatchFact):
    """The whole batch is refused: nobody in it is paid."""

    event_type: ClassVar[str] = "jp.mynumber.benefits.payout_batch_rejected.v1"

    batch_id: str
    reason: BatchRejectionReason
    message: str
    declared_count: int
    declared_total_yen: int
    received_count: int
    received_total_yen: int


class ReconciliationLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    count: int = Field(ge=0)
    total_yen: int = Field(ge=0)


class PayoutBatchReconciled(_BatchFact):
    """Paid + held + failed + pending add up to the control totals, to the yen."""

    event_type: ClassVar[str] = "jp.mynumber.benefits.payout_batch_reconciled.v1"

    batch_id: str
    programme: str
    period: str
    control: ReconciliationLine
    paid: ReconciliationLine
    held: ReconciliationLine
    failed: ReconciliationLine
    pending: ReconciliationLine
    bank_statement: ReconciliationLine = Field(description="What the bank's statement shows as credited for this batch.")
    balanced: bool = Field(description="The four lines add up to the control totals.")
    matches_bank_statement: bool = Field(description="Paid equals what the bank credited.")
    as_of: AwareDatetime
