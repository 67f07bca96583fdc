"""The raw ceilings, measured in the same run as the services: what the broker and the store do
with no framework and no business logic, on records of the services' own sizes.

- raw_kafka: an aiokafka produce-then-consume loop (producer configured like the kit's).
- raw_store: bulk upserts (`bulk_write` of `UpdateOne(..., upsert=True)`) and `insert_many(ordered=False)`
  of documents shaped like the idempotency record, and, for contrast, one `update_one` per document.
- raw_pipeline: consume a batch, bulk-write one upsert per record, produce one record per input,
  commit. The ceiling each service's main flow is compared with. The same loop with a batch of
  one (what the kit does per message) is reported beside it.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from mynumber_contracts import KafkaRecord
from pymongo import AsyncMongoClient, InsertOne, UpdateOne
from pymongo.errors import BulkWriteError

from services.kit.messaging import PRODUCER_LINGER_MS

from . import common, flows
from .common import BenchPartners, Context
from .population import people

_samples: dict[tuple[str, int], list[KafkaRecord]] = {}


def sample_requests(ctx: Context, ns: str, count: int) -> list[KafkaRecord]:
    """Signed partner requests of the main flows, mixed, so sizes match what the services consume."""
    key = (ns, count)
    if key not in _samples:
        partners = BenchPartners(ctx, ns)
        group = people(max(1, count // 4 + 1))
        mixed: list[KafkaRecord] = []
        for build in (flows.enrollment_requests, flows.licensing_requests, flows.insurance_requests):
            mixed += [r for _, r in build(partners, ns, group)]
        random.Random(7).shuffle(mixed)
        _samples[key] = (mixed * (count // len(mixed) + 1))[:count]
    return _samples[key]


def record_bytes(r: KafkaRecord) -> int:
    return len(r.value) + len(r.key or b"") + sum(len(k) + len(v) for k, v in r.headers)


def processed_document(r: KafkaRecord, topic: str, partition: int, offset: int) -> dict[str, Any]:
    """A document like the idempotency guard's: the digest, where the event came from, the output records."""
    headers = dict(r.headers)
    return {
        "digest": hashlib.sha256(r.value).hexdigest(),
        "type": headers.get("ce_type", b"").decode(),
        "source": headers.get("ce_source", b"").decode(),
        "topic": topic, "partition": partition, "offset": offset,
        "processed_at": datetime.now(UTC),
        "facts": [{"key": r.key, "value": r.value, "headers": [{"name": k, "value": v} for k, v in r.headers]}],
    }


async def run_kafka(ctx: Context) -> dict[str, Any]:
    ns = ctx.namespace("raw_kafka")
    n = ctx.scale.raw_messages
    topic = f"{ns}.raw.loop"
    try:
        records = sample_requests(ctx, ns, n)
        await common.create_topics(ctx, [topic])
        produce_seconds = await common.publish_all(ctx, [(topic, r) for r in records])
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=ctx.kafka, group_id=f"{ns}-raw", auto_offset_reset="earliest",
                                    enable_auto_commit=False, max_poll_records=ctx.scale.batch_size)
        await consumer.start()
        try:
            started, received = time.monotonic(), 0
            while received < n:
                batch = await consumer.getmany(timeout_ms=500)
                received += sum(len(v) for v in batch.values())
                if time.monotonic() - started > ctx.scale.drain_deadline_seconds:
                    break
            consume_seconds = time.monotonic() - started
        finally:
            await consumer.stop()
        size = sum(record_bytes(r) for r in records)
        return {
            "status": "ok" if received >= n else "incomplete",
            "metrics": {
                "messages": n, "mean_record_bytes": round(size / n, 1),
                "produce_msgs_per_s": round(n / produce_seconds, 1),
                "produce_mb_per_s": round(size / produce_seconds / 2**20, 2),
                "consume_msgs_per_s": round(received / consume_seconds, 1),
                "consume_mb_per_s": round(size / consume_seconds / 2**20, 2),
                "producer": f"acks=all, idempotent, linger_ms={PRODUCER_LINGER_MS} (as the kit)", "fetch_batch": ctx.scale.batch_size,
            },
            "targets": {},
        }
    finally:
        await common.delete_namespace(ctx, ns)


