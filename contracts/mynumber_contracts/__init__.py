"""Contracts for the My Number event platform: identity types, event schemas, topics, envelope, signing.

Partner agencies install this package alone (`pip install ./contracts`). Its only runtime
dependencies are pydantic, the CloudEvents SDK and `cryptography`.
"""

from . import topics
from .base import Event, Fact, PartnerRequest, catalogue, event_model, event_types_for
from .envelope import Envelope, EnvelopeError, KafkaRecord, encode_event, parse_headers
from .identity import (
    Address,
    MyNumber,
    NameKana,
    NameKanji,
    PersonRef,
    ResidentAttributes,
    Sex,
    check_digit,
    is_valid_my_number,
    mask,
)

__all__ = [
    "Address",
    "Envelope",
    "EnvelopeError",
    "Event",
    "Fact",
    "KafkaRecord",
    "MyNumber",
    "NameKana",
    "NameKanji",
    "PartnerRequest",
    "PersonRef",
    "ResidentAttributes",
    "Sex",
    "catalogue",
    "check_digit",
    "encode_event",
    "event_model",
    "event_types_for",
    "is_valid_my_number",
    "mask",
    "parse_headers",
    "topics",
]
