"""`python -m services.benefits` runs the benefits service with uvicorn (services/kit/http.py: serve) (settings from MYNUMBER_* variables)."""

from __future__ import annotations

from services.kit.http import serve

from .app import create_app
from .settings import BenefitsSettings


def main() -> None:
    settings = BenefitsSettings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
