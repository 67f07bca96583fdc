"""The demo's closing report: what every agency's traffic led to."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

from .runner import TopicContents

ENROLLMENT = "jp.mynumber.enrollment."


def build_report(context: Any, contents: TopicContents, *, elapsed: float) -> dict[str, Any]:
    accepted = contents.of(ENROLLMENT + "application_accepted.v1")
    rejected = contents.of(ENROLLMENT + "application_rejected.v1")
    rows: list[tuple[str, str, str]] = []

    def row(section: str, label: str, value: object) -> None:
        rows.append((section, label, f"{value:,}" if isinstance(value, int) else str(value)))

    row("Traffic", "partner events published", context.publisher.published.sent)
    row("Traffic", "residents in the simulated population", len(context.people))
    row("Traffic", "minutes taken", f"{elapsed / 60:.1f}")
    for channel, count in sorted(Counter(f["channel"] for f in accepted).items()):
        row("Enrollment", f"applications accepted: {channel}", count)
    for channel, count in sorted(Counter(f["channel"] for f in rejected).items()):
        row("Enrollment", f"applications rejected: {channel}", count)
    row("Enrollment", "photo-less cards (infants under 1)", sum(1 for f in contents.of(ENROLLMENT + "card_issued.v1") if f["photo_less"]))
    for kind in ("card_issued", "card_suspended", "card_resumed", "card_reissued"):
        row("Enrollment", kind.replace("_", " "), len(contents.of(f"{ENROLLMENT}{kind}.v1")))
    row("Enrollment", "periods of stay recorded", len(contents.of(ENROLLMENT + "period_of_stay_changed.v1")))
    row("Enrollment", "cards whose expiry followed the stay", len(contents.of(ENROLLMENT + "card_validity_changed.v1")))
    reasons = Counter(f["reason"] for f in rejected) + Counter(
        f["reason"] for f in contents.of(ENROLLMENT + "card_request_rejected.v1"))
    for reason, count in sorted(reasons.items()):
        row("Rejections by reason", reason, count)
    for section_rows in _extra_sections(context, contents):
        rows.extend(section_rows)
    for (service, reason), count in sorted(contents.dead_letters.items()):
        row("Dead-lettered", f"{service}: {reason}", count)
    for reason, count in sorted(contents.quarantined.items()):
        row("Quarantined", reason, count)
    return {"namespace": context.namespace, "rows": rows}


def _extra_sections(context: Any, contents: TopicContents) -> list[list[tuple[str, str, str]]]:
    from . import day

    return [section(context, contents) for section in getattr(day, "REPORT_SECTIONS", [])]


def render(report: dict[str, Any], console: Console) -> None:
    table = Table(title=f"A day on the My Number platform ({report['namespace']})", show_lines=False)
    table.add_column("", style="bold")
    table.add_column("what")
    table.add_column("count", justify="right")
    previous = None
    for section, label, value in report["rows"]:
        table.add_row(section if section != previous else "", label, value)
        previous = section
    console.print(table)
