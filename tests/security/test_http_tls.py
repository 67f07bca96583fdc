"""The HTTP API over TLS: with `MYNUMBER_HTTP_TLS_CERT_FILE` (and `_KEY_FILE`) a service process answers
only HTTPS, so the bearer tokens of hospitals and operators never cross the network in the clear. A
certificate it cannot use stops it at start with a message that names the file. Real
`python -m services.insurance` processes against the real broker and database."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from mynumber_cli import tls

from tests.support.services import REPO, service_process

INSTITUTION = "1312345678"
TOKEN = "hospital-token-tls-0001"


@pytest.fixture
def environment(servers, namespace) -> dict[str, str]:
    return {"MYNUMBER_KAFKA_BOOTSTRAP_SERVERS": servers.kafka_bootstrap, "MYNUMBER_MONGODB_URL": servers.mongodb_url,
            "MYNUMBER_TOPIC_NAMESPACE": namespace, "MYNUMBER_LOG_LEVEL": "WARNING",
            "MYNUMBER_HTTP_API_TOKENS": f"operator=operator-token-tls-0001,medical-institution/{INSTITUTION}={TOKEN}"}


def test_the_api_answers_only_https_with_its_certificate(environment, tmp_path):
    certificate = tls.server_tls(tmp_path / "tls")  # names 127.0.0.1 and localhost
    # The key and the certificate in files of their own, as a public CA's would come.
    pem = certificate.server_file.read_text()
    key_end = pem.index("-----END PRIVATE KEY-----") + len("-----END PRIVATE KEY-----\n")
    (tmp_path / "key.pem").write_text(pem[:key_end])
    (tmp_path / "chain.pem").write_text(pem[key_end:])
    env = {**environment, "MYNUMBER_HTTP_TLS_CERT_FILE": str(tmp_path / "chain.pem"),
           "MYNUMBER_HTTP_TLS_KEY_FILE": str(tmp_path / "key.pem")}

    with service_process("insurance", env, tmp_path / "insurance.log", ca_file=str(certificate.ca_file)) as url:
        assert url.startswith("https://")
        trusting = ssl.create_default_context(cafile=certificate.ca_file)
        answer = httpx.get(f"{url}/eligibility/no-such-card", headers={"Authorization": f"Bearer {TOKEN}"}, verify=trusting)
        assert (answer.status_code, answer.json()["eligible"]) == (200, False)  # the token reached it, inside TLS
        assert httpx.get(f"{url}/eligibility/no-such-card", verify=trusting).status_code == 401

        with pytest.raises(httpx.TransportError):  # plain HTTP on the same port gets no answer
            httpx.get(url.replace("https://", "http://") + "/health")
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):  # only the usual public CAs
            httpx.get(f"{url}/health")


def test_a_certificate_that_cannot_be_used_stops_the_service_naming_it(environment, tmp_path):
    other = tls.server_tls(tmp_path / "other")
    mismatched = tmp_path / "mismatched-key.pem"
    mismatched.write_text(tls.server_tls(tmp_path / "third").server_file.read_text().split("-----BEGIN CERTIFICATE-----")[0])
    cases = {
        "missing": {"MYNUMBER_HTTP_TLS_CERT_FILE": str(tmp_path / "no-such-chain.pem")},
        "key of another certificate": {"MYNUMBER_HTTP_TLS_CERT_FILE": str(other.server_file),
                                       "MYNUMBER_HTTP_TLS_KEY_FILE": str(mismatched)},
        "key without certificate": {"MYNUMBER_HTTP_TLS_KEY_FILE": str(other.server_file)},
    }
    for case, extra in cases.items():
        result = subprocess.run([sys.executable, "-m", "services.insurance"], cwd=REPO, capture_output=True, text=True,
                                env={**os.environ, **environment, **extra}, timeout=120)
        assert result.returncode != 0, case
        named = Path(extra.get("MYNUMBER_HTTP_TLS_CERT_FILE", "")).name or "MYNUMBER_HTTP_TLS_KEY_FILE"
        assert named in result.stderr, (case, result.stderr[-2000:])
