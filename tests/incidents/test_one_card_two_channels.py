"""Incident class: two applications for one person on two channels in the same second (the
municipal counter and a post office the municipality delegated to) must give one card.

Replayed end to end with two enrollment instances in one consumer group, the two applications
of each person sent at the same instant to partitions owned by different instances, and with
insurance and licensing listening: the platform as a whole must know exactly one card per person,
and that card is the one the police record a licence on.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import date, timedelta

from mynumber_contracts import topics
from mynumber_contracts.enrollment import ApplyForCard, Channel, DelegatePostOffice
from mynumber_contracts.licensing import HolderChoice, LicenceClass, LicenceTransaction, RecordLicence

from tests.incidents.support import MUNICIPAL_OFFICE, MUNICIPALITY, TODAY, a_number, person, running_platform

POST_OFFICE = "post-office/tokyo-chuo"
PEOPLE = 8
ENROLLMENT = "jp.mynumber.enrollment."


def owned_partitions(running) -> set[int]:
    service = running.service
    return service.assigned_partitions(service.topics.requests)


def decisions_published(running) -> float:
    """Application decisions this instance published (its own metrics registry)."""
    return sum(sample.value for metric in running.service.metrics.registry.collect() for sample in metric.samples
               if sample.name == "mynumber_facts_published_total"
               and sample.labels.get("event_type", "").startswith(ENROLLMENT + "application_"))


async def split_between(instances) -> list[set[int]]:
    """Both instances own part of the request topic (a deadline that bounds the rebalance)."""
    deadline = time.monotonic() + 60
    while True:
        owned = [owned_partitions(r) for r in instances]
        if all(owned) and sum(map(len, owned)) == topics.PARTITIONS and set().union(*owned) == set(range(topics.PARTITIONS)):
            return owned
        assert time.monotonic() < deadline, f"the group never split the partitions: {owned}"
        await asyncio.sleep(0.2)


async def test_two_channels_in_the_same_second_give_one_card_across_the_platform(servers, settings_for, namespace):
    numbers = [a_number(40400000001 + i) for i in range(PEOPLE)]
    services = {"enrollment": 2, "insurance": 1, "licensing": 1}
    async with running_platform(servers, settings_for, namespace, services) as platform:
        owned = await split_between(platform.instances["enrollment"])
        await platform.send(DelegatePostOffice(municipality_code=MUNICIPALITY, post_office_id=POST_OFFICE),
                            source=MUNICIPAL_OFFICE, subject=f"delegation/{POST_OFFICE}")
        await platform.fact("enrollment", ENROLLMENT + "post_office_delegation_changed.v1")
        for i, number in enumerate(numbers):
            await platform.register(number, person(f"中村 蓮{i}", "ナカムラ レン", born=date(1990, 1, 1 + i),
                                                   address=f"東京都千代田区永田町2-{i}-1"), request_id=f"reg-{i}")

        topic = topics.for_service("enrollment", namespace).requests
        producer = platform.partner._producer
        for i, number in enumerate(numbers):
            at_counter = ApplyForCard(application_id=f"counter-{i}", channel=Channel.municipal_office,
                                      office_id=MUNICIPAL_OFFICE, my_number=number.reveal(), applied_on=TODAY,
                                      photo_ref=f"photo/counter-{i}")
            at_post = ApplyForCard(application_id=f"post-{i}", channel=Channel.post_office, office_id=POST_OFFICE,
                                   my_number=number.reveal(), applied_on=TODAY, photo_ref=f"photo/post-{i}")
            at_the_same_second = platform.clock.now()
            records = [platform.partner.record(a, subject=a.application_id, source=a.office_id, time=at_the_same_second)
                       for a in (at_counter, at_post)]
            partitions = (min(owned[i % 2]), min(owned[(i + 1) % 2]))  # one instance each
            await asyncio.gather(*(producer.send_and_wait(topic, r.value, key=r.key, headers=r.headers, partition=p)
                                   for r, p in zip(records, partitions, strict=True)))

        decisions = [*await platform.fact("enrollment", ENROLLMENT + "application_accepted.v1", PEOPLE),
                     *await platform.fact("enrollment", ENROLLMENT + "application_rejected.v1", PEOPLE)]
        issued = await platform.fact("enrollment", ENROLLMENT + "card_issued.v1", PEOPLE)
        for service in ("insurance", "licensing"):
            await platform.consumed(service, ENROLLMENT + "card_issued.v1", PEOPLE)
        cards_by_person = {n: issued_card for n in numbers
                           for issued_card in [f["card_number"] for f in issued if f["person_ref"] == platform.ref(n)]}
        for i, number in enumerate(numbers):  # the police record a licence by the number: on the one card
            issued_on = TODAY - timedelta(days=1)
            await platform.send(RecordLicence(request_id=f"lic-{i}", my_number=number, transaction=LicenceTransaction.renewal,
                                              holder_choice=HolderChoice.card_only, licence_number=f"30{i:010d}",
                                              issued_on=issued_on, expires_on=issued_on + timedelta(days=1800),
                                              classes=[LicenceClass.ordinary], photo_ref=f"photo/police/{i}"),
                                source="police/tokyo", subject=number.reveal())
        licences = await platform.fact("licensing", "jp.mynumber.licensing.licence_recorded.v1", PEOPLE)
        enrollment_cards = Counter([d["person_ref"] async for d in platform.database("enrollment")["cards"].find({})])
        licensing_cards = Counter([d["person_ref"] async for d in platform.database("licensing")["cards"].find({})])
        insurance_cards = {d["_id"]: d["card"]["card_number"]
                           async for d in platform.database("insurance")["people"].find({"card": {"$ne": None}})}
        handled_by = [decisions_published(r) for r in platform.instances["enrollment"]]

    refs = [platform.ref(n) for n in numbers]
    per_person = Counter((d["person_ref"], "reason" in d and d["reason"]) for d in decisions)
    assert all(per_person[(ref, False)] == 1 and per_person[(ref, "duplicate")] == 1 for ref in refs), per_person
    assert Counter(f["person_ref"] for f in issued) == Counter(refs), "one card issued per person"
    assert all(enrollment_cards[ref] == 1 and licensing_cards[ref] == 1 for ref in refs)
    assert all(insurance_cards[platform.ref(n)] == cards_by_person[n] for n in numbers)
    assert {f["person_ref"]: f["card_number"] for f in licences} == {platform.ref(n): c for n, c in cards_by_person.items()}
    assert all(handled_by), "both instances decided applications"
