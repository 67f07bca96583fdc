"""Fault scenarios against real servers: each streams a mixed workload of partner events through
all four services (MYNUMBER_FAULT_EVENTS of them; 20,000 in the documented full run), breaks
something in the middle, waits until all work has settled, and counts. Pass: 0 lost, 0 duplicated.

What "lost" and "duplicated" mean is in reliability/audit.py: expected effects missing from the
services' databases or the bank's ledger; a business key with two effects, an output event id
reused for other content, or a payment credited twice by the bank.
"""

from __future__ import annotations

import pytest

from reliability import scenarios
from reliability.audit import Figures
from tests.faults.conftest import FAULT_EVENTS, save

pytestmark = pytest.mark.slow


def assert_exactly_once(figures: Figures) -> None:
    assert figures.events >= 0.9 * FAULT_EVENTS, figures.events
    assert figures.lost == [], f"{len(figures.lost)} lost, e.g. {figures.lost[:5]}"
    assert figures.duplicated == [], f"{len(figures.duplicated)} duplicated, e.g. {figures.duplicated[:5]}"
    assert figures.order_violations == [], f"per-person order broken: {figures.order_violations[:5]}"
    expected = figures.effects
    assert expected["cards"] == expected["residents"] and expected["bank credits"] == expected["payments"], expected


async def test_kill_9_one_instance_of_each_service_in_turn(fault_stack, work_dir):
    figures = await scenarios.kill_each_service(fault_stack, FAULT_EVENTS, work_dir)
    save(figures, "1-kill")
    assert_exactly_once(figures)
    assert [note.split(" (pid")[0] for note in figures.notes if note.startswith("kill -9")] == [
        "kill -9 enrollment", "kill -9 insurance", "kill -9 benefits", "kill -9 licensing"]
    assert not figures.dead_lettered and not figures.quarantined


async def test_restart_the_kafka_broker_mid_stream(fault_stack, work_dir):
    figures = await scenarios.restart_kafka(fault_stack, FAULT_EVENTS, work_dir)
    save(figures, "2-kafka")
    assert_exactly_once(figures)
    assert any(note.startswith("Kafka restarted") for note in figures.notes)
    assert not figures.dead_lettered, "a broker outage is transient: nothing is dead-lettered"


async def test_restart_the_mongodb_server_mid_stream_services_back_off_without_crashing(fault_stack, work_dir):
    figures = await scenarios.restart_mongodb(fault_stack, FAULT_EVENTS, work_dir)
    save(figures, "3-mongodb")
    assert_exactly_once(figures)
    assert any("exited on their own: none; restarts: none" in note for note in figures.notes), figures.notes
    assert not figures.dead_lettered, "a database outage is transient: nothing is dead-lettered"


async def test_bank_times_out_and_answers_500_for_a_while(fault_stack, work_dir):
    figures = await scenarios.bank_faults(fault_stack, FAULT_EVENTS, work_dir)
    save(figures, "4-bank")
    assert_exactly_once(figures)
    injected = figures.bank["faults_injected"]
    assert injected.get("error_500") and injected.get("timeout") and injected.get("error_500_after_booking"), injected


async def test_poison_messages_at_5_percent_are_dead_lettered_or_quarantined_and_stall_nothing(fault_stack, work_dir):
    figures = await scenarios.poison_messages(fault_stack, FAULT_EVENTS, work_dir)
    save(figures, "5-poison")
    assert_exactly_once(figures)  # every good event around them had its effect: no partition stalled
    assert figures.poison_sent >= 0.04 * figures.events
    assert figures.poison_unaccounted == []
    where = {kind: set(outcomes) for kind, outcomes in figures.poison_outcomes.items()}
    assert where == {
        "garbage_bytes": {"enrollment: not_json"},
        "schema_violation": {"insurance: schema_violation"},
        "string_over_1mb": {"benefits: schema_violation"},
        "deeply_nested_json": {"licensing: not_json"},
        "nul_characters": {"insurance: schema_violation"},
        "wrong_types": {"licensing: schema_violation"},
        "forged_signature": {"quarantine: bad_signature"},
        "unsigned": {"quarantine: unsigned"},
    }


async def test_every_event_delivered_twice_and_reordered_across_keys(fault_stack, work_dir):
    figures = await scenarios.duplicates_and_reordering(fault_stack, FAULT_EVENTS, work_dir)
    save(figures, "6-duplicates")
    assert_exactly_once(figures)
    assert figures.records_sent == 2 * figures.events
    assert not figures.dead_lettered and not figures.quarantined, "a redelivery is not bad input"
    control = figures.control  # the same audit, after the run's effects were damaged on purpose
    assert control is not None and any(item.startswith("card of person") for item in control.lost), control.lost
    assert any(item.startswith("2 cards held by person") for item in control.duplicated), control.duplicated
    assert any("published with 2 contents" in item for item in control.duplicated), control.duplicated


async def test_scale_out_two_instances_per_service_with_a_rebalance_each_way(fault_stack, work_dir):
    figures = await scenarios.scale_out(fault_stack, FAULT_EVENTS, work_dir)
    save(figures, "7-scale-out")
    assert_exactly_once(figures)
    assert any(note.startswith("a third instance") for note in figures.notes)
    assert any(note.startswith("the first instance of every service left") for note in figures.notes)
