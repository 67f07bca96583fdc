"""Facts are keyed so that everything about one person stays in order on one partition."""

from __future__ import annotations

import pytest
from mynumber_contracts import Fact
from mynumber_contracts.benefits import PayoutBatchAccepted
from mynumber_contracts.enrollment import ApplicationRejected, Channel, RejectionReason

PERSON = "pr_" + "a" * 26


def rejected(person_ref: str | None) -> ApplicationRejected:
    return ApplicationRejected(person_ref=person_ref, application_id="app-7", channel=Channel.municipal_office,
                               office_id="municipality/131016", reason=RejectionReason.unknown_resident,
                               message="not in the registry")


def test_a_fact_about_a_person_is_keyed_by_the_person_reference():
    assert rejected(PERSON).partition_key() == PERSON.encode()


def test_a_fact_that_names_no_person_is_keyed_by_its_subject():
    assert rejected(None).partition_key() == b"application/app-7"


def test_a_fact_about_something_else_keeps_its_own_key():
    accepted = PayoutBatchAccepted.model_construct(batch_id="b-1")
    assert accepted.partition_key() == b"batch/b-1"


def test_a_fact_with_neither_a_person_nor_a_subject_is_a_programming_error():
    class Unkeyed(Fact):  # no event_type: never enters the catalogue
        pass

    with pytest.raises(TypeError, match="has no person_ref"):
        Unkeyed().partition_key()
