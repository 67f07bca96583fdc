"""The platform's stores rely on single-document atomic writes ($inc, $addToSet, $set in one
update) instead of transactions. This probe checks that the MongoDB-compatible server really
applies concurrent updates of one document atomically: two clients, 400 updates, with
`update_one` and with `find_one_and_update`.

MongoDB does. FerretDB 1.24 on SQLite, as released, does not (it lost most of them: a
read-modify-write per update, nothing between two clients); the native stack's build carries a
fix (cli/mynumber_cli/ferretdb_patch.py), so this must pass on every server the tests use."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from pymongo import AsyncMongoClient

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
