"""The national-scale payout: one child-benefit batch (1,000,000 recipients in the full run) from the
paying agency's signed header and chunks, through the bank simulator's bulk transfers and
statement, to the reconciliation report, checked to the yen against the control totals and the
bank's statement. The benefits service and the bank simulator run as real processes.

Receiving accounts are bulk-imported before the clock starts (a migration, as the service's own
scale test does): registering a million accounts one event at a time is a different benchmark.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from mynumber_contracts import topics

from . import common, flows
from .common import OPERATOR_TOKEN, BenchPartners, Context, FactWatcher, ServiceProcess
from .config import TARGETS
from .population import PEOPLE, a_number

PAYING_AGENCY = "paying-agency/child-benefit"
SETTLED = "jp.mynumber.benefits.payment_settled.v1"
HELD = "jp.mynumber.benefits.payment_held.v1"
FAILED = "jp.mynumber.benefits.payment_failed.v1"
ACCEPTED = "jp.mynumber.benefits.payout_batch_accepted.v1"
REJECTED = "jp.mynumber.benefits.payout_batch_rejected.v1"
RECONCILED = "jp.mynumber.benefits.payout_batch_reconciled.v1"


def amount(i: int) -> int:
    """5,000 to 10,000 yen: a million recipients stay within a batch's 10-billion-yen control total."""
    return 5_000 + (i % 6) * 1_000


async def run(ctx: Context) -> dict[str, Any]:
    return await run_batch(ctx, ctx.scale.payout_recipients, "payout", ctx.scale.payout_deadline_seconds)


