"""One-stop address change: a move updates a card-only licence and tells the police; a holder of a
conventional licence is told to update it themselves, and their licence record is not changed."""

from __future__ import annotations

from datetime import date

import pytest
from mynumber_contracts import ResidentAttributes, Sex
from mynumber_contracts.enrollment import ResidentAttributesChanged, ResidentMovedAbroad
from mynumber_contracts.licensing import (
    ConventionalLicenceUpdateRequired,
    HolderChoice,
    LicenceAddressUpdated,
    LicenceRecorded,
    LicenceTransaction,
)

from tests.licensing.conftest import ADDRESS, ENROLLMENT, Licensing, a_licence_number, licence_request
from tests.support.reruns import run_late

NEW_ADDRESS = "大阪府大阪市中央区大手前2-1-22"


def moved(person_ref: str, address: str, changed: list[str]) -> ResidentAttributesChanged:
    attributes = ResidentAttributes(name_kanji="山田 花子", name_kana="ヤマダ ハナコ", date_of_birth=date(1980, 4, 1),
                                    sex=Sex.male, address=address)
    return ResidentAttributesChanged(person_ref=person_ref, attributes=attributes, changed=changed,
                                     effective_on=date(2026, 6, 15), signing_certificate_invalidated=True)


async def test_a_move_updates_a_card_only_licence_and_not_a_conventional_one(licensing: Licensing):
    card_only, conventional_only = await licensing.resident_with_card(301), await licensing.resident_with_card(302)
    await licensing.police(licence_request(card_only, 301, choice=HolderChoice.card_only))
    await licensing.police(licence_request(conventional_only, 302, choice=HolderChoice.conventional_only))
    for person in (card_only, conventional_only):
        await licensing.fact(LicenceRecorded, person_ref=person.ref)
        # A name change first, on the same partition: it must not touch the licence's address.
        await licensing.enrollment_fact(moved(person.ref, ADDRESS, ["name_kanji", "name_kana"]))
        await licensing.enrollment_fact(moved(person.ref, NEW_ADDRESS, ["address"]))

    updated = await licensing.fact(LicenceAddressUpdated, person_ref=card_only.ref)
    assert (updated["address"], updated["effective_on"], updated["licence_number"]) == (
        NEW_ADDRESS, "2026-06-15", a_licence_number(301))
    told = await licensing.fact(ConventionalLicenceUpdateRequired, person_ref=conventional_only.ref)
    assert (told["holder_choice"], told["licence_number"]) == ("conventional_only", a_licence_number(302))
    assert len(licensing.facts_of(LicenceAddressUpdated)) == 1, "the name change caused nothing"
    assert len(licensing.facts_of(ConventionalLicenceUpdateRequired)) == 1
    assert licensing.facts_of(LicenceAddressUpdated, person_ref=conventional_only.ref) == []

    assert (await licensing.http.get(f"/licences/{a_licence_number(301)}")).json()["address"] == NEW_ADDRESS
    assert (await licensing.http.get(f"/licences/{a_licence_number(302)}")).json()["address"] == ADDRESS

    # Moving abroad is a move too.
    abroad = "国外転出（2026年7月1日）"
    await licensing.enrollment_fact(ResidentMovedAbroad(
        person_ref=card_only.ref, moved_on=date(2026, 7, 1),
        attributes=ResidentAttributes(name_kanji="山田 花子", name_kana="ヤマダ ハナコ", date_of_birth=date(1980, 4, 1),
                                      sex=Sex.male, address=abroad),
    ))
    assert (await licensing.fact(LicenceAddressUpdated, address=abroad))["effective_on"] == "2026-07-01"


async def test_a_move_run_again_after_a_later_move_leaves_the_later_address(licensing: Licensing):
    """A consumer that fell behind runs the first move again after the second (here: its guard
    record removed, the same record sent again): the licence and the resident keep the later address."""
    person = await licensing.resident_with_card(303)
    await licensing.police(licence_request(person, 303, choice=HolderChoice.card_only))
    await licensing.fact(LicenceRecorded, person_ref=person.ref)
    first = licensing.partner.record(moved(person.ref, NEW_ADDRESS, ["address"]), subject=person.ref, source=ENROLLMENT)
    await licensing.partner.send_record(ResidentAttributesChanged.topic(licensing.namespace), first)
    await licensing.fact(LicenceAddressUpdated, address=NEW_ADDRESS)
    later = "福岡県福岡市中央区天神1-1"
    await licensing.enrollment_fact(moved(person.ref, later, ["address"]))
    await licensing.fact(LicenceAddressUpdated, address=later)

    await run_late(licensing.partner, licensing.running.service.database,
                   ResidentAttributesChanged.topic(licensing.namespace), first)

    assert (await licensing.http.get(f"/licences/{a_licence_number(303)}")).json()["address"] == later
    assert await licensing.running.service.deps.store.address_of(person.ref) == later


async def test_a_move_taken_in_while_a_card_only_licence_is_being_recorded_updates_it(licensing: Licensing, monkeypatch):
    """The police's request read the address before enrollment's move wrote it, and saves the licence
    after the move's use case found no licence to update: the licence must not keep the old address."""
    person = await licensing.resident_with_card(304)
    licensing.take_in_before_the_next_licence_save(monkeypatch, moved(person.ref, NEW_ADDRESS, ["address"]))
    await licensing.police(licence_request(person, 304, choice=HolderChoice.card_only, transaction=LicenceTransaction.new))
    await licensing.fact(LicenceRecorded, person_ref=person.ref)

    assert (await licensing.http.get(f"/licences/{a_licence_number(304)}")).json()["address"] == NEW_ADDRESS
    updated = licensing.facts_of(LicenceAddressUpdated, person_ref=person.ref)
    assert [(u["address"], u["effective_on"]) for u in updated] == [(NEW_ADDRESS, "2026-06-15")], "the police are told"


@pytest.mark.parametrize("choice", [HolderChoice.both, HolderChoice.conventional_only])
async def test_a_move_taken_in_while_a_conventional_licence_is_being_recorded_tells_the_holder_to_update_it(
    licensing: Licensing, monkeypatch, choice
):
    """The same race for a licence with a conventional form: the move's use case found no licence,
    so the request tells the police what the move would have told them, once."""
    seed = 305 if choice is HolderChoice.both else 306
    person = await licensing.resident_with_card(seed)
    licensing.take_in_before_the_next_licence_save(monkeypatch, moved(person.ref, NEW_ADDRESS, ["address"]))
    await licensing.police(licence_request(person, seed, choice=choice, transaction=LicenceTransaction.new))
    await licensing.fact(LicenceRecorded, person_ref=person.ref)

    required = licensing.facts_of(ConventionalLicenceUpdateRequired, person_ref=person.ref)
    assert [(r["licence_number"], r["holder_choice"], r["effective_on"]) for r in required] == [
        (a_licence_number(seed), choice.value, "2026-06-15")]
    assert licensing.facts_of(LicenceAddressUpdated, person_ref=person.ref) == [], "the licence record is not changed"
