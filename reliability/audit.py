"""Counting what a scenario left behind, and what is missing or doubled.

- effects: documents in each service's database, counted by their business keys;
- facts: every record on the four fact topics (same id with different bytes is a duplicate);
- the bank simulator's ledger: a payment credited more than once is a duplicate;
- dead letters and quarantined events, with their reasons.

Lost means an expected effect is missing; duplicated means a business key holds more than
one effect (or an output id was reused for other content, or the bank paid twice).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from mynumber_contracts import topics

if TYPE_CHECKING:
    from .harness import Scenario

ENROLLMENT = "jp.mynumber.enrollment."
INSURANCE = "jp.mynumber.insurance."
BENEFITS = "jp.mynumber.benefits."
LICENSING = "jp.mynumber.licensing."


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    @property
    def id(self) -> str:
        return self.headers.get("ce_id", "")

    @property
    def type(self) -> str:
        return self.headers.get("ce_type", "")

    def json(self) -> dict[str, Any]:
        return json.loads(self.value)

    def original_header(self, name: str) -> str | None:
        """For dead letters and quarantined events: a header of the original record."""
        for header, value in json.loads(self.headers.get("dlq_original_headers", "[]")):
            if header == name:
                return base64.b64decode(value).decode(errors="replace")
        return None


@dataclass
class Figures:
    scenario: str
    events: int = 0  # distinct partner events of the workload
    records_sent: int = 0  # every record published (duplicates and poison included)
    poison_sent: int = 0
    effects: dict[str, int] = field(default_factory=dict)
    facts_published: int = 0
    distinct_facts: int = 0
    facts_by_type: Counter[str] = field(default_factory=Counter)  # distinct ids per event type
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    order_violations: list[str] = field(default_factory=list)
    dead_lettered: Counter[str] = field(default_factory=Counter)  # "service: reason"
    quarantined: Counter[str] = field(default_factory=Counter)  # reason
    poison_unaccounted: list[str] = field(default_factory=list)
    poison_outcomes: dict[str, Counter[str]] = field(default_factory=dict)  # kind -> where it went, and why
    bank: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    timings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    control: Figures | None = None  # the audit of a deliberately damaged copy (see scenarios.prove_the_audit_sees)

    @property
    def passed(self) -> bool:
        return not (self.lost or self.duplicated or self.order_violations or self.poison_unaccounted)

    def summary(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario, "events": self.events, "records_sent": self.records_sent,
            "poison_sent": self.poison_sent, "effects": self.effects, "facts_published": self.facts_published,
            "distinct_facts": self.distinct_facts,
            "facts_by_type": dict(sorted(self.facts_by_type.items())), "lost": len(self.lost), "duplicated": len(self.duplicated),
            "order_violations": len(self.order_violations), "lost_examples": self.lost[:10],
            "duplicated_examples": self.duplicated[:10], "order_examples": self.order_violations[:10],
            "dead_lettered": dict(self.dead_lettered), "quarantined": dict(self.quarantined),
            "poison_unaccounted": self.poison_unaccounted[:10],
            "poison_outcomes": {kind: dict(outcomes) for kind, outcomes in self.poison_outcomes.items()}, "bank": self.bank, "notes": self.notes, "timings": self.timings,
            "seconds": round(self.seconds, 1), "passed": self.passed,
        }


async def read_topics(kafka: str, names: list[str]) -> list[Record]:
    """Every record of `names`, from the beginning to the current end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=None, enable_auto_commit=False,
                                max_poll_records=5000, fetch_max_bytes=64 * 1024 * 1024,
                                max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    found: list[Record] = []
    try:
        cluster = await consumer._client.fetch_all_metadata()
        assigned = [TopicPartition(t, p) for t in names for p in (cluster.partitions_for_topic(t) or ())]
        if not assigned:
            return found
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        while [tp for tp in assigned if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=2000)
            for tp, records in batch.items():
                for r in records:
                    if r.offset >= ends[tp]:
                        continue
                    found.append(Record(tp.topic, tp.partition, r.offset, r.key, r.value or b"",
                                        {k: (v or b"").decode(errors="replace") for k, v in r.headers or ()}))
    finally:
        await consumer.stop()
    found.sort(key=lambda r: (r.topic, r.partition, r.offset))
    return found


async def wait_for_payments(mongodb: str, namespace: str, expected: int, *, deadline_seconds: float = 1800) -> None:
    """Wait until the dispatcher has sent every payment and seen it on the bank statement."""
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient = AsyncMongoClient(mongodb, serverSelectionTimeoutMS=10000)
    deadline = time.monotonic() + deadline_seconds  # bounds a hang; the audit decides
    try:
        database = client[f"{namespace}_benefits"]
        while time.monotonic() < deadline:
            try:
                settled = await database["settlements"].count_documents({})
                queued = (await database["payment_queue"].count_documents({})
                          + await database["chunk_queue"].count_documents({}))
                if settled >= expected and queued == 0:
                    return
            except Exception:  # the database may be restarting in a fault scenario
                pass
            await asyncio.sleep(1.0)
    finally:
        await client.close()


