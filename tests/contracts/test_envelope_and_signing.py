"""CloudEvents binary mode, header validation, ordering keys and Ed25519 signatures."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from mynumber_contracts import EnvelopeError, MyNumber, ResidentAttributes, Sex, encode_event, parse_headers, topics
from mynumber_contracts.enrollment import RegisterResident
from mynumber_contracts.signing import generate_private_key, sign_record, verify_record

EVENT = RegisterResident(
    request_id="r1", municipality_code="131016", my_number=MyNumber("123456789018"), nationality="JP",
    attributes=ResidentAttributes(name_kanji="山田", name_kana="ヤマダ", date_of_birth=date(2000, 1, 1), sex=Sex.male, address="東京都"),
)


def test_an_event_is_encoded_in_binary_mode_with_ce_headers():
    record = encode_event(EVENT, source="municipality/131016", key=topics.ordering_key("123456789018"),
                          event_id="e-1", time=datetime(2026, 11, 27, 9, tzinfo=UTC), correlation_id="c-1")
    headers = dict(record.headers)
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_type"] == b"jp.mynumber.enrollment.register_resident.v1"
    assert headers["ce_source"] == b"municipality/131016"
    assert headers["ce_time"] == b"2026-11-27T09:00:00Z"
    assert headers["content-type"] == b"application/json"
    assert headers["ce_correlationid"] == b"c-1"
    assert RegisterResident.model_validate_json(record.value) == EVENT
    envelope = parse_headers(record.headers)
    assert envelope.id == "e-1" and envelope.correlation_id == "c-1"


def test_the_ordering_key_is_stable_coarse_and_never_the_number():
    key = topics.ordering_key("123456789018")
    assert key == topics.ordering_key("123456789018")
    assert b"123456789018" not in key and b"9018" not in key
    assert len({topics.ordering_key(f"{n:012d}") for n in range(20000)}) <= topics.ORDERING_BUCKETS


@pytest.mark.parametrize(
    ("drop", "override", "reason"),
    [
        ("ce_id", {}, "missing_header"),
        ("ce_type", {}, "missing_header"),
        ("content-type", {}, "missing_header"),
        (None, {"ce_time": b"not a time"}, "invalid_header"),
        (None, {"ce_time": b"2026-11-27T09:00:00"}, "invalid_header"),  # no UTC offset
        (None, {"ce_specversion": b"0.3"}, "invalid_header"),
        (None, {"ce_type": b"com.example.other"}, "invalid_header"),
        (None, {"content-type": b"text/plain"}, "invalid_header"),
        (None, {"ce_source": b"\xff"}, "invalid_header"),
    ],
)
def test_bad_headers_are_refused_with_a_reason(drop, override, reason):
    record = encode_event(EVENT, source="municipality/131016", key=None)
    headers = {k: v for k, v in record.headers if k != drop}
    headers.update(override)
    with pytest.raises(EnvelopeError) as error:
        parse_headers(headers)
    assert error.value.reason == reason


def test_unknown_extra_headers_are_ignored():
    record = encode_event(EVENT, source="municipality/131016", key=None)
    assert parse_headers([*record.headers, ("traceparent", b"00-abc"), ("ce_someextension", b"x")]).type == EVENT.event_type


def test_a_signed_record_verifies_and_any_change_breaks_it():
    key = generate_private_key()
    record = sign_record(encode_event(EVENT, source="municipality/131016", key=None), key, "municipality/131016#1")
    assert verify_record(record, key.public_key())
    assert not verify_record(record, generate_private_key().public_key())
    tampered_value = type(record)(record.key, record.value.replace(b"131016", b"131017"), record.headers)
    assert not verify_record(tampered_value, key.public_key())
    tampered_source = record.with_headers({"ce_source": "municipality/999999"})
    assert not verify_record(tampered_source, key.public_key())
    assert not verify_record(encode_event(EVENT, source="municipality/131016", key=None), key.public_key())
