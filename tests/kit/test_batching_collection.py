"""The kit's `BatchingCollection` against the real database: reads by `_id`, single inserts and
updates by `_id` made at the same moment go as one command, and every caller still gets its own
answer."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import ConnectionFailure, DuplicateKeyError, OperationFailure

from services.kit.store import (
    BatchingCollection,
    BatchingDatabase,
    connect,
    insert_or_read,
    insert_unless_there,
    update_by_id,
)
from tests.support.mongo import CommandCounter


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


async def test_reads_that_all_find_their_document_need_no_second_round_trip(counted):
    collection, counter = counted

    found = await asyncio.gather(*(collection.find_one({"_id": f"d{i}"}) for i in range(20)))

    assert [document["n"] for document in found] == list(range(20))
    assert counter.commands == Counter({"find": 1}), "a cursor left open would cost a getMore"


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


async def test_updates_by_id_at_the_same_moment_are_one_command_applied_in_order(counted):
    collection, counter = counted

    await asyncio.gather(
        update_by_id(collection, "d1", {"$inc": {"n": 10}}),
        update_by_id(collection, "d2", {"$set": {"n": -2}, "$addToSet": {"tags": "x"}}),
        update_by_id(collection, "new", {"$set": {"n": 100}}, upsert=True),
        update_by_id(collection, "absent", {"$set": {"n": 5}}),  # no upsert: nothing to change
        update_by_id(collection, "d1", {"$set": {"n": 0}}),  # after the $inc above
        update_by_id(collection, "d1", {"$inc": {"n": 7}}),
        update_by_id(collection, "d3", {"$set": {"n": 30}}, condition={"n": {"$gt": 100}}),  # the condition fails
        update_by_id(collection, "d4", {"$set": {"n": 40}}, condition={"n": {"$lte": 4}}),
    )

    assert counter.commands == Counter({"update": 1})
    stored = {d["_id"]: d for d in await collection.find({"_id": {"$in": ["d1", "d2", "d3", "d4", "new", "absent"]}}).to_list()}
    assert (stored["d1"]["n"], stored["d2"]["n"], stored["d2"]["tags"], stored["new"]["n"]) == (7, -2, ["x"], 100)
    assert (stored["d3"]["n"], stored["d4"]["n"]) == (3, 40)
    assert "absent" not in stored


async def test_a_failed_update_command_fails_every_caller_that_waited_on_it(counted):
    collection, counter = counted

    outcomes = await asyncio.gather(
        update_by_id(collection, "d1", {"$inc": {"n": 1}}),
        update_by_id(collection, "d2", {"$inc": {"n": "not a number"}}),  # the server refuses this one
        update_by_id(collection, "d3", {"$inc": {"n": 1}}),
        return_exceptions=True,
    )

    # The command's counts are not per statement, so no caller can be told its own fate: each
    # gets the error and runs again (the updates the services send may be repeated).
    assert all(isinstance(outcome, OperationFailure) for outcome in outcomes)
    assert counter.commands == Counter({"update": 1})
    assert (await collection.find_one({"_id": "d2"}))["n"] == 2


async def test_one_update_alone_is_an_update_one_and_its_failure_is_its_own(counted):
    collection, counter = counted

    await update_by_id(collection, "d4", {"$inc": {"n": 1}})
    with pytest.raises(OperationFailure):
        await update_by_id(collection, "d4", {"$inc": {"n": "not a number"}})

    assert (await collection.find_one({"_id": "d4"}))["n"] == 5
    assert counter.commands == Counter({"update": 2, "find": 1})


async def test_update_by_id_on_a_plain_collection_is_update_one(servers, namespace):
    client: AsyncMongoClient = AsyncMongoClient(servers.mongodb_url, retryWrites=False)
    try:
        plain = client[f"{namespace}_plain"]["documents"]
        await update_by_id(plain, "p", {"$set": {"n": 1}}, upsert=True)
        await update_by_id(plain, "p", {"$inc": {"n": 1}})
        assert (await plain.find_one({"_id": "p"}))["n"] == 2
    finally:
        await client.close()


async def test_insert_or_read_inserts_a_new_document_or_returns_the_one_that_stands(counted):
    collection, counter = counted

    inserted, standing = await asyncio.gather(
        insert_or_read(collection, {"_id": "fresh", "n": 1}), insert_or_read(collection, {"_id": "d9", "n": -9})
    )

    assert (inserted["n"], standing["n"]) == (1, 9)
    assert counter.commands == Counter({"insert": 1, "find": 1})


async def test_insert_unless_there_tells_whether_it_inserted_and_leaves_the_first_standing(counted):
    collection, _ = counted

    assert await insert_unless_there(collection, {"_id": "first", "n": 1})
    assert not await insert_unless_there(collection, {"_id": "first", "n": 2})
    assert (await collection.find_one({"_id": "first"}))["n"] == 1


async def test_insert_or_read_inserts_again_when_the_standing_document_is_removed_meanwhile(counted):
    collection, _ = counted

    class RemovedBeforeTheRead:
        """The real collection, with the standing document removed just before the first read."""

        def __init__(self) -> None:
            self.removed = False

        async def insert_one(self, document):
            return await collection.insert_one(document)

        async def find_one(self, filter):
            if not self.removed:
                self.removed = True
                await collection.delete_one(filter)
            return await collection.find_one(filter)

    racing = RemovedBeforeTheRead()
    result = await insert_or_read(racing, {"_id": "d7", "n": 70})

    assert racing.removed and result["n"] == 70
    assert (await collection.find_one({"_id": "d7"}))["n"] == 70


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
            update_by_id(collection, "e", {"$set": {"n": 1}}), update_by_id(collection, "f", {"$set": {"n": 1}}),
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
