"""`python -m reliability`: run the fault suite and the incident replays, then write the figures
table into docs/reliability.md.

    python -m reliability                  # 20,000 events per fault scenario (the full run)
    python -m reliability --events 2000    # a quicker run
    python -m reliability --only kill,bank # some scenarios (names: kill kafka mongodb bank poison duplicates scale)
    python -m reliability --resume         # after an interrupted run: keep the scenarios that passed, run the rest
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import report
from .stack import REPO

# The file each scenario's figures are saved to (tests/faults/test_faults.py), by scenario name.
RESULT_FILES = {"kill": "1-kill", "kafka": "2-kafka", "mongodb": "3-mongodb", "bank": "4-bank",
                "poison": "5-poison", "duplicates": "6-duplicates", "scale": "7-scale-out"}

TESTS = {
    "kill": "test_kill_9_one_instance_of_each_service_in_turn",
    "kafka": "test_restart_the_kafka_broker_mid_stream",
    "mongodb": "test_restart_the_mongodb_server_mid_stream_services_back_off_without_crashing",
    "bank": "test_bank_times_out_and_answers_500_for_a_while",
    "poison": "test_poison_messages_at_5_percent_are_dead_lettered_or_quarantined_and_stall_nothing",
    "duplicates": "test_every_event_delivered_twice_and_reordered_across_keys",
    "scale": "test_scale_out_two_instances_per_service_with_a_rebalance_each_way",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reliability", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000, help="partner events per fault scenario (default 20,000)")
    parser.add_argument("--only", default="", help="comma-separated scenario names; default: all")
    parser.add_argument("--no-incidents", action="store_true", help="skip the incident replays")
    parser.add_argument("--document", default=str(REPO / "docs" / "reliability.md"), help="where the table goes")
    parser.add_argument("--section", default="", help="which figures block of the document to replace (default: the main one)")
    parser.add_argument("--render-only", action="store_true", help="rewrite the table from the last run's results")
    parser.add_argument("--resume", action="store_true",
                        help="keep the results of scenarios that already passed at this event count and run only the others")
    args = parser.parse_args(argv)

    chosen = [name.strip() for name in args.only.split(",") if name.strip()] or list(TESTS)
    unknown = [name for name in chosen if name not in TESTS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {', '.join(TESTS)}")
    results = REPO / "test-artifacts" / "reliability" / (args.section or "main")
    document = Path(args.document) if os.path.isabs(args.document) else REPO / args.document
    if args.render_only:
        report.write(document, results, command=(results / "command.txt").read_text().strip(), section=args.section)
        return 0
    shown = " ".join(["python -m reliability", f"--events {args.events}", *([f"--section {args.section}"] if args.section else []),
                      *([f"--only {args.only}"] if args.only else []), *(["--no-incidents"] if args.no_incidents else []),
                      *(["--resume"] if args.resume else [])])
    if args.resume:
        kept = passed_before(results, chosen, args.events)
        chosen = [name for name in chosen if name not in kept]
        print(f"kept from the interrupted run: {', '.join(kept) or 'none'}", flush=True)
        for name in chosen:
            (results / f"{RESULT_FILES[name]}.json").unlink(missing_ok=True)
    else:
        shutil.rmtree(results, ignore_errors=True)
    results.mkdir(parents=True, exist_ok=True)
    if not chosen and args.no_incidents:
        (results / "command.txt").write_text(shown)
        report.write(document, results, command=shown, section=args.section)
        return 0
    selection = ["tests/faults/test_faults.py", "-k", " or ".join(TESTS[name] for name in chosen)]
    if not args.no_incidents:
        selection = ["tests/faults/test_faults.py", "tests/incidents", "-k",
                     " or ".join([*(TESTS[name] for name in chosen), "incidents"])]
    env = dict(os.environ, MYNUMBER_FAULT_EVENTS=str(args.events), MYNUMBER_FAULT_RESULTS=str(results))
    command = [sys.executable, "-m", "pytest", *selection, "-p", "no:cacheprovider", "-o", "timeout=0", "-v",
               f"--junitxml={results / 'junit.xml'}"]
    print("running:", " ".join(command[2:]), flush=True)
    outcome = subprocess.run(command, cwd=REPO, env=env).returncode
    (results / "command.txt").write_text(shown)
    report.write(document, results, command=shown, section=args.section)
    print(f"figures written to {args.document}", flush=True)
    return outcome


def passed_before(results: Path, chosen: list[str], events: int) -> list[str]:
    """The chosen scenarios whose saved figures show a pass with at least `events` partner events."""
    kept = []
    for name in chosen:
        saved = results / f"{RESULT_FILES[name]}.json"
        if saved.exists():
            figures = json.loads(saved.read_text())
            if figures.get("passed") and figures.get("events", 0) >= events:
                kept.append(name)
    return kept


if __name__ == "__main__":
    sys.exit(main())
