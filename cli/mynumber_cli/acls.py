"""The Kafka ACL policy of the platform: each service principal, and each partner agency,
may write only its own topics.

- A service `svc-<service>` reads its request topic (and, for insurance, benefits and
  licensing, the enrollment fact topic) in its own consumer group, and writes its fact and
  dead-letter topics and the quarantine topic.
- A partner agency writes only the request topics of the services that take requests it may
  publish (as the contracts declare in each request's `publishers`).
"""

from __future__ import annotations

from dataclasses import dataclass

from mynumber_contracts import event_model, topics
from mynumber_contracts.partners import PartnerType, default_permissions


@dataclass(frozen=True)
class Grant:
    principal: str
    write: tuple[str, ...] = ()
    read: tuple[str, ...] = ()
    group: str | None = None


def service_principal(service: str) -> str:
    return f"svc-{service}"


def partner_principal(partner_id: str) -> str:
    return partner_id.replace("/", "-")


def service_grant(service: str, namespace: str = topics.DEFAULT_NAMESPACE) -> Grant:
    own = topics.for_service(service, namespace)
    reads = [own.requests] + ([topics.for_service("enrollment", namespace).facts] if service != "enrollment" else [])
    return Grant(service_principal(service), write=(own.facts, own.dead_letter, topics.quarantine_topic(namespace)),
                 read=tuple(reads), group=f"{namespace}-{service}")


def partner_grant(partner_id: str, partner_type: PartnerType, namespace: str = topics.DEFAULT_NAMESPACE) -> Grant:
    services = sorted({model.service for t in default_permissions(partner_type) if (model := event_model(t))})
    return Grant(partner_principal(partner_id), write=tuple(topics.for_service(s, namespace).requests for s in services))


def apply(grant: Grant, password: str) -> None:
    """Create the principal on the native secure node and give it exactly these rights."""
    from . import native_stack

    native_stack.add_principal(grant.principal, password)
    for topic in grant.write:
        native_stack.allow_write(grant.principal, topic, create=True)
    for topic in grant.read:
        assert grant.group, "a reader needs its consumer group"
        native_stack.allow_read(grant.principal, topic, grant.group)
