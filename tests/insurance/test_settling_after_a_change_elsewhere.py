"""After issuing a certificate, `settle_person` looks at the person again: another process may have
changed them between the plan's reads and the issue, and its own settle may have run before the
certificate existed. The person's version tells whether anything changed, so the second look is one
read when nothing did, and a whole second pass when something did. Against the real broker and
database, with the change made inside the issue (the race, made certain)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from mynumber_contracts.insurance import EligibilityCertificateWithdrawn

from services.insurance.domain import Card, CardStatus, InsuranceUse
from tests.insurance.conftest import Insurance, enrollment, of_type, types


def counting(monkeypatch: pytest.MonkeyPatch, store: Any, name: str) -> list[tuple[Any, ...]]:
    """Record the arguments of every call of `store.name`; the real method still runs."""
    original, calls = getattr(store, name), []

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return await original(*args, **kwargs)

    monkeypatch.setattr(store, name, counted)
    return calls


def before_issuing(monkeypatch: pytest.MonkeyPatch, store: Any, change: Callable[[], Any]) -> list[str]:
    """Run `change` once, just before the first certificate is issued (between the plan's reads and
    its write); returns the numbers of the certificates issued."""
    original, issued = store.issue_certificate, []

    async def issue(certificate: Any, **kwargs: Any) -> bool:
        if not issued:
            await change()
        issued.append(certificate.certificate_number)
        return await original(certificate, **kwargs)

    monkeypatch.setattr(store, "issue_certificate", issue)
    return issued


async def test_when_nothing_changed_the_second_look_reads_only_the_person(insurance: Insurance, monkeypatch):
    person_ref = await insurance.resident(61)
    store = insurance.running.service.deps.store
    people, certificates = counting(monkeypatch, store, "person"), counting(monkeypatch, store, "certificate")

    facts = await insurance.insurer(enrollment("m-61", 61, 61))

    assert types(facts) == ["member_linked", "eligibility_certificate_issued"]
    assert people == [(person_ref,), (person_ref,)]  # the plan's read, and the second look
    assert len(certificates) == 1  # the plan's read only: no second pass
    assert [c["status"] for c in await insurance.certificates(person_ref)] == ["active"]


async def test_a_card_registered_elsewhere_while_the_certificate_was_issued_withdraws_it(insurance: Insurance, monkeypatch):
    """Another process saved the holder's card, registered for insurance use, after this enrollment
    planned a certificate for a person without a card; its own settle found no certificate to withdraw.
    The second pass must see the new version and withdraw the certificate."""
    person_ref = await insurance.resident(62)
    store = insurance.running.service.deps.store
    card = Card(card_number="C-cert-62", certificate_id="cert-62", status=CardStatus.active,
                expires_on=date(2036, 6, 15), certificate_expires_on=date(2031, 6, 15))

    async def registered_elsewhere() -> None:
        await store.change_person(person_ref, {"card": card, "insurance_use": InsuranceUse.registered})

    issued = before_issuing(monkeypatch, store, registered_elsewhere)
    certificates = counting(monkeypatch, store, "certificate")

    facts = await insurance.insurer(enrollment("m-62", 62, 62))

    assert types(facts) == ["member_linked", "eligibility_certificate_issued", "eligibility_certificate_withdrawn"]
    [withdrawn] = of_type(facts, EligibilityCertificateWithdrawn)
    assert (withdrawn["certificate_number"], withdrawn["reason"]) == (issued[0], "card_linked")
    assert len(certificates) == 2  # both passes read the certificate
    assert [c["status"] for c in await insurance.certificates(person_ref)] == ["withdrawn"]
    assert (await insurance.eligibility("cert-62"))["eligible"]