async def run_store(ctx: Context) -> dict[str, Any]:
    ns = ctx.namespace("raw_store")
    n = ctx.scale.raw_documents
    upserts = ctx.scale.raw_upserts
    batch = ctx.scale.batch_size
    records = sample_requests(ctx, ns, n)
    documents = [processed_document(r, "bench.requests", i % 6, i) for i, r in enumerate(records)]
    client: AsyncMongoClient = AsyncMongoClient(ctx.mongodb, tz_aware=True, retryWrites=False)
    try:
        database = client[f"{ns}_store"]
        results: dict[str, Any] = {}

        async def timed(name: str, operation: Any, count: int) -> None:
            started = time.monotonic()
            await operation()
            seconds = time.monotonic() - started
            results[name] = {"documents": count, "docs_per_s": round(count / seconds, 1), "seconds": round(seconds, 3)}

        async def insert_many() -> None:
            collection = database["insert_many"]
            for i in range(0, n, batch):
                await collection.insert_many([{"_id": f"e{j}", **documents[j]} for j in range(i, min(n, i + batch))],
                                             ordered=False)

        async def bulk_insert_ops() -> None:
            collection = database["bulk_inserts"]
            for i in range(0, n, batch):
                await collection.bulk_write([InsertOne({"_id": f"e{j}", **documents[j]}) for j in range(i, min(n, i + batch))],
                                            ordered=False)

        async def bulk_upserts() -> None:
            collection = database["bulk_upserts"]
            for i in range(0, upserts, batch):
                await collection.bulk_write(
                    [UpdateOne({"_id": f"e{j}"}, {"$setOnInsert": documents[j]}, upsert=True)
                     for j in range(i, min(upserts, i + batch))], ordered=False)

        async def one_by_one() -> None:
            collection = database["one_by_one"]
            for j in range(upserts):
                await collection.update_one({"_id": f"e{j}"}, {"$setOnInsert": documents[j]}, upsert=True)

        async def insert_one_by_one() -> None:
            collection = database["insert_one"]
            for j in range(upserts):
                await collection.insert_one({"_id": f"e{j}", **documents[j]})

        await timed("insert_many_unordered", insert_many, n)
        await timed("bulk_write_insert", bulk_insert_ops, n)
        await timed("bulk_write_upsert", bulk_upserts, upserts)
        await timed("update_one_upsert_sequential", one_by_one, upserts)
        await timed("insert_one_sequential", insert_one_by_one, upserts)
        scaling = await _write_cost_by_collection_size(database, documents, ctx.scale.scan_probe_sizes)
        size = sum(len(r.value) for r in records) / n
        return {
            "status": "ok",
            "metrics": {"batch_size": batch, "mean_document_payload_bytes": round(size, 1),
                        "insert_many_docs_per_s": results["insert_many_unordered"]["docs_per_s"],
                        "bulk_upsert_docs_per_s": results["bulk_write_upsert"]["docs_per_s"],
                        **results, "write_cost_by_collection_size": scaling},
            "series": {"write_cost_ms": scaling},
            "targets": {},
        }
    finally:
        await client.drop_database(f"{ns}_store")
        await client.close()


async def _write_cost_by_collection_size(database: Any, documents: list[dict[str, Any]], sizes: list[int],
                                         probes: int = 10) -> list[dict[str, Any]]:
    """Milliseconds per operation keyed by `_id`, as the collection grows: reads and inserts use the
    `_id` index; on FerretDB v1 (SQLite) every update, upsert and delete reads the whole collection."""
    collection = database["scaling"]
    rows: list[dict[str, Any]] = []
    have = 0
    for size in sizes:
        while have < size:
            chunk = min(5000, size - have)
            await collection.insert_many([{"_id": f"s{have + k}", **documents[(have + k) % len(documents)]}
                                          for k in range(chunk)], ordered=False)
            have += chunk
        row: dict[str, Any] = {"documents": size}
        operations = {
            "find_one": lambda i, size=size: collection.find_one({"_id": f"s{i}"}),
            "insert_one": lambda i, size=size: collection.insert_one({"_id": f"p{size}-{i}", **documents[0]}),
            "update_one": lambda i, size=size: collection.update_one({"_id": f"s{i}"}, {"$set": {"probe": size}}),
            "upsert_new": lambda i, size=size: collection.update_one({"_id": f"u{size}-{i}"}, {"$setOnInsert": documents[0]}, upsert=True),
            "find_one_and_update": lambda i, size=size: collection.find_one_and_update({"_id": f"s{i + probes}"}, {"$set": {"probe": size}}),
        }
        for name, operation in operations.items():
            started = time.monotonic()
            for i in range(probes):
                await operation(i)
            row[f"{name}_ms"] = round((time.monotonic() - started) / probes * 1000, 3)
        rows.append(row)
    return rows


