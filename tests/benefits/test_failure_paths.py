"""Failure paths against the real broker and database: a withheld account holds its payment until an
operator releases it; a proposal for someone else's account is not eligible; a refusal for an
unknown proposal and a header that contradicts the recorded one are dead-lettered; a payment
that has not failed cannot be retried."""

from __future__ import annotations

from datetime import date

from mynumber_contracts import ResidentAttributes, Sex
from mynumber_contracts.benefits import (
    AccountChannel,
    AccountFlagged,
    AccountInvalidated,
    AccountRegistered,
    AnnouncePayoutBatch,
    OptOutConcluded,
    PaymentHeld,
    PaymentSent,
    PaymentSettled,
    PayoutBatchAccepted,
    PayoutRecipient,
    ProposePensionAccount,
    RecordBankCodeChange,
    RefusePensionAccount,
    RegisterReceivingAccount,
    SubmitPayoutChunk,
)
from mynumber_contracts.enrollment import ResidentAttributesChanged, ResidentDeceased

from services.benefits import domain
from services.benefits.bank_simulator import FaultPlan
from services.benefits.handlers import _account, register_account
from tests.benefits.conftest import ENROLLMENT, PAYING_AGENCY, PENSION, PORTAL, ZENGIN, Benefits, an_account, eventually
from tests.support.kafka import TopicReader


async def test_two_people_registering_one_account_at_the_same_moment_are_both_withheld(benefits: Benefits, monkeypatch):
    """Registrations from two partitions (or two instances) can each read the account's holders
    before the other has saved. Here the second registration runs, whole, between the first's
    save and its read; the second sees the first and withholds both, and the first, whose read
    missed the second, must not set itself active again."""
    first = benefits.ref(await benefits.resident(811, kana="サトウ ケン", kanji="佐藤 健", address="福岡県1"))
    second = benefits.ref(await benefits.resident(812, kana="サトウ ケン", kanji="加藤 健", address="福岡県1"))
    deps = benefits.running.service.deps
    store = deps.store
    shared = an_account(number="9000011", holder="サトウ ケン")
    accounts = {ref: _account(ref, shared, channel=AccountChannel.portal, source_id=f"reg-{ref}") for ref in (first, second)}
    read_holders = store.accounts_with_key
    second_facts: list = []
    interleaved = False

    async def the_other_registers_right_after_this_read(key: str):
        nonlocal interleaved
        holders = await read_holders(key)
        if not interleaved:
            interleaved = True
            second_facts.extend(await register_account(deps, accounts[second], now=benefits.clock.now(), actor=PORTAL))
        return holders

    monkeypatch.setattr(store, "accounts_with_key", the_other_registers_right_after_this_read)
    first_facts = await register_account(deps, accounts[first], now=benefits.clock.now(), actor=PORTAL)

    assert second_facts, "the second registration ran in the middle of the first"
    assert {(await store.account(ref)).status for ref in (first, second)} == {domain.AccountStatus.withheld}
    flagged = [f.person_ref for f in first_facts + second_facts if isinstance(f, AccountFlagged)]
    assert sorted(flagged) == sorted([first, second]), "each holder is flagged once"
    registered = {f.person_ref: f.withheld for f in first_facts + second_facts if isinstance(f, AccountRegistered)}
    assert registered == {first: True, second: True}


