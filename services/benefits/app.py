"""The composition root of the benefits service: settings, store, bank gateway, dispatcher, handlers, HTTP."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from services.kit.clock import Clock, SystemClock
from services.kit.http import create_http_app
from services.kit.logging import configure_logging
from services.kit.messaging import EventService
from services.kit.people import PersonReferences
from services.kit.store import connect

from . import api
from .bank_gateway import BankGateway, CircuitBreaker
from .dispatcher import PaymentDispatcher
from .gauges import watch_batches_waiting_for_header
from .handlers import BenefitsDeps, handlers
from .settings import BenefitsSettings
from .store import BenefitsStore


def create_app(
    settings: BenefitsSettings | None = None,
    *,
    clock: Clock | None = None,
    bank_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """Build the app without I/O. `bank_transport` lets a test route the bank gateway to the in-process simulator."""
    settings = settings or BenefitsSettings()
    configure_logging("benefits", settings.log_level)
    clock = clock or SystemClock()
    client, database = connect(settings.mongodb_url, settings.database_name("benefits"), app_name="mynumber-benefits")

    store = BenefitsStore(database)
    gateway = BankGateway(
        settings.bank_base_url,
        timeout_seconds=settings.bank_timeout_seconds,
        max_attempts=settings.bank_max_attempts,
        backoff_seconds=settings.bank_backoff_seconds,
        breaker=CircuitBreaker(settings.breaker_failure_threshold, settings.breaker_reset_seconds),
        transport=bank_transport,
    )
    deps = BenefitsDeps(
        store=store, people=PersonReferences(settings.person_ref_key.get_secret_value()), settings=settings,
        gateway=gateway,
    )
    service = EventService("benefits", settings=settings, database=database, clock=clock, deps=deps)
    service.include(handlers)
    dispatcher = PaymentDispatcher(service, gateway)
    deps.dispatcher = dispatcher
    watch_batches_waiting_for_header(service)

    async def start_dispatcher() -> None:
        if settings.dispatcher_enabled:
            await dispatcher.start()

    async def shut_down() -> None:
        await dispatcher.stop()
        await gateway.aclose()
        await client.close()

    return create_http_app(
        service,
        title="Benefits service",
        description=(
            "Receiving accounts (own-name and shared-account checks, the pension opt-out route, bank mergers), "
            "payout batches paid exactly once through the bank gateway, and their reconciliation."
        ),
        routers=[api.router],
        on_startup=[store.ensure_indexes, start_dispatcher],
        on_shutdown=[shut_down],
    )
