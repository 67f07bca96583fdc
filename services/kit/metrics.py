"""Prometheus metrics: FastStream's Kafka middleware for messaging, plus domain counters.

Every fact a service publishes is counted by its type, so `cards issued`, `links held` and
`payments by state` come out of one counter without a line of code per use case. Every event a
service takes in is counted by its type too: FastStream's middleware sees a batch as one message.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


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

    def fact_published(self, event_type: str, count: int = 1) -> None:
        self._facts.labels(self.service, event_type).inc(count)

    def event_taken_in(self, event_type: str, *, new: bool) -> None:
        self._taken_in.labels(self.service, event_type, "new" if new else "replayed").inc()

    def dead_lettered(self, reason: str) -> None:
        self._dead_letters.labels(self.service, reason).inc()

    def quarantined(self, reason: str) -> None:
        self._quarantined.labels(self.service, reason).inc()
