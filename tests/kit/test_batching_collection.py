"""The kit's `BatchingCollection` against the real database: reads by `_id` and single inserts
made at the same moment go as one command, and every caller still gets its own answer."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.errors import ConnectionFailure, DuplicateKeyError

from services.kit.store import BatchingCollection, BatchingDatabase, connect


class CommandCounter(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
async def counted(servers, namespace) -> AsyncIterator[tuple[BatchingCollection, CommandCounter]]:
    counter = CommandCounter()
    client: AsyncMongoClient = AsyncMongoClient(servers.mongodb_url, event_listeners=[counter], retryWrites=False)
    collection = BatchingDatabase(client[f"{namespace}_batching"])["documents"]
    await collection.insert_many([{"_id": f"d{i}", "n": i} for i in range(20)])
    counter.commands.clear()
    yield collection, counter
    await client.close()


async def test_reads_by_id_at_the_same_moment_are_one_query_and_each_caller_gets_its_own_document(counted):
    collection, counter = counted
    wanted = ["d3", "d7", "missing", "d3", "d19"]

    found = await asyncio.gather(*(collection.find_one({"_id": document_id}) for document_id in wanted))

    assert [document and document["n"] for document in found] == [3, 7, None, 3, 19]
    assert counter.commands == Counter({"find": 1})
    found[0]["n"] = 99  # two callers asked for d3: each got its own copy
    assert found[3]["n"] == 3


async def test_inserts_at_the_same_moment_are_one_command_and_only_the_duplicate_fails(counted):
    collection, counter = counted

    results = await asyncio.gather(
        collection.insert_one({"_id": "new-1"}),
        collection.insert_one({"_id": "d5"}),  # already there
        collection.insert_one({"_id": "new-2"}),
        return_exceptions=True,
    )

    assert [getattr(result, "inserted_id", None) for result in results] == ["new-1", None, "new-2"]
    assert isinstance(results[1], DuplicateKeyError)
    assert counter.commands == Counter({"insert": 1})
    assert await collection.count_documents({"_id": {"$in": ["new-1", "new-2"]}}) == 2


async def test_one_caller_alone_is_served_as_before(counted):
    collection, counter = counted

    assert (await collection.find_one({"_id": "d1"}))["n"] == 1
    assert (await collection.insert_one({"_id": "alone"})).inserted_id == "alone"
    with pytest.raises(DuplicateKeyError):
        await collection.insert_one({"_id": "alone"})
    assert counter.commands == Counter({"find": 1, "insert": 2})


async def test_other_reads_go_to_the_database_at_once(counted):
    collection, counter = counted

    found: list[Any] = await asyncio.gather(
        collection.find_one({"_id": "d2", "n": 2}),
        collection.find_one({"_id": {"$in": ["d4"]}}),
        collection.find_one({"n": 6}),
        collection.find_one({"_id": "d8"}, {"n": 1}),
    )

    assert [document["_id"] for document in found] == ["d2", "d4", "d6", "d8"]
    assert counter.commands == Counter({"find": 4})


async def test_a_database_out_of_reach_fails_every_waiting_caller():
    client: AsyncMongoClient = AsyncMongoClient("mongodb://127.0.0.1:9/", serverSelectionTimeoutMS=300)
    collection = BatchingDatabase(client["unreachable"])["documents"]
    try:
        outcomes = await asyncio.gather(
            collection.find_one({"_id": "a"}), collection.find_one({"_id": "b"}),
            collection.insert_one({"_id": "c"}), collection.insert_one({"_id": "d"}),
            return_exceptions=True,
        )
    finally:
        await client.close()

    assert all(isinstance(outcome, ConnectionFailure) for outcome in outcomes)


def test_the_services_connect_through_it(servers):
    client, database = connect(servers.mongodb_url, "any", app_name="test")
    try:
        assert isinstance(database, BatchingDatabase)
        assert isinstance(database["residents"], BatchingCollection)
        assert database["residents"] is database["residents"]  # one queue per collection, shared by every store
        assert database.name == "any"
    finally:
        asyncio.run(client.close())
