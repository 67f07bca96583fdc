"""Receiving accounts (portal, tax returns, bank counters, the pension opt-out route) and a
child-benefit payout batch through the bank simulator."""

from __future__ import annotations

import random
from datetime import date

from mynumber_contracts.benefits import (
    MAX_CHUNK_RECIPIENTS,
    AccountChannel,
    AnnouncePayoutBatch,
    BankAccount,
    PayoutRecipient,
    ProposePensionAccount,
    RefusePensionAccount,
    RegisterReceivingAccount,
    SubmitPayoutChunk,
)

from .population import GIVEN_FEMALE, GIVEN_MALE, Person
from .runner import Outgoing

CHANNEL_SOURCE = {
    AccountChannel.portal: "portal/myna", AccountChannel.tax_return: "tax-agency/nta",
    AccountChannel.bank_counter: "bank/0001",
}
PENSION_SERVICE = "pension-service/jp"
PAYING_AGENCY = "paying-agency/child-benefit"


def _account(rng: random.Random, holder_kana: str) -> BankAccount:
    return BankAccount(bank_code=rng.choice(["0001", "0005", "0009"]), branch_code=f"{rng.randint(1, 999):03d}",
                       account_number=f"{rng.randint(0, 9_999_999):07d}", holder_name_kana=holder_kana)


def accounts(adults: list[Person], children: list[Person], rng: random.Random) -> list[Outgoing]:
    """Most register their own account (parents open one in each child's name for child benefit);
    a few type a family member's; one account is shared by three people."""
    events = []
    registering = [p for p in adults if rng.random() < 0.6] + [c for c in children if rng.random() < 0.9]
    for index, person in enumerate(registering):
        channel = rng.choice(list(CHANNEL_SOURCE))
        kana = person.attributes.name_kana
        if index % 40 == 7:  # a parent's account typed in: same surname, another given name
            given = rng.choice(GIVEN_MALE + GIVEN_FEMALE)[1]
            kana = f"{person.surname_kana} {given}" if given not in kana else f"{person.surname_kana} タロウ"
        events.append(Outgoing(
            RegisterReceivingAccount(request_id=f"acct-{index:06d}", my_number=person.number, channel=channel,
                                     account=_account(rng, kana)),
            CHANNEL_SOURCE[channel], person.digits,
        ))
    shared = [p for p in adults if p not in registering][:3]  # a shared terminal: one account, three people
    if len(shared) == 3:
        account = _account(rng, shared[0].attributes.name_kana)
        for index, person in enumerate(shared):
            same_account = account.model_copy(update={"holder_name_kana": person.attributes.name_kana})
            events.append(Outgoing(
                RegisterReceivingAccount(request_id=f"acct-shared-{index}", my_number=person.number,
                                         channel=AccountChannel.bank_counter, account=same_account),
                "bank/0001", person.digits,
            ))
    return events


def pension_proposals(adults_without_account: list[Person], today: date, rng: random.Random) -> list[Outgoing]:
    """The opt-out route: the pension service proposes its account; some holders refuse by postcard."""
    events = []
    for index, person in enumerate(adults_without_account):
        if rng.random() > 0.3:
            continue
        proposal_id = f"pension-{index:06d}"
        events.append(Outgoing(
            ProposePensionAccount(proposal_id=proposal_id, my_number=person.number, notified_on=today,
                                  account=_account(rng, person.attributes.name_kana)),
            PENSION_SERVICE, person.digits,
        ))
        if index % 4 == 0:
            events.append(Outgoing(RefusePensionAccount(proposal_id=proposal_id, my_number=person.number,
                                                        received_on=today), PENSION_SERVICE, person.digits))
    return events


def child_benefit_batch(children: list[Person], batch_id: str, period: str) -> list[Outgoing]:
    """Header first (control totals), then chunks, each keyed on its own so the service takes them in
    side by side (a chunk that overtakes the header waits for it)."""
    recipients = [PayoutRecipient(my_number=c.number, amount_yen=15_000 if "infant" in c.tags else 10_000)
                  for c in children]
    chunk_size = min(MAX_CHUNK_RECIPIENTS, 1000)
    chunks = [recipients[i:i + chunk_size] for i in range(0, len(recipients), chunk_size)]
    events = [Outgoing(
        AnnouncePayoutBatch(batch_id=batch_id, programme="child_benefit", period=period, recipient_count=len(recipients),
                            total_yen=sum(r.amount_yen for r in recipients), chunk_count=len(chunks)),
        PAYING_AGENCY, batch_id,
    )]
    events += [Outgoing(SubmitPayoutChunk(batch_id=batch_id, chunk_index=i, recipients=chunk), PAYING_AGENCY,
                        f"{batch_id}/{i}") for i, chunk in enumerate(chunks)]
    return events
