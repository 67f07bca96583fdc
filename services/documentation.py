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
    return json.loads(_specification(apps).to_json())


def _specification(apps: dict[str, Any] | None = None) -> Any:
    apps = apps if apps is not None else _apps()
    return AsyncAPI(
        *(app.state.service.broker for app in apps.values()),
        title="My Number event platform",
        version="1.0.0",
        description=(
            "Topics, partner requests and facts of the enrollment, insurance, benefits and licensing services. "
            "Every message is a CloudEvents 1.0 event in Kafka binary content mode (ce_* headers, JSON value). "
            "Partner requests must be signed (ce_signature, ce_signaturekeyid)."
        ),
        schema_version="3.0.0",
    ).to_specification()


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


README = DOCS.parent / "README.md"
CONFIG_START, CONFIG_END = "<!-- configuration:start -->", "<!-- configuration:end -->"


def _settings_classes() -> dict[str, type]:
    from services.kit.settings import ServiceSettings

    classes: dict[str, type] = {"every service": ServiceSettings}
    for name in topics.SERVICES:
        try:
            module = importlib.import_module(f"services.{name}.settings")
        except ModuleNotFoundError:
            continue
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, ServiceSettings) and value is not ServiceSettings:
                classes[name] = value
    return classes


def configuration_table() -> str:
    """Every environment variable of every service, from the settings classes themselves."""
    from pydantic import SecretStr

    from services.kit.settings import ServiceSettings

    lines = ["| variable | service | default | meaning |", "|---|---|---|---|"]
    for owner, settings_class in _settings_classes().items():
        for name, field in settings_class.model_fields.items():
            if owner != "every service" and name in ServiceSettings.model_fields:
                continue
            default = field.default
            if isinstance(default, SecretStr):
                shown = "a development-only value" if default.get_secret_value() else "(empty)"
            elif default in ("", None):
                shown = "(empty)"
            else:
                shown = f"`{default}`"
            description = (field.description or "").replace("|", "\\|").replace("\n", " ")
            lines.append(f"| `MYNUMBER_{name.upper()}` | {owner} | {shown} | {description} |")
    return "\n".join(lines)


def readme_with_configuration(readme: str) -> str:
    start, end = readme.index(CONFIG_START) + len(CONFIG_START), readme.index(CONFIG_END)
    return readme[:start] + "\n" + configuration_table() + "\n" + readme[end:]


def write() -> list[Path]:
    written = []
    README.write_text(readme_with_configuration(README.read_text(encoding="utf-8")), encoding="utf-8")
    written.append(README)
    for path, text in render().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


# The browser pages use the AsyncAPI React component and Redoc, fetched once from the npm
# registry with `npm pack` and served from docs/site/, so the pages work offline.
ASYNCAPI_UI = ("@asyncapi/react-component", "3.1.5", {"browser/standalone/index.js": "asyncapi-ui.js",
                                                      "styles/default.min.css": "asyncapi-ui.css"})
REDOC = ("redoc", "2.5.0", {"bundles/redoc.standalone.js": "redoc.standalone.js"})
SITE = DOCS / "site"


def _npm_package_files(package: tuple[str, str, dict[str, str]], cache: Path) -> dict[str, Path]:
    import shutil
    import subprocess
    import tarfile

    name, version, wanted = package
    folder = cache / f"{name.replace('/', '__').lstrip('@')}-{version}"
    if not all((folder / target).exists() for target in wanted.values()):
        folder.mkdir(parents=True, exist_ok=True)
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is needed once to fetch the documentation viewers")
        result = subprocess.run([npm, "pack", f"{name}@{version}", "--silent"], cwd=folder, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"npm pack {name}@{version} failed: {result.stderr.strip()[:300]}")
        archive = folder / result.stdout.strip().splitlines()[-1]
        with tarfile.open(archive) as tar:
            for inner, target in wanted.items():
                source = tar.extractfile(f"package/{inner}")
                assert source is not None
                (folder / target).write_bytes(source.read())
        archive.unlink()
    return {target: folder / target for target in wanted.values()}


def write_site(cache: Path | None = None) -> list[Path]:
    """docs/site/: the AsyncAPI page and one Redoc page per service's OpenAPI document."""
    import shutil

    from faststream.specification.asyncapi.site import get_asyncapi_html

    cache = cache or Path.home() / ".cache" / "mynumber" / "docs-viewers"
    SITE.mkdir(parents=True, exist_ok=True)
    written = []
    for package in (ASYNCAPI_UI, REDOC):
        for target, source in _npm_package_files(package, cache).items():
            shutil.copyfile(source, SITE / target)
            written.append(SITE / target)
    apps = _apps()

    page = get_asyncapi_html(_specification(apps), asyncapi_js_url="asyncapi-ui.js",
                             asyncapi_css_url="asyncapi-ui.css", try_it_out_path=None)
    # Offline and unambiguous: declare UTF-8 (the viewer's bundle is not ASCII) and drop remote icons.
    page = "\n".join(line for line in page.splitlines() if 'rel="icon"' not in line)
    page = page.replace("<head>", '<head>\n        <meta charset="utf-8">', 1)
    (SITE / "asyncapi.html").write_text(page, encoding="utf-8")
    written.append(SITE / "asyncapi.html")
    links = []
    for name, document in openapi_documents(apps).items():
        html = (
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>"
            f"{name} API</title></head><body><div id='redoc'></div>"
            "<script src='redoc.standalone.js'></script><script>"
            f"Redoc.init({json.dumps(document, ensure_ascii=False)}, {{}}, document.getElementById('redoc'));"
            "</script></body></html>"
        )
        (SITE / f"openapi-{name}.html").write_text(html, encoding="utf-8")
        written.append(SITE / f"openapi-{name}.html")
        links.append(f"<li><a href='openapi-{name}.html'>{name} HTTP API (OpenAPI)</a></li>")
    (SITE / "index.html").write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>My Number platform docs</title></head><body>"
        "<h1>My Number event platform</h1><ul><li><a href='asyncapi.html'>Event catalogue (AsyncAPI)</a></li>"
        + "".join(links) + "</ul></body></html>",
        encoding="utf-8",
    )
    written.append(SITE / "index.html")
    return written


if __name__ == "__main__":
    for path in write():
        print(f"wrote {path.relative_to(DOCS.parent)}", file=sys.stderr)
