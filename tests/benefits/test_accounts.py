"""Receiving accounts against the real broker and database: the own-name check refuses a family
member's account, one account shared by people with different surnames or addresses is flagged,
withheld and resolved by an operator (all audited), and a bank merger invalidates accounts."""

from __future__ import annotations

from datetime import date

from mynumber_contracts import ResidentAttributes, Sex
from mynumber_contracts.benefits import (
    AccountChanged,
    AccountChannel,
    AccountDeleted,
    AccountFlagged,
    AccountFlagResolved,
    AccountInvalidated,
    AccountRegistered,
    AccountRegistrationRefused,
    DeleteReceivingAccount,
    RecordBankCodeChange,
    RegisterReceivingAccount,
)
from mynumber_contracts.enrollment import ResidentAttributesChanged, ResidentDeceased, ResidentRegistered

from tests.benefits.conftest import BANK, ENROLLMENT, PORTAL, ZENGIN, Benefits, a_number, an_account
from tests.support.kafka import TopicReader
from tests.support.reruns import run_late


def register(number, request_id: str, account, channel=AccountChannel.portal) -> RegisterReceivingAccount:
    return RegisterReceivingAccount(request_id=request_id, my_number=number, channel=channel, account=account)


async def test_a_family_members_account_is_refused_and_an_own_account_in_half_width_kana_is_registered(benefits: Benefits):
    child = await benefits.resident(101, kana="ヤマダ ハナコ", kanji="山田 花子")
    person_ref = benefits.ref(child)

    await benefits.send(register(child, "reg-family", an_account(holder="ヤマダ タロウ")), subject="c", source=PORTAL)
    await benefits.send(register(child, "reg-stranger", an_account(holder="スズキ イチロウ")), subject="c", source=PORTAL)
    await benefits.send(register(a_number(999), "reg-unknown", an_account()), subject="u", source=PORTAL)
    # Half-width kana without the space, as a bank counter prints it: still her own name.
    await benefits.send(register(child, "reg-own", an_account(holder="ﾔﾏﾀﾞﾊﾅｺ")), subject="c", source=PORTAL)
    await benefits.send(register(child, "reg-change", an_account(number="7654321", holder="ヤマダ ハナコ"),
                                 AccountChannel.tax_return), subject="c", source=PORTAL)

    refusals = await benefits.wait_fact(AccountRegistrationRefused, 3)
    by_request = {r["request_id"]: r for r in refusals}
    assert by_request["reg-family"]["reason"] == "family_member_account"
    assert "family member" in by_request["reg-family"]["message"]
    assert by_request["reg-stranger"]["reason"] == "holder_name_mismatch"
    assert by_request["reg-unknown"]["reason"] == "unknown_resident"
    registered = (await benefits.wait_fact(AccountRegistered, request_id="reg-own"))[0]
    assert registered["person_ref"] == person_ref and registered["withheld"] is False
    assert registered["account"]["account_number_masked"] == "****567"
    changed = (await benefits.wait_fact(AccountChanged, request_id="reg-change"))[0]
    assert changed["channel"] == "tax_return"
    account = (await benefits.http.get(f"/accounts/{person_ref}")).json()
    assert account["account"]["account_number_masked"] == "****321" and account["status"] == "active"

    await benefits.send(DeleteReceivingAccount(request_id="del-1", my_number=child), subject="c", source=PORTAL)
    await benefits.wait_fact(AccountDeleted, request_id="del-1")
    assert (await benefits.http.get(f"/accounts/{person_ref}")).status_code == 404
    await benefits.send(DeleteReceivingAccount(request_id="del-2", my_number=child), subject="c", source=PORTAL)
    refused = (await benefits.wait_fact(AccountRegistrationRefused, request_id="del-2"))[0]
    assert refused["reason"] == "no_account"
    digits = child.reveal().encode()
    assert all(digits not in r.record.value and digits not in (r.record.key or b"") for r in benefits.facts.records)


