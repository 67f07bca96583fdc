"""Partner agencies install the contracts package alone: no broker client, database driver or HTTP client."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = {"aiokafka", "kafka-python", "confluent-kafka", "faststream", "pymongo", "motor", "httpx", "requests",
             "aiohttp", "urllib3", "fastapi", "starlette"}
ALLOWED = {"mynumber-contracts", "pydantic", "pydantic-core", "annotated-types", "typing-extensions",
           "typing-inspection", "cloudevents", "deprecation", "python-dateutil", "six", "packaging",
           "cryptography", "cffi", "pycparser", "tzdata"}


@pytest.fixture(scope="module")
def empty_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("partner") / "venv"
    uv = REPO / ".venv" / "bin" / "uv"
    subprocess.run([str(uv), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    subprocess.run([str(uv), "pip", "install", "-q", "--python", str(venv / "bin" / "python"), str(REPO / "contracts")],
                   check=True)
    return venv


def test_installs_only_pydantic_cloudevents_and_cryptography(empty_venv):
    listing = subprocess.run([str(REPO / ".venv" / "bin" / "uv"), "pip", "list", "--format", "json", "--python",
                              str(empty_venv / "bin" / "python")], check=True, capture_output=True, text=True)
    installed = {entry["name"].lower().replace("_", "-") for entry in json.loads(listing.stdout)}
    assert not installed & FORBIDDEN
    assert installed <= ALLOWED, installed - ALLOWED


def test_a_partner_can_validate_a_number_in_the_bare_install(empty_venv):
    script = (
        "from mynumber_contracts import MyNumber\n"
        "print(MyNumber('123456789018'))\n"
        "try:\n    MyNumber('123456789019')\nexcept ValueError as e:\n    print('rejected:', e)\n"
    )
    result = subprocess.run([str(empty_venv / "bin" / "python"), "-c", script], check=True, capture_output=True, text=True)
    assert result.stdout.splitlines() == [
        "********9018",
        "rejected: not a valid Individual Number: the check digit (12th digit) does not match",
    ]
