"""The database over TLS: the native stack's FerretDB also listens with TLS, with a certificate from
a private CA made for it, and a service whose `MYNUMBER_MONGODB_URL` asks for TLS (`tls=true`,
`tlsCAFile=`) keeps its data through it. PyMongo does the TLS; nothing in the services changes.
Against the real FerretDB of the native stack (started here if the tests use other servers)."""

from __future__ import annotations

import socket
import ssl
import urllib.parse
from collections.abc import AsyncIterator
from datetime import date

import pytest
from mynumber_cli import native_stack
from mynumber_contracts import MyNumber, ResidentAttributes, Sex, check_digit, topics
from mynumber_contracts.enrollment import RegisterResident, ResidentRegistered
from pymongo import AsyncMongoClient
from pymongo.errors import ServerSelectionTimeoutError

from services.kit.messaging import EventService
from services.kit.settings import ServiceSettings
from tests.kit.test_envelope_dead_letter_idempotency import ProbeDeps
from tests.support import partners
from tests.support.kafka import PartnerPublisher, TopicReader
from tests.support.probe import probe_service


@pytest.fixture(scope="module")
def tls_url(servers) -> str:
    url = native_stack.up().mongodb_tls_url
    assert url, "the native stack gives no TLS address for FerretDB"
    host, port, _ = _address(url)
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError:
        pytest.fail(f"nothing listens on {host}:{port}: a FerretDB started by an older version of the stack script "
                    "has no TLS listener; restart it (`mynumber stack down`, then up)")
    return url


def _address(url: str) -> tuple[str, int, str]:
    parts = urllib.parse.urlsplit(url)
    ca_file = urllib.parse.parse_qs(parts.query)["tlsCAFile"][0]
    return parts.hostname or "", parts.port or 0, ca_file


async def _ping(url: str) -> None:
    client: AsyncMongoClient = AsyncMongoClient(url, serverSelectionTimeoutMS=3000, directConnection=True)
    try:
        await client.admin.command("ping")
    finally:
        await client.close()


def test_the_tls_listener_shows_a_certificate_its_own_ca_signed_for_this_address(tls_url):
    host, port, ca_file = _address(tls_url)
    context = ssl.create_default_context(cafile=ca_file)  # checks the chain and the host name
    with socket.create_connection((host, port), timeout=10) as raw, context.wrap_socket(raw, server_hostname=host) as tls:
        assert tls.version() in {"TLSv1.3", "TLSv1.2"}
        assert ("IP Address", "127.0.0.1") in tls.getpeercert()["subjectAltName"]


async def test_a_client_in_the_clear_or_one_that_does_not_trust_the_ca_gets_no_answer(tls_url):
    host, port, _ = _address(tls_url)
    with pytest.raises(ServerSelectionTimeoutError):
        await _ping(f"mongodb://{host}:{port}/")  # no TLS at all
    with pytest.raises(ServerSelectionTimeoutError, match="certificate verify failed"):
        await _ping(f"mongodb://{host}:{port}/?tls=true")  # only the usual public CAs
    await _ping(tls_url)


@pytest.fixture
async def service_over_tls(servers, namespace, tls_url) -> AsyncIterator[tuple[EventService[ProbeDeps], str]]:
    settings = ServiceSettings(
        kafka_bootstrap_servers=servers.kafka_bootstrap, mongodb_url=tls_url, topic_namespace=namespace,
        database=f"{namespace}_probe", partner_registry_database=partners.registry_database(namespace),
        partner_cache_seconds=0,
    )
    async with probe_service(settings) as service:
        yield service, namespace


async def test_a_service_keeps_its_data_over_tls(service_over_tls, servers, tls_url):
    service, namespace = service_over_tls
    base = "16180339887"
    request = RegisterResident(
        request_id="tls-1", municipality_code="131016", my_number=MyNumber(base + str(check_digit(base))),
        attributes=ResidentAttributes(name_kanji="林 大輔", name_kana="ハヤシ ダイスケ", date_of_birth=date(1975, 7, 7),
                                      sex=Sex.male, address="東京都千代田区3-3"), nationality="JP",
    )
    async with PartnerPublisher(servers.kafka_bootstrap, namespace, source="municipality/131016") as partner, \
            TopicReader(servers.kafka_bootstrap, topics.for_service("enrollment", namespace).facts) as facts:
        await partner.send(request, subject="tls-person")
        await facts.wait_count(1, ResidentRegistered.event_type)

    person_ref = service.deps.people.for_number(request.my_number)
    client: AsyncMongoClient = AsyncMongoClient(tls_url, serverSelectionTimeoutMS=5000)
    try:
        database = client[f"{namespace}_probe"]
        assert await database["effects"].find_one({"request_id": "tls-1"}, {"_id": 0}) == {
            "request_id": "tls-1", "person_ref": person_ref}
        assert await database["processed_events"].count_documents({}) == 1  # the idempotency record, through TLS too
    finally:
        await client.close()
