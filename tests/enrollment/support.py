"""Test helpers for enrollment: people to register, and a harness that runs the service against
the real broker and database, publishes partner requests and waits for the service's facts."""

from __future__ import annotations

import random
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from mynumber_contracts import Event, MyNumber, ResidentAttributes, Sex, check_digit, topics
from mynumber_contracts.enrollment import (
    ApplicationAccepted,
    ApplicationRejected,
    ApplyForCard,
    Channel,
    DelegatePostOffice,
    PostOfficeDelegationChanged,
    RegisterResident,
    ResidentRegistered,
)

from services.enrollment.settings import EnrollmentSettings
from services.kit.clock import FixedClock
from tests.support.kafka import PartnerPublisher, Received, TopicReader
from tests.support.services import RunningService, run_service

# 10:00 on 2 June 2025 in Japan: the service's "now" unless a test moves the clock.
NOW = datetime(2025, 6, 2, 1, 0, tzinfo=UTC)
TODAY = date(2025, 6, 2)
MUNICIPALITY = "131016"
MUNICIPAL_OFFICE = "municipality/131016"
POST_OFFICE = "post-office/tokyo-chuo"
EMBASSY = "diplomatic-office/us-newyork"
OPERATOR = {"Authorization": "Bearer development-only-operator-token"}

_numbers = random.Random()


def new_number() -> MyNumber:
    base = f"{_numbers.randrange(10**10, 10**11):011d}"
    return MyNumber(base + str(check_digit(base)))


def wrong_check_digit(number: MyNumber) -> str:
    digits = number.reveal()
    return digits[:11] + str((int(digits[11]) + 1) % 10)


def registration(
    number: MyNumber | None,
    *,
    born: date = date(1990, 4, 1),
    nationality: str = "JP",
    residence_status: str | None = None,
    residence_period_end: date | None = None,
    name_kanji: str = "山田 太郎",
    name_kana: str = "ヤマダ タロウ",
    address: str = "東京都千代田区永田町1-7-1",
    sex: Sex = Sex.male,
    request_id: str | None = None,
    municipality_code: str = MUNICIPALITY,
) -> RegisterResident:
    return RegisterResident(
        request_id=request_id or f"reg-{secrets.token_urlsafe(9)}",
        municipality_code=municipality_code,
        my_number=number,
        attributes=ResidentAttributes(
            name_kanji=name_kanji, name_kana=name_kana, date_of_birth=born, sex=sex, address=address
        ),
        nationality=nationality,
        residence_status=residence_status,
        residence_period_end=residence_period_end,
    )


@dataclass
class Enrollment:
    """One running enrollment service (or several in one consumer group), a partner and readers."""

    instances: list[RunningService]
    partner: PartnerPublisher
    facts: TopicReader
    dead_letters: TopicReader
    clock: FixedClock
    settings: EnrollmentSettings
    seen: set[str] = field(default_factory=set)

    @property
    def service(self) -> RunningService:
        return self.instances[0]

    @property
    def store(self) -> Any:
        return self.service.service.deps.store

    async def send(self, request: Event, *, source: str = MUNICIPAL_OFFICE, subject: str | None = None,
                   event_id: str | None = None) -> None:
        await self.partner.send(request, subject=subject or _subject(request), source=source, event_id=event_id)

    async def fact(self, event_type: str, timeout: float = 60.0, **match: Any) -> dict[str, Any]:
        """The first fact of `event_type` whose payload has every `match` value (waits for it)."""
        found = await self.facts_of(event_type, 1, timeout=timeout, **match)
        return found[0]

    async def facts_of(self, event_type: str, count: int, timeout: float = 60.0, **match: Any) -> list[dict[str, Any]]:
        def matching(records: list[Received]) -> list[dict[str, Any]]:
            payloads = [r.json() for r in records if r.type == event_type]
            return [p for p in payloads if all(p.get(k) == v for k, v in match.items())]

        await self.facts.wait_for(lambda records: len(matching(records)) >= count, timeout=timeout,
                                  what=f"{count} x {event_type} {match}")
        return matching(self.facts.records)

    async def register(self, number: MyNumber, **details: Any) -> str:
        """Register a resident and wait until the registry has them; returns the person reference."""
        request = registration(number, **details)
        await self.send(request, source=f"municipality/{request.municipality_code}")
        people = self.service.service.deps.people
        person_ref = people.for_number(number)
        await self.fact(ResidentRegistered.event_type, person_ref=person_ref)
        return person_ref

    async def delegate(self, post_office_id: str = POST_OFFICE, *, active: bool = True,
                       municipality_code: str = MUNICIPALITY) -> None:
        request = DelegatePostOffice(municipality_code=municipality_code, post_office_id=post_office_id, active=active)
        await self.send(request, source=f"municipality/{municipality_code}")  # a municipality delegates its own
        await self.fact(PostOfficeDelegationChanged.event_type, post_office_id=post_office_id, active=active,
                        municipality_code=municipality_code)


