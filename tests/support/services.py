"""Runs a service for a test: in-process, exactly as uvicorn would (its ASGI lifespan), or as the
real `python -m services.<name>` process that operators run."""

from __future__ import annotations

import importlib
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
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


@asynccontextmanager
async def unstarted_service(name: str, settings: Any, **headers: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app of `services.<name>` without its lifespan (no broker, no consumers), for its HTTP
    surface alone: routes that fail before any I/O, the OpenAPI document, `/metrics`."""
    app: FastAPI = importlib.import_module(f"services.{name}.app").create_app(settings)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}",
                                     headers=headers) as http:
            yield http
    finally:
        await app.state.service.database.client.close()


REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_process(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as output:
        return subprocess.Popen(args, cwd=REPO, env={**os.environ, **env}, stdout=output, stderr=output)


def answers(proc: subprocess.Popen, url: str, log: Path, *, verify: ssl.SSLContext | bool = True) -> bool:
    assert proc.poll() is None, f"{proc.args} exited early; see {log}"
    try:
        return httpx.get(url, timeout=2.0, verify=verify).status_code == 200
    except httpx.TransportError:
        return False


def end_process(proc: subprocess.Popen) -> None:
    """SIGKILL, which is immediate, so the wait is short."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()


@contextmanager
def service_process(name: str, env: dict[str, str], log: Path, *, ca_file: str | None = None) -> Iterator[str]:
    """`python -m services.<name>` on a free port until it is ready; its base URL. Killed at the end.
    With `ca_file`, the service serves HTTPS (its env names the certificate) and is checked against it."""
    port = free_port()
    proc = start_process([sys.executable, "-m", f"services.{name}"], {**env, "MYNUMBER_HTTP_PORT": str(port)}, log)
    url = f"{'https' if ca_file else 'http'}://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90  # bounds a hang; never a timed assertion
        verify = ssl.create_default_context(cafile=ca_file) if ca_file else True
        while not answers(proc, f"{url}/ready", log, verify=verify):
            assert time.monotonic() < deadline, f"{name} did not get ready; see {log}"
            time.sleep(0.2)
        yield url
    finally:
        end_process(proc)