async def _pipeline(ctx: Context, ns: str, records: list[KafkaRecord], batch: int, write: str) -> dict[str, Any]:
    """consume a batch -> write one document per record -> produce one record per input -> commit.

    `write` is "insert" (insert_many ordered=False: a replayed record's duplicate key is ignored, the same
    effect as $setOnInsert) or "upsert" (bulk_write of UpdateOne upserts); with a batch of 1 the loop does
    one round trip per message, as the kit does."""
    source, sink = f"{ns}.raw.requests", f"{ns}.raw.facts"
    await common.create_topics(ctx, [source, sink])
    await common.publish_all(ctx, [(source, r) for r in records])
    client: AsyncMongoClient = AsyncMongoClient(ctx.mongodb, tz_aware=True, retryWrites=False)
    collection = client[f"{ns}_pipeline"]["processed_events"]
    consumer = AIOKafkaConsumer(source, bootstrap_servers=ctx.kafka, group_id=f"{ns}-pipeline", auto_offset_reset="earliest",
                                enable_auto_commit=False, max_poll_records=batch)
    n = len(records)
    times: list[float] = []

    async def write_batch(polled: list[Any]) -> None:
        documents = [(f"{r.topic}:{r.partition}:{r.offset}", processed_document(_as_record(r), r.topic, r.partition, r.offset))
                     for r in polled]
        if write == "upsert":
            if len(documents) == 1:
                await collection.update_one({"_id": documents[0][0]}, {"$setOnInsert": documents[0][1]}, upsert=True)
            else:
                await collection.bulk_write([UpdateOne({"_id": i}, {"$setOnInsert": d}, upsert=True) for i, d in documents],
                                            ordered=False)
            return
        try:
            await collection.insert_many([{"_id": i, **d} for i, d in documents], ordered=False)
        except BulkWriteError as error:  # a replay: the first write stands
            if any(e.get("code") != 11000 for e in error.details.get("writeErrors", [])):
                raise

    async with common._started(common.producer(ctx)) as producer:
        await consumer.start()
        try:
            started = time.monotonic()
            done = 0
            while done < n and time.monotonic() - started < ctx.scale.drain_deadline_seconds:
                fetched = await consumer.getmany(timeout_ms=500, max_records=batch)
                polled = [r for rs in fetched.values() for r in rs]
                for i in range(0, len(polled), batch):
                    chunk = polled[i:i + batch]
                    await write_batch(chunk)
                    futures = [await producer.send(sink, r.value, key=r.key, headers=list(r.headers)) for r in chunk]
                    await asyncio.gather(*futures)
                    await consumer.commit(
                        {TopicPartition(r.topic, r.partition): r.offset + 1 for r in chunk}
                    )
                    done += len(chunk)
                    times += [time.monotonic()] * len(chunk)
            seconds = time.monotonic() - started
        finally:
            await consumer.stop()
            await client.close()
    return {"messages": done, "seconds": round(seconds, 3), "msgs_per_s": round(done / seconds, 1) if seconds else None,
            "batch_size": batch, "write": write, "times": times, "started": started}


def _as_record(r: Any) -> KafkaRecord:
    return KafkaRecord(key=r.key, value=r.value, headers=list(r.headers or ()))


async def run_pipeline(ctx: Context) -> dict[str, Any]:
    ns = ctx.namespace("raw_pipeline")
    n = ctx.scale.raw_messages
    variants = {
        "batched_insert": (n, ctx.scale.batch_size, "insert"),
        "batched_upsert": (ctx.scale.raw_upserts, ctx.scale.batch_size, "upsert"),
        "per_message_insert": (ctx.scale.raw_upserts, 1, "insert"),
        "per_message_upsert": (ctx.scale.raw_upserts, 1, "upsert"),
    }
    results: dict[str, Any] = {}
    series: dict[str, Any] = {}
    try:
        records = sample_requests(ctx, ns, n)
        for index, (name, (count, batch, write)) in enumerate(variants.items()):
            outcome = await _pipeline(ctx, f"{ns}{index}", records[:count], batch, write)
            series[name] = common.timeline(outcome.pop("times"), outcome.pop("started"))
            results[name] = outcome
        ceiling = results["batched_insert"]
        return {
            "status": "ok" if all(r["messages"] >= variants[k][0] for k, r in results.items()) else "incomplete",
            "metrics": {
                "msgs_per_s": ceiling["msgs_per_s"],
                "upsert_msgs_per_s": results["batched_upsert"]["msgs_per_s"],
                "per_message_msgs_per_s": results["per_message_upsert"]["msgs_per_s"],
                **results,
                "mean_record_bytes": round(sum(record_bytes(r) for r in records) / n, 1),
                "what": "consume batch -> write one document per record -> produce one per record -> commit; "
                        "the ceiling (msgs_per_s) is the batched insert variant",
            },
            "series": {"throughput": series["batched_insert"], "variants": series},
            "targets": {},
        }
    finally:
        for index in range(len(variants)):
            await common.delete_namespace(ctx, f"{ns}{index}")
