"""Benefits: the public-fund receiving account, payout batches and their payment through the bank gateway.

Besides the rooms every service has (domain, handlers, store, api, settings, app), benefits has:
- `bank_gateway`: the httpx client of the bank's bulk-transfer API, with retries and a circuit breaker;
- `dispatcher`: the loop that pays queued payments and reads the bank statement (see its docstring);
- `bank_simulator`: an ASGI bank for the demo and the tests (idempotent, with injectable faults).
"""
