"""The `mynumber` CLI against the real servers: publishing, dead letters, the partner
registry, and clear errors when a server is down or an input file is malformed."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord
from mynumber_cli.main import app
from mynumber_contracts import MyNumber, ResidentAttributes, Sex, check_digit, parse_headers, topics
from mynumber_contracts.enrollment import RegisterResident
from mynumber_contracts.partners import PartnerType
from mynumber_contracts.signing import public_key_from_text, verify_record
from pymongo import MongoClient
from typer.testing import CliRunner

from services.kit.messaging import dead_letter_record
from tests.support.kafka import PartnerPublisher, TopicReader, create_topics

runner = CliRunner()


async def invoke(args: list[str], env: dict[str, str]):
    """The CLI runs its own event loop, so an async test calls it from a thread."""
    return await asyncio.to_thread(runner.invoke, app, args, env=env)


CLOSED_PORT = "127.0.0.1:1"


def env_for(servers, namespace) -> dict[str, str]:
    return {"KAFKA_BOOTSTRAP_SERVERS": servers.kafka_bootstrap, "MONGODB_URL": servers.mongodb_url,
            "MYNUMBER_PARTNER_REGISTRY_DATABASE": f"{namespace}_partners", "COLUMNS": "200"}


def a_request(seed: int) -> RegisterResident:
    base = f"{seed:011d}"
    return RegisterResident(
        request_id=f"r{seed}", municipality_code="131016", my_number=MyNumber(base + str(check_digit(base))),
        attributes=ResidentAttributes(name_kanji="田中 花子", name_kana="タナカ ハナコ", date_of_birth=date(1970, 1, 1),
                                      sex=Sex.female, address="東京都港区1-1"),
        nationality="JP",
    )


@pytest.fixture
def seed_file(tmp_path) -> Path:
    path = tmp_path / "partners.json"
    path.write_text(json.dumps([
        {"partner_id": "municipality/131016", "type": "municipality", "name": "Chiyoda City"},
        {"partner_id": "post-office/tokyo-chuo", "type": "post-office", "delegating_municipality": "131016"},
    ]))
    return path


def test_partners_seed_list_and_rotate(servers, namespace, seed_file, tmp_path):
    env = env_for(servers, namespace)
    keys = tmp_path / "keys"
    result = runner.invoke(app, ["partners", "seed", str(seed_file), "--keys-dir", str(keys)], env=env)
    assert result.exit_code == 0, result.output
    assert "registered 2 partners" in result.output
    result = runner.invoke(app, ["partners", "list"], env=env)
    assert result.exit_code == 0, result.output
    assert "municipality/131016" in result.output and "post-office/tokyo-chuo" in result.output

    result = runner.invoke(app, ["partners", "rotate-key", "municipality/131016", "--new-key-id", "municipality/131016#2",
                                 "--retire", "municipality/131016#1", "--keys-dir", str(keys)], env=env)
    assert result.exit_code == 0, result.output
    document = MongoClient(servers.mongodb_url)[f"{namespace}_partners"]["partners"].find_one({"_id": "municipality/131016"})
    assert {k["key_id"]: k["status"] for k in document["keys"]} == {
        "municipality/131016#1": "retired", "municipality/131016#2": "active"}
    assert document["type"] == PartnerType.municipality
    assert "jp.mynumber.enrollment.register_resident.v1" in document["allowed_event_types"] or document["allowed_event_types"] == []


async def test_publish_validates_signs_and_publishes(servers, namespace, seed_file, tmp_path):
    env = env_for(servers, namespace)
    keys = tmp_path / "keys"
    assert (await invoke(["partners", "seed", str(seed_file), "--keys-dir", str(keys)], env)).exit_code == 0
    events = tmp_path / "events.ndjson"
    events.write_text("\n".join(json.dumps({"type": RegisterResident.event_type, "subject": f"s{i}",
                                            "data": json.loads(a_request(i).model_dump_json())}) for i in (1, 2)))
    await create_topics(servers.kafka_bootstrap, [RegisterResident.topic(namespace)])
    async with TopicReader(servers.kafka_bootstrap, RegisterResident.topic(namespace)) as requests:
        result = await invoke(["publish", str(events), "--as", "municipality/131016", "--namespace", namespace,
                                     "--key", str(keys / "municipality__131016.pem"), "--key-id", "municipality/131016#1"],
                               env)
        assert result.exit_code == 0, result.output
        assert "published 2 signed events" in result.output
        await requests.wait_count(2)
    public = public_key_from_text(
        MongoClient(servers.mongodb_url)[f"{namespace}_partners"]["partners"].find_one({"_id": "municipality/131016"})["keys"][0]["public_key"])
    for received in requests.records:
        from mynumber_contracts import KafkaRecord

        record = KafkaRecord(received.record.key, received.record.value, list(received.record.headers))
        assert verify_record(record, public)
        assert parse_headers(record.headers).source == "municipality/131016"
        assert received.record.key != b"s1" and b"00000000001" not in received.record.key


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", ":1: not JSON"),
        (json.dumps({"type": "jp.mynumber.enrollment.register_resident.v1", "subject": "x"}), ":1: field 'data' is required"),
        (json.dumps({"type": "jp.mynumber.enrollment.nothing.v1", "subject": "x", "data": {}}), ":1: field 'type'"),
        ("\n" + json.dumps({"type": RegisterResident.event_type, "subject": "x",
                            "data": {**json.loads(a_request(3).model_dump_json()), "municipality_code": "12"}}),
         ":2: field 'data.municipality_code'"),
    ],
)
def test_publish_names_the_line_and_field_of_a_malformed_file(tmp_path, content, message):
    events = tmp_path / "bad.ndjson"
    events.write_text(content)
    key = tmp_path / "k.pem"
    key.write_text("unused")
    result = runner.invoke(app, ["publish", str(events), "--as", "municipality/131016", "--key", str(key)],
                           env={"KAFKA_BOOTSTRAP_SERVERS": CLOSED_PORT, "MONGODB_URL": "mongodb://127.0.0.1:1/"})
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())


def test_publish_says_clearly_when_kafka_is_down(tmp_path):
    from mynumber_contracts.signing import generate_private_key, private_key_to_pem

    events = tmp_path / "events.ndjson"
    events.write_text(json.dumps({"type": RegisterResident.event_type, "subject": "x",
                                  "data": json.loads(a_request(4).model_dump_json())}))
    key = tmp_path / "k.pem"
    key.write_bytes(private_key_to_pem(generate_private_key()))
    result = runner.invoke(app, ["publish", str(events), "--as", "municipality/131016", "--key", str(key)],
                           env={"KAFKA_BOOTSTRAP_SERVERS": CLOSED_PORT, "MONGODB_URL": "mongodb://127.0.0.1:1/"})
    assert result.exit_code == 1
    assert "Kafka does not answer" in result.output


def test_a_publish_that_cannot_connect_leaves_no_producer_open(tmp_path):
    """The producer that never started is stopped too: otherwise it is reported (and its client
    left) unclosed when it is collected."""
    import gc
    import warnings

    from mynumber_contracts.signing import generate_private_key, private_key_to_pem

    events = tmp_path / "events.ndjson"
    events.write_text(json.dumps({"type": RegisterResident.event_type, "subject": "x",
                                  "data": json.loads(a_request(5).model_dump_json())}))
    key = tmp_path / "k.pem"
    key.write_bytes(private_key_to_pem(generate_private_key()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = runner.invoke(app, ["publish", str(events), "--as", "municipality/131016", "--key", str(key)],
                               env={"KAFKA_BOOTSTRAP_SERVERS": CLOSED_PORT, "MONGODB_URL": "mongodb://127.0.0.1:1/"})
        exit_code = result.exit_code
        del result  # its traceback holds the frame that held the producer
        gc.collect()
    assert exit_code == 1
    assert [str(w.message) for w in caught if "Unclosed AIOKafkaProducer" in str(w.message)] == []


async def test_a_replay_that_cannot_connect_leaves_no_producer_open():
    import gc
    import warnings

    from aiokafka.errors import KafkaConnectionError
    from mynumber_cli.dead_letters import DeadLetter, replay

    letter = DeadLetter(number=1, partition=0, offset=0, key=None, value=b"{}", reason="not_json", detail="",
                        source_topic="t", source_partition="0", source_offset="0", original_headers=[])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(KafkaConnectionError):
            await replay(letter, {"bootstrap_servers": CLOSED_PORT}, "mongodb://127.0.0.1:1/", operator="operator/test")
        gc.collect()
    assert [str(w.message) for w in caught if "Unclosed AIOKafkaProducer" in str(w.message)] == []


def test_partners_list_says_clearly_when_the_database_is_down():
    result = runner.invoke(app, ["partners", "list"], env={"KAFKA_BOOTSTRAP_SERVERS": CLOSED_PORT,
                                                          "MONGODB_URL": "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=500"})
    assert result.exit_code == 1
    assert "database does not answer" in result.output


async def test_dlq_list_show_and_replay_with_a_record_of_the_replay(servers, namespace):
    env = env_for(servers, namespace)
    service_topics = topics.for_service("enrollment", namespace)
    await create_topics(servers.kafka_bootstrap, [service_topics.requests, service_topics.dead_letter])
    original_headers = [("ce_type", RegisterResident.event_type.encode()), ("ce_id", b"e-1"), ("odd", b"\xff\x00")]
    failed = ConsumerRecord(topic=service_topics.requests, partition=2, offset=41, timestamp=0, timestamp_type=0,
                            key=b"bucket-0001", value=b"{broken", checksum=None, serialized_key_size=0,
                            serialized_value_size=0, headers=original_headers)
    from datetime import UTC, datetime

    letter = dead_letter_record(failed, service="enrollment", reason="not_json", detail="the message value is not JSON",
                                now=datetime.now(UTC))
    async with PartnerPublisher(servers.kafka_bootstrap, namespace, signed=False) as producer:
        await producer.send_raw(service_topics.dead_letter, letter.value, key=letter.key, headers=letter.headers)

    result = await invoke(["dlq", "list", "enrollment", "--namespace", namespace], env)
    assert result.exit_code == 0, result.output
    assert "not_json" in result.output and "1 dead-lettered events" in result.output
    result = await invoke(["dlq", "show", "enrollment", "1", "--namespace", namespace], env)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["reason"] == "not_json" and shown["source"]["offset"] == "41"

    async with TopicReader(servers.kafka_bootstrap, service_topics.requests) as requests:
        result = await invoke(["dlq", "replay", "enrollment", "1", "--namespace", namespace, "--operator", "ops-1"],
                               env)
        assert result.exit_code == 0, result.output
        await requests.wait_count(1)
    replayed = requests.records[0].record
    assert replayed.value == b"{broken" and replayed.key == b"bucket-0001"
    assert list(replayed.headers) == original_headers, "the original headers, byte for byte"
    replays = list(MongoClient(servers.mongodb_url)["mynumber_operations"]["dlq_replays"].find({"source_topic": service_topics.requests}))
    assert len(replays) == 1 and replays[0]["operator"] == "ops-1" and replays[0]["reason"] == "not_json"

    result = await invoke(["dlq", "show", "enrollment", "7", "--namespace", namespace], env)
    assert result.exit_code == 1 and "no dead letter #7" in result.output


def test_stack_status_lists_both_servers():
    result = runner.invoke(app, ["stack", "status"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Kafka" in result.output and "FerretDB" in result.output


