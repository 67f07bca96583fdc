"""A running licensing service against the real broker and database, and the agencies around it:
enrollment (its facts, published by the test), the police and a transport bureau."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest
from mynumber_contracts import Event, Fact, MyNumber, ResidentAttributes, Sex, check_digit
from mynumber_contracts.enrollment import CardIssued, CardReissued, CardSuspended, ResidentRegistered
from mynumber_contracts.licensing import HolderChoice, LicenceClass, LicenceTransaction, RecordLicence

from services.kit.clock import FixedClock
from services.kit.people import PersonReferences
from tests.support.kafka import PartnerPublisher, Received, TopicReader
from tests.support.polling import eventually
from tests.support.services import RunningService, run_service

NOW = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)  # 09:00 on 1 June 2026 in Japan
POLICE = "police/tokyo"
TRANSPORT_BUREAU = "transport-bureau/kanto"
ENROLLMENT = "service/enrollment"
ADDRESS = "東京都千代田区永田町1-7-1"
POLICE_TOKEN = "police-tokyo-test-token-0001"
OPERATOR_TOKEN = "operator-test-token-000000001"
TRANSPORT_BUREAU_TOKEN = "transport-bureau-kanto-token-01"
# Tokens the one shared MYNUMBER_HTTP_API_TOKENS list also gives agencies with no business here.
OTHER_PARTNER_TOKENS = {
    "kiosk/seven-0001": "kiosk-seven-0001-test-token-01",
    "medical-institution/1312345678": "medical-institution-test-token-01",
    "insurer/06130012": "insurer-06130012-test-token-001",
    "municipality/131016": "municipality-131016-test-token-1",
}


def a_number(seed: int) -> MyNumber:
    base = f"{seed:011d}"
    return MyNumber(base + str(check_digit(base)))


def a_licence_number(seed: int) -> str:
    return f"30{seed:010d}"


@dataclass
class Person:
    number: MyNumber
    ref: str
    card_number: str


def licence_request(
    person: Person, seed: int, *, choice: HolderChoice = HolderChoice.card_only,
    transaction: LicenceTransaction = LicenceTransaction.renewal, by_number: bool = True, by_card: bool = False,
    expires_on: date = date(2029, 7, 1), **overrides: Any,
) -> RecordLicence:
    values: dict[str, Any] = dict(
        request_id=f"pol-{seed}-{uuid.uuid4().hex[:6]}",
        my_number=person.number if by_number else None,
        card_number=person.card_number if by_card else None,
        transaction=transaction, holder_choice=choice, licence_number=a_licence_number(seed),
        issued_on=date(2026, 5, 20), expires_on=expires_on,
        classes=[LicenceClass.ordinary, LicenceClass.ordinary_motorcycle], conditions=["眼鏡等"],
        photo_ref=f"photo/police/tokyo/{seed}",
    )
    values.update(overrides)
    return RecordLicence(**values)


@dataclass
class Licensing:
    """The running service, plus the test's stand-ins for enrollment, the police and a transport bureau."""

    running: RunningService
    partner: PartnerPublisher
    facts: TopicReader
    dead_letters: TopicReader
    namespace: str
    people: PersonReferences
    clock: FixedClock

    @property
    def http(self) -> Any:
        return self.running.http

    async def enrollment_fact(self, fact: Fact) -> None:
        record = self.partner.record(fact, subject=fact.person_ref, source=ENROLLMENT)
        await self.partner.send_record(type(fact).topic(self.namespace), record)

    def take_in_before_the_next_licence_save(self, monkeypatch: pytest.MonkeyPatch, fact: Fact) -> None:
        """Have enrollment's `fact` taken in, on its own topic, between a police request's reads and
        its save of the licence (the first save after this call): the race a licence must catch up with."""
        store = self.running.service.deps.store
        save_licence, sent = store.save_licence, []
        record = self.partner.record(fact, subject=fact.person_ref, source=ENROLLMENT)

        async def save_after_the_fact(licence):
            if not sent:
                sent.append(True)
                await self.partner.send_record(type(fact).topic(self.namespace), record)
                await eventually(lambda: self.running.service.database["processed_events"].find_one(
                    {"_id": record.header("ce_id").decode()}), what=f"{type(fact).__name__} taken in")
            return await save_licence(licence)

        monkeypatch.setattr(store, "save_licence", save_after_the_fact)

    async def card_lost_and_reissued(self, person_ref: str, card_number: str, *, lost_at: datetime,
                                     issued_on: date) -> str:
        """Enrollment suspends the card (reported lost) and issues a new one in its place; returns the new card's number."""
        await self.enrollment_fact(CardSuspended(person_ref=person_ref, card_number=card_number, suspended_at=lost_at))
        new_card = f"C-{uuid.uuid4().hex[:10].upper()}"
        await self.enrollment_fact(CardReissued(
            person_ref=person_ref, previous_card_number=card_number, card_number=new_card, certificate_id=f"cert-{new_card}",
            issued_on=issued_on, expires_on=date(2036, 4, 1), certificate_expires_on=date(2031, 4, 1), photo_less=False,
        ))
        return new_card

    async def police(self, request: Event, subject: str = "police-case") -> None:
        await self.partner.send(request, subject=subject, source=POLICE)

    async def transport_bureau(self, request: Event, subject: str = "vehicle") -> None:
        await self.partner.send(request, subject=subject, source=TRANSPORT_BUREAU)

    async def resident_with_card(self, seed: int, *, card_expires_on: date = date(2035, 4, 1),
                                 address: str = ADDRESS) -> Person:
        """Enrollment registers the resident and issues a card; returns once the service knows the card."""
        number = a_number(seed)
        person = Person(number, self.people.for_number(number), f"C-{uuid.uuid4().hex[:10].upper()}")
        attributes = ResidentAttributes(name_kanji="山田 太郎", name_kana="ヤマダ タロウ", date_of_birth=date(1980, 4, 1),
                                        sex=Sex.male, address=address)
        await self.enrollment_fact(ResidentRegistered(person_ref=person.ref, municipality_code="131016",
                                                      attributes=attributes, nationality="JP"))
        await self.enrollment_fact(CardIssued(
            person_ref=person.ref, card_number=person.card_number, certificate_id=f"cert-{person.card_number}",
            application_id=f"app-{seed}", issued_on=date(2025, 4, 1), expires_on=card_expires_on,
            certificate_expires_on=date(2030, 4, 1), photo_less=False,
        ))
        await self.until_roadside(person.card_number, lambda r: r["status"] != "unknown_card")
        return person

    async def roadside(self, card_number: str, at: datetime | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"card_number": card_number}
        if at is not None:
            body["at"] = at.isoformat()
        response = await self.http.post("/roadside-checks", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    async def until_roadside(self, card_number: str, holds: Callable[[dict[str, Any]], bool],
                             timeout: float = 60.0) -> dict[str, Any]:
        """Poll the roadside check until it says what a consumed event should make it say (a deadline, not a timer)."""
        deadline = time.monotonic() + timeout
        while True:
            result = await self.roadside(card_number)
            if holds(result):
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"the roadside check never changed as expected; last: {result}")
            await asyncio.sleep(0.1)

    async def fact(self, event_type: type[Fact], **matching: Any) -> dict[str, Any]:
        """Wait for the fact of this type whose payload has these values, and return its payload."""

        def matches(record: Received) -> bool:
            return record.type == event_type.event_type and all(record.json().get(k) == v for k, v in matching.items())

        await self.facts.wait_for(lambda records: any(matches(r) for r in records),
                                  what=f"{event_type.__name__} {matching}")
        return next(r.json() for r in self.facts.records if matches(r))

    def facts_of(self, event_type: type[Fact], **matching: Any) -> list[dict[str, Any]]:
        return [r.json() for r in self.facts.of_type(event_type.event_type)
                if all(r.json().get(k) == v for k, v in matching.items())]


@pytest.fixture
async def licensing(servers, namespace, settings_for) -> AsyncIterator[Licensing]:
    tokens = {POLICE: POLICE_TOKEN, "operator": OPERATOR_TOKEN, TRANSPORT_BUREAU: TRANSPORT_BUREAU_TOKEN, **OTHER_PARTNER_TOKENS}
    settings = settings_for("licensing", http_api_tokens=",".join(f"{who}={token}" for who, token in tokens.items()))
    clock = FixedClock(NOW)
    async with run_service("licensing", settings, clock=clock) as running:
        running.http.headers["Authorization"] = f"Bearer {POLICE_TOKEN}"
        service_topics = running.service.topics
        async with (
            PartnerPublisher(servers.kafka_bootstrap, namespace) as partner,
            TopicReader(servers.kafka_bootstrap, service_topics.facts) as facts,
            TopicReader(servers.kafka_bootstrap, service_topics.dead_letter) as dead_letters,
        ):
            yield Licensing(running, partner, facts, dead_letters, namespace,
                            PersonReferences(settings.person_ref_key.get_secret_value()), clock)
