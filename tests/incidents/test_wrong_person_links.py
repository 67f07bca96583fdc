"""Incident (facts §4): 7,312 insurance records were linked to the wrong person, because insurers
looked people up by name and date of birth without the number and did not require the other
attributes to match; the first person found got the record.

Replayed end to end: a municipality registers two people with the same name and date of birth
through enrollment; enrollment's facts reach insurance through Kafka; then an insurer sends
(1) a record with only the name, date of birth, sex and the first person's address, no number,
(2) the second person's record with the first person's number typed on it, and (3) the second
person's own record. Only (3) links; (1) and (2) are held for a person to resolve, and the
first person receives nobody's membership or certificate.
"""

from __future__ import annotations

from datetime import date

from mynumber_contracts.insurance import EnrollMember

from tests.incidents.support import TODAY, a_number, person, running_platform

INSURER = "06139999"
REGISTERED = "jp.mynumber.enrollment.resident_registered.v1"
LINKED = "jp.mynumber.insurance.member_linked.v1"
HELD = "jp.mynumber.insurance.member_link_held.v1"
CERTIFICATE_ISSUED = "jp.mynumber.insurance.eligibility_certificate_issued.v1"


def member(number: str, attributes, my_number=None, request_id: str | None = None) -> EnrollMember:
    return EnrollMember(request_id=request_id or f"enroll-{number}", insurer_number=INSURER, member_symbol="千代田",
                        member_number=number, my_number=my_number, attributes=attributes, enrolled_on=TODAY)


async def test_a_record_without_the_number_is_held_not_linked_to_whoever_matches_first(servers, settings_for, namespace):
    same = {"name_kanji": "佐藤 健", "name_kana": "サトウ ケン", "born": date(1975, 3, 3)}
    first_attributes = person(**same, address="東京都千代田区丸の内1-1-1")
    second_attributes = person(**same, address="東京都千代田区神田2-2-2")
    first, second = a_number(40100000001), a_number(40100000002)
    async with running_platform(servers, settings_for, namespace, {"enrollment": 1, "insurance": 1}) as platform:
        first_ref = await platform.register(first, first_attributes, request_id="reg-first")
        second_ref = await platform.register(second, second_attributes, request_id="reg-second")
        await platform.consumed("insurance", REGISTERED, 2)  # insurance knows both people, the first one first

        by_name_only = member("0001", first_attributes)  # what the insurer had: the name, birth date, no number
        wrong_number = member("0002", second_attributes, my_number=first)  # the first person's number on the second's record
        own_record = member("0003", second_attributes, my_number=second)
        for request in (by_name_only, wrong_number, own_record):
            await platform.send(request, source=f"insurer/{INSURER}", subject=request.request_id)

        held = {f["member_number"]: f for f in await platform.fact("insurance", HELD, 2)}
        linked = await platform.fact("insurance", LINKED, 1)
        await platform.consumed("insurance", EnrollMember.event_type, 3)
        members = {d["_id"]: d async for d in platform.database("insurance")["members"].find({})}
        first_person = await platform.database("insurance")["people"].find_one({"_id": first_ref})

    assert held["0001"]["reason"] == "number_missing" and held["0001"].get("person_ref") is None
    assert held["0002"]["reason"] == "attribute_mismatch" and held["0002"]["mismatched"] == ["address"]
    assert held["0002"]["person_ref"] == first_ref, "the held record names whom the number points to, as a claim"
    assert [(f["member_number"], f["person_ref"]) for f in linked] == [("0003", second_ref)]
    assert not platform.of_type("insurance", LINKED, person_ref=first_ref), "the first match got nothing"
    assert not platform.of_type("insurance", CERTIFICATE_ISSUED, person_ref=first_ref)
    assert {k.split("/")[-1]: (d["link_state"], d.get("person_ref")) for k, d in members.items()} == {
        "0001": ("held", None), "0002": ("held", None), "0003": ("linked", second_ref)}
    assert not (first_person or {}).get("member_keys"), "no membership was attached to the first person"
