"""Every service's operational HTTP surface, from the kit: /health, /ready (which really checks
the broker and the database), Prometheus /metrics, and the operators' audit trail."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from services.kit.clock import SystemClock
from services.kit.http import create_http_app
from services.kit.messaging import EventService
from services.kit.people import PersonReferences
from services.kit.settings import ServiceSettings
from services.kit.store import connect
from tests.kit.test_envelope_dead_letter_idempotency import ProbeDeps, handlers

OPERATOR = {"Authorization": "Bearer development-only-operator-token"}


def probe_app(settings: ServiceSettings):
    client, database = connect(settings.mongodb_url, settings.database_name("enrollment"), app_name="probe")
    service = EventService("enrollment", settings=settings, database=database, clock=SystemClock(),
                           deps=ProbeDeps(database, PersonReferences(settings.person_ref_key.get_secret_value())))
    service.include(handlers)
    return create_http_app(service, title="probe", description="probe", on_shutdown=[client.close])


@pytest.fixture
def settings(servers, namespace) -> ServiceSettings:
    return ServiceSettings(kafka_bootstrap_servers=servers.kafka_bootstrap, mongodb_url=servers.mongodb_url,
                           topic_namespace=namespace)


async def test_health_ready_and_metrics(settings):
    app = probe_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://probe") as http:
            assert (await http.get("/health")).json() == {"status": "ok", "service": "enrollment"}
            ready = await http.get("/ready")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {"broker": "ok", "database": "ok"}
            metrics = await http.get("/metrics/")
            assert metrics.status_code == 200
            assert "mynumber_dead_lettered_total" in metrics.text


async def test_ready_says_not_ready_when_the_database_is_down(servers, namespace):
    settings = ServiceSettings(kafka_bootstrap_servers=servers.kafka_bootstrap,
                               mongodb_url="mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300", topic_namespace=namespace)
    app = probe_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://probe") as http:
        await app.state.service.broker.connect()
        try:
            ready = await http.get("/ready")
        finally:
            await app.state.service.broker.stop()
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"].startswith("unreachable")


async def test_the_audit_trail_is_for_operators_only(settings):
    app = probe_app(settings)
    service = app.state.service
    await service.audit.record(at=datetime.now(UTC), actor="insurer/1", action="insurance.link", person_ref="pr_x",
                               reason="five attributes match")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://probe") as http:
        assert (await http.get("/audit/persons/pr_x")).status_code == 401
        wrong = await http.get("/audit/persons/pr_x", headers={"Authorization": "Bearer not-a-valid-token-at-all"})
        assert wrong.status_code == 401
        trail = await http.get("/audit/persons/pr_x", headers=OPERATOR)
    assert trail.status_code == 200
    assert [(r["actor"], r["action"], r["reason"]) for r in trail.json()] == [("insurer/1", "insurance.link", "five attributes match")]
    await service.database.client.close()
