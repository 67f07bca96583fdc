"""The service's ASGI app: its HTTP API (FastAPI, so OpenAPI comes for free) plus
`/health` (the process is up), `/ready` (the broker and the database answer) and
Prometheus `/metrics` (the gauges that live in the database are refreshed first).
The broker starts and stops with the app's lifespan.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from prometheus_client import make_asgi_app
from pydantic import AfterValidator, BaseModel
from starlette.types import Receive, Scope, Send

from .audit import AuditRecord
from .auth import ApiTokens, operator
from .messaging import EventService


class Problem(BaseModel):
    """An error answer: what went wrong, in words."""

    detail: str


def errors(described: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` of the errors a route answers with, each with what it means there."""
    return {code: {"model": Problem, "description": meaning} for code, meaning in described.items()}


# The errors of the bearer token (services/kit/auth.py), for the routes that ask for one, and
# of a request body that is not JSON at all (a body that is JSON but not the model's is a 422).
NO_TOKEN = {401: "No valid bearer token."}
OPERATORS_ONLY = {**NO_TOKEN, 403: "The token is not an operator's."}
NOT_JSON = {400: "The body is not JSON."}


# Operators may run a sweep as of another day (to catch up, or to try one). The sweeps add and
# take away years of validity and days of notice, so a day far from any real one is refused
# rather than left to overflow.
FIRST_SWEEP_DAY, LAST_SWEEP_DAY = date(2015, 10, 5), date(2199, 12, 31)


def _a_sweep_day(day: date | None) -> date | None:
    if day is not None and not FIRST_SWEEP_DAY <= day <= LAST_SWEEP_DAY:
        raise ValueError(f"a sweep runs as of a day from {FIRST_SWEEP_DAY} (when the first numbers were notified) "
                         f"to {LAST_SWEEP_DAY}")
    return day


SweepDay = Annotated[
    date | None,
    Query(description=f"Run as of this Japan date (default: today), from {FIRST_SWEEP_DAY} to {LAST_SWEEP_DAY}."),
    AfterValidator(_a_sweep_day),
]


def create_http_app(
    service: EventService[Any],
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter] = (),
    on_startup: Sequence[Callable[[], Awaitable[None]]] = (),
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for step in on_startup:
            await step()
        await service.start()
        if getattr(app.state, "freeze_after_start", False):
            # What starting made (modules, models, clients) lives as long as the process. Frozen,
            # the collector no longer scans it: a full collection under load took 50 to 65 ms of
            # the event loop before (docs/performance.md, finding 3).
            gc.freeze()
        try:
            yield
        finally:
            await service.stop()
            for step in on_shutdown:
                await step()

    app = FastAPI(title=title, description=description, version="1.0.0", lifespan=lifespan)
    app.state.service = service
    app.state.api_tokens = ApiTokens(service.settings.api_token_list())

    @app.get("/health", tags=["operations"], summary="Liveness: the process is running.")
    async def health() -> dict[str, str]:
        return {"status": "ok", "service": service.name}

    @app.get("/ready", tags=["operations"], summary="Readiness: the broker and the database answer.",
             responses={503: {"description": "Not ready: the same body's checks say which of the two does not answer."}})
    async def ready() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            checks["broker"] = "ok" if await service.broker.ping(timeout=2.0) else "unreachable"
        except Exception as exc:  # a readiness probe reports, it never raises
            checks["broker"] = f"unreachable: {type(exc).__name__}"
        try:
            await service.database.command("ping")
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
        ok = all(value == "ok" for value in checks.values())
        return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks}, status_code=200 if ok else 503)

    @app.get("/audit/persons/{person_ref}", tags=["operations"], response_model=list[AuditRecord],
             responses=errors(OPERATORS_ONLY),
             summary="The append-only audit trail of one person (by person reference), oldest first. Operators only.")
    async def audit_for_person(person_ref: str, _: Annotated[str, Depends(operator)]) -> list[AuditRecord]:
        return await service.audit.for_person(person_ref)

    exposition = make_asgi_app(registry=service.metrics.registry)

    async def metrics(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await service.metrics.refresh()  # the gauges that live in the database
        await exposition(scope, receive, send)

    app.mount("/metrics", metrics)
    for router in routers:
        app.include_router(router)
    return app


def serve(app: FastAPI, settings: Any) -> None:
    """Run one service's process (`python -m services.<name>`): uvicorn on the settings' address,
    with HTTPS when the settings name a certificate, freezing what starting made once the service
    has started. Tests run the app in-process instead."""
    import uvicorn

    app.state.freeze_after_start = True
    tls = {"ssl_certfile": settings.http_tls_cert_file, "ssl_keyfile": settings.http_tls_key_file or settings.http_tls_cert_file}
    uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_config=None,
                **(tls if settings.http_tls_cert_file else {}))


async def service_deps(request: Request) -> Any:
    """FastAPI dependency: the running service's dependencies (its store, clock, settings...)."""
    return request.app.state.service.deps


async def service_of(request: Request) -> EventService[Any]:
    """FastAPI dependency: the running `EventService` (to publish facts from an operator command)."""
    return request.app.state.service
