"""Generates the platform's interface documents from the code:

- `docs/asyncapi.json`: one AsyncAPI 3.0 document with every topic, and every message each
  service consumes and publishes (FastStream builds it from the typed subscribers);
- `docs/openapi/<service>.json`: each service's HTTP API (FastAPI builds it).

Run `python -m services.documentation` (or `mynumber docs`) after changing a contract; a test
fails while the committed documents are out of date.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

from faststream.specification import AsyncAPI
from mynumber_contracts import topics

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _apps() -> dict[str, Any]:
    apps = {}
    for name in topics.SERVICES:
        try:
            module = importlib.import_module(f"services.{name}.app")
        except ModuleNotFoundError as missing:
            if missing.name and missing.name.startswith(f"services.{name}"):
                continue  # that service is not built yet
            raise
        apps[name] = module.create_app()
    return apps


def asyncapi_document(apps: dict[str, Any] | None = None) -> dict[str, Any]:
    apps = apps if apps is not None else _apps()
    spec = AsyncAPI(
        *(app.state.service.broker for app in apps.values()),
        title="My Number event platform",
        version="1.0.0",
        description=(
            "Topics, partner requests and facts of the enrollment, insurance, benefits and licensing services. "
            "Every message is a CloudEvents 1.0 event in Kafka binary content mode (ce_* headers, JSON value). "
            "Partner requests must be signed (ce_signature, ce_signaturekeyid)."
        ),
        schema_version="3.0.0",
    )
    return json.loads(spec.to_specification().to_json())


def openapi_documents(apps: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    apps = apps if apps is not None else _apps()
    return {name: app.openapi() for name, app in apps.items()}


def render(apps: dict[str, Any] | None = None) -> dict[Path, str]:
    """Every document, as the text that is committed."""
    apps = apps if apps is not None else _apps()
    files = {DOCS / "asyncapi.json": json.dumps(asyncapi_document(apps), indent=2, ensure_ascii=False, sort_keys=True) + "\n"}
    for name, document in openapi_documents(apps).items():
        files[DOCS / "openapi" / f"{name}.json"] = json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    return files


def write() -> list[Path]:
    written = []
    for path, text in render().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write():
        print(f"wrote {path.relative_to(DOCS.parent)}", file=sys.stderr)
