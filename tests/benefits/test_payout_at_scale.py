"""A 10,000-recipient batch, published three times, with the service killed (SIGKILL) in the middle
of paying and restarted, against a bank that answers 500s, times out after booking and sends
every answer twice: every recipient is paid exactly once (the bank's ledger says so) and the
batch reconciles to the yen.

The service and the bank simulator run as real processes (`python -m services.benefits`,
`uvicorn services.benefits.bank_simulator:app`), configured through MYNUMBER_* variables.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from mynumber_contracts.benefits import (
    AccountChannel,
    AccountType,
    AnnouncePayoutBatch,
    PaymentSettled,
    PayoutRecipient,
    SubmitPayoutChunk,
)

from services.benefits.domain import Account
from services.benefits.settings import BenefitsSettings
from services.benefits.store import BenefitsStore
from services.kit.people import PersonReferences
from services.kit.store import connect
from tests.benefits.conftest import PAYING_AGENCY, a_number, eventually
from tests.support.kafka import PartnerPublisher, TopicReader, create_topics
from tests.support.services import answers, end_process, free_port, start_process

RECIPIENTS = 10_000
CHUNK = 1_000
WITHOUT_ACCOUNT = 25  # held
CLOSED = 10  # refused by the bank: failed
BATCH = "child-benefit-2026-06"

pytestmark = pytest.mark.slow


def amount(i: int) -> int:
    return 10_000 + (i % 7) * 5_000 + (i % 3)


@asynccontextmanager
async def process(args: list[str], env: dict[str, str], health_url: str, log: Path) -> AsyncIterator[subprocess.Popen]:
    """Start a process, wait until `health_url` answers, and SIGKILL it at the end if it still runs."""
    proc = start_process(args, env, log)  # Popen returns at once

    async def healthy() -> bool:
        return await asyncio.to_thread(answers, proc, health_url, log)

    try:
        await eventually(healthy, what=f"{args[2]} to answer", timeout=60)
        yield proc
    finally:
        end_process(proc)


async def test_ten_thousand_recipients_replayed_three_times_with_a_kill_are_each_paid_once(servers, namespace, tmp_path):
    bank_port, service_port = free_port(), free_port()
    bank_url = f"http://127.0.0.1:{bank_port}"
    service_url = f"http://127.0.0.1:{service_port}"
    env = {
        "MYNUMBER_KAFKA_BOOTSTRAP_SERVERS": servers.kafka_bootstrap, "MYNUMBER_MONGODB_URL": servers.mongodb_url,
        "MYNUMBER_TOPIC_NAMESPACE": namespace, "MYNUMBER_DATABASE": f"{namespace}_benefits",
        "MYNUMBER_HTTP_PORT": str(service_port), "MYNUMBER_BANK_BASE_URL": bank_url,
        "MYNUMBER_BANK_TIMEOUT_SECONDS": "1", "MYNUMBER_BANK_BACKOFF_SECONDS": "0.05",
        "MYNUMBER_BANK_TRANSFER_BATCH_SIZE": "500", "MYNUMBER_DISPATCHER_CLAIM_SIZE": "1000",
        "MYNUMBER_DISPATCHER_LEASE_SECONDS": "5", "MYNUMBER_DISPATCHER_IDLE_SECONDS": "0.2",
        "MYNUMBER_BREAKER_RESET_SECONDS": "0.5", "MYNUMBER_LOG_LEVEL": "WARNING",
    }
    settings = BenefitsSettings(**{k.removeprefix("MYNUMBER_").lower(): v for k, v in env.items()})
    people = PersonReferences(settings.person_ref_key.get_secret_value())
    numbers = [a_number(1_000_000 + i) for i in range(RECIPIENTS)]
    refs = [people.for_number(n) for n in numbers]

    # Registrations are bulk-loaded: registering 10,000 one by one is covered in small, elsewhere.
    client, database = connect(servers.mongodb_url, settings.database_name("benefits"), app_name="test")
    store = BenefitsStore(database)
    await store.ensure_indexes()
    now = datetime.now(UTC)
    await store.import_accounts([
        Account(person_ref=ref, bank_code="0005", branch_code="123", account_type=AccountType.ordinary,
                account_number=f"{i:07d}", holder_name_kana="テスト タロウ", channel=AccountChannel.portal,
                source_id=f"import-{i}")
        for i, ref in enumerate(refs) if i >= WITHOUT_ACCOUNT
    ], now=now)
    closed = [f"0005-123-{i:07d}" for i in range(WITHOUT_ACCOUNT, WITHOUT_ACCOUNT + CLOSED)]
    await create_topics(servers.kafka_bootstrap, [AnnouncePayoutBatch.topic(namespace)])

    header = AnnouncePayoutBatch(batch_id=BATCH, programme="child_benefit", period="2026-06",
                                 recipient_count=RECIPIENTS, total_yen=sum(amount(i) for i in range(RECIPIENTS)),
                                 chunk_count=RECIPIENTS // CHUNK)
    chunks = [SubmitPayoutChunk(batch_id=BATCH, chunk_index=c, recipients=[
        PayoutRecipient(my_number=numbers[i], amount_yen=amount(i)) for i in range(c * CHUNK, (c + 1) * CHUNK)
    ]) for c in range(RECIPIENTS // CHUNK)]

    async def publish_batch(partner: PartnerPublisher) -> None:
        for request in (header, *chunks):  # a replay: same content, new event ids
            await partner.send(request, subject=BATCH, source=PAYING_AGENCY)

    bank_log, service_log = tmp_path / "bank.log", tmp_path / "benefits.log"
    service_args = [sys.executable, "-m", "services.benefits"]
    async with (
        process([sys.executable, "-m", "uvicorn", "services.benefits.bank_simulator:app", "--host", "127.0.0.1",
                 "--port", str(bank_port), "--log-level", "warning"], {}, f"{bank_url}/v1/statement", bank_log),
        httpx.AsyncClient(base_url=bank_url, timeout=30) as bank,
        PartnerPublisher(servers.kafka_bootstrap, namespace) as partner,
    ):
        faults = {"error_500_every": 5, "error_500_after_booking_every": 7, "timeout_every": 11,
                  "duplicate_answers_every": 3, "timeout_seconds": 3}
        assert (await bank.put("/admin/faults", json=faults)).status_code == 200
        assert (await bank.put("/admin/closed-accounts", json={"accounts": closed})).status_code == 200

        async def credited() -> int:
            return (await bank.get("/v1/statement/summary", params={"reference": BATCH})).json()["count"]

        async with process(service_args, env, f"{service_url}/health", service_log) as first:
            await publish_batch(partner)
            await eventually(lambda: _at_least(credited, 1), what="the first credits", timeout=240)
            first.kill()  # SIGKILL in the middle of paying
            first.wait()
        credited_at_kill = await credited()
        assert 0 < credited_at_kill < RECIPIENTS - WITHOUT_ACCOUNT - CLOSED, "the kill came in the middle"

        await publish_batch(partner)  # replayed while the service is down
        async with (
            process(service_args, env, f"{service_url}/health", service_log),
            httpx.AsyncClient(base_url=service_url, timeout=60,
                              headers={"Authorization": "Bearer development-only-operator-token"}) as benefits,
        ):
            await publish_batch(partner)  # and again once it is back

            async def settled_report() -> dict | None:
                response = await benefits.get(f"/batches/{BATCH}/reconciliation")
                if response.status_code != 200:
                    return None
                report = response.json()
                return report if report["pending"]["count"] == 0 else None

            report = await eventually(settled_report, what="every payment to be settled, held or failed", timeout=420)
            published = await benefits.post(f"/batches/{BATCH}/reconcile")
            assert published.status_code == 200, published.text

        ledger = (await bank.get("/admin/ledger")).json()

    paid = [i for i in range(RECIPIENTS) if i >= WITHOUT_ACCOUNT + CLOSED]
    expected_paid_yen = sum(amount(i) for i in paid)
    # The bank's ledger: every payable recipient credited exactly once, the right amount, nobody else.
    assert len(ledger["entries"]) == len(paid)
    assert set(ledger["credits_per_payment"].values()) == {1}
    assert ledger["total_yen"] == expected_paid_yen
    credited_amounts = {e["end_to_end_id"].rsplit(":", 1)[1]: e["amount_yen"] for e in ledger["entries"]}
    assert credited_amounts == {refs[i]: amount(i) for i in paid}
    assert all(ledger["faults_injected"].get(kind, 0) > 0 for kind in
               ("error_500", "error_500_after_booking", "timeout", "duplicate_answers")), ledger["faults_injected"]

    # Reconciliation to the yen: paid + held + failed + pending = control totals; paid = the bank statement.
    assert report["control"] == {"count": RECIPIENTS, "total_yen": header.total_yen}
    assert report["paid"] == {"count": len(paid), "total_yen": expected_paid_yen}
    assert report["held"] == {"count": WITHOUT_ACCOUNT, "total_yen": sum(amount(i) for i in range(WITHOUT_ACCOUNT))}
    assert report["failed"] == {"count": CLOSED,
                                "total_yen": sum(amount(i) for i in range(WITHOUT_ACCOUNT, WITHOUT_ACCOUNT + CLOSED))}
    assert report["balanced"] and report["matches_bank_statement"]
    assert report["bank_statement"] == report["paid"]
    assert await database["payments"].count_documents({}) == RECIPIENTS

    # Settlement facts: a re-published fact keeps its id, so consumers see each payment settle once.
    async with TopicReader(servers.kafka_bootstrap, PaymentSettled.topic(namespace)) as facts:
        await facts.wait_count(len(paid), PaymentSettled.event_type, timeout=120)
    settled = facts.of_type(PaymentSettled.event_type)
    by_payment: dict[str, set[str]] = {}
    for record in settled:
        by_payment.setdefault(record.json()["payment_id"], set()).add(record.id)
    assert len(by_payment) == len(paid) and all(len(ids) == 1 for ids in by_payment.values())
    assert all(n.reveal().encode() not in r.record.value for r in settled[:200] for n in numbers[:50])
    await client.close()


async def _at_least(read, n: int) -> bool:
    return await read() >= n
