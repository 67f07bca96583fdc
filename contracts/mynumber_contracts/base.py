"""Base classes for every event contract, and the catalogue that maps `ce_type` to a model.

Versioning rule: an additive change (a new optional field) stays within a type version;
a breaking change (removing, renaming or retyping a field, or making one required) gets a
new type version (`...v2`), published alongside the old one until partners have moved.

Strictness: partner requests reject unknown fields (`extra="forbid"`), so a typo is a clear
error instead of silently lost data. Facts ignore unknown fields (`extra="ignore"`), so a
consumer keeps working when a producer adds an optional field. Unknown Kafka headers are
ignored; the CloudEvents headers are validated (see `envelope`).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from . import topics

_CATALOGUE: dict[str, type[Event]] = {}


class Event(BaseModel):
    """An event payload. Concrete subclasses set `event_type` and `service`.

    Partner requests travel on the service's request topic, facts on its fact topic.
    """

    model_config = ConfigDict(frozen=True)

    event_type: ClassVar[str] = ""
    service: ClassVar[str] = ""
    stream: ClassVar[str] = ""  # "requests" or "facts": which of the service's topics

    @classmethod
    def topic(cls, namespace: str = topics.DEFAULT_NAMESPACE) -> str:
        return topics.for_service(cls.service, namespace).stream(cls.stream)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: object) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if cls.__dict__.get("event_type"):
            existing = _CATALOGUE.get(cls.event_type)
            if existing is not None and existing.__qualname__ != cls.__qualname__:
                raise TypeError(f"event type {cls.event_type} is defined twice")
            if cls.service not in topics.SERVICES:
                raise TypeError(f"{cls.__name__} declares an event_type but no known service")
            _CATALOGUE[cls.event_type] = cls


class PartnerRequest(Event):
    """Something a partner agency asks a service to do. Strict: unknown fields are rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)
    stream: ClassVar[str] = "requests"
    # Which partner types may publish this request (values of `partners.PartnerType`).
    publishers: ClassVar[frozenset[str]] = frozenset()


class Fact(Event):
    """Something a service decided. Tolerant: unknown fields from newer producers are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    stream: ClassVar[str] = "facts"

    def partition_key(self) -> bytes:
        """Facts about a person are keyed by the person reference, so they stay in order.

        A fact that may name no person (a request refused before anyone was identified) is keyed
        by `subject_key()` instead; a fact about something else overrides this method.
        """
        person_ref = getattr(self, "person_ref", None) or self.subject_key()
        if not person_ref:
            raise TypeError(f"{type(self).__name__} has no person_ref; override subject_key() or partition_key()")
        return str(person_ref).encode()

    def subject_key(self) -> str | None:
        """The key of a fact that names no person: what it is about, e.g. "request/<id>"."""
        return None


def _load_service_contracts() -> None:
    """Import every service's contract module, so the catalogue is complete whoever asks first."""
    import importlib

    for service in topics.SERVICES:
        try:
            importlib.import_module(f"mynumber_contracts.{service}")
        except ModuleNotFoundError as missing:
            if missing.name != f"mynumber_contracts.{service}":
                raise


def event_model(event_type: str) -> type[Event] | None:
    """The model registered for a `ce_type`, or None when the type is unknown."""
    if event_type not in _CATALOGUE:
        _load_service_contracts()
    return _CATALOGUE.get(event_type)


def catalogue() -> dict[str, type[Event]]:
    _load_service_contracts()
    return dict(_CATALOGUE)


def event_types_for(service: str, stream: str) -> dict[str, type[Event]]:
    _load_service_contracts()
    return {
        name: model for name, model in _CATALOGUE.items() if model.service == service and model.stream == stream
    }
