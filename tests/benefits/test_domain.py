"""The pure rules of the benefits domain: no broker, no database."""

from __future__ import annotations

from datetime import date

from mynumber_contracts.benefits import AccountType, BatchRejectionReason, HoldReason, RefusalReason

from services.benefits import domain
from services.benefits.domain import (
    Account,
    AccountStatus,
    AuditedDeletion,
    BatchHeader,
    ChunkTally,
    ProposalStatus,
    Resident,
    ResidentStatus,
)

HANAKO = Resident("pr_a", name_kana="ヤマダ ハナコ", name_kanji="山田 花子", address="東京都港区1-1")


def test_the_own_name_check_refuses_family_members_strangers_unknown_and_deceased_people():
    assert domain.check_own_name(HANAKO, "ﾔﾏﾀﾞﾊﾅｺ") is None
    assert domain.check_own_name(HANAKO, "ヤマダ タロウ").reason is RefusalReason.family_member_account
    assert domain.check_own_name(HANAKO, "スズキ ハナコ").reason is RefusalReason.holder_name_mismatch
    assert domain.check_own_name(None, "ヤマダ ハナコ").reason is RefusalReason.unknown_resident
    deceased = Resident("pr_a", "ヤマダ ハナコ", "山田 花子", "東京都", ResidentStatus.deceased)
    assert domain.check_own_name(deceased, "ヤマダ ハナコ").reason is RefusalReason.resident_deceased


def test_sharing_is_suspicious_only_across_surnames_or_addresses():
    same_home = Resident("pr_b", "ヤマダ ハナコ", "山田 花子", "東京都港区１－１")
    elsewhere = Resident("pr_c", "ヤマダ ハナコ", "山田 花子", "大阪府1")
    other_surname = Resident("pr_d", "ヤマダ ハナコ", "山多 花子", "東京都港区1-1")
    assert not domain.is_suspicious_sharing(HANAKO, [])
    assert not domain.is_suspicious_sharing(HANAKO, [same_home])
    assert domain.is_suspicious_sharing(HANAKO, [same_home, elsewhere])
    assert domain.is_suspicious_sharing(HANAKO, [other_surname])
    assert domain.is_suspicious_sharing(HANAKO, [None])


def test_a_late_refusal_deletes_the_pension_account_only_while_it_is_the_one_on_record():
    pension = Account("pr_a", "0005", "123", AccountType.ordinary, "1234567", "ヤマダ ハナコ", "pension_opt_out",
                      source_id="pension-1")
    own = Account(**{**pension.__dict__, "account_number": "7654321", "channel": "portal", "source_id": "reg-own"})
    registered, registering = ProposalStatus.registered, ProposalStatus.registering
    assert domain.refusal_after_registration("pension-1", registered, pension) == AuditedDeletion("pension-1")
    assert domain.refusal_after_registration("pension-1", registered, own) == AuditedDeletion("", deletes=False,
                                                                                               kept="reg-own")
    assert domain.refusal_after_registration("pension-1", registered, None) == AuditedDeletion("", deletes=False)
    # A sweep still registering saves the account after this look, and then deletes it.
    assert domain.refusal_after_registration("pension-1", registering, None) == AuditedDeletion("pension-1")
    # So may a sweep that an earlier refusal found registering (and that has not finished since).
    assert domain.refusal_after_registration("pension-1", ProposalStatus.refused_while_registering,
                                             None) == AuditedDeletion("pension-1")


def test_payments_are_held_without_a_usable_account():
    account = Account("pr_a", "0005", "123", AccountType.ordinary, "1234567", "ヤマダ ハナコ", "portal")
    assert domain.hold_reason(account) is None
    assert domain.hold_reason(None) is HoldReason.no_account
    assert domain.hold_reason(Account(**{**account.__dict__, "status": AccountStatus.withheld})) is HoldReason.account_withheld
    assert domain.hold_reason(Account(**{**account.__dict__, "status": AccountStatus.invalidated})) is \
        HoldReason.account_invalidated
    assert account.summary().account_number_masked == "****567"


def test_the_pension_account_is_due_on_day_45():
    notified = date(2026, 6, 1)
    assert domain.reply_by(notified, 45) == date(2026, 7, 16)
    assert not domain.is_due_for_registration(notified, date(2026, 7, 15), 45)
    assert domain.is_due_for_registration(notified, date(2026, 7, 16), 45)


