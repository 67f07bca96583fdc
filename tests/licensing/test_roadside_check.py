"""The roadside check takes a card number and says whether the licence recorded on it is valid
now (or at a given time), with its classes, conditions and the expiry the card does not show."""

from __future__ import annotations

from datetime import UTC, date, datetime

from mynumber_contracts.enrollment import CardExpired, CardSuspended
from mynumber_contracts.licensing import (
    HolderChoice,
    LicenceRecorded,
    LicenceRevoked,
    LicenceSuspended,
    LicenceUnusable,
    RevokeLicence,
    SuspendLicence,
)

from tests.licensing.conftest import NOW, OPERATOR_TOKEN, POLICE, Licensing, a_licence_number, licence_request


async def test_valid_expired_suspended_card_and_unknown(licensing: Licensing):
    driver, lost_card_holder = await licensing.resident_with_card(401), await licensing.resident_with_card(402)
    await licensing.police(licence_request(driver, 401, expires_on=date(2029, 7, 1)))
    await licensing.police(licence_request(lost_card_holder, 402, choice=HolderChoice.both))
    for person in (driver, lost_card_holder):
        await licensing.fact(LicenceRecorded, person_ref=person.ref)

    valid = await licensing.roadside(driver.card_number)  # at the clock's now
    assert valid == {
        "card_number": driver.card_number, "checked_at": "2026-06-01T00:00:00Z", "checked_on": "2026-06-01",
        "valid": True, "status": "valid", "card_status": "active", "licence_number": a_licence_number(401),
        "classes": ["ordinary", "ordinary_motorcycle"], "conditions": ["眼鏡等"], "issued_on": "2026-05-20",
        "expires_on": "2029-07-01", "suspended_until": None,
    }
    last_day = await licensing.roadside(driver.card_number, at=datetime(2029, 7, 1, 14, 59, tzinfo=UTC))
    assert (last_day["valid"], last_day["checked_on"]) == (True, "2029-07-01"), "valid through its expiry date, Japan time"
    expired = await licensing.roadside(driver.card_number, at=datetime(2029, 7, 1, 15, 0, tzinfo=UTC))
    assert (expired["valid"], expired["status"], expired["expires_on"]) == (False, "licence_expired", "2029-07-01")

    await licensing.enrollment_fact(CardSuspended(person_ref=lost_card_holder.ref, card_number=lost_card_holder.card_number,
                                                  suspended_at=NOW))
    await licensing.fact(LicenceUnusable, person_ref=lost_card_holder.ref)
    on_suspended_card = await licensing.roadside(lost_card_holder.card_number)
    assert (on_suspended_card["valid"], on_suspended_card["status"], on_suspended_card["card_status"]) == (
        False, "card_unusable", "suspended")

    unknown = await licensing.roadside("C-NEVERISSUED")
    assert (unknown["valid"], unknown["status"], unknown["card_status"], unknown["licence_number"]) == (
        False, "unknown_card", None, None)
    bad = await licensing.http.post("/roadside-checks", json={"card_number": "", "at": "yesterday"})
    assert bad.status_code == 422


async def test_police_suspension_revocation_and_an_expired_card(licensing: Licensing):
    driver, expiring = await licensing.resident_with_card(411), await licensing.resident_with_card(412)
    await licensing.police(licence_request(driver, 411))
    await licensing.police(licence_request(expiring, 412))
    for person in (driver, expiring):
        await licensing.fact(LicenceRecorded, person_ref=person.ref)

    await licensing.police(SuspendLicence(request_id="pol-s-411", licence_number=a_licence_number(411),
                                          suspended_from=date(2026, 6, 1), suspended_until=date(2026, 6, 30)))
    assert (await licensing.fact(LicenceSuspended, person_ref=driver.ref))["suspended_until"] == "2026-06-30"
    during = await licensing.roadside(driver.card_number)
    assert (during["valid"], during["status"], during["suspended_until"]) == (False, "licence_suspended", "2026-06-30")
    after = await licensing.roadside(driver.card_number, at=datetime(2026, 7, 1, 0, 0, tzinfo=UTC))
    assert (after["valid"], after["status"]) == (True, "valid")

    await licensing.police(RevokeLicence(request_id="pol-r-411", licence_number=a_licence_number(411),
                                         revoked_on=date(2026, 8, 1)))
    assert (await licensing.fact(LicenceRevoked, person_ref=driver.ref))["revoked_on"] == "2026-08-01"
    revoked = await licensing.roadside(driver.card_number, at=datetime(2026, 8, 2, 0, 0, tzinfo=UTC))
    assert (revoked["valid"], revoked["status"]) == (False, "licence_revoked")

    await licensing.enrollment_fact(CardExpired(person_ref=expiring.ref, card_number=expiring.card_number,
                                                expired_on=date(2026, 5, 31)))
    unusable = await licensing.fact(LicenceUnusable, person_ref=expiring.ref)
    assert (unusable["reason"], unusable["since"]) == ("expired", "2026-06-01"), "the day after its last valid day"
    check = await licensing.roadside(expiring.card_number)
    assert (check["valid"], check["status"], check["card_status"]) == (False, "card_unusable", "expired")


async def test_checks_need_a_token_and_are_written_to_the_audit_trail(licensing: Licensing):
    driver = await licensing.resident_with_card(421)
    anonymous = {"Authorization": ""}
    assert (await licensing.http.post("/roadside-checks", json={"card_number": driver.card_number},
                                      headers=anonymous)).status_code == 401
    assert (await licensing.http.get(f"/licences/{a_licence_number(421)}", headers=anonymous)).status_code == 401
    assert (await licensing.http.get("/vehicles/ZVW30-0000421", headers=anonymous)).status_code == 401

    await licensing.roadside(driver.card_number)
    trail = await licensing.http.get(f"/audit/persons/{driver.ref}", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    checks = [r for r in trail.json() if r["action"] == "licensing.roadside_check"]
    assert checks and all(r["actor"] == POLICE for r in checks), "who checked whose card is on record"
