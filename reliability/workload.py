"""A mixed partner workload through all four services, with the outcome each event must have.

Built from the demo's synthetic population (`mynumber_cli.demo.population`) and its
enrollment traffic builders, in three phases, as a day at the agencies would go:

1. the resident registry (municipalities; post-office delegations);
2. the day's traffic, interleaved across people but in order per person: card applications
   (a few people apply twice, on two channels, in the same second), lost and found cards,
   insurers enrolling members (most match the registry on all five attributes; some differ in
   the address or come without the number and must be held), receiving accounts (most in the
   holder's own name; some in a family member's name and must be refused);
3. licences recorded by the police, and a child-benefit payout batch (header and chunks) for
   everyone with an account.

Every request has an explicit, deterministic event id, so a resend after a broker outage is
the same event. `Expected` says what must exist at the end; `audit.py` checks it.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from mynumber_cli.demo import enrollment_traffic, population
from mynumber_cli.demo.licensing_traffic import POLICE, licence_number
from mynumber_cli.demo.runner import Outgoing
from mynumber_contracts.benefits import (
    AccountChannel,
    AnnouncePayoutBatch,
    BankAccount,
    PayoutRecipient,
    RegisterReceivingAccount,
    SubmitPayoutChunk,
)
from mynumber_contracts.enrollment import ApplyForCard, Channel, ReportCardFound, ReportCardLost
from mynumber_contracts.insurance import EnrollMember
from mynumber_contracts.licensing import HolderChoice, LicenceClass, LicenceTransaction, RecordLicence

EVENT_ID_NAMESPACE = uuid.UUID("0b6f3c2e-8d1a-4f57-9c1e-2a4b6d8f0e13")
INSURERS = ("06130012", "01130012")
PAYING_AGENCY = "paying-agency/child-benefit"
PORTAL = "portal/myna"
CHUNK_SIZE = 500
EVENTS_PER_PERSON = 4.2  # what one person brings on average, to size the population from an event count


def event_id(*parts: object) -> str:
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, "/".join(str(p) for p in parts)))


def outgoing(payload, source: str, subject: str, *parts: object) -> Outgoing:
    return Outgoing(payload, source, subject, event_id(*parts))


@dataclass
class Expected:
    """What must exist when everything has settled, by business key."""

    residents: set[str] = field(default_factory=set)  # person index keys (digits are never kept here)
    cards: set[int] = field(default_factory=set)  # people who must hold exactly one active card
    lost_and_found: set[int] = field(default_factory=set)  # suspended, then resumed, in this order
    linked_members: dict[str, int] = field(default_factory=dict)  # member key -> person index
    held_members: dict[str, str] = field(default_factory=dict)  # member key -> held reason
    accounts: set[int] = field(default_factory=set)
    refused_accounts: set[int] = field(default_factory=set)  # family members' accounts
    licences: dict[str, int] = field(default_factory=dict)  # licence number -> person index
    payments: dict[int, int] = field(default_factory=dict)  # person index -> amount in yen
    batch_id: str = ""
    programme: str = "child_benefit"
    period: str = ""


@dataclass
class Phase:
    name: str
    events: list[Outgoing]


@dataclass
class Workload:
    people: list[population.Person]
    phases: list[Phase]
    expected: Expected

    @property
    def total(self) -> int:
        return sum(len(p.events) for p in self.phases)


def _interleave(per_person: list[list[Outgoing]], rng: random.Random) -> list[Outgoing]:
    """Merge the people's event lists at random, keeping each person's own order."""
    queues = [list(reversed(events)) for events in per_person if events]
    merged: list[Outgoing] = []
    while queues:
        index = rng.randrange(len(queues))
        merged.append(queues[index].pop())
        if not queues[index]:
            queues[index] = queues[-1]
            queues.pop()
    return merged


def _family_name(person: population.Person) -> str:
    """Same surname, another given name: a family member's account."""
    surname = person.surname_kana
    given = person.attributes.name_kana.split(" ", 1)[-1]
    other = "ハナコ" if given != "ハナコ" else "タロウ"
    return f"{surname} {other}"


