"""An append-only audit trail: who did what, when, to whom (by person reference) and why.

Records are only ever inserted; there is no update or delete path in this module, and the
HTTP API exposes reads only. Each service keeps its trail in its own database.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from .redaction import redact
from .store import insert_unless_there


class AuditRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    audit_id: str
    at: datetime
    actor: str = Field(description="Who: an agency id, an operator, or the service itself.")
    action: str = Field(description="What, e.g. insurance.link, benefits.account.flag, security.quarantine.")
    person_ref: str | None = Field(default=None, description="To whom, as a person reference.")
    reason: str = Field(default="", description="Why.")
    details: dict[str, Any] = Field(default_factory=dict)


class AuditTrail:
    COLLECTION = "audit_trail"

    def __init__(self, database: AsyncDatabase) -> None:
        self._records = database[self.COLLECTION]

    async def ensure_indexes(self) -> None:
        await self._records.create_index([("person_ref", ASCENDING), ("at", ASCENDING)])
        await self._records.create_index([("action", ASCENDING), ("at", ASCENDING)])

    async def record(
        self,
        *,
        at: datetime,
        actor: str,
        action: str,
        reason: str = "",
        person_ref: str | None = None,
        details: dict[str, Any] | None = None,
        audit_id: str | None = None,
    ) -> AuditRecord:
        """Append one record. Pass a deterministic `audit_id` to make a redelivered event write it once."""
        entry = AuditRecord(
            audit_id=audit_id or str(uuid.uuid4()),
            at=at,
            actor=actor,
            action=action,
            person_ref=person_ref,
            reason=redact(reason),
            details=details or {},
        )
        document = entry.model_dump()
        document["_id"] = entry.audit_id
        # Insert-only: an existing id means this very record was already written (a rerun).
        await insert_unless_there(self._records, document)
        return entry

    async def for_person(self, person_ref: str, limit: int = 500) -> list[AuditRecord]:
        cursor = self._records.find({"person_ref": person_ref}).sort("at", ASCENDING).limit(limit)
        return [AuditRecord.model_validate(doc) async for doc in cursor]

    async def by_action(self, action: str, limit: int = 500) -> list[AuditRecord]:
        cursor = self._records.find({"action": action}).sort("at", ASCENDING).limit(limit)
        return [AuditRecord.model_validate(doc) async for doc in cursor]
