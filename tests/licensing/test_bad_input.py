"""Bad input is dead-lettered with its original bytes and a reason, never with the number in it,
and the requests behind it are still processed; facts licensing does not consume are skipped."""

from __future__ import annotations

import json
import uuid
from datetime import date

from mynumber_contracts import topics
from mynumber_contracts.enrollment import ApplicationAccepted, CardIssued, Channel
from mynumber_contracts.licensing import LicenceRecorded, RecordLicence

from tests.licensing.conftest import ENROLLMENT, POLICE, Licensing, a_number, licence_request


def headers(event_type: str, source: str = POLICE) -> list[tuple[str, bytes]]:
    values = {"ce_specversion": "1.0", "ce_id": str(uuid.uuid4()), "ce_source": source, "ce_type": event_type,
              "ce_time": "2026-06-01T00:00:00Z", "content-type": "application/json"}
    return [(k, v.encode()) for k, v in values.items()]


async def test_bad_requests_and_facts_are_dead_lettered_and_the_next_request_is_processed(licensing: Licensing):
    holder = await licensing.resident_with_card(601)
    good = json.loads(licence_request(holder, 601).model_dump_json())
    digits = holder.number.reveal()
    wrong_check_digit = digits[:11] + str((int(digits[11]) + 1) % 10)
    requests_topic = RecordLicence.topic(licensing.namespace)
    malformed = {
        "not_json": b"{ this is not json",
        "no_holder_named": json.dumps({**good, "my_number": None, "card_number": None}).encode(),
        "bad_check_digit": json.dumps({**good, "my_number": wrong_check_digit}).encode(),
        "expires_before_issue": json.dumps({**good, "expires_on": "2026-01-01"}).encode(),
        "no_class": json.dumps({**good, "classes": []}).encode(),
        "unknown_field": json.dumps({**good, "favourite_colour": "red"}).encode(),
    }
    key = topics.ordering_key("one-holder")  # one partition: a stall would hold back the good request
    for value in malformed.values():
        await licensing.partner.send_raw(requests_topic, value, key=key, headers=headers(RecordLicence.event_type))
    await licensing.partner.send_raw(requests_topic, json.dumps(good).encode(), key=key,
                                     headers=headers("jp.mynumber.licensing.no_such_request.v1"))
    broken_fact = json.dumps({"person_ref": holder.ref, "card_number": "C-X"}).encode()  # no dates, no certificate
    facts_topic = CardIssued.topic(licensing.namespace)
    await licensing.partner.send_raw(facts_topic, broken_fact, key=holder.ref.encode(),
                                     headers=headers(CardIssued.event_type, ENROLLMENT))
    await licensing.police(licence_request(holder, 601), subject="one-holder")

    await licensing.fact(LicenceRecorded, person_ref=holder.ref)
    letters = await licensing.dead_letters.wait_count(len(malformed) + 2)
    from_requests = sorted((r for r in letters if r.header("dlq_source_topic") == requests_topic),
                           key=lambda r: int(r.header("dlq_offset")))
    assert [r.record.value for r in from_requests[:len(malformed)]] == list(malformed.values()), "original bytes, in order"
    reasons = [r.header("dlq_reason") for r in from_requests]
    assert reasons == ["not_json"] + ["schema_violation"] * (len(malformed) - 1) + ["unknown_event_type"]
    from_facts = [r for r in letters if r.header("dlq_source_topic") == facts_topic]
    assert [(r.header("dlq_reason"), r.record.value) for r in from_facts] == [("schema_violation", broken_fact)]
    for letter in letters:
        assert digits not in (letter.header("dlq_detail") or "") and wrong_check_digit not in (letter.header("dlq_detail") or "")


async def test_enrollment_facts_licensing_does_not_consume_are_skipped_not_dead_lettered(licensing: Licensing):
    accepted = ApplicationAccepted(person_ref=licensing.people.for_number(a_number(611)), application_id="app-611",
                                   channel=Channel.municipal_office, office_id="municipality/131016",
                                   issuing_municipality="131016", photo_less=False)
    await licensing.enrollment_fact(accepted)
    # Then, on the same partition, a fact it does consume: once that is processed, the first one was handled.
    await licensing.enrollment_fact(CardIssued(
        person_ref=accepted.person_ref, card_number="C-SKIP611", certificate_id="cert-611", application_id="app-611",
        issued_on=date(2025, 4, 1), expires_on=date(2035, 4, 1), certificate_expires_on=date(2030, 4, 1), photo_less=False,
    ))
    await licensing.until_roadside("C-SKIP611", lambda r: r["status"] != "unknown_card")
    assert licensing.dead_letters.records == []
