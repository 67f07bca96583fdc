"""The AsyncAPI and OpenAPI documents are complete: every licensing request type has a handler and
appears with every fact; every route has a summary and a response model. Built without any I/O."""

from __future__ import annotations

from fastapi.routing import APIRoute
from mynumber_contracts import event_types_for
from mynumber_contracts.partners import PartnerType, default_permissions

from services.documentation import asyncapi_document
from services.licensing import api
from services.licensing.app import create_app
from services.licensing.handlers import handlers
from services.licensing.settings import LicensingSettings

REQUESTS = event_types_for("licensing", "requests")
FACTS = event_types_for("licensing", "facts")


def offline_app():
    # Nothing listens on these ports: building the app must not need the servers.
    return create_app(LicensingSettings(kafka_bootstrap_servers="127.0.0.1:1", mongodb_url="mongodb://127.0.0.1:1/"))


def test_every_request_type_has_a_handler_and_a_publishing_agency():
    handled = {registration.model for registration in handlers.registrations}
    assert len(REQUESTS) == 6 and set(REQUESTS.values()) <= handled
    police, bureau = default_permissions(PartnerType.police), default_permissions(PartnerType.transport_bureau)
    assert sorted(REQUESTS) == sorted(police + bureau)


def test_the_asyncapi_document_lists_every_request_fact_and_consumed_enrollment_fact():
    document = asyncapi_document({"licensing": offline_app()})
    schemas = document["components"]["schemas"]
    consumed = {registration.model.__name__ for registration in handlers.registrations}
    assert {model.__name__ for model in (*REQUESTS.values(), *FACTS.values())} | consumed <= set(schemas)
    assert {"mynumber.licensing.requests:licensing", "mynumber.enrollment.facts:licensing",
            "mynumber.licensing.facts:publish", "mynumber.licensing.dead-letter:publish"} <= set(document["channels"])


def test_every_route_has_a_summary_and_a_response_model():
    app = offline_app()
    routes = [route for route in api.router.routes if isinstance(route, APIRoute)]
    assert {route.path for route in routes} == {"/roadside-checks", "/licences/{licence_number}",
                                                "/vehicles/{vehicle_id}", "/fees"}
    for route in routes:
        assert route.summary and route.response_model is not None, route.path
    paths = app.openapi()["paths"]
    assert "RoadsideCheckResult" in str(paths["/roadside-checks"]["post"]["responses"]["200"])
