"""The operators' docker-compose file is valid and wires health checks and start order.

There is no Docker engine here; Debian's docker-compose validates the file without one
(scripts/bootstrap installs it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

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


PRODUCTION_ENV = {f"SVC_{s.upper()}_PASSWORD": f"pw-{s}" for s in SERVICES}


def test_the_production_profile_runs_kafka_with_scram_and_acls_and_services_with_their_principals():
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
    for name in SERVICES:
        environment = config[name]["environment"]
        assert environment["MYNUMBER_KAFKA_USERNAME"] == f"svc-{name}"
        assert environment["MYNUMBER_KAFKA_PASSWORD"] == f"pw-{name}"
    assert config["kafka-acls"]["entrypoint"] == ["/bin/bash", "/kafka-acls.sh"]


def test_the_committed_acl_script_is_the_policy():
    import json

    from mynumber_cli import acls

    partners = json.loads((REPO / "config" / "partners.demo.json").read_text(encoding="utf-8"))
    assert (REPO / "ops" / "kafka-acls.sh").read_text() == acls.shell_script("mynumber", partners), \
        "ops/kafka-acls.sh is stale: run `mynumber stack acl-script > ops/kafka-acls.sh`"
