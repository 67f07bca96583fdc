"""The number at rest: only ciphertext and a keyed blind index are stored, never the digits;
key rotation re-encrypts every record under the current key."""

from __future__ import annotations

import base64
import os

from mynumber_contracts.enrollment import CardIssued

from tests.enrollment.support import OPERATOR, application, apply, new_number, running_enrollment


def key_list(*key_ids: str, keys: dict[str, str]) -> str:
    return ",".join(f"{k}:{keys[k]}" for k in key_ids)


def everything_stored(mongo_client, database: str) -> bytes:
    """Every document of every collection, as bytes (ciphertext included), to search for digits."""
    dump = []
    for name in mongo_client[database].list_collection_names():
        for document in mongo_client[database][name].find({}):
            dump.append(repr(document).encode())
            dump.extend(bytes(v) for v in document.values() if isinstance(v, bytes | bytearray))
    return b"\n".join(dump)


async def test_only_ciphertext_and_a_blind_index_are_stored(servers, settings_for, mongo_client):
    settings = settings_for("enrollment")
    async with running_enrollment(servers, settings) as enrollment:
        number = new_number()
        person_ref = await enrollment.register(number)
        decision = await apply(enrollment, application(number.reveal()))
        await enrollment.fact(CardIssued.event_type, application_id=decision["application_id"])

        document = mongo_client[settings.database_name("enrollment")]["residents"].find_one({"_id": person_ref})
        stored = everything_stored(mongo_client, settings.database_name("enrollment"))
        vault = enrollment.service.service.deps.vault

    assert document["number_key_id"] == "dev-1"
    assert document["number_index"] == vault.blind_index(number) and number.reveal() not in document["number_index"]
    assert number.reveal().encode() not in stored, "the digits appear nowhere in the database"


async def test_key_rotation_re_encrypts_every_record_and_the_old_key_can_then_go(servers, settings_for, mongo_client):
    keys = {k: base64.b64encode(os.urandom(32)).decode() for k in ("k1", "k2")}
    index_key = "a-test-blind-index-key-of-at-least-32-bytes"
    numbers = [new_number() for _ in range(3)]
    database = None

    async with running_enrollment(servers, settings_for("enrollment", enrollment_number_keys=key_list("k1", keys=keys),
                                                        enrollment_number_index_key=index_key)) as enrollment:
        people = [await enrollment.register(n) for n in numbers]
        database = enrollment.settings.database_name("enrollment")

    residents = mongo_client[database]["residents"]
    assert {d["number_key_id"] for d in residents.find({})} == {"k1"}
    before = {d["_id"]: bytes(d["number_ciphertext"]) for d in residents.find({})}

    # the operator puts k2 first; k1 still decrypts until the rotation has run
    async with running_enrollment(servers, settings_for("enrollment", enrollment_number_keys=key_list("k2", "k1", keys=keys),
                                                        enrollment_number_index_key=index_key)) as enrollment:
        unauthorised = await enrollment.service.http.post("/operator/number-keys/rotate")
        first = (await enrollment.service.http.post("/operator/number-keys/rotate", headers=OPERATOR)).json()
        second = (await enrollment.service.http.post("/operator/number-keys/rotate", headers=OPERATOR)).json()

    assert unauthorised.status_code == 401
    assert (first["current_key_id"], first["re_encrypted"]) == ("k2", 3)
    assert first["records_by_key"] == {"k2": 3, "k1": 0}
    assert second["re_encrypted"] == 0
    after = {d["_id"]: d for d in residents.find({})}
    assert {d["number_key_id"] for d in after.values()} == {"k2"}
    assert all(bytes(after[p]["number_ciphertext"]) != before[p] for p in people)

    # k1 retired: every number still opens, and the blind index still finds every resident
    async with running_enrollment(servers, settings_for("enrollment", enrollment_number_keys=key_list("k2", keys=keys),
                                                        enrollment_number_index_key=index_key)) as enrollment:
        lookups = [(await enrollment.service.http.get(f"/operator/residents/{p}", headers=OPERATOR)).json() for p in people]
        decision = await apply(enrollment, application(numbers[0].reveal()))

    assert [x["number_masked"] for x in lookups] == ["********" + n.reveal()[-4:] for n in numbers]
    assert decision["type"] == "jp.mynumber.enrollment.application_accepted.v1"
