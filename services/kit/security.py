"""Partner authentication and authorisation, checked before any handler runs.

Every event on a service's request topic must be signed by a key registered for its
`ce_source` in the partner registry, and that partner must be allowed to publish its
`ce_type`. Anything else is quarantined: written to the quarantine topic and to the
security audit trail with the reason, never processed, and the consumer keeps going.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import ConsumerRecord
from mynumber_contracts import Envelope
from mynumber_contracts.partners import KeyStatus, Partner, PartnerKey, PartnerType
from mynumber_contracts.signing import canonical_form
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from pymongo.asynchronous.database import AsyncDatabase

from .store import fail_waiting


class QuarantineReason:
    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown_key"
    RETIRED_KEY = "retired_key"
    BAD_SIGNATURE = "bad_signature"
    NOT_AUTHORISED = "not_authorised"
    NO_DELEGATION = "no_delegation"
    REPLAYED_EVENT_ID = "replayed_event_id"


class Quarantined(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class PartnerRegistry:
    """The registry of partner agencies, kept in its own small database.

    Operators manage it with `mynumber partners ...`; every service reads it. Entries are
    cached for `cache_seconds`; an unknown key id bypasses the cache, so a key rotated in
    works at once.
    """

    COLLECTION = "partners"

    def __init__(self, database: AsyncDatabase, *, cache_seconds: float = 5.0) -> None:
        self._partners = database[self.COLLECTION]
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Partner | None]] = {}
        self._loading: dict[str, asyncio.Future[Partner | None]] = {}

    async def get(self, partner_id: str, *, fresh: bool = False) -> Partner | None:
        cached = self._cache.get(partner_id)
        if cached and not fresh and time.monotonic() - cached[0] < self._cache_seconds:
            return cached[1]
        # The records of a batch are checked side by side: when the cache runs out, they all ask
        # at once, and one read answers them (a fresh read never joins one that began earlier).
        loading = None if fresh else self._loading.get(partner_id)
        if loading is None:
            loading = asyncio.ensure_future(self._load(partner_id))
            self._loading[partner_id] = loading
            loading.add_done_callback(functools.partial(self._loaded, partner_id))
        return await asyncio.shield(loading)  # a caller that gives up does not cancel the others' read

    def _loaded(self, partner_id: str, done: asyncio.Future[Partner | None]) -> None:
        if self._loading.get(partner_id) is done:
            del self._loading[partner_id]
        if not done.cancelled():
            done.exception()  # its waiters get the error; a read that every waiter gave up on is not reported as lost

    async def _load(self, partner_id: str) -> Partner | None:
        document = await self._partners.find_one({"_id": partner_id})
        partner = Partner.model_validate({**document, "partner_id": document["_id"]}) if document else None
        self._cache[partner_id] = (time.monotonic(), partner)
        return partner

    async def save(self, partner: Partner) -> None:
        document = partner.model_dump(mode="json", exclude={"partner_id"})
        await self._partners.replace_one({"_id": partner.partner_id}, document, upsert=True)
        self._cache.pop(partner.partner_id, None)

    async def add_key(self, partner_id: str, key_id: str, public_key: str) -> None:
        key = PartnerKey(key_id=key_id, public_key=public_key, added_at=datetime.now(UTC))
        await self._partners.update_one(
            {"_id": partner_id, "keys.key_id": {"$ne": key_id}}, {"$push": {"keys": key.model_dump(mode="json")}}
        )
        self._cache.pop(partner_id, None)

    async def retire_key(self, partner_id: str, key_id: str) -> bool:
        partner = await self.get(partner_id, fresh=True)
        if partner is None or partner.key(key_id) is None:
            return False
        keys = [k.model_copy(update={"status": KeyStatus.retired}) if k.key_id == key_id else k for k in partner.keys]
        await self.save(partner.model_copy(update={"keys": keys}))
        return True

    async def all(self) -> list[Partner]:
        return [Partner.model_validate({**d, "partner_id": d["_id"]}) async for d in self._partners.find({})]

    async def seed(self, partners: Iterable[Partner]) -> int:
        count = 0
        for partner in partners:
            await self.save(partner)
            count += 1
        return count


@dataclass(frozen=True, slots=True)
class SignedContent:
    """What one partner signature covers, and the registered key that should verify it."""

    public_key: str
    signature_b64: str
    event_id: str
    event_type: str
    source: str
    time: str
    data: bytes


@functools.lru_cache(maxsize=1024)
def _verify_key(public_key: str) -> VerifyKey:
    """A registered key (the raw 32 bytes, base64) as libsodium's key; a ValueError if it is not one."""
    return VerifyKey(base64.b64decode(public_key, validate=True))


def _verifies(content: SignedContent) -> bool:
    """Whether the signature holds for this content under its key (the form `mynumber_contracts.signing`
    signs). libsodium, not OpenSSL as the contracts' own `verify_signature`: the same Ed25519 check in
    half the CPU time, which is a quarter of a service's own work in a flow (docs/performance.md,
    finding 2). Only the key raises; a signature that cannot be decoded simply does not hold."""
    key = _verify_key(content.public_key)
    try:
        signature = base64.b64decode(content.signature_b64, validate=True)
        signed = canonical_form(event_id=content.event_id, event_type=content.event_type, source=content.source,
                                time=content.time, data=content.data)
        key.verify(signed, signature)
    except (BadSignatureError, ValueError):
        return False
    return True