async def test_a_bank_merger_leaves_alone_an_account_registered_after_it_read_the_accounts(benefits: Benefits, monkeypatch):
    """The merger reads the renumbered bank's accounts, and before it invalidates them one holder
    registers an account at another bank (another partition, or another instance): that new
    account stays active and the holder is not told; the others of the old bank are invalidated."""
    movers = [benefits.ref(await benefits.resident(861 + i, kana="モリ アオイ", kanji="森 葵", address=f"京都府{i}"))
              for i in range(2)]
    deps = benefits.running.service.deps
    for i, person in enumerate(movers):
        await register_account(deps, _account(person, an_account(number=f"861000{i}", holder="モリ アオイ", bank="0009",
                                                                 branch="100"), channel=AccountChannel.portal,
                                              source_id=f"reg-861-{i}"), now=benefits.clock.now(), actor=PORTAL)
    read_accounts = deps.store.accounts_at_bank
    elsewhere = _account(movers[0], an_account(number="8619999", holder="モリ アオイ", bank="0010", branch="300"),
                         channel=AccountChannel.portal, source_id="reg-861-new")

    async def the_holder_registers_elsewhere_right_after_this_read(bank_code: str, branch_code: str | None):
        accounts = await read_accounts(bank_code, branch_code)
        await register_account(deps, elsewhere, now=benefits.clock.now(), actor=PORTAL)
        return accounts

    monkeypatch.setattr(deps.store, "accounts_at_bank", the_holder_registers_elsewhere_right_after_this_read)
    await benefits.send(RecordBankCodeChange(request_id="merger-861", old_bank_code="0009", old_branch_code="100",
                                             new_bank_code="0010", new_branch_code="300", effective_on="2026-07-01"),
                        subject="merger-861", source=ZENGIN)
    notices = await benefits.wait_fact(AccountInvalidated, request_id="merger-861")

    moved = await benefits.store.account(movers[0])
    assert (moved.source_id, moved.status) == ("reg-861-new", domain.AccountStatus.active), "the new account is not invalidated"
    assert (await benefits.store.account(movers[1])).status is domain.AccountStatus.invalidated
    assert [n["person_ref"] for n in notices] == [movers[1]]
    # Each holder told is audited before any notice goes out: the holder who moved was not.
    audit = (await benefits.http.get(f"/audit/persons/{movers[0]}")).json()
    assert "account_invalidated" not in [e["action"] for e in audit]


async def test_no_payment_goes_to_an_account_while_its_shared_account_check_runs(benefits: Benefits, monkeypatch):
    """A dispatch round in the middle of a registration neither pays the new account nor holds
    the payment for want of one: the payment waits in the queue and is paid once, after."""
    number = await benefits.resident(851, kana="キムラ ユイ", kanji="木村 結")
    person = benefits.ref(number)
    await benefits.send(AnnouncePayoutBatch(batch_id="b-851", programme="child_benefit", period="2026-06",
                                            recipient_count=1, total_yen=10_000, chunk_count=1),
                        subject="b-851", source=PAYING_AGENCY)
    await benefits.send(SubmitPayoutChunk(batch_id="b-851", chunk_index=0,
                                          recipients=[PayoutRecipient(my_number=number, amount_yen=10_000)]),
                        subject="b-851", source=PAYING_AGENCY)
    await benefits.wait_fact(PayoutBatchAccepted, batch_id="b-851")
    deps = benefits.running.service.deps
    read_holders = deps.store.accounts_with_key
    during: list[tuple[int, str]] = []

    async def a_dispatch_round_during_the_check(key: str):
        await benefits.http.post("/operations/dispatch")
        payment_id = domain.payment_id("child_benefit", "2026-06", person)
        during.append((len(benefits.bank.entries), (await benefits.http.get(f"/payments/{payment_id}")).json()["status"]))
        return await read_holders(key)

    monkeypatch.setattr(deps.store, "accounts_with_key", a_dispatch_round_during_the_check)
    account = _account(person, an_account(number="8510000", holder="キムラ ユイ"), channel=AccountChannel.portal,
                       source_id="reg-851")
    await register_account(deps, account, now=benefits.clock.now(), actor=PORTAL)

    assert during == [(0, "pending")], "nothing sent and nothing held while the account was being checked"
    assert benefits.of_type(PaymentHeld) == []
    assert (await benefits.store.account(person)).status is domain.AccountStatus.active
    await benefits.dispatch_until_idle()
    settled = await benefits.wait_fact(PaymentSettled, person_ref=person)
    assert len(settled) == 1 and [e.amount_yen for e in benefits.bank.entries] == [10_000]


