"""`python -m services.licensing` runs the licensing service with uvicorn."""

from __future__ import annotations

import uvicorn

from .app import create_app
from .settings import LicensingSettings


def main() -> None:
    settings = LicensingSettings()
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port, log_config=None)


if __name__ == "__main__":
    main()
