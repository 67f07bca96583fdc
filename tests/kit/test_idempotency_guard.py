"""The guard's record against the real database: whoever records an event first stands, whether
it is recorded alone (a key's earlier event, before the next one runs) or with its batch."""

from __future__ import annotations

from mynumber_contracts import encode_event, parse_headers

from services.kit.clock import SystemClock
from services.kit.idempotency import IdempotencyGuard, ReceivedEvent, content_digest
from services.kit.store import connect
from tests.kit.test_envelope_dead_letter_idempotency import resident


def received(seed: int, *, offset: int) -> ReceivedEvent:
    record = encode_event(resident(seed), source="municipality/131016", key=b"k", event_id=f"event-{seed}")
    envelope = parse_headers(record.headers)
    return ReceivedEvent(envelope, content_digest(envelope, record.value), "requests", 0, offset)


async def test_the_first_record_of_an_event_stands_alone_or_in_a_batch(servers, namespace):
    client, database = connect(servers.mongodb_url, f"{namespace}_guard", app_name="guard")
    try:
        guard = IdempotencyGuard(database, service="enrollment", clock=SystemClock())
        first, second, third = received(1, offset=10), received(2, offset=11), received(3, offset=12)

        await guard.record([(first, [])])  # alone: a key's earlier event
        await guard.record([(received(1, offset=99), [])])  # alone again, by another instance: no error
        await guard.record([(received(1, offset=98), []), (second, []), (third, [])])  # in a batch with it

        recorded = await guard.processed(["event-1", "event-2", "event-3", "event-4"])
        assert sorted(recorded) == ["event-1", "event-2", "event-3"]
        assert recorded["event-1"].where == "requests@0:10", "the first record stands"
    finally:
        await client.close()
