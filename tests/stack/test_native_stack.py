"""The native stack manager against the real servers it starts.

Apache Kafka (single KRaft node) and FerretDB (SQLite) run as local processes
on 127.0.0.1; nothing here is mocked.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

import pytest

try:
    from mynumber_cli import native_stack
except ImportError:  # cli/ is not on sys.path (the package is not installed)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "cli"))
    from mynumber_cli import native_stack


@pytest.fixture(scope="module")
def endpoints() -> native_stack.StackEndpoints:
    return native_stack.up()


def _port(address: str) -> int:
    return int(address.rstrip("/").rsplit(":", 1)[1])


def test_up_twice_is_harmless_and_returns_the_same_endpoints(endpoints: native_stack.StackEndpoints) -> None:
    before = native_stack.status()
    started = time.monotonic()
    again = native_stack.up()
    elapsed = time.monotonic() - started

    assert again == endpoints
    assert endpoints.kafka_bootstrap.startswith("127.0.0.1:")
    assert endpoints.mongodb_url.startswith("mongodb://127.0.0.1:") and endpoints.mongodb_url.endswith("/")
    assert elapsed < 30, f"a second up() on a running stack took {elapsed:.1f}s"
    after = native_stack.status()
    # The running servers were left alone: same processes.
    assert after["kafka"]["pid"] == before["kafka"]["pid"]
    assert after["mongodb"]["pid"] == before["mongodb"]["pid"]


def test_status_reports_both_servers_answering(endpoints: native_stack.StackEndpoints) -> None:
    report = native_stack.status()

    kafka, mongodb = report["kafka"], report["mongodb"]
    assert kafka["answers"] is True and mongodb["answers"] is True
    assert kafka["state"] in ("running", "external")
    assert mongodb["state"] in ("running", "external")
    assert kafka["address"] == endpoints.kafka_bootstrap
    assert _port(mongodb["address"]) == _port(endpoints.mongodb_url)
    assert kafka["name"].startswith(f"Apache Kafka {native_stack.KAFKA_VERSION}")
    assert mongodb["name"].startswith(f"FerretDB {native_stack.FERRETDB_VERSION}")
    if kafka["state"] == "running":
        assert isinstance(kafka["pid"], int) and kafka["pid"] > 0


def test_kafka_produce_and_consume_to_a_fresh_topic(endpoints: native_stack.StackEndpoints) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = f"stack-test-{uuid.uuid4().hex[:10]}"
    big = b"x" * 2_000_000  # the broker accepts messages of up to 2 MB

    async def scenario() -> list[tuple[bytes | None, bytes | None]]:
        producer = AIOKafkaProducer(bootstrap_servers=endpoints.kafka_bootstrap, max_request_size=2_200_000)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"hello from the native stack", key=b"k1")
            await producer.send_and_wait(topic, big, key=b"k1")
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=endpoints.kafka_bootstrap,
            group_id=f"{topic}-group",
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await consumer.start()
        try:
            received = []
            deadline = time.monotonic() + 60
            while len(received) < 2 and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    received.extend((record.key, record.value) for record in records)
            return received
        finally:
            await consumer.stop()

    received = asyncio.run(scenario())
    assert received == [(b"k1", b"hello from the native stack"), (b"k1", big)]


def test_mongodb_insert_and_read(endpoints: native_stack.StackEndpoints) -> None:
    from pymongo import MongoClient

    client: MongoClient = MongoClient(endpoints.mongodb_url, serverSelectionTimeoutMS=10_000)
    try:
        collection = client[f"stack_test_{uuid.uuid4().hex[:8]}"]["documents"]
        collection.insert_one({"_id": "doc-1", "my_number_hash": "abc", "count": 3})
        assert collection.find_one({"_id": "doc-1"}) == {"_id": "doc-1", "my_number_hash": "abc", "count": 3}
        client.drop_database(collection.database.name)
    finally:
        client.close()


def _sqlite_plan(database, filter_: dict) -> str:
    """SQLite's own query plan for a find, as FerretDB's `explain` reports it."""
    plan = database.command("explain", {"find": "documents", "filter": filter_})
    return " ".join(plan["queryPlanner"]["Plan"])


def test_lookups_by_id_use_the_id_index(endpoints: native_stack.StackEndpoints) -> None:
    """The FerretDB build carries the fixes in ferretdb_patch.py: without them SQLite
    reads the whole table for every find, update and delete by `_id`, for an `_id`
    next to other conditions, and for `_id: {$in: [...]}`."""
    from pymongo import MongoClient

    client: MongoClient = MongoClient(endpoints.mongodb_url, serverSelectionTimeoutMS=10_000)
    try:
        database = client[f"stack_test_{uuid.uuid4().hex[:8]}"]
        documents = database["documents"]
        documents.insert_many([{"_id": f"doc-{i}", "n": i, "tags": ["a", "b"]} for i in range(50)])
        for filter_ in ({"_id": "doc-42"}, {"_id": "doc-42", "n": 42}, {"_id": {"$in": ["doc-1", "doc-42"]}, "n": {"$gt": 1}}):
            steps = _sqlite_plan(database, filter_)
            assert "USING INDEX" in steps and "SCAN" not in steps, (filter_, steps)
        # the whole filter still applies to the rows the index returns
        assert documents.find_one({"_id": "doc-42", "n": 41}) is None
        assert [d["_id"] for d in documents.find({"_id": {"$in": ["doc-1", "doc-42", "nope"]}, "n": {"$gt": 1}})] == ["doc-42"]
        assert documents.count_documents({"_id": "doc-7", "tags": "b"}) == 1
        assert documents.update_one({"_id": "doc-42", "n": 0}, {"$set": {"n": -1}}).matched_count == 0
        assert documents.update_one({"_id": "doc-42", "n": 42}, {"$set": {"n": -1}}).modified_count == 1
        assert documents.find_one({"_id": "doc-42"}) == {"_id": "doc-42", "n": -1, "tags": ["a", "b"]}
        assert documents.delete_many({"_id": {"$in": ["doc-1", "doc-2"]}, "n": 1}).deleted_count == 1
        # filters that pin no _id down are still answered, by reading the table
        assert "SCAN" in _sqlite_plan(database, {"n": 3})
        assert "SCAN" in _sqlite_plan(database, {"_id": {"$in": ["doc-3", 4]}})
        assert documents.count_documents({"_id": {"$in": ["doc-3", 4]}}) == 1
        client.drop_database(database.name)
    finally:
        client.close()


def test_a_ferretdb_patch_that_no_longer_applies_stops_the_build(tmp_path: Path) -> None:
    from mynumber_cli import ferretdb_patch

    for relative, *_rest in ferretdb_patch.FERRETDB_PATCHES:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("package sqlite\n")  # the text the patch expects is gone
    with pytest.raises(ferretdb_patch.PatchDoesNotApply, match="does not apply"):
        ferretdb_patch.patch_ferretdb_sources(tmp_path)
    for relative, before, _after, *times in ferretdb_patch.FERRETDB_PATCHES:
        path = tmp_path / relative
        path.write_text(path.read_text() + before * (times[0] if times else 1))
    ferretdb_patch.patch_ferretdb_sources(tmp_path)
    for relative, _before, after, *times in ferretdb_patch.FERRETDB_PATCHES:
        assert (tmp_path / relative).read_text().count(after) >= (times[0] if times else 1)
    assert all((tmp_path / name).is_file() for name in ferretdb_patch.FERRETDB_NEW_FILES)


def test_a_ferretdb_patch_for_text_that_occurs_more_often_than_expected_stops_the_build(tmp_path: Path) -> None:
    from mynumber_cli import ferretdb_patch

    for relative, before, _after, *times in ferretdb_patch.FERRETDB_PATCHES:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text((path.read_text() if path.exists() else "") + before * ((times[0] if times else 1) + 1))
    with pytest.raises(ferretdb_patch.PatchDoesNotApply, match="does not apply"):
        ferretdb_patch.patch_ferretdb_sources(tmp_path)


@pytest.mark.parametrize("level", ["debug", "info"])
def test_ferretdb_logs_its_sql_at_the_debug_level_only(tmp_path: Path, level: str) -> None:
    """Fix 5 builds a statement's debug log line only when debug logging is on: at that
    level the SQL must still be logged, and at the info level (the stack's) it is not."""
    import socket
    import subprocess

    from pymongo import MongoClient

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "sqlite").mkdir()
    log = tmp_path / "ferretdb.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(native_stack.ensure_ferretdb()), "--handler=sqlite", f"--sqlite-url=file:{tmp_path / 'sqlite'}/",
             f"--listen-addr=127.0.0.1:{port}", "--debug-addr=-", f"--state-dir={tmp_path}",
             "--telemetry=disable", f"--log-level={level}", "--log-format=text"],
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        client: MongoClient = MongoClient(f"mongodb://127.0.0.1:{port}/", serverSelectionTimeoutMS=20_000)
        try:
            client["logged"]["documents"].insert_one({"_id": "doc-1", "n": 1})
            assert client["logged"]["documents"].find_one({"_id": "doc-1"}) == {"_id": "doc-1", "n": 1}
        finally:
            client.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    logged_sql = [line for line in log.read_text().splitlines() if ">>> INSERT INTO" in line]
    if level == "debug":
        assert logged_sql and "args=" in logged_sql[0]
    else:
        assert logged_sql == []


