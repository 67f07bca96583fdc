"""The licensing composition root: settings, clock, store and handlers wired into one app."""

from __future__ import annotations

from fastapi import FastAPI

from services.kit.clock import Clock, SystemClock
from services.kit.http import create_http_app
from services.kit.logging import configure_logging
from services.kit.messaging import EventService
from services.kit.people import PersonReferences
from services.kit.store import connect

from . import api
from .handlers import LicensingDeps, handlers
from .settings import LicensingSettings
from .store import LicensingStore

NAME = "licensing"


def create_app(settings: LicensingSettings | None = None, *, clock: Clock | None = None) -> FastAPI:
    """Build the service without touching the network: the broker and database connect on startup."""
    settings = settings or LicensingSettings()
    clock = clock or SystemClock()
    configure_logging(NAME, settings.log_level)
    client, database = connect(settings.mongodb_url, settings.database_name(NAME), app_name=f"mynumber-{NAME}")
    store = LicensingStore(database)
    deps = LicensingDeps(
        store=store,
        people=PersonReferences(settings.person_ref_key.get_secret_value()),
        fees=settings.fee_table(),
    )
    service = EventService(NAME, settings=settings, database=database, clock=clock, deps=deps)
    service.include(handlers)

    async def close_client() -> None:
        await client.close()

    return create_http_app(
        service,
        title="My Number licensing service",
        description=(
            "Driver's licences recorded on the My Number card (police), the roadside check, the one-stop "
            "address change, and vehicle registration by card (transport bureaus)."
        ),
        routers=[api.router],
        on_startup=[store.ensure_indexes],
        on_shutdown=[close_client],
    )
