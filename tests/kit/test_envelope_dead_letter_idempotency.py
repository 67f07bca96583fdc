"""The service kit against the real broker and database: bad input is dead-lettered with its
original bytes and reason and never stalls the partition; a redelivered event has one effect."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date

import pytest
from mynumber_contracts import MyNumber, ResidentAttributes, Sex, check_digit, topics
from mynumber_contracts.enrollment import RegisterResident, ResidentRegistered
from pymongo.asynchronous.database import AsyncDatabase

from services.kit.clock import SystemClock
from services.kit.messaging import EventService, HandlerContext, HandlerRegistry
from services.kit.people import PersonReferences
from services.kit.settings import ServiceSettings
from services.kit.store import connect
from tests.support.kafka import PartnerPublisher, TopicReader, create_topics


def a_number(seed: int) -> MyNumber:
    base = f"{seed:011d}"
    return MyNumber(base + str(check_digit(base)))


def resident(seed: int) -> RegisterResident:
    return RegisterResident(
        request_id=f"req-{seed}",
        municipality_code="131016",
        my_number=a_number(seed),
        attributes=ResidentAttributes(
            name_kanji="山田 太郎", name_kana="ヤマダ タロウ", date_of_birth=date(1990, 4, 1), sex=Sex.male,
            address="東京都千代田区永田町1-7-1",
        ),
        nationality="JP",
    )


@dataclass
class ProbeDeps:
    database: AsyncDatabase
    people: PersonReferences


handlers = HandlerRegistry()


@handlers.handles(RegisterResident)
async def record_resident(event: RegisterResident, ctx: HandlerContext[ProbeDeps]) -> Sequence[ResidentRegistered]:
    """A minimal use case whose every run leaves a visible effect: one effect document per run."""
    assert event.my_number is not None
    person_ref = ctx.deps.people.for_number(event.my_number)
    await ctx.deps.database["effects"].insert_one({"request_id": event.request_id, "person_ref": person_ref})
    return [
        ResidentRegistered(
            person_ref=person_ref, municipality_code=event.municipality_code, attributes=event.attributes,
            nationality=event.nationality,
        )
    ]


@pytest.fixture
async def probe(servers, namespace) -> AsyncIterator[EventService[ProbeDeps]]:
    settings = ServiceSettings(
        kafka_bootstrap_servers=servers.kafka_bootstrap, mongodb_url=servers.mongodb_url,
        topic_namespace=namespace, database=f"{namespace}_probe",
        partner_registry_database=f"{namespace}_partners", partner_cache_seconds=0.5,
    )
    client, database = connect(settings.mongodb_url, settings.database, app_name="probe")
    service = EventService(
        "enrollment", settings=settings, database=database, clock=SystemClock(),
        deps=ProbeDeps(database, PersonReferences(settings.person_ref_key.get_secret_value())),
    )
    service.include(handlers)
    await create_topics(servers.kafka_bootstrap, topics.for_service("enrollment", namespace).all())
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
        await client.drop_database(settings.database)
        await client.close()


def good_headers(event_type: str = RegisterResident.event_type, **override: str) -> list[tuple[str, bytes]]:
    headers = {
        "ce_specversion": "1.0", "ce_id": str(uuid.uuid4()), "ce_source": "municipality/131016",
        "ce_type": event_type, "ce_time": "2026-11-27T09:00:00Z", "content-type": "application/json",
    }
    headers.update(override)
    return [(k, v.encode()) for k, v in headers.items() if v is not None]


VALID_JSON = resident(1).model_dump_json().encode()
GOOD_DIGITS = a_number(1).reveal()
WRONG_CHECK_DIGIT = GOOD_DIGITS[:11] + str((int(GOOD_DIGITS[11]) + 1) % 10)
MALFORMED = {
    "not_json": (b"\xff\xfe this is not json {", good_headers()),
    "schema_violation": (json.dumps({"request_id": "x", "municipality_code": "13"}).encode(), good_headers()),
    "wrong_types": (VALID_JSON.replace(b'"131016"', b"131016"), good_headers()),
    "unknown_event_type": (VALID_JSON, good_headers("jp.mynumber.enrollment.no_such_thing.v1")),
    "missing_header": (VALID_JSON, [h for h in good_headers() if h[0] != "ce_id"]),
    "invalid_header": (VALID_JSON, good_headers(ce_time="yesterday")),
    "non_utf8_header": (VALID_JSON, good_headers()[:-1] + [("content-type", b"\xff\xfe")]),
    "bad_check_digit": (VALID_JSON.replace(GOOD_DIGITS.encode(), WRONG_CHECK_DIGIT.encode()), good_headers()),
    "nested": (b"[" * 5000 + b"]" * 5000, good_headers()),
}
EXPECTED_REASON = {
    "not_json": "not_json", "schema_violation": "schema_violation", "wrong_types": "schema_violation",
    "unknown_event_type": "unknown_event_type", "missing_header": "missing_header", "invalid_header": "invalid_header",
    "non_utf8_header": "invalid_header", "bad_check_digit": "schema_violation", "nested": None,
}


async def test_each_malformed_message_is_dead_lettered_with_its_bytes_and_the_next_one_is_processed(probe, servers):
    service_topics = probe.topics
    async with (
        PartnerPublisher(servers.kafka_bootstrap, probe.settings.topic_namespace) as partner,
        TopicReader(servers.kafka_bootstrap, service_topics.dead_letter) as dead_letters,
        TopicReader(servers.kafka_bootstrap, service_topics.facts) as facts,
    ):
        key = topics.ordering_key("same-person")  # all on one partition: a stall would block the valid event
        sent_headers = {}
        for name, (value, headers) in MALFORMED.items():
            sent_headers[name] = await partner.send_raw(service_topics.requests, value, key=key, headers=headers)
        valid = partner.record(resident(2), subject="same-person")
        await partner.send_record(service_topics.requests, valid)

        await dead_letters.wait_count(len(MALFORMED))
        await facts.wait_count(1, ResidentRegistered.event_type)

    letters = sorted(dead_letters.records, key=lambda r: int(r.header("dlq_offset")))
    assert len(letters) == len(MALFORMED)
    assert len({r.record.partition for r in letters}) == 1, "dead letters keep the original key, so stay in order"
    for letter, (name, (value, _)) in zip(letters, MALFORMED.items(), strict=True):
        headers = sent_headers[name]
        assert letter.record.value == value, name  # the original bytes, untouched
        assert letter.record.key == key
        assert letter.header("dlq_source_topic") == service_topics.requests
        assert letter.header("dlq_partition") is not None and letter.header("dlq_offset") is not None
        reason = letter.header("dlq_reason")
        assert reason == (EXPECTED_REASON[name] or reason) and reason, name
        assert letter.header("dlq_detail"), name
        original = [(k, base64.b64decode(v)) for k, v in json.loads(letter.header("dlq_original_headers"))]
        assert original == headers, name
        assert WRONG_CHECK_DIGIT not in (letter.header("dlq_detail") or ""), "the number must not leak into the reason"
    assert await probe.database["effects"].count_documents({}) == 1


async def test_an_event_delivered_three_times_has_one_effect_and_one_output_id(probe, servers):
    async with (
        PartnerPublisher(servers.kafka_bootstrap, probe.settings.topic_namespace) as partner,
        TopicReader(servers.kafka_bootstrap, probe.topics.facts) as facts,
    ):
        record = partner.record(resident(3), subject="person-3")
        for _ in range(3):
            await partner.send_record(probe.topics.requests, record)
        await facts.wait_count(3, ResidentRegistered.event_type)

    published = facts.of_type(ResidentRegistered.event_type)
    assert len({r.id for r in published}) == 1, "a replay re-publishes the same output event id"
    assert {r.record.value for r in published} == {published[0].record.value}
    assert all(r.record.headers == published[0].record.headers for r in published), "headers too, byte for byte"
    assert await probe.database["effects"].count_documents({"request_id": "req-3"}) == 1
    assert probe.metrics.registry.get_sample_value(
        "mynumber_facts_published_total", {"service": "enrollment", "event_type": ResidentRegistered.event_type}
    ) == 3, "every publish is counted, the replays' too"
    taken_in = {
        outcome: probe.metrics.registry.get_sample_value(
            "mynumber_events_taken_in_total",
            {"service": "enrollment", "event_type": RegisterResident.event_type, "outcome": outcome},
        )
        for outcome in ("new", "replayed")
    }
    assert taken_in == {"new": 1, "replayed": 2}
    assert all(r.header("ce_causationid") == record.header("ce_id").decode() for r in published)


async def test_the_number_never_appears_in_keys_or_headers_of_facts(probe, servers):
    async with (
        PartnerPublisher(servers.kafka_bootstrap, probe.settings.topic_namespace) as partner,
        TopicReader(servers.kafka_bootstrap, probe.topics.facts) as facts,
    ):
        await partner.send(resident(6), subject=a_number(6).reveal())
        await facts.wait_count(1)
    digits = a_number(6).reveal().encode()
    for received in facts.records:
        assert digits not in (received.record.key or b"")
        assert all(digits not in v for _, v in received.record.headers)
        assert digits not in received.record.value


async def test_a_service_that_has_not_started_refuses_to_publish_facts(servers, namespace):
    settings = ServiceSettings(kafka_bootstrap_servers=servers.kafka_bootstrap, mongodb_url=servers.mongodb_url,
                               topic_namespace=namespace, database=f"{namespace}_probe")
    client, database = connect(settings.mongodb_url, settings.database, app_name="probe")
    try:
        service = EventService("enrollment", settings=settings, database=database, clock=SystemClock(),
                               deps=ProbeDeps(database, PersonReferences(settings.person_ref_key.get_secret_value())))
        with pytest.raises(RuntimeError, match="has not started"):
            await service.publish_facts([], cause=service.synthetic_cause("never"))
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("value", "holds_nul"),
    [
        (json.dumps({"name": "毒\u0000太郎"}).encode(), True),  # json.dumps escapes it as \u0000
        (b'{"name": "a\\\\\\u0000"}', True),  # an escaped backslash, then the escape
        (b'{"name": "a\\\\u0000"}', False),  # an escaped backslash, then the text "u0000"
        (b'{"name": "plain"}', False),
        (json.dumps({"recipients": [{"n": f"{i:012d}"} for i in range(5_000)]}).encode(), False),
        (b"", False),
        (None, False),
    ],
)
def test_a_nul_character_is_found_only_where_json_escapes_one(value, holds_nul):
    from services.kit.messaging import _holds_nul_character

    assert _holds_nul_character(value) is holds_nul