def build(target_events: int, *, seed: int = 2026, today: date | None = None) -> Workload:
    today = today or datetime.now(UTC).date()
    rng = random.Random(seed)
    count = max(20, round(target_events / EVENTS_PER_PERSON))
    people = population.generate(count, today, seed)
    for person in people:  # abroad residents apply through embassies: kept out for clear expectations
        person.moved_abroad_on = None
        person.tags.discard("abroad")
    expected = Expected()
    expected.period = f"{today.year:04d}-{today.month:02d}"
    expected.batch_id = f"child-benefit-{today:%Y%m}-{seed}"

    registry = Phase("resident registry", [
        *[Outgoing(e.payload, e.source, e.subject, event_id("delegation", e.source)) for e in enrollment_traffic.delegations()],
        *[Outgoing(e.payload, e.source, e.subject, event_id("register", e.payload.request_id))
          for e in enrollment_traffic.registrations(people)],
    ])
    expected.residents = {str(i) for i in range(len(people))}

    per_person: list[list[Outgoing]] = []
    for index, person in enumerate(people):
        events: list[Outgoing] = []
        office = enrollment_traffic.municipality_id(person.municipality)
        photo = None if "infant" in person.tags else f"photo://app-{index}"
        events.append(outgoing(ApplyForCard(application_id=f"app-{index:07d}", channel=Channel.municipal_office,
                                            office_id=office, my_number=person.digits, applied_on=today, photo_ref=photo),
                               office, person.digits, "apply", index))
        expected.cards.add(index)
        post_office = enrollment_traffic.POST_OFFICES.get(person.municipality)
        if post_office and index % 29 == 3:  # the same person, the same second, another channel: one card
            events.append(outgoing(ApplyForCard(application_id=f"app-{index:07d}-po", channel=Channel.post_office,
                                                office_id=post_office, my_number=person.digits, applied_on=today,
                                                photo_ref=photo), post_office, person.digits, "apply-po", index))
        if index % 10 == 7:
            events.append(outgoing(ReportCardLost(request_id=f"lost-{index}", my_number=person.digits, office_id=office),
                                   office, person.digits, "lost", index))
            events.append(outgoing(ReportCardFound(request_id=f"found-{index}", my_number=person.digits, office_id=office),
                                   office, person.digits, "found", index))
            expected.lost_and_found.add(index)
        insurer = INSURERS[index % len(INSURERS)]
        member = {"insurer_number": insurer, "member_symbol": f"F{index // 1000}", "member_number": f"{index:07d}"}
        key = f"{insurer}/{member['member_symbol']}/{member['member_number']}"
        attributes, number = person.attributes, person.number
        if index % 20 == 11:
            attributes = attributes.model_copy(update={"address": attributes.address + "別館"})
            expected.held_members[key] = "attribute_mismatch"
        elif index % 20 == 13:
            number = None
            expected.held_members[key] = "number_missing"
        else:
            expected.linked_members[key] = index
        events.append(outgoing(EnrollMember(request_id=f"enroll-{index}", **member, my_number=number, attributes=attributes,
                                            enrolled_on=today - timedelta(days=30)),
                               f"insurer/{insurer}", person.digits, "enroll", index))
        if "adult" in person.tags or "foreign" in person.tags:
            family = index % 19 == 5
            holder = _family_name(person) if family else person.attributes.name_kana
            account = BankAccount(bank_code="0005", branch_code=f"{100 + index % 800:03d}",
                                  account_number=f"{1_000_000 + index:07d}", holder_name_kana=holder)
            events.append(outgoing(RegisterReceivingAccount(request_id=f"acct-{index}", my_number=person.number,
                                                            channel=AccountChannel.portal, account=account),
                                   PORTAL, person.digits, "account", index))
            (expected.refused_accounts if family else expected.accounts).add(index)
        per_person.append(events)
    daily = Phase("the day's traffic", _interleave(per_person, rng))

    last: list[Outgoing] = []
    for index, person in enumerate(people):
        if index % 5 == 1 and "adult" in person.tags:
            number = licence_number(rng)
            issued = today - timedelta(days=index % 30)
            last.append(outgoing(RecordLicence(
                request_id=f"lic-{index:06d}", my_number=person.number, transaction=LicenceTransaction.renewal,
                holder_choice=list(HolderChoice)[index % 3], licence_number=number, issued_on=issued,
                expires_on=issued + timedelta(days=5 * 365), classes=[LicenceClass.ordinary], conditions=[],
                photo_ref=f"photo/police/tokyo/{index:06d}"), POLICE, person.digits, "licence", index))
            expected.licences[number] = index
    recipients = [(index, 10_000 + 5_000 * (index % 3)) for index in sorted(expected.accounts)]
    expected.payments = dict(recipients)
    chunks = [recipients[i:i + CHUNK_SIZE] for i in range(0, len(recipients), CHUNK_SIZE)]
    payouts = [outgoing(AnnouncePayoutBatch(batch_id=expected.batch_id, programme=expected.programme,
                                            period=expected.period, recipient_count=len(recipients),
                                            total_yen=sum(a for _, a in recipients), chunk_count=len(chunks)),
                        PAYING_AGENCY, expected.batch_id, "batch", expected.batch_id)]
    for position, chunk in enumerate(chunks):
        payouts.append(outgoing(SubmitPayoutChunk(batch_id=expected.batch_id, chunk_index=position, recipients=[
            PayoutRecipient(my_number=people[i].number, amount_yen=amount) for i, amount in chunk]),
            PAYING_AGENCY, f"{expected.batch_id}/{position}", "chunk", expected.batch_id, position))
    closing = Phase("licences and payouts", _interleave([last, payouts], rng))
    return Workload(people, [registry, daily, closing], expected)


def slices(events: list[Outgoing], size: int) -> Iterator[list[Outgoing]]:
    for start in range(0, len(events), size):
        yield events[start:start + size]
