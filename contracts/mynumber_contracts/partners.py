"""Partner agencies: their types, their registry entries, and who may publish what.

A partner's `ce_source` is its id in the partner registry, written `<type>/<local id>`,
e.g. `municipality/131016` or `post-office/tokyo-chuo`. Every event it publishes is signed
with one of its registered Ed25519 keys (see `signing`).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class PartnerType(StrEnum):
    municipality = "municipality"
    post_office = "post-office"
    diplomatic_office = "diplomatic-office"
    convenience_store_kiosk = "kiosk"
    insurer = "insurer"
    medical_institution = "medical-institution"
    pension_service = "pension-service"
    paying_agency = "paying-agency"
    police = "police"
    transport_bureau = "transport-bureau"
    portal = "portal"  # the government's online portal, acting for a holder
    tax_agency = "tax-agency"
    bank = "bank"
    bank_registry = "bank-registry"  # the keeper of bank and branch codes (bank mergers)


def partner_type_of(partner_id: str) -> PartnerType | None:
    prefix = partner_id.split("/", 1)[0]
    try:
        return PartnerType(prefix)
    except ValueError:
        return None


class KeyStatus(StrEnum):
    active = "active"
    retired = "retired"  # rotated out: events signed with it are quarantined


class PartnerKey(BaseModel):
    model_config = ConfigDict(frozen=True)

    key_id: str = Field(min_length=1, max_length=100, description="Sent as ce_signaturekeyid.")
    public_key: str = Field(description="Raw Ed25519 public key, base64.")
    status: KeyStatus = KeyStatus.active
    added_at: datetime | None = None


class Partner(BaseModel):
    """One agency in the partner registry."""

    model_config = ConfigDict(frozen=True)

    partner_id: str = Field(description="The agency's ce_source, e.g. municipality/131016.")
    type: PartnerType
    name: str = ""
    keys: list[PartnerKey] = Field(default_factory=list)
    allowed_event_types: list[str] = Field(
        default_factory=list, description="The ce_type values this agency may publish; '*' allows every request type."
    )
    delegating_municipality: str | None = Field(
        default=None, description="For a post office: the municipality that delegated application acceptance to it."
    )

    def key(self, key_id: str) -> PartnerKey | None:
        return next((k for k in self.keys if k.key_id == key_id), None)

    def may_publish(self, event_type: str) -> bool:
        return "*" in self.allowed_event_types or event_type in self.allowed_event_types


def default_permissions(partner_type: PartnerType) -> list[str]:
    """The request types a partner of this type may publish, as the contracts declare them
    (each request model lists its `publishers`)."""
    from .base import catalogue

    return sorted(
        event_type
        for event_type, model in catalogue().items()
        if model.stream == "requests" and partner_type in getattr(model, "publishers", frozenset())
    )
