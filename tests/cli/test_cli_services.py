"""`mynumber services up|status|down`, `mynumber person` and `mynumber docs` against the real
servers and the real service processes."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest
from mynumber_cli import processes
from mynumber_cli.main import app
from mynumber_contracts import MyNumber, ResidentAttributes, Sex, check_digit
from mynumber_contracts.enrollment import RegisterResident, ResidentRegistered
from typer.testing import CliRunner

from services import documentation
from tests.support.kafka import PartnerPublisher, TopicReader

runner = CliRunner()


async def invoke(args: list[str], env: dict[str, str]):
    return await asyncio.to_thread(runner.invoke, app, args, env=env)


@pytest.fixture
async def services_env(servers, namespace):
    env = {"KAFKA_BOOTSTRAP_SERVERS": servers.kafka_bootstrap, "MONGODB_URL": servers.mongodb_url,
           "MYNUMBER_TOPIC_NAMESPACE": namespace, "MYNUMBER_LOG_LEVEL": "WARNING", "COLUMNS": "200"}
    yield env
    await invoke(["services", "down"], env)


async def test_services_up_status_person_and_down(services_env, servers, namespace):
    result = await invoke(["services", "up"], services_env)
    assert result.exit_code == 0, result.output
    for process in processes.available():
        assert process.name in result.output
    assert result.output.count("yes") >= len(processes.available())

    base = "27182818284"
    number = MyNumber(base + str(check_digit(base)))
    request = RegisterResident(
        request_id="cli-person-1", municipality_code="131016", my_number=number, nationality="JP",
        attributes=ResidentAttributes(name_kanji="高橋 恵子", name_kana="タカハシ ケイコ", date_of_birth=date(1975, 7, 7),
                                      sex=Sex.female, address="東京都千代田区丸の内1-1"),
    )
    async with (
        PartnerPublisher(servers.kafka_bootstrap, namespace, source="municipality/131016") as partner,
        TopicReader(servers.kafka_bootstrap, ResidentRegistered.topic(namespace)) as facts,
    ):
        await partner.send(request, subject=number.reveal())
        await facts.wait_count(1, ResidentRegistered.event_type)

    result = await invoke(["person", number.reveal()], services_env)
    assert result.exit_code == 0, result.output
    assert "高橋 恵子" in result.output
    assert number.masked() in result.output
    assert number.reveal() not in result.output, "the lookup shows the number masked only"

    result = await invoke(["sweeps", "--as-of", "2030-01-01"], services_env)
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "cards past their expiry date" in flat and "verification codes past their periods" in flat
    assert "certificates ended" in flat and "45-day reply period" in flat
    result = await invoke(["rotate-number-keys"], services_env)
    assert result.exit_code == 0, result.output
    assert "dev-1" in result.output  # records per key id, all under the current (development) key

    result = await invoke(["services", "status"], services_env)
    assert result.exit_code == 0 and "enrollment" in result.output

    result = await invoke(["services", "down"], services_env)
    assert result.exit_code == 0
    assert "stopped enrollment" in result.output
    assert all(entry["pid"] is None for entry in processes.status())

    result = await invoke(["person", number.reveal()], services_env)
    assert result.exit_code == 1
    assert "does not answer" in " ".join(result.output.split())
    result = await invoke(["sweeps"], services_env)
    assert result.exit_code == 1 and "does not answer" in " ".join(result.output.split())


def test_person_refuses_an_invalid_number_clearly():
    result = runner.invoke(app, ["person", "123456789019"], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "check digit" in result.output and "123456789019" not in result.output


def test_services_up_says_clearly_when_kafka_is_down():
    result = runner.invoke(app, ["services", "up"], env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
                                                         "MONGODB_URL": "mongodb://127.0.0.1:1/", "COLUMNS": "200"})
    assert result.exit_code == 1
    assert "Kafka does not answer" in " ".join(result.output.split())


def test_docs_writes_the_documents_and_the_pages():
    result = runner.invoke(app, ["docs"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert (documentation.SITE / "asyncapi.html").exists()
    assert (documentation.DOCS / "asyncapi.json").exists()
    assert "wrote" in result.output
