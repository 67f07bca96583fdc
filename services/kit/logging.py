"""Structured JSON logging (python-json-logger) in which an Individual Number can never appear.

Redaction happens in a logging filter on the handler, so every record is cleaned, whoever
wrote it: our code, FastStream, aiokafka or PyMongo.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from .redaction import redact


class RedactNumbersFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        for name, value in list(record.__dict__.items()):
            if isinstance(value, str) and name not in ("msg", "exc_text"):
                setattr(record, name, redact(value))
        return True


def configure_logging(service: str, level: str = "INFO", stream: Any = None) -> logging.Handler:
    """Send every log record, as one JSON line, to `stream` (stderr by default), redacted."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields={"service": service},
        )
    )
    handler.addFilter(RedactNumbersFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_mynumber_handler", False):
            root.removeHandler(existing)
    handler._mynumber_handler = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
