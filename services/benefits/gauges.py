"""The benefits service's gauges that live in the database, refreshed before every scrape of
`/metrics` (services/kit/metrics.py). An operator alerts on them; the HTTP API says which batch."""

from __future__ import annotations

from prometheus_client import Gauge

from services.kit.messaging import EventService

from .handlers import BenefitsDeps


def watch_batches_waiting_for_header(service: EventService[BenefitsDeps]) -> None:
    """Chunks kept because their batch's header has not come, and how long the oldest has waited.
    A header that never comes is the paying agency's to send: `GET /operations/batches-waiting-for-header`."""
    registry = service.metrics.registry
    chunks = Gauge("mynumber_payout_chunks_waiting_for_header",
                   "Payout chunks kept because their batch's header has not come.", ["service"], registry=registry)
    oldest = Gauge("mynumber_payout_oldest_chunk_waiting_seconds",
                   "How long the longest-waiting payout chunk has waited for its batch's header (0: none waits).",
                   ["service"], registry=registry)

    async def refresh() -> None:
        waiting = await service.deps.store.batches_waiting_for_header()
        kept_at = [batch.first_kept_at for batch in waiting if batch.first_kept_at is not None]
        chunks.labels(service.name).set(sum(len(batch.chunk_indexes) for batch in waiting))
        oldest.labels(service.name).set((service.clock.now() - min(kept_at)).total_seconds() if kept_at else 0)

    service.metrics.refresh_before_scrape("payout_chunks_waiting_for_header", refresh)
