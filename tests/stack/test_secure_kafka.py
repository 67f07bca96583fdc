"""The secure Kafka node (TLS, SASL/SCRAM-SHA-512 + StandardAuthorizer) refuses what it must.

Runs against a real, separate Kafka node started by ``native_stack.up(secure=True)``
(its own data directory and ports) and stopped at the end of this module.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

try:
    from mynumber_cli import native_stack
except ImportError:  # cli/ is not on sys.path (the package is not installed)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "cli"))
    from mynumber_cli import native_stack

SUFFIX = uuid.uuid4().hex[:8]
PRODUCER = f"enrollment-{SUFFIX}"
PRODUCER_PASSWORD = f"pw-{uuid.uuid4().hex}"
ALLOWED_TOPIC = f"secure-allowed-{SUFFIX}"
READ_ONLY_TOPIC = f"secure-read-only-{SUFFIX}"
UNLISTED_TOPIC = f"secure-unlisted-{SUFFIX}"
GROUP = f"secure-group-{SUFFIX}"


@pytest.fixture(scope="module")
def secure() -> Iterator[native_stack.StackEndpoints]:
    endpoints = native_stack.up(secure=True)
    try:
        asyncio.run(_create_topics(endpoints, [ALLOWED_TOPIC, READ_ONLY_TOPIC, UNLISTED_TOPIC]))
        native_stack.add_principal(PRODUCER, PRODUCER_PASSWORD)
        native_stack.allow_write(PRODUCER, ALLOWED_TOPIC)
        native_stack.allow_read(PRODUCER, ALLOWED_TOPIC, GROUP)
        # Read (and Describe) but no Write on this one.
        native_stack.allow_read(PRODUCER, READ_ONLY_TOPIC, GROUP)
        yield endpoints
    finally:
        native_stack.down(secure=True)


async def _create_topics(endpoints: native_stack.StackEndpoints, topics: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(**endpoints.kafka_admin_client_kwargs())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1) for name in topics])
    finally:
        await admin.close()


def _scram(endpoints: native_stack.StackEndpoints, username: str, password: str, **overrides: Any) -> dict[str, Any]:
    from aiokafka.helpers import create_ssl_context

    return {
        "bootstrap_servers": endpoints.kafka_bootstrap,
        "security_protocol": "SASL_SSL",
        "ssl_context": create_ssl_context(cafile=endpoints.kafka_ca_file),
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": username,
        "sasl_plain_password": password,
        **overrides,
    }


async def _publish(client: dict[str, Any], topic: str, value: bytes) -> Any:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(request_timeout_ms=10_000, **client)
    try:
        await asyncio.wait_for(producer.start(), 30)
        return await asyncio.wait_for(producer.send_and_wait(topic, value), 30)
    finally:
        await producer.stop()


def test_the_secure_node_is_a_separate_sasl_node(secure: native_stack.StackEndpoints) -> None:
    plain = native_stack.endpoints()
    assert secure.secure is True
    assert secure.kafka_bootstrap != plain.kafka_bootstrap
    assert secure.kafka_security_protocol == "SASL_SSL"
    assert secure.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert secure.kafka_ca_file and Path(secure.kafka_ca_file).is_file()
    report = native_stack.status(secure=True)["kafka"]
    assert report["state"] == "running" and report["answers"] is True
    assert report["address"] == secure.kafka_bootstrap


def test_an_unauthenticated_plaintext_client_cannot_connect_or_publish(secure: native_stack.StackEndpoints) -> None:
    from aiokafka.errors import KafkaConnectionError

    plaintext = {"bootstrap_servers": secure.kafka_bootstrap}  # no SASL at all
    # The broker closes the connection: not even the metadata bootstrap works.
    with pytest.raises(KafkaConnectionError):
        asyncio.run(_publish(plaintext, ALLOWED_TOPIC, b"anonymous"))


def test_the_broker_speaks_only_tls_with_a_certificate_its_own_ca_signed_for_this_address(
    secure: native_stack.StackEndpoints,
) -> None:
    import socket
    import ssl

    host, port = secure.kafka_bootstrap.rsplit(":", 1)
    context = ssl.create_default_context(cafile=secure.kafka_ca_file)  # checks the chain and the host name
    with socket.create_connection((host, int(port)), timeout=10) as raw, context.wrap_socket(raw, server_hostname=host) as tls:
        assert tls.version() in {"TLSv1.3", "TLSv1.2"}
        certificate = tls.getpeercert()
    assert ("IP Address", "127.0.0.1") in certificate["subjectAltName"]

    # A client that trusts only the usual public CAs does not accept it.
    with socket.create_connection((host, int(port)), timeout=10) as raw, pytest.raises(ssl.SSLCertVerificationError):
        ssl.create_default_context().wrap_socket(raw, server_hostname=host)


def test_sasl_without_tls_is_refused(secure: native_stack.StackEndpoints) -> None:
    from aiokafka.errors import KafkaConnectionError

    # The right principal and password, sent in the clear: the TLS listener never reads them.
    with pytest.raises(KafkaConnectionError):
        asyncio.run(_publish(_scram(secure, PRODUCER, PRODUCER_PASSWORD, security_protocol="SASL_PLAINTEXT", ssl_context=None),
                             ALLOWED_TOPIC, b"in the clear"))


def test_a_client_that_does_not_trust_the_brokers_ca_does_not_connect(secure: native_stack.StackEndpoints, tmp_path) -> None:
    from aiokafka.errors import KafkaConnectionError
    from aiokafka.helpers import create_ssl_context
    from mynumber_cli import tls

    other = tls.server_tls(tmp_path)  # another CA, which never signed the broker's certificate
    with pytest.raises(KafkaConnectionError):
        asyncio.run(_publish(_scram(secure, PRODUCER, PRODUCER_PASSWORD, ssl_context=create_ssl_context(cafile=other.ca_file)),
                             ALLOWED_TOPIC, b"to the wrong broker"))


def test_a_wrong_password_is_refused(secure: native_stack.StackEndpoints) -> None:
    from aiokafka.errors import KafkaConnectionError

    # SaslAuthenticationFailed on the connection, reported as a failed bootstrap.
    with pytest.raises(KafkaConnectionError):
        asyncio.run(_publish(_scram(secure, PRODUCER, "not-the-password"), ALLOWED_TOPIC, b"impostor"))


@pytest.mark.parametrize("topic", [UNLISTED_TOPIC, READ_ONLY_TOPIC], ids=["no-acl-at-all", "read-acl-only"])
def test_publishing_without_a_write_acl_is_refused_by_the_broker(
    secure: native_stack.StackEndpoints, topic: str
) -> None:
    from aiokafka.errors import TopicAuthorizationFailedError

    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(_publish(_scram(secure, PRODUCER, PRODUCER_PASSWORD), topic, b"not allowed here"))


def test_publishing_to_the_allowed_topic_succeeds_and_can_be_read_back(secure: native_stack.StackEndpoints) -> None:
    from aiokafka import AIOKafkaConsumer

    client = _scram(secure, PRODUCER, PRODUCER_PASSWORD)
    metadata = asyncio.run(_publish(client, ALLOWED_TOPIC, b"allowed event"))
    assert metadata.topic == ALLOWED_TOPIC and metadata.offset >= 0

    async def read_back() -> list[bytes]:
        consumer = AIOKafkaConsumer(ALLOWED_TOPIC, group_id=GROUP, auto_offset_reset="earliest", **client)
        await consumer.start()
        try:
            values: list[bytes] = []
            deadline = time.monotonic() + 30
            while not values and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    values.extend(record.value for record in records)
            return values
        finally:
            await consumer.stop()

    assert asyncio.run(read_back()) == [b"allowed event"]
