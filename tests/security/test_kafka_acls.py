"""Kafka authentication and ACLs on the native secure node: a service runs with its own
SCRAM principal over TLS, every principal may write only its own topics, and an unauthenticated
client cannot connect."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import date
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError
from mynumber_cli import acls, native_stack
from mynumber_contracts import MyNumber, ResidentAttributes, Sex, check_digit, topics
from mynumber_contracts.enrollment import RegisterResident, ResidentRegistered

from services.kit.messaging import EventService
from services.kit.settings import ServiceSettings
from tests.kit.test_envelope_dead_letter_idempotency import ProbeDeps
from tests.support import partners
from tests.support.kafka import PartnerPublisher, TopicReader
from tests.support.probe import probe_service

NAMESPACE = f"acl{uuid.uuid4().hex[:8]}"
PASSWORDS = {"svc-enrollment": uuid.uuid4().hex, "municipality-131016": uuid.uuid4().hex}


@pytest.fixture(scope="module")
def secure(servers) -> Iterator[native_stack.StackEndpoints]:
    import shutil

    if not (shutil.which("java") and shutil.which("mvn")):
        pytest.skip("the secure Kafka node needs Java and Maven, which this machine lacks")
    endpoints = native_stack.up(secure=True)
    try:
        asyncio.run(_create_topics(endpoints))
        acls.apply(acls.service_grant("enrollment", NAMESPACE), PASSWORDS["svc-enrollment"])
        acls.apply(acls.Grant("municipality-131016", write=(topics.for_service("enrollment", NAMESPACE).requests,)),
                   PASSWORDS["municipality-131016"])
        yield endpoints
    finally:
        native_stack.down(secure=True)


async def _create_topics(endpoints: native_stack.StackEndpoints) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    names = [*topics.all_topics(NAMESPACE)]
    admin = AIOKafkaAdminClient(**endpoints.kafka_admin_client_kwargs())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, num_partitions=topics.PARTITIONS, replication_factor=1) for n in names])
    finally:
        await admin.close()


def facts_reader(endpoints: native_stack.StackEndpoints) -> TopicReader:
    """A reader of enrollment's facts on the secure listener, as the admin principal."""
    consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
                                **endpoints.kafka_admin_client_kwargs())
    return TopicReader(endpoints.kafka_bootstrap, topics.for_service("enrollment", NAMESPACE).facts, consumer=consumer)


def scram(endpoints: native_stack.StackEndpoints, principal: str) -> dict[str, Any]:
    from aiokafka.helpers import create_ssl_context

    return {"bootstrap_servers": endpoints.kafka_bootstrap, "security_protocol": "SASL_SSL",
            "ssl_context": create_ssl_context(cafile=endpoints.kafka_ca_file),
            "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": principal,
            "sasl_plain_password": PASSWORDS[principal]}


async def publish(client: dict[str, Any], topic: str) -> None:
    producer = AIOKafkaProducer(request_timeout_ms=10_000, **client)
    try:  # stopped also when it could not connect
        await asyncio.wait_for(producer.start(), 30)
        await asyncio.wait_for(producer.send_and_wait(topic, b"{}"), 30)
    finally:
        await producer.stop()


async def test_a_partner_may_write_only_its_request_topic(secure):
    municipality = scram(secure, "municipality-131016")
    await publish(municipality, topics.for_service("enrollment", NAMESPACE).requests)
    for forbidden in (topics.for_service("enrollment", NAMESPACE).facts, topics.for_service("insurance", NAMESPACE).requests,
                      topics.quarantine_topic(NAMESPACE)):
        with pytest.raises(TopicAuthorizationFailedError):
            await publish(municipality, forbidden)


async def test_a_service_may_not_write_another_services_facts(secure):
    with pytest.raises(TopicAuthorizationFailedError):
        await publish(scram(secure, "svc-enrollment"), topics.for_service("insurance", NAMESPACE).facts)
    with pytest.raises(TopicAuthorizationFailedError):
        await publish(scram(secure, "svc-enrollment"), topics.for_service("enrollment", NAMESPACE).requests)


async def test_an_unauthenticated_client_cannot_connect(secure):
    with pytest.raises(KafkaConnectionError):
        await publish({"bootstrap_servers": secure.kafka_bootstrap}, topics.for_service("enrollment", NAMESPACE).requests)


