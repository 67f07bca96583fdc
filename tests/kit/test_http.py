"""Every service's operational HTTP surface, from the kit: /health, /ready (which really checks
the broker and the database), Prometheus /metrics, and the operators' audit trail."""

from __future__ import annotations

import asyncio
import gc
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client import Gauge
from prometheus_client.parser import text_string_to_metric_families

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


def scraped(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


async def test_gauges_that_live_in_the_database_are_read_afresh_at_every_scrape_and_a_failing_one_keeps_its_value(settings):
    app = probe_app(settings)
    service = app.state.service
    waiting = service.database["waiting_things"]
    gauge = Gauge("probe_waiting_things", "Documents in waiting_things.", registry=service.metrics.registry)
    broken = Gauge("probe_broken", "A gauge whose refresh fails after its first.", registry=service.metrics.registry)
    stuck = Gauge("probe_stuck", "A gauge whose refresh never answers after its first.", registry=service.metrics.registry)
    calls = {"broken": 0, "stuck": 0}

    async def count_waiting() -> None:
        gauge.set(await waiting.count_documents({}))

    async def fails_after_the_first() -> None:
        calls["broken"] += 1
        if calls["broken"] > 1:
            raise ConnectionError("the database went away")
        broken.set(7)

    async def hangs_after_the_first() -> None:
        calls["stuck"] += 1
        if calls["stuck"] > 1:
            await asyncio.Event().wait()
        stuck.set(9)

    service.metrics.refresh_before_scrape("waiting_things", count_waiting)
    service.metrics.refresh_before_scrape("broken", fails_after_the_first)
    service.metrics.refresh_before_scrape("stuck", hangs_after_the_first)
    failures = "mynumber_metrics_refresh_failures_total"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://probe") as http:
        await waiting.insert_many([{"_id": n} for n in range(3)])
        first = scraped((await http.get("/metrics/")).text)
        assert first[("probe_waiting_things", ())] == 3
        assert (first[("probe_broken", ())], first[("probe_stuck", ())]) == (7, 9)

        await waiting.insert_one({"_id": 3})
        second = await http.get("/metrics/")
        assert second.status_code == 200, "one gauge's failure never fails the scrape"
        figures = scraped(second.text)
        assert figures[("probe_waiting_things", ())] == 4, "read afresh, not cached"
        assert (figures[("probe_broken", ())], figures[("probe_stuck", ())]) == (7, 9), "the last value stands"
        assert figures[(failures, (("gauge", "broken"), ("service", "enrollment")))] == 1
        assert figures[(failures, (("gauge", "stuck"), ("service", "enrollment")))] == 1
        assert (failures, (("gauge", "waiting_things"), ("service", "enrollment"))) not in figures
    await service.database.client.close()


async def test_a_service_process_freezes_what_starting_made_and_an_app_in_a_test_does_not(settings):
    gc.unfreeze()  # whatever froze earlier in this test process (the bench smoke test's runner does)
    in_a_test = probe_app(settings)
    async with in_a_test.router.lifespan_context(in_a_test):
        assert gc.get_freeze_count() == 0
    process = probe_app(settings)
    process.state.freeze_after_start = True  # what `serve` sets for `python -m services.<name>`
    try:
        async with process.router.lifespan_context(process):
            assert gc.get_freeze_count() > 0, "started, then frozen"
    finally:
        gc.unfreeze()  # the test process keeps collecting as before


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