async def test_a_withheld_account_holds_the_payment_until_the_operator_releases_it(benefits: Benefits):
    first = await benefits.resident(801, kana="ワタナベ ショウ", kanji="渡辺 翔", address="福岡県1")
    second = await benefits.resident(802, kana="ワタナベ ショウ", kanji="渡部 翔", address="福岡県1")
    shared = an_account(number="9000001", holder="ワタナベ ショウ")
    for i, number in enumerate((first, second)):
        await benefits.send(RegisterReceivingAccount(request_id=f"reg-{i}", my_number=number,
                                                     channel=AccountChannel.portal, account=shared),
                            subject=str(i), source=PORTAL)
    await benefits.wait_fact(AccountFlagged, 2)

    await benefits.send(AnnouncePayoutBatch(batch_id="b-withheld", programme="child_benefit", period="2026-06",
                                            recipient_count=1, total_yen=10_000, chunk_count=1),
                        subject="b-withheld", source=PAYING_AGENCY)
    await benefits.send(SubmitPayoutChunk(batch_id="b-withheld", chunk_index=0,
                                          recipients=[PayoutRecipient(my_number=first, amount_yen=10_000)]),
                        subject="b-withheld", source=PAYING_AGENCY)
    await benefits.wait_fact(PayoutBatchAccepted, batch_id="b-withheld")
    await benefits.dispatch_until_idle()
    held = (await benefits.wait_fact(PaymentHeld))[0]
    assert held["reason"] == "account_withheld" and held["person_ref"] == benefits.ref(first)
    assert benefits.bank.entries == []
    payment_id = domain.payment_id("child_benefit", "2026-06", benefits.ref(first))
    assert (await benefits.http.get(f"/payments/{payment_id}")).json()["status"] == "held"
    assert (await benefits.http.post(f"/payments/{payment_id}/retry")).status_code == 409

    flag_id = (await benefits.http.get("/flags")).json()[0]["flag_id"]
    response = await benefits.http.post(f"/flags/{flag_id}/resolve", json={
        "operator": "operator/kato", "reason": "both confirmed at the counter"})
    assert response.status_code == 200 and len(response.json()["released"]) == 2
    await benefits.dispatch_until_idle()
    settled = (await benefits.wait_fact(PaymentSettled))[0]
    assert settled["payment_id"] == payment_id and [e.amount_yen for e in benefits.bank.entries] == [10_000]
    assert (await benefits.http.get(f"/payments/{payment_id}")).json()["status"] == "settled"
    assert (await benefits.http.get("/payments/child_benefit:2026-06:pr_none")).status_code == 404


async def test_a_proposal_of_someone_elses_account_is_not_eligible(benefits: Benefits):
    number = await benefits.resident(811, kana="ヤマモト ミホ", kanji="山本 美穂")
    await benefits.send(ProposePensionAccount(proposal_id="pension-811", my_number=number, notified_on=date(2026, 6, 1),
                                              account=an_account(holder="ヤマモト タケシ")),
                        subject="pension-811", source=PENSION)
    concluded = (await benefits.wait_fact(OptOutConcluded, proposal_id="pension-811"))[0]
    assert concluded["outcome"] == "not_eligible" and "family member" in concluded["message"]
    sweep = await benefits.http.post("/operations/opt-out-sweep", params={"as_of": "2026-09-01"})
    assert sweep.json()["proposals"] == {}
    assert benefits.of_type(AccountRegistered) == []


async def test_a_refusal_for_an_unknown_proposal_and_a_contradicting_header_are_dead_lettered(benefits: Benefits, servers):
    number = await benefits.resident(821, kana="ハヤシ レン", kanji="林 蓮")
    header = AnnouncePayoutBatch(batch_id="b-821", programme="child_benefit", period="2026-06",
                                 recipient_count=1, total_yen=5_000, chunk_count=1)
    async with TopicReader(servers.kafka_bootstrap, benefits.running.service.topics.dead_letter) as dead_letters:
        await benefits.send(RefusePensionAccount(proposal_id="pension-none", my_number=number, received_on=date(2026, 6, 2)),
                            subject="pension-none", source=PENSION)
        await benefits.send(header, subject="b-821", source=PAYING_AGENCY)
        await benefits.send(header.model_copy(update={"total_yen": 6_000}), subject="b-821", source=PAYING_AGENCY)
        letters = await dead_letters.wait_count(2)
    details = sorted(letter.header("dlq_detail") for letter in letters)
    assert "announced before with other control totals" in details[0]
    assert "no pension proposal 'pension-none'" in details[1]
    assert all(number.reveal() not in d for d in details)
    assert (await benefits.http.get("/batches/b-821")).json()["total_yen"] == 5_000


