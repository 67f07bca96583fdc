"""Runs a service in-process, exactly as uvicorn would (its ASGI lifespan), for a test."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI


@dataclass
class RunningService:
    app: FastAPI
    http: httpx.AsyncClient

    @property
    def service(self) -> Any:
        return self.app.state.service


@asynccontextmanager
async def run_service(name: str, settings: Any, **kwargs: Any) -> AsyncIterator[RunningService]:
    """Start `services.<name>.app.create_app(settings, **kwargs)` with its lifespan; stop it after."""
    module = importlib.import_module(f"services.{name}.app")
    app: FastAPI = module.create_app(settings, **kwargs)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{name}") as http:
            yield RunningService(app=app, http=http)
