"""The benchmark suite in smoke mode (tiny counts) against the test servers, so the benchmark code
cannot rot: every benchmark runs and writes a result file of the expected shape. Timings are
not asserted (they mean nothing at these counts); docs/performance.md has the real figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import runner
from bench.common import Context, service_available
from bench.config import SMOKE

pytestmark = pytest.mark.slow

USABLE = {"ok", "ok_with_failures", "ok_with_errors"}


def _target_shape(entry: dict[str, Any]) -> None:
    assert set(entry) >= {"target", "measured", "met"}, entry
    assert isinstance(entry["met"], bool)


@pytest.fixture(scope="module")
async def smoke_results(servers, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench-results")
    ctx = Context(kafka=servers.kafka_bootstrap, mongodb=servers.mongodb_url, scale=SMOKE, out=out)
    await runner.run(ctx)
    return out


def _result(out: Path, name: str) -> dict[str, Any]:
    path = out / f"{name}.json"
    assert path.exists(), f"{name} wrote no result file"
    result = json.loads(path.read_text(encoding="utf-8"))
    assert result["name"] == name and result["mode"] == "smoke"
    assert set(result) >= {"status", "metrics", "targets", "duration_s"}, sorted(result)
    assert result["status"] != "failed", f"{name} failed: {result.get('reason')}"
    return result


def test_every_benchmark_writes_a_result_and_the_summary_lists_them(smoke_results):
    summary = json.loads((smoke_results / "summary.json").read_text(encoding="utf-8"))
    assert summary["mode"] == "smoke"
    assert set(summary["benchmarks"]) == set(runner.BENCHMARKS)
    assert summary["environment"]["cpus"] >= 1
    for name in runner.BENCHMARKS:
        result = _result(smoke_results, name)
        assert summary["benchmarks"][name]["status"] == result["status"]


def test_the_raw_ceilings_are_measured(smoke_results):
    kafka = _result(smoke_results, "raw_kafka")
    assert kafka["status"] == "ok"
    assert kafka["metrics"]["produce_msgs_per_s"] > 0 and kafka["metrics"]["consume_msgs_per_s"] > 0
    store = _result(smoke_results, "raw_store")
    assert store["status"] == "ok"
    for key in ("insert_many_unordered", "bulk_write_insert", "bulk_write_upsert", "update_one_upsert_sequential"):
        assert store["metrics"][key]["docs_per_s"] > 0, key
    assert [row["documents"] for row in store["metrics"]["write_cost_by_collection_size"]] == SMOKE.scan_probe_sizes
    pipeline = _result(smoke_results, "raw_pipeline")
    assert pipeline["status"] == "ok"
    for variant in ("batched_insert", "batched_upsert", "per_message_insert", "per_message_upsert"):
        assert pipeline["metrics"][variant]["msgs_per_s"] > 0, variant
    assert pipeline["metrics"]["msgs_per_s"] == pipeline["metrics"]["batched_insert"]["msgs_per_s"]
    assert pipeline["series"]["throughput"], "the throughput timeline feeds the plot"


@pytest.mark.parametrize("service", runner.SERVICES)
def test_each_main_flow_is_measured_against_the_raw_pipeline_where_the_service_exists(smoke_results, service):
    result = _result(smoke_results, f"flow_{service}")
    missing = service_available(service)
    if missing:
        assert result["status"] == "not_available" and result["reason"]
        return
    assert result["status"] in USABLE, result.get("reason")
    metrics = result["metrics"]
    assert metrics["completed"] == metrics["flows"] == (SMOKE.benefits_flow_recipients if service == "benefits" else SMOKE.flow_people)
    assert metrics["events_per_s"] > 0 and metrics["ratio_to_raw_pipeline"] > 0
    assert metrics["peak_rss_mb"] > 0
    assert set(result["targets"]) == {"ratio_to_raw_pipeline", "peak_rss_mb"}
    for entry in result["targets"].values():
        _target_shape(entry)
    assert result["series"]["throughput"]


def test_end_to_end_latency_is_measured_per_service(smoke_results):
    result = _result(smoke_results, "latency_e2e")
    by_service = result["metrics"]["by_service"]
    for service, metrics in by_service.items():
        if service_available(service):
            assert metrics["status"] == "not_available"
            continue
        assert metrics["status"] == "ok", metrics
        assert metrics["observed"] == metrics["events"] == round(SMOKE.latency_rate * SMOKE.latency_seconds)
        assert metrics["p50_ms"] <= metrics["p99_ms"] <= metrics["max_ms"]
        _target_shape(result["targets"][f"{service}_p99_ms"])
        assert result["series"]["cdf_ms"][service]


def test_the_eligibility_check_is_driven_over_http_at_a_fixed_rate(smoke_results):
    import shutil

    result = _result(smoke_results, "eligibility_http")
    if shutil.which("wrk") is None or service_available("insurance"):
        assert result["status"] == "not_available" and result["reason"]
        return
    assert result["status"] in USABLE, result.get("reason")
    metrics = result["metrics"]
    assert metrics["requests"] > 0 and metrics["sample_answer_eligible"] is True
    assert metrics["registered_for_insurance"] == SMOKE.eligibility_cards
    assert 0 < metrics["p50_ms"] <= metrics["p99_ms"]
    _target_shape(result["targets"]["p99_ms"])


def test_the_payout_batch_is_settled_and_reconciled_to_the_yen(smoke_results):
    result = _result(smoke_results, "payout_national")
    if service_available("benefits"):
        assert result["status"] == "not_available"
        return
    assert result["status"] == "ok", result.get("outcome")
    metrics = result["metrics"]
    assert metrics["recipients"] == metrics["settled"] == SMOKE.payout_recipients
    assert metrics["reconciled_exactly"] is True
    assert metrics["report"]["paid"] == {"count": SMOKE.payout_recipients, "total_yen": metrics["total_yen"]}
    for entry in result["targets"].values():
        _target_shape(entry)


def test_the_plots_are_drawn_from_the_results(smoke_results, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib draws the plots; the lead pins it in requirements")
    from bench import plots

    drawn = plots.draw(smoke_results, tmp_path)
    assert {p.name for p in drawn} >= {"perf-throughput.png", "perf-write-cost.png", "perf-rss.png", "perf-latency-cdf.png"}
    assert all(p.stat().st_size > 1000 for p in drawn)
