"""The kit's probe service (tests/kit/test_envelope_dead_letter_idempotency.py: `RegisterResident` in,
`ResidentRegistered` out, one effect document per request) running as the enrollment service would,
for tests of what lies around a service: the broker's security, the database's TLS, quarantine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from services.kit.clock import SystemClock
from services.kit.messaging import EventService
from services.kit.people import PersonReferences
from services.kit.settings import ServiceSettings
from services.kit.store import connect
from tests.kit.test_envelope_dead_letter_idempotency import ProbeDeps, handlers


@asynccontextmanager
async def probe_service(settings: ServiceSettings, *, before_start: Callable[[EventService[Any]], Awaitable[None]] | None = None,
                        drop_database: bool = True) -> AsyncIterator[EventService[ProbeDeps]]:
    """The started probe with `settings`; stopped (and its database dropped) at the end."""
    client, database = connect(settings.mongodb_url, settings.database, app_name="probe")
    service = EventService("enrollment", settings=settings, database=database, clock=SystemClock(),
                           deps=ProbeDeps(database, PersonReferences(settings.person_ref_key.get_secret_value())))
    service.include(handlers)
    if before_start is not None:
        await before_start(service)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
        if drop_database:
            await client.drop_database(settings.database)
        await client.close()
