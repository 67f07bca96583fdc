"""The broker factory, the handler registry, envelope checks and the dead-letter route.

A service declares its use cases in a `HandlerRegistry`:

    handlers = HandlerRegistry()

    @handlers.handles(ResidentRegistered)
    async def register_resident(event: ResidentRegistered, ctx: HandlerContext[Deps]) -> list[Fact]:
        ...

`EventService` gives each topic FastStream batch subscribers (`MYNUMBER_BATCH_CONSUMERS`
consumers in the group; the AsyncAPI document lists every contract the topic carries) and takes
in each batch of records (`take_in`) so that:

- the CloudEvents headers are validated before the payload is touched;
- bad input (not JSON, schema violation, unknown `ce_type`, bad headers, a crashing use
  case) goes to the service's dead-letter topic with the original bytes and headers, the
  reason, the source topic, partition and offset, and the rest of the batch goes on;
- transient failures (database or broker unreachable) are retried with back-off in place,
  never dead-lettered;
- events with the same ordering key run one after another, in their order; events of
  different keys run side by side, so their use cases' reads by `_id` and inserts reach the
  database together (`store.BatchingCollection`);
- the idempotency guard gives one effect per event and deterministic output event ids: one
  read for the batch's event ids, one write for the events it processed;
- every fact of the batch is sent and acknowledged, and only then are the offsets committed
  (no auto-commit, no ACK_FIRST). A crash before the commit redelivers the batch; the guard
  and the idempotent use cases make that harmless.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import inspect
import json
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Generic, TypeVar, Union

from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from mynumber_contracts import Envelope, EnvelopeError, Event, Fact, KafkaRecord, parse_headers, topics
from prometheus_client import CollectorRegistry
from pydantic import SkipValidation, ValidationError
from pymongo.asynchronous.database import AsyncDatabase

from .audit import AuditTrail
from .clock import Clock
from .idempotency import (
    EarlierFacts,
    IdempotencyGuard,
    Processed,
    ReceivedEvent,
    ReusedEventId,
    content_digest,
    to_records,
)
from .metrics import ServiceMetrics
from .redaction import redact
from .security import PartnerRegistry, PartnerVerifier, Quarantined, QuarantineReason
from .settings import ServiceSettings
from .store import retry_transient

log = logging.getLogger(__name__)

Deps = TypeVar("Deps")
UseCase = Callable[[Any, "HandlerContext[Any]"], Awaitable[Sequence[Fact] | EarlierFacts | None]]

DEAD_LETTER_HEADERS = (
    "dlq_reason",
    "dlq_detail",
    "dlq_service",
    "dlq_source_topic",
    "dlq_partition",
    "dlq_offset",
    "dlq_time",
    "dlq_original_headers",
)


@dataclass(frozen=True)
class HandlerContext(Generic[Deps]):
    """What a use case gets besides its event: the envelope, the clock and the service's dependencies."""

    envelope: Envelope
    clock: Clock
    deps: Deps


@dataclass(frozen=True)
class _Registration:
    model: type[Event]
    use_case: UseCase
    source_service: str  # whose topic carries the event


@dataclass
class HandlerRegistry:
    """Use cases of one service, registered at import time and wired at bootstrap."""

    registrations: list[_Registration] = field(default_factory=list)

    def handles(self, model: type[Event]) -> Callable[[UseCase], UseCase]:
        """Register `use_case` for `model` on the topic its contract names (requests or facts)."""

        def decorate(use_case: UseCase) -> UseCase:
            if any(r.model is model for r in self.registrations):
                raise ValueError(f"{model.__name__} already has a handler")
            self.registrations.append(_Registration(model, use_case, model.service))
            return use_case

        return decorate


class DeadLetterReason:
    NOT_JSON = "not_json"
    SCHEMA_VIOLATION = "schema_violation"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    MISSING_HEADER = "missing_header"
    INVALID_HEADER = "invalid_header"
    HANDLER_ERROR = "handler_error"