def test_ferretdb_starts_with_a_larger_gc_target_unless_the_operator_sets_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOGC", raising=False)
    assert native_stack._FerretDB().environment()["GOGC"] == native_stack.FERRETDB_GOGC == "400"
    monkeypatch.setenv("GOGC", "150")
    assert native_stack._FerretDB().environment()["GOGC"] == "150"


def test_restart_mongodb_brings_it_back_with_its_data(endpoints: native_stack.StackEndpoints) -> None:
    from pymongo import MongoClient

    before = native_stack.status()["mongodb"]
    if before["state"] != "running":
        pytest.skip("FerretDB on this port was not started by the native stack; it cannot restart it")
    database = f"stack_restart_{uuid.uuid4().hex[:8]}"
    client: MongoClient = MongoClient(endpoints.mongodb_url, serverSelectionTimeoutMS=10_000)
    try:
        client[database]["documents"].insert_one({"_id": "kept", "value": 42})

        assert native_stack.restart_mongodb() == native_stack.endpoints()

        after = native_stack.status()["mongodb"]
        assert after["state"] == "running" and after["answers"] is True
        assert after["pid"] != before["pid"], "restart_mongodb() should start a new process"
        environment = Path(f"/proc/{after['pid']}/environ").read_bytes().split(b"\0")
        assert f"GOGC={os.environ.get('GOGC') or native_stack.FERRETDB_GOGC}".encode() in environment
        # The same client reconnects; the data survived (SQLite files in .stack/).
        assert client[database]["documents"].find_one({"_id": "kept"}) == {"_id": "kept", "value": 42}
        client.drop_database(database)
    finally:
        client.close()


@pytest.mark.stack_lifecycle
def test_down_then_up_restores_the_stack(endpoints: native_stack.StackEndpoints) -> None:
    report = native_stack.status()
    if any(entry["state"] != "running" for entry in report.values()):
        pytest.skip("the servers on these ports were not started by the native stack")
    try:
        native_stack.down()
        stopped = native_stack.status()
        for entry in stopped.values():
            assert entry["state"] == "stopped" and entry["pid"] is None and entry["answers"] is False

        started = time.monotonic()
        again = native_stack.up()
        elapsed = time.monotonic() - started
        assert again == endpoints
        assert elapsed < 60, f"a warm up() took {elapsed:.1f}s"
        for entry in native_stack.status().values():
            assert entry["state"] == "running" and entry["answers"] is True
    finally:
        native_stack.up()  # leave the shared stack running for the other tests
