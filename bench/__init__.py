"""The benchmark suite: raw Kafka and MongoDB ceilings, each service's main flow against them,
end-to-end latency, the eligibility check over HTTP, the national payout and peak memory.

    .venv/bin/python -m bench run [--smoke] [--only NAME ...] [--profile]
    .venv/bin/python -m bench plot

Results go to `bench/results/<name>.json` and `bench/results/summary.json`; see docs/performance.md.
"""
