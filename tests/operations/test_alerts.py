"""The alerting rules operators load into Prometheus (ops/alerts.yml): loaded by the compose
stack's Prometheus, and naming only metrics that the services really expose."""

from __future__ import annotations

import re

import yaml

from tests.operations.test_docker_compose import REPO, SERVICES, compose_config
from tests.support.services import unstarted_service

RULES = REPO / "ops" / "alerts.yml"


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_prometheus_in_the_compose_stack_loads_the_alerting_rules():
    prometheus = yaml.safe_load((REPO / "ops" / "prometheus.yml").read_text())
    volumes = [volume.split(":") for volume in compose_config()["services"]["prometheus"]["volumes"]]  # source:target:mode
    mounted = {target: source for source, target, *_ in volumes}
    assert prometheus["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert mounted["/etc/prometheus/alerts.yml"] == str(RULES)


def test_every_alert_says_how_bad_it_is_and_what_to_do():
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names)) >= 5
    for rule in rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


async def scraped_metric_names(settings_for) -> set[str]:
    """Every metric family the four services expose, from their real /metrics/ (no traffic needed:
    a labelled family is listed before its first sample)."""
    names: set[str] = set()
    for service in SERVICES:
        async with unstarted_service(service, settings_for(service)) as http:
            scrape = await http.get("/metrics/")
        assert scrape.status_code == 200, service
        names |= set(re.findall(r"^# TYPE (\S+) ", scrape.text, flags=re.MULTILINE))
    return names


async def test_every_metric_an_alert_names_is_one_a_service_exposes(settings_for):
    exposed = await scraped_metric_names(settings_for)
    named = {name for rule in rules() for name in re.findall(r"\b(mynumber_[a-z_]+)\b", rule["expr"])}
    assert named, "the rules watch the platform's own metrics"
    assert named <= exposed, f"alerts on metrics nobody exposes: {sorted(named - exposed)}"
    assert {"mynumber_dead_lettered_total", "mynumber_quarantined_total",
            "mynumber_payout_oldest_chunk_waiting_seconds"} <= named
