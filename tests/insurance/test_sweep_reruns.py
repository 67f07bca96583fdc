"""A certificate sweep that loses its database connection part-way is run again by the operator;
the rerun must finish every member's certificate and publish every fact of the sweep once, with
the event ids the first run would have given them.

Each test makes one store write fail once with AutoReconnect (after the write is done), runs the
sweep (which fails), runs it again, and checks the certificates and every fact on the topic,
against the real broker and database."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from mynumber_contracts.insurance import (
    EligibilityCertificateExpired,
    EligibilityCertificateIssued,
    EligibilityCertificateRenewed,
)
from pymongo.errors import AutoReconnect

from services.kit.idempotency import output_event_id
from tests.insurance.conftest import INSURER, OPERATOR, Insurance, enrollment, types
from tests.support.faults import fail_once

MEMBERS = ("s-1", "s-2", "s-3")  # the sweeps take certificates in member key order: s-2 is the second


def key_of(member: str) -> str:
    return f"{INSURER}/記号/{member}"


async def members_with_certificates(insurance: Insurance) -> dict[str, str]:
    """Three residents without a card, each enrolled and holding a certificate valid 2026-04-01 to 2027-03-31."""
    people = {}
    for seed, member in enumerate(MEMBERS, start=111):
        person_ref = await insurance.resident(seed)
        facts = await insurance.insurer(enrollment(member, seed, seed))
        assert types(facts) == ["member_linked", "eligibility_certificate_issued"]
        people[member] = person_ref
    return people


async def sweep_fails(insurance: Insurance, kind: str, as_of: str) -> None:
    try:
        response = await insurance.http.post(f"/operations/certificate-{kind}", params={"as_of": as_of}, headers=OPERATOR)
        assert response.status_code >= 500, response.text
    except AutoReconnect:
        pass


async def sweep(insurance: Insurance, kind: str, as_of: str) -> dict[str, Any]:
    response = await insurance.http.post(f"/operations/certificate-{kind}", params={"as_of": as_of}, headers=OPERATOR)
    assert response.status_code == 200, response.text
    return response.json()


def published_once(records: list[Any]) -> dict[str, dict[str, Any]]:
    """Every fact by its event id; a fact published again carries the same id and the same content."""
    facts: dict[str, dict[str, Any]] = {}
    for record in records:
        fact = {"type": record.type, **record.json()}
        assert facts.setdefault(record.id, fact) == fact, f"event id {record.id} published with different content"
    return facts


async def test_a_renewal_sweep_rerun_after_a_failure_publishes_every_renewal_once(insurance: Insurance, monkeypatch):
    """Renewals done before the failure must still be announced: the rerun no longer finds those
    certificates ending soon, so it must not depend on finding them again that way."""
    people = await members_with_certificates(insurance)
    store = insurance.running.service.deps.store
    # The connection is lost after the second certificate was renewed.
    fault = fail_once(monkeypatch, store, "extend_certificate", after=True, on_call=2)
    before = len(insurance.facts.records)
    await sweep_fails(insurance, "renewal", "2027-03-05")
    assert [call.args[0].member_key for call in fault.calls] == [key_of("s-1"), key_of("s-2")]

    await sweep(insurance, "renewal", "2027-03-05")
    await insurance.facts.wait_count(before + len(MEMBERS))
    await sweep(insurance, "renewal", "2027-03-05")  # a third run has nothing left to do
    facts = published_once((await insurance.facts.settle())[before:])

    expected = {
        output_event_id(f"sweep:certificate-renewal:{key_of(member)}:2027-03-31", EligibilityCertificateRenewed.event_type, 0):
            (person_ref, "2027-03-31", "2028-03-31")
        for member, person_ref in people.items()
    }
    assert {event_id: (f["person_ref"], f["previous_valid_until"], f["valid_until"]) for event_id, f in facts.items()} == expected
    assert {f["type"] for f in facts.values()} == {EligibilityCertificateRenewed.event_type}
    for person_ref in people.values():
        assert [(c["status"], c["valid_until"]) for c in await insurance.certificates(person_ref)] == [("active", "2028-03-31")]


@pytest.mark.parametrize("lost", ["after ending a certificate", "after issuing its replacement"])
async def test_an_expiry_sweep_rerun_after_a_failure_replaces_every_certificate_and_publishes_each_fact_once(
        insurance: Insurance, monkeypatch, lost: str):
    """The expiry sweep ends a certificate, then issues the replacement. A failure in between must
    not leave the member without a certificate, and no Expired or Issued fact of the work done
    before the failure may be lost, or published again under another id."""
    people = await members_with_certificates(insurance)
    store = insurance.running.service.deps.store
    numbers = {member: (await store.certificate(key_of(member))).certificate_number for member in MEMBERS}
    name = "end_certificate" if lost == "after ending a certificate" else "issue_certificate"
    # The connection is lost after the second member's certificate was ended (or its replacement issued).
    fault = fail_once(monkeypatch, store, name, after=True, on_call=2)
    before = len(insurance.facts.records)
    await sweep_fails(insurance, "expiry", "2027-05-01")
    assert [call.args[0].member_key for call in fault.calls] == [key_of("s-1"), key_of("s-2")]

    await sweep(insurance, "expiry", "2027-05-01")
    await insurance.facts.wait_count(before + 2 * len(MEMBERS))
    await sweep(insurance, "expiry", "2027-05-01")  # a third run has nothing left to do
    facts = published_once((await insurance.facts.settle())[before:])

    by_person: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for event_id, fact in facts.items():
        by_person[fact["person_ref"]].append((event_id, fact["type"], fact["certificate_number"]))
    for member, person_ref in people.items():
        [current] = await insurance.certificates(person_ref)
        assert (current["status"], current["valid_from"], current["valid_until"]) == ("active", "2027-05-01", "2028-04-30")
        cause = f"sweep:certificate-expiry:{key_of(member)}:{numbers[member]}"
        assert sorted(by_person[person_ref]) == sorted([
            (output_event_id(cause, EligibilityCertificateExpired.event_type, 0), EligibilityCertificateExpired.event_type,
             numbers[member]),
            (output_event_id(cause, EligibilityCertificateIssued.event_type, 1), EligibilityCertificateIssued.event_type,
             current["certificate_number"]),
        ]), member
