"""`python -m services.enrollment`: run the enrollment service with uvicorn."""

import uvicorn

from .app import create_app
from .settings import EnrollmentSettings

if __name__ == "__main__":
    settings = EnrollmentSettings()
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port, log_config=None)
