"""The insurance service running in-process against the real broker and database, with a
fixed clock, and helpers that play the registry, the insurers, holders and institutions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest
from mynumber_contracts import Event, MyNumber, ResidentAttributes, Sex, check_digit
from mynumber_contracts.enrollment import CardIssued, ResidentRegistered
from mynumber_contracts.insurance import EnrollMember
from pymongo import AsyncMongoClient

from services.kit.clock import FixedClock
from services.kit.people import PersonReferences
from services.kit.store import is_transient
from tests.support.kafka import PartnerPublisher, Received, TopicReader
from tests.support.services import RunningService, run_service

# 10:00 in Japan on 1 April 2026.
START = datetime(2026, 4, 1, 1, 0, tzinfo=UTC)
INSURER = "06139999"
INSTITUTION = "1312345678"
REGISTRY = "service/enrollment"
OPERATOR = {"Authorization": "Bearer operator-token-insurance-0001"}
INSTITUTION_TOKENS = {INSTITUTION: "hospital-token-insurance-0001", "1399999999": "hospital-token-insurance-0002"}
KIOSK = {"Authorization": "Bearer kiosk-token-insurance-0001"}  # a partner of the shared token list, not an institution
TOKENS = ",".join(["operator=operator-token-insurance-0001", "kiosk/lawson-0001=kiosk-token-insurance-0001",
                   *(f"medical-institution/{code}={token}" for code, token in INSTITUTION_TOKENS.items())])


def as_institution(code: str = INSTITUTION) -> dict[str, str]:
    return {"Authorization": f"Bearer {INSTITUTION_TOKENS[code]}"}


def a_number(seed: int) -> MyNumber:
    base = f"{seed:011d}"
    return MyNumber(base + str(check_digit(base)))


def attributes(name_kanji: str = "山田 花子", name_kana: str = "ヤマダ ハナコ", born: date = date(1985, 6, 15),
               sex: Sex = Sex.female, address: str = "東京都千代田区永田町1-7-1") -> ResidentAttributes:
    return ResidentAttributes(name_kanji=name_kanji, name_kana=name_kana, date_of_birth=born, sex=sex, address=address)


def attributes_of(seed: int, **changes: Any) -> ResidentAttributes:
    """Resident `seed`'s attributes: everyone lives at their own address."""
    return attributes(**{"address": f"東京都千代田区永田町1-7-{seed}", **changes})


def enrollment(member: str, number_seed: int | None, attributes_seed: int, request_id: str | None = None,
               **changes: object) -> EnrollMember:
    """The insurer's enrollment of member `member` (symbol 記号) on 2026-04-01: with resident
    `number_seed`'s number (none if None) and resident `attributes_seed`'s attributes, changed as given."""
    return EnrollMember(
        request_id=request_id or f"enroll-{member}", insurer_number=INSURER, member_symbol="記号", member_number=member,
        my_number=a_number(number_seed) if number_seed is not None else None,
        attributes=attributes_of(attributes_seed, **changes), enrolled_on=date(2026, 4, 1),
    )


