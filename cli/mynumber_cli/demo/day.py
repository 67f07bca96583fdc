"""The phases of the simulated day, in the order agencies would act."""

from __future__ import annotations

import json
import uuid

from mynumber_contracts import encode_event, topics
from mynumber_contracts.enrollment import ApplyForCard, Channel
from mynumber_contracts.signing import generate_private_key, sign_record

from .. import processes
from . import DemoContext, benefits_traffic, enrollment_traffic, insurance_traffic, licensing_traffic


async def municipal_registry(context: DemoContext) -> None:
    await context.publish("post-office delegations", enrollment_traffic.delegations())
    await context.publish("residents registered", enrollment_traffic.registrations(context.people))
    await context.settle()


async def card_applications(context: DemoContext) -> None:
    events = enrollment_traffic.applications(context.people, context.today, context.rng)
    await context.publish("card applications (3 channels)", events)
    await context.settle()


async def lost_cards(context: DemoContext) -> None:
    issued = {fact["person_ref"] for fact in await _facts(context, "jp.mynumber.enrollment.card_issued.v1")}
    holders = [p for p in context.people if context.notes.setdefault("refs", {}).get(p.digits) in issued] or context.people
    await context.publish("lost cards, found again or reissued",
                          enrollment_traffic.lost_and_reissued(holders, context.today, context.rng))
    await context.settle()


async def periods_of_stay(context: DemoContext) -> None:
    await context.publish("periods of stay renewed", enrollment_traffic.periods_of_stay(context.people, context.today))
    await context.settle()


async def malformed_and_forged(context: DemoContext) -> None:
    """What a bad day also brings: broken messages, and events no real partner signed."""
    task = context.progress.add_task("malformed and forged events", total=6)
    requests = topics.for_service("enrollment", context.namespace).requests
    sample = ApplyForCard(application_id="forged-1", channel=Channel.municipal_office, office_id="municipality/131016",
                          my_number="123456789018", applied_on=context.today, photo_ref="photo://x")
    good = context.publisher.record(enrollment_traffic.Outgoing(sample, "municipality/131016", "forged"))
    headers = dict(good.headers)
    await context.publisher.send_raw(requests, b"\x00\xff not json at all", _resign(context, good.headers, b"\x00\xff not json at all"))
    broken = json.dumps({"application_id": "x", "channel": "by_pigeon"}).encode()
    await context.publisher.send_raw(requests, broken, _resign(context, good.headers, broken))
    await context.publisher.send_raw(requests, good.value, [(k, v) for k, v in good.headers if k != "ce_type"])
    unsigned = encode_event(sample, source="municipality/131016", key=b"k", event_id=str(uuid.uuid4()))
    await context.publisher.send_raw(requests, unsigned.value, unsigned.headers)
    forged = sign_record(encode_event(sample, source="municipality/131016", key=b"k", event_id=str(uuid.uuid4())),
                         generate_private_key(), "municipality/131016#1")
    await context.publisher.send_raw(requests, forged.value, forged.headers)
    tampered = good.value.replace(b"forged-1", b"forged-2")
    await context.publisher.send_raw(requests, tampered, list(headers.items()))
    context.progress.update(task, completed=6)
    await context.settle()


def _resign(context: DemoContext, headers, value: bytes):
    from mynumber_contracts import KafkaRecord

    record = KafkaRecord(None, value, [(k, v) for k, v in headers if k not in ("ce_signature", "ce_signaturekeyid", "ce_id")]
                         + [("ce_id", str(uuid.uuid4()).encode())])
    key = context.publisher._keys["municipality/131016"]
    return sign_record(record, key, "municipality/131016#1").headers  # type: ignore[arg-type]


async def _facts(context: DemoContext, event_type: str) -> list[dict]:
    from .runner import read_everything

    contents = await read_everything(context.kafka, context.namespace)
    _remember_person_refs(context)
    return contents.of(event_type)


def _remember_person_refs(context: DemoContext) -> None:
    """The demo plays the operator: with the development key it can tell whose reference is whose."""
    if "refs" in context.notes and context.notes["refs"]:
        return
    from services.kit.people import PersonReferences
    from services.kit.settings import ServiceSettings

    people = PersonReferences(ServiceSettings().person_ref_key.get_secret_value())
    context.notes["refs"] = {p.digits: people.for_number(p.number) for p in context.people}


async def active_cards(context: DemoContext) -> dict[str, str]:
    """person reference -> the card that person holds now, from enrollment's facts."""
    from .runner import read_everything

    contents = await read_everything(context.kafka, context.namespace)
    _remember_person_refs(context)
    cards: dict[str, str] = {}
    certificates: dict[str, str] = {}
    for fact in contents.of("jp.mynumber.enrollment.card_issued.v1") + contents.of("jp.mynumber.enrollment.card_reissued.v1"):
        cards[fact["person_ref"]] = fact["card_number"]
        certificates[fact["person_ref"]] = fact["certificate_id"]
    for kind in ("card_suspended", "card_revoked", "card_returned", "card_expired"):
        for fact in contents.of(f"jp.mynumber.enrollment.{kind}.v1"):
            if cards.get(fact["person_ref"]) == fact["card_number"]:
                cards.pop(fact["person_ref"])
                certificates.pop(fact["person_ref"], None)
    context.notes["cards"] = cards
    context.notes["certificates"] = certificates
    return cards


