"""Signed partner events: every quarantine reason, against the real broker and database.

Each forged or unauthorised event goes to the quarantine topic and to the security audit
trail with its reason; it is never processed, and the consumer keeps going."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import date

import pytest
from mynumber_contracts import KafkaRecord, MyNumber, ResidentAttributes, Sex, check_digit, topics
from mynumber_contracts.enrollment import RegisterResident, ResidentRegistered
from mynumber_contracts.partners import KeyStatus, Partner, PartnerKey, PartnerType
from mynumber_contracts.signing import generate_private_key, public_key_to_text, sign_record

from services.kit.messaging import EventService
from services.kit.settings import ServiceSettings
from tests.kit.test_envelope_dead_letter_idempotency import ProbeDeps
from tests.support import partners
from tests.support.kafka import PartnerPublisher, TopicReader, create_topics
from tests.support.probe import probe_service


def resident(seed: int) -> RegisterResident:
    base = f"{seed:011d}"
    return RegisterResident(
        request_id=f"req-{seed}", municipality_code="131016", my_number=MyNumber(base + str(check_digit(base))),
        attributes=ResidentAttributes(name_kanji="鈴木 一郎", name_kana="スズキ イチロウ", date_of_birth=date(1985, 5, 5),
                                      sex=Sex.male, address="大阪府大阪市北区1-1"),
        nationality="JP",
    )


@pytest.fixture
async def probe(servers, namespace) -> AsyncIterator[EventService[ProbeDeps]]:
    settings = ServiceSettings(
        kafka_bootstrap_servers=servers.kafka_bootstrap, mongodb_url=servers.mongodb_url, topic_namespace=namespace,
        database=f"{namespace}_probe", partner_registry_database=partners.registry_database(namespace),
        partner_cache_seconds=0,
    )
    async def with_topics(service: EventService[ProbeDeps]) -> None:
        await create_topics(servers.kafka_bootstrap, [*service.topics.all(), topics.quarantine_topic(namespace)])

    async with probe_service(settings, before_start=with_topics, drop_database=False) as service:
        yield service


def registered(namespace: str, partner_id: str, *, allowed=("*",), delegating: str | None = None,
               keys: dict[str, tuple[object, KeyStatus]] | None = None) -> None:
    partner_type = PartnerType(partner_id.split("/")[0])
    partners.register(namespace, Partner(
        partner_id=partner_id, type=partner_type, allowed_event_types=list(allowed), delegating_municipality=delegating,
        keys=[PartnerKey(key_id=kid, public_key=public_key_to_text(k.public_key()), status=status)
              for kid, (k, status) in (keys or {}).items()],
    ))


async def test_every_quarantine_reason_and_the_consumer_keeps_going(probe, servers, namespace):
    municipality_key, rotated_in_key = generate_private_key(), generate_private_key()
    registered(namespace, "municipality/272000", keys={"old": (municipality_key, KeyStatus.retired),
                                                       "new": (rotated_in_key, KeyStatus.active)})
    insurer_key = generate_private_key()
    registered(namespace, "insurer/06130001", allowed=["jp.mynumber.insurance.enroll_member.v1"],
               keys={"k1": (insurer_key, KeyStatus.active)})
    post_office_key = generate_private_key()
    registered(namespace, "post-office/no-delegation", delegating=None, keys={"k1": (post_office_key, KeyStatus.active)})

    async with (
        PartnerPublisher(servers.kafka_bootstrap, namespace, source="municipality/272000", signed=False) as partner,
        TopicReader(servers.kafka_bootstrap, topics.quarantine_topic(namespace)) as quarantine,
        TopicReader(servers.kafka_bootstrap, probe.topics.facts) as facts,
    ):
        topic = probe.topics.requests

        def event(seed: int, source: str = "municipality/272000") -> KafkaRecord:
            return partner.record(resident(seed), subject="one-partition", source=source)

        forged_content = sign_record(event(12), rotated_in_key, "new")
        forged_content = KafkaRecord(forged_content.key, forged_content.value.replace(b"131016", b"131017"),
                                     forged_content.headers)
        replay_first = sign_record(partner.record(resident(20), subject="one-partition", event_id="replayed-id"),
                                   rotated_in_key, "new")
        replay_second = sign_record(partner.record(resident(21), subject="one-partition", event_id="replayed-id"),
                                    rotated_in_key, "new")
        cases = {
            "unsigned": event(10),
            "unknown_key": sign_record(event(11, source="municipality/999999"), generate_private_key(), "k1"),
            "unknown_key_id": sign_record(event(13), rotated_in_key, "no-such-key"),
            "retired_key": sign_record(event(14), municipality_key, "old"),
            "bad_signature": forged_content,
            "not_authorised": sign_record(event(15, source="insurer/06130001"), insurer_key, "k1"),
            "no_delegation": sign_record(event(16, source="post-office/no-delegation"), post_office_key, "k1"),
        }
        for record in cases.values():
            await partner.send_record(topic, record)
        await partner.send_record(topic, replay_first)
        await partner.send_record(topic, replay_second)
        valid_rotated_in = sign_record(event(30), rotated_in_key, "new")
        await partner.send_record(topic, valid_rotated_in)

        await quarantine.wait_count(len(cases) + 1)
        await facts.wait_count(2, ResidentRegistered.event_type)  # the first replay and the rotated-in key

    reasons = [r.header("dlq_reason") for r in sorted(quarantine.records, key=lambda r: int(r.header("dlq_offset")))]
    assert reasons == ["unsigned", "unknown_key", "unknown_key", "retired_key", "bad_signature", "not_authorised",
                       "no_delegation", "replayed_event_id"]
    quarantined_values = {r.record.value for r in quarantine.records}
    assert {r.value for r in cases.values()} <= quarantined_values, "the original bytes are kept"
    assert replay_second.value in quarantined_values
    processed = {r.json()["municipality_code"] for r in facts.records}
    assert processed == {"131016"}
    assert await probe.database["effects"].count_documents({}) == 2
    trail = await probe.audit.by_action("security.quarantine")
    assert sorted(a.reason.split(":")[0] for a in trail) == sorted(reasons)
    assert {a.actor for a in trail} >= {"municipality/272000", "insurer/06130001", "post-office/no-delegation"}


async def test_a_key_rotated_in_while_running_is_accepted_at_once(probe, servers, namespace):
    first = generate_private_key()
    registered(namespace, "municipality/011002", keys={"k1": (first, KeyStatus.active)})
    async with (
        PartnerPublisher(servers.kafka_bootstrap, namespace, source="municipality/011002", signed=False) as partner,
        TopicReader(servers.kafka_bootstrap, probe.topics.facts) as facts,
    ):
        await partner.send_record(probe.topics.requests, sign_record(partner.record(resident(40), subject="s"), first, "k1"))
        await facts.wait_count(1)
        second = generate_private_key()
        await probe.partners.add_key("municipality/011002", "k2", public_key_to_text(second.public_key()))
        await probe.partners.retire_key("municipality/011002", "k1")
        await partner.send_record(probe.topics.requests, sign_record(partner.record(resident(41), subject="s"), second, "k2"))
        await facts.wait_count(2)
    assert len({r.id for r in facts.records}) == 2
    assert str(uuid.UUID(facts.records[0].id))
