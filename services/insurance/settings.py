"""The insurance service's settings (environment variables prefixed `MYNUMBER_`)."""

from __future__ import annotations

from pydantic import Field

from services.kit.settings import ServiceSettings


class InsuranceSettings(ServiceSettings):
    """Every variable is prefixed `MYNUMBER_`, e.g. `MYNUMBER_NO_CARD_SURCHARGE=false` once the fees are equalised."""

    http_port: int = Field(8102, description="Port the HTTP API listens on (the CLI's port for insurance).")
    default_certificate_validity_years: int = Field(
        1, ge=1, le=5, description="Validity of an eligibility certificate when the insurer set none (the brief: 1 year)."
    )
    certificate_renewal_lead_days: int = Field(
        30, ge=1, le=365, description="The renewal sweep renews certificates that end within this many days."
    )
    no_card_surcharge: bool = Field(
        True, description="Whether patients treated without a usable card pay the no-card surcharge (later equalised)."
    )
    consent_window_hours: int = Field(24, ge=1, le=168, description="How long a patient's consent lasts.")
    release_readable_hours: int = Field(
        24, ge=1, le=168, description="How long the institution may read a medical-data release after it was made; "
                                      "after that it asks again, with the patient's consent.")
    prescription_history_years: int = Field(3, ge=1, description="Years of prescriptions an institution may see.")
    checkup_history_years: int = Field(5, ge=1, description="Years of specific health checkup results an institution may see.")
