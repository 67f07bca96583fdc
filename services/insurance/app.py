"""The insurance service's composition root."""

from __future__ import annotations

from fastapi import FastAPI

from services.kit.audit import AuditTrail
from services.kit.clock import Clock, SystemClock
from services.kit.http import create_http_app
from services.kit.logging import configure_logging
from services.kit.messaging import EventService
from services.kit.people import PersonReferences
from services.kit.store import connect

from . import api
from .handlers import InsuranceDeps, handlers
from .settings import InsuranceSettings
from .store import InsuranceStore

DESCRIPTION = """The card as the health insurance card.

- Links insurer member records to people only when all five attributes match the resident
  registry; anything else is held for an operator, whose decision is audited.
- Answers eligibility checks by the card's certificate id (never the Individual Number),
  over HTTP and as request/reply events.
- Issues, renews, withdraws and expires eligibility certificates; a person never holds both a
  certificate and card-based insurance.
- Releases prescriptions (3 years) and checkup results (5 years) only to the institution the
  patient consented to within the last 24 hours; every request is audited.
"""


def create_app(settings: InsuranceSettings | None = None, *, clock: Clock | None = None) -> FastAPI:
    """Build the service without touching the network: the broker and database connect on startup."""
    settings = settings or InsuranceSettings()
    clock = clock or SystemClock()
    configure_logging("insurance", settings.log_level)
    client, database = connect(settings.mongodb_url, settings.database_name("insurance"), app_name="mynumber-insurance")
    store = InsuranceStore(database)
    deps = InsuranceDeps(
        store=store, people=PersonReferences(settings.person_ref_key.get_secret_value()), settings=settings, clock=clock,
        audit=AuditTrail(database),  # the same append-only trail the kit serves at /audit/persons/{person_ref}
    )
    service = EventService("insurance", settings=settings, database=database, clock=clock, deps=deps)
    service.include(handlers)

    async def close_client() -> None:
        await client.close()

    return create_http_app(
        service,
        title="My Number: insurance",
        description=DESCRIPTION,
        routers=[api.router],
        on_startup=[store.ensure_indexes],
        on_shutdown=[close_client],
    )
