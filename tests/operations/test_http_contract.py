"""Every service answers its HTTP routes as its OpenAPI document says: schemathesis generates
requests from each real `python -m services.<name>` process's own /openapi.json (valid ones and
invalid ones, with an operator's token) and checks every answer. No 5xx, no status code the
document does not list, and every body in the documented shape. This found a sweep run as of
year 1 answering 500 (tests/operations/test_sweep_days.py) and some twenty undocumented 401,
403, 404 and 409 answers, now in the documents (docs/openapi/)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import delete_namespace
from tests.operations.test_docker_compose import SERVICES
from tests.support.services import service_process

OPERATOR = {"Authorization": "Bearer development-only-operator-token"}


@pytest.fixture(scope="module", params=SERVICES)
def service_api(request, servers, tmp_path_factory) -> Iterator[schemathesis.BaseSchema]:
    namespace = f"t{uuid.uuid4().hex[:12]}"
    env = {"MYNUMBER_KAFKA_BOOTSTRAP_SERVERS": servers.kafka_bootstrap, "MYNUMBER_MONGODB_URL": servers.mongodb_url,
           "MYNUMBER_TOPIC_NAMESPACE": namespace, "MYNUMBER_LOG_LEVEL": "WARNING",
           "MYNUMBER_DISPATCHER_ENABLED": "false"}  # benefits: no bank here; its routes are what is tested
    log = tmp_path_factory.mktemp("contract") / f"{request.param}.log"
    try:
        with service_process(request.param, env, log) as url:
            yield schemathesis.openapi.from_url(f"{url}/openapi.json")
    finally:
        asyncio.run(delete_namespace(servers, namespace))  # its topics and databases


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_every_route_answers_as_its_openapi_document_says(service_api):
    # Each operation's cases are drawn by hypothesis from schemathesis's strategy (its pytest
    # plugin's fixture loader does not run on this pytest), and every operation is tried before
    # the test reports what failed.
    failures = {}
    for result in service_api.get_all_operations():
        operation = result.ok()

        @given(case=st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)))
        @settings(max_examples=25, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
        def answers_as_documented(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=OPERATOR, checks=CHECKS)

        try:
            answers_as_documented()
        except Exception as failure:  # noqa: BLE001 - reported below, with every other operation's
            failures[operation.label] = failure
    assert not failures, "\n\n".join(f"{label}: {failure}" for label, failure in failures.items())
