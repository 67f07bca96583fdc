"""The bank gateway against the bank simulator (in-process): idempotency keys keep retries from
moving money twice, 5xx, timeouts and "not now" answers are retried, a 4xx is final unless an
earlier attempt may have been carried out, the breaker opens and recovers."""

from __future__ import annotations

import httpx
import pytest

from services.benefits.bank_gateway import (
    BankGateway,
    BankRefusedRequest,
    BankUnavailable,
    CircuitBreaker,
    TransferOrder,
)
from services.benefits.bank_simulator import BankState, FaultPlan, create_bank_simulator


def order(n: int, *, key: str | None = None, amount: int = 1000, account: str = "1234567") -> TransferOrder:
    return TransferOrder(idempotency_key=key or f"child_benefit:2026-06:p{n}#1", end_to_end_id=f"child_benefit:2026-06:p{n}",
                         reference="batch-1", bank_code="0005", branch_code="123", account_type="ordinary",
                         account_number=account, holder_name_kana="ヤマダ タロウ", amount_yen=amount)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def gateway(bank: BankState, *, attempts: int = 4, threshold: int = 10, clock: Clock | None = None,
            transport: httpx.AsyncBaseTransport | None = None) -> BankGateway:
    return BankGateway("http://bank", timeout_seconds=0.3, max_attempts=attempts, backoff_seconds=0.0,
                       breaker=CircuitBreaker(threshold, 30.0, clock or Clock()),
                       transport=transport or httpx.ASGITransport(app=create_bank_simulator(bank)))


async def test_a_retried_or_repeated_transfer_moves_money_once():
    bank = BankState(faults=FaultPlan(error_500_every=2, error_500_after_booking_every=3, duplicate_answers_every=1))
    bank_gateway = gateway(bank)
    first = await bank_gateway.send_transfers([order(1), order(2)])  # request 1: booked, answered twice
    # Requests 2 and 4 answer 500, request 3 books and answers 500, request 5 replays and answers twice.
    second = await bank_gateway.send_transfers([order(1), order(2), order(3)])
    assert first.keys() == {order(1).idempotency_key, order(2).idempotency_key}
    assert all(r.accepted for r in [*first.values(), *second.values()])
    assert second[order(1).idempotency_key].transfer_id == first[order(1).idempotency_key].transfer_id
    assert [e.end_to_end_id for e in bank.entries] == ["child_benefit:2026-06:p1", "child_benefit:2026-06:p2",
                                                       "child_benefit:2026-06:p3"]
    assert bank.faults_injected == {"duplicate_answers": 2, "error_500": 2, "error_500_after_booking": 1}


async def test_a_timeout_after_booking_is_retried_with_the_same_key_without_paying_twice():
    bank = BankState(faults=FaultPlan(timeout_every=1, timeout_seconds=5))
    with pytest.raises(BankUnavailable):
        await gateway(bank, attempts=2).send_transfers([order(1)])
    assert len(bank.entries) == 1 and bank.faults_injected["timeout"] == 2
    bank.faults = FaultPlan()
    results = await gateway(bank).send_transfers([order(1)])
    assert results[order(1).idempotency_key].accepted and len(bank.entries) == 1


async def test_a_closed_account_and_a_reused_key_are_refused_per_transfer():
    bank = BankState(closed={"0005-123-7654321"})
    bank_gateway = gateway(bank)
    await bank_gateway.send_transfers([order(1)])
    results = await bank_gateway.send_transfers([order(2, account="7654321"), order(3, key=order(1).idempotency_key, amount=5)])
    assert results[order(2).idempotency_key].reason == "account_closed"
    assert results[order(1).idempotency_key].reason == "idempotency_key_reused"
    assert len(bank.entries) == 1


async def test_a_4xx_is_final_and_not_retried():
    calls = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(422, json={"detail": "malformed"})

    bank_gateway = gateway(BankState(), transport=httpx.MockTransport(refuse))
    with pytest.raises(BankRefusedRequest) as refused:
        await bank_gateway.send_transfers([order(1)])
    assert refused.value.status_code == 422 and len(calls) == 1
    assert bank_gateway.breaker.state == "closed", "a refusal is an answer: the bank is up"


