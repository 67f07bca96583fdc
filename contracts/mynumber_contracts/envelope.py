"""CloudEvents 1.0 over Kafka, binary content mode.

The event attributes travel as `ce_*` headers and the JSON payload is the message value:

| header | meaning |
|---|---|
| `ce_specversion` | always `1.0` |
| `ce_id` | unique per event; a redelivery keeps its id |
| `ce_source` | the publishing agency's id, e.g. `municipality/131016` |
| `ce_type` | namespaced and versioned, e.g. `jp.mynumber.enrollment.resident_registered.v1` |
| `ce_time` | RFC 3339 time with a UTC offset |
| `ce_correlationid` | the id of the first event of a conversation (optional) |
| `ce_causationid` | the id of the event that caused this one (optional) |
| `ce_signature`, `ce_signaturekeyid` | Ed25519 signature of a partner event (see `signing`) |
| `content-type` | `application/json` |
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import uuid4

from cloudevents.core.bindings import kafka as kafka_binding
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from .base import Event

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
EVENT_TYPE_PATTERN = r"^jp\.mynumber\.[a-z_]+\.[a-z_]+\.v[0-9]+$"
SIGNATURE_HEADER = "ce_signature"
SIGNATURE_KEY_ID_HEADER = "ce_signaturekeyid"


class EnvelopeError(ValueError):
    """A message whose CloudEvents headers are missing or invalid."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Envelope(BaseModel):
    """The validated CloudEvents attributes of one Kafka message."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=200, description="Event id, unique per event.")
    source: str = Field(min_length=1, max_length=200, description="The publishing agency or service.")
    type: str = Field(pattern=EVENT_TYPE_PATTERN, description="Namespaced, versioned event type.")
    time: AwareDatetime = Field(description="When the event happened, with a UTC offset.")
    specversion: str = Field(default=SPEC_VERSION, pattern=r"^1\.0$")
    datacontenttype: str = Field(default=CONTENT_TYPE, description="Always application/json.")
    correlationid: str | None = Field(default=None, max_length=200)
    causationid: str | None = Field(default=None, max_length=200)
    signature: str | None = Field(default=None, max_length=200, description="Base64 Ed25519 signature.")
    signaturekeyid: str | None = Field(default=None, max_length=200, description="Id of the signing key.")

    @property
    def correlation_id(self) -> str:
        return self.correlationid or self.id


_KNOWN_ATTRIBUTES = set(Envelope.model_fields) - {"datacontenttype"}
_HEADER_NAME = re.compile(r"^ce_([a-z0-9]+)$")


def _as_text(value: bytes | str | None) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8")
    return "" if value is None else value


def parse_headers(headers: Mapping[str, bytes | str] | Iterable[tuple[str, bytes | str]]) -> Envelope:
    """Validate CloudEvents headers and return the envelope, or raise `EnvelopeError`.

    Unknown non-`ce_` headers are ignored. Unknown `ce_` extension headers are ignored too,
    so partners may add tracing extensions.
    """
    items = headers.items() if isinstance(headers, Mapping) else headers
    attributes: dict[str, str] = {}
    content_type: str | None = None
    for name, raw in items:
        try:
            text = _as_text(raw)
        except UnicodeDecodeError:
            raise EnvelopeError("invalid_header", f"header {name!r} is not UTF-8") from None
        lowered = name.lower()
        if lowered == "content-type":
            content_type = text
            continue
        match = _HEADER_NAME.match(lowered)
        if match and match.group(1) in _KNOWN_ATTRIBUTES:
            if match.group(1) in attributes:
                raise EnvelopeError("invalid_header", f"header {name!r} appears twice")
            attributes[match.group(1)] = text
    for required in ("specversion", "id", "source", "type", "time"):
        if required not in attributes:
            raise EnvelopeError("missing_header", f"header 'ce_{required}' is required")
    if content_type is None:
        raise EnvelopeError("missing_header", "header 'content-type' is required")
    if content_type.split(";")[0].strip().lower() != CONTENT_TYPE:
        raise EnvelopeError("invalid_header", f"content-type must be {CONTENT_TYPE}")
    try:
        return Envelope(**attributes, datacontenttype=CONTENT_TYPE)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "envelope"
        raise EnvelopeError("invalid_header", f"header 'ce_{where}': {first['msg']}") from None


@dataclass(frozen=True)
class KafkaRecord:
    """What to hand to any Kafka producer: key, value and headers."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)

    def header(self, name: str) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)

    def with_headers(self, extra: Mapping[str, str]) -> KafkaRecord:
        kept = [(k, v) for k, v in self.headers if k not in extra]
        return KafkaRecord(self.key, self.value, kept + [(k, v.encode()) for k, v in extra.items()])


def encode_payload(payload: Event) -> bytes:
    """The JSON bytes of a payload, exactly as they are signed and sent."""
    return payload.model_dump_json(by_alias=True).encode()


def encode_event(
    payload: Event,
    *,
    source: str,
    key: bytes | None,
    event_id: str | None = None,
    time: datetime | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> KafkaRecord:
    """Build a binary-mode CloudEvents Kafka record for `payload`, using the CloudEvents SDK."""
    if not payload.event_type:
        raise TypeError(f"{type(payload).__name__} has no event_type")
    attributes: dict[str, object] = {
        "specversion": SPEC_VERSION,
        "id": event_id or str(uuid4()),
        "source": source,
        "type": payload.event_type,
        "time": (time or datetime.now(UTC)).astimezone(UTC),
        "datacontenttype": CONTENT_TYPE,
    }
    if correlation_id:
        attributes["correlationid"] = correlation_id
    if causation_id:
        attributes["causationid"] = causation_id
    message = kafka_binding.to_binary(CloudEvent(attributes, encode_payload(payload)), JSONFormat())
    return KafkaRecord(key=key, value=message.value, headers=list(message.headers.items()))
