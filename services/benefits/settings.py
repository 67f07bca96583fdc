"""Settings of the benefits service (env prefix `MYNUMBER_`, e.g. `MYNUMBER_OPT_OUT_REPLY_DAYS`)."""

from __future__ import annotations

from pydantic import Field

from services.kit.settings import ServiceSettings


class BenefitsSettings(ServiceSettings):
    http_port: int = Field(8003, description="Port the HTTP API listens on.")

    # The opt-out route (facts, section 5): no reply within 45 days registers the pension account.
    opt_out_reply_days: int = Field(45, ge=1, description="Days the holder has to refuse a proposed pension account.")

    # The bank gateway.
    bank_base_url: str = Field("http://127.0.0.1:8900", description="Base URL of the bank's transfer API.")
    bank_timeout_seconds: float = Field(10.0, gt=0, description="How long one bulk transfer call may take.")
    bank_max_attempts: int = Field(4, ge=1, description="Tries of one bulk call on a timeout or 5xx before giving up for now.")
    bank_backoff_seconds: float = Field(0.5, ge=0, description="First back-off between tries; doubles each time.")
    bank_transfer_batch_size: int = Field(500, ge=1, le=5000, description="Transfers per bulk call.")
    breaker_failure_threshold: int = Field(5, ge=1, description="Failed bulk calls in a row that open the circuit.")
    breaker_reset_seconds: float = Field(30.0, gt=0, description="How long the circuit stays open before one trial call.")

    # The payment dispatcher.
    dispatcher_enabled: bool = Field(True, description="Run the payment dispatcher loop with the app.")
    dispatcher_claim_size: int = Field(2000, ge=1, description="Payments claimed per round.")
    dispatcher_idle_seconds: float = Field(1.0, gt=0, description="Pause between rounds when there is nothing to do.")
    dispatcher_lease_seconds: float = Field(15.0, gt=0, description="How long a dispatcher's lease lasts without renewal.")
