"""End-to-end latency at a fixed offered load: pre-signed partner requests are published on a
fixed schedule (1,000 events/s in the full run) and each one's fact is matched by its causation
id. Latency is measured from the event's SCHEDULED send time to the moment this process reads the
fact, so a publisher or a service that falls behind cannot hide it (no coordinated omission)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from mynumber_contracts import topics

from . import common, flows
from .common import BenchPartners, Context, FactWatcher, ServiceProcess
from .config import TARGETS
from .population import people

# One request -> one fact per service: the first hop of each main flow.
HOPS = {
    "enrollment": ("RegisterResident -> ResidentRegistered", "jp.mynumber.enrollment.resident_registered.v1"),
    "insurance": ("EnrollMember -> MemberLinked", "jp.mynumber.insurance.member_linked.v1"),
    "licensing": ("RecordLicence -> LicenceRecorded", "jp.mynumber.licensing.licence_recorded.v1"),
}


def _requests(service: str, partners: BenchPartners, ns: str, group: list[Any]) -> list[tuple[str, Any]]:
    if service == "enrollment":
        return flows.enrollment_requests(partners, ns, group)[: len(group)]  # the registrations only
    spec = flows.spec_for(service)
    assert spec is not None
    return spec.requests(partners, ns, group)


async def run(ctx: Context) -> dict[str, Any]:
    per_service: dict[str, Any] = {}
    baseline: dict[str, Any] = {}
    for service in HOPS:
        missing = common.service_available(service)
        if missing:
            per_service[service] = baseline[service] = common.not_available(missing)
            continue
        runs = [(ctx.scale.latency_rate, ctx.scale.latency_seconds, per_service)] if service in ctx.scale.latency_services else []
        if ctx.scale.latency_baseline_rate > 0:
            runs.append((ctx.scale.latency_baseline_rate, 10.0, baseline))
        for rate, seconds, into in runs:
            try:
                into[service] = await _one(ctx, service, rate, seconds)
            except Exception as exc:
                into[service] = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}", "metrics": {}}
    measured = {s: r for s, r in per_service.items() if r.get("status") in ("ok", "incomplete")}
    for service in HOPS:
        per_service.setdefault(service, {"status": "not_run", "reason": f"not driven at {ctx.scale.latency_rate:g}/s in "
                                         f"{ctx.scale.mode} mode (one person and setup per event)", "metrics": {}})
    targets = {f"{s}_p99_ms": common.target(r["metrics"].get("p99_ms"), TARGETS["e2e_p99_ms_max"])
               for s, r in measured.items()}
    peaks = {s: max(filter(None, [per_service.get(s, {}).get("metrics", {}).get("peak_rss_mb"),
                                  baseline.get(s, {}).get("metrics", {}).get("peak_rss_mb")]), default=None)
             for s in HOPS if s in measured or s in baseline}
    peaks = {s: v for s, v in peaks.items() if v is not None}
    targets.update({f"{s}_peak_rss_mb": common.target(v, TARGETS["rss_mb_max"]) for s, v in peaks.items()})
    failed = [s for s, r in {**per_service, **baseline}.items() if r.get("status") == "failed"]
    return {
        "status": "failed" if not measured else ("incomplete" if failed else "ok"),
        "offered_rate_per_s": ctx.scale.latency_rate, "offered_seconds": ctx.scale.latency_seconds,
        "baseline_rate_per_s": ctx.scale.latency_baseline_rate,
        "metrics": {
            "by_service": {s: r.get("metrics", {}) | {"status": r.get("status"), "reason": r.get("reason")}
                           for s, r in per_service.items()},
            "baseline_by_service": {s: r.get("metrics", {}) | {"status": r.get("status"), "reason": r.get("reason")}
                                    for s, r in baseline.items()},
            "peak_rss_mb_by_service": peaks,
        },
        "series": {"cdf_ms": {s: r.get("cdf_ms", []) for s, r in measured.items()},
                   "baseline_cdf_ms": {s: r.get("cdf_ms", []) for s, r in baseline.items() if r.get("cdf_ms")}},
        "targets": targets,
    }


async def _one(ctx: Context, service: str, rate: float, seconds: float) -> dict[str, Any]:
    hop, fact_type = HOPS[service]
    spec = flows.spec_for(service)
    assert spec is not None
    ns = ctx.namespace(f"lat_{service}_{int(rate)}")
    n = max(1, round(rate * seconds))
    process = ServiceProcess(ctx, service, ns, label=f"latency_{service}_{int(rate)}", extra_env=dict(spec.extra_env))
    try:
        await common.create_topics(ctx, flows.service_topics(service, ns, reads_enrollment_facts=spec.reads_enrollment_facts))
        partners = BenchPartners(ctx, ns)
        await partners.register(spec.sources)
        group = people(n)
        setup = spec.setup_facts(ns, group)
        requests = _requests(service, partners, ns, group)
        ids = [dict(r.headers)["ce_id"].decode() for _, r in requests]
        await process.start()
        # Measured at a steady load, not while the service joins its consumer group (a rebalance
        # pauses its consumers, and at 1,000/s the backlog of that pause never drains in 5 s).
        if not await common.wait_for_settled_group(ctx, f"{ns}-{service}", deadline_seconds=60):
            raise RuntimeError(f"the {service} service's consumer group did not settle in time")
        if setup:
            await common.publish_all(ctx, setup)
            if not await common.wait_for_zero_lag(ctx, f"{ns}-{service}", [topics.for_service("enrollment", ns).facts],
                                                  deadline_seconds=ctx.scale.drain_deadline_seconds):
                raise RuntimeError("the service did not consume its setup facts in time")
        scheduled: dict[str, float] = {}
        arrived: dict[str, float] = {}
        own = topics.for_service(service, ns)
        async with FactWatcher(ctx, [own.facts]) as watcher:
            watcher.listeners.append(lambda seen: seen.type == fact_type and seen.causation_id and
                                     arrived.setdefault(seen.causation_id, seen.at))
            async with common._started(common.producer(ctx)) as producer:
                t0 = time.monotonic() + 0.2
                futures = []
                for i, ((topic, record), event_id) in enumerate(zip(requests, ids, strict=True)):
                    due = t0 + i / rate
                    delay = due - time.monotonic()
                    if delay > 0.001:
                        await asyncio.sleep(delay)
                    scheduled[event_id] = due
                    futures.append(await producer.send(topic, record.value, key=record.key, headers=list(record.headers)))
                offered_seconds = time.monotonic() - t0
                await asyncio.gather(*futures)
            deadline = time.monotonic() + ctx.scale.latency_drain_seconds
            while len(arrived) < n and time.monotonic() < deadline:  # noqa: ASYNC110 - a deadline, polled
                await asyncio.sleep(0.05)
            waited = time.monotonic() - t0
        latencies = [(arrived[i] - scheduled[i]) * 1000 for i in ids if i in arrived]
        stats = common.censored_percentiles(latencies, n - len(latencies))
        return {
            "status": "ok" if len(latencies) == n else "incomplete",
            "metrics": {
                "hop": hop, "events": n, "observed": len(latencies), "not_observed_by_deadline": n - len(latencies),
                "deadline_after_first_send_s": round(waited, 1),
                "offered_rate_per_s": rate,
                "achieved_offered_rate_per_s": round(n / offered_seconds, 1) if offered_seconds > 0 else None,
                "processed_per_s": round(len(latencies) / waited, 1) if waited else None,
                **{f"{k}_ms": (round(v, 2) if isinstance(v, float) else v) for k, v in stats.items()
                   if k not in ("count", "missing")},
                "lower_bound_ms": round(waited * 1000 - (n - 1) / rate * 1000, 1) if len(latencies) < n else None,
                "peak_rss_mb": process.peak_rss_mb(),
            },
            "cdf_ms": [[v, f * len(latencies) / n] for v, f in common.cdf_points(latencies)],
        }
    finally:
        await process.stop()
        await common.delete_namespace(ctx, ns)
