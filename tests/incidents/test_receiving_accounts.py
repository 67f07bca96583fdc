"""Incidents (facts §5): 748 public-fund receiving accounts were registered to the wrong person
because a shared terminal was not logged out between customers; about 130,000 people registered
a family member's account.

Replayed end to end: residents are registered through enrollment (benefits learns them from its
facts through Kafka), accounts are registered at one shared terminal one session after another,
and then a child-benefit payout batch is paid through the bank gateway. The money is what counts:
the bank simulator's ledger shows which account every yen reached.
"""

from __future__ import annotations

from datetime import date

from mynumber_contracts.benefits import (
    AccountChannel,
    AnnouncePayoutBatch,
    BankAccount,
    PayoutRecipient,
    RegisterReceivingAccount,
    SubmitPayoutChunk,
)

from tests.incidents.support import a_number, person, running_platform

TERMINAL = "portal/myna"  # the support desk's shared terminal, acting for whoever is logged in
PAYING_AGENCY = "paying-agency/child-benefit"
REGISTERED = "jp.mynumber.enrollment.resident_registered.v1"
BENEFITS = "jp.mynumber.benefits."
PERIOD = "2026-06"


def account(number: str, holder_kana: str) -> BankAccount:
    return BankAccount(bank_code="0005", branch_code="123", account_number=number, holder_name_kana=holder_kana)


def key(bank_account: BankAccount) -> str:
    return f"{bank_account.bank_code}-{bank_account.branch_code}-{bank_account.account_number}"


async def pay(platform, batch_id: str, recipients: list[tuple[object, int]]) -> None:
    await platform.send(AnnouncePayoutBatch(batch_id=batch_id, programme="child_benefit", period=PERIOD,
                                            recipient_count=len(recipients), total_yen=sum(a for _, a in recipients),
                                            chunk_count=1), source=PAYING_AGENCY, subject=batch_id)
    await platform.send(SubmitPayoutChunk(batch_id=batch_id, chunk_index=0, recipients=[
        PayoutRecipient(my_number=number, amount_yen=amount) for number, amount in recipients]),
        source=PAYING_AGENCY, subject=batch_id)


def payment_id(platform, number) -> str:
    return f"child_benefit:{PERIOD}:{platform.ref(number)}"


async def test_an_account_entered_at_a_shared_terminal_after_another_persons_session_is_refused_or_flagged(
        servers, settings_for, namespace):
    yamada, suzuki = a_number(40300000001), a_number(40300000002)
    sato_ken, sato_kenji = a_number(40300000003), a_number(40300000004)  # the same name in kana, other kanji and homes
    people = {
        yamada: person("山田 太郎", "ヤマダ タロウ", address="東京都千代田区永田町1-1-1"),
        suzuki: person("鈴木 一郎", "スズキ イチロウ", address="東京都千代田区神田2-2-2"),
        sato_ken: person("佐藤 健", "サトウ ケン", address="東京都千代田区丸の内3-3-3"),
        sato_kenji: person("佐藤 謙", "サトウ ケン", address="東京都千代田区霞が関4-4-4", born=date(1988, 1, 9)),
    }
    own = {yamada: account("1000001", "ヤマダ タロウ"), suzuki: account("1000002", "スズキ イチロウ"),
           sato_ken: account("1000003", "サトウ ケン"), sato_kenji: account("1000004", "サトウ ケン")}
    async with running_platform(servers, settings_for, namespace, {"enrollment": 1, "benefits": 1}) as platform:
        for index, (number, attributes) in enumerate(people.items()):
            await platform.register(number, attributes, request_id=f"reg-{index}")
        await platform.consumed("benefits", REGISTERED, len(people))

        # One terminal, one session after another, in this order; two sessions were never logged out.
        sessions = [
            ("s1", yamada, own[yamada]),
            ("s2", yamada, own[suzuki]),  # Suzuki at the terminal, Yamada still logged in
            ("s3", suzuki, own[suzuki]),
            ("s4", sato_ken, own[sato_ken]),
            ("s5", sato_ken, own[sato_kenji]),  # Sato Kenji at the terminal, Sato Ken still logged in
            ("s6", sato_kenji, own[sato_kenji]),
        ]
        for request_id, number, bank_account in sessions:
            await platform.send(RegisterReceivingAccount(request_id=request_id, my_number=number,
                                                         channel=AccountChannel.portal, account=bank_account),
                                source=TERMINAL, subject=TERMINAL)
        refused = await platform.fact("benefits", BENEFITS + "account_registration_refused.v1", request_id="s2")
        flagged = await platform.fact("benefits", BENEFITS + "account_flagged.v1", 2)

        await pay(platform, "child-benefit-2026-06-terminal", [(n, 10_000) for n in people])
        sent = await platform.fact("benefits", BENEFITS + "payment_settled.v1", 2)
        held = await platform.fact("benefits", BENEFITS + "payment_held.v1", 2)
        ledger = platform.bank.entries

    assert refused[0]["person_ref"] == platform.ref(yamada) and refused[0]["reason"] == "holder_name_mismatch"
    assert {f["person_ref"] for f in flagged} == {platform.ref(sato_ken), platform.ref(sato_kenji)}
    assert {f["person_ref"] for f in held} == {platform.ref(sato_ken), platform.ref(sato_kenji)}
    assert all(f["reason"] == "account_withheld" for f in held)
    assert {f["person_ref"] for f in sent} == {platform.ref(yamada), platform.ref(suzuki)}
    credited = {entry.end_to_end_id: entry.account for entry in ledger}
    assert credited == {payment_id(platform, yamada): key(own[yamada]), payment_id(platform, suzuki): key(own[suzuki])}, \
        "money reached only its owners' own accounts, once each"


async def test_a_family_members_account_is_refused_and_the_benefit_reaches_the_holder_once_own_account_is_given(
        servers, settings_for, namespace):
    ito = a_number(40300000011)
    spouse_account = account("2000001", "イトウ タロウ")  # her husband's account: same surname, another given name
    own_account = account("2000002", "イトウ ハナコ")
    async with running_platform(servers, settings_for, namespace, {"enrollment": 1, "benefits": 1}) as platform:
        await platform.register(ito, person("伊藤 花子", "イトウ ハナコ", address="東京都千代田区神田5-5-5"), request_id="reg-ito")
        await platform.consumed("benefits", REGISTERED, 1)
        await platform.send(RegisterReceivingAccount(request_id="family", my_number=ito, channel=AccountChannel.tax_return,
                                                     account=spouse_account), source=TERMINAL, subject=ito.reveal())
        refused = await platform.fact("benefits", BENEFITS + "account_registration_refused.v1", request_id="family")
        await pay(platform, "child-benefit-2026-06-family", [(ito, 15_000)])
        held = await platform.fact("benefits", BENEFITS + "payment_held.v1", person_ref=platform.ref(ito))
        nothing_paid_yet = list(platform.bank.entries)

        await platform.send(RegisterReceivingAccount(request_id="own", my_number=ito, channel=AccountChannel.portal,
                                                     account=own_account), source=TERMINAL, subject=ito.reveal())
        await platform.fact("benefits", BENEFITS + "payment_settled.v1", person_ref=platform.ref(ito))  # on the statement
        ledger = list(platform.bank.entries)

    assert refused[0]["reason"] == "family_member_account"
    assert held[0]["reason"] == "no_account" and nothing_paid_yet == []
    assert [(e.end_to_end_id, e.account, e.amount_yen) for e in ledger] == [
        (payment_id(platform, ito), key(own_account), 15_000)], "paid once, into her own account"
    assert all(e.account != key(spouse_account) for e in ledger)
