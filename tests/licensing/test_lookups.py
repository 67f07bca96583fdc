"""The licensing store's lookups by licence number and by person, against the real database.

They go through lookup documents keyed by `_id` (see services/licensing/store.py); these tests
break the lookup documents the way a crash or a lost race would, and show the answers stay right.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date

import pytest
from pymongo import AsyncMongoClient

from services.licensing.domain import Card, CardStatus, HolderChoice, Licence, LicenceClass
from services.licensing.store import ConcurrentChange, LicensingStore


def a_licence(person_ref: str, licence_number: str, card_number: str | None = None) -> Licence:
    return Licence(
        person_ref=person_ref, licence_number=licence_number, holder_choice=HolderChoice.card_only,
        card_number=card_number, issued_on=date(2026, 5, 20), expires_on=date(2029, 7, 1),
        classes=[LicenceClass.ordinary], conditions=[], photo_ref="photo-1", recorded_by="pol-1",
    )


def a_card(person_ref: str, card_number: str) -> Card:
    return Card(card_number=card_number, person_ref=person_ref, status=CardStatus.active,
                issued_on=date(2026, 1, 5), expires_on=date(2036, 1, 5))


async def cards_of(store: LicensingStore, person_ref: str) -> list[Card]:
    return (await store.resident(person_ref)).cards


@pytest.fixture
async def store(servers, settings_for) -> AsyncIterator[LicensingStore]:
    client: AsyncMongoClient = AsyncMongoClient(servers.mongodb_url, tz_aware=True)
    try:
        store = LicensingStore(client[settings_for("licensing").database_name("licensing")])
        await store.ensure_indexes()
        yield store
    finally:
        await client.close()


async def test_a_licence_is_found_by_its_number_and_an_unknown_number_is_not(store: LicensingStore) -> None:
    await store.save_licence(a_licence("pr_alice", "301234567890"))
    found = await store.licence_by_number("301234567890")
    assert found is not None and found.person_ref == "pr_alice"
    assert await store.licence_by_number("309999999999") is None


async def test_a_lookup_left_by_a_save_that_never_happened_does_not_answer(store: LicensingStore) -> None:
    # A crash after the lookup document was written and before the licence was saved.
    await store._licence_holders.insert_one({"_id": "301111111111", "person_ref": "pr_bob"})
    assert await store.licence_by_number("301111111111") is None


async def test_a_lookup_that_lost_a_race_still_finds_the_real_holder(store: LicensingStore) -> None:
    await store.save_licence(a_licence("pr_alice", "302222222222"))
    # Bob's save of the same number writes the lookup, then loses on the licences' unique index.
    with pytest.raises(ConcurrentChange):
        await store.save_licence(a_licence("pr_bob", "302222222222"))
    found = await store.licence_by_number("302222222222")
    assert found is not None and found.person_ref == "pr_alice"


async def test_a_persons_cards_are_theirs_alone_even_if_a_lookup_names_anothers_card(store: LicensingStore) -> None:
    await store.save_card(a_card("pr_alice", "C-ALICE-1"), fact_id="f1")
    await store.save_card(a_card("pr_alice", "C-ALICE-2"), fact_id="f2")
    await store.save_card(a_card("pr_bob", "C-BOB-1"), fact_id="f3")
    await store.save_card(a_card("pr_alice", "C-ALICE-1"), fact_id="f1")  # a redelivered fact adds nothing
    await store._residents.update_one({"_id": "pr_alice"}, {"$addToSet": {"card_numbers": "C-BOB-1"}})
    assert sorted(c.card_number for c in await cards_of(store, "pr_alice")) == ["C-ALICE-1", "C-ALICE-2"]
    assert [c.card_number for c in await cards_of(store, "pr_bob")] == ["C-BOB-1"]
    assert await cards_of(store, "pr_nobody") == []


async def test_the_address_and_the_cards_are_one_read_in_either_order_of_the_facts(store: LicensingStore) -> None:
    await store.save_address("pr_dan", "東京都千代田区永田町1-7-1", date(2026, 1, 5), date_of_birth=date(1980, 4, 1),
                             fact_id="registered-dan")
    await store.save_card(a_card("pr_dan", "C-DAN-1"), fact_id="issued-dan")
    await store.save_card(a_card("pr_erin", "C-ERIN-1"), fact_id="issued-erin")  # the card's fact first
    await store.save_address("pr_erin", "大阪府大阪市北区1-1", date(2026, 1, 5), date_of_birth=date(1990, 5, 6),
                             fact_id="registered-erin")

    dan, erin = await store.resident("pr_dan"), await store.resident("pr_erin")
    assert (dan.address, [c.card_number for c in dan.cards]) == ("東京都千代田区永田町1-7-1", ["C-DAN-1"])
    assert (erin.address, [c.card_number for c in erin.cards]) == ("大阪府大阪市北区1-1", ["C-ERIN-1"])
    assert (dan.date_of_birth, erin.date_of_birth) == (date(1980, 4, 1), date(1990, 5, 6)), "kept with the address"
    assert await store._cards_by_person.count_documents({"_id": {"$in": ["pr_dan", "pr_erin"]}}) == 0, \
        "the numbers are kept on the resident alone"


async def test_card_numbers_kept_in_the_old_lookup_are_read_and_carried_over(store: LicensingStore) -> None:
    """A store written before the card numbers moved onto the resident document: the resident has
    an address only and the numbers are in `cards_by_person`."""
    await store._residents.insert_one({"_id": "pr_fay", "address": "東京都新宿区2-2", "applied": ["registered-fay"]})
    await store._cards_by_person.insert_one({"_id": "pr_fay", "card_numbers": ["C-FAY-1"]})
    await store._cards.insert_one({"_id": "C-FAY-1", **a_card("pr_fay", "C-FAY-1").model_dump(mode="json")})
    assert [c.card_number for c in (await store.resident("pr_fay")).cards] == ["C-FAY-1"]

    await store.save_card(a_card("pr_fay", "C-FAY-2"), fact_id="reissued-fay")
    fay = await store.resident("pr_fay")
    assert sorted(c.card_number for c in fay.cards) == ["C-FAY-1", "C-FAY-2"], "the old card is not lost"
    assert fay.address == "東京都新宿区2-2"
    assert (await store._residents.find_one({"_id": "pr_fay"}))["card_numbers"] == ["C-FAY-1", "C-FAY-2"]


async def test_a_card_fact_run_again_after_later_ones_puts_back_no_older_status(store: LicensingStore) -> None:
    """A card issued, reported lost and found: the issue or the loss run again (after a crash, or
    by a consumer that fell behind) must change nothing; each fact is applied once."""
    await store.save_card(a_card("pr_carol", "C-CAROL-1"), fact_id="issued")
    await store.set_card_status("C-CAROL-1", CardStatus.suspended, person_ref="pr_carol", fact_id="lost")
    await store.save_card(a_card("pr_carol", "C-CAROL-1"), fact_id="issued")
    assert (await store.card("C-CAROL-1")).status is CardStatus.suspended, "the issue again does not undo the loss"

    await store.set_card_status("C-CAROL-1", CardStatus.active, person_ref="pr_carol", fact_id="found")
    await store.set_card_status("C-CAROL-1", CardStatus.suspended, person_ref="pr_carol", fact_id="lost")
    assert (await store.card("C-CAROL-1")).status is CardStatus.active, "the loss again does not undo the finding"

    await store.set_card_status("C-CAROL-1", CardStatus.revoked, person_ref="pr_carol", fact_id="revoked")
    assert (await store.card("C-CAROL-1")).status is CardStatus.revoked, "a new fact is applied"
    await store.set_card_status("C-NOBODY", CardStatus.suspended, person_ref="pr_nobody", fact_id="lost-2")
    assert await store.card("C-NOBODY") is None, "a status for an unknown card makes no card"
