"""Bad input goes to the insurance dead-letter topic with its bytes and reason, and the service
carries on; the AsyncAPI and OpenAPI documents describe every message and every route."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import date

from fastapi.routing import APIRoute
from mynumber_contracts import event_types_for, topics
from mynumber_contracts.enrollment import CardIssued, ResidentDeceased, ResidentRegistered
from mynumber_contracts.insurance import ConfigureInsurer, EnrollMember, InsurerConfigured

from services.documentation import asyncapi_document
from services.insurance import api
from services.insurance.app import create_app
from services.insurance.handlers import handlers
from tests.insurance.conftest import INSURER, Insurance, a_number, attributes_of
from tests.support.kafka import TopicReader


def headers(event_type: str, source: str = f"insurer/{INSURER}") -> list[tuple[str, bytes]]:
    values = {"ce_specversion": "1.0", "ce_id": str(uuid.uuid4()), "ce_source": source, "ce_type": event_type,
              "ce_time": "2026-04-01T01:00:00Z", "content-type": "application/json"}
    return [(k, v.encode()) for k, v in values.items()]


ENROLL = EnrollMember(request_id="bad-1", insurer_number=INSURER, member_symbol="記号", member_number="1",
                      my_number=a_number(1), attributes=attributes_of(1), enrolled_on=date(2026, 4, 1))
VALID = ENROLL.model_dump_json().encode()
DIGITS = a_number(1).reveal()
WRONG_CHECK_DIGIT = DIGITS[:11] + str((int(DIGITS[11]) + 1) % 10)
CONFIGURE = ConfigureInsurer.event_type
MALFORMED = {  # name: (topic stream, value, event type, expected reason)
    "not_json": ("requests", b"\xff not json", EnrollMember.event_type, "not_json"),
    "bad_insurer_number": ("requests", VALID.replace(INSURER.encode(), b"0613"), EnrollMember.event_type, "schema_violation"),
    "bad_check_digit": ("requests", VALID.replace(DIGITS.encode(), WRONG_CHECK_DIGIT.encode()), EnrollMember.event_type, "schema_violation"),
    "unknown_field": ("requests", VALID.replace(b'"request_id"', b'"surprise":1,"request_id"'), EnrollMember.event_type, "schema_violation"),
    "validity_over_5_years": ("requests", json.dumps({"request_id": "cfg-x", "insurer_number": INSURER,
                                                      "certificate_validity_years": 6}).encode(), CONFIGURE, "schema_violation"),
    "unknown_type": ("requests", VALID, "jp.mynumber.insurance.no_such_request.v1", "unknown_event_type"),
    "bad_registry_fact": ("facts", json.dumps({"person_ref": "pr_" + "a" * 26, "card_number": "C-1"}).encode(),
                          CardIssued.event_type, "schema_violation"),
}


async def test_bad_input_is_dead_lettered_with_its_bytes_and_the_next_request_is_processed(insurance: Insurance, servers):
    service_topics = insurance.running.service.topics
    async with TopicReader(servers.kafka_bootstrap, service_topics.dead_letter) as dead_letters:
        key = topics.ordering_key("one-insurer")  # one partition: a stuck message would block the valid one
        for stream, value, event_type, _ in MALFORMED.values():
            if stream == "requests":
                await insurance.partner.send_raw(service_topics.requests, value, key=key, headers=headers(event_type))
            else:
                await insurance.partner.send_raw(CardIssued.topic(insurance.namespace), value, key=key,
                                                 headers=headers(event_type, source="service/enrollment"))
        facts = await insurance.insurer(ConfigureInsurer(request_id="cfg-ok", insurer_number=INSURER, certificate_validity_years=2))
        assert [f["type"] for f in facts] == [InsurerConfigured.event_type]

        # A registry fact that produces no facts, delivered twice: acknowledged again, not dead-lettered.
        person_ref = insurance.ref(a_number(5))
        registered = insurance.partner.record(ResidentRegistered(
            person_ref=person_ref, municipality_code="131016", attributes=attributes_of(5), nationality="JP"),
            subject=person_ref, source="service/enrollment")
        registry_topic = ResidentRegistered.topic(insurance.namespace)
        await insurance.partner.send_record(registry_topic, registered)
        await insurance.partner.send_record(registry_topic, registered)
        await insurance.registry(ResidentDeceased(person_ref=person_ref, died_on=date(2026, 3, 1)))  # same partition, after both
        await dead_letters.wait_count(len(MALFORMED))
        await dead_letters.settle(quiet_seconds=1.0)
    assert registered.value not in {letter.record.value for letter in dead_letters.records}
    assert len(dead_letters.records) == len(MALFORMED)

    letters = {letter.record.value: letter for letter in dead_letters.records}
    for name, (_, value, _, reason) in MALFORMED.items():
        letter = letters[value]  # the original bytes, untouched
        assert letter.header("dlq_reason") == reason, name
        assert letter.header("dlq_service") == "insurance"
        assert letter.header("dlq_detail") and WRONG_CHECK_DIGIT not in letter.header("dlq_detail"), name
        original = dict((k, base64.b64decode(v)) for k, v in json.loads(letter.header("dlq_original_headers")))
        assert original["ce_type"].decode() == MALFORMED[name][2]


def test_every_request_has_a_handler_and_every_message_is_in_the_asyncapi_document():
    handled = {registration.model for registration in handlers.registrations}
    requests = set(event_types_for("insurance", "requests").values())
    assert requests and requests <= handled, f"requests without a handler: {requests - handled}"
    document = asyncapi_document({"insurance": create_app()})
    schemas = document["components"]["schemas"]
    for model in [*requests, *event_types_for("insurance", "facts").values(), CardIssued]:
        assert model.__name__ in schemas, model.__name__
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert {topics.INSURANCE.requests, topics.INSURANCE.facts, topics.INSURANCE.dead_letter, topics.ENROLLMENT.facts} <= addresses


def test_every_route_has_a_summary_a_response_model_and_an_answer_schema():
    routes = [route for route in api.router.routes if isinstance(route, APIRoute)]
    assert len(routes) >= 8
    for route in routes:
        assert route.summary and route.response_model is not None, route.path
    document = create_app().openapi()
    for route in routes:
        for method in route.methods:
            operation = document["paths"][route.path][method.lower()]
            assert operation["summary"] and "schema" in operation["responses"]["200"]["content"]["application/json"], route.path
            assert operation.get("security"), f"{route.path} must ask for a bearer token"