async def test_while_the_bank_answers_500_the_payment_stays_pending_and_the_statement_settles_it_once(benefits: Benefits):
    number = await benefits.resident(831, kana="モリ サクラ", kanji="森 桜")
    await benefits.send(RegisterReceivingAccount(request_id="reg-831", my_number=number, channel=AccountChannel.portal,
                                                 account=an_account(number="8310000", holder="モリ サクラ")),
                        subject="831", source=PORTAL)
    await benefits.wait_fact(AccountRegistered, request_id="reg-831")
    benefits.bank.faults = FaultPlan(error_500_every=1)
    await benefits.send(AnnouncePayoutBatch(batch_id="b-831", programme="child_benefit", period="2026-06",
                                            recipient_count=1, total_yen=7_000, chunk_count=1),
                        subject="b-831", source=PAYING_AGENCY)
    await benefits.send(SubmitPayoutChunk(batch_id="b-831", chunk_index=0,
                                          recipients=[PayoutRecipient(my_number=number, amount_yen=7_000)]),
                        subject="b-831", source=PAYING_AGENCY)
    await benefits.wait_fact(PayoutBatchAccepted, batch_id="b-831")
    response = await benefits.http.post("/operations/dispatch")
    assert response.json()["payments_handled"] == 0
    payment_id = domain.payment_id("child_benefit", "2026-06", benefits.ref(number))
    assert (await benefits.http.get(f"/payments/{payment_id}")).json()["status"] == "pending"
    assert benefits.bank.requests == 4 and benefits.bank.entries == [], "four tries, nothing booked"

    # Now the bank books the transfer but still answers 500: the statement shows the money moved.
    benefits.bank.faults = FaultPlan(error_500_after_booking_every=1)
    await benefits.http.post("/operations/dispatch")
    assert len(benefits.bank.entries) == 1
    # A round reads the statement while it sends, so the next round's reading finds the credit
    # (and its sending, to the same key, books nothing new).
    await benefits.http.post("/operations/dispatch")
    assert len(benefits.bank.entries) == 1
    await benefits.wait_fact(PaymentSettled, payment_id=payment_id)
    assert benefits.of_type(PaymentSent, payment_id=payment_id) == [], "the bank's acceptance was lost (the contract says so)"
    assert (await benefits.http.get(f"/payments/{payment_id}")).json()["status"] == "settled"
    benefits.bank.faults = FaultPlan()
    requests = benefits.bank.requests
    await benefits.dispatch_until_idle()
    assert benefits.bank.requests == requests, "settled by the statement: not sent again"
    assert len(benefits.bank.entries) == 1
    report = (await benefits.http.get("/batches/b-831/reconciliation")).json()
    assert report["paid"] == {"count": 1, "total_yen": 7_000} and report["pending"]["count"] == 0
    assert report["balanced"] and report["matches_bank_statement"]


