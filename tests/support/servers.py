"""Finds the real servers the tests run against, in this order:

1. `KAFKA_BOOTSTRAP_SERVERS` and `MONGODB_URL`, if both are set;
2. testcontainers (`apache/kafka` and `mongo`), if a Docker engine answers;
3. otherwise the native stack (`python -m mynumber_cli.native_stack up`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Servers:
    kafka_bootstrap: str
    mongodb_url: str
    origin: str  # "environment", "testcontainers" or "native"


def _docker_answers() -> bool:
    try:
        import docker  # installed with testcontainers
        from docker.constants import DEFAULT_UNIX_SOCKET

        if not os.environ.get("DOCKER_HOST") and not Path(DEFAULT_UNIX_SOCKET.removeprefix("http+unix://")).exists():
            return False  # no engine here; asking anyway leaks the socket docker-py fails to connect
        client = docker.from_env(timeout=3)
    except Exception:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()  # its connection pool holds the socket it tried


class ServerProvider:
    def __init__(self) -> None:
        self._containers: list[object] = []

    def start(self) -> Servers:
        kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        mongodb = os.environ.get("MONGODB_URL")
        if kafka and mongodb:
            return Servers(kafka, mongodb, "environment")
        if _docker_answers():
            return self._start_containers()
        return self._start_native()

    def _start_containers(self) -> Servers:
        from testcontainers.kafka import KafkaContainer
        from testcontainers.mongodb import MongoDbContainer

        kafka = KafkaContainer("apache/kafka:4.1.1").with_kraft()
        mongodb = MongoDbContainer("mongo:8.0")
        kafka.start()
        self._containers.append(kafka)
        mongodb.start()
        self._containers.append(mongodb)
        return Servers(kafka.get_bootstrap_server(), mongodb.get_connection_url(), "testcontainers")

    def _start_native(self) -> Servers:
        sys.path.insert(0, str(REPO / "cli"))
        from mynumber_cli import native_stack

        endpoints = native_stack.up()
        return Servers(endpoints.kafka_bootstrap, endpoints.mongodb_url, "native")

    def stop(self) -> None:
        for container in reversed(self._containers):
            container.stop()  # type: ignore[attr-defined]
        # The native stack stays up between runs: a warm start is then instant. `down` stops it.
