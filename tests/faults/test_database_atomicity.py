"""The platform's stores rely on single-document atomic writes ($inc, $addToSet, $set in one
update) instead of transactions. This probe checks that the MongoDB-compatible server really
applies concurrent updates of one document atomically: two clients, 400 updates, with
`update_one` and with `find_one_and_update`. It also checks that one `update` command of many
statements (a `bulk_write`, as the kit sends side-by-side updates) completes, applies each
statement, and reports each upsert at its own statement's index.

MongoDB does. FerretDB 1.24 on SQLite, as released, does not (it lost most of them: a
read-modify-write per update, nothing between two clients); the native stack's build carries a
fix (cli/mynumber_cli/ferretdb_patch.py), so this must pass on every server the tests use. The same
release also hung on an update command of about 100 statements that match documents, and gave an
upserted document the wrong statement index; the build fixes both."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from pymongo import AsyncMongoClient, UpdateOne

INCREMENTS = 200


@pytest.mark.parametrize("operation", ["update_one", "find_one_and_update"])
async def test_concurrent_updates_of_one_document_are_all_applied(servers, operation):
    first: AsyncMongoClient = AsyncMongoClient(servers.mongodb_url, serverSelectionTimeoutMS=5000)
    second: AsyncMongoClient = AsyncMongoClient(servers.mongodb_url, serverSelectionTimeoutMS=5000)
    name = f"atomicity_{uuid.uuid4().hex[:8]}"
    try:
        await first[name]["docs"].insert_one({"_id": "counter", "n": 0, "seen": []})

        async def bump(client: AsyncMongoClient, tag: str) -> None:
            update = getattr(client[name]["docs"], operation)
            for i in range(INCREMENTS):
                await update({"_id": "counter"}, {"$inc": {"n": 1}, "$addToSet": {"seen": f"{tag}{i}"}})

        await asyncio.gather(bump(first, "a"), bump(second, "b"))
        document = await first[name]["docs"].find_one({"_id": "counter"})
    finally:
        await first.drop_database(name)
        await first.close()
        await second.close()
    assert (document["n"], len(document["seen"])) == (2 * INCREMENTS, 2 * INCREMENTS)


STATEMENTS = 300


async def test_an_update_command_of_many_statements_applies_each_and_reports_upserts_in_place(servers):
    # Without the fix the command never returns: the socket timeout turns that into a failure.
    client: AsyncMongoClient = AsyncMongoClient(servers.mongodb_url, serverSelectionTimeoutMS=5000, socketTimeoutMS=30000)
    name = f"bulk_updates_{uuid.uuid4().hex[:8]}"
    try:
        docs = client[name]["docs"]
        await docs.insert_many([{"_id": f"d{i}", "n": 0} for i in range(STATEMENTS)])
        # Every third statement names a document that is not there yet and is upserted.
        statements = [
            UpdateOne({"_id": f"d{i}" if i % 3 else f"new{i}"}, {"$inc": {"n": 1}, "$addToSet": {"by": "bulk"}}, upsert=True)
            for i in range(STATEMENTS)
        ]
        result = await docs.bulk_write(statements, ordered=False)
        stored = {d["_id"]: d for d in await docs.find({}).to_list()}
    finally:
        await client.drop_database(name)
        await client.close()
    upserted = {index: f"new{index}" for index in range(0, STATEMENTS, 3)}
    assert result.upserted_ids == upserted
    assert (result.matched_count, result.modified_count) == (STATEMENTS - len(upserted), STATEMENTS - len(upserted))
    changed = [f"d{i}" if i % 3 else f"new{i}" for i in range(STATEMENTS)]
    assert all(stored[key]["n"] == 1 and stored[key]["by"] == ["bulk"] for key in changed)
