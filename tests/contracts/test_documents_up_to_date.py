"""The committed AsyncAPI and OpenAPI documents match the code. Run `mynumber docs` (or
`python -m services.documentation`) after changing a contract, a handler or a route."""

from __future__ import annotations

from mynumber_contracts import event_types_for, topics

from services import documentation


def test_the_committed_documents_are_up_to_date():
    stale = [
        str(path.relative_to(documentation.DOCS.parent))
        for path, text in documentation.render().items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]
    assert not stale, f"out of date: {stale}; run `mynumber docs`"


def test_every_service_documents_every_message_it_consumes_and_publishes():
    document = documentation.asyncapi_document()
    schemas = document["components"]["schemas"]
    addresses = {channel["address"] for channel in document["channels"].values()}
    for service in topics.SERVICES:
        service_topics = topics.for_service(service)
        assert {service_topics.requests, service_topics.facts, service_topics.dead_letter} <= addresses, service
        for stream in ("requests", "facts"):
            for event_type, model in event_types_for(service, stream).items():
                assert model.__name__ in schemas, f"{event_type} ({model.__name__}) is not in the AsyncAPI document"
    assert topics.QUARANTINE in addresses
