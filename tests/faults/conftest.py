"""The fault suite runs on its OWN native stack (Kafka and FerretDB on private ports, in
`.stack/faultstack`), because it kills and restarts servers: the shared servers that other
tests use are never touched. The services run as real processes (`reliability.fleet`)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from reliability.audit import Figures
from reliability.stack import REPO, PrivateStack

# CI runs a small count per scenario; the documented full run uses 20,000 (see docs/reliability.md).
FAULT_EVENTS = int(os.environ.get("MYNUMBER_FAULT_EVENTS", "200"))
RESULTS = Path(os.environ.get("MYNUMBER_FAULT_RESULTS", str(REPO / "test-artifacts" / "reliability")))


@pytest.fixture(scope="session")
def fault_stack() -> Iterator[PrivateStack]:
    stack = PrivateStack.from_environment()
    missing = stack.missing_tools()
    if missing:
        pytest.skip(f"the fault suite needs its own native Kafka and FerretDB: {missing}")
    stack.up(fresh=True)
    try:
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="session")
def work_dir() -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    return RESULTS


def save(figures: Figures, key: str) -> None:
    """Keep the figures for `python -m reliability`, which writes the table in docs/reliability.md."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{key}.json").write_text(json.dumps(figures.summary(), ensure_ascii=False, indent=1))