def classify_failure(exc: BaseException, headers: Sequence[tuple[str, bytes]]) -> tuple[str, str]:
    """Turn a processing failure into a (reason code, human-readable detail) pair."""
    if isinstance(exc, EnvelopeError):
        return exc.reason, exc.detail
    if isinstance(exc, UnicodeDecodeError):
        return DeadLetterReason.NOT_JSON, "the message value is not UTF-8 text"
    if isinstance(exc, json.JSONDecodeError):
        return DeadLetterReason.NOT_JSON, f"the message value is not JSON ({exc.msg} at position {exc.pos})"
    if isinstance(exc, ValidationError):
        # Locations and messages only: pydantic's input values could hold personal data.
        problems = [
            f"{'.'.join(str(p) for p in error['loc']) or 'payload'}: {error['msg']}" for error in exc.errors()[:10]
        ]
        return DeadLetterReason.SCHEMA_VIOLATION, "; ".join(problems)
    if isinstance(exc, RecursionError):
        return DeadLetterReason.NOT_JSON, "the message value is nested too deeply"
    return DeadLetterReason.HANDLER_ERROR, f"{type(exc).__name__}: {exc}"


def dead_letter_record(
    record: ConsumerRecord, *, service: str, reason: str, detail: str, now: datetime
) -> KafkaRecord:
    """The dead-letter record: the original value and key, untouched; the original headers,
    kept exactly (base64) in `dlq_original_headers`; and where and why it failed."""
    original_headers = [[name, base64.b64encode(value or b"").decode()] for name, value in (record.headers or ())]
    headers = {
        "dlq_reason": reason,
        "dlq_detail": redact(detail)[:2000],
        "dlq_service": service,
        "dlq_source_topic": record.topic,
        "dlq_partition": str(record.partition),
        "dlq_offset": str(record.offset),
        "dlq_time": now.astimezone(UTC).isoformat(),
        "dlq_original_headers": json.dumps(original_headers),
    }
    value = record.value if record.value is not None else b""
    return KafkaRecord(key=record.key, value=value, headers=[(k, v.encode()) for k, v in headers.items()])


async def _tolerant_batch_parser(
    records: tuple[ConsumerRecord, ...], original_parser: Callable[[Any], Awaitable[Any]]
) -> Any:
    """FastStream's parser decodes every header as UTF-8 and fails otherwise. Then parse copies
    with undecodable header values replaced, and keep the original records for the kit, so such a
    message reaches the dead-letter route untouched and its offset is committed like any other."""
    try:
        return await original_parser(records)
    except UnicodeDecodeError:
        sanitised = tuple(
            dataclasses.replace(record, headers=[(name, _utf8_or_replacement(v)) for name, v in (record.headers or ())])
            for record in records
        )
        message = await original_parser(sanitised)
        message.raw_message = records
        return message


async def _leave_undecoded(message: Any, original_decoder: Callable[[Any], Awaitable[Any]]) -> None:
    """The kit decodes each record itself (`EventService._accept`), so bad bytes are its to route."""
    return None


# JSON may carry U+0000 escaped (an even run of backslashes before it is not an escape of the escape).
_ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def _holds_nul_character(value: bytes | None) -> bool:
    """NUL characters are never stored (FerretDB v1 and logs): such input is bad input."""
    # A substring test first (6 % of the service's CPU went to the regex alone while taking in
    # 5,000-recipient payout chunks); the regex then decides the rare value that holds the escape.
    return bool(value) and b"\\u0000" in value and _ESCAPED_NUL.search(value) is not None


def _utf8_or_replacement(value: bytes | None) -> bytes:
    try:
        (value or b"").decode()
        return value or b""
    except UnicodeDecodeError:
        return "\ufffd".encode()


@dataclass(frozen=True)
class _Accepted:
    """A record that passed the envelope, security and schema checks: its event and its use case."""

    record: ConsumerRecord
    received: ReceivedEvent
    event: Event
    use_case: UseCase


