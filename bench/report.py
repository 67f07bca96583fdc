"""`python -m bench report`: the Markdown tables of docs/performance.md, from bench/results/*.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SERVICES = ("enrollment", "insurance", "benefits", "licensing")


def _load(out: Path, name: str) -> dict[str, Any]:
    try:
        return json.loads((out / f"{name}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _met(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "—"
    return "met" if entry.get("met") else "**missed**"


def targets(out: Path) -> str:
    """One line per target of the issue: the figure measured in the run and whether it is met."""
    lines = ["| target | measured | |", "|---|---|---|"]
    for service in SERVICES:
        r = _load(out, f"flow_{service}")
        entry = (r.get("targets") or {}).get("ratio_to_raw_pipeline")
        if r.get("status") == "not_available":
            lines.append(f"| {service} main flow ≥ 0.5 of the raw pipeline | not available | |")
        elif entry:
            m = r.get("metrics", {})
            lines.append(f"| {service} main flow ≥ 0.5 of the raw pipeline | {_num(m.get('ratio_to_raw_pipeline'), 4)} "
                         f"({_num(m.get('events_per_s'))} vs {_num(m.get('raw_pipeline_msgs_per_s'), 0)}/s) | {_met(entry)} |")
    latency = _load(out, "latency_e2e")
    for service, m in (latency.get("metrics", {}).get("by_service") or {}).items():
        if not m.get("events"):
            continue
        p99 = m.get("p99_ms")
        text = f"{_num(p99)} ms" if p99 is not None else f"> {_num(m.get('lower_bound_ms'), 0)} ms ({_num(m.get('observed'))}/{_num(m.get('events'))} seen)"
        lines.append(f"| e2e p99 ≤ 500 ms at {_num(m.get('offered_rate_per_s'), 0)} events/s ({service}) | {text} | "
                     f"{_met((latency.get('targets') or {}).get(f'{service}_p99_ms'))} |")
    eligibility = _load(out, "eligibility_http")
    if eligibility.get("status") == "not_available":
        lines.append(f"| eligibility p99 ≤ 20 ms at 500 req/s | not available: {eligibility.get('reason')} | |")
    elif eligibility:
        m = eligibility.get("metrics", {})
        lines.append(f"| eligibility p99 ≤ 20 ms at {m.get('offered_rate_per_s')} req/s | {_num(m.get('p99_ms'), 2)} ms "
                     f"(achieved {_num(m.get('achieved_rate_per_s'))} req/s) | {_met((eligibility.get('targets') or {}).get('p99_ms'))} |")
    payout = _load(out, "payout_national")
    if payout.get("status") == "not_available":
        lines.append(f"| payout of 1,000,000 ≤ 10 min, exact to the yen | not available: {payout.get('reason')} | |")
    elif payout:
        m = payout.get("metrics", {})
        done = f"{_num(m.get('seconds'))} s" if m.get("seconds") is not None else (
            f"not finished: {_num(m.get('settled'))} of {_num(m.get('recipients'))} settled after {_num(m.get('elapsed_s'), 0)} s")
        lines.append(f"| payout of {_num(m.get('recipients'))} recipients ≤ 600 s | {done} | {_met((payout.get('targets') or {}).get('seconds'))} |")
        lines.append(f"| reconciled exactly to the yen, {_num(m.get('recipients'))}-recipient batch | {m.get('reconciled_exactly')} | "
                     f"{_met((payout.get('targets') or {}).get('reconciled_to_the_yen'))} |")
    benefits = _load(out, "flow_benefits").get("metrics") or {}
    if "reconciled_exactly" in benefits:
        lines.append(f"| reconciled exactly to the yen, {_num(benefits.get('flows'))}-recipient batch (flow_benefits) | "
                     f"{benefits['reconciled_exactly']} | {'met' if benefits['reconciled_exactly'] else '**missed**'} |")
    peaks = (_load(out, "summary").get("peak_rss_mb") or {})
    if peaks:
        worst = max(peaks, key=lambda k: peaks[k]["measured"])
        lines.append(f"| ≤ 300 MB RSS per service process | largest: {worst} {_num(peaks[worst]['measured'])} MB | "
                     f"{'met' if all(v['met'] for v in peaks.values()) else '**missed**'} |")
    return "\n".join(lines) + "\n"


def tables(out: Path) -> str:
    lines: list[str] = []
    kafka, store, pipeline = _load(out, "raw_kafka"), _load(out, "raw_store"), _load(out, "raw_pipeline")
    k, s, p = kafka.get("metrics", {}), store.get("metrics", {}), pipeline.get("metrics", {})
    lines += ["### Raw ceilings", "", "| ceiling | figure |", "|---|---|"]
    lines.append(f"| Kafka produce ({k.get('producer', 'as the kit')}; {_num(k.get('mean_record_bytes'))} B records) | "
                 f"{_num(k.get('produce_msgs_per_s'), 0)} msg/s ({_num(k.get('produce_mb_per_s'), 2)} MB/s) |")
    lines.append(f"| Kafka consume (batches of {k.get('fetch_batch')}) | {_num(k.get('consume_msgs_per_s'), 0)} msg/s |")
    for key, label in (("insert_many_unordered", "store: insert_many(ordered=False)"),
                       ("bulk_write_insert", "store: bulk_write(InsertOne)"),
                       ("bulk_write_upsert", "store: bulk_write(UpdateOne upsert)"),
                       ("update_one_upsert_sequential", "store: update_one upsert, one at a time"),
                       ("insert_one_sequential", "store: insert_one, one at a time")):
        row = s.get(key) or {}
        lines.append(f"| {label} ({_num(row.get('documents'))} docs) | {_num(row.get('docs_per_s'), 0)} docs/s |")
    for key, label in (("batched_insert", "raw pipeline, batched, insert_many — **the ceiling**"),
                       ("batched_upsert", "raw pipeline, batched, bulk upserts"),
                       ("per_message_insert", "raw pipeline, one message at a time, insert_one"),
                       ("per_message_upsert", "raw pipeline, one message at a time, upsert (the kit's shape)")):
        row = p.get(key) or {}
        lines.append(f"| {label} ({_num(row.get('messages'))} msgs) | {_num(row.get('msgs_per_s'), 0)} msg/s |")
    rows = s.get("write_cost_by_collection_size") or []
    if rows:
        lines += ["", "One operation by `_id`, in ms, against the collection's size:", "",
                  "| documents | find_one | insert_one | update_one | upsert (new _id) | find_one_and_update |",
                  "|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {_num(r['documents'])} | {r['find_one_ms']} | {r['insert_one_ms']} | {r['update_one_ms']} | "
                         f"{r['upsert_new_ms']} | {r['find_one_and_update_ms']} |")

    lines += ["", "### Main flows (sustained, signed partner events, each service a `python -m services.<name>` process)", "",
              "| service | flow | completed | throughput | ratio to raw pipeline (target ≥ 0.5) | ratio to the per-message upsert pipeline | peak RSS | CPU ms per flow (service / database / broker) |",
              "|---|---|---|---|---|---|---|---|"]
    for service in SERVICES:
        r = _load(out, f"flow_{service}")
        m = r.get("metrics", {})
        if r.get("status") == "not_available":
            lines.append(f"| {service} | not available: {r.get('reason')} | | | | | | |")
            continue
        unit = "recipients/s" if service == "benefits" else "events/s"
        cpu = m.get("cpu_ms_per_flow") or {}
        lines.append(
            f"| {service} | {r.get('flow', '')} | {_num(m.get('completed'))}/{_num(m.get('flows'))} | "
            f"{_num(m.get('events_per_s'))} {unit} | {_num(m.get('ratio_to_raw_pipeline'), 3)} "
            f"{_met(r.get('targets', {}).get('ratio_to_raw_pipeline'))} | {_num(m.get('ratio_to_raw_per_message_pipeline'), 2)} | "
            f"{_num(m.get('peak_rss_mb'))} MB | {_num(cpu.get('service'))} / {_num(cpu.get('database'))} / {_num(cpu.get('broker'))} |")

    latency = _load(out, "latency_e2e")
    if latency:
        lines += ["", "### End-to-end latency (partner publish → fact observed; from the scheduled send time)", "",
                  "| service | hop | offered | events seen | p50 | p99 (target ≤ 500 ms) | max |", "|---|---|---|---|---|---|---|"]
        for key in ("by_service", "baseline_by_service"):
            for service, m in (latency.get("metrics", {}).get(key) or {}).items():
                if m.get("status") in ("not_run", "not_available", None) and not m.get("events"):
                    continue
                p99 = m.get("p99_ms")
                p99_text = _num(p99) + " ms" if p99 is not None else f"> {_num(m.get('lower_bound_ms'), 0)} ms (not seen by the deadline)"
                maximum = _num(m.get("max_ms")) + " ms" if m.get("max_ms") is not None else "—"
                p50 = m.get("p50_ms")
                p50_text = _num(p50) + " ms" if p50 is not None else f"> {_num(m.get('lower_bound_ms'), 0)} ms"
                lines.append(f"| {service} | {m.get('hop')} | {_num(m.get('offered_rate_per_s'), 0)}/s | "
                             f"{_num(m.get('observed'))}/{_num(m.get('events'))} | {p50_text} | {p99_text} | {maximum} |")

    eligibility = _load(out, "eligibility_http")
    if eligibility:
        m = eligibility.get("metrics", {})
        lines += ["", "### Eligibility check over HTTP (wrk, fixed rate)", "",
                  "| route | offered | achieved | p50 | p99 (target ≤ 20 ms) | p99.9 | max | errors |", "|---|---|---|---|---|---|---|---|"]
        if eligibility.get("status") == "not_available":
            lines.append(f"| not available: {eligibility.get('reason')} | | | | | | | |")
        else:
            lines.append(f"| {m.get('route')} | {m.get('offered_rate_per_s')}/s | {_num(m.get('achieved_rate_per_s'))}/s | "
                         f"{_num(m.get('p50_ms'), 2)} ms | {_num(m.get('p99_ms'), 2)} ms {_met(eligibility.get('targets', {}).get('p99_ms'))} | "
                         f"{_num(m.get('p99_9_ms'), 2)} ms | {_num(m.get('max_ms'), 2)} ms | {sum((m.get('errors') or {}).values())} |")

    payout = _load(out, "payout_national")
    if payout:
        m = payout.get("metrics", {})
        lines += ["", "### National payout (one child-benefit batch)", "", "| figure | value |", "|---|---|"]
        if payout.get("status") == "not_available":
            lines.append(f"| not available | {payout.get('reason')} |")
        else:
            for label, value in (
                ("recipients / chunks", f"{_num(m.get('recipients'))} / {_num(m.get('chunks'))}"),
                ("control total", f"{_num(m.get('total_yen'))} yen"),
                ("outcome", payout.get("outcome")),
                ("publish → reconciled (target ≤ 600 s)", f"{_num(m.get('seconds'))} s {_met(payout.get('targets', {}).get('seconds'))}"),
                ("elapsed when stopped", f"{_num(m.get('elapsed_s'))} s"),
                ("batch accepted after", f"{_num(m.get('batch_accepted_after_s'))} s"),
                ("settled / held / failed", f"{_num(m.get('settled'))} / {_num(m.get('held'))} / {_num(m.get('failed'))}"),
                ("settlement rate", f"{_num(m.get('settled_per_s'))} recipients/s"),
                ("projected for 1,000,000 at that rate", f"{_num(m.get('projected_seconds_for_1m'), 0)} s"),
                ("reconciled exactly to the yen", m.get("reconciled_exactly")),
                ("setup, untimed: numbers and references / account import / signing the chunks beside it / all",
                 f"{_num(m.get('numbers_s'))} / {_num(m.get('import_accounts_s'))} / {_num(m.get('prepare_s'))} / "
                 f"{_num(m.get('setup_s'))} s"),
                ("then, untimed: starting the bank simulator and the service / counting the queues at the end",
                 f"{_num(m.get('start_services_s'))} / {_num(m.get('count_records_s'))} s"),
                ("peak RSS benefits / bank simulator",
                 f"{_num((m.get('peak_rss_mb_by_service') or {}).get('benefits'))} / {_num((m.get('peak_rss_mb_by_service') or {}).get('bank-simulator'))} MB"),
            ):
                lines.append(f"| {label} | {value} |")

    summary = _load(out, "summary")
    peaks = summary.get("peak_rss_mb") or {}
    if peaks:
        lines += ["", "### Peak RSS per service process (target ≤ 300 MB)", "", "| process | peak RSS |", "|---|---|"]
        for service in sorted(peaks):
            lines.append(f"| {service} | {_num(peaks[service]['measured'])} MB {_met(peaks[service])} |")
    return "\n".join(lines) + "\n"