async def holders_with_cards(context: DemoContext, tag: str = "adult") -> list[tuple]:
    cards = await active_cards(context)
    refs = context.notes["refs"]
    return [(p, cards[refs[p.digits]]) for p in context.people if tag in p.tags and refs[p.digits] in cards]


async def licences_and_vehicles(context: DemoContext) -> None:
    holders = await holders_with_cards(context)
    await context.publish("licences recorded by the police", licensing_traffic.licences(holders, context.today, context.rng))
    await context.publish("vehicles registered and transferred",
                          licensing_traffic.vehicles(holders, context.today, context.rng))
    await context.settle()


async def receiving_accounts(context: DemoContext) -> None:
    adults = [p for p in context.people if "adult" in p.tags and "abroad" not in p.tags]
    children = [p for p in context.people if {"child", "infant"} & p.tags]
    accounts = benefits_traffic.accounts(adults, children, context.rng)
    child_numbers = {c.digits for c in children}
    context.notes["closed_accounts"] = [
        f"{a.account.bank_code}-{a.account.branch_code}-{a.account.account_number}"
        for a in (e.payload for e in accounts if e.subject in child_numbers)
    ][:2]  # two of them will have closed their account by payday: those payments fail
    await context.publish("receiving accounts registered", accounts)
    registered = {e.subject for e in accounts}
    proposals = benefits_traffic.pension_proposals([p for p in adults if p.digits not in registered], context.today,
                                                   context.rng)
    await context.publish("pension opt-out proposals and refusals", proposals)
    await context.settle()
    from datetime import timedelta

    day_45 = context.today + timedelta(days=45)
    answer = await context.http.post(f"{context.url('benefits')}/operations/opt-out-sweep",
                                     params={"as_of": day_45.isoformat()}, headers=context.operator)
    answer.raise_for_status()
    context.notes["opt_out_sweep"] = answer.json()
    await context.settle()


async def child_benefit(context: DemoContext) -> None:
    import asyncio
    import time

    children = [p for p in context.people if {"child", "infant"} & p.tags]
    closed = await context.http.put(f"{processes.BANK_SIMULATOR.url}/admin/closed-accounts",
                                    json={"accounts": context.notes.get("closed_accounts", [])})
    closed.raise_for_status()
    batch_id = f"child-benefit-{context.today:%Y-%m}"
    events = benefits_traffic.child_benefit_batch(children, batch_id, f"{context.today:%Y-%m}")
    await context.publish("child-benefit payout batch", events)
    await context.settle()
    url = f"{context.url('benefits')}/batches/{batch_id}/reconciliation"
    task = context.progress.add_task("payments through the bank simulator", total=len(children))
    deadline = time.monotonic() + 600
    report = None
    while time.monotonic() < deadline:
        answer = await context.http.get(url, headers=context.operator)
        if answer.status_code == 200:
            report = answer.json()
            done = report["control"]["count"] - report["pending"]["count"]
            context.progress.update(task, completed=done)
            if report["pending"]["count"] == 0:
                break
        await asyncio.sleep(1)
    answer = await context.http.post(f"{context.url('benefits')}/batches/{batch_id}/reconcile", headers=context.operator)
    context.notes["reconciliation"] = answer.json() if answer.status_code == 200 else report
    await context.settle()


