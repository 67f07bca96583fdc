"""The generated AsyncAPI page, served locally and opened in headless Chromium, renders the
event catalogue: every service's topic names are visible in the DOM."""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from services import documentation

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                  "--virtual-time-budget=15000", "--window-size=1400,1800"]


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    documentation.write_site()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(documentation.SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    assert binary, "chromium is missing: run scripts/bootstrap (it installs Debian's chromium)"
    return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


def test_the_asyncapi_page_renders_every_topic(site, tmp_path):
    result = chromium("--dump-dom", f"{site}/asyncapi.html", profile=tmp_path / "profile")
    assert result.returncode == 0, result.stderr[-2000:]
    # Only what the viewer rendered counts, not the schema embedded in the page's script.
    dom = re.sub(r"<script.*?</script>", "", result.stdout, flags=re.S)
    assert 'id="introduction"' in dom or "aui-root" in dom, "the AsyncAPI viewer did not render"
    rendered = [name for name in documentation.asyncapi_document()["channels"]]
    assert rendered
    for service in documentation._apps():
        assert f"mynumber.{service}.requests" in dom, service
        assert f"mynumber.{service}.dead-letter" in dom, service
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "asyncapi-page.png"
    result = chromium(f"--screenshot={shot}", f"{site}/asyncapi.html", profile=tmp_path / "profile2")
    assert result.returncode == 0 and shot.stat().st_size > 10_000


def test_each_openapi_page_renders_its_routes(site, tmp_path):
    for name, document in documentation.openapi_documents().items():
        result = chromium("--dump-dom", f"{site}/openapi-{name}.html", profile=tmp_path / f"p-{name}")
        assert result.returncode == 0, result.stderr[-2000:]
        rendered = re.sub(r"<script.*?</script>", "", result.stdout, flags=re.S)
        first_path = sorted(document["paths"])[0]
        assert first_path in rendered, (name, first_path)
