"""Each service's main flow as sustained throughput: a backlog of pre-signed partner requests is
published to a running service (a real `python -m services.<name>` process) and the rate at
which the completing fact appears on its fact topic is measured, with the peak RSS."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from mynumber_contracts import KafkaRecord, topics

from . import common
from .common import BenchPartners, Context, FactWatcher, ServiceProcess
from .population import Person, people

TopicRecords = list[tuple[str, KafkaRecord]]


def japan_today() -> date:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo("Asia/Tokyo")).date()

MUNICIPALITY = "municipality/131016"
POLICE = "police/tokyo"
INSURER = "insurer/06139999"


@dataclass
class FlowSpec:
    service: str
    title: str
    done_types: list[str]  # one of these per completed flow
    failed_types: list[str]  # a completed flow that went the wrong way (counted, and reported)
    events_per_flow: int  # partner requests per completed flow
    sources: list[str]
    requests: Callable[[BenchPartners, str, Sequence[Person]], TopicRecords]
    setup_facts: Callable[[str, Sequence[Person]], TopicRecords] = lambda ns, ps: []
    reads_enrollment_facts: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)


# -- enrollment: RegisterResident then ApplyForCard -> CardIssued ------------------------------------


def enrollment_requests(partners: BenchPartners, ns: str, group: Sequence[Person]) -> TopicRecords:
    from mynumber_contracts.enrollment import ApplyForCard, Channel, RegisterResident

    topic = topics.for_service("enrollment", ns).requests
    registrations = [
        (topic, partners.request(RegisterResident(request_id=f"reg-{p.index}", municipality_code="131016", my_number=p.number,
                                                  attributes=p.attributes, nationality="JP"),
                                 source=MUNICIPALITY, subject=p.digits))
        for p in group
    ]
    applications = [
        (topic, partners.request(ApplyForCard(application_id=f"app-{p.index}", channel=Channel.municipal_office,
                                              office_id=MUNICIPALITY, my_number=p.digits, applied_on=japan_today(),
                                              photo_ref=f"photo://app-{p.index}"),
                                 source=MUNICIPALITY, subject=p.digits))
        for p in group
    ]
    return registrations + applications


# -- licensing: RecordLicence -> LicenceRecorded (on the card enrollment issued) ----------------------


def enrollment_residents_and_cards(ns: str, group: Sequence[Person], *, cards: bool = True) -> TopicRecords:
    from mynumber_contracts.enrollment import CardIssued, ResidentRegistered

    topic = topics.for_service("enrollment", ns).facts
    records: TopicRecords = []
    for p in group:
        records.append((topic, common.service_fact(ResidentRegistered(
            person_ref=p.ref, municipality_code="131016", attributes=p.attributes, nationality="JP"))))
        if cards:
            records.append((topic, common.service_fact(CardIssued(
                person_ref=p.ref, card_number=p.card_number, certificate_id=p.certificate_id,
                application_id=f"app-{p.index}", issued_on=date(2025, 4, 1), expires_on=date(2035, 4, 1),
                certificate_expires_on=date(2030, 4, 1), photo_less=False))))
    return records


def licence_number(p: Person) -> str:
    return f"30{p.index:010d}"


def licensing_requests(partners: BenchPartners, ns: str, group: Sequence[Person]) -> TopicRecords:
    from mynumber_contracts.licensing import HolderChoice, LicenceClass, LicenceTransaction, RecordLicence

    topic = topics.for_service("licensing", ns).requests
    return [
        (topic, partners.request(RecordLicence(
            request_id=f"pol-{p.index}", my_number=p.number, transaction=LicenceTransaction.renewal,
            holder_choice=HolderChoice.card_only, licence_number=licence_number(p), issued_on=date(2026, 5, 20),
            expires_on=date(2031, 7, 1), classes=[LicenceClass.ordinary, LicenceClass.ordinary_motorcycle],
            conditions=["眼鏡等"], photo_ref=f"photo/police/tokyo/{p.index}"),
            source=POLICE, subject=p.digits))
        for p in group
    ]


# -- insurance: EnrollMember -> MemberLinked (five attributes match the registry) ---------------------


def insurance_requests(partners: BenchPartners, ns: str, group: Sequence[Person]) -> TopicRecords:
    from mynumber_contracts.insurance import EnrollMember

    topic = topics.for_service("insurance", ns).requests
    return [
        (topic, partners.request(EnrollMember(
            request_id=f"enr-{p.index}", insurer_number="06139999", member_symbol="東京1", member_number=f"{p.index}",
            my_number=p.number, attributes=p.attributes, enrolled_on=date(2026, 4, 1)),
            source=INSURER, subject=p.digits))
        for p in group
    ]


def specs() -> dict[str, FlowSpec]:
    return {
        "enrollment": FlowSpec(
            "enrollment", "an application becomes a card issued (RegisterResident, ApplyForCard -> CardIssued)",
            done_types=["jp.mynumber.enrollment.card_issued.v1"],
            failed_types=["jp.mynumber.enrollment.application_rejected.v1",
                          "jp.mynumber.enrollment.resident_request_rejected.v1"],
            events_per_flow=2, sources=[MUNICIPALITY], requests=enrollment_requests,
        ),
        "insurance": FlowSpec(
            "insurance", "an insurer enrollment becomes a link (EnrollMember -> MemberLinked)",
            done_types=["jp.mynumber.insurance.member_linked.v1"],
            failed_types=["jp.mynumber.insurance.member_link_held.v1", "jp.mynumber.insurance.request_rejected.v1"],
            events_per_flow=1, sources=[INSURER], requests=insurance_requests,
            setup_facts=lambda ns, group: enrollment_residents_and_cards(ns, group, cards=False),
            reads_enrollment_facts=True,
        ),
        "licensing": FlowSpec(
            "licensing", "a licence is recorded on a card (RecordLicence -> LicenceRecorded)",
            done_types=["jp.mynumber.licensing.licence_recorded.v1"],
            failed_types=["jp.mynumber.licensing.licence_request_rejected.v1"],
            events_per_flow=1, sources=[POLICE], requests=licensing_requests,
            setup_facts=enrollment_residents_and_cards, reads_enrollment_facts=True,
        ),
    }


def spec_for(service: str) -> FlowSpec | None:
    return specs().get(service)


def service_topics(service: str, ns: str, *, reads_enrollment_facts: bool) -> list[str]:
    names = [*topics.for_service(service, ns).all(), topics.quarantine_topic(ns)]
    if reads_enrollment_facts or service == "enrollment":
        names += list(topics.for_service("enrollment", ns).all())
    return sorted(set(names))


def throughput(seen_times: Sequence[float], start: float, flows: int, events_per_flow: int) -> dict[str, Any]:
    """Overall (publish start to the last completion) and steady (between 10 % and 90 % of completions) rates."""
    if not seen_times:
        return {"flows_per_s": None, "events_per_s": None, "steady_flows_per_s": None, "steady_events_per_s": None}
    ordered = sorted(seen_times)
    overall = len(ordered) / max(1e-9, ordered[-1] - start)
    lo, hi = int(0.1 * (len(ordered) - 1)), int(0.9 * (len(ordered) - 1))
    steady = (hi - lo) / (ordered[hi] - ordered[lo]) if hi > lo and ordered[hi] > ordered[lo] else overall
    return {
        "flows_per_s": round(overall, 2), "events_per_s": round(overall * events_per_flow, 2),
        "steady_flows_per_s": round(steady, 2), "steady_events_per_s": round(steady * events_per_flow, 2),
        "first_completion_s": round(ordered[0] - start, 3), "last_completion_s": round(ordered[-1] - start, 3),
    }


async def run_flow(ctx: Context, service: str) -> dict[str, Any]:
    if service == "benefits":
        from . import benefits_flow

        return await benefits_flow.run(ctx)
    spec = spec_for(service)
    if spec is None:
        return common.not_available(f"no flow is defined for {service}")
    missing = common.service_available(service)
    if missing:
        return common.not_available(missing)
    ns = ctx.namespace(f"flow_{service}")
    n = ctx.scale.flow_people
    process = ServiceProcess(ctx, service, ns, label=f"flow_{service}", extra_env=dict(spec.extra_env))
    try:
        await common.create_topics(ctx, service_topics(service, ns, reads_enrollment_facts=spec.reads_enrollment_facts))
        partners = BenchPartners(ctx, ns)
        await partners.register(spec.sources)
        group = people(n)
        prepared = time.monotonic()
        setup = spec.setup_facts(ns, group)
        requests = spec.requests(partners, ns, group)
        prepare_seconds = time.monotonic() - prepared
        sizes = [len(r.value) + sum(len(k) + len(v) for k, v in r.headers) + len(r.key or b"") for _, r in requests]

        started = time.monotonic()
        await process.start()
        startup_seconds = time.monotonic() - started
        setup_seconds = 0.0
        if setup:
            setup_started = time.monotonic()
            await common.publish_all(ctx, setup)
            settled = await common.wait_for_zero_lag(ctx, f"{ns}-{service}", [topics.for_service("enrollment", ns).facts],
                                                     deadline_seconds=ctx.scale.drain_deadline_seconds)
            setup_seconds = time.monotonic() - setup_started
            if not settled:
                raise RuntimeError(f"{service} did not consume its {len(setup)} setup facts in time")

        own = topics.for_service(service, ns)
        async with FactWatcher(ctx, [own.facts, own.dead_letter, topics.quarantine_topic(ns)]) as watcher:
            profile = process.start_profiler(f"flow_{service}") if ctx.profile else None
            cpu = common.CpuMeter(ctx, process.process.pid if process.process else None)
            cpu.start()
            t0 = time.monotonic()
            publish_seconds = await common.publish_all(ctx, requests)
            done = await watcher.wait_count(spec.done_types + spec.failed_types, n,
                                            deadline_seconds=ctx.scale.drain_deadline_seconds)
            finished = time.monotonic()
            cpu_used = cpu.stop()
            process.stop_profiler()
            completions = [s.at for s in watcher.seen if s.type in spec.done_types]
            failures = {t: watcher.by_type.get(t, 0) for t in spec.failed_types if watcher.by_type.get(t)}
            others = {t: c for t, c in watcher.by_type.items() if t not in spec.done_types and t not in spec.failed_types}
        rates = throughput(completions, t0, n, spec.events_per_flow)
        return {
            "status": "ok" if done and not failures else ("incomplete" if not done else "ok_with_failures"),
            "service": service,
            "flow": spec.title,
            "metrics": {
                "flows": n, "completed": len(completions), "failed": failures, "other_records": others,
                "input_events": len(requests), "mean_input_record_bytes": round(sum(sizes) / len(sizes), 1),
                **rates,
                "elapsed_s": round(finished - t0, 3),
                "publish_s": round(publish_seconds, 3),
                "prepare_s": round(prepare_seconds, 3), "startup_s": round(startup_seconds, 3),
                "setup_s": round(setup_seconds, 3), "setup_facts": len(setup),
                "peak_rss_mb": process.peak_rss_mb(),
                "signed": True,
                "cpu": cpu_used,
                "cpu_ms_per_flow": {k: round(v * 1000 / max(1, len(completions)), 2) for k, v in cpu_used["cpu_s"].items()},
            },
            "series": {"throughput": common.timeline(completions, t0), "rss_mb": process.rss_series(t0)},
            "profile": common.summarise_profile(profile),
            "targets": {},  # filled in by the runner, against the raw pipeline of the same run
        }
    finally:
        await process.stop()
        await common.delete_namespace(ctx, ns)
