"""`MYNUMBER_KAFKA_CA_FILE` turns on TLS for every Kafka connection a service makes. A CA file that
cannot be used stops the service at start with a message that names it. (The connections themselves
are proven against the real TLS listener in tests/security/test_kafka_acls.py and
tests/stack/test_secure_kafka.py.)"""

from __future__ import annotations

import ssl

import pytest
from faststream.kafka.security import parse_security
from mynumber_cli import tls
from pydantic import ValidationError

from services.kit.settings import ServiceSettings


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory) -> str:
    return str(tls.server_tls(tmp_path_factory.mktemp("tls")).ca_file)


@pytest.mark.parametrize("content", [None, b"not a certificate\n"], ids=["missing", "not-pem"])
def test_a_ca_file_that_cannot_be_used_is_refused_with_its_name(tmp_path, content):
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValidationError, match="cannot use .*ca.pem.* as the Kafka CA certificate"):
        ServiceSettings(kafka_ca_file=str(path))


def test_a_principal_with_a_ca_file_connects_with_sasl_over_tls(ca_file):
    settings = ServiceSettings(kafka_username="svc-enrollment", kafka_password="secret", kafka_ca_file=ca_file)
    for kwargs in (settings.kafka_client_kwargs(), parse_security(settings.kafka_security())):
        assert kwargs["security_protocol"] == "SASL_SSL"
        context = kwargs["ssl_context"]
        assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
        assert [c["subject"] for c in context.get_ca_certs()] == [
            ((("organizationName", "mynumber platform"),), (("commonName", "mynumber platform CA"),))]
    assert settings.kafka_client_kwargs()["sasl_mechanism"] == "SCRAM-SHA-512"


def test_a_ca_file_alone_connects_with_tls_and_no_ca_file_means_plaintext(ca_file):
    settings = ServiceSettings(kafka_ca_file=ca_file)
    for kwargs in (settings.kafka_client_kwargs(), parse_security(settings.kafka_security())):
        assert kwargs["security_protocol"] == "SSL"
        assert kwargs["ssl_context"].check_hostname

    development = ServiceSettings()
    assert development.kafka_security() is None
    assert development.kafka_client_kwargs() == {"bootstrap_servers": "127.0.0.1:9092"}