@dataclass(frozen=True, slots=True)
class _Done:
    """An event of a batch after its use case: its facts, whether it ran now (not a redelivery), and
    whether it is still to be recorded (an event followed by another of its key was recorded already)."""

    item: _Accepted
    facts: list[KafkaRecord]
    is_new: bool
    to_record: bool


# The kit awaits the produce of each batch's facts, so a linger would only add latency to every batch.
PRODUCER_LINGER_MS = 0
MAX_REQUEST_BYTES = 4 * 1024 * 1024
# Both producers of a service (FastStream's, for dead letters and quarantine; the kit's, for facts).
PRODUCER_SETTINGS: dict[str, Any] = {
    "acks": "all", "enable_idempotence": True, "linger_ms": PRODUCER_LINGER_MS, "max_request_size": MAX_REQUEST_BYTES,
}


class BatchesInFlight:
    """The partitions whose records are being taken in right now, so that a rebalance can wait for them.

    A consumer that loses partitions in a rebalance waits, before it lets the group go on, for
    its batch of those partitions to end (`on_partitions_revoked` runs before the consumer
    rejoins, and aiokafka hands out no records meanwhile). The member taking them over then starts
    from the last commit, never beside a batch still running on the same records: any record
    it reads again was recorded by the guard, which answers it without running its use case.
    Without this, the same request could run in two processes at once and a stale run could
    write an older record back (docs/decisions.md, "No stale re-run").
    """

    def __init__(self) -> None:
        self._batches: Counter[tuple[str, int]] = Counter()
        self._waiters: list[asyncio.Future[None]] = []

    @contextlib.contextmanager
    def taking_in(self, records: Iterable[ConsumerRecord]) -> Iterator[None]:
        partitions = {(record.topic, record.partition) for record in records}
        self._batches.update(partitions)
        try:
            yield
        finally:
            self._batches.subtract(partitions)
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    @property
    def waiting(self) -> int:
        """How many rebalances wait now for a batch to end."""
        return sum(not waiter.done() for waiter in self._waiters)

    def busy(self, partitions: Iterable[tuple[str, int]]) -> bool:
        return any(self._batches[partition] > 0 for partition in partitions)

    async def ended(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Return once no batch of these partitions is being taken in."""
        wanted = set(partitions)
        while self.busy(wanted):
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter


class _FinishBatchesBeforeARebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, in_flight: BatchesInFlight) -> None:
        self.in_flight = in_flight

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.in_flight.ended((partition.topic, partition.partition) for partition in revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        return None


class EventService(Generic[Deps]):
    """One running service: its broker, database, guard, metrics and handlers."""

    def __init__(
        self,
        name: str,
        *,
        settings: ServiceSettings,
        database: AsyncDatabase,
        clock: Clock,
        deps: Deps,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.database = database
        self.clock = clock
        self.deps = deps
        self.topics = topics.for_service(name, settings.topic_namespace)
        self.metrics = ServiceMetrics(name, registry or CollectorRegistry())
        self.guard = IdempotencyGuard(database, service=name, clock=clock)
        self.audit = AuditTrail(database)
        self.partners = PartnerRegistry(
            database.client[settings.partner_registry_database_name()], cache_seconds=settings.partner_cache_seconds
        )
        self._verifier = PartnerVerifier(self.partners) if settings.require_signatures else None
        self.quarantine_topic = topics.quarantine_topic(settings.topic_namespace)
        self.batches_in_flight = BatchesInFlight()
        self.broker = KafkaBroker(
            settings.kafka_bootstrap_servers,
            security=settings.kafka_security(),
            **PRODUCER_SETTINGS,
            client_id=f"mynumber-{name}",
            logger=logging.getLogger(f"mynumber.{name}.broker"),
            middlewares=[KafkaPrometheusMiddleware(registry=self.metrics.registry, app_name=f"mynumber-{name}")],
        )
        # The facts topic in the AsyncAPI document; the facts themselves go through `_fact_producer`.
        self.fact_publisher = self.broker.publisher(
            self.topics.facts,
            title=f"{self.topics.facts}:publish",
            description=f"Facts decided by the {name} service. Keyed by person reference.",
            schema=self._fact_schema(),
        )
        self.dead_letter_publisher = self.broker.publisher(
            self.topics.dead_letter,
            title=f"{self.topics.dead_letter}:publish",
            description=(
                "Messages this service could not process: the original key and value bytes, the original "
                "headers in dlq_original_headers (JSON, base64 values), and dlq_reason, dlq_detail, "
                "dlq_source_topic, dlq_partition, dlq_offset, dlq_time."
            ),
            schema=bytes,
        )
        self.quarantine_publisher = self.broker.publisher(
            self.quarantine_topic,
            title=f"{self.quarantine_topic}:publish",
            description=(
                "Partner events that failed the security checks (unsigned, unknown or retired key, bad signature, "
                "not authorised, replayed event id). Same layout as a dead-letter record."
            ),
            schema=bytes,
        )
        self._subscribers: dict[str, list[Any]] = {}
        self._fact_producer: AIOKafkaProducer | None = None  # made in start(): aiokafka wants a running loop

    def _fact_schema(self) -> Any:
        from mynumber_contracts import event_types_for

        models = list(event_types_for(self.name, "facts").values())
        if not models:
            return None
        if len(models) == 1:
            return models[0]
        from typing import Union

        return Union[tuple(models)]  # noqa: UP007 - a runtime Union for the AsyncAPI schema

    # -- wiring ---------------------------------------------------------------------------

    def include(self, handlers: HandlerRegistry) -> None:
        """Subscribe to every topic that carries an event of `handlers`: one batch subscriber per topic."""
        by_topic: dict[str, dict[str, _Registration]] = {}
        for registration in handlers.registrations:
            model = registration.model
            topic = topics.for_service(registration.source_service, self.settings.topic_namespace).stream(model.stream)
            by_topic.setdefault(topic, {})[model.event_type] = registration
        for topic, routes in by_topic.items():
            if topic in self._subscribers:
                raise ValueError(f"the handlers of {topic} must be included at once")
            self._subscribers[topic] = self._subscribe(topic, routes)

    def _subscribe(self, topic: str, routes: dict[str, _Registration]) -> list[Any]:
        service = self

        async def take_in(events: Any, message: KafkaMessage) -> None:
            # `events` is only the AsyncAPI document's payload: the kit decodes each record itself.
            with service.batches_in_flight.taking_in(message.raw_message):
                await service.take_in(message.raw_message, routes)

        # FastStream reads the payload of the AsyncAPI document from the signature: give it the
        # contracts, one message per record, without asking it to validate them.
        models = tuple(registration.model for registration in routes.values())
        payload = SkipValidation[models[0] if len(models) == 1 else Union[models]]  # noqa: UP007 - a runtime Union
        take_in.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                inspect.Parameter("events", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=payload),
                inspect.Parameter("message", inspect.Parameter.KEYWORD_ONLY, annotation=KafkaMessage),
            ],
            return_annotation=None,
        )
        take_in.__annotations__ = {"events": payload, "message": KafkaMessage, "return": None}
        description = "\n".join(
            f"{r.use_case.__name__.replace('_', ' ').title().replace(' ', '')}: {r.use_case.__doc__ or r.model.__doc__ or ''}"
            for r in routes.values()
        )
        subscribers = []
        # Several consumers in the group, each owning some partitions: while one batch waits on
        # the database, another is checked and run. The AsyncAPI document lists the first.
        for number in range(self.settings.batch_consumers):
            subscriber = self.broker.subscriber(
                topic,
                group_id=self.settings.group_id(self.name),
                auto_offset_reset="earliest",
                ack_policy=AckPolicy.NACK_ON_ERROR,  # committed after the batch is done; rewound on a crash
                batch=True,
                max_records=self.settings.batch_max_records,
                batch_timeout_ms=self.settings.batch_wait_ms,
                max_poll_interval_ms=self.settings.max_poll_interval_ms,
                # Each consumer that joins makes the group rebalance, and the members already in it
                # learn of that at their next heartbeat: 3 s by aiokafka's default, which the second
                # consumer of every topic added to each start.
                heartbeat_interval_ms=self.settings.heartbeat_interval_ms,
                listener=_FinishBatchesBeforeARebalance(self.batches_in_flight),
                title=f"{topic}:{self.name}",
                description=description,
                include_in_schema=number == 0,
                parser=_tolerant_batch_parser,
                decoder=_leave_undecoded,
            )
            subscriber(take_in)
            subscribers.append(subscriber)
        return subscribers

    # -- taking in a batch of records ------------------------------------------------------

    async def take_in(self, records: Sequence[ConsumerRecord], routes: Mapping[str, _Registration]) -> None:
        """Process a batch of records: check each, run the use cases of new events (side by side
        across ordering keys, in order within one), record them in one write, publish every fact,
        and return; the offsets are committed after that.

        Large records (a payout chunk of 5,000 recipients is about 230 KB) are taken in a few at
        a time: the batch is cut into consecutive parts of at most `batch_max_bytes`, one after
        another, so a batch of chunks does not hold them all in memory at once.
        """
        part: list[ConsumerRecord] = []
        part_bytes = 0
        for record in records:
            size = len(record.value or b"")
            if part and part_bytes + size > self.settings.batch_max_bytes:
                await self._take_in_part(part, routes)
                part, part_bytes = [], 0
            part.append(record)
            part_bytes += size
        if part:
            await self._take_in_part(part, routes)

    async def _take_in_part(self, records: Sequence[ConsumerRecord], routes: Mapping[str, _Registration]) -> None:
        # Checked side by side, so that the partner signatures are verified together, off the event loop.
        checked = await asyncio.gather(*(self._check(record, routes) for record in records))
        accepted: list[_Accepted] = []
        for record, outcome in zip(records, checked, strict=True):
            if isinstance(outcome, _Accepted):
                accepted.append(outcome)
            else:
                await self._refuse(record, outcome)
        if not accepted:
            return
        processed = await retry_transient(
            lambda: self.guard.processed([item.received.envelope.id for item in accepted]), what="read processed events"
        )
        first_seen: set[str] = set()
        lanes: dict[Any, list[tuple[int, _Accepted]]] = {}
        repeats: list[tuple[int, _Accepted]] = []
        for index, item in enumerate(accepted):
            event_id = item.received.envelope.id
            if event_id in first_seen:
                repeats.append((index, item))  # the same event id twice in one batch: after the first is done
                continue
            first_seen.add(event_id)
            lanes.setdefault((item.record.partition, item.record.key), []).append((index, item))
        this_batch: dict[str, Processed] = {}
        results: dict[int, tuple[list[KafkaRecord], bool]] = {}
        recorded: set[int] = set()
        await asyncio.gather(*(self._run_lane(lane, processed, this_batch, results, recorded) for lane in lanes.values()))
        await self._run_lane(repeats, processed, this_batch, results, recorded)
        done = [_Done(accepted[index], facts, is_new, to_record=is_new and index not in recorded)
                for index, (facts, is_new) in sorted(results.items())]
        try:
            await retry_transient(
                lambda: self.guard.record([(d.item.received, d.facts) for d in done if d.to_record]),
                what="record processed events",
            )
            every_fact = [fact for d in done for fact in d.facts]
            if every_fact:
                await retry_transient(lambda: self.publish_records(every_fact), what="publish facts")
            self._count_taken_in(done)
        except Exception as exc:
            # Not transient: find the event at fault and dead-letter it, as if it had come alone.
            log.error("the batch's events could not be recorded or their facts sent together (%s): going one by one",
                      type(exc).__name__)
            await self._finish_one_by_one(done)

    async def _finish_one_by_one(self, done: Sequence[_Done]) -> None:
        for d in done:
            try:
                if d.to_record:
                    await retry_transient(partial(self.guard.record, [(d.item.received, d.facts)]), what="record a processed event")
                await retry_transient(partial(self.publish_records, d.facts), what="publish facts")
            except Exception as exc:
                await self._refuse(d.item.record, exc)
                continue
            self._count_taken_in([d])

    def _count_taken_in(self, done: Sequence[_Done]) -> None:
        for d in done:
            self.metrics.event_taken_in(d.item.received.envelope.type, new=d.is_new)

    async def _check(self, record: ConsumerRecord, routes: Mapping[str, _Registration]) -> _Accepted | Exception:
        """The record, accepted; or why not."""
        try:
            return await retry_transient(
                partial(self._accept, record, routes), what=f"check a record from {record.topic}",
                max_delay=self.settings.retry_max_seconds,
            )
        except Exception as exc:
            return exc

    async def _accept(self, record: ConsumerRecord, routes: Mapping[str, _Registration]) -> _Accepted:
        envelope = parse_headers(record.headers or ())
        await self.before_processing(envelope, record)
        registration = routes.get(envelope.type)
        if registration is None:
            raise EnvelopeError(DeadLetterReason.UNKNOWN_EVENT_TYPE, f"no handler for ce_type {envelope.type!r} on this topic")
        if _holds_nul_character(record.value):
            raise EnvelopeError(DeadLetterReason.SCHEMA_VIOLATION, "a string in the payload holds a NUL character (U+0000)")
        event = registration.model.model_validate(json.loads(record.value or b""))
        received = ReceivedEvent(
            envelope=envelope, digest=content_digest(envelope, record.value or b""),
            topic=record.topic, partition=record.partition, offset=record.offset,
        )
        return _Accepted(record, received, event, registration.use_case)

    async def _run_lane(
        self,
        lane: Sequence[tuple[int, _Accepted]],
        processed: Mapping[str, Processed],
        this_batch: dict[str, Processed],
        results: dict[int, tuple[list[KafkaRecord], bool]],
        recorded: set[int],
    ) -> None:
        """Run one ordering key's events in their order. Before an event runs, the events of its key
        that ran before it in this batch are recorded (`recorded` gets their indexes): should the
        process die before the batch is recorded, its redelivery answers them from the guard
        instead of running them again on top of what the later ones wrote (a stale re-run would
        write an older state back). Most keys have one event in a batch, and pay nothing."""
        ran: list[tuple[int, ReceivedEvent, list[KafkaRecord]]] = []
        for index, item in lane:
            received = item.received
            earlier = this_batch.get(received.envelope.id) or processed.get(received.envelope.id)
            if earlier is not None:
                if earlier.digest != received.digest:
                    await self._refuse(item.record, ReusedEventId(
                        f"ce_id {received.envelope.id!r} was already used for different content (first seen on {earlier.where})"
                    ))
                else:
                    results[index] = (earlier.records, False)  # a redelivery: the same facts again
                continue
            if ran:
                try:
                    await retry_transient(partial(self.guard.record, [(r, facts) for _, r, facts in ran]),
                                          what="record the earlier events of a key")
                    recorded.update(i for i, _, _ in ran)
                except Exception as exc:  # they are recorded with the batch, or one by one if that fails too
                    log.warning("the earlier events of a key could not be recorded before the next (%s)", type(exc).__name__)
                ran = []
            context = HandlerContext(envelope=received.envelope, clock=self.clock, deps=self.deps)
            try:
                facts = await retry_transient(
                    partial(item.use_case, item.event, context),
                    what=f"{received.envelope.type} from {received.topic}", max_delay=self.settings.retry_max_seconds,
                )
            except Exception as exc:
                await self._refuse(item.record, exc)
                continue
            records = self.guard.facts_of(received, facts if isinstance(facts, EarlierFacts) else list(facts or ()))
            this_batch[received.envelope.id] = Processed(
                received.digest, f"{received.topic}@{received.partition}:{received.offset}", records
            )
            results[index] = (records, True)
            ran.append((index, received, records))

    async def _refuse(self, record: ConsumerRecord, exc: Exception) -> None:
        """Quarantine, dead-letter or skip a record that cannot be processed; its offset is committed with the batch."""
        if isinstance(exc, ReusedEventId):
            exc = Quarantined(QuarantineReason.REPLAYED_EVENT_ID, str(exc))
        if isinstance(exc, Quarantined):
            await self.quarantine(record, exc.reason, exc.detail)
            return
        reason, detail = classify_failure(exc, record.headers or ())
        if reason == DeadLetterReason.UNKNOWN_EVENT_TYPE and record.topic != self.topics.requests:
            return  # another service's fact that this service does not consume: skip it, it is not bad input
        await self.dead_letter(record, reason, detail)

    def assigned_partitions(self, topic: str) -> set[int]:
        """The partitions of `topic` this process's consumers own right now (empty before they join)."""
        consumers = [subscriber.consumer for subscriber in self._subscribers[topic]]
        return {tp.partition for consumer in consumers if consumer is not None for tp in consumer.assignment()}

    # -- hooks ----------------------------------------------------------------------------

    async def before_processing(self, envelope: Envelope, record: ConsumerRecord) -> None:
        """Partner requests must be signed by a registered partner allowed to publish their type."""
        if self._verifier is not None and record.topic == self.topics.requests:
            await self._verifier(envelope, record)

    # -- output ---------------------------------------------------------------------------

    async def publish_records(self, records: Sequence[KafkaRecord]) -> None:
        """Send fact records (already encoded, with their ids) and wait until the broker has them all.

        They go through the service's own aiokafka producer, not FastStream's publisher, whose
        per-message middleware stack cost about twice the CPU of the send itself (docs/decisions.md,
        "Platform"). Facts are counted by the service's own metric.
        """
        if self._fact_producer is None:
            raise RuntimeError(f"the {self.name} service has not started: it cannot publish facts")
        futures = [
            await self._fact_producer.send(self.topics.facts, record.value, key=record.key, headers=list(record.headers))
            for record in records
        ]
        for future in futures:
            await future
        for event_type, count in Counter(_header_text(record, "ce_type") for record in records).items():
            self.metrics.fact_published(event_type, count)

    async def publish_facts(self, facts: Sequence[Fact], *, cause: Envelope) -> list[KafkaRecord]:
        """Publish facts that no consumed event caused directly (sweeps, operator commands).

        `cause` should have a deterministic id (e.g. the sweep's date and subject), so a rerun
        republishes the same event ids.
        """
        records = to_records(facts, cause=cause, service=self.name, now=self.clock.now())
        await retry_transient(lambda: self.publish_records(records), what="publish facts")
        return records

    async def dead_letter(self, record: ConsumerRecord, reason: str, detail: str) -> None:
        letter = dead_letter_record(record, service=self.name, reason=reason, detail=detail, now=self.clock.now())
        headers = {name: value.decode() for name, value in letter.headers}
        log.warning(
            "dead-lettered a message from %s: %s: %s", record.topic, reason, redact(detail)[:300],
            extra={"reason": reason, "detail": redact(detail)[:500], "topic": record.topic,
                   "partition": record.partition, "offset": record.offset},
        )
        await retry_transient(
            lambda: self.dead_letter_publisher.publish(letter.value, key=letter.key, headers=headers),
            what="dead-letter",
        )
        self.metrics.dead_lettered(reason)

    async def quarantine(self, record: ConsumerRecord, reason: str, detail: str) -> None:
        letter = dead_letter_record(record, service=self.name, reason=reason, detail=detail, now=self.clock.now())
        headers = {name: value.decode() for name, value in letter.headers}
        source = _original_header(record, "ce_source")
        log.warning("quarantined a partner event from %s: %s: %s", source or "unknown source", reason, redact(detail)[:300])
        await retry_transient(
            lambda: self.quarantine_publisher.publish(letter.value, key=letter.key, headers=headers), what="quarantine"
        )
        await retry_transient(
            lambda: self.audit.record(
                at=self.clock.now(),
                actor=source or "unknown",
                action="security.quarantine",
                reason=f"{reason}: {detail}",
                details={"topic": record.topic, "partition": record.partition, "offset": record.offset,
                         "ce_id": _original_header(record, "ce_id"), "ce_type": _original_header(record, "ce_type")},
                audit_id=f"quarantine:{record.topic}:{record.partition}:{record.offset}",
            ),
            what="audit quarantine",
        )
        self.metrics.quarantined(reason)

    def synthetic_cause(self, cause_id: str, event_type: str = "jp.mynumber.operations.sweep.v1") -> Envelope:
        return Envelope(id=cause_id, source=f"service/{self.name}", type=event_type, time=self.clock.now())

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        await retry_transient(self.audit.ensure_indexes, what="audit indexes")
        await retry_transient(self._ensure_topics, what="create topics")
        producer = AIOKafkaProducer(
            **self.settings.kafka_client_kwargs(),
            **PRODUCER_SETTINGS,
            client_id=f"mynumber-{self.name}-facts",
        )
        await retry_transient(producer.start, what="start the fact producer")
        self._fact_producer = producer
        await self._start_broker()

    async def _start_broker(self) -> None:
        """What `KafkaBroker.start` does, with the subscribers started side by side.

        FastStream starts them one at a time, and each consumer that joins its group makes those
        already in it rejoin at their next heartbeat: a service's start took about 0.3 s a consumer.
        Started together, the members of a group join in one round. A start that fails stops the
        others (a task group)."""
        broker = self.broker
        await broker.connect()
        async with asyncio.TaskGroup() as starting:
            for subscriber in broker.subscribers:
                starting.create_task(subscriber.start())
        for publisher in broker.publishers:
            await publisher.start()
        broker.running = True

    async def _ensure_topics(self) -> None:
        """Create this service's topics, and those it reads, with the catalogue's partition count."""
        from aiokafka.errors import TopicAuthorizationFailedError

        wanted = {*self.topics.all(), *self._subscribers, self.quarantine_topic}
        try:
            await create_topics(self.settings.kafka_client_kwargs(), wanted,
                                replication_factor=self.settings.topic_replication_factor)
        except TopicAuthorizationFailedError:
            log.warning("may not create topics %s: the operators create them", sorted(wanted))

    async def stop(self) -> None:
        await self.broker.stop()
        if self._fact_producer is not None:
            await self._fact_producer.stop()  # after the consumers: their last facts are sent first
            self._fact_producer = None


async def create_topics(
    client_kwargs: Mapping[str, Any], names: Iterable[str], *, partitions: int = topics.PARTITIONS,
    replication_factor: int = 1,
) -> list[str]:
    """Create the topics that do not exist yet; return those it created. Safe to race with others."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(**client_kwargs)
    await admin.start()
    try:
        missing = sorted(set(names) - set(await admin.list_topics()))
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(name, num_partitions=partitions, replication_factor=replication_factor) for name in missing]
                )
            except TopicAlreadyExistsError:
                pass  # another instance created it first
        return missing
    finally:
        await admin.close()


def _original_header(record: ConsumerRecord, name: str) -> str | None:
    for header, value in record.headers or ():
        if header == name:
            return (value or b"").decode(errors="replace")
    return None


def _header_text(record: KafkaRecord, name: str) -> str:
    value = record.header(name)
    return value.decode() if value else ""