async def run_batch(ctx: Context, n: int, label: str, deadline_seconds: float) -> dict[str, Any]:
    missing = common.service_available("benefits")
    if missing:
        return common.not_available(missing)
    from mynumber_contracts.benefits import MAX_CHUNK_RECIPIENTS, AccountChannel, AccountType

    from services.benefits.domain import Account
    from services.benefits.store import BenefitsStore
    from services.kit.store import connect

    chunk_size = min(MAX_CHUNK_RECIPIENTS, 5_000)
    ns = ctx.namespace(label)
    batch_id = f"child-benefit-bench-{ctx.run_id}"
    bank = ServiceProcess(ctx, "bank-simulator", ns, label=label, health_path="/v1/statement")
    bank.module = ("uvicorn", "services.benefits.bank_simulator:app", "--host", "127.0.0.1", "--port", str(bank.port),
                   "--log-level", "warning")
    service = ServiceProcess(ctx, "benefits", ns, label=label,
                             extra_env={"MYNUMBER_BANK_BASE_URL": bank.url})
    client = None
    phases: dict[str, float] = {}
    try:
        await common.create_topics(ctx, flows.service_topics("benefits", ns, reads_enrollment_facts=True))
        partners = BenchPartners(ctx, ns)
        await partners.register([PAYING_AGENCY])

        from mynumber_contracts.benefits import AnnouncePayoutBatch, PayoutRecipient, SubmitPayoutChunk

        total_yen = sum(amount(i) for i in range(n))
        chunk_count = (n + chunk_size - 1) // chunk_size
        header = AnnouncePayoutBatch(batch_id=batch_id, programme="child_benefit", period="2026-06",
                                     recipient_count=n, total_yen=total_yen, chunk_count=chunk_count)
        topic = AnnouncePayoutBatch.topic(ns)

        began = time.monotonic()
        numbers = [a_number(71_000_000_000 + i) for i in range(n)]
        refs = [PEOPLE.for_number(number) for number in numbers]
        phases["numbers_s"] = time.monotonic() - began

        def prepare() -> list[tuple[str, Any]]:
            """The paying agency's signed header and chunks (CPU in this process, no I/O)."""
            started = time.monotonic()
            requests = [(topic, partners.request(header, source=PAYING_AGENCY, subject=batch_id))]
            for c in range(chunk_count):
                chunk = SubmitPayoutChunk(batch_id=batch_id, chunk_index=c, recipients=[
                    PayoutRecipient(my_number=numbers[i], amount_yen=amount(i))
                    for i in range(c * chunk_size, min(n, (c + 1) * chunk_size))])
                # Each chunk keyed on its own (docs/decisions.md, "Batch protocol").
                requests.append((topic, partners.request(chunk, source=PAYING_AGENCY, subject=f"{batch_id}/{c}")))
            phases["prepare_s"] = time.monotonic() - started
            return requests

        # Signing the chunks (this process's CPU) goes on beside the account import (mostly the
        # database's): both are setup, before the clock starts. (Making the numbers and references
        # in a worker process beside them too was tried: with three streams on two cores the
        # import took 145 s instead of 124 s.)
        prepared = asyncio.create_task(asyncio.to_thread(prepare))
        started = time.monotonic()
        client, database = connect(ctx.mongodb, f"{ns}_benefits", app_name="bench")
        store = BenefitsStore(database)
        await store.ensure_indexes()
        now = datetime.now(UTC)
        for start in range(0, n, 20_000):
            await store.import_accounts([
                Account(person_ref=refs[i], bank_code="0005", branch_code="123", account_type=AccountType.ordinary,
                        account_number=f"{i % 10_000_000:07d}", holder_name_kana="テスト タロウ", channel=AccountChannel.portal,
                        source_id=f"import-{i}")
                for i in range(start, min(n, start + 20_000))], now=now)
        phases["import_accounts_s"] = time.monotonic() - started
        requests = await prepared
        phases["setup_s"] = time.monotonic() - began

        # After the import, not beside it: tried once, the 300,000-account import took 63 s instead
        # of 36 s (an idle service costs the database nothing measurable, so the cause is unknown).
        began = time.monotonic()
        await asyncio.gather(bank.start(), service.start())
        phases["start_services_s"] = time.monotonic() - began
        own = topics.for_service("benefits", ns)
        report: dict[str, Any] | None = None
        async with (FactWatcher(ctx, [own.facts, own.dead_letter, topics.quarantine_topic(ns)]) as watcher,
                    httpx.AsyncClient(base_url=service.url, timeout=600,
                                      headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}) as http):
            profile = service.start_profiler(label) if ctx.profile else None
            cpu = common.CpuMeter(ctx, service.process.pid if service.process else None)
            cpu.pids["bank"] = bank.process.pid if bank.process else None
            cpu.start()
            t0 = time.monotonic()
            phases["publish_s"] = await common.publish_all(ctx, requests)
            deadline = t0 + deadline_seconds
            outcome = "deadline"
            while time.monotonic() < deadline:
                if watcher.by_type.get(REJECTED):
                    outcome = "rejected"
                    break
                if watcher.count([SETTLED, HELD, FAILED]) >= n:
                    outcome = "all_payments_decided"
                    break
                await asyncio.sleep(0.2)
            decided_at = time.monotonic()
            accepted_at = next((s.at for s in watcher.seen if s.type == ACCEPTED), None)
            if outcome == "all_payments_decided":
                while time.monotonic() < deadline + 120:  # the report must show nothing pending
                    answer = await http.get(f"/batches/{batch_id}/reconciliation")
                    if answer.status_code == 200 and answer.json()["pending"]["count"] == 0:
                        break
                    await asyncio.sleep(1.0)
                answer = await http.post(f"/batches/{batch_id}/reconcile")
                answer.raise_for_status()
                report = answer.json()
                await watcher.wait_count([RECONCILED], 1, deadline_seconds=60)
                outcome = "reconciled"
            finished = time.monotonic()
            phases["decided_to_reconciled_s"] = finished - decided_at
            cpu_used = cpu.stop()
            service.stop_profiler()
            # Where the batch got to: what is left queued, and the per-call and per-page records.
            # (Not the payments and settlements, one per recipient: FerretDB v1 counts by reading
            # every document, about 30 s per million.)
            began = time.monotonic()
            progress = {name: await database[name].count_documents({}) for name in
                        ("payout_chunks", "chunk_queue", "chunk_lines", "payment_queue", "held_payments",
                         "failed_payments", "transfers", "statement_pages")
                        if name in await database.list_collection_names()}
            phases["count_records_s"] = time.monotonic() - began
            settled_times = [s.at for s in watcher.seen if s.type == SETTLED]
            counts = {"settled": watcher.by_type.get(SETTLED, 0), "held": watcher.by_type.get(HELD, 0),
                      "failed": watcher.by_type.get(FAILED, 0)}
        async with httpx.AsyncClient(base_url=bank.url, timeout=120) as bank_http:
            statement = (await bank_http.get("/v1/statement/summary", params={"reference": batch_id})).json()

        seconds = finished - t0
        reconciled = outcome == "reconciled" and report is not None
        exact = bool(reconciled and report and report["balanced"] and report["matches_bank_statement"]
                     and report["control"] == {"count": n, "total_yen": total_yen}
                     and report["paid"] == {"count": n, "total_yen": total_yen}
                     and statement.get("count") == n and statement.get("total_yen") == total_yen)
        rate = counts["settled"] / max(1e-9, (max(settled_times) - t0)) if settled_times else None
        return {
            "status": "ok" if reconciled else "incomplete",
            "outcome": outcome,
            "metrics": {
                "recipients": n, "chunks": chunk_count, "chunk_size": chunk_size, "total_yen": total_yen,
                "seconds": round(seconds, 2) if reconciled else None,
                "elapsed_s": round(seconds, 2),
                "batch_accepted_after_s": round(accepted_at - t0, 2) if accepted_at else None,
                "all_decided_after_s": round(decided_at - t0, 2) if outcome != "deadline" else None,
                **counts,
                "settled_per_s": round(rate, 1) if rate else None,
                "projected_seconds_for_1m": round(1_000_000 / rate, 0) if rate else None,
                "reconciled_exactly": exact,
                "report": {k: report[k] for k in ("control", "paid", "held", "failed", "pending", "bank_statement",
                                                  "balanced", "matches_bank_statement")} if report else None,
                "bank_statement": statement,
                **{k: round(v, 2) for k, v in phases.items()},
                "peak_rss_mb_by_service": {"benefits": service.peak_rss_mb(), "bank-simulator": bank.peak_rss_mb()},
                "cpu": cpu_used,
                "documents_at_the_end": progress,
            },
            "steady": _steady(settled_times, t0),
            "series": {"settled_per_s": common.timeline(settled_times, t0, bucket=5.0 if n > 100_000 else 1.0),
                       "rss_mb": service.rss_series(t0)},
            "profile": common.summarise_profile(profile) if ctx.profile else None,
            "targets": {
                "seconds": common.target(seconds if reconciled else None, TARGETS["payout_seconds_max"]),
                "reconciled_to_the_yen": {"target": True, "measured": exact, "met": exact},
                "benefits_peak_rss_mb": common.target(service.peak_rss_mb(), TARGETS["rss_mb_max"]),
            },
        }
    finally:
        await service.stop()
        await bank.stop()
        if client is not None:
            await client.close()
        await common.delete_namespace(ctx, ns)


def _steady(times: list[float], t0: float) -> dict[str, Any]:
    return flows.throughput(times, t0, len(times), 1)
