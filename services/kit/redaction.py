"""Removes Individual Numbers from text before it is logged or written into an error record."""

from __future__ import annotations

import re

# Any run of exactly 12 digits is redacted, valid check digit or not: a mistyped number is
# still someone's number. Fullwidth digits are included, since people type them.
_TWELVE_DIGITS = re.compile(r"(?<![0-9０-９])[0-9０-９]{12}(?![0-9０-９])")
REDACTED = "[REDACTED-NUMBER]"


def redact(text: str) -> str:
    return _TWELVE_DIGITS.sub(REDACTED, text)
