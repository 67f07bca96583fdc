"""MongoDB access through PyMongo's async API (`pymongo.AsyncMongoClient`).

Only what both MongoDB and FerretDB v1 support is used: single-document atomic writes,
unique indexes and upserts. No transactions, change streams, TTL indexes or `$lookup`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, RequestTimedOutError
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, DuplicateKeyError, NotPrimaryError, OperationFailure

log = logging.getLogger(__name__)
T = TypeVar("T")

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
    client: AsyncMongoClient = AsyncMongoClient(
        url,
        appname=app_name,
        tz_aware=True,
        serverSelectionTimeoutMS=5000,
        connectTimeoutMS=5000,
        retryWrites=False,  # FerretDB v1 does not support retryable writes
    )
    return client, client[database]


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