def application(number: str, channel: Channel = Channel.municipal_office, *, office_id: str | None = None,
                applied_on: date = TODAY, photo_ref: str | None = "photo/0001", application_id: str | None = None) -> ApplyForCard:
    offices = {Channel.municipal_office: MUNICIPAL_OFFICE, Channel.post_office: POST_OFFICE, Channel.diplomatic_office: EMBASSY}
    return ApplyForCard(
        application_id=application_id or f"app-{new_number().reveal()[:10]}",
        channel=channel,
        office_id=office_id or offices[channel],
        my_number=number,
        applied_on=applied_on,
        photo_ref=photo_ref,
    )


async def apply(enrollment: Enrollment, request: ApplyForCard) -> dict:
    """Send an application and return its decision (the accepted or rejected fact)."""
    await enrollment.send(request, source=request.office_id)

    def decided(records) -> bool:
        return any(r.type in (ApplicationAccepted.event_type, ApplicationRejected.event_type)
                   and r.json()["application_id"] == request.application_id for r in records)

    await enrollment.facts.wait_for(decided, what=f"decision on {request.application_id}")
    return next(r.json() | {"type": r.type} for r in enrollment.facts.records
                if r.type in (ApplicationAccepted.event_type, ApplicationRejected.event_type)
                and r.json()["application_id"] == request.application_id)


def _subject(request: Event) -> str:
    number = getattr(request, "my_number", None)
    if number is not None:
        return number.reveal() if isinstance(number, MyNumber) else str(number)
    return getattr(request, "request_id", None) or getattr(request, "application_id", None) or "subject"


@asynccontextmanager
async def running_enrollment(servers: Any, settings: EnrollmentSettings, *, instances: int = 1,
                             now: datetime = NOW, **test_doubles: Any) -> AsyncIterator[Enrollment]:
    clock = FixedClock(now)
    service_topics = topics.for_service("enrollment", settings.topic_namespace)
    async with AsyncExitStack() as stack:
        running = [await stack.enter_async_context(run_service("enrollment", settings, clock=clock, **test_doubles)) for _ in range(instances)]
        partner = await stack.enter_async_context(PartnerPublisher(servers.kafka_bootstrap, settings.topic_namespace))
        facts = await stack.enter_async_context(TopicReader(servers.kafka_bootstrap, service_topics.facts))
        dead_letters = await stack.enter_async_context(TopicReader(servers.kafka_bootstrap, service_topics.dead_letter))
        yield Enrollment(running, partner, facts, dead_letters, clock, settings)


async def issue_card(enrollment: Enrollment, number: MyNumber, **details: Any) -> dict[str, Any]:
    """Register a resident, apply at the municipal office and return the CardIssued payload."""
    await enrollment.register(number, **details)
    request = application(number.reveal())
    decision = await apply(enrollment, request)
    assert decision["type"] == ApplicationAccepted.event_type, decision
    return await enrollment.fact("jp.mynumber.enrollment.card_issued.v1", application_id=request.application_id)


_CARD_ANSWERS = {
    "jp.mynumber.enrollment.card_suspended.v1", "jp.mynumber.enrollment.card_resumed.v1",
    "jp.mynumber.enrollment.card_reissued.v1", "jp.mynumber.enrollment.card_returned.v1",
    "jp.mynumber.enrollment.card_revoked.v1", "jp.mynumber.enrollment.card_request_rejected.v1",
}


