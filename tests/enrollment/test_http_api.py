"""The HTTP API: application and card status, the operator lookup with the number masked,
and the interface documents (OpenAPI and AsyncAPI) listing everything."""

from __future__ import annotations

from mynumber_contracts import event_types_for

from services.documentation import asyncapi_document
from tests.enrollment.support import OPERATOR, application, apply, issue_card, new_number, running_enrollment


async def test_application_and_card_status(enrollment):
    number = new_number()
    card = await issue_card(enrollment, number)
    rejected = await apply(enrollment, application(number.reveal()))
    http = enrollment.service.http

    accepted_status = (await http.get(f"/applications/{card['application_id']}", headers=OPERATOR)).json()
    rejected_status = (await http.get(f"/applications/{rejected['application_id']}", headers=OPERATOR)).json()
    card_status = (await http.get(f"/cards/{card['card_number']}", headers=OPERATOR)).json()
    anonymous = await http.get(f"/cards/{card['card_number']}")

    assert accepted_status | {"decided_at": None} == {
        "application_id": card["application_id"], "status": "accepted", "person_ref": card["person_ref"],
        "card_number": card["card_number"], "reason": None, "message": None, "decided_at": None}
    assert (rejected_status["status"], rejected_status["reason"]) == ("rejected", "duplicate")
    assert rejected_status["message"]
    assert card_status["status"] == "active" and card_status["expires_on"] == card["expires_on"]
    assert card_status["person_ref"] == card["person_ref"]
    assert (await http.get("/applications/nope", headers=OPERATOR)).status_code == 404
    assert (await http.get("/cards/C-NOPE", headers=OPERATOR)).status_code == 404
    assert anonymous.status_code == 401


async def test_the_operator_lookup_shows_the_number_masked_and_is_audited(servers, settings_for):
    settings = settings_for("enrollment", http_api_tokens="operator=development-only-operator-token,municipality/131016=municipal-token-0001")
    async with running_enrollment(servers, settings) as enrollment:
        number = new_number()
        card = await issue_card(enrollment, number)
        http = enrollment.service.http
        person = f"/operator/residents/{card['person_ref']}"

        lookup = await http.get(person, headers=OPERATOR)
        anonymous = await http.get(person)
        municipality = await http.get(person, headers={"Authorization": "Bearer municipal-token-0001"})
        unknown = await http.get("/operator/residents/pr_aaaaaaaaaaaaaaaaaaaaaaaaaa", headers=OPERATOR)
        trail = (await http.get(f"/audit/persons/{card['person_ref']}", headers=OPERATOR)).json()

    body = lookup.json()
    assert lookup.status_code == 200
    assert body["number_masked"] == "********" + number.reveal()[-4:]
    assert number.reveal() not in lookup.text
    assert body["attributes"]["name_kanji"] == "山田 太郎"
    assert [c["card_number"] for c in body["cards"]] == [card["card_number"]]
    assert (anonymous.status_code, municipality.status_code, unknown.status_code) == (401, 403, 404)
    assert [r["action"] for r in trail] == ["enrollment.resident.lookup"]


def test_the_openapi_and_asyncapi_documents_list_every_route_and_message():
    from services.enrollment.app import create_app

    app = create_app()
    paths = app.openapi()["paths"]
    for path in ("/applications/{application_id}", "/cards/{card_number}", "/operator/residents/{person_ref}",
                 "/operator/expiry-sweep", "/operator/certificate-retention-sweep", "/operator/number-keys/rotate"):
        assert path in paths
        for operation in paths[path].values():
            assert operation.get("summary"), path

    document = asyncapi_document({"enrollment": app})
    schemas = document["components"]["schemas"]
    requests = event_types_for("enrollment", "requests")
    facts = event_types_for("enrollment", "facts")
    missing = [m.__name__ for m in (*requests.values(), *facts.values()) if m.__name__ not in schemas]
    assert not missing, f"not in the AsyncAPI document: {missing}"
    assert "mynumber.enrollment.requests:enrollment" in document["channels"]
    assert "mynumber.enrollment.facts:publish" in document["channels"]
