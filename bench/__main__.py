"""`python -m bench run [--smoke] [--only NAME ...] [--profile]` and `python -m bench plot`.

Servers: `--kafka` / `--mongodb`, else KAFKA_BOOTSTRAP_SERVERS / MONGODB_URL, else the native
stack's defaults (127.0.0.1:9092, 127.0.0.1:27017). For the published figures, run against a
private stack (see docs/performance.md) so other people's tests do not share the broker.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from .common import Context
from .config import FULL, SMOKE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the benchmarks and write bench/results/*.json")
    run.add_argument("--smoke", action="store_true", help="tiny counts: proves the code works, the timings mean nothing")
    run.add_argument("--only", action="append", metavar="NAME",
                     help="run only these (repeatable, comma-separated; a prefix such as 'flow' or 'raw' selects a group)")
    run.add_argument("--profile", action="store_true", help="sample each service with py-spy during its main flow")
    run.add_argument("--kafka", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    run.add_argument("--mongodb", default=os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/"))
    run.add_argument("--out", type=Path, default=None, help="where results go (default bench/results)")
    plot = commands.add_parser("plot", help="draw docs/images/perf-*.png from the results")
    plot.add_argument("--out", type=Path, default=None)
    plot.add_argument("--images", type=Path, default=None)
    report = commands.add_parser("report", help="print the Markdown tables of docs/performance.md")
    report.add_argument("--out", type=Path, default=None)
    commands.add_parser("list", help="list the benchmarks")
    args = parser.parse_args(argv)

    from . import runner

    if args.command == "list":
        print("\n".join(runner.BENCHMARKS))
        return 0
    if args.command == "report":
        from . import report as report_module

        print(report_module.tables(args.out or runner.default_out()), end="")
        return 0
    if args.command == "plot":
        from . import plots

        for path in plots.draw(args.out or runner.default_out(), args.images):
            print(path)
        return 0
    ctx = Context(kafka=args.kafka, mongodb=args.mongodb, scale=SMOKE if args.smoke else FULL,
                  out=args.out or runner.default_out(), profile=args.profile)
    summary = asyncio.run(runner.run(ctx, args.only))
    failed = [n for n, b in summary["benchmarks"].items() if b["this_run"] and b["status"] == "failed"]
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
