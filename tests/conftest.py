"""Shared fixtures: real servers for the whole session, and an isolated namespace per test.

Every test gets its own topic namespace and its own databases, so tests never see each
other's events, and the servers are shared (a warm start costs nothing).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support import partners
from tests.support.servers import ServerProvider, Servers

_provider = ServerProvider()
_servers: Servers | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    global _servers
    if os.environ.get("MYNUMBER_TESTS_NO_SERVERS"):
        return
    _servers = _provider.start()
    partners.MONGODB_URL = _servers.mongodb_url
    print(f"\nReal servers ({_servers.origin}): Kafka {_servers.kafka_bootstrap}, MongoDB {_servers.mongodb_url}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _provider.stop()


def pytest_report_header(config: pytest.Config) -> str | None:
    if _servers is None:
        return None
    return f"servers: {_servers.origin}: kafka={_servers.kafka_bootstrap} mongodb={_servers.mongodb_url}"


@pytest.fixture(scope="session")
def servers() -> Servers:
    if _servers is None:
        pytest.skip("MYNUMBER_TESTS_NO_SERVERS is set: this test needs the real Kafka broker and database")
    return _servers


@pytest.fixture
async def namespace(servers: Servers) -> Any:
    """A fresh topic namespace (and database prefix) for one test; its topics and databases
    are deleted afterwards so the broker does not accumulate thousands of partitions."""
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    await delete_namespace(servers, name)


async def delete_namespace(servers: Servers, name: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from pymongo import AsyncMongoClient

    admin = AIOKafkaAdminClient(bootstrap_servers=servers.kafka_bootstrap)
    try:
        await admin.start()
        doomed = [t for t in await admin.list_topics() if t.startswith(f"{name}.")]
        if doomed:
            await admin.delete_topics(doomed)
    except Exception as exc:  # cleanup must never fail a test
        print(f"cleanup of topics {name}.* failed: {exc!r}")
    finally:
        await admin.close()
    client: AsyncMongoClient = AsyncMongoClient(servers.mongodb_url, serverSelectionTimeoutMS=5000)
    try:
        for database in await client.list_database_names():
            if database.startswith(f"{name}_"):
                await client.drop_database(database)
    except Exception as exc:
        print(f"cleanup of databases {name}_* failed: {exc!r}")
    finally:
        await client.close()


@pytest.fixture
def settings_for(servers: Servers, namespace: str) -> Callable[..., Any]:
    """Build a service's settings pointing at the real servers and this test's namespace."""

    def build(service: str, **overrides: Any) -> Any:
        import importlib

        module = importlib.import_module(f"services.{service}.settings")
        settings_class = next(
            value for name, value in vars(module).items() if name.endswith("Settings") and getattr(value, "__module__", "") == module.__name__
        )
        values: dict[str, Any] = {
            "kafka_bootstrap_servers": servers.kafka_bootstrap,
            "mongodb_url": servers.mongodb_url,
            "topic_namespace": namespace,
            "database": f"{namespace}_{service}",
            "partner_registry_database": partners.registry_database(namespace),
            "partner_cache_seconds": 0.5,
        }
        values.update(overrides)
        return settings_class(**values)

    return build


@pytest.fixture
def mongo_client(servers: Servers) -> Iterator[Any]:
    from pymongo import MongoClient

    client: MongoClient = MongoClient(servers.mongodb_url, tz_aware=True, serverSelectionTimeoutMS=5000)
    yield client
    client.close()