async def test_an_account_shared_by_people_at_different_addresses_is_flagged_withheld_and_resolved(benefits: Benefits):
    first = await benefits.resident(201, kana="タナカ イチロウ", kanji="田中 一郎", address="東京都港区1-1")
    second = await benefits.resident(202, kana="タナカ イチロウ", kanji="田中 一郎", address="大阪府大阪市北区2-2")
    spouse = await benefits.resident(203, kana="タナカ ハナコ", kanji="田中 花子", address="東京都港区1-1")
    same_home = await benefits.resident(204, kana="タナカ イチロウ", kanji="田中 一郎", address="東京都港区１－１")
    shared = an_account(number="5550001", holder="タナカ イチロウ")

    await benefits.send(register(first, "reg-first", shared), subject="1", source=PORTAL)
    await benefits.wait_fact(AccountRegistered, request_id="reg-first")
    # Same surname, same address (written with full-width digits): not suspicious.
    await benefits.send(register(same_home, "reg-same-home", shared), subject="4", source=PORTAL)
    assert (await benefits.wait_fact(AccountRegistered, request_id="reg-same-home"))[0]["withheld"] is False
    # The spouse's own-name check fails first: a family member cannot register it at all.
    await benefits.send(register(spouse, "reg-spouse", shared), subject="3", source=PORTAL)
    assert (await benefits.wait_fact(AccountRegistrationRefused, request_id="reg-spouse"))[0]["reason"] == "family_member_account"
    await benefits.send(register(second, "reg-second", shared), subject="2", source=PORTAL)

    flagged = await benefits.wait_fact(AccountFlagged, 3)
    refs = {benefits.ref(n) for n in (first, second, same_home)}
    assert {f["person_ref"] for f in flagged} == refs
    assert (await benefits.wait_fact(AccountRegistered, request_id="reg-second"))[0]["withheld"] is True
    for person_ref in refs:
        assert (await benefits.http.get(f"/accounts/{person_ref}")).json()["status"] == "withheld"
    flags = (await benefits.http.get("/flags")).json()
    assert len(flags) == 1 and set(flags[0]["holders"]) == refs
    flag_id = flags[0]["flag_id"]

    keep = [benefits.ref(first), benefits.ref(same_home)]
    resolved = await benefits.http.post(f"/flags/{flag_id}/resolve",
                                        json={"operator": "operator/sato", "reason": "checked at the counter", "keep": keep})
    assert resolved.status_code == 200, resolved.text
    assert set(resolved.json()["released"]) == set(keep) and resolved.json()["removed"] == [benefits.ref(second)]
    again = await benefits.http.post(f"/flags/{flag_id}/resolve", json={"operator": "operator/sato", "reason": "again"})
    assert again.status_code == 409
    assert (await benefits.http.post("/flags/shared:none/resolve", json={"operator": "o", "reason": "r"})).status_code == 404

    outcomes = {f["person_ref"]: f["outcome"] for f in await benefits.wait_fact(AccountFlagResolved, 3)}
    assert outcomes == {keep[0]: "released", keep[1]: "released", benefits.ref(second): "removed"}
    assert (await benefits.http.get(f"/accounts/{keep[0]}")).json()["status"] == "active"
    anonymous = await benefits.http.get(f"/accounts/{keep[0]}", headers={"Authorization": ""})
    assert anonymous.status_code == 401, "accounts are for operators only"
    assert (await benefits.http.post(f"/flags/{flag_id}/resolve", json={"operator": "x", "reason": "y"},
                                     headers={"Authorization": ""})).status_code == 401
    assert (await benefits.http.get(f"/accounts/{benefits.ref(second)}")).status_code == 404
    audit = (await benefits.http.get(f"/audit/persons/{benefits.ref(second)}")).json()
    actions = [(e["action"], e["actor"]) for e in audit]
    assert ("account_flagged", "service/benefits") in actions and ("flag_removed", "operator/sato") in actions
    assert all(e["person_ref"] == benefits.ref(second) and e["reason"] and e["at"] for e in audit)


