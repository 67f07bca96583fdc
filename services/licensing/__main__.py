"""`python -m services.licensing` runs the licensing service with uvicorn (services/kit/http.py: serve)."""

from __future__ import annotations

from services.kit.http import serve

from .app import create_app
from .settings import LicensingSettings


def main() -> None:
    settings = LicensingSettings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
