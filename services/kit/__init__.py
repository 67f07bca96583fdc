"""The shared service kit: written once, used by all four services.

- `settings`: the environment every service reads.
- `logging`: JSON logs in which an Individual Number can never appear.
- `messaging`: the broker factory, envelope checks, the dead-letter route and the handler registry.
- `idempotency`: one effect per event, deterministic output event ids.
- `store`: the MongoDB connection (PyMongo's async API) and transient-failure handling.
- `http`: the service's ASGI app with /health, /ready and Prometheus /metrics.
- `people`: the pseudonymous person reference.
- `clock`: an injectable clock for sweeps and tests.
"""