@pytest.fixture
async def service_on_secure_broker(secure, servers) -> AsyncIterator[EventService[ProbeDeps]]:
    settings = ServiceSettings(
        kafka_bootstrap_servers=secure.kafka_bootstrap, kafka_username="svc-enrollment",
        kafka_password=PASSWORDS["svc-enrollment"], kafka_ca_file=secure.kafka_ca_file, mongodb_url=servers.mongodb_url, topic_namespace=NAMESPACE,
        database=f"{NAMESPACE}_probe", partner_registry_database=partners.registry_database(NAMESPACE),
        partner_cache_seconds=0,
    )
    async with probe_service(settings) as service:
        yield service


async def test_the_service_runs_with_its_own_principal(service_on_secure_broker, secure, servers):
    base = "31415926535"
    request = RegisterResident(
        request_id="acl-1", municipality_code="131016", my_number=MyNumber(base + str(check_digit(base))),
        attributes=ResidentAttributes(name_kanji="伊藤 誠", name_kana="イトウ マコト", date_of_birth=date(1980, 3, 3),
                                      sex=Sex.male, address="東京都千代田区1-1"), nationality="JP",
    )
    # Built here, not swapped in afterwards: a producer or consumer made and never closed is
    # reported as unclosed when the interpreter exits.
    partner = PartnerPublisher(secure.kafka_bootstrap, NAMESPACE, source="municipality/131016",
                               producer=AIOKafkaProducer(**scram(secure, "municipality-131016")))
    reader = facts_reader(secure)
    async with partner, reader:
        await partner.send(request, subject="acl-person")
        await reader.wait_count(1, ResidentRegistered.event_type)


async def test_a_partner_publishes_with_the_cli_over_tls_with_its_own_principal(service_on_secure_broker, secure, servers,
                                                                              tmp_path):
    """`mynumber publish` connects as the services do (MYNUMBER_KAFKA_USERNAME, _PASSWORD, _CA_FILE);
    without the CA it does not connect, and a CA file it cannot use is named in the error."""
    import json

    from mynumber_cli.main import app
    from mynumber_contracts.signing import private_key_to_pem
    from typer.testing import CliRunner

    key, key_id = partners.ensure_registered(NAMESPACE, "municipality/131016")
    key_file = tmp_path / "municipality.pem"
    key_file.write_bytes(private_key_to_pem(key))
    base = "27182818284"
    request = RegisterResident(
        request_id="acl-cli-1", municipality_code="131016", my_number=MyNumber(base + str(check_digit(base))),
        attributes=ResidentAttributes(name_kanji="加藤 恵", name_kana="カトウ メグミ", date_of_birth=date(1992, 5, 5),
                                      sex=Sex.female, address="東京都千代田区2-2"), nationality="JP",
    )
    events = tmp_path / "events.ndjson"
    events.write_text(json.dumps({"type": RegisterResident.event_type, "subject": "acl-cli-person",
                                  "data": json.loads(request.model_dump_json())}) + "\n")
    env = {"KAFKA_BOOTSTRAP_SERVERS": secure.kafka_bootstrap, "MONGODB_URL": servers.mongodb_url, "COLUMNS": "200",
           "MYNUMBER_KAFKA_USERNAME": "municipality-131016", "MYNUMBER_KAFKA_PASSWORD": PASSWORDS["municipality-131016"]}
    command = ["publish", str(events), "--as", "municipality/131016", "--key", str(key_file), "--key-id", key_id,
               "--namespace", NAMESPACE]

    def publish_with(**extra: str) -> Any:
        return CliRunner().invoke(app, command, env={**env, **extra})

    without_ca = await asyncio.to_thread(publish_with)
    assert without_ca.exit_code == 1 and "Kafka does not answer" in without_ca.output, without_ca.output
    missing = await asyncio.to_thread(publish_with, MYNUMBER_KAFKA_CA_FILE=str(tmp_path / "no-such-ca.pem"))
    assert missing.exit_code == 1 and "no-such-ca.pem" in missing.output, missing.output

    reader = facts_reader(secure)
    async with reader:
        published = await asyncio.to_thread(publish_with, MYNUMBER_KAFKA_CA_FILE=secure.kafka_ca_file)
        assert published.exit_code == 0 and "published 1 signed events" in published.output, published.output
        person_ref = service_on_secure_broker.deps.people.for_number(request.my_number)
        await reader.wait_for(
            lambda records: any(r.type == ResidentRegistered.event_type and r.json()["person_ref"] == person_ref
                                for r in records),
            what="the resident registered from the CLI's request")
