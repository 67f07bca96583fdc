"""Runs the benchmarks in order, writes one result file each and the summary."""

from __future__ import annotations

import gc
import json
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import common, flows, raw
from .common import Context
from .config import TARGETS

SERVICES = ("enrollment", "insurance", "benefits", "licensing")


def _flow(service: str) -> Callable[[Context], Awaitable[dict[str, Any]]]:
    return lambda ctx: flows.run_flow(ctx, service)


def _latency(ctx: Context) -> Awaitable[dict[str, Any]]:
    from . import latency

    return latency.run(ctx)


def _eligibility(ctx: Context) -> Awaitable[dict[str, Any]]:
    from . import eligibility

    return eligibility.run(ctx)


def _payout(ctx: Context) -> Awaitable[dict[str, Any]]:
    from . import payout

    return payout.run(ctx)


BENCHMARKS: dict[str, Callable[[Context], Awaitable[dict[str, Any]]]] = {
    "raw_kafka": raw.run_kafka,
    "raw_store": raw.run_store,
    "raw_pipeline": raw.run_pipeline,
    **{f"flow_{s}": _flow(s) for s in SERVICES},
    "latency_e2e": _latency,
    "eligibility_http": _eligibility,
    "payout_national": _payout,
}


def select(only: list[str] | None) -> list[str]:
    if not only:
        return list(BENCHMARKS)
    wanted = {w.strip() for item in only for w in item.split(",") if w.strip()}
    chosen = [name for name in BENCHMARKS if name in wanted or any(name.startswith(w + "_") for w in wanted)]
    unknown = [w for w in wanted if not any(n == w or n.startswith(w + "_") for n in BENCHMARKS)]
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(sorted(unknown))}; known: {', '.join(BENCHMARKS)}")
    return chosen


def _load(ctx: Context, name: str) -> dict[str, Any] | None:
    path = ctx.out / f"{name}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _flow_targets(result: dict[str, Any], raw_pipeline: dict[str, Any] | None) -> None:
    metrics = result.get("metrics") or {}
    ceiling = (raw_pipeline or {}).get("metrics", {}).get("msgs_per_s")
    measured = metrics.get("events_per_s")  # publish start to the last completion: bursts cannot inflate it
    ratio = measured / ceiling if measured and ceiling else None
    metrics["raw_pipeline_msgs_per_s"] = ceiling
    metrics["ratio_to_raw_pipeline"] = round(ratio, 4) if ratio is not None else None
    per_message = (raw_pipeline or {}).get("metrics", {}).get("per_message_msgs_per_s")
    metrics["ratio_to_raw_per_message_pipeline"] = round(measured / per_message, 4) if measured and per_message else None
    result["targets"] = {
        "ratio_to_raw_pipeline": common.target(ratio, TARGETS["flow_ratio_min"], at_most=False),
        "peak_rss_mb": common.target(metrics.get("peak_rss_mb"), TARGETS["rss_mb_max"]),
    }


async def run(ctx: Context, only: list[str] | None = None) -> dict[str, Any]:
    names = select(only)
    started = time.monotonic()
    print(f"bench: {ctx.scale.mode} run {ctx.run_id}: {', '.join(names)} (kafka {ctx.kafka}, mongodb {ctx.mongodb})")
    env = common.environment()
    written: dict[str, dict[str, Any]] = {}
    for name in names:
        print(f"bench: {name} ...", flush=True)
        # The bench process is the load generator and the watcher: what earlier benchmarks left in
        # it (results, timestamps, records) made each full collection pause it for 250 to 300 ms,
        # which delayed sends and arrival stamps. Frozen, the collector no longer scans it.
        gc.collect()
        gc.freeze()
        began = time.monotonic()
        try:
            result = await BENCHMARKS[name](ctx)
        except Exception as exc:  # one broken benchmark must not hide the others
            traceback.print_exc()
            result = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}", "metrics": {}, "targets": {}}
        result["duration_s"] = round(time.monotonic() - began, 2)
        if name.startswith("flow_") and result.get("status") != "not_available":
            _flow_targets(result, written.get("raw_pipeline") or _load(ctx, "raw_pipeline"))
        common.write_result(ctx, name, result)
        written[name] = result
        print(f"bench: {name}: {result['status']} in {result['duration_s']} s {_headline(name, result)}", flush=True)
    summary = _summary(ctx, env, time.monotonic() - started, names)
    (ctx.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"bench: done in {summary['duration_s']} s; results in {ctx.out}")
    return summary


def _headline(name: str, result: dict[str, Any]) -> str:
    metrics = result.get("metrics") or {}
    keys = ("msgs_per_s", "events_per_s", "ratio_to_raw_pipeline", "p50_ms", "p99_ms", "seconds", "peak_rss_mb",
            "produce_msgs_per_s", "consume_msgs_per_s")
    shown = {k: metrics[k] for k in keys if metrics.get(k) is not None}
    return json.dumps(shown) if shown else (result.get("reason") or "")


def _summary(ctx: Context, env: dict[str, Any], seconds: float, ran: list[str]) -> dict[str, Any]:
    """Every result in the output folder (this run's and earlier ones'), with its headline figures and targets."""
    benchmarks: dict[str, Any] = {}
    rss: dict[str, Any] = {}
    for name in BENCHMARKS:
        result = _load(ctx, name)
        if result is None:
            continue
        benchmarks[name] = {
            "status": result.get("status"), "mode": result.get("mode"), "written_at": result.get("written_at"),
            "this_run": name in ran, "reason": result.get("reason"),
            "metrics": {k: v for k, v in (result.get("metrics") or {}).items() if not isinstance(v, dict | list)},
            "targets": result.get("targets") or {},
        }
        for service, peak in _peaks(result).items():
            rss[service] = max(rss.get(service) or 0, peak)
    return {
        "mode": ctx.scale.mode, "run_id": ctx.run_id, "finished_at": datetime.now(UTC).isoformat(),
        "duration_s": round(seconds, 1), "kafka": ctx.kafka, "mongodb": ctx.mongodb, "environment": env,
        "benchmarks": benchmarks,
        "peak_rss_mb": {s: {"measured": v, "target": TARGETS["rss_mb_max"], "met": v <= TARGETS["rss_mb_max"]}
                        for s, v in rss.items()},
        "python": sys.version.split()[0],
    }


def _peaks(result: dict[str, Any]) -> dict[str, float]:
    metrics = result.get("metrics") or {}
    peaks: dict[str, float] = {}
    if result.get("service") and metrics.get("peak_rss_mb"):
        peaks[result["service"]] = metrics["peak_rss_mb"]
    for service, value in (metrics.get("peak_rss_mb_by_service") or {}).items():
        if value and service not in NOT_SERVICES:
            peaks[service] = max(peaks.get(service, 0), value)
    return peaks


# The bank simulator stands in for the banks (it keeps every transfer in memory): not one of the
# platform's services, so not held to their memory target. The payout result still shows its RSS.
NOT_SERVICES = {"bank-simulator"}


def default_out() -> Path:
    return Path(__file__).resolve().parent / "results"