async def card_request(enrollment: Enrollment, request: Any, *, nth: int = 1) -> dict[str, Any]:
    """Send a lifecycle request and return the fact that answers it (the nth answer for a replay)."""
    before = len(enrollment.facts.records)
    await enrollment.send(request, source=request.office_id)

    def answers(records: list[Received]) -> list[dict[str, Any]]:
        found = []
        for r in records[before:]:
            if r.type in _CARD_ANSWERS:
                payload = r.json() | {"type": r.type}
                if payload.get("request_id", request.request_id) == request.request_id and _about(payload, request, enrollment):
                    found.append(payload)
        return found

    await enrollment.facts.wait_for(lambda records: len(answers(records)) >= nth, what=f"answer to {request.request_id}")
    return answers(enrollment.facts.records)[nth - 1]


def _about(payload: dict[str, Any], request: Any, enrollment: Enrollment) -> bool:
    if payload["type"] == "jp.mynumber.enrollment.card_request_rejected.v1":
        return True
    number = request.my_number
    people = enrollment.service.service.deps.people
    return payload["person_ref"] == people.for_number(MyNumber(number))


@asynccontextmanager
async def use_cases(settings: EnrollmentSettings, *, now: datetime = NOW, renderer: Any = None) -> AsyncIterator[UseCases]:
    """The use cases wired to the real database, without the broker: for store-level tests."""
    from pymongo import AsyncMongoClient

    from services.enrollment.certificates import PdfCertificateRenderer
    from services.enrollment.handlers import EnrollmentDeps
    from services.enrollment.store import EnrollmentStore
    from services.enrollment.vault import NumberVault
    from services.kit.people import PersonReferences

    client: AsyncMongoClient = AsyncMongoClient(settings.mongodb_url, tz_aware=True)
    try:
        vault = NumberVault(settings.number_keys(), settings.number_index_key())
        store = EnrollmentStore(client[settings.database_name("enrollment")], vault)
        await store.ensure_indexes()
        deps = EnrollmentDeps(store=store, vault=vault, people=PersonReferences(settings.person_ref_key.get_secret_value()),
                              rules=settings.card_rules(),
                              renderer=renderer or PdfCertificateRenderer(settings.certificate_font_path),
                              render_timeout_seconds=settings.certificate_render_timeout_seconds)
        yield UseCases(deps, FixedClock(now))
    finally:
        await client.close()


@dataclass
class UseCases:
    deps: Any
    clock: FixedClock

    async def run(self, use_case: Any, event: Event, *, event_id: str | None = None, source: str | None = None) -> list[Any]:
        """Call a use case as the kit would for an event with this id (a new id when not given)."""
        from services.kit.idempotency import EarlierFacts

        facts = await self.answer(use_case, event, event_id=event_id, source=source)
        return list(facts.facts if isinstance(facts, EarlierFacts) else facts)

    async def answer(self, use_case: Any, event: Event, *, event_id: str | None = None, source: str | None = None) -> Any:
        """What the use case answers, as `run` calls it: its facts, or EarlierFacts (the facts
        another event decided, published again under that event's ids)."""
        import uuid

        from mynumber_contracts import Envelope

        from services.kit.messaging import HandlerContext

        named = getattr(event, "municipality_code", None)
        source = source or getattr(event, "office_id", None) or (f"municipality/{named}" if named else MUNICIPAL_OFFICE)
        envelope = Envelope(id=event_id or str(uuid.uuid4()), source=source, type=event.event_type,
                            time=self.clock.now())
        return await use_case(event, HandlerContext(envelope=envelope, clock=self.clock, deps=self.deps))


def kinds(facts: Any) -> list[str]:
    """The facts' types by name, in order."""
    return [type(fact).__name__ for fact in facts]


async def a_card_holder(run: UseCases) -> tuple[str, Any]:
    """A resident registered, with a card from an application: their number's digits and the card."""
    from services.enrollment.handlers import apply_for_card, register_resident

    number = new_number()
    await run.run(register_resident, registration(number), event_id=f"reg-{number.reveal()[:6]}")
    await run.run(apply_for_card, application(number.reveal()))
    [card] = await run.deps.store.cards_of(run.deps.people.for_number(number))
    return number.reveal(), card