async def health_insurance(context: DemoContext) -> None:
    await active_cards(context)
    refs, certificates = context.notes["refs"], context.notes["certificates"]
    by_number = {p.digits: certificates[refs[p.digits]] for p in context.people if refs[p.digits] in certificates}
    await context.publish("insurer settings", insurance_traffic.insurer_settings())
    enrollments = insurance_traffic.enrollments(context.people, context.today, context.rng)
    await context.publish("insurer member enrollments", enrollments)
    await context.settle()
    await context.publish("cards registered for insurance use", insurance_traffic.card_registrations(by_number, context.rng))
    members = [p for p in context.people if p.digits in {e.subject for e in enrollments}]
    await context.publish("prescriptions and checkup results", insurance_traffic.medical_records(members, context.today, context.rng))
    await context.settle()
    await context.publish("hospital visits: eligibility, consent, data requests",
                          insurance_traffic.hospital_visits(by_number, context.rng))
    checks = list(by_number.values())[: max(1, len(by_number) // 5)]
    task = context.progress.add_task("eligibility checks over HTTP", total=len(checks))
    answers = {"eligible": 0, "not eligible": 0}
    for certificate in checks:
        answer = await context.http.get(f"{context.url('insurance')}/eligibility/{certificate}", headers=context.operator)
        answer.raise_for_status()
        answers["eligible" if answer.json()["eligible"] else "not eligible"] += 1
        context.progress.advance(task)
    context.notes["eligibility_http"] = answers
    await context.settle()


PHASES = [
    ("resident registry", municipal_registry),
    ("card applications", card_applications),
    ("lost cards", lost_cards),
    ("periods of stay", periods_of_stay),
    ("health insurance", health_insurance),
    ("licences and vehicles", licences_and_vehicles),
    ("receiving accounts", receiving_accounts),
    ("child benefit", child_benefit),
    ("malformed and forged", malformed_and_forged),
]


def licensing_section(context, contents) -> list[tuple[str, str, str]]:
    from collections import Counter

    recorded = contents.of("jp.mynumber.licensing.licence_recorded.v1")
    rows = []
    for choice, count in sorted(Counter(f["holder_choice"] for f in recorded).items()):
        fees = sum(f["fee_yen"] for f in recorded if f["holder_choice"] == choice)
        rows.append(("Licensing", f"licences recorded: {choice} (fees ¥{fees:,})", f"{count:,}"))
    rows.append(("Licensing", "vehicles registered", f"{len(contents.of('jp.mynumber.licensing.vehicle_registered.v1')):,}"))
    rows.append(("Licensing", "vehicles transferred", f"{len(contents.of('jp.mynumber.licensing.vehicle_transferred.v1')):,}"))
    for kind in ("licence_request_rejected", "vehicle_request_rejected"):
        for reason, count in sorted(Counter(f["reason"] for f in contents.of(f"jp.mynumber.licensing.{kind}.v1")).items()):
            rows.append(("Rejections by reason", f"licensing: {reason}", f"{count:,}"))
    return rows


def benefits_section(context, contents) -> list[tuple[str, str, str]]:
    from collections import Counter

    rows = [("Benefits", "receiving accounts registered", f"{len(contents.of('jp.mynumber.benefits.account_registered.v1')):,}")]
    for reason, count in sorted(Counter(f["reason"] for f in contents.of("jp.mynumber.benefits.account_registration_refused.v1")).items()):
        rows.append(("Rejections by reason", f"benefits account: {reason}", f"{count:,}"))
    rows.append(("Benefits", "accounts flagged as shared", f"{len(contents.of('jp.mynumber.benefits.account_flagged.v1')):,}"))
    for outcome, count in sorted(Counter(f.get("outcome", "?") for f in contents.of("jp.mynumber.benefits.opt_out_concluded.v1")).items()):
        rows.append(("Benefits", f"pension opt-out: {outcome}", f"{count:,}"))
    report = context.notes.get("reconciliation")
    if report:
        for line in ("paid", "held", "failed", "pending"):
            if line == "pending" and report[line]["count"] == 0:
                continue  # everything settled: nothing left to show
            rows.append(("Child benefit", f"payments {line} (¥{report[line]['total_yen']:,})", f"{report[line]['count']:,}"))
        control = report["control"]
        rows.append(("Child benefit", f"control totals (¥{control['total_yen']:,})", f"{control['count']:,}"))
        rows.append(("Child benefit", f"bank statement (¥{report['bank_statement']['total_yen']:,})",
                     f"{report['bank_statement']['count']:,}"))
    for reason, count in sorted(Counter(f["reason"] for f in contents.of("jp.mynumber.benefits.payment_held.v1")).items()):
        rows.append(("Child benefit", f"held: {reason}", f"{count:,}"))
    return rows


def insurance_section(context, contents) -> list[tuple[str, str, str]]:
    from collections import Counter

    def count(kind: str) -> str:
        return f"{len(contents.of(f'jp.mynumber.insurance.{kind}.v1')):,}"

    rows = [("Insurance", "member records linked (five attributes match)", count("member_linked")),
            ("Insurance", "member records held for review", count("member_link_held"))]
    for reason, n in sorted(Counter(f.get("reason", "?") for f in contents.of("jp.mynumber.insurance.member_link_held.v1")).items()):
        rows.append(("Insurance", f"held: {reason}", f"{n:,}"))
    rows += [("Insurance", "cards registered for insurance use", count("card_registered_for_insurance")),
             ("Insurance", "eligibility certificates issued", count("eligibility_certificate_issued")),
             ("Insurance", "eligibility certificates withdrawn (card linked)", count("eligibility_certificate_withdrawn")),
             ("Insurance", "eligibility confirmed (events)", count("eligibility_confirmed")),
             ("Insurance", "eligibility denied (events)", count("eligibility_denied"))]
    for verdict, n in context.notes.get("eligibility_http", {}).items():
        rows.append(("Insurance", f"eligibility over HTTP: {verdict}", f"{n:,}"))
    rows += [("Insurance", "consents recorded", count("consent_recorded")),
             ("Insurance", "medical data released (with consent)", count("medical_data_released")),
             ("Insurance", "medical data denied", count("medical_data_denied"))]
    return rows


REPORT_SECTIONS = [insurance_section, licensing_section, benefits_section]
