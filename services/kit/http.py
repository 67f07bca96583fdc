"""The service's ASGI app: its HTTP API (FastAPI, so OpenAPI comes for free) plus
`/health` (the process is up), `/ready` (the broker and the database answer) and
Prometheus `/metrics` (the gauges that live in the database are refreshed first).
The broker starts and stops with the app's lifespan.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import make_asgi_app
from starlette.types import Receive, Scope, Send

from .audit import AuditRecord
from .auth import ApiTokens, operator
from .messaging import EventService


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

    @app.get("/ready", tags=["operations"], summary="Readiness: the broker and the database answer.")
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


async def service_deps(request: Request) -> Any:
    """FastAPI dependency: the running service's dependencies (its store, clock, settings...)."""
    return request.app.state.service.deps


async def service_of(request: Request) -> EventService[Any]:
    """FastAPI dependency: the running `EventService` (to publish facts from an operator command)."""
    return request.app.state.service
