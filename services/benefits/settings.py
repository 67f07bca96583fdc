"""Settings of the benefits service (env prefix `MYNUMBER_`, e.g. `MYNUMBER_OPT_OUT_REPLY_DAYS`)."""

from __future__ import annotations

from pydantic import Field, model_validator

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
    dispatcher_parallel_calls: int = Field(
        4, ge=1, le=16, description="Bulk transfer calls the dispatcher keeps in flight at once (each is one database "
                                    "and bank round trip: side by side they overlap).")
    dispatcher_idle_seconds: float = Field(1.0, gt=0, description="Pause between rounds when there is nothing to do.")
    dispatcher_lease_seconds: float = Field(
        60.0, gt=0,
        description="How long a dispatcher's lease lasts without renewal; longer than one bulk call with all its retries.")

    def longest_bank_call_seconds(self) -> float:
        """One bulk call at its worst: every try times out, with the doubling back-off between tries."""
        backoff = sum(self.bank_backoff_seconds * 2**step for step in range(self.bank_max_attempts - 1))
        return self.bank_max_attempts * self.bank_timeout_seconds + backoff

    @model_validator(mode="after")
    def _lease_outlasts_a_bank_call(self) -> BenefitsSettings:
        # The dispatcher renews its lease before each bulk call. If the lease ran out during one,
        # a second instance would send the same transfers again: the bank's idempotency keys keep
        # anyone from being paid twice, but the bank gets duplicate calls.
        longest = self.longest_bank_call_seconds()
        if self.dispatcher_lease_seconds <= longest:
            raise ValueError(
                f"MYNUMBER_DISPATCHER_LEASE_SECONDS ({self.dispatcher_lease_seconds:g}) must be longer than one bulk "
                f"bank call with all its retries ({longest:g} s: MYNUMBER_BANK_MAX_ATTEMPTS x MYNUMBER_BANK_TIMEOUT_SECONDS "
                f"plus the back-off)")
        return self