async def test_a_bank_merger_invalidates_the_renumbered_accounts_and_notifies_each_holder(benefits: Benefits):
    moved = [await benefits.resident(300 + i, kana="サトウ ジロウ", kanji="佐藤 次郎", address=f"東京都{i}") for i in range(2)]
    other_branch = await benefits.resident(310, kana="サトウ ジロウ", kanji="佐藤 次郎", address="東京都9")
    for i, number in enumerate(moved):
        await benefits.send(register(number, f"reg-m{i}", an_account(number=f"800000{i}", holder="サトウ ジロウ",
                                                                        bank="0009", branch="100")), subject=str(i), source=PORTAL)
    await benefits.send(register(other_branch, "reg-o", an_account(number="8000009", holder="サトウ ジロウ", bank="0009",
                                                                   branch="200")), subject="o", source=PORTAL)
    await benefits.wait_fact(AccountRegistered, 3)

    change = RecordBankCodeChange(request_id="merger-1", old_bank_code="0009", old_branch_code="100",
                                  new_bank_code="0010", new_branch_code="300", effective_on="2026-07-01")
    await benefits.send(change, subject="merger-1", source=ZENGIN)
    notices = await benefits.wait_fact(AccountInvalidated, 2)
    assert {n["person_ref"] for n in notices} == {benefits.ref(n) for n in moved}
    assert all(n["new_bank_code"] == "0010" and n["new_branch_code"] == "300" for n in notices)
    for number in moved:
        assert (await benefits.http.get(f"/accounts/{benefits.ref(number)}")).json()["status"] == "invalidated"
    assert (await benefits.http.get(f"/accounts/{benefits.ref(other_branch)}")).json()["status"] == "active"


async def test_a_registration_run_again_after_the_account_was_deleted_or_replaced_does_not_bring_it_back(benefits: Benefits):
    """Run again late (a consumer that fell behind later requests: here its guard record removed
    and the same record sent again), a registration must not undo the deletion or the change."""
    holder = await benefits.resident(301, kana="サトウ ジロウ", kanji="佐藤 次郎")
    person_ref = benefits.ref(holder)
    first = benefits.partner.record(register(holder, "reg-first", an_account(number="3010001", holder="サトウ ジロウ")),
                                    subject="s", source=PORTAL)
    database, topic = benefits.running.service.database, RegisterReceivingAccount.topic(benefits.namespace)

    await run_late(benefits.partner, database, topic, first)  # its first run
    await benefits.wait_fact(AccountRegistered, request_id="reg-first")
    await benefits.send(DeleteReceivingAccount(request_id="del-first", my_number=holder), subject="s", source=PORTAL)
    await benefits.wait_fact(AccountDeleted, request_id="del-first")

    await run_late(benefits.partner, database, topic, first)
    assert (await benefits.http.get(f"/accounts/{person_ref}")).status_code == 404, "the deletion stands"

    await benefits.send(register(holder, "reg-second", an_account(number="3010002", holder="サトウ ジロウ")),
                        subject="s", source=PORTAL)
    await benefits.wait_fact(AccountRegistered, request_id="reg-second")
    await run_late(benefits.partner, database, topic, first)
    account = (await benefits.http.get(f"/accounts/{person_ref}")).json()
    assert account["account"]["account_number_masked"] == "****002", "the later registration stands"
    assert len(benefits.of_type(AccountRegistered, request_id="reg-first")) == 1, "no second fact of the first"


