"""The police record licences on cards; transport bureaus register and transfer vehicles."""

from __future__ import annotations

import random
from datetime import date, timedelta

from mynumber_contracts import is_valid_my_number
from mynumber_contracts.licensing import (
    HolderChoice,
    LicenceClass,
    LicenceTransaction,
    RecordLicence,
    RegisterVehicle,
    TransferVehicle,
)

from .population import Person
from .runner import Outgoing

POLICE = "police/tokyo"
TRANSPORT_BUREAU = "transport-bureau/kanto"


def licence_number(rng: random.Random) -> str:
    """Licence numbers are 12 digits too; the demo draws ones that are not valid Individual Numbers,
    so the platform-wide scan for leaked numbers stays meaningful."""
    while True:
        candidate = f"{rng.randrange(10**11, 10**12):012d}"
        if not is_valid_my_number(candidate):
            return candidate


def licences(holders: list[tuple[Person, str]], today: date, rng: random.Random) -> list[Outgoing]:
    """`holders` pairs adults with the number of their active card."""
    events = []
    for index, (person, card_number) in enumerate(holders):
        if rng.random() > 0.35:
            continue
        issued = today - timedelta(days=rng.randint(0, 30))
        events.append(Outgoing(
            RecordLicence(
                request_id=f"lic-{index:06d}", my_number=person.number, card_number=card_number,
                transaction=rng.choice([LicenceTransaction.renewal, LicenceTransaction.renewal, LicenceTransaction.new]),
                holder_choice=rng.choice(list(HolderChoice)), licence_number=licence_number(rng), issued_on=issued,
                expires_on=issued + timedelta(days=5 * 365), classes=[LicenceClass.ordinary],
                conditions=["眼鏡等"] if rng.random() < 0.3 else [], photo_ref=f"photo/police/tokyo/{index:06d}",
                holder_date_of_birth=person.attributes.date_of_birth,
            ),
            POLICE, person.digits,
        ))
    return events


def vehicles(holders: list[tuple[Person, str]], today: date, rng: random.Random) -> list[Outgoing]:
    events = []
    owners = [h for h in holders if rng.random() < 0.15]
    for index, (_owner, card_number) in enumerate(owners):
        vehicle_id = f"ZVW30-{index:07d}"
        events.append(Outgoing(
            RegisterVehicle(request_id=f"veh-{index:06d}", vehicle_id=vehicle_id,
                            registration_number=f"品川 330 あ {index % 100:02d}-{index % 97:02d}",
                            owner_card_number=card_number, registered_on=today),
            TRANSPORT_BUREAU, vehicle_id,
        ))
        if index % 5 == 0 and len(owners) > 1:
            buyer = owners[(index + 1) % len(owners)]
            events.append(Outgoing(
                TransferVehicle(request_id=f"tr-{index:06d}", vehicle_id=vehicle_id,
                                new_owner_card_number=buyer[1], transferred_on=today),
                TRANSPORT_BUREAU, vehicle_id,
            ))
    events.append(Outgoing(  # a card nobody holds: refused
        RegisterVehicle(request_id="veh-unknown", vehicle_id="ZVW30-9999999", registration_number="品川 300 か 00-01",
                        owner_card_number="C-NOSUCHCARD", registered_on=today),
        TRANSPORT_BUREAU, "ZVW30-9999999",
    ))
    return events
