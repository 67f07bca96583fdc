"""Prometheus metrics: FastStream's Kafka middleware for messaging, plus domain counters.

Every fact a service publishes is counted by its type, so `cards issued`, `links held` and
`payments by state` come out of one counter without a line of code per use case. Every event a
service takes in is counted by its type too: FastStream's middleware sees a batch as one message.

A figure that lives in the database (how many payout chunks wait for their header, say) is a
gauge that a service refreshes just before each scrape (`refresh_before_scrape`). Every
instance reads the same database, so each reports the same value. A refresh that fails or
runs out of time leaves the gauge as it was and counts the failure: the scrape still answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter

log = logging.getLogger(__name__)

Refresh = Callable[[], Awaitable[None]]


class ServiceMetrics:
    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        self.service = service
        self.registry = registry
        self._facts = Counter(
            "mynumber_facts_published_total",
            "Facts published, by event type (cards issued, links held, payments by state, ...).",
            ["service", "event_type"],
            registry=registry,
        )
        self._taken_in = Counter(
            "mynumber_events_taken_in_total",
            "Events taken in and done, by event type; outcome 'new' ran its use case, 'replayed' was "
            "done before and its facts were sent again.",
            ["service", "event_type", "outcome"],
            registry=registry,
        )
        self._dead_letters = Counter(
            "mynumber_dead_lettered_total",
            "Messages sent to the dead-letter topic, by reason.",
            ["service", "reason"],
            registry=registry,
        )
        self._quarantined = Counter(
            "mynumber_quarantined_total",
            "Partner events quarantined by the security checks, by reason.",
            ["service", "reason"],
            registry=registry,
        )
        self._refresh_failures = Counter(
            "mynumber_metrics_refresh_failures_total",
            "Gauges that could not be refreshed before a scrape (they kept their last value), by gauge.",
            ["service", "gauge"],
            registry=registry,
        )
        self._refreshes: list[tuple[str, Refresh]] = []

    def refresh_before_scrape(self, gauge: str, refresh: Refresh) -> None:
        """Run `refresh` (which sets the gauge named `gauge`) before every scrape of `/metrics`."""
        self._refreshes.append((gauge, refresh))

    async def refresh(self, *, timeout_seconds: float = 2.0) -> None:
        """Refresh every database-backed gauge, side by side; a failure keeps the gauge's last value."""

        async def one(gauge: str, refresh: Refresh) -> None:
            try:
                await asyncio.wait_for(refresh(), timeout_seconds)
            except Exception as error:  # a scrape reports what it can; it never fails for one gauge
                self._refresh_failures.labels(self.service, gauge).inc()
                log.warning("could not refresh the %s gauge: %s", gauge, type(error).__name__,
                            extra={"gauge": gauge, "error": type(error).__name__})

        await asyncio.gather(*(one(gauge, refresh) for gauge, refresh in self._refreshes))

    def fact_published(self, event_type: str, count: int = 1) -> None:
        self._facts.labels(self.service, event_type).inc(count)

    def event_taken_in(self, event_type: str, *, new: bool) -> None:
        self._taken_in.labels(self.service, event_type, "new" if new else "replayed").inc()

    def dead_lettered(self, reason: str) -> None:
        self._dead_letters.labels(self.service, reason).inc()

    def quarantined(self, reason: str) -> None:
        self._quarantined.labels(self.service, reason).inc()