async def test_the_read_model_follows_name_changes_and_deaths_from_enrollment(benefits: Benefits):
    number = await benefits.resident(841, kana="オオタ ナオ", kanji="太田 奈緒", address="札幌市1")
    person_ref = benefits.ref(number)
    married = ResidentAttributes(name_kanji="木村 奈緒", name_kana="キムラ ナオ", date_of_birth=date(1985, 5, 5),
                                 sex=Sex.female, address="札幌市1")
    changed = ResidentAttributesChanged(person_ref=person_ref, attributes=married, changed=["name_kanji", "name_kana"],
                                        effective_on=date(2026, 6, 1), signing_certificate_invalidated=True)
    await benefits.partner.send_record(changed.topic(benefits.namespace),
                                       benefits.partner.record(changed, subject=person_ref, source=ENROLLMENT))
    await eventually(lambda: _has_kana(benefits, person_ref, "キムラ ナオ"), what="the new name in the read model")

    async def register(request_id: str, holder: str) -> dict:
        await benefits.send(RegisterReceivingAccount(request_id=request_id, my_number=number, channel=AccountChannel.portal,
                                                     account=an_account(number="8410000", holder=holder)),
                            subject=request_id, source=PORTAL)
        await benefits.facts.wait_for(lambda records: any(r.json().get("request_id") == request_id for r in records),
                                      what=request_id)
        return next(r.json() for r in benefits.facts.records if r.json().get("request_id") == request_id)

    assert (await register("old-name", "オオタ ナオ"))["reason"] == "holder_name_mismatch"
    assert (await register("new-name", "キムラ ナオ"))["withheld"] is False
    death = ResidentDeceased(person_ref=person_ref, died_on=date(2026, 6, 10))
    await benefits.partner.send_record(death.topic(benefits.namespace),
                                       benefits.partner.record(death, subject=person_ref, source=ENROLLMENT))
    await eventually(lambda: _has_status(benefits, person_ref, "deceased"), what="the death in the read model")
    assert (await register("after-death", "キムラ ナオ"))["reason"] == "resident_deceased"


async def _has_kana(benefits: Benefits, person_ref: str, kana: str) -> bool:
    resident = await benefits.store.resident(person_ref)
    return resident is not None and resident.name_kana == kana


async def _has_status(benefits: Benefits, person_ref: str, status: str) -> bool:
    resident = await benefits.store.resident(person_ref)
    return resident is not None and resident.status.value == status


async def test_a_queued_payment_counts_as_settled_when_the_statement_credited_any_of_its_attempts(benefits: Benefits):
    store = benefits.store
    credited_at = benefits.clock.now()
    await store.record_settlements([
        {"_id": domain.transfer_key("child_benefit:2026-06:ref-a", 1), "payment_id": "child_benefit:2026-06:ref-a",
         "batch_id": "b-900", "amount_yen": 5_000, "transfer_id": "t-1", "settled_at": credited_at, "statement_sequence": 1},
    ])
    queued = [
        {"_id": "child_benefit:2026-06:ref-a", "attempt": 2},  # its first attempt was credited
        {"_id": "child_benefit:2026-06:ref-b", "attempt": 3},  # never credited
    ]

    assert await store.settled_payment_ids(queued) == {"child_benefit:2026-06:ref-a"}
    assert await store.settled_payment_ids([]) == set()
    assert await store.payments_by_id([]) == {}


async def test_the_holders_of_an_account_are_found_by_its_key_and_checked_against_the_accounts(benefits: Benefits):
    """`accounts_with_key` reads a lookup document, which is written before the account and never
    cleaned: someone who has moved to another account, or whose save never happened, is left out."""
    store = benefits.store
    now = benefits.clock.now()
    first, second, third, crashed = "pr_holder_first", "pr_holder_second", "pr_holder_third", "pr_holder_crashed"
    shared, other = an_account(number="8600001"), an_account(number="8600002")
    await store.save_account(_account(first, shared, channel=AccountChannel.portal, source_id="h-1"), now=now)
    await store.save_account(_account(first, other, channel=AccountChannel.portal, source_id="h-2"), now=now)  # moved
    await store.save_account(_account(second, shared, channel=AccountChannel.portal, source_id="h-3"), now=now)
    key = _account(second, shared, channel=AccountChannel.portal, source_id="h-3").key
    await store.account_holders.update_one({"_id": key}, {"$addToSet": {"person_refs": crashed}})  # lookup, no account
    await store.import_accounts([_account(third, shared, channel=AccountChannel.portal, source_id="import-3")], now=now)

    assert sorted(a.person_ref for a in await store.accounts_with_key(key)) == [second, third]
    other_key = _account(first, other, channel=AccountChannel.portal, source_id="h-2").key
    assert [a.person_ref for a in await store.accounts_with_key(other_key)] == [first]
    assert await store.accounts_with_key("no-such-key") == []


