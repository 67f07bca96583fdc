"""Vehicle registration by card: refused for an unknown, suspended or expired card; a transfer
moves ownership and the history is kept."""

from __future__ import annotations

from datetime import date

from mynumber_contracts.enrollment import CardExpired, CardSuspended
from mynumber_contracts.licensing import (
    RegisterVehicle,
    TransferVehicle,
    VehicleRegistered,
    VehicleRequestRejected,
    VehicleTransferred,
)

from tests.licensing.conftest import NOW, Licensing


def registration(request_id: str, vehicle_id: str, card_number: str) -> RegisterVehicle:
    return RegisterVehicle(request_id=request_id, vehicle_id=vehicle_id, registration_number="品川 330 あ 12-34",
                           owner_card_number=card_number, registered_on=date(2026, 6, 1))


def transfer(request_id: str, vehicle_id: str, card_number: str, **extra) -> TransferVehicle:
    return TransferVehicle(request_id=request_id, vehicle_id=vehicle_id, new_owner_card_number=card_number,
                           transferred_on=date(2026, 9, 1), **extra)


async def test_register_and_transfer_keep_the_ownership_history(licensing: Licensing):
    seller, buyer = await licensing.resident_with_card(501), await licensing.resident_with_card(502)
    first = registration("tb-501", "ZVW30-0000501", seller.card_number)
    await licensing.transport_bureau(first)
    registered = await licensing.fact(VehicleRegistered, request_id="tb-501")
    assert (registered["person_ref"], registered["card_number"], registered["registered_on"]) == (
        seller.ref, seller.card_number, "2026-06-01")

    await licensing.transport_bureau(transfer("tb-502", "ZVW30-0000501", buyer.card_number,
                                              registration_number="横浜 330 い 56-78"))
    transferred = await licensing.fact(VehicleTransferred, request_id="tb-502")
    assert (transferred["person_ref"], transferred["previous_owner_ref"], transferred["registration_number"]) == (
        buyer.ref, seller.ref, "横浜 330 い 56-78")
    await licensing.transport_bureau(first)  # the registration again, under a new event id: the same answer
    await licensing.transport_bureau(transfer("tb-503", "ZVW30-0000501", buyer.card_number))
    assert (await licensing.fact(VehicleRequestRejected, request_id="tb-503"))["reason"] == "same_owner"
    assert len(licensing.facts_of(VehicleRegistered, request_id="tb-501")) == 2
    ids = {r.id for r in licensing.facts.of_type(VehicleRegistered.event_type) if r.json()["request_id"] == "tb-501"}
    assert len(ids) == 1, "the answer again, under the fact id it had"

    vehicle = (await licensing.http.get("/vehicles/ZVW30-0000501")).json()
    assert vehicle["owner"]["person_ref"] == buyer.ref
    assert [(o["person_ref"], o["owned_from"], o["owned_until"], o["registration_number"]) for o in vehicle["owners"]] == [
        (seller.ref, "2026-06-01", "2026-09-01", "品川 330 あ 12-34"),
        (buyer.ref, "2026-09-01", None, "横浜 330 い 56-78"),
    ]


async def test_refusals_for_unknown_suspended_and_expired_cards_and_unknown_or_taken_vehicles(licensing: Licensing):
    owner, lost, expired = [await licensing.resident_with_card(seed) for seed in (511, 512, 513)]
    await licensing.enrollment_fact(CardSuspended(person_ref=lost.ref, card_number=lost.card_number, suspended_at=NOW))
    await licensing.enrollment_fact(CardExpired(person_ref=expired.ref, card_number=expired.card_number,
                                                expired_on=date(2026, 5, 31)))
    await licensing.until_roadside(lost.card_number, lambda r: r["card_status"] == "suspended")
    await licensing.until_roadside(expired.card_number, lambda r: r["card_status"] == "expired")
    await licensing.transport_bureau(registration("tb-511", "ZVW30-0000511", owner.card_number))
    await licensing.fact(VehicleRegistered, request_id="tb-511")

    refused = {
        "unknown_card": registration("tb-521", "ZVW30-0000521", "C-NEVERISSUED"),
        "card_suspended": registration("tb-522", "ZVW30-0000522", lost.card_number),
        "card_expired": registration("tb-523", "ZVW30-0000523", expired.card_number),
        "vehicle_already_registered": registration("tb-524", "ZVW30-0000511", lost.card_number),
        "unknown_vehicle": transfer("tb-525", "ZVW30-0000525", owner.card_number),
    }
    for request in refused.values():
        await licensing.transport_bureau(request)
    for reason, request in refused.items():
        rejection = await licensing.fact(VehicleRequestRejected, request_id=request.request_id)
        assert (rejection["reason"], rejection["vehicle_id"]) == (reason, request.vehicle_id)
    assert (await licensing.fact(VehicleRequestRejected, request_id="tb-522"))["person_ref"] == lost.ref

    for transfer_request, reason in ((transfer("tb-526", "ZVW30-0000511", lost.card_number), "card_suspended"),
                                     (transfer("tb-527", "ZVW30-0000511", expired.card_number), "card_expired")):
        await licensing.transport_bureau(transfer_request)
        assert (await licensing.fact(VehicleRequestRejected, request_id=transfer_request.request_id))["reason"] == reason
    for vehicle_id in ("ZVW30-0000521", "ZVW30-0000522", "ZVW30-0000523", "ZVW30-0000525"):
        assert (await licensing.http.get(f"/vehicles/{vehicle_id}")).status_code == 404
    kept = (await licensing.http.get("/vehicles/ZVW30-0000511")).json()
    assert [o["person_ref"] for o in kept["owners"]] == [owner.ref], "refused transfers leave the owner alone"