async def test_a_deletion_cut_short_and_run_again_after_a_new_registration_leaves_the_new_account(
        benefits: Benefits, servers, monkeypatch):
    """A deletion stops after its first write (here the deletion itself fails, so the record is
    dead-lettered, as a crash would leave it), the holder registers another account, and then the
    deletion runs again late: it deletes the account it was asked to delete, never the new one."""
    holder = await benefits.resident(303, kana="サトウ ジロウ", kanji="佐藤 次郎")
    person_ref = benefits.ref(holder)
    await benefits.send(register(holder, "reg-old", an_account(number="3030001", holder="サトウ ジロウ")),
                        subject="s", source=PORTAL)
    await benefits.wait_fact(AccountRegistered, request_id="reg-old")

    async def the_process_dies_here(*args, **kwargs):
        raise RuntimeError("the process died before the account was deleted")

    monkeypatch.setattr(benefits.store, "delete_account", the_process_dies_here)
    deletion = benefits.partner.record(DeleteReceivingAccount(request_id="del-old", my_number=holder),
                                       subject="s", source=PORTAL)
    database, topic = benefits.running.service.database, DeleteReceivingAccount.topic(benefits.namespace)
    async with TopicReader(servers.kafka_bootstrap, benefits.running.service.topics.dead_letter) as dead_letters:
        await benefits.partner.send_record(topic, deletion)
        await dead_letters.wait_count(1)
    monkeypatch.undo()

    await benefits.send(register(holder, "reg-new", an_account(number="3030002", holder="サトウ ジロウ")),
                        subject="s", source=PORTAL)
    await benefits.wait_fact(AccountChanged, request_id="reg-new")
    await run_late(benefits.partner, database, topic, deletion)
    account = await benefits.http.get(f"/accounts/{person_ref}")
    assert account.status_code == 200, "the account registered after the deletion stands"
    assert account.json()["account"]["account_number_masked"] == "****002"
    assert len(benefits.of_type(AccountDeleted, request_id="del-old")) == 1, "the deletion is reported done"

    # A deletion audited by earlier code (it deleted first and audited after, naming no
    # registration) was done before its entry was written: run again, it deletes nothing.
    await benefits.store.audit_log.insert_one({"_id": "delete:del-earlier", "action": "account_deleted",
                                               "person_ref": person_ref, "details": {"subject": ""}})
    await benefits.send(DeleteReceivingAccount(request_id="del-earlier", my_number=holder), subject="s", source=PORTAL)
    await benefits.wait_fact(AccountDeleted, request_id="del-earlier")
    assert (await benefits.http.get(f"/accounts/{person_ref}")).status_code == 200


async def test_two_partners_deleting_two_peoples_accounts_with_the_same_request_id_delete_both(benefits: Benefits):
    """Request ids are each partner's own: the portal deletes one person's account and a bank
    another's, both with request id "req-1". Each deletion deletes its own person's account and
    has its own audit entry; before, the bank's deletion found the portal's entry, deleted
    nothing (the account went on being paid) and was never audited."""
    first = await benefits.resident(304, kana="サトウ ジロウ", kanji="佐藤 次郎", address="東京都304")
    second = await benefits.resident(305, kana="サトウ ジロウ", kanji="佐藤 次郎", address="東京都305")
    for number, request_id, account_number in ((first, "reg-304", "3040001"), (second, "reg-305", "3050001")):
        await benefits.send(register(number, request_id, an_account(number=account_number, holder="サトウ ジロウ")),
                            subject=request_id, source=PORTAL)
        await benefits.wait_fact(AccountRegistered, request_id=request_id)

    await benefits.send(DeleteReceivingAccount(request_id="req-1", my_number=first), subject="1", source=PORTAL)
    await benefits.wait_fact(AccountDeleted, person_ref=benefits.ref(first), request_id="req-1")
    await benefits.send(DeleteReceivingAccount(request_id="req-1", my_number=second), subject="2", source=BANK)
    await benefits.wait_fact(AccountDeleted, person_ref=benefits.ref(second), request_id="req-1")

    for number, partner in ((first, PORTAL), (second, BANK)):
        person_ref = benefits.ref(number)
        assert (await benefits.http.get(f"/accounts/{person_ref}")).status_code == 404, f"{partner}'s deletion is done"
        audit = (await benefits.http.get(f"/audit/persons/{person_ref}")).json()
        assert [e["actor"] for e in audit if e["action"] == "account_deleted"] == [partner]

    # Deletions audited by earlier code under the request id alone: one that names this person
    # (and came from this partner) is this deletion run again after the upgrade, and deletes
    # only the registration it names, never one made since; one that names someone else is not.
    third = await benefits.resident(306, kana="サトウ ジロウ", kanji="佐藤 次郎", address="東京都306")
    third_ref = benefits.ref(third)
    await benefits.send(register(third, "reg-306", an_account(number="3060001", holder="サトウ ジロウ")),
                        subject="3", source=PORTAL)
    await benefits.wait_fact(AccountRegistered, request_id="reg-306")
    await benefits.store.audit_log.insert_many([
        {"_id": "delete:req-earlier", "action": "account_deleted", "actor": PORTAL, "person_ref": third_ref,
         "details": {"subject": "", "registration": "reg-306-before"}},
        {"_id": "delete:req-someone-else", "action": "account_deleted", "actor": PORTAL,
         "person_ref": benefits.ref(first), "details": {"subject": "", "registration": "reg-304"}},
    ])
    await benefits.send(DeleteReceivingAccount(request_id="req-earlier", my_number=third), subject="3", source=PORTAL)
    await benefits.wait_fact(AccountDeleted, person_ref=third_ref, request_id="req-earlier")
    assert (await benefits.http.get(f"/accounts/{third_ref}")).status_code == 200, "the newer registration stands"
    await benefits.send(DeleteReceivingAccount(request_id="req-someone-else", my_number=third), subject="3",
                        source=PORTAL)
    await benefits.wait_fact(AccountDeleted, person_ref=third_ref, request_id="req-someone-else")
    assert (await benefits.http.get(f"/accounts/{third_ref}")).status_code == 404


