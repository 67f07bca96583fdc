"""The benefits main flow: a payout recipient becomes a payment settled through the bank simulator.

Measured as one payout batch of `flow_people` recipients (the paying agency's signed header and
chunks); the unit is a recipient: one payment line written, one bulk-transfer line at the bank, one
statement line matched, one PaymentSettled fact out, which is what one raw-pipeline message costs
and more. See bench/payout.py.
"""

from __future__ import annotations

from typing import Any

from .common import Context


async def run(ctx: Context) -> dict[str, Any]:
    from . import payout

    result = await payout.run_batch(ctx, ctx.scale.benefits_flow_recipients, "flow_benefits", ctx.scale.drain_deadline_seconds)
    if result.get("status") == "not_available":
        return result
    metrics = result["metrics"]
    steady = result.pop("steady", {}) or {}
    return {
        "status": result["status"],
        "service": "benefits",
        "flow": "a payout recipient becomes a payment settled through the bank simulator (one batch)",
        "metrics": {
            "flows": metrics["recipients"], "completed": metrics["settled"],
            "failed": {k: metrics[k] for k in ("held", "failed") if metrics.get(k)},
            "input_events": metrics["chunks"] + 1, "unit": "recipient",
            **{k: v for k, v in steady.items()},
            "elapsed_s": metrics["elapsed_s"], "reconciled_exactly": metrics["reconciled_exactly"],
            "import_accounts_s": metrics.get("import_accounts_s"), "publish_s": metrics.get("publish_s"),
            "peak_rss_mb": metrics["peak_rss_mb_by_service"]["benefits"],
            "bank_simulator_peak_rss_mb": metrics["peak_rss_mb_by_service"]["bank-simulator"],
            "signed": True,
            "cpu": metrics.get("cpu"),
            "cpu_ms_per_flow": {k: round(v * 1000 / max(1, metrics["settled"]), 2)
                                for k, v in (metrics.get("cpu") or {}).get("cpu_s", {}).items()},
        },
        "series": {"throughput": result["series"]["settled_per_s"], "rss_mb": result["series"]["rss_mb"]},
        "profile": result.get("profile"),
        "targets": {},
    }
