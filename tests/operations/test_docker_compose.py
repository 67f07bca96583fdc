"""The operators' docker-compose file is valid and wires health checks and start order.

There is no Docker engine here; Debian's docker-compose validates the file without one
(scripts/bootstrap installs it)."""

from __future__ import annotations

import shutil
import subprocess
import urllib.parse
from pathlib import Path

import yaml
from mynumber_cli import tls

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("enrollment", "insurance", "benefits", "licensing")


def compose_config() -> dict:
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is missing: run scripts/bootstrap (it installs Debian's docker-compose)"
    result = subprocess.run([tool, "-f", str(REPO / "docker-compose.yml"), "config"], capture_output=True, text=True,
                            cwd=REPO)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_file_is_valid():
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is missing: run scripts/bootstrap"
    result = subprocess.run([tool, "config", "-q"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr


def test_real_kafka_and_mongo_images_with_health_checks():
    config = compose_config()["services"]
    assert config["kafka"]["image"].startswith("apache/kafka:")
    assert config["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert config["mongo"]["image"].startswith("mongo:")
    assert "healthcheck" in config["kafka"] and "healthcheck" in config["mongo"]


def test_every_service_waits_for_healthy_servers_and_has_its_own_health_check():
    config = compose_config()["services"]
    for name in SERVICES:
        service = config[name]
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy", name
        assert service["depends_on"]["mongo"]["condition"] == "service_healthy", name
        assert "/ready" in " ".join(service["healthcheck"]["test"]), name
        assert service["command"] == [f"services.{name}"], name
        assert service["environment"]["MYNUMBER_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"


def test_prometheus_scrapes_every_service():
    scrape = yaml.safe_load((REPO / "ops" / "prometheus.yml").read_text())
    targets = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    assert sorted(t.split(":")[0] for t in targets) == sorted(SERVICES)


def bind_mounts(service: dict) -> dict[str, str]:
    """A service's bind mounts, target -> source (docker-compose v1 prints them as 'source:target[:mode]')."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts[volume["target"]] = volume["source"]
        else:
            source, target = volume.split(":")[:2]
            mounts[target] = source
    return mounts


PRODUCTION_ENV = {f"SVC_{s.upper()}_PASSWORD": f"pw-{s}" for s in SERVICES}


def test_the_production_profile_runs_kafka_with_tls_scram_and_acls_and_services_with_their_principals():
    import os

    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is missing: run scripts/bootstrap"
    result = subprocess.run(
        [tool, "-f", "docker-compose.yml", "-f", "docker-compose.production.yml", "--profile", "production", "config"],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, **PRODUCTION_ENV},
    )
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)["services"]
    kafka = config["kafka"]["environment"]
    assert kafka["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert kafka["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
    assert kafka["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    # The clients' listener is TLS; what the apache/kafka image demands of one is there.
    assert "SASL_SSL://kafka:9094" in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert "SASL_PLAINTEXT" not in kafka["KAFKA_LISTENERS"]
    mounts = bind_mounts(config["kafka"])
    assert Path(mounts["/etc/kafka/secrets"]) == REPO / "secrets" / "kafka-tls"
    for variable in ("KAFKA_SSL_KEYSTORE_FILENAME", "KAFKA_SSL_KEYSTORE_CREDENTIALS", "KAFKA_SSL_KEY_CREDENTIALS"):
        assert kafka[variable] in {tls.KEYSTORE_FILE, tls.KEYSTORE_PASSWORD_FILE, tls.KEY_PASSWORD_FILE}, variable
    jaas = kafka["KAFKA_OPTS"].removeprefix("-Djava.security.auth.login.config=")
    assert Path(mounts[jaas]) == REPO / "ops" / "kafka_server_jaas.conf" and Path(mounts[jaas]).is_file()
    for name in SERVICES:
        environment = config[name]["environment"]
        assert environment["MYNUMBER_KAFKA_USERNAME"] == f"svc-{name}"
        assert environment["MYNUMBER_KAFKA_PASSWORD"] == f"pw-{name}"
        assert environment["MYNUMBER_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9094"
        ca = bind_mounts(config[name])[environment["MYNUMBER_KAFKA_CA_FILE"]]
        assert Path(ca) == REPO / "secrets" / "kafka-tls" / tls.CA_FILE
        # The database only over TLS, checked against its own CA.
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(environment["MYNUMBER_MONGODB_URL"]).query)
        assert query["tls"] == ["true"]
        assert Path(bind_mounts(config[name])[query["tlsCAFile"][0]]) == REPO / "secrets" / "mongo-tls" / tls.CA_FILE
        # The HTTP API only over HTTPS, and its health check asks through TLS.
        certificate = bind_mounts(config[name])[environment["MYNUMBER_HTTP_TLS_CERT_FILE"]]
        assert Path(certificate) == REPO / "secrets" / "http-tls" / tls.SERVER_FILE
        assert "https://localhost:8000/ready" in " ".join(config[name]["healthcheck"]["test"])
    mongo = config["mongo"]
    assert mongo["command"][mongo["command"].index("--tlsMode") + 1] == "requireTLS"
    key_file = mongo["command"][mongo["command"].index("--tlsCertificateKeyFile") + 1]
    assert key_file == f"/etc/mongo/tls/{tls.SERVER_FILE}"
    assert Path(bind_mounts(mongo)["/etc/mongo/tls"]) == REPO / "secrets" / "mongo-tls"
    assert "--tls" in mongo["healthcheck"]["test"]
    # Prometheus scrapes the same targets, over HTTPS, trusting the services' CA.
    prometheus = bind_mounts(config["prometheus"])
    production = yaml.safe_load(Path(prometheus["/etc/prometheus/prometheus.yml"]).read_text())
    development = yaml.safe_load((REPO / "ops" / "prometheus.yml").read_text())
    [scrape], [plain] = production["scrape_configs"], development["scrape_configs"]
    assert scrape["scheme"] == "https" and scrape["static_configs"] == plain["static_configs"]
    assert Path(prometheus[scrape["tls_config"]["ca_file"]]) == REPO / "secrets" / "http-tls" / tls.CA_FILE
    assert config["kafka-acls"]["entrypoint"] == ["/bin/bash", "/kafka-acls.sh"]


def test_the_committed_acl_script_is_the_policy():
    import json

    from mynumber_cli import acls

    partners = json.loads((REPO / "config" / "partners.demo.json").read_text(encoding="utf-8"))
    assert (REPO / "ops" / "kafka-acls.sh").read_text() == acls.shell_script("mynumber", partners), \
        "ops/kafka-acls.sh is stale: run `mynumber stack acl-script > ops/kafka-acls.sh`"


def test_tls_certs_writes_a_key_store_java_opens_and_keys_for_mongod_and_the_services(tmp_path):
    """What `mynumber stack tls-certs` writes for the production profile: a PKCS#12 key store that
    Java (the broker) opens with the password in the password file, holding a certificate for
    `kafka` that the written CA signed; and mongod's key and certificate for `mongo`, signed by
    a CA of its own."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import pkcs12
    from mynumber_cli.main import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["stack", "tls-certs", str(tmp_path)])
    assert result.exit_code == 0, result.output
    mongo = tmp_path / "mongo-tls"
    mongo_certificate, _chain_ca = x509.load_pem_x509_certificates((mongo / tls.SERVER_FILE).read_bytes())
    assert mongo_certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == ["mongo", "localhost"]
    mongo_certificate.verify_directly_issued_by(x509.load_pem_x509_certificate((mongo / tls.CA_FILE).read_bytes()))
    assert b"PRIVATE KEY" in (mongo / tls.SERVER_FILE).read_bytes()  # mongod takes key and certificate from one file
    assert oct((mongo / tls.SERVER_FILE).stat().st_mode & 0o777) == "0o600"
    http_certificate = x509.load_pem_x509_certificates((tmp_path / "http-tls" / tls.SERVER_FILE).read_bytes())[0]
    assert http_certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == ["enrollment", "insurance", "benefits", "licensing", "localhost"]
    tmp_path = tmp_path / "kafka-tls"
    password = (tmp_path / tls.KEYSTORE_PASSWORD_FILE).read_bytes()
    assert (tmp_path / tls.KEY_PASSWORD_FILE).read_bytes() == password
    store = pkcs12.load_pkcs12((tmp_path / tls.KEYSTORE_FILE).read_bytes(), password)
    names = store.cert.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["kafka", "localhost"]
    ca = x509.load_pem_x509_certificate((tmp_path / tls.CA_FILE).read_bytes())
    store.cert.certificate.verify_directly_issued_by(ca)
    assert {oct(path.stat().st_mode & 0o777) for path in tmp_path.glob("kafka.*")} == {"0o600"}

    keytool = shutil.which("keytool")
    assert keytool, "keytool (Java) is missing: the Kafka broker needs Java too"
    listing = subprocess.run([keytool, "-list", "-keystore", str(tmp_path / tls.KEYSTORE_FILE), "-storetype", "PKCS12",
                              "-storepass", password.decode()], capture_output=True, text=True)
    assert listing.returncode == 0 and "PrivateKeyEntry" in listing.stdout, listing.stdout + listing.stderr
