"""The plots in docs/performance.md, drawn with matplotlib from bench/results/*.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .common import REPO

FLOWS = ("enrollment", "insurance", "benefits", "licensing")


def _load(out: Path, name: str) -> dict[str, Any] | None:
    try:
        return json.loads((out / f"{name}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def draw(out: Path, images: Path | None = None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = images or REPO / "docs" / "images"
    images.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    # 1. Throughput over time: each main flow, and the raw pipeline it is compared with.
    fig, ax = plt.subplots(figsize=(9, 4.8))
    raw = _load(out, "raw_pipeline")
    if raw and raw.get("series", {}).get("throughput"):
        xs, ys = zip(*raw["series"]["throughput"], strict=True)
        ax.step(xs, ys, where="post", label="raw pipeline (batched, insert)", color="black", linewidth=1)
    for service in FLOWS:
        result = _load(out, f"flow_{service}")
        series = (result or {}).get("series", {}).get("throughput") or []
        if series:
            xs, ys = zip(*series, strict=True)
            unit = "recipients" if service == "benefits" else "flows"
            ax.step(xs, ys, where="post", label=f"{service} ({unit}/s)")
    ax.set_yscale("log")
    ax.set_xlabel("seconds since the backlog was published")
    ax.set_ylabel("completed per second (log)")
    ax.set_title("Sustained throughput: main flows against the raw pipeline")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    written.append(_save(fig, images / "perf-throughput.png"))

    # 2. End-to-end latency CDF at the offered load, and at a light load.
    latency = _load(out, "latency_e2e")
    if latency:
        fig, ax = plt.subplots(figsize=(9, 4.8))
        for key, style, label in (("cdf_ms", "-", f"{latency.get('offered_rate_per_s'):g} events/s"),
                                  ("baseline_cdf_ms", "--", f"{latency.get('baseline_rate_per_s') or 0:g} events/s")):
            for service, points in (latency.get("series", {}).get(key) or {}).items():
                if points:
                    xs, ys = zip(*points, strict=True)
                    ax.plot(xs, ys, style, label=f"{service} at {label}")
        ax.axvline(500, color="red", linewidth=0.8, linestyle=":", label="target p99 500 ms")
        ax.axhline(0.99, color="grey", linewidth=0.6, linestyle=":")
        ax.set_xscale("log")
        ax.set_xlabel("partner publish -> fact observed (ms, log)")
        ax.set_ylabel("fraction of events (unseen ones never reach 1)")
        ax.set_title("End-to-end latency CDF")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        written.append(_save(fig, images / "perf-latency-cdf.png"))

    # 3. What one write costs as a collection grows (the store's ceiling behind every service).
    store = _load(out, "raw_store")
    rows = (store or {}).get("series", {}).get("write_cost_ms") or []
    if rows:
        fig, ax = plt.subplots(figsize=(9, 4.8))
        sizes = [r["documents"] for r in rows]
        for key in ("find_one_ms", "insert_one_ms", "update_one_ms", "upsert_new_ms", "find_one_and_update_ms"):
            ax.plot(sizes, [r.get(key) for r in rows], marker="o", label=key.removesuffix("_ms"))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("documents in the collection (log)")
        ax.set_ylabel("ms per operation, by _id (log)")
        ax.set_title("One write's cost against collection size (FerretDB v1, SQLite backend)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        written.append(_save(fig, images / "perf-write-cost.png"))

    # 4. Peak RSS per service process.
    summary = _load(out, "summary")
    peaks = (summary or {}).get("peak_rss_mb") or {}
    if peaks:
        fig, ax = plt.subplots(figsize=(7, 3.6))
        names = sorted(peaks)
        ax.bar(names, [peaks[n]["measured"] for n in names], color="#4c72b0")
        ax.axhline(300, color="red", linestyle=":", label="target 300 MB")
        ax.set_ylabel("peak RSS (MB)")
        ax.set_title("Peak resident memory per service process")
        ax.legend(fontsize=8)
        written.append(_save(fig, images / "perf-rss.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
