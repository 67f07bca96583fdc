"""The composition root: settings, store, vault and handlers wired into one service."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import FastAPI

from services.kit.clock import Clock, SystemClock
from services.kit.http import create_http_app
from services.kit.logging import configure_logging
from services.kit.messaging import EventService
from services.kit.people import PersonReferences
from services.kit.store import connect

from . import api
from .certificates import CertificateRenderer, PdfCertificateRenderer
from .handlers import EnrollmentDeps, handlers, run_expiry_sweep
from .settings import EnrollmentSettings
from .store import EnrollmentStore
from .vault import NumberVault

log = logging.getLogger(__name__)


def create_app(
    settings: EnrollmentSettings | None = None,
    *,
    clock: Clock | None = None,
    certificate_renderer: CertificateRenderer | None = None,
) -> FastAPI:
    settings = settings or EnrollmentSettings()
    clock = clock or SystemClock()
    configure_logging("enrollment", settings.log_level)
    client, database = connect(settings.mongodb_url, settings.database_name("enrollment"), app_name="mynumber-enrollment")
    vault = NumberVault(settings.number_keys(), settings.number_index_key())
    store = EnrollmentStore(database, vault)
    deps = EnrollmentDeps(
        store=store, vault=vault, people=PersonReferences(settings.person_ref_key.get_secret_value()),
        rules=settings.card_rules(),
        renderer=certificate_renderer or PdfCertificateRenderer(settings.certificate_font_path),
        render_timeout_seconds=settings.certificate_render_timeout_seconds,
    )
    service = EventService("enrollment", settings=settings, database=database, clock=clock, deps=deps)
    service.include(handlers)
    schedule: list[asyncio.Task[None]] = []

    async def start() -> None:
        if settings.uses_development_keys():
            log.warning("enrollment runs with the DEVELOPMENT-ONLY number keys: set MYNUMBER_ENROLLMENT_NUMBER_KEYS "
                        "and MYNUMBER_ENROLLMENT_NUMBER_INDEX_KEY in production")
        await store.ensure_indexes()
        if settings.expiry_sweep_interval_seconds > 0:
            schedule.append(asyncio.create_task(_sweep_on_schedule(service, settings.expiry_sweep_interval_seconds)))

    async def stop() -> None:
        for task in schedule:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await client.close()

    return create_http_app(
        service,
        title="My Number enrollment service",
        description="The resident registry, card applications on three channels, and the card lifecycle.",
        routers=[api.router],
        on_startup=[start],
        on_shutdown=[stop],
    )


async def _sweep_on_schedule(service: EventService[EnrollmentDeps], interval: float) -> None:
    while True:
        await asyncio.sleep(interval)  # wall-clock scheduling only; the sweep reads business time from the clock
        try:
            await run_expiry_sweep(service)
        except Exception:
            log.exception("scheduled expiry sweep failed; the next run tries again")