@dataclass
class Insurance:
    """The running service, its clock, a partner publisher and a reader of its facts."""

    running: RunningService
    clock: FixedClock
    partner: PartnerPublisher
    facts: TopicReader
    people: PersonReferences
    database: Any  # the service's AsyncDatabase (through the test's own client)
    namespace: str

    @property
    def http(self) -> Any:
        return self.running.http

    def ref(self, number: MyNumber) -> str:
        return self.people.for_number(number)

    async def processed(self, event_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until the service has consumed the event (its idempotency record exists)."""
        deadline = time.monotonic() + timeout
        while True:
            document = await _tolerant(self.database["processed_events"].find_one({"_id": event_id}))
            if document is not None and "digest" in document:  # FerretDB shows an upsert's _id before its fields
                return document
            if time.monotonic() > deadline:
                raise AssertionError(f"the service did not consume event {event_id}: {document}")
            await asyncio.sleep(0.05)

    async def caused_by(self, event_id: str, count: int) -> list[Received]:
        await self.facts.wait_for(
            lambda records: len([r for r in records if r.header("ce_causationid") == event_id]) >= count,
            what=f"{count} facts caused by {event_id}",
        )
        return [r for r in self.facts.records if r.header("ce_causationid") == event_id]

    async def send(self, request: Event, *, source: str, subject: str = "subject") -> list[dict[str, Any]]:
        """Publish a partner request (or a registry fact) and return the facts it caused, in order,
        each as its JSON with the event type under `type`."""
        record = self.partner.record(request, subject=subject, source=source)
        await self.partner.send_record(request.topic(self.namespace), record)
        event_id = record.header("ce_id").decode()
        outcome = await self.processed(event_id)
        received = await self.caused_by(event_id, len(outcome.get("facts", [])))  # FerretDB drops an empty list
        return [{"type": r.type, **r.json()} for r in received]

    async def registry(self, fact: Event) -> list[dict[str, Any]]:
        return await self.send(fact, source=REGISTRY, subject=getattr(fact, "person_ref", "registry"))

    async def insurer(self, request: Event, insurer: str = INSURER) -> list[dict[str, Any]]:
        return await self.send(request, source=f"insurer/{insurer}")

    async def institution(self, request: Event, institution: str = INSTITUTION) -> list[dict[str, Any]]:
        return await self.send(request, source=f"medical-institution/{institution}")

    async def holder(self, request: Event) -> list[dict[str, Any]]:
        return await self.send(request, source="portal/myna")

    async def resident(self, seed: int, attrs: ResidentAttributes | None = None) -> str:
        """Register resident `seed` (number `a_number(seed)`, attributes `attributes_of(seed)` unless given)."""
        person_ref = self.ref(a_number(seed))
        await self.registry(ResidentRegistered(
            person_ref=person_ref, municipality_code="131016", attributes=attrs or attributes_of(seed), nationality="JP"))
        return person_ref

    async def card(self, person_ref: str, certificate_id: str, *, certificate_expires_on: date = date(2031, 6, 15)) -> list[dict[str, Any]]:
        return await self.registry(CardIssued(
            person_ref=person_ref, card_number=f"C-{certificate_id}", certificate_id=certificate_id,
            application_id=f"app-{certificate_id}", issued_on=date(2026, 1, 10), expires_on=date(2036, 6, 15),
            certificate_expires_on=certificate_expires_on, photo_less=False,
        ))

    async def eligibility(self, certificate_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/eligibility/{certificate_id}", headers=as_institution())
        assert response.status_code == 200, response.text
        return response.json()

    async def certificates(self, person_ref: str) -> list[dict[str, Any]]:
        response = await self.http.get(f"/people/{person_ref}/certificates", headers=OPERATOR)
        assert response.status_code == 200, response.text
        return response.json()


async def _tolerant(query: Any) -> Any:
    """A poll survives the shared database restarting under it (another test may restart the stack)."""
    try:
        return await query
    except Exception as exc:
        if not is_transient(exc):
            raise
        return None


def of_type(facts: list[dict[str, Any]], fact_type: type[Event]) -> list[dict[str, Any]]:
    return [f for f in facts if f["type"] == fact_type.event_type]


def types(facts: list[dict[str, Any]]) -> list[str]:
    return [f["type"].split(".")[-2] for f in facts]


@pytest.fixture
async def insurance(settings_for, servers, namespace) -> AsyncIterator[Insurance]:
    settings = settings_for("insurance", http_api_tokens=TOKENS)
    clock = FixedClock(START)
    client: AsyncMongoClient = AsyncMongoClient(servers.mongodb_url, tz_aware=True)
    try:
        async with run_service("insurance", settings, clock=clock) as running:
            service = running.service
            async with (
                PartnerPublisher(servers.kafka_bootstrap, namespace) as partner,
                TopicReader(servers.kafka_bootstrap, service.topics.facts) as facts,
            ):
                yield Insurance(
                    running=running, clock=clock, partner=partner, facts=facts,
                    people=PersonReferences(settings.person_ref_key.get_secret_value()),
                    database=client[settings.database_name("insurance")], namespace=namespace,
                )
    finally:
        await client.close()
