"""`mynumber demo`: a simulated day of partner-agency traffic through the real stack.

The run gets its own namespace (topics `demo<stamp>.*`, databases `demo<stamp>_*`), so its
report counts only its own traffic. Every event is signed with a demo partner key.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .. import native_stack, partner_keys, processes
from . import population
from .runner import Outgoing, SignedPublisher, read_everything, wait_until_settled

REPO = Path(__file__).resolve().parents[3]
SEED_FILE = REPO / "config" / "partners.demo.json"


@dataclass
class DemoContext:
    kafka: str
    mongodb: str
    namespace: str
    today: date
    rng: random.Random
    people: list[population.Person]
    publisher: SignedPublisher
    console: Console
    progress: Progress
    http: httpx.AsyncClient
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def operator(self) -> dict[str, str]:
        from services.kit.settings import DEVELOPMENT_API_TOKENS

        return {"Authorization": f"Bearer {DEVELOPMENT_API_TOKENS.split('=', 1)[1]}"}

    def url(self, service: str) -> str:
        return processes.service(service).url

    async def publish(self, label: str, events: list[Outgoing]) -> None:
        task = self.progress.add_task(label, total=len(events))
        await self.publisher.send(events, on_sent=lambda n: self.progress.advance(task, n))

    async def settle(self, label: str = "waiting for the services to catch up") -> None:
        task = self.progress.add_task(label, total=None)
        await wait_until_settled(self.kafka, self.namespace,
                                 on_progress=lambda lag: self.progress.update(task, description=f"{label} (backlog {sum(lag.values())})"))
        self.progress.update(task, total=1, completed=1, description=label)


Phase = Callable[[DemoContext], Awaitable[None]]


def _phases() -> list[tuple[str, Phase]]:
    from . import day

    return day.PHASES


async def run(*, residents: int, seed: int, console: Console, stop_services: bool) -> dict[str, Any]:
    kafka, mongodb = _servers(console)
    namespace = f"demo{datetime.now(UTC):%Y%m%d%H%M%S}"
    keys_dir = native_stack.stack_dir() / "partner-keys"
    console.print(f"[bold]Namespace[/] {namespace}: topics {namespace}.*, databases {namespace}_*")

    client, registry = _registry(mongodb, namespace)
    try:
        count = await registry.seed(partner_keys.partners_from_seed(SEED_FILE, keys_dir))
    finally:
        await client.close()
    console.print(f"Partner registry: {count} agencies with demo keys in {keys_dir}")

    env = processes.environment(kafka, mongodb, {"MYNUMBER_TOPIC_NAMESPACE": namespace, "MYNUMBER_LOG_LEVEL": "WARNING"})
    running = processes.available()
    for process in processes.ALL:
        processes.stop(process)
    for process in running:
        processes.start(process, env)
    waiting = processes.wait_healthy(running)
    if waiting:
        raise RuntimeError(f"not ready: {', '.join(p.name for p in waiting)}; see {processes.log_file(waiting[0])}")
    console.print("Services ready: " + ", ".join(f"{p.name} {p.url}" for p in running))

    today = datetime.now(UTC).date()
    people = population.generate(residents, today, seed)
    started = time.monotonic()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        async with SignedPublisher(kafka, namespace, keys_dir) as publisher, httpx.AsyncClient(timeout=30) as http:
            with Progress(*columns, console=console) as progress:
                context = DemoContext(kafka, mongodb, namespace, today, random.Random(seed), people, publisher, console,
                                      progress, http)
                for _, phase in _phases():
                    await phase(context)
                await context.settle("settling the last events")
            contents = await read_everything(kafka, namespace)
            from .report import build_report

            report = build_report(context, contents, elapsed=time.monotonic() - started)
    finally:
        if stop_services:
            for process in reversed(processes.ALL):
                processes.stop(process)
    return report


def _servers(console: Console) -> tuple[str, str]:
    import os

    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    mongodb = os.environ.get("MONGODB_URL")
    if kafka and mongodb:
        return kafka, mongodb
    console.print("Starting the native stack (Apache Kafka via Maven, FerretDB via Go)...")
    found = native_stack.up()
    return found.kafka_bootstrap, found.mongodb_url


def _registry(mongodb: str, namespace: str):
    from pymongo import AsyncMongoClient

    from services.kit.security import PartnerRegistry

    client = AsyncMongoClient(mongodb, tz_aware=True, serverSelectionTimeoutMS=5000)
    return client, PartnerRegistry(client[f"{namespace}_partners"], cache_seconds=0)


def main(residents: int, seed: int, keep_running: bool) -> int:
    console = Console()
    report = asyncio.run(run(residents=residents, seed=seed, console=console, stop_services=not keep_running))
    from .report import render

    render(report, console)
    return 0
