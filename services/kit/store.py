"""MongoDB access through PyMongo's async API (`pymongo.AsyncMongoClient`).

Only what both MongoDB and FerretDB v1 support is used: single-document atomic writes,
unique indexes and upserts. No transactions, change streams, TTL indexes or `$lookup`.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple, TypeVar

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, RequestTimedOutError
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError, NotPrimaryError, OperationFailure
from pymongo.results import InsertOneResult

log = logging.getLogger(__name__)
T = TypeVar("T")

DUPLICATE_KEY = 11000  # the server's code for a unique index refusing a write

# Failures that go away by themselves: the database or the broker is briefly unreachable.
# These are retried with back-off; they are never dead-lettered.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionFailure,
    NotPrimaryError,
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
    TimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    # FerretDB answers with an OperationFailure while its backend is (re)opening.
    return isinstance(exc, OperationFailure) and not isinstance(exc, DuplicateKeyError) and exc.code in (
        6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436
    )


def connect(url: str, database: str, *, app_name: str) -> tuple[AsyncMongoClient, AsyncDatabase]:
    """A client, and the database as a `BatchingDatabase` (the same API; see there)."""
    client: AsyncMongoClient = AsyncMongoClient(
        url,
        appname=app_name,
        tz_aware=True,
        serverSelectionTimeoutMS=5000,
        connectTimeoutMS=5000,
        retryWrites=False,  # FerretDB v1 does not support retryable writes
    )
    return client, BatchingDatabase(client[database])  # type: ignore[return-value]


async def insert_new(collection: Any, documents: Sequence[dict[str, Any]]) -> set[int]:
    """Insert, in one unordered `insert_many`, every document whose `_id` is not taken yet;
    return the positions of those a unique index refused. Any other write error is raised."""
    if not documents:
        return set()
    try:
        await collection.insert_many(list(documents), ordered=False)
    except BulkWriteError as error:
        problems = error.details.get("writeErrors", [])
        if any(problem.get("code") != DUPLICATE_KEY for problem in problems):
            raise
        return {problem["index"] for problem in problems}
    return set()


async def insert_unless_there(collection: Any, document: dict[str, Any]) -> bool:
    """Insert `document` unless its `_id` is taken (then the first one stands); True when inserted.

    An insert, not an upsert with `$setOnInsert`: the same effect, but a `BatchingCollection`
    sends the inserts of side-by-side use cases as one command, and FerretDB v1 runs updates one
    at a time.
    """
    try:
        await collection.insert_one(document)
        return True
    except DuplicateKeyError:
        return False


APPLIED_FACTS = "applied"  # on a read-model document: the ids of the facts already applied to it


async def apply_fact(collection: Any, document_id: Any, fields: dict[str, Any], *, fact_id: str,
                     create: bool = False) -> bool:
    """Set `fields` on a read-model document as the fact `fact_id` gives them, once: the document
    keeps the ids of the facts applied to it, and a fact already among them changes nothing. So a
    fact that runs again after later ones (a consumer that fell behind; docs/decisions.md, "No
    stale re-run") never puts back an older state. With `create`, a missing document is created;
    without, a missing document stays missing. False when the fact was found applied already (or
    there is nothing to apply it to).

    A read by `_id`, then an insert or an update by `_id` with the same condition, so that on a
    `BatchingCollection` each goes with the others of its turn (an upsert cannot carry the
    condition: on an applied document it would collide with the `_id`)."""
    document = await collection.find_one({"_id": document_id})
    if document is not None and fact_id in document.get(APPLIED_FACTS, ()):
        return False
    if document is None:
        if not create:
            return False
        if await insert_unless_there(collection, {"_id": document_id, **fields, APPLIED_FACTS: [fact_id]}):
            return True
    await update_by_id(collection, document_id, {"$set": fields, "$push": {APPLIED_FACTS: fact_id}},
                       condition={APPLIED_FACTS: {"$ne": fact_id}})
    return True


async def fact_applied(collection: Any, document_id: Any, fact_id: str) -> bool:
    """Whether the fact `fact_id` was applied to the document (read by `_id` alone, so it joins a batch's reads)."""
    document = await collection.find_one({"_id": document_id})
    return document is not None and fact_id in document.get(APPLIED_FACTS, ())


async def insert_or_read(collection: Any, document: dict[str, Any]) -> dict[str, Any]:
    """Insert `document`, or, when its `_id` is taken, return the document that stands (the same
    batching as `insert_unless_there`). If that document is removed between the two calls, the
    insert is tried again."""
    while not await insert_unless_there(collection, document):
        standing = await collection.find_one({"_id": document["_id"]})
        if standing is not None:
            return standing
    return document


async def update_by_id(collection: Any, document_id: Any, update: dict[str, Any], *, upsert: bool = False,
                       condition: dict[str, Any] | None = None) -> None:
    """`update_one({"_id": document_id, **condition}, update, upsert=upsert)` for a caller that needs
    no counts back: it is not told whether the document matched.

    On a `BatchingCollection`, the updates of side-by-side use cases go as one `update` command
    (see there). Each still applies atomically to its one document.
    """
    if isinstance(collection, BatchingCollection):
        await collection.update_by_id(document_id, update, upsert=upsert, condition=condition)
    else:
        await collection.update_one({"_id": document_id, **(condition or {})}, update, upsert=upsert)


class BatchingDatabase:
    """A database whose collections are `BatchingCollection`s; everything else is the database's own."""

    def __init__(self, database: AsyncDatabase) -> None:
        self._database = database
        self._collections: dict[str, BatchingCollection] = {}

    def __getitem__(self, name: str) -> BatchingCollection:
        if name not in self._collections:
            self._collections[name] = BatchingCollection(self._database[name])
        return self._collections[name]

    def get_collection(self, name: str, **options: Any) -> Any:
        return self[name] if not options else self._database.get_collection(name, **options)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._database, name)


class BatchingCollection:
    """A collection whose reads by `_id`, single inserts and updates by `_id`, made by many use
    cases at the same moment, reach the database as one query, one insert and one update command.

    The kit runs the events of a batch side by side (`EventService.take_in`), so their use cases
    ask for the same kind of document at once. `find_one({"_id": x})`, `insert_one(document)` and
    `update_by_id(x, update)` wait for the current turn of the event loop to end; then every read
    waiting on this collection goes as one `find({"_id": {"$in": [...]}})`, every insert as one
    `insert_many(..., ordered=False)` and every update as one ordered `update` command.
    Each caller gets its own answer: its document (or None), its `InsertOneResult`, or its own
    `DuplicateKeyError`. An update is told only that it was applied: an `update` command reports
    counts for the whole command, not for each statement. If the update command fails, every
    caller waiting on it gets the error, as from a call of its own that failed: the statements
    before the failing one were applied, and a rerun applies its update again (so the use cases
    give it only updates that may be repeated, as they must for at-least-once delivery). A
    failure of a whole read or insert call (the database unreachable) is raised to every caller,
    who retries as before. Any other call, or a `find_one` with another filter or options, goes to
    the collection at once.
    """

    def __init__(self, collection: AsyncCollection) -> None:
        self._collection = collection
        self._reads: dict[Any, list[asyncio.Future[Any]]] = {}
        self._inserts: list[tuple[dict[str, Any], asyncio.Future[Any]]] = []
        self._updates: list[tuple[_Update, asyncio.Future[None]]] = []
        self._flush_due = False
        self._in_flight: set[asyncio.Task[None]] = set()  # held, so the loop does not drop them midway

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._collection, name)

    async def find_one(self, filter: Any = None, *args: Any, **kwargs: Any) -> Any:
        document_id = _plain_id(filter)
        if args or kwargs or document_id is None:
            return await self._collection.find_one(filter, *args, **kwargs)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._reads.setdefault(document_id, []).append(future)
        self._flush_soon()
        return await future

    async def insert_one(self, document: dict[str, Any], *args: Any, **kwargs: Any) -> InsertOneResult:
        if args or kwargs:
            return await self._collection.insert_one(document, *args, **kwargs)
        future: asyncio.Future[InsertOneResult] = asyncio.get_running_loop().create_future()
        self._inserts.append((document, future))
        self._flush_soon()
        return await future

    async def update_by_id(self, document_id: Any, update: dict[str, Any], *, upsert: bool = False,
                           condition: dict[str, Any] | None = None) -> None:
        """`update_one({"_id": document_id, **condition}, update, upsert=upsert)`, sent with the others of this turn."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._updates.append((_Update({"_id": document_id, **(condition or {})}, update, upsert), future))
        self._flush_soon()
        await future

    def _flush_soon(self) -> None:
        if not self._flush_due:
            self._flush_due = True
            # After every task that is ready now has run up to its own database call.
            asyncio.get_running_loop().call_soon(self._start_flush)

    def _start_flush(self) -> None:
        self._flush_due = False
        reads, self._reads = self._reads, {}
        inserts, self._inserts = self._inserts, []
        updates, self._updates = self._updates, []
        calls = ([self._read(reads)] if reads else []) + ([self._insert(inserts)] if inserts else [])
        for call in calls + ([self._update(updates)] if updates else []):
            task = asyncio.ensure_future(call)
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _read(self, reads: dict[Any, list[asyncio.Future[Any]]]) -> None:
        try:
            if len(reads) == 1:
                (document_id,) = reads
                found = {document_id: await self._collection.find_one({"_id": document_id})}
            else:
                # One more than can match: with exactly as many, the server keeps the cursor open
                # and the client asks again (a getMore) to learn that nothing is left.
                found = {
                    document["_id"]: document
                    async for document in self._collection.find({"_id": {"$in": list(reads)}}, batch_size=len(reads) + 1)
                }
        except Exception as error:
            for futures in reads.values():
                fail_waiting(futures, error)
            return
        for document_id, futures in reads.items():
            document = found.get(document_id)
            for index, future in enumerate(futures):
                if not future.done():  # a caller cancelled meanwhile
                    future.set_result(document if index == 0 or document is None else copy.deepcopy(document))

    async def _insert(self, inserts: list[tuple[dict[str, Any], asyncio.Future[Any]]]) -> None:
        documents = [document for document, _ in inserts]
        failures: dict[int, Exception] = {}
        try:
            if len(documents) == 1:
                await self._collection.insert_one(documents[0])
            else:
                await self._collection.insert_many(documents, ordered=False)
        except BulkWriteError as error:
            for write_error in error.details.get("writeErrors", []):
                code, message = write_error.get("code"), write_error.get("errmsg", "write error")
                failure_type = DuplicateKeyError if code == DUPLICATE_KEY else OperationFailure
                failures[write_error["index"]] = failure_type(message, code, write_error)
        except Exception as error:
            fail_waiting([future for _, future in inserts], error)
            return
        for index, (document, future) in enumerate(inserts):
            if future.done():
                continue
            if index in failures:
                future.set_exception(failures[index])
            else:
                future.set_result(InsertOneResult(document["_id"], acknowledged=True))

    async def _update(self, updates: list[tuple[_Update, asyncio.Future[None]]]) -> None:
        futures = [future for _, future in updates]
        try:
            if len(updates) == 1:
                ((only, _),) = updates
                await self._collection.update_one(only.filter, only.update, upsert=only.upsert)
            else:
                # Ordered: the statements apply in the order they were asked for and stop at the
                # first failure (FerretDB v1 does so even when told `ordered: false`). Sent as the
                # command itself, not through `bulk_write`: FerretDB v1 reports a failed statement
                # at index 0 and without the counts PyMongo expects, so its answer cannot be
                # trusted statement by statement anyway.
                reply = await self._collection.database.command({
                    "update": self._collection.name,
                    "updates": [{"q": u.filter, "u": u.update, "upsert": u.upsert} for u, _ in updates],
                    "ordered": True,
                })
                problems = reply.get("writeErrors") or [reply[key] for key in ("writeConcernError",) if key in reply]
                if problems:
                    code, message = problems[0].get("code"), problems[0].get("errmsg", "update failed")
                    raise (DuplicateKeyError if code == DUPLICATE_KEY else OperationFailure)(message, code, reply)
        except Exception as error:
            fail_waiting(futures, error)
            return
        for future in futures:
            if not future.done():
                future.set_result(None)


class _Update(NamedTuple):
    filter: dict[str, Any]  # the `_id`, and any condition
    update: dict[str, Any]
    upsert: bool


def _plain_id(filter: Any) -> Any:
    """The `_id` of a filter that is exactly `{"_id": <string or number>}`, else None."""
    if type(filter) is dict and len(filter) == 1:
        value = filter.get("_id")
        if isinstance(value, str | int) and not isinstance(value, bool):
            return value
    return None


def fail_waiting(futures: Sequence[asyncio.Future[Any]], error: BaseException) -> None:
    """Give `error` to every caller still waiting on one of `futures` (one that gave up is left be)."""
    for future in futures:
        if not future.done():
            future.set_exception(error)


async def retry_transient(
    operation: Callable[[], Awaitable[T]], *, what: str, max_delay: float = 10.0
) -> T:
    """Run `operation` until it succeeds, backing off while the failure is transient.

    A non-transient failure is raised at once: it is the caller's to dead-letter.
    """
    delay = 0.1
    attempt = 0
    while True:
        try:
            return await operation()
        except Exception as exc:
            if not is_transient(exc):
                raise
            attempt += 1
            log.warning(
                "transient failure, retrying",
                extra={"what": what, "attempt": attempt, "error": type(exc).__name__, "delay_s": delay},
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
