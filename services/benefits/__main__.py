"""`python -m services.benefits` runs the benefits service with uvicorn (settings from MYNUMBER_* variables)."""

from __future__ import annotations

import uvicorn

from .app import create_app
from .settings import BenefitsSettings


def main() -> None:
    settings = BenefitsSettings()
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port, log_config=None)


if __name__ == "__main__":
    main()