async def _move(benefits: Benefits, number, *, kana: str, kanji: str, address: str) -> None:
    person_ref = benefits.ref(number)
    moved = ResidentAttributes(name_kanji=kanji, name_kana=kana, date_of_birth=date(1985, 5, 5), sex=Sex.female,
                               address=address)
    changed = ResidentAttributesChanged(person_ref=person_ref, attributes=moved, changed=["address"],
                                        effective_on=date(2026, 7, 1), signing_certificate_invalidated=False)
    await benefits.partner.send_record(changed.topic(benefits.namespace),
                                       benefits.partner.record(changed, subject=person_ref, source=ENROLLMENT))
    await eventually(lambda: _has_address(benefits, person_ref, address), what="the new address in the read model")


async def _has_address(benefits: Benefits, person_ref: str, address: str) -> bool:
    resident = await benefits.store.resident(person_ref)
    return resident is not None and resident.address == address


async def _register(benefits: Benefits, number, request_id: str, account) -> None:
    await benefits.send(RegisterReceivingAccount(request_id=request_id, my_number=number, channel=AccountChannel.portal,
                                                 account=account), subject=request_id, source=PORTAL)
    await benefits.wait_fact(AccountRegistered, request_id=request_id)


async def test_a_move_that_makes_a_shared_account_suspicious_withholds_and_flags_every_holder(benefits: Benefits):
    """Two members of one household (same surname and address) share an account: not suspicious.
    One moves away: now the account is shared across addresses, so both are withheld and flagged."""
    mother = await benefits.resident(861, kana="ハヤシ ミキ", kanji="林 美紀", address="仙台市青葉区1")
    daughter = await benefits.resident(862, kana="ハヤシ ミキ", kanji="林 美紀", address="仙台市青葉区1")
    household = an_account(number="8610000", holder="ハヤシ ミキ")
    await _register(benefits, mother, "reg-861", household)
    await _register(benefits, daughter, "reg-862", household)
    assert benefits.of_type(AccountFlagged) == []

    await _move(benefits, daughter, kana="ハヤシ ミキ", kanji="林 美紀", address="大阪市北区2")

    flagged = await benefits.wait_fact(AccountFlagged, 2)
    assert sorted(f["person_ref"] for f in flagged) == sorted(benefits.ref(n) for n in (mother, daughter))
    for number in (mother, daughter):
        assert (await benefits.store.account(benefits.ref(number))).status is domain.AccountStatus.withheld


async def test_a_move_does_not_flag_sharing_that_was_suspicious_before_and_kept_by_an_operator(benefits: Benefits):
    first = await benefits.resident(871, kana="イノウエ ジュン", kanji="井上 純", address="神戸市1")
    second = await benefits.resident(872, kana="イノウエ ジュン", kanji="井ノ上 純", address="神戸市1")
    shared = an_account(number="8710000", holder="イノウエ ジュン")
    await _register(benefits, first, "reg-871", shared)
    await _register(benefits, second, "reg-872", shared)
    await benefits.wait_fact(AccountFlagged, 2)
    flag_id = (await benefits.http.get("/flags")).json()[0]["flag_id"]
    response = await benefits.http.post(f"/flags/{flag_id}/resolve", json={
        "operator": "operator/kato", "reason": "one family, two spellings, confirmed at the counter"})
    assert response.status_code == 200

    await _move(benefits, second, kana="イノウエ ジュン", kanji="井ノ上 純", address="神戸市2")
    await _move(benefits, second, kana="イノウエ ジュン", kanji="井ノ上 純", address="神戸市3")

    assert len(benefits.of_type(AccountFlagged)) == 2, "only the first registration's flags"
    for number in (first, second):
        assert (await benefits.store.account(benefits.ref(number))).status is domain.AccountStatus.active