def _verify_all(contents: Sequence[SignedContent]) -> list[bool | Exception]:
    answers: list[bool | Exception] = []
    for content in contents:
        try:
            answers.append(_verifies(content))
        except Exception as error:  # a registered key that is not a key: this record's problem only
            answers.append(error)
    return answers


_VERIFYING_THREADS = min(4, os.cpu_count() or 1)


@functools.cache
def _verifying_threads() -> ThreadPoolExecutor:
    """The process's threads for signatures, apart from the default executor, so that a batch's
    verification never queues ahead of a residence certificate's render (which has a timeout)."""
    return ThreadPoolExecutor(max_workers=_VERIFYING_THREADS, thread_name_prefix="signature-checks")


class SignatureChecks:
    """Verifies the signatures asked for in one turn of the event loop together, in worker threads.

    libsodium's Ed25519 verification (about 0.05 to 0.1 ms a signature) releases the GIL, so a batch's
    signatures are verified beside the event loop's other work and beside each other, in up to
    `threads` parts of at least `least_per_thread`, on threads of their own (docs/performance.md,
    finding 2). Each caller learns whether its own signature holds, or gets the error its own
    check raised (a registered key that is not a key); if a worker thread cannot run at all,
    every caller of its part gets that error.
    """

    def __init__(self, *, threads: int | None = None, least_per_thread: int = 8) -> None:
        self.threads = threads or _VERIFYING_THREADS
        self.least_per_thread = least_per_thread
        self._waiting: list[tuple[SignedContent, asyncio.Future[bool]]] = []

    async def hold(self, content: SignedContent) -> bool:
        loop = asyncio.get_running_loop()
        if not self._waiting:
            loop.call_soon(self._send)  # after every task that is ready now has asked
        future: asyncio.Future[bool] = loop.create_future()
        self._waiting.append((content, future))
        return await future

    def _send(self) -> None:
        waiting, self._waiting = self._waiting, []
        loop = asyncio.get_running_loop()
        parts = max(1, min(self.threads, len(waiting) // self.least_per_thread))
        size = -(-len(waiting) // parts)
        for start in range(0, len(waiting), size):
            part = waiting[start:start + size]
            futures = [future for _, future in part]
            try:
                verified = loop.run_in_executor(_verifying_threads(), _verify_all, [content for content, _ in part])
            except RuntimeError as error:  # the threads are shut down: the process is ending
                fail_waiting(futures, error)
                continue
            verified.add_done_callback(functools.partial(_settle, futures))


def _settle(futures: list[asyncio.Future[bool]], verified: asyncio.Future[list[bool | Exception]]) -> None:
    if verified.cancelled():
        for future in futures:
            future.cancel()
        return
    error = verified.exception()
    for index, future in enumerate(futures):
        if future.done():  # its caller gave up
            continue
        answer = error if error is not None else verified.result()[index]
        if isinstance(answer, BaseException):
            future.set_exception(answer)
        else:
            future.set_result(answer)


class PartnerVerifier:
    """Checks one inbound partner event: signature, key status, authorisation."""

    def __init__(self, registry: PartnerRegistry, signatures: SignatureChecks | None = None) -> None:
        self.registry = registry
        self.signatures = signatures or SignatureChecks()

    async def __call__(self, envelope: Envelope, record: ConsumerRecord) -> Partner:
        if not envelope.signature or not envelope.signaturekeyid:
            raise Quarantined(QuarantineReason.UNSIGNED, "the event carries no ce_signature / ce_signaturekeyid")
        partner = await self.registry.get(envelope.source)
        key = partner.key(envelope.signaturekeyid) if partner else None
        if key is None:
            partner = await self.registry.get(envelope.source, fresh=True)
            key = partner.key(envelope.signaturekeyid) if partner else None
        if partner is None:
            raise Quarantined(QuarantineReason.UNKNOWN_KEY, f"source {envelope.source!r} is not a registered partner")
        if key is None:
            raise Quarantined(QuarantineReason.UNKNOWN_KEY, f"key {envelope.signaturekeyid!r} is not registered for {envelope.source!r}")
        if key.status is not KeyStatus.active:
            raise Quarantined(QuarantineReason.RETIRED_KEY, f"key {key.key_id!r} of {envelope.source!r} was rotated out")
        headers = {name: value for name, value in (record.headers or ())}
        valid = await self.signatures.hold(SignedContent(
            public_key=key.public_key,
            signature_b64=envelope.signature,
            event_id=envelope.id,
            event_type=envelope.type,
            source=envelope.source,
            time=headers.get("ce_time", b"").decode(),
            data=record.value or b"",
        ))
        if not valid:
            raise Quarantined(QuarantineReason.BAD_SIGNATURE, "the signature does not verify for this content")
        if not partner.may_publish(envelope.type):
            raise Quarantined(
                QuarantineReason.NOT_AUTHORISED, f"{envelope.source!r} ({partner.type}) may not publish {envelope.type}"
            )
        if partner.type is PartnerType.post_office and not partner.delegating_municipality:
            raise Quarantined(QuarantineReason.NO_DELEGATION, f"post office {envelope.source!r} has no delegation")
        return partner
