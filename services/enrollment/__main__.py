"""`python -m services.enrollment`: run the enrollment service with uvicorn (services/kit/http.py: serve)."""

from services.kit.http import serve

from .app import create_app
from .settings import EnrollmentSettings

if __name__ == "__main__":
    settings = EnrollmentSettings()
    serve(create_app(settings), settings)
