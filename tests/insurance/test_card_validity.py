"""A foreign resident's card ends with the period of stay; when the stay is renewed, enrollment
tells the card's new expiry and certificate expiry (`CardValidityChanged`, session 17). The card
keeps serving as the insurance card past the old day, and no eligibility certificate is issued
for it; news about a card that is not the holder's current one changes nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime

from mynumber_contracts.enrollment import CardValidityChanged

from tests.insurance.conftest import OPERATOR, Insurance
from tests.insurance.test_certificates import card_based_member

OLD_END = date(2026, 4, 10)
NEW_END = date(2029, 4, 10)


def validity(person_ref: str, card_number: str) -> CardValidityChanged:
    return CardValidityChanged(person_ref=person_ref, card_number=card_number, expires_on=NEW_END,
                               certificate_expires_on=NEW_END, effective_on=date(2026, 4, 1))


async def test_a_card_whose_validity_follows_a_renewed_stay_keeps_serving_as_the_insurance_card(insurance: Insurance):
    person_ref = await card_based_member(insurance, 41, "41", "cert-41", certificate_expires_on=OLD_END)
    day_after_old_end = datetime(2026, 4, 11, 1, 0, tzinfo=UTC)

    # News about a card that is not the holder's current one changes nothing.
    assert await insurance.registry(validity(person_ref, "C-another-card")) == []
    insurance.clock.set(day_after_old_end)
    assert (await insurance.eligibility("cert-41"))["reason"] == "card_certificate_expired"

    assert await insurance.registry(validity(person_ref, "C-cert-41")) == []

    answer = await insurance.eligibility("cert-41")
    assert (answer["eligible"], answer["member_number"]) == (True, "41"), answer
    report = (await insurance.http.post("/operations/certificate-renewal", params={"as_of": "2026-04-11"},
                                        headers=OPERATOR)).json()
    assert report["facts_published"] == 0, "no eligibility certificate for a card that still serves"
    assert await insurance.certificates(person_ref) == []
