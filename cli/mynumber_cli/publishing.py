"""`mynumber publish`: validate partner events from an NDJSON file, sign them, publish them.

Each line is one event:

    {"type": "jp.mynumber.enrollment.apply_for_card.v1", "subject": "<the person's number or id>",
     "data": {...the request...}, "id": "optional event id"}

Errors name the line and the field; nothing is sent unless every line is valid.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mynumber_contracts import Event, KafkaRecord, encode_event, event_model, topics
from mynumber_contracts.signing import private_key_from_pem, sign_record
from pydantic import ValidationError


class InputError(ValueError):
    pass


@dataclass(frozen=True)
class PendingEvent:
    line: int
    payload: Event
    subject: str
    event_id: str


def load(file: Path, agency: str) -> list[PendingEvent]:
    if not file.exists():
        raise InputError(f"{file}: no such file")
    events: list[PendingEvent] = []
    for number, text in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            entry = json.loads(text)
        except json.JSONDecodeError as problem:
            raise InputError(f"{file}:{number}: not JSON ({problem.msg} at column {problem.colno})") from None
        if not isinstance(entry, dict):
            raise InputError(f"{file}:{number}: expected an object with type, subject and data")
        for field in ("type", "subject", "data"):
            if field not in entry:
                raise InputError(f"{file}:{number}: field '{field}' is required")
        model = event_model(str(entry["type"]))
        if model is None or model.stream != "requests":
            raise InputError(f"{file}:{number}: field 'type': {entry['type']!r} is not a partner request type")
        try:
            payload = model.model_validate(entry["data"])
        except ValidationError as problem:
            first = problem.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InputError(f"{file}:{number}: field 'data.{where}': {first['msg']}") from None
        events.append(PendingEvent(number, payload, str(entry["subject"]), str(entry.get("id") or uuid.uuid4())))
    if not events:
        raise InputError(f"{file}: no events")
    return events


async def send(events: list[PendingEvent], kafka: dict[str, Any], key_path: Path, key_id: str, namespace: str,
               agency: str | None = None) -> int:
    """Sign and publish `events`; `kafka` holds aiokafka's connection arguments (address, TLS, SASL)."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaConnectionError

    key = private_key_from_pem(key_path.read_bytes())
    producer = AIOKafkaProducer(**kafka, acks="all", enable_idempotence=True, request_timeout_ms=10000)
    try:  # stopped also when it never started, or it is left open (and reported unclosed at exit)
        try:
            await producer.start()
        except KafkaConnectionError:
            raise InputError(f"Kafka does not answer at {kafka['bootstrap_servers']} (or refused the connection: check "
                             "MYNUMBER_KAFKA_USERNAME, _PASSWORD and _CA_FILE): run `mynumber stack up` first") from None
        for event in events:
            record: KafkaRecord = encode_event(
                event.payload, source=agency or key_id.split("#")[0], key=topics.ordering_key(event.subject),
                event_id=event.event_id,
            )
            record = sign_record(record, key, key_id)
            await producer.send_and_wait(event.payload.topic(namespace), record.value, key=record.key, headers=record.headers)
    finally:
        await producer.stop()
    return len(events)