HEADER = BatchHeader("b", "child_benefit", "2026-06", recipient_count=3, total_yen=30_000, chunk_count=2)


def test_a_batch_is_decided_only_when_every_chunk_is_in_and_rejected_on_any_mismatch():
    assert domain.decide_batch(HEADER, [ChunkTally(0, 2, 20_000)]) is None
    assert domain.decide_batch(HEADER, [ChunkTally(0, 2, 20_000), ChunkTally(1, 1, 10_000)]).accepted
    wrong_total = domain.decide_batch(HEADER, [ChunkTally(0, 2, 20_000), ChunkTally(1, 1, 9_999)])
    assert wrong_total.reason is BatchRejectionReason.control_total_mismatch and wrong_total.received_total_yen == 29_999
    wrong_count = domain.decide_batch(HEADER, [ChunkTally(0, 2, 20_000), ChunkTally(1, 2, 10_000)])
    assert wrong_count.reason is BatchRejectionReason.control_count_mismatch
    beyond = domain.decide_batch(HEADER, [ChunkTally(2, 1, 10_000)])
    assert beyond.reason is BatchRejectionReason.chunk_out_of_range
    twice = domain.decide_batch(HEADER, [ChunkTally(0, 2, 20_000, duplicates=1), ChunkTally(1, 1, 10_000)])
    assert twice.reason is BatchRejectionReason.duplicate_recipient
    paid_elsewhere = domain.decide_batch(HEADER, [ChunkTally(0, 2, 20_000, conflicts=1), ChunkTally(1, 1, 10_000)])
    assert paid_elsewhere.reason is BatchRejectionReason.already_paid_in_another_batch
    assert domain.tally_chunk(0, [("p1", 5), ("p1", 5), ("p2", 1)]) == ChunkTally(0, 3, 11, duplicates=1)


def test_reconciliation_puts_each_payment_in_exactly_one_line():
    # Four lines taken in: a is credited, b held, c failed, d sent and not credited yet.
    report = domain.reconcile(domain.Tally(4, 1000), taken_in=domain.Tally(4, 1000), paid=domain.Tally(1, 100),
                              held={"b": 200}, failed={"c": 300}, settled=set(), bank_statement=domain.Tally(1, 100))
    assert (report.paid.total_yen, report.held.total_yen, report.failed.total_yen, report.pending.total_yen) == (
        100, 200, 300, 400)
    assert report.pending.count == 1
    assert report.balanced and report.matches_bank_statement
    short = domain.reconcile(domain.Tally(4, 1001), taken_in=domain.Tally(4, 1000), paid=domain.Tally(1, 100),
                             held={}, failed={}, settled=set(), bank_statement=domain.Tally(2, 200))
    assert not short.balanced and not short.matches_bank_statement


def test_a_held_or_failed_payment_the_statement_credited_since_counts_as_paid_only():
    # b was held, then released and credited (its hold record outlived a crash); c failed and
    # its next attempt was credited; d is both held and failed and counts once, as held.
    report = domain.reconcile(domain.Tally(4, 1000), taken_in=domain.Tally(4, 1000), paid=domain.Tally(3, 600),
                              held={"b": 200, "d": 400}, failed={"c": 300, "d": 400}, settled={"b", "c"},
                              bank_statement=domain.Tally(3, 600))
    assert (report.paid.count, report.held.count, report.failed.count, report.pending.count) == (3, 1, 0, 0)
    assert report.balanced


def test_a_credit_counted_twice_unbalances_the_report():
    # Four lines, all credited, but the tallies say five credits: pending would be negative.
    report = domain.reconcile(domain.Tally(4, 1000), taken_in=domain.Tally(4, 1000), paid=domain.Tally(5, 1100),
                              held={}, failed={}, settled=set(), bank_statement=domain.Tally(4, 1000))
    assert report.pending.count == -1
    assert not report.balanced and not report.matches_bank_statement


def test_one_payment_per_programme_period_and_person_and_one_key_per_attempt():
    assert domain.payment_id("child_benefit", "2026-06", "pr_x") == "child_benefit:2026-06:pr_x"
    assert domain.transfer_key("child_benefit:2026-06:pr_x", 2) == "child_benefit:2026-06:pr_x#2"
