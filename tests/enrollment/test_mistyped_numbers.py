"""A registration under a number already on record for a person with another date of birth or sex
is refused: the number is someone else's (a mistyped number passes the check digit about 1.7 % of
the time, facts §1), and registering over it would give that person the newcomer's identity. The
same person moving in, under a new name or address, is still registered."""

from __future__ import annotations

import re
from datetime import date

from mynumber_contracts import Sex
from mynumber_contracts.enrollment import ResidentAttributesChanged, ResidentRegistered, ResidentRequestRejected

from tests.enrollment.support import Enrollment, new_number, registration

TWELVE_DIGITS = re.compile(r"\d{12}")


async def test_a_newcomer_registered_under_someone_elses_number_is_refused_and_changes_nothing(enrollment: Enrollment):
    number = new_number()
    person_ref = await enrollment.register(number, born=date(1990, 4, 1), sex=Sex.male)

    for request_id, other in (("reg-other-birthday", {"born": date(1985, 7, 7)}), ("reg-other-sex", {"sex": Sex.female})):
        await enrollment.send(registration(number, request_id=request_id, name_kanji="鈴木 花子", name_kana="スズキ ハナコ",
                                           address="東京都港区芝公園4-2-8", **other))
        refused = await enrollment.fact(ResidentRequestRejected.event_type, request_id=request_id)
        assert refused["reason"] == "duplicate" and "check the number" in refused["message"]
        assert refused["person_ref"] is None, "the refusal does not say whose number it is"
        assert not TWELVE_DIGITS.search(refused["message"])

    stored = await enrollment.store.resident(person_ref)
    assert (stored.resident.attributes.date_of_birth, stored.resident.attributes.sex) == (date(1990, 4, 1), Sex.male)
    assert stored.resident.attributes.name_kanji == "山田 太郎", "the person on record keeps their name"
    assert len(enrollment.facts.of_type(ResidentRegistered.event_type)) == 1
    assert enrollment.facts.of_type(ResidentAttributesChanged.event_type) == []

    # The same person moving in under a new address is registered, and the move is a change.
    await enrollment.send(registration(number, request_id="reg-moving-in", born=date(1990, 4, 1), sex=Sex.male,
                                       address="大阪府大阪市北区中之島1-3-20"))
    await enrollment.fact(ResidentAttributesChanged.event_type, person_ref=person_ref)
