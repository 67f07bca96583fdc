"""Enrollment's settings: the number-at-rest keys and the card rules.

Every variable is prefixed `MYNUMBER_`. Key material comes from the environment or from a
secret file (the `_FILE` variant wins). The defaults are fixed DEVELOPMENT-ONLY keys, so the
demo runs out of the box; the service logs a warning while it uses them.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from pydantic import Field, SecretStr

from services.kit.settings import ServiceSettings

from .domain import CardRules

DEVELOPMENT_NUMBER_KEYS = "dev-1:mI+/Q1aHHOSeP1mz3aUctoOeCzK5bqFRLc72lD3RTH8="
DEVELOPMENT_NUMBER_INDEX_KEY = "development-only-number-blind-index-key-change-me"


def _secret(value: SecretStr, file: Path | None) -> str:
    return file.read_text(encoding="utf-8").strip() if file else value.get_secret_value()


class EnrollmentSettings(ServiceSettings):
    http_port: int = Field(8101, description="Port the HTTP API listens on (the CLI's port for enrollment).")
    enrollment_number_keys: SecretStr = Field(
        SecretStr(DEVELOPMENT_NUMBER_KEYS),
        description=(
            "AES-GCM keys that encrypt the number at rest: 'keyid:base64key,...' (16, 24 or 32 bytes each). "
            "The first is current; the others only decrypt, until a key rotation has re-encrypted every record."
        ),
    )
    enrollment_number_keys_file: Path | None = Field(None, description="A secret file holding the same list; wins over the variable.")
    enrollment_number_index_key: SecretStr = Field(
        SecretStr(DEVELOPMENT_NUMBER_INDEX_KEY),
        description="HMAC key of the blind index that finds a resident by number (at least 32 bytes). Never rotated in place.",
    )
    enrollment_number_index_key_file: Path | None = Field(None, description="A secret file holding the blind-index key.")

    adult_age: int = Field(18, description="Holders of this age or older on the issue date get the longer validity.")
    adult_validity_birthdays: int = Field(10, description="An adult's card ends on this birthday after issue.")
    minor_validity_birthdays: int = Field(5, description="A minor's card ends on this birthday after issue.")
    certificate_validity_birthdays: int = Field(5, description="The electronic certificates end on this birthday after issue.")
    photo_exempt_below_age: int = Field(1, description="Applicants younger than this on the application date need no photo.")
    infant_photo_exemption_from: date = Field(date(2024, 12, 2), description="Applications from this date on get the infant exemption.")
    diplomatic_channel_opens_on: date = Field(date(2024, 5, 27), description="First day applications are taken abroad.")
    abroad_eligible_moved_on_or_after: date = Field(
        date(2015, 10, 5), description="Japanese nationals who moved abroad on or after this day may apply abroad."
    )
    certificate_font_path: Path = Field(
        Path("/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf"), description="A TrueType font that shows Japanese."
    )
    certificate_render_timeout_seconds: float = Field(
        10.0, description="A certificate not rendered in this time is refused as timed out and never delivered."
    )
    certificate_pickup_days: int = Field(
        7, ge=1, description="Days a residence certificate's PDF is kept for the kiosk to pick up; the retention "
                             "sweep then removes it (what was issued, when and where stays on record).")
    certificate_verification_days: int = Field(
        90, ge=1, description="Days a certificate's verification code answers valid; the retention sweep then deletes it.")
    expiry_sweep_interval_seconds: float = Field(
        0.0, description="Run the expiry sweep on this schedule inside the service; 0 leaves it to the operator command."
    )

    def number_keys(self) -> str:
        return _secret(self.enrollment_number_keys, self.enrollment_number_keys_file)

    def number_index_key(self) -> str:
        return _secret(self.enrollment_number_index_key, self.enrollment_number_index_key_file)

    def uses_development_keys(self) -> bool:
        return self.number_keys() == DEVELOPMENT_NUMBER_KEYS or self.number_index_key() == DEVELOPMENT_NUMBER_INDEX_KEY

    def card_rules(self) -> CardRules:
        return CardRules(
            adult_age=self.adult_age,
            adult_validity_birthdays=self.adult_validity_birthdays,
            minor_validity_birthdays=self.minor_validity_birthdays,
            certificate_validity_birthdays=self.certificate_validity_birthdays,
            photo_exempt_below_age=self.photo_exempt_below_age,
            infant_photo_exemption_from=self.infant_photo_exemption_from,
            diplomatic_channel_opens_on=self.diplomatic_channel_opens_on,
            abroad_eligible_moved_on_or_after=self.abroad_eligible_moved_on_or_after,
        )