def _person_refs(scenario: Scenario) -> list[str]:
    from services.kit.people import PersonReferences
    from services.kit.settings import ServiceSettings

    people = PersonReferences(ServiceSettings().person_ref_key.get_secret_value())
    return [people.for_number(p.number) for p in scenario.load.people]


async def audit(scenario: Scenario) -> Figures:
    from pymongo import AsyncMongoClient

    expected = scenario.load.expected
    figures = Figures(scenario.name, events=scenario.total, records_sent=len(scenario.sent_records),
                      poison_sent=len(scenario.poison), notes=list(scenario.notes))
    figures.timings = list(scenario.timings)
    refs = _person_refs(scenario)
    ns = scenario.namespace

    # -- topics ---------------------------------------------------------------------------------
    fact_records = await read_topics(scenario.fleet.kafka, topics.fact_topics(ns))
    letters = await read_topics(scenario.fleet.kafka, [topics.for_service(s, ns).dead_letter for s in topics.SERVICES])
    quarantine = await read_topics(scenario.fleet.kafka, [topics.quarantine_topic(ns)])
    figures.facts_published = len(fact_records)
    by_id: dict[str, set[bytes]] = defaultdict(set)
    first: dict[str, Record] = {}
    for record in fact_records:
        by_id[record.id].add(record.value)
        first.setdefault(record.id, record)
    figures.distinct_facts = len(by_id)
    for fact_id, values in by_id.items():
        if len(values) > 1:
            figures.duplicated.append(f"fact id {fact_id} ({first[fact_id].type}) published with {len(values)} contents")
    facts = list(first.values())  # one per id, in topic order
    figures.facts_by_type = Counter(r.type.removeprefix("jp.mynumber.") for r in facts)
    for letter in letters:
        figures.dead_lettered[f"{letter.topic.split('.')[-2]}: {letter.headers.get('dlq_reason', '?')}"] += 1
    for letter in quarantine:
        figures.quarantined[letter.headers.get("dlq_reason", "?")] += 1

    def of(event_type: str) -> list[dict[str, Any]]:
        return [r.json() for r in facts if r.type == event_type]

    # -- one effect per business key, as facts -----------------------------------------------
    for event_type, key in ((ENROLLMENT + "card_issued.v1", "person_ref"), (INSURANCE + "member_linked.v1", None),
                            (BENEFITS + "account_registered.v1", "request_id"), (LICENSING + "licence_recorded.v1", "request_id"),
                            (BENEFITS + "payment_settled.v1", "payment_id"), (BENEFITS + "payment_sent.v1", "payment_id")):
        keys = Counter(
            (f"{f['insurer_number']}/{f['member_symbol']}/{f['member_number']}" if key is None else f[key]) for f in of(event_type)
        )
        for count in keys.values():
            if count > 1:
                figures.duplicated.append(f"{event_type.split('.')[-2]} x{count} for one {key or 'member'}")

    # -- per-person order: lost then found, after the card was issued ---------------------------
    sequence: dict[str, list[str]] = defaultdict(list)
    for record in facts:
        if record.topic.endswith("enrollment.facts") and record.type.split(".")[-2] in ("card_issued", "card_suspended",
                                                                                       "card_resumed"):
            sequence[record.json()["person_ref"]].append(record.type.split(".")[-2])
    for index in expected.lost_and_found:
        seen = sequence.get(refs[index], [])
        if seen != ["card_issued", "card_suspended", "card_resumed"]:
            figures.order_violations.append(f"person #{index}: {seen}")

    # -- databases ------------------------------------------------------------------------------
    client: AsyncMongoClient = AsyncMongoClient(scenario.fleet.mongodb, tz_aware=True, serverSelectionTimeoutMS=10000)
    try:
        enrollment = client[f"{ns}_enrollment"]
        residents = {d["_id"] async for d in enrollment["residents"].find({}, {"_id": 1})}
        cards_by_person: dict[str, list[dict]] = defaultdict(list)
        async for card in enrollment["cards"].find({}, {"person_ref": 1, "state": 1}):
            cards_by_person[card["person_ref"]].append(card)
        insurance = client[f"{ns}_insurance"]
        members = {d["_id"]: d async for d in insurance["members"].find({}, {"link_state": 1, "person_ref": 1, "held_reason": 1})}
        certificate_status = {d["_id"]: d.get("status") async for d in insurance["certificates"].find({}, {"status": 1})}
        certificates = Counter(certificate_status.values())
        benefits = client[f"{ns}_benefits"]
        accounts = {d["_id"]: d async for d in benefits["accounts"].find({}, {"status": 1})}
        payments = Counter()
        async for payment in benefits["payments"].find({}, {"_id": 1}):  # the id is programme:period:person
            payments[tuple(payment["_id"].split(":", 2))] += 1
        settlements = Counter([d["payment_id"] async for d in benefits["settlements"].find({}, {"payment_id": 1})])
        licensing = client[f"{ns}_licensing"]
        licences = Counter([d["licence_number"] async for d in licensing["licences"].find({}, {"licence_number": 1})])
    finally:
        await client.close()

    active = {ref: [c for c in cards if c["state"] in ("active", "suspended")] for ref, cards in cards_by_person.items()}
    figures.effects = {
        "residents": len(residents),
        "cards": sum(len(c) for c in active.values()),
        "links": sum(1 for m in members.values() if m.get("link_state") == "linked"),
        "held links": sum(1 for m in members.values() if m.get("link_state") == "held"),
        "certificates": certificates.get("active", 0),
        "accounts": len(accounts),
        "payments": sum(payments.values()),
        "licences": sum(licences.values()),
    }
    for index, ref in enumerate(refs):
        if ref not in residents:
            figures.lost.append(f"resident #{index}")
    for index in expected.cards:
        held = active.get(refs[index], [])
        if not held:
            figures.lost.append(f"card of person #{index}")
        elif len(held) > 1:
            figures.duplicated.append(f"{len(held)} cards held by person #{index}")
        elif held[0]["state"] != "active":
            figures.lost.append(f"card of person #{index} is {held[0]['state']}, not active")
    for key, index in expected.linked_members.items():
        member = members.get(key)
        if member is None or member.get("link_state") != "linked" or member.get("person_ref") != refs[index]:
            figures.lost.append(f"link of member {key}: {member and member.get('link_state')}")
        elif certificate_status.get(key) != "active":  # a card not registered for insurance use: a certificate
            figures.lost.append(f"eligibility certificate of member {key}: {certificate_status.get(key)}")
    for key, reason in expected.held_members.items():
        member = members.get(key)
        if member is None or member.get("link_state") != "held" or member.get("held_reason") != reason:
            figures.lost.append(f"held member {key}: {member and (member.get('link_state'), member.get('held_reason'))}")
    for index in expected.accounts:
        if refs[index] not in accounts:
            figures.lost.append(f"account of person #{index}")
    refused = {f["request_id"] for f in of(BENEFITS + "account_registration_refused.v1")}
    for index in expected.refused_accounts:
        if refs[index] in accounts:
            figures.lost.append(f"family member's account of person #{index} was registered, not refused")
        elif f"acct-{index}" not in refused:
            figures.lost.append(f"refusal of the family member's account of person #{index}")
    settled_facts = {f["payment_id"] for f in of(BENEFITS + "payment_settled.v1")}
    sent_facts = {f["payment_id"] for f in of(BENEFITS + "payment_sent.v1")}
    for index in expected.payments:
        key = (expected.programme, expected.period, refs[index])
        if payments.get(key, 0) == 0:
            figures.lost.append(f"payment to person #{index}")
        payment_id = ":".join(key)
        if settlements.get(payment_id, 0) == 0:
            figures.lost.append(f"settlement of the payment to person #{index}")
        if payment_id not in settled_facts:
            figures.lost.append(f"the payment_settled fact of the payment to person #{index}")
    unsent = len(set(settled_facts) - sent_facts)
    if unsent:
        figures.notes.append(f"{unsent} payments settled without a payment_sent fact (the bank's answer was lost; "
                             "the statement showed the credit)")
    for number, index in expected.licences.items():
        if licences.get(number, 0) == 0:
            figures.lost.append(f"licence of person #{index}")
        elif licences[number] > 1:
            figures.duplicated.append(f"licence of person #{index} stored {licences[number]} times")

    # -- the bank's own ledger: a payment credited twice is money paid twice -------------------------
    ledger = scenario.fleet.bank_ledger()
    credits = ledger["credits_per_payment"]
    figures.bank = {"credits": len(ledger["entries"]), "total_yen": ledger["total_yen"], "requests": ledger["requests"],
                    "faults_injected": ledger["faults_injected"]}
    figures.effects["bank credits"] = len(ledger["entries"])
    for payment_id, count in credits.items():
        if count > 1:
            figures.duplicated.append(f"bank credited payment {payment_id[:40]}... {count} times")
    for index in expected.payments:
        if credits.get(f"{expected.programme}:{expected.period}:{refs[index]}", 0) == 0:
            figures.lost.append(f"bank credit to person #{index}")
    expected_yen = sum(expected.payments.values())
    if ledger["total_yen"] != expected_yen:
        figures.notes.append(f"bank total ¥{ledger['total_yen']:,} against ¥{expected_yen:,} announced")

    # -- bad input: every poison record dead-lettered or quarantined ----------------------------------
    handled = {letter.original_header("ce_id"): f"{letter.topic.split('.')[-2]}: {letter.headers.get('dlq_reason', '?')}"
               for letter in letters}
    handled |= {letter.original_header("ce_id"): f"quarantine: {letter.headers.get('dlq_reason', '?')}"
                for letter in quarantine}
    for poison in scenario.poison:
        outcome = handled.get(poison["ce_id"])
        figures.poison_outcomes.setdefault(poison["kind"], Counter())[outcome or "not handled"] += 1
        if outcome is None:
            figures.poison_unaccounted.append(f"{poison['kind']} ({poison['ce_id']})")
    if not scenario.poison and (letters or quarantine):
        figures.notes.append(f"{len(letters)} dead letters and {len(quarantine)} quarantined events in a clean workload")
    return figures
