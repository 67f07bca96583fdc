"""A day at the municipal offices, post offices and diplomatic offices."""

from __future__ import annotations

import random
from datetime import date, timedelta

from mynumber_contracts.enrollment import (
    ApplyForCard,
    Channel,
    DelegatePostOffice,
    RecordMoveAbroad,
    RecordPeriodOfStay,
    RegisterResident,
    ReportCardFound,
    ReportCardLost,
    RequestCardReissue,
)

from .population import Person
from .runner import Outgoing

POST_OFFICES = {"131016": "post-office/tokyo-chuo", "271004": "post-office/osaka-kita"}
UNDELEGATED_POST_OFFICE = "post-office/sapporo-eki"  # registered, but Sapporo never delegated to it
DIPLOMATIC_OFFICES = ["diplomatic-office/us-newyork", "diplomatic-office/gb-london"]


def municipality_id(code: str) -> str:
    return f"municipality/{code}"


def delegations() -> list[Outgoing]:
    return [
        Outgoing(DelegatePostOffice(municipality_code=code, post_office_id=office), municipality_id(code), f"delegation/{office}")
        for code, office in POST_OFFICES.items()
    ]


def registrations(people: list[Person]) -> list[Outgoing]:
    events = []
    for index, person in enumerate(people):
        events.append(Outgoing(
            RegisterResident(
                request_id=f"reg-{index:07d}", municipality_code=person.municipality, my_number=person.number,
                attributes=person.attributes, nationality=person.nationality, residence_status=person.residence_status,
                residence_period_end=person.residence_period_end,
            ),
            municipality_id(person.municipality), person.digits,
        ))
        if person.moved_abroad_on:
            events.append(Outgoing(
                RecordMoveAbroad(my_number=person.number, moved_on=person.moved_abroad_on, destination_country="US"),
                municipality_id(person.municipality), person.digits,
            ))
    return events


def _typo(digits: str) -> str:
    return digits[:11] + str((int(digits[11]) + 3) % 10)


def applications(people: list[Person], today: date, rng: random.Random) -> list[Outgoing]:
    """Card applications on all three channels, with the refusals a real day brings."""
    events = []
    for index, person in enumerate(people):
        if rng.random() > 0.85:
            continue
        application_id = f"app-{index:07d}"
        photo = None if "infant" in person.tags else f"photo://{application_id}"
        if "abroad" in person.tags:
            channel, office = Channel.diplomatic_office, rng.choice(DIPLOMATIC_OFFICES)
        elif person.municipality in POST_OFFICES and rng.random() < 0.3:
            channel, office = Channel.post_office, POST_OFFICES[person.municipality]
        else:
            channel, office = Channel.municipal_office, municipality_id(person.municipality)
        digits = person.digits
        roll = rng.random()
        if roll < 0.02:
            digits = _typo(digits)  # a typing slip at the counter: bad check digit
        elif roll < 0.04 and "infant" not in person.tags:
            photo = None  # forgot the photo
        elif roll < 0.05 and "foreign" in person.tags:
            channel, office = Channel.diplomatic_office, rng.choice(DIPLOMATIC_OFFICES)  # foreign nationals: not abroad
        elif roll < 0.06 and person.municipality == "011002":
            channel, office = Channel.post_office, UNDELEGATED_POST_OFFICE
        events.append(Outgoing(
            ApplyForCard(application_id=application_id, channel=channel, office_id=office, my_number=digits,
                         applied_on=today, photo_ref=photo),
            office, person.digits,
        ))
        if roll > 0.985:  # the same person applies again on another channel the same day: a duplicate
            events.append(Outgoing(
                ApplyForCard(application_id=f"{application_id}-again", channel=Channel.municipal_office,
                             office_id=municipality_id(person.municipality), my_number=person.digits, applied_on=today,
                             photo_ref=f"photo://{application_id}-again"),
                municipality_id(person.municipality), person.digits,
            ))
    for n in range(max(1, len(people) // 200)):  # people the registry does not know
        stranger = f"{90000000000 + n:011d}"
        from mynumber_contracts import check_digit

        digits = stranger + str(check_digit(stranger))
        events.append(Outgoing(
            ApplyForCard(application_id=f"app-unknown-{n}", channel=Channel.municipal_office, office_id="municipality/131016",
                         my_number=digits, applied_on=today, photo_ref="photo://unknown"),
            "municipality/131016", digits,
        ))
    return events


def lost_and_reissued(people_with_cards: list[Person], today: date, rng: random.Random) -> list[Outgoing]:
    events = []
    for index, person in enumerate(people_with_cards):
        if rng.random() > 0.04:
            continue
        office = municipality_id(person.municipality)
        events.append(Outgoing(ReportCardLost(request_id=f"lost-{index}", my_number=person.digits, office_id=office),
                               office, person.digits))
        if rng.random() < 0.3:
            events.append(Outgoing(ReportCardFound(request_id=f"found-{index}", my_number=person.digits, office_id=office),
                                   office, person.digits))
        else:
            events.append(Outgoing(
                RequestCardReissue(request_id=f"reissue-{index}", my_number=person.digits, office_id=office,
                                   requested_on=today, photo_ref=f"photo://reissue-{index}"),
                office, person.digits,
            ))
    return events


def periods_of_stay(people: list[Person], today: date) -> list[Outgoing]:
    """The Immigration Services Agency renewed the period of stay of every foreign resident who has
    one (one in five became a permanent resident): each reports it at the municipality, and a card
    they hold follows (its expiry is the earlier of the birthday rule and the new period end)."""
    events = []
    for index, person in enumerate(people):
        if person.residence_period_end is None:
            continue
        permanent = index % 5 == 0
        events.append(Outgoing(
            RecordPeriodOfStay(
                request_id=f"stay-{index:07d}", my_number=person.number,
                residence_status="permanent_resident" if permanent else person.residence_status or "engineer",
                residence_period_end=None if permanent else person.residence_period_end + timedelta(days=3 * 365),
                effective_on=today,
            ),
            municipality_id(person.municipality), person.digits,
        ))
    return events
