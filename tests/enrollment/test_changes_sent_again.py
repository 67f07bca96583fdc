"""A name or address change, or a correction, sent again under a new event id (a municipality's
retry after a timeout) after a later change must not put the older value back. With a request id
it is decided once: the retry gets the first facts under the ids they had. Without one, the same
values on the same effective day as a change that a later one has followed are that change sent
again, and get its facts; a real move back to an earlier address has its own effective day."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from mynumber_contracts import MyNumber, Sex
from mynumber_contracts.enrollment import (
    ChangeResidentAttributes,
    CorrectionReason,
    CorrectResidentRecord,
    ResidentAttributesChanged,
)

from services.enrollment.handlers import (
    ReusedRequestId,
    change_resident_attributes,
    correct_resident_record,
    register_resident,
)
from services.kit.idempotency import EarlierFacts
from tests.enrollment.support import TODAY, Enrollment, new_number, registration, use_cases

MINATO = "東京都港区1-1"
SHINJUKU = "東京都新宿区2-2"
TWELVE_DIGITS = re.compile(r"\d{12}")


def address_change(number: MyNumber, address: str, *, request_id: str | None = None,
                   effective_on: date = TODAY) -> ChangeResidentAttributes:
    return ChangeResidentAttributes(request_id=request_id, my_number=number, address=address, effective_on=effective_on)


def sex_correction(number: MyNumber, sex: Sex, *, request_id: str | None = None) -> CorrectResidentRecord:
    """A legal change of sex; registered (by `registration`) as born on 1 April 1990."""
    on_record = Sex.female if sex is Sex.male else Sex.male
    return CorrectResidentRecord(request_id=request_id, my_number=number, sex=sex, effective_on=TODAY,
                                 date_of_birth_on_record=date(1990, 4, 1), sex_on_record=on_record,
                                 reason=CorrectionReason.legal_change)


async def resident_of(run, number: MyNumber):
    return await run.deps.store.resident(run.deps.people.for_number(number))


# --- with a request id ------------------------------------------------------------------------


async def test_an_address_change_sent_again_with_its_request_id_after_a_later_change_gets_its_first_facts_under_their_ids(
        enrollment: Enrollment):
    number = new_number()
    person_ref = await enrollment.register(number)
    to_minato = address_change(number, MINATO, request_id="move-1")

    await enrollment.send(to_minato)
    await enrollment.facts_of(ResidentAttributesChanged.event_type, 1, person_ref=person_ref)
    await enrollment.send(address_change(number, SHINJUKU, request_id="move-2"))
    await enrollment.facts_of(ResidentAttributesChanged.event_type, 2, person_ref=person_ref)
    await enrollment.send(to_minato)  # the municipality's retry, under a new event id
    await enrollment.facts_of(ResidentAttributesChanged.event_type, 3, person_ref=person_ref)

    first, later, again = [r for r in enrollment.facts.of_type(ResidentAttributesChanged.event_type)
                           if r.json()["person_ref"] == person_ref]
    assert (first.json()["attributes"]["address"], later.json()["attributes"]["address"]) == (MINATO, SHINJUKU)
    assert again.header("ce_id") == first.header("ce_id"), "the first fact, under the id it had"
    assert again.record.value == first.record.value
    stored = await enrollment.store.resident(person_ref)
    assert stored.resident.attributes.address == SHINJUKU, "the later change stays"
    assert len(stored.changes) == 2, "nothing written again"


async def test_a_request_id_sent_again_with_other_content_is_dead_lettered_and_changes_nothing(enrollment: Enrollment):
    """As for every enrollment request with a request id (`decide_once`): a person looks at it."""
    number = new_number()
    person_ref = await enrollment.register(number)
    await enrollment.send(address_change(number, MINATO, request_id="move-1"))
    await enrollment.fact(ResidentAttributesChanged.event_type, person_ref=person_ref)

    await enrollment.send(address_change(number, SHINJUKU, request_id="move-1"))
    [letter] = await enrollment.dead_letters.wait_count(1)

    assert letter.header("dlq_reason") == "handler_error"
    assert "already decided for different content" in letter.header("dlq_detail")
    assert not TWELVE_DIGITS.search(letter.header("dlq_detail"))
    stored = await enrollment.store.resident(person_ref)
    assert stored.resident.attributes.address == MINATO
    assert len(enrollment.facts.of_type(ResidentAttributesChanged.event_type)) == 1


async def test_a_retry_of_a_request_id_whose_outcome_a_crash_left_unrecorded_finds_the_change_it_made(settings_for):
    """A crash between the resident's write and the outcome's: the retry, under a new event id and
    after a later change, finds the change by its request id instead of deciding again."""
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        await run.run(register_resident, registration(number), event_id="e1")
        to_minato = address_change(number, MINATO, request_id="move-1")
        first = await run.run(change_resident_attributes, to_minato, event_id="e2")
        await run.deps.store.outcomes.delete_many({})  # the crash, before the outcome was recorded
        await run.run(change_resident_attributes, address_change(number, SHINJUKU, request_id="move-2"), event_id="e3")

        with pytest.raises(ReusedRequestId):  # the same request id with other content, in the same window
            await run.answer(change_resident_attributes, address_change(number, "東京都渋谷区3-3", request_id="move-1"),
                             event_id="e4")
        again = await run.answer(change_resident_attributes, to_minato, event_id="e5")

        assert isinstance(again, EarlierFacts) and again.event_id == "e2"
        assert list(again.facts) == first and [type(f).__name__ for f in first] == ["ResidentAttributesChanged"]
        outcome = await run.deps.store.outcome("attribute-change/municipality/131016/move-1")
        assert outcome.event_id == "e2", "recorded as the first event's decision"
        assert await run.run(change_resident_attributes, to_minato, event_id="e2") == first, "its own re-run"
        stored = await resident_of(run, number)
        assert stored.resident.attributes.address == SHINJUKU
        assert [c["key"] for c in stored.changes] == ["change/e2", "change/e3"]


async def test_a_refused_change_names_its_request_id(settings_for):
    async with use_cases(settings_for("enrollment")) as run:
        [refused] = await run.run(change_resident_attributes, address_change(new_number(), MINATO, request_id="move-9"),
                                  event_id="e1")
        assert (type(refused).__name__, refused.reason, refused.request_id) == (
            "ResidentRequestRejected", "unknown_resident", "move-9")


async def test_a_correction_sent_again_with_its_request_id_after_a_later_correction_gets_its_first_facts(settings_for):
    """A legal change of sex, then another back: the first sent again must not change it a third time."""
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        await run.run(register_resident, registration(number), event_id="e1")
        to_female = sex_correction(number, Sex.female, request_id="sex-1")
        first = await run.run(correct_resident_record, to_female, event_id="e2")
        await run.run(correct_resident_record, sex_correction(number, Sex.male, request_id="sex-2"), event_id="e3")

        again = await run.answer(correct_resident_record, to_female, event_id="e4")

        assert isinstance(again, EarlierFacts) and again.event_id == "e2" and list(again.facts) == first
        stored = await resident_of(run, number)
        assert stored.resident.attributes.sex == Sex.male
        assert [c["key"] for c in stored.changes] == ["change/e2", "change/e3"]


async def test_a_correction_request_id_sent_again_with_other_content_changes_nothing(settings_for):
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        await run.run(register_resident, registration(number), event_id="e1")
        await run.run(correct_resident_record, sex_correction(number, Sex.female, request_id="fix-1"), event_id="e2")
        other = CorrectResidentRecord(request_id="fix-1", my_number=number, date_of_birth=date(1990, 4, 10),
                                      effective_on=TODAY, date_of_birth_on_record=date(1990, 4, 1),
                                      sex_on_record=Sex.female, reason=CorrectionReason.clerical_error)

        with pytest.raises(ReusedRequestId):
            await run.answer(correct_resident_record, other, event_id="e3")

        stored = await resident_of(run, number)
        assert (stored.resident.attributes.date_of_birth, stored.resident.attributes.sex) == (date(1990, 4, 1), Sex.female)


# --- without a request id ---------------------------------------------------------------------


async def test_an_address_change_sent_again_without_a_request_id_after_a_later_change_gets_its_first_facts(settings_for):
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        await run.run(register_resident, registration(number), event_id="e1")
        first = await run.run(change_resident_attributes, address_change(number, MINATO), event_id="e2")
        await run.run(change_resident_attributes, address_change(number, SHINJUKU), event_id="e3")

        again = await run.answer(change_resident_attributes, address_change(number, MINATO), event_id="e4")

        assert isinstance(again, EarlierFacts) and again.event_id == "e2"
        assert list(again.facts) == first, "the same facts, byte for byte, under the first event's ids"
        stored = await resident_of(run, number)
        assert stored.resident.attributes.address == SHINJUKU
        assert [c["key"] for c in stored.changes] == ["change/e2", "change/e3"]


async def test_a_move_back_to_an_earlier_address_on_another_day_is_a_new_change(settings_for):
    """The same address on the same day is the first change sent again; a real move back is made
    on a later day, and applies."""
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        await run.run(register_resident, registration(number), event_id="e1")
        await run.run(change_resident_attributes, address_change(number, MINATO), event_id="e2")
        run.clock.advance(timedelta(days=10))
        await run.run(change_resident_attributes, address_change(number, SHINJUKU, effective_on=TODAY + timedelta(days=10)),
                      event_id="e3")
        retried = await run.answer(change_resident_attributes, address_change(number, MINATO), event_id="e4")
        assert isinstance(retried, EarlierFacts) and retried.event_id == "e2"
        assert (await resident_of(run, number)).resident.attributes.address == SHINJUKU

        run.clock.advance(timedelta(days=20))
        moved_back = await run.answer(change_resident_attributes,
                                      address_change(number, MINATO, effective_on=TODAY + timedelta(days=30)), event_id="e5")

        [fact] = moved_back
        assert (fact.attributes.address, fact.effective_on, fact.changed) == (MINATO, TODAY + timedelta(days=30), ["address"])
        stored = await resident_of(run, number)
        assert stored.resident.attributes.address == MINATO
        assert [c["key"] for c in stored.changes] == ["change/e2", "change/e3", "change/e5"]


async def test_a_correction_sent_again_without_a_request_id_after_a_later_correction_gets_its_first_facts(settings_for):
    async with use_cases(settings_for("enrollment")) as run:
        number = new_number()
        await run.run(register_resident, registration(number), event_id="e1")
        first = await run.run(correct_resident_record, sex_correction(number, Sex.female), event_id="e2")
        await run.run(correct_resident_record, sex_correction(number, Sex.male), event_id="e3")

        again = await run.answer(correct_resident_record, sex_correction(number, Sex.female), event_id="e4")

        assert isinstance(again, EarlierFacts) and again.event_id == "e2" and list(again.facts) == first
        stored = await resident_of(run, number)
        assert stored.resident.attributes.sex == Sex.male
        assert [c["key"] for c in stored.changes] == ["change/e2", "change/e3"]