class AnswersInTurn(httpx.AsyncBaseTransport):
    """The bank simulator behind a network that misbehaves in turn: for each call, "book" passes it
    to the bank but loses the answer (a timeout after booking), "ok" passes it, and a number
    answers with that status without reaching the bank."""

    def __init__(self, bank: BankState, *turns: str | int) -> None:
        self.simulator = httpx.ASGITransport(app=create_bank_simulator(bank))
        self.turns = list(turns)
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        turn = self.turns[min(self.calls, len(self.turns) - 1)]
        self.calls += 1
        if turn == "book":
            await self.simulator.handle_async_request(request)
            raise httpx.ReadTimeout("the answer was lost", request=request)
        if turn == "ok":
            return await self.simulator.handle_async_request(request)
        return httpx.Response(int(turn), json={"detail": f"answered {turn}"})


async def test_a_refusal_of_a_retry_whose_first_attempt_was_booked_leaves_the_outcome_open():
    """The first attempt books the transfer and its answer is lost; the retry is refused (the
    bank still holds the key, say). Taking that refusal as "nothing moved" would let a later
    attempt, under a new key, pay twice: the gateway reports the bank unavailable instead, and
    the next call with the same key finds the transfer booked once."""
    bank = BankState()
    with pytest.raises(BankUnavailable, match="may have been carried out"):
        await gateway(bank, transport=AnswersInTurn(bank, "book", 422)).send_transfers([order(1)])
    assert len(bank.entries) == 1
    results = await gateway(bank).send_transfers([order(1)])
    assert results[order(1).idempotency_key].accepted and len(bank.entries) == 1


async def test_too_many_requests_and_a_conflict_are_answers_to_try_again():
    bank = BankState()
    transport = AnswersInTurn(bank, 429, 409, "ok")
    results = await gateway(bank, transport=transport).send_transfers([order(1)])
    assert results[order(1).idempotency_key].accepted and transport.calls == 3 and len(bank.entries) == 1
    with pytest.raises(BankUnavailable):
        await gateway(bank, attempts=2, transport=AnswersInTurn(bank, 429)).send_transfers([order(2)])


async def test_the_breaker_opens_after_repeated_failures_and_lets_one_trial_through_later():
    bank = BankState(faults=FaultPlan(error_500_every=1))
    clock = Clock()
    bank_gateway = gateway(bank, attempts=3, threshold=3, clock=clock)
    with pytest.raises(BankUnavailable):
        await bank_gateway.send_transfers([order(1)])
    assert bank_gateway.breaker.state == "open" and bank.requests == 3
    with pytest.raises(BankUnavailable, match="circuit"):
        await bank_gateway.send_transfers([order(1)])
    assert bank.requests == 3, "an open circuit does not call the bank"
    clock.now = 31.0
    bank.faults = FaultPlan()
    assert (await bank_gateway.send_transfers([order(1)]))[order(1).idempotency_key].accepted
    assert bank_gateway.breaker.state == "closed" and len(bank.entries) == 1


def test_a_failed_trial_call_opens_the_circuit_again():
    clock = Clock()
    breaker = CircuitBreaker(2, 10.0, clock)
    breaker.record_failure()
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    clock.now = 10.0
    assert breaker.allow() and not breaker.allow(), "half open: exactly one trial"
    breaker.record_failure()
    assert breaker.state == "open"


def test_a_dispatcher_lease_shorter_than_one_bank_call_with_its_retries_is_refused_at_startup():
    from pydantic import ValidationError

    from services.benefits.settings import BenefitsSettings

    defaults = BenefitsSettings()
    assert defaults.dispatcher_lease_seconds > defaults.longest_bank_call_seconds()
    # 4 tries of 10 s, with 0.5 + 1 + 2 s of back-off between them.
    assert BenefitsSettings(bank_timeout_seconds=10, bank_max_attempts=4, bank_backoff_seconds=0.5,
                            dispatcher_lease_seconds=44).longest_bank_call_seconds() == 43.5

    with pytest.raises(ValidationError) as refused:
        BenefitsSettings(bank_timeout_seconds=10, bank_max_attempts=4, bank_backoff_seconds=0.5, dispatcher_lease_seconds=15)

    assert "MYNUMBER_DISPATCHER_LEASE_SECONDS (15) must be longer than one bulk bank call with all its retries (43.5 s" \
        in str(refused.value)
