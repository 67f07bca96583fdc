"""Running an event again late, as a consumer that fell behind would: after later events have run."""

from __future__ import annotations

from typing import Any

from mynumber_contracts import KafkaRecord

from tests.support.kafka import PartnerPublisher
from tests.support.polling import eventually


async def run_late(partner: PartnerPublisher, database: Any, topic: str, record: KafkaRecord) -> None:
    """Take in `record` (the same event id) again as if its guard record had never been written: the
    record is removed from the service's `processed_events`, sent again, and taken in."""
    event_id = record.header("ce_id").decode()
    await database["processed_events"].delete_one({"_id": event_id})
    await partner.send_record(topic, record)

    async def taken_in() -> bool:
        document = await database["processed_events"].find_one({"_id": event_id})
        return document is not None and "digest" in document

    await eventually(taken_in, what=f"event {event_id} taken in")
