"""The figures table in docs/reliability.md, from the JSON each fault test leaves behind and the
JUnit report of the incident replays. Only the text between the two markers is replaced."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from datetime import UTC, datetime
from pathlib import Path


def markers(section: str = "") -> tuple[str, str]:
    name = f"reliability-figures{':' + section if section else ''}"
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"

EFFECTS = ("cards", "links", "certificates", "accounts", "payments", "bank credits", "licences")


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {count:,}" for reason, count in sorted(counts.items())) or "0"


def figures_table(results: list[dict]) -> str:
    header = ("| # | scenario | events | records sent | " + " | ".join(EFFECTS)
              + " | facts published (distinct ids) | lost | duplicated | dead-lettered | quarantined | result |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for number, row in enumerate(results, 1):
        effects = " | ".join(f"{row['effects'].get(name, 0):,}" for name in EFFECTS)
        result = "pass" if row["passed"] else "**FAIL**"
        lines.append(
            f"| {number} | {row['scenario']} | {row['events']:,} | {row['records_sent']:,} | {effects} | "
            f"{row['facts_published']:,} ({row['distinct_facts']:,}) | {row['lost']:,} | {row['duplicated']:,} | {_reasons(row['dead_lettered'])} | "
            f"{_reasons(row['quarantined'])} | {result} |"
        )
    return "\n".join(lines)


def incidents_table(junit: Path) -> str:
    if not junit.exists():
        return "_(the incident replays were not run)_"
    lines = ["| incident replay | result |", "|---|---|"]
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        if "incidents" not in case.get("classname", ""):
            continue
        failed = case.find("failure") is not None or case.find("error") is not None
        skipped = case.find("skipped") is not None
        result = "**FAIL**" if failed else "skipped" if skipped else "pass"
        lines.append(f"| `{case.get('classname', '').split('.')[-1]}::{case.get('name')}` | {result} |")
    return "\n".join(lines) if len(lines) > 2 else "_(the incident replays were not run)_"


def notes(results: list[dict]) -> str:
    lines = []
    for number, row in enumerate(results, 1):
        said = [*row.get("notes", []), *row.get("timings", [])]
        if row.get("poison_outcomes"):
            said.append("poison: " + "; ".join(f"{kind} -> {', '.join(where)}" for kind, where in row["poison_outcomes"].items()))
        if row.get("bank", {}).get("faults_injected"):
            said.append(f"bank faults injected: {_reasons(row['bank']['faults_injected'])}; bulk calls {row['bank']['requests']:,}")
        for example in (*row.get("lost_examples", []), *row.get("duplicated_examples", []), *row.get("order_examples", [])):
            said.append(f"problem: {example}")
        lines.append(f"{number}. **{row['scenario']}** ({row['seconds']:,.0f} s): " + "; ".join(said))
    return "\n".join(lines)


def render(results_dir: Path, *, command: str, section: str = "") -> str:
    results = [json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))]
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    start, end = markers(section)
    return "\n\n".join([
        start,
        f"Last run: {stamp}, `{command}`.",
        figures_table(results) if results else "_(no fault scenario ran)_",
        "What happened in each run:\n\n" + notes(results) if results else "",
        incidents_table(results_dir / "junit.xml"),
        end,
    ])


def write(document: Path, results_dir: Path, *, command: str, section: str = "") -> None:
    start, end = markers(section)
    text = document.read_text(encoding="utf-8") if document.exists() else "# Reliability\n"
    if start not in text or end not in text:
        text = text.rstrip() + f"\n\n{start}\n{end}\n"
    before, rest = text.split(start, 1)
    after = rest.split(end, 1)[1]
    document.write_text(before + render(results_dir, command=command, section=section) + after, encoding="utf-8")
