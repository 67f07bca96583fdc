"""The main job end to end: a simulated day of partner traffic through the four real service
processes, the real broker and the real database, then a hunt for the Individual Number
everywhere it must never be: log lines, Kafka keys and headers on every topic, fact
payloads, and every service's store (enrollment holds it only as ciphertext).

The hunt uses the check-digit rule: it finds real numbers, not any run of 12 digits."""

from __future__ import annotations

import base64
import io
import json
import re

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from mynumber_cli import processes
from mynumber_cli.demo import run
from mynumber_contracts import is_valid_my_number
from pymongo import MongoClient
from rich.console import Console

# Twelve digits standing alone (not inside a longer token such as a hex digest).
TWELVE_DIGITS = re.compile(rb"(?<![0-9A-Za-z])[0-9]{12}(?![0-9A-Za-z])")


# A UUID's last group is 12 hex characters, sometimes all digits: event ids are not numbers.
UUID = re.compile(rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def numbers_in(blob: bytes | str) -> set[str]:
    data = UUID.sub(b"<uuid>", blob.encode() if isinstance(blob, str) else blob)
    return {m.decode() for m in TWELVE_DIGITS.findall(data) if is_valid_my_number(m.decode())}


def numbers_in_document(value: object) -> set[str]:
    if isinstance(value, dict):
        return set().union(*(numbers_in_document(v) | numbers_in(str(k)) for k, v in value.items()))
    if isinstance(value, list):
        return set().union(*(numbers_in_document(v) for v in value))
    if isinstance(value, str | bytes):
        return numbers_in(value)
    return set()


@pytest.fixture(scope="module")
def day(servers) -> dict:
    import asyncio
    import os

    os.environ["KAFKA_BOOTSTRAP_SERVERS"], os.environ["MONGODB_URL"] = servers.kafka_bootstrap, servers.mongodb_url
    console = Console(file=io.StringIO(), width=160)
    report = asyncio.run(run(residents=120, seed=11, console=console, stop_services=True))
    report["console"] = console.file.getvalue()
    return report


def test_the_report_has_a_non_zero_figure_in_every_row(day):
    rows = day["rows"]
    sections = {section for section, _, _ in rows}
    assert {"Enrollment", "Insurance", "Licensing", "Benefits", "Child benefit", "Dead-lettered", "Quarantined",
            "Rejections by reason"} <= sections
    zero = [(section, label) for section, label, value in rows if value.replace(",", "") in ("0", "0.0")]
    assert not zero, zero
    labels = {label for _, label, _ in rows}
    for channel in ("municipal_office", "post_office", "diplomatic_office"):
        assert f"applications accepted: {channel}" in labels


def test_the_child_benefit_batch_reconciles_to_the_yen(day):
    rows = {label: value for section, label, value in day["rows"] if section == "Child benefit"}
    control = next(label for label in rows if label.startswith("control totals"))
    total = int(re.search(r"¥([\d,]+)", control).group(1).replace(",", ""))
    lines = [label for label in rows if label.startswith("payments ")]
    assert sum(int(re.search(r"¥([\d,]+)", label).group(1).replace(",", "")) for label in lines) == total
    assert sum(int(rows[label].replace(",", "")) for label in lines) == int(rows[control].replace(",", ""))


def test_no_number_in_any_service_log(day):
    leaks = {}
    for process in processes.ALL:
        path = processes.log_file(process)
        if path.exists():
            found = numbers_in(path.read_bytes())
            if found:
                leaks[process.name] = sorted(found)[:3]
    assert not leaks, f"Individual Numbers in logs: {leaks}"
    assert processes.log_file(processes.service("enrollment")).stat().st_size > 0, "the services logged nothing"


async def test_no_number_in_any_key_or_header_and_none_in_facts(day, servers):
    namespace = day["namespace"]
    consumer = AIOKafkaConsumer(bootstrap_servers=servers.kafka_bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    scanned, leaks, numbers_in_partner_requests = 0, [], 0
    try:
        cluster = await consumer._client.fetch_all_metadata()
        names = [t for t in cluster.topics() if t.startswith(f"{namespace}.")]
        assert any(t.endswith(".facts") for t in names)
        assigned = [TopicPartition(t, p) for t in names for p in cluster.partitions_for_topic(t)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        while [tp for tp in assigned if await consumer.position(tp) < ends[tp]]:
            for tp, records in (await consumer.getmany(timeout_ms=2000)).items():
                for record in records:
                    scanned += 1
                    found = numbers_in(record.key or b"")
                    for name, value in record.headers:
                        found |= numbers_in(value)
                        if name == "dlq_original_headers":
                            for _, encoded in json.loads(value):
                                found |= numbers_in(base64.b64decode(encoded))
                    if tp.topic.endswith(".facts"):
                        found |= numbers_in(record.value or b"")
                    elif tp.topic.endswith(".requests"):
                        numbers_in_partner_requests += len(numbers_in(record.value or b""))
                    if found:
                        leaks.append((tp.topic, record.offset))
    finally:
        await consumer.stop()
    assert scanned > 500
    assert numbers_in_partner_requests > 100, "the scan must find the numbers partners legitimately send"
    assert not leaks, f"Individual Numbers in keys, headers or facts: {leaks[:5]}"


def test_no_plaintext_number_in_any_store(day, servers):
    client: MongoClient = MongoClient(servers.mongodb_url)
    namespace = day["namespace"]
    databases = [d for d in client.list_database_names() if d.startswith(f"{namespace}_")]
    assert {f"{namespace}_{s}" for s in ("enrollment", "insurance", "benefits", "licensing")} <= set(databases)
    leaks, documents = [], 0
    for database in databases:
        for collection in client[database].list_collection_names():
            for document in client[database][collection].find({}):
                documents += 1
                if numbers_in_document(document):
                    leaks.append((database, collection, str(document.get("_id"))[:40]))
    assert documents > 1000
    assert not leaks, f"plaintext Individual Numbers at rest: {leaks[:5]}"