async def test_a_resident_fact_run_again_after_the_death_does_not_bring_the_person_back(benefits: Benefits):
    """The benefits read model: a registration or a change run again after the resident's death
    (a consumer that fell behind) must leave the person deceased, so no account is accepted for them."""
    person_ref = benefits.ref(a_number(302))
    registered = ResidentRegistered(person_ref=person_ref, municipality_code="131016", nationality="JP",
                                    attributes=ResidentAttributes(name_kanji="鈴木 三郎", name_kana="スズキ サブロウ",
                                                                  date_of_birth=date(1950, 1, 1), sex=Sex.male,
                                                                  address="東京都港区3-3"))
    changed = ResidentAttributesChanged(person_ref=person_ref, attributes=registered.attributes.model_copy(
        update={"address": "東京都港区4-4"}), changed=["address"], effective_on=date(2026, 5, 1),
        signing_certificate_invalidated=False)
    records = [benefits.partner.record(fact, subject=person_ref, source=ENROLLMENT)
               for fact in (registered, changed, ResidentDeceased(person_ref=person_ref, died_on=date(2026, 6, 1)))]
    database, topic = benefits.running.service.database, ResidentRegistered.topic(benefits.namespace)

    for record in records:
        await run_late(benefits.partner, database, topic, record)  # their first runs
    assert (await benefits.store.resident(person_ref)).status == "deceased"

    await run_late(benefits.partner, database, topic, records[0])
    await run_late(benefits.partner, database, topic, records[1])
    resident = await benefits.store.resident(person_ref)
    assert (resident.status, resident.address) == ("deceased", "東京都港区4-4"), "the death and the last address stand"


async def test_an_operators_decision_to_keep_the_holders_of_a_shared_account_stands(benefits: Benefits):
    """Run again late after the operator kept both holders, a registration neither withholds them
    again nor reopens the flag. Someone new who registers the account is flagged and withheld,
    and the holders the operator kept go on being paid."""
    tokyo = await benefits.resident(211, kana="イトウ ケン", kanji="伊藤 健", address="東京都港区1-1")
    osaka = await benefits.resident(212, kana="イトウ ケン", kanji="伊藤 健", address="大阪府大阪市北区2-2")
    nagoya = await benefits.resident(213, kana="イトウ ケン", kanji="伊藤 健", address="愛知県名古屋市3-3")
    shared = an_account(number="5550211", holder="イトウ ケン")
    database, topic = benefits.running.service.database, RegisterReceivingAccount.topic(benefits.namespace)

    await benefits.send(register(tokyo, "reg-tokyo", shared), subject="t", source=PORTAL)
    await benefits.wait_fact(AccountRegistered, request_id="reg-tokyo")
    osaka_registration = benefits.partner.record(register(osaka, "reg-osaka", shared), subject="o", source=PORTAL)
    await run_late(benefits.partner, database, topic, osaka_registration)  # its first run
    await benefits.wait_fact(AccountFlagged, 2)
    flag_id = (await benefits.http.get("/flags")).json()[0]["flag_id"]
    resolved = await benefits.http.post(f"/flags/{flag_id}/resolve",
                                        json={"operator": "operator/ito", "reason": "one person, two homes on record"})
    assert resolved.status_code == 200, resolved.text
    await benefits.wait_fact(AccountFlagResolved, 2)

    async def statuses() -> list[str]:
        return [(await benefits.http.get(f"/accounts/{benefits.ref(n)}")).json()["status"] for n in (tokyo, osaka)]

    assert await statuses() == ["active", "active"]
    await run_late(benefits.partner, database, topic, osaka_registration)
    assert await statuses() == ["active", "active"], "the operator's release stands"
    assert (await benefits.http.get("/flags")).json() == [], "the flag stays resolved"
    assert len(benefits.of_type(AccountFlagged)) == 2, "nobody is flagged again"

    await benefits.send(register(nagoya, "reg-nagoya", shared), subject="n", source=PORTAL)
    assert (await benefits.wait_fact(AccountRegistered, request_id="reg-nagoya"))[0]["withheld"] is True
    flagged = await benefits.wait_fact(AccountFlagged, 3)
    assert flagged[-1]["person_ref"] == benefits.ref(nagoya) and flagged[-1]["holders"] == 3
    flags = (await benefits.http.get("/flags")).json()
    assert len(flags) == 1 and set(flags[0]["holders"]) == {benefits.ref(n) for n in (tokyo, osaka, nagoya)}
    assert await statuses() == ["active", "active"], "the holders the operator kept are still paid"
    assert (await benefits.http.get(f"/accounts/{benefits.ref(nagoya)}")).json()["status"] == "withheld"



