"""`python -m reliability --resume`: a full run that was interrupted keeps the scenarios that
passed and runs only the rest. These tests need no servers: they work on saved figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import reliability.__main__ as command


def saved(results: Path, key: str, *, passed: bool, events: int) -> None:
    results.mkdir(parents=True, exist_ok=True)
    figures = {"scenario": key, "events": events, "records_sent": events, "effects": {}, "facts_published": 0,
               "distinct_facts": 0, "lost": 0, "duplicated": 0, "dead_lettered": {}, "quarantined": {},
               "seconds": 1.0, "passed": passed}
    (results / f"{key}.json").write_text(json.dumps(figures))


def test_only_scenarios_that_passed_at_the_asked_size_are_kept(tmp_path: Path) -> None:
    saved(tmp_path, "1-kill", passed=True, events=20_001)
    saved(tmp_path, "2-kafka", passed=False, events=20_001)
    saved(tmp_path, "3-mongodb", passed=True, events=1_001)

    kept = command.passed_before(tmp_path, ["kill", "kafka", "mongodb", "bank"], 20_000)

    assert kept == ["kill"]


def test_resume_with_nothing_left_to_run_renders_the_kept_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(command, "REPO", tmp_path)
    results = tmp_path / "test-artifacts" / "reliability" / "full-size"
    saved(results, "1-kill", passed=True, events=20_001)
    document = tmp_path / "reliability.md"
    document.write_text("# Reliability\n\n<!-- reliability-figures:full-size:start -->\n<!-- reliability-figures:full-size:end -->\n")
    monkeypatch.setattr(command.subprocess, "run", lambda *a, **k: pytest.fail("nothing was left to run"))

    outcome = command.main(["--events", "20000", "--only", "kill", "--no-incidents", "--section", "full-size",
                            "--resume", "--document", str(document)])

    assert outcome == 0
    text = document.read_text()
    assert "| 1 | 1-kill | 20,001 |" in text
    assert "--resume" in text


def test_resume_deletes_the_figures_of_the_scenarios_it_runs_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(command, "REPO", tmp_path)
    results = tmp_path / "test-artifacts" / "reliability" / "full-size"
    saved(results, "1-kill", passed=True, events=20_001)
    saved(results, "2-kafka", passed=False, events=20_001)
    document = tmp_path / "reliability.md"
    ran: list[list[str]] = []

    class Finished:
        returncode = 0

    def run(argv: list[str], **_: object) -> Finished:
        ran.append(argv)
        return Finished()

    monkeypatch.setattr(command.subprocess, "run", run)

    command.main(["--events", "20000", "--only", "kill,kafka", "--no-incidents", "--section", "full-size",
                  "--resume", "--document", str(document)])

    assert len(ran) == 1 and command.TESTS["kafka"] in " ".join(ran[0]) and command.TESTS["kill"] not in " ".join(ran[0])
    assert (results / "1-kill.json").exists() and not (results / "2-kafka.json").exists()
