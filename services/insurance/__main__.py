"""`python -m services.insurance` runs the service with uvicorn."""

from __future__ import annotations

import uvicorn

from .app import create_app
from .settings import InsuranceSettings


def main() -> None:
    settings = InsuranceSettings()
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port, log_config=None)


if __name__ == "__main__":
    main()