async def test_two_partners_registering_two_peoples_accounts_under_one_request_id_are_each_audited(benefits: Benefits):
    """The portal registers one person's account and a bank another's, both as "req-7". Each
    registration has its own audit entry, so each is known as made: the bank's, run again late
    after its holder deleted the account, does not bring it back. Before, the bank's entry was
    never written (the id was the portal's), and the late run registered the account again."""
    first = await benefits.resident(307, kana="サトウ ジロウ", kanji="佐藤 次郎", address="東京都307")
    second = await benefits.resident(308, kana="サトウ ジロウ", kanji="佐藤 次郎", address="東京都308")
    await benefits.send(register(first, "req-7", an_account(number="3070001", holder="サトウ ジロウ")),
                        subject="7a", source=PORTAL)
    await benefits.wait_fact(AccountRegistered, person_ref=benefits.ref(first), request_id="req-7")
    by_bank = benefits.partner.record(register(second, "req-7", an_account(number="3080001", holder="サトウ ジロウ"),
                                               AccountChannel.bank_counter), subject="7b", source=BANK)
    database, topic = benefits.running.service.database, RegisterReceivingAccount.topic(benefits.namespace)
    await run_late(benefits.partner, database, topic, by_bank)  # its first run
    await benefits.wait_fact(AccountRegistered, person_ref=benefits.ref(second), request_id="req-7")

    for number in (first, second):
        audit = (await benefits.http.get(f"/audit/persons/{benefits.ref(number)}")).json()
        assert [e["action"] for e in audit] == ["account_registered"], "each registration is audited"

    await benefits.send(DeleteReceivingAccount(request_id="del-7", my_number=second), subject="7b", source=BANK)
    await benefits.wait_fact(AccountDeleted, request_id="del-7")
    await run_late(benefits.partner, database, topic, by_bank)
    assert (await benefits.http.get(f"/accounts/{benefits.ref(second)}")).status_code == 404, "the deletion stands"

    # A registration audited by earlier code under the request id alone is known as made too.
    third = await benefits.resident(309, kana="サトウ ジロウ", kanji="佐藤 次郎", address="東京都309")
    await benefits.store.audit_log.insert_one({"_id": "account:reg-earlier", "action": "account_registered",
                                               "person_ref": benefits.ref(third), "details": {"subject": ""}})
    earlier = benefits.partner.record(register(third, "reg-earlier", an_account(number="3090001", holder="サトウ ジロウ")),
                                      subject="7c", source=PORTAL)
    await run_late(benefits.partner, database, topic, earlier)
    assert (await benefits.http.get(f"/accounts/{benefits.ref(third)}")).status_code == 404, "made, then deleted: it stays so"
