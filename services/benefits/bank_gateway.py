"""The bank gateway: bulk transfers over the bank's HTTP API (see `bank_simulator` for the API).

- Every transfer carries an idempotency key, so a retried call never moves money twice.
- A timeout, a connection error or a 5xx is retried with exponential back-off, with the same keys.
- A 4xx is final: the request itself was refused, retrying cannot help.
- A circuit breaker stops calling a bank that keeps failing, and lets one trial call through
  after `reset_seconds`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger(__name__)


class BankUnavailable(Exception):
    """The bank did not answer usefully (timeouts, 5xx, open circuit): try again later, same keys."""


class BankRefusedRequest(Exception):
    """The bank answered 4xx: the request is refused as a whole and will not succeed by retrying."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"the bank refused the request ({status_code}): {detail[:200]}")
        self.status_code = status_code


class CircuitBreaker:
    """Closed: calls pass. After `failure_threshold` failures in a row: open, calls are refused.
    After `reset_seconds`: half open, one trial call; its success closes, its failure re-opens."""

    def __init__(self, failure_threshold: int, reset_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half_open" if self._clock() - self._opened_at >= self.reset_seconds else "open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial_running:
            self._trial_running = True
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_running = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._trial_running or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
        self._trial_running = False


@dataclass(frozen=True)
class TransferOrder:
    idempotency_key: str
    end_to_end_id: str
    reference: str
    bank_code: str
    branch_code: str
    account_type: str
    account_number: str
    holder_name_kana: str
    amount_yen: int


@dataclass(frozen=True)
class TransferResult:
    idempotency_key: str
    accepted: bool
    transfer_id: str | None
    reason: str | None


# Answers that mean "not now" rather than "no": timed out, in conflict with a request still
# running under the same key, too early, too many requests. They are retried like a 5xx.
NOT_NOW = frozenset({408, 409, 425, 429})


class BankGateway:
    def __init__(
        self,
        base_url: str,
        *,
        timeout_seconds: float,
        max_attempts: int,
        backoff_seconds: float,
        breaker: CircuitBreaker,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.breaker = breaker
        self._timeout = timeout_seconds
        self._max_attempts = max_attempts
        self._backoff = backoff_seconds
        self._client = httpx.AsyncClient(base_url=base_url, transport=transport, timeout=timeout_seconds)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The bank's answer, retried on timeouts, 5xx and "not now" answers. A refusal (4xx) is
        final only while no earlier attempt may have been carried out: after a timeout or a 5xx,
        the request's outcome is unknown, so a refusal of the retry says nothing about it and the
        caller is told the bank is unavailable (payments stay queued, with the same keys)."""
        delay = self._backoff
        outcome_unknown = False
        for attempt in range(1, self._max_attempts + 1):
            if not self.breaker.allow():
                raise BankUnavailable("the circuit to the bank is open")
            try:
                # wait_for bounds the whole call, whatever the transport does with its own timeouts.
                response = await asyncio.wait_for(self._client.request(method, path, **kwargs), self._timeout)
            except (TimeoutError, httpx.TransportError) as error:
                self.breaker.record_failure()
                outcome_unknown = True
                problem = f"{type(error).__name__}"
            else:
                if response.status_code < 500:
                    self.breaker.record_success()  # the bank is up, even when it refuses
                    if response.status_code < 400:
                        return response
                    if response.status_code not in NOT_NOW:
                        if outcome_unknown:
                            raise BankUnavailable(f"the bank refused a retry of {path} (HTTP {response.status_code}) "
                                                  "whose first attempt may have been carried out")
                        raise BankRefusedRequest(response.status_code, response.text)
                else:
                    self.breaker.record_failure()
                    outcome_unknown = True
                problem = f"HTTP {response.status_code}"
            log.warning("bank call failed, will retry", extra={"path": path, "attempt": attempt, "problem": problem})
            if attempt < self._max_attempts:
                await asyncio.sleep(delay)
                delay *= 2
        raise BankUnavailable(f"the bank did not answer {path} after {self._max_attempts} attempts")

    async def send_transfers(self, orders: Sequence[TransferOrder]) -> dict[str, TransferResult]:
        """Send one bulk transfer; the results by idempotency key (a duplicated answer counts once)."""
        body = {"transfers": [order.__dict__ for order in orders]}
        response = await self._call("POST", "/v1/bulk-transfers", json=body)
        results: dict[str, TransferResult] = {}
        for item in response.json()["results"]:
            results.setdefault(item["idempotency_key"], TransferResult(
                idempotency_key=item["idempotency_key"], accepted=item["status"] == "accepted",
                transfer_id=item.get("transfer_id"), reason=item.get("reason"),
            ))
        return results

    async def statement(self, after: int, limit: int = 1000) -> tuple[list[dict[str, Any]], int]:
        response = await self._call("GET", "/v1/statement", params={"after": after, "limit": limit})
        data = response.json()
        return data["entries"], int(data["next_after"])

    async def statement_summary(self, reference: str) -> tuple[int, int]:
        response = await self._call("GET", "/v1/statement/summary", params={"reference": reference})
        data = response.json()
        return int(data["count"]), int(data["total_yen"])
