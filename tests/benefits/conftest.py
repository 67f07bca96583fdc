"""The benefits service running against the real broker and database, with the bank simulator in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from mynumber_contracts import MyNumber, ResidentAttributes, Sex, check_digit
from mynumber_contracts.benefits import BankAccount
from mynumber_contracts.enrollment import ResidentRegistered

from services.benefits.bank_simulator import BankState, create_bank_simulator
from services.kit.clock import FixedClock
from services.kit.people import PersonReferences
from tests.support.kafka import PartnerPublisher, TopicReader
from tests.support.polling import eventually
from tests.support.services import RunningService, run_service

OPERATOR_TOKEN = "Bearer development-only-operator-token"

ENROLLMENT = "service/enrollment"
PORTAL = "portal/myna"
BANK = "bank/0005"
PENSION = "pension-service/jp"
PAYING_AGENCY = "paying-agency/child-benefit"
ZENGIN = "bank-registry/zengin"
START = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)


def a_number(seed: int) -> MyNumber:
    base = f"{seed:011d}"
    return MyNumber(base + str(check_digit(base)))


def an_account(number: str = "1234567", holder: str = "ヤマダ タロウ", bank: str = "0005", branch: str = "123") -> BankAccount:
    return BankAccount(bank_code=bank, branch_code=branch, account_number=number, holder_name_kana=holder)


@dataclass
class Benefits:
    running: RunningService
    partner: PartnerPublisher
    facts: TopicReader
    bank: BankState
    namespace: str
    clock: FixedClock
    people: PersonReferences

    @property
    def http(self) -> httpx.AsyncClient:
        return self.running.http

    @property
    def store(self) -> Any:
        return self.running.service.deps.store

    def ref(self, number: MyNumber) -> str:
        return self.people.for_number(number)

    async def resident(self, seed: int, *, kana: str = "ヤマダ タロウ", kanji: str = "山田 太郎",
                       address: str = "東京都千代田区永田町1-7-1") -> MyNumber:
        """Publish a ResidentRegistered fact as enrollment would, and wait until benefits has it."""
        number = a_number(seed)
        person_ref = self.ref(number)
        fact = ResidentRegistered(
            person_ref=person_ref, municipality_code="131016", nationality="JP",
            attributes=ResidentAttributes(name_kanji=kanji, name_kana=kana, date_of_birth=date(1985, 5, 5),
                                          sex=Sex.female, address=address),
        )
        record = self.partner.record(fact, subject=person_ref, source=ENROLLMENT)
        await self.partner.send_record(ResidentRegistered.topic(self.namespace), record)
        await eventually(lambda: self.store.resident(person_ref), what=f"resident {seed} in the read model")
        return number

    async def send(self, request: Any, *, subject: str, source: str) -> None:
        await self.partner.send(request, subject=subject, source=source)

    def of_type(self, model: Any, **match: Any) -> list[dict[str, Any]]:
        payloads = [r.json() for r in self.facts.of_type(model.event_type)]
        return [p for p in payloads if all(p.get(k) == v for k, v in match.items())]

    async def wait_fact(self, model: Any, count: int = 1, **match: Any) -> list[dict[str, Any]]:
        await self.facts.wait_for(lambda _: len(self.of_type(model, **match)) >= count, what=f"{count} x {model.__name__} {match}")
        return self.of_type(model, **match)

    async def dispatch_until_idle(self, rounds: int = 50) -> None:
        """Run dispatcher rounds until one finds nothing to do (the loop is off in these tests)."""
        for _ in range(rounds):
            response = await self.http.post("/operations/dispatch")
            assert response.status_code == 200, response.text
            if response.json()["payments_handled"] == 0:
                return
        raise AssertionError("the dispatcher kept finding work")


@pytest.fixture
def bank() -> BankState:
    return BankState()


@pytest.fixture
async def benefits(settings_for, namespace, servers, bank) -> AsyncIterator[Benefits]:
    settings = settings_for("benefits", dispatcher_enabled=False, bank_backoff_seconds=0.01,
                            bank_timeout_seconds=0.5, bank_transfer_batch_size=50)
    clock = FixedClock(START)
    transport = httpx.ASGITransport(app=create_bank_simulator(bank))
    async with run_service("benefits", settings, clock=clock, bank_transport=transport) as running:
        running.http.headers["Authorization"] = OPERATOR_TOKEN  # every benefits route is for operators
        service = running.service
        async with (
            PartnerPublisher(servers.kafka_bootstrap, namespace) as partner,
            TopicReader(servers.kafka_bootstrap, service.topics.facts) as facts,
        ):
            yield Benefits(running, partner, facts, bank, namespace, clock,
                           PersonReferences(settings.person_ref_key.get_secret_value()))
