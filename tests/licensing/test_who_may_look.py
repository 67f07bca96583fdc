"""Licence records and vehicle owners are for the police, transport bureaus and operators: the one
token list every service shares also holds kiosks, medical institutions, insurers and
municipalities, and their tokens are refused (403) with nothing looked up or audited."""

from __future__ import annotations

from datetime import date

from mynumber_contracts.licensing import LicenceRecorded, RegisterVehicle, VehicleRegistered

from tests.licensing.conftest import (
    OPERATOR_TOKEN,
    OTHER_PARTNER_TOKENS,
    POLICE_TOKEN,
    TRANSPORT_BUREAU_TOKEN,
    Licensing,
    Person,
    a_licence_number,
    licence_request,
)

VEHICLE = "ZVW30-0000701"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def a_driver_with_a_car(licensing: Licensing) -> Person:
    driver = await licensing.resident_with_card(701)
    await licensing.police(licence_request(driver, 701))
    await licensing.fact(LicenceRecorded, person_ref=driver.ref)
    await licensing.transport_bureau(RegisterVehicle(
        request_id="tb-701", vehicle_id=VEHICLE, registration_number="品川 330 あ 70-01",
        owner_card_number=driver.card_number, registered_on=date(2026, 6, 1)))
    await licensing.fact(VehicleRegistered, request_id="tb-701")
    return driver


async def answers(licensing: Licensing, driver: Person, token: str) -> tuple[int, int, int]:
    """The status codes of the roadside check, the licence look-up and the vehicle look-up for this token."""
    headers = bearer(token)
    roadside = await licensing.http.post("/roadside-checks", json={"card_number": driver.card_number}, headers=headers)
    licence = await licensing.http.get(f"/licences/{a_licence_number(701)}", headers=headers)
    vehicle = await licensing.http.get(f"/vehicles/{VEHICLE}", headers=headers)
    for response in (roadside, licence, vehicle):
        if response.status_code == 403:
            assert driver.ref not in response.text and driver.card_number not in response.text
    return roadside.status_code, licence.status_code, vehicle.status_code


async def test_kiosks_medical_institutions_insurers_and_municipalities_get_403_and_leave_no_trace(licensing: Licensing):
    driver = await a_driver_with_a_car(licensing)
    audited_before = (await licensing.http.get(f"/audit/persons/{driver.ref}", headers=bearer(OPERATOR_TOKEN))).json()

    for principal, token in OTHER_PARTNER_TOKENS.items():
        assert await answers(licensing, driver, token) == (403, 403, 403), f"{principal} reached a licensing look-up"

    audited = (await licensing.http.get(f"/audit/persons/{driver.ref}", headers=bearer(OPERATOR_TOKEN))).json()
    assert audited == audited_before, "a refused caller looked nothing up, so nothing new is on the holder's trail"
    assert not {r["actor"] for r in audited} & set(OTHER_PARTNER_TOKENS)


async def test_the_police_and_operators_see_everything_and_transport_bureaus_only_vehicles(licensing: Licensing):
    driver = await a_driver_with_a_car(licensing)
    assert await answers(licensing, driver, POLICE_TOKEN) == (200, 200, 200)
    assert await answers(licensing, driver, OPERATOR_TOKEN) == (200, 200, 200)
    assert await answers(licensing, driver, TRANSPORT_BUREAU_TOKEN) == (403, 403, 200)

    vehicle = (await licensing.http.get(f"/vehicles/{VEHICLE}", headers=bearer(TRANSPORT_BUREAU_TOKEN))).json()
    assert (vehicle["owner"]["person_ref"], vehicle["owner"]["card_number"]) == (driver.ref, driver.card_number)
    licence = (await licensing.http.get(f"/licences/{a_licence_number(701)}", headers=bearer(POLICE_TOKEN))).json()
    assert licence["person_ref"] == driver.ref
