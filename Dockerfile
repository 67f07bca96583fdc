# One image for every service: `python -m services.<name>` picks the service.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends fonts-ipafont-gothic \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 mynumber
WORKDIR /app

COPY requirements.txt pyproject.toml ./
COPY contracts ./contracts
COPY services ./services
COPY cli ./cli
RUN pip install --no-cache-dir "uv==0.13.9" \
 && uv pip install --system --no-cache -r requirements.txt

USER mynumber
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=6 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=2).status == 200 else 1)"
ENTRYPOINT ["python", "-m"]
CMD ["services.enrollment"]
