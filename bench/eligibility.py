"""The online eligibility check over HTTP at a fixed request rate (500 req/s in the full run),
driven by an external load generator: `wrk` with bench/wrk_fixed_rate.lua (an open-loop schedule)
against a real `python -m services.insurance` process whose cards were linked through its topics."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from typing import Any

import httpx
from mynumber_contracts import topics

from . import common, flows
from .common import BENCH_TOKEN, BenchPartners, Context, FactWatcher, ServiceProcess
from .config import TARGETS
from .population import people

PORTAL = "portal/myna"
LUA = common.REPO / "bench" / "wrk_fixed_rate.lua"


def card_registrations(partners: BenchPartners, ns: str, group: list[Any]) -> list[tuple[str, Any]]:
    from mynumber_contracts.insurance import RegisterCardForInsurance

    topic = topics.for_service("insurance", ns).requests
    return [(topic, partners.request(RegisterCardForInsurance(request_id=f"reg-card-{p.index}", certificate_id=p.certificate_id),
                                     source=PORTAL, subject=p.digits)) for p in group]


async def run(ctx: Context) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        return common.not_available("wrk is not installed (Debian package `wrk`)")
    missing = common.service_available("insurance")
    if missing:
        return common.not_available(missing)
    ns = ctx.namespace("eligibility")
    n = ctx.scale.eligibility_cards
    process = ServiceProcess(ctx, "insurance", ns, label="eligibility")
    try:
        await common.create_topics(ctx, flows.service_topics("insurance", ns, reads_enrollment_facts=True))
        partners = BenchPartners(ctx, ns)
        await partners.register([flows.INSURER, PORTAL])
        group = people(n)
        setup = flows.enrollment_residents_and_cards(ns, group)
        members = flows.insurance_requests(partners, ns, group)
        cards = card_registrations(partners, ns, group)
        await process.start()
        own = topics.for_service("insurance", ns)
        began = time.monotonic()
        async with FactWatcher(ctx, [own.facts]) as watcher:
            await common.publish_all(ctx, setup)
            if not await common.wait_for_zero_lag(ctx, f"{ns}-insurance", [topics.for_service("enrollment", ns).facts],
                                                  deadline_seconds=ctx.scale.drain_deadline_seconds):
                raise RuntimeError("insurance did not consume the residents and cards in time")
            await common.publish_all(ctx, members)
            await watcher.wait_count(["jp.mynumber.insurance.member_linked.v1", "jp.mynumber.insurance.member_link_held.v1"], n,
                                     deadline_seconds=ctx.scale.drain_deadline_seconds)
            await common.publish_all(ctx, cards)
            await watcher.wait_count(["jp.mynumber.insurance.card_registered_for_insurance.v1",
                                      "jp.mynumber.insurance.request_rejected.v1"], n,
                                     deadline_seconds=ctx.scale.drain_deadline_seconds)
            linked = watcher.by_type.get("jp.mynumber.insurance.member_linked.v1", 0)
            registered = watcher.by_type.get("jp.mynumber.insurance.card_registered_for_insurance.v1", 0)
        setup_seconds = time.monotonic() - began

        paths = [f"/eligibility/{p.certificate_id}" for p in group]
        async with httpx.AsyncClient(base_url=process.url, headers={"Authorization": f"Bearer {BENCH_TOKEN}"}) as http:
            sample = await http.get(paths[0])
            sample_answer = sample.json() if sample.status_code == 200 else {"status_code": sample.status_code,
                                                                               "detail": sample.text[:300]}
            for path in paths[:50]:  # warm the connection pool and the caches the way a day of traffic would
                await http.get(path)
        paths_file = ctx.logs / f"eligibility-paths-{ctx.run_id}.txt"
        paths_file.write_text("\n".join(paths) + "\n", encoding="utf-8")
        rate, seconds = ctx.scale.eligibility_rate, ctx.scale.eligibility_seconds
        profile = process.start_profiler("eligibility") if ctx.profile else None
        command = [wrk, "-t1", "-c32", f"-d{seconds}s", "--timeout", "5s", "-s", str(LUA), process.url, "--",
                   str(rate), str(paths_file), BENCH_TOKEN]
        cpu = common.CpuMeter(ctx, process.process.pid if process.process else None)
        cpu.start()
        child = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await child.communicate()
        cpu_used = cpu.stop()
        process.stop_profiler()
        text = out.decode(errors="replace")
        line = next((x for x in text.splitlines() if x.startswith("BENCH-RESULT ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no result: {text[-500:]} {err.decode(errors='replace')[-500:]}")
        wrk_result = json.loads(line.removeprefix("BENCH-RESULT "))
        latency = wrk_result["latency_us"]
        achieved = wrk_result["requests"] / (wrk_result["duration_us"] / 1e6)
        errors = sum(wrk_result["errors"].values())
        p99 = latency["p99"] / 1000
        return {
            "status": "ok" if errors == 0 else "ok_with_errors",
            "service": "insurance",
            "metrics": {
                "route": "GET /eligibility/{certificate_id}", "cards": n, "linked": linked, "registered_for_insurance": registered,
                "sample_answer_eligible": sample_answer.get("eligible"), "sample_answer": sample_answer,
                "offered_rate_per_s": rate, "achieved_rate_per_s": round(achieved, 1), "seconds": seconds,
                "requests": wrk_result["requests"], "errors": wrk_result["errors"],
                "p50_ms": latency["p50"] / 1000, "p75_ms": latency["p75"] / 1000, "p90_ms": latency["p90"] / 1000,
                "p99_ms": p99, "p99_9_ms": latency["p99_9"] / 1000, "max_ms": latency["max"] / 1000,
                "mean_ms": round(latency["mean"] / 1000, 3),
                "load_generator": "wrk 4.1 (Debian) + bench/wrk_fixed_rate.lua, 1 thread, 32 connections",
                "setup_s": round(setup_seconds, 2), "peak_rss_mb": process.peak_rss_mb(),
                "cpu": cpu_used,
                "cpu_ms_per_request": {k: round(v * 1000 / max(1, wrk_result["requests"]), 3)
                                       for k, v in cpu_used["cpu_s"].items()},
            },
            "profile": common.summarise_profile(profile) if ctx.profile else None,
            "targets": {
                "p99_ms": common.target(p99, TARGETS["eligibility_p99_ms_max"]),
                "achieved_rate": common.target(achieved, rate * 0.95, at_most=False),
                "peak_rss_mb": common.target(process.peak_rss_mb(), TARGETS["rss_mb_max"]),
            },
        }
    finally:
        await process.stop()
        await common.delete_namespace(ctx, ns)
