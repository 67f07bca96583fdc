"""The topic catalogue: one request topic, one fact topic and one dead-letter topic per service.

Partner agencies publish to a service's request topic. A service publishes what it decided
to its fact topic. Messages that cannot be processed go to the dead-letter topic of the
service that received them, with the original bytes and the reason. Events that fail the
security checks (signature, authorisation, replay) go to the shared quarantine topic.

Keys keep one person's events in order and are never the Individual Number:
facts are keyed by the person reference, and partner requests by `ordering_key()`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

PARTITIONS = 6
SERVICES = ("enrollment", "insurance", "benefits", "licensing")


DEFAULT_NAMESPACE = "mynumber"


@dataclass(frozen=True)
class ServiceTopics:
    """The three topics of one service. The namespace lets a test or a tenant run in isolation."""

    service: str
    namespace: str = DEFAULT_NAMESPACE

    @property
    def requests(self) -> str:
        return f"{self.namespace}.{self.service}.requests"

    @property
    def facts(self) -> str:
        return f"{self.namespace}.{self.service}.facts"

    @property
    def dead_letter(self) -> str:
        return f"{self.namespace}.{self.service}.dead-letter"

    def stream(self, name: str) -> str:
        return {"requests": self.requests, "facts": self.facts}[name]

    def all(self) -> tuple[str, str, str]:
        return (self.requests, self.facts, self.dead_letter)


ENROLLMENT = ServiceTopics("enrollment")
INSURANCE = ServiceTopics("insurance")
BENEFITS = ServiceTopics("benefits")
LICENSING = ServiceTopics("licensing")
BY_SERVICE = {t.service: t for t in (ENROLLMENT, INSURANCE, BENEFITS, LICENSING)}

QUARANTINE = "mynumber.security.quarantine"


def quarantine_topic(namespace: str = DEFAULT_NAMESPACE) -> str:
    return f"{namespace}.security.quarantine"


def for_service(service: str, namespace: str = DEFAULT_NAMESPACE) -> ServiceTopics:
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; expected one of {', '.join(SERVICES)}")
    return ServiceTopics(service, namespace)


def all_topics(namespace: str = DEFAULT_NAMESPACE) -> list[str]:
    names = [name for service in SERVICES for name in for_service(service, namespace).all()]
    return names + [quarantine_topic(namespace)]


def fact_topics(namespace: str = DEFAULT_NAMESPACE) -> list[str]:
    return [for_service(service, namespace).facts for service in SERVICES]


# 4,096 buckets: enough to spread load over any realistic partition count, while a bucket
# holds tens of millions of possible numbers, so the key reveals nothing about the person.
ORDERING_BUCKETS = 4096


def ordering_key(subject: str) -> bytes:
    """Kafka key for a partner request about `subject` (an Individual Number or another stable id).

    Every request about the same subject gets the same key, so it lands on the same partition
    and stays in order, but the key is only a coarse bucket of a hash and cannot be reversed.
    """
    digest = hashlib.sha256(b"mynumber-ordering-key/v1:" + subject.encode()).digest()
    bucket = int.from_bytes(digest[:4], "big") % ORDERING_BUCKETS
    return f"bucket-{bucket:04d}".encode()
