"""Bad input mixed into a stream: each kind aimed at one service's request topic.

Every poison record carries a fresh `ce_id`, so the audit can find it again on a dead-letter or
the quarantine topic (dead letters keep the original headers). Except for the forged and
unsigned kinds, a real partner signs what it sends, garbage included, so the record gets past
the security checks and reaches the checks of the envelope and the schema.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime

from mynumber_contracts import KafkaRecord, topics
from mynumber_contracts.signing import generate_private_key, sign_record

KINDS = ("garbage_bytes", "schema_violation", "string_over_1mb", "deeply_nested_json", "nul_characters", "wrong_types",
         "forged_signature", "unsigned")


@dataclass(frozen=True)
class Target:
    service: str
    event_type: str
    source: str


TARGETS = {
    "garbage_bytes": Target("enrollment", "jp.mynumber.enrollment.apply_for_card.v1", "municipality/131016"),
    "schema_violation": Target("insurance", "jp.mynumber.insurance.enroll_member.v1", "insurer/06130012"),
    "string_over_1mb": Target("benefits", "jp.mynumber.benefits.register_receiving_account.v1", "portal/myna"),
    "deeply_nested_json": Target("licensing", "jp.mynumber.licensing.record_licence.v1", "police/tokyo"),
    "nul_characters": Target("insurance", "jp.mynumber.insurance.enroll_member.v1", "insurer/01130012"),
    "wrong_types": Target("licensing", "jp.mynumber.licensing.record_licence.v1", "police/tokyo"),
    "forged_signature": Target("benefits", "jp.mynumber.benefits.register_receiving_account.v1", "portal/myna"),
    "unsigned": Target("enrollment", "jp.mynumber.enrollment.apply_for_card.v1", "municipality/271004"),
}

STRANGER = "900000000005"  # a valid number nobody in the workload has


def _attributes(name_kanji: str = "毒 太郎") -> dict:
    return {"name_kanji": name_kanji, "name_kana": "ドク タロウ", "date_of_birth": "1980-01-01", "sex": "male",
            "address": "東京都千代田区永田町1-1-1"}


def _value(kind: str, n: int, rng: random.Random) -> bytes:
    today = date.today().isoformat()
    if kind == "garbage_bytes":
        return bytes(rng.randrange(256) for _ in range(64)) + b"\xff\xfe not json"
    if kind == "schema_violation":
        return json.dumps({"request_id": f"poison-{n}", "insurer_number": "06130012"}).encode()
    if kind == "string_over_1mb":
        return json.dumps({"request_id": f"poison-{n}", "my_number": STRANGER, "channel": "portal",
                           "account": {"bank_code": "0005", "branch_code": "123", "account_number": "7654321",
                                       "holder_name_kana": "A" * 1_100_000}}).encode()  # 1.1 MB
    if kind == "deeply_nested_json":
        depth = 100_000
        return (f'{{"request_id": "poison-{n}", "classes": ' + "[" * depth + "]" * depth + "}").encode()
    if kind == "nul_characters":
        return json.dumps({"request_id": f"poison-{n}", "insurer_number": "01130012", "member_symbol": "NUL",
                           "member_number": f"{n:07d}", "attributes": _attributes("毒\u0000太郎"),
                           "enrolled_on": today}).encode()
    if kind == "wrong_types":
        return json.dumps({"request_id": 12345, "my_number": 900000000005, "transaction": ["renewal"],
                           "holder_choice": None, "licence_number": True, "issued_on": 20260101,
                           "expires_on": {"y": 2031}, "classes": "ordinary", "photo_ref": 7}).encode()
    # forged and unsigned: well-formed requests that no registered key signed
    return json.dumps({"request_id": f"poison-{n}", "my_number": STRANGER, "channel": "portal",
                       "account": {"bank_code": "0005", "branch_code": "123", "account_number": "7654321",
                                   "holder_name_kana": "ドク タロウ"}} if kind == "forged_signature" else
                      {"application_id": f"poison-{n}", "channel": "municipal_office", "office_id": "municipality/271004",
                       "my_number": STRANGER, "applied_on": today, "photo_ref": "photo://poison"}).encode()


def record(kind: str, n: int, namespace: str, signing_keys: dict, rng: random.Random) -> tuple[str, KafkaRecord, str]:
    """(topic, record, subject) of poison number `n` of `kind`; `signing_keys` maps a source to its key."""
    target = TARGETS[kind]
    event_id = str(uuid.uuid4())
    headers = [
        ("ce_specversion", b"1.0"), ("ce_id", event_id.encode()), ("ce_source", target.source.encode()),
        ("ce_type", target.event_type.encode()), ("ce_time", datetime.now(UTC).isoformat().encode()),
        ("content-type", b"application/json"),
    ]
    subject = f"poison/{n}"
    unsigned = KafkaRecord(topics.ordering_key(subject), _value(kind, n, rng), headers)
    if kind == "unsigned":
        signed = unsigned
    elif kind == "forged_signature":
        signed = sign_record(unsigned, generate_private_key(), f"{target.source}#1")
    else:
        signed = sign_record(unsigned, signing_keys[target.source], f"{target.source}#1")
    return topics.for_service(target.service, namespace).requests, signed, subject
