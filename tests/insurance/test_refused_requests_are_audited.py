"""An insurer's enrollment and withdrawal are audited on the person when carried out (a link, an
unlink); refused on a member record, they are audited on that person too, with the reason, against
the real broker and database. Before, a refused one left nothing in the person's audit trail: an
operator asked why a member is still insured saw no sign of the insurer's withdrawal."""

from __future__ import annotations

from datetime import date
from typing import Any

from mynumber_contracts.insurance import InsuranceRequestRejected

from tests.insurance.conftest import INSURER, OPERATOR, Insurance, enrollment, types
from tests.insurance.test_last_day_and_first_day import enrolled_ahead, withdrawal


async def trail(insurance: Insurance, person_ref: str, *actions: str) -> list[dict[str, Any]]:
    """The person's audit entries with one of `actions`, oldest first."""
    response = await insurance.http.get(f"/audit/persons/{person_ref}", headers=OPERATOR)
    assert response.status_code == 200, response.text
    return [entry for entry in response.json() if entry["action"] in actions]


async def test_a_refused_withdrawal_is_audited_on_the_member_as_an_accepted_one_is(insurance: Insurance):
    person_ref, _ = await enrolled_ahead(insurance, 271, "a-71")
    key = f"{INSURER}/記号/a-71"

    [refused] = await insurance.insurer(withdrawal("a-71", date(2026, 4, 20), "withdraw-a-71-too-early"))
    assert refused["reason"] == "last_day_before_first_day"
    [entry] = await trail(insurance, person_ref, "insurance.withdrawal.refused")
    assert (entry["actor"], entry["details"]) == (f"insurer/{INSURER}", {"member_key": key, "request_id": "withdraw-a-71-too-early"})
    assert entry["reason"] == f"refused (last_day_before_first_day): {refused['message']}"

    assert types(await insurance.insurer(withdrawal("a-71", date(2026, 6, 30), "withdraw-a-71"))) == ["member_withdrawn"]
    # The same day again under a new request, and the first request again with another day: both refused.
    for request_id, last_day in (("withdraw-a-71-same-day", date(2026, 6, 30)), ("withdraw-a-71", date(2026, 7, 31))):
        [again] = await insurance.insurer(withdrawal("a-71", last_day, request_id))
        assert (again["type"], again["reason"]) == (InsuranceRequestRejected.event_type, "member_withdrawn"), again

    entries = await trail(insurance, person_ref, "insurance.withdrawal.refused", "insurance.unlink")
    assert sorted((e["action"], e["details"].get("request_id"), e["reason"].split(":")[0]) for e in entries) == [
        ("insurance.unlink", None, "the insurer withdrew the member"),
        ("insurance.withdrawal.refused", "withdraw-a-71", "refused (member_withdrawn)"),
        ("insurance.withdrawal.refused", "withdraw-a-71-same-day", "refused (member_withdrawn)"),
        ("insurance.withdrawal.refused", "withdraw-a-71-too-early", "refused (last_day_before_first_day)"),
    ]


async def test_an_enrollment_refused_on_a_linked_record_is_audited_on_the_person_it_meant_to_link(insurance: Insurance):
    """Member a-72 is linked to Ann. The insurer enrolls it again with Ben's number: refused (the
    record is linked), audited on Ben, not on Ann. Without a number: audited on the record's holder."""
    ann, ben = await insurance.resident(272), await insurance.resident(273)
    assert types(await insurance.insurer(enrollment("a-72", 272, 272))) == ["member_linked", "eligibility_certificate_issued"]

    [refused] = await insurance.insurer(enrollment("a-72", 273, 273, request_id="enroll-a-72-ben"))
    assert (refused["type"], refused["reason"]) == (InsuranceRequestRejected.event_type, "already_enrolled")
    [entry] = await trail(insurance, ben, "insurance.enrollment.refused")
    assert (entry["actor"], entry["details"]) == (f"insurer/{INSURER}", {"member_key": f"{INSURER}/記号/a-72",
                                                                         "request_id": "enroll-a-72-ben"})
    assert entry["reason"] == "refused (already_enrolled): this member record is already enrolled and linked"
    assert await trail(insurance, ann, "insurance.enrollment.refused") == []

    await insurance.insurer(enrollment("a-72", None, 272, request_id="enroll-a-72-no-number"))
    [entry] = await trail(insurance, ann, "insurance.enrollment.refused")
    assert entry["details"]["request_id"] == "enroll-a-72-no-number"
