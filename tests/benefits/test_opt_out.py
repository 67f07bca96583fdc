"""The pension opt-out route against the real broker and database: a refusal on day 44 stops the
registration; silence until day 45 registers the account and notifies the holder; a refusal
after registration deletes it. The sweep runs with `as_of`, never on the wall clock. A refusal
that arrives while a sweep is under way wins, and a sweep cut short is finished by the next."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

import pytest
from mynumber_contracts.benefits import (
    AccountChanged,
    AccountChannel,
    AccountDeleted,
    AccountRegistered,
    DeleteReceivingAccount,
    OptOutConcluded,
    OptOutNoticeSent,
    PaymentHeld,
    PayoutBatchAccepted,
    ProposePensionAccount,
    RefusePensionAccount,
    RegisterReceivingAccount,
)

from tests.benefits.conftest import PENSION, PORTAL, Benefits, an_account
from tests.benefits.test_payouts import publish_batch
from tests.support.reruns import run_late

NOTIFIED = date(2026, 6, 1)


def day(n: int) -> date:
    return NOTIFIED + timedelta(days=n)


async def propose(benefits: Benefits, seed: int, proposal_id: str) -> str:
    number = await benefits.resident(seed, kana="イトウ ケン", kanji="伊藤 健", address=f"東京都{seed}")
    await benefits.send(ProposePensionAccount(proposal_id=proposal_id, my_number=number, notified_on=NOTIFIED,
                                              account=an_account(number=f"{seed:07d}", holder="イトウ ケン")),
                        subject=proposal_id, source=PENSION)
    notice = (await benefits.wait_fact(OptOutNoticeSent, proposal_id=proposal_id))[0]
    assert notice["reply_by"] == day(45).isoformat()
    return number


async def sweep(benefits: Benefits, as_of: date) -> dict[str, str]:
    response = await benefits.http.post("/operations/opt-out-sweep", params={"as_of": as_of.isoformat()})
    assert response.status_code == 200, response.text
    return response.json()["proposals"]


ACCOUNT_FACTS = {model.event_type: model.__name__ for model in (AccountRegistered, AccountChanged, AccountDeleted)}


async def account_facts(benefits: Benefits, person_ref: str, count: int) -> list[tuple[str, str, str]]:
    """The person's account facts as (type, request id, deletion reason) in the order they were
    published (a person's facts share a partition, which the reader keeps in order), once `count`
    have come; the last is what a partner following the facts believes."""
    def of_person() -> list[tuple[str, str, str]]:
        payloads = [(ACCOUNT_FACTS[r.type], r.json()) for r in benefits.facts.records if r.type in ACCOUNT_FACTS]
        return [(name, p["request_id"], p.get("reason", "")) for name, p in payloads if p["person_ref"] == person_ref]

    await benefits.facts.wait_for(lambda _: len(of_person()) >= count, what=f"{count} account facts")
    await benefits.facts.settle(quiet_seconds=1)  # and none after them
    return of_person()


def refused_around_the_save(benefits: Benefits, number, proposal_id: str, *, before: bool = False):
    """A `save_account` with the holder's refusal run to its end just after the save (or just
    before it), while the sweep waits."""
    save = benefits.store.save_account

    async def refuse() -> None:
        await benefits.send(RefusePensionAccount(proposal_id=proposal_id, my_number=number, received_on=day(45)),
                            subject=proposal_id, source=PENSION)
        await benefits.wait_fact(AccountDeleted, request_id=proposal_id)

    async def save_with_refusal(account, **kwargs):
        if before:
            await refuse()
        saved = await save(account, **kwargs)
        if not before:
            await refuse()
        return saved

    return save_with_refusal


async def test_a_refusal_on_day_44_means_nothing_is_registered(benefits: Benefits):
    number = await propose(benefits, 401, "pension-401")
    assert await sweep(benefits, day(44)) == {}, "day 44: the reply period is still running"
    await benefits.send(RefusePensionAccount(proposal_id="pension-401", my_number=number, received_on=day(44)),
                        subject="pension-401", source=PENSION)
    concluded = (await benefits.wait_fact(OptOutConcluded, proposal_id="pension-401"))[0]
    assert concluded["outcome"] == "refused"
    assert await sweep(benefits, day(45)) == {}
    assert await sweep(benefits, day(60)) == {}
    assert (await benefits.http.get(f"/accounts/{benefits.ref(number)}")).status_code == 404
    assert benefits.of_type(AccountRegistered) == []


async def held_for_want_of_an_account(benefits: Benefits, number, batch_id: str) -> None:
    await publish_batch(benefits, batch_id, [[(number, 15_000)]])
    await benefits.wait_fact(PayoutBatchAccepted, batch_id=batch_id)
    await benefits.dispatch_until_idle()
    assert (await benefits.wait_fact(PaymentHeld, person_ref=benefits.ref(number)))[0]["reason"] == "no_account"


async def payments_held_and_queued(benefits: Benefits, number) -> tuple[int, int]:
    person_ref = benefits.ref(number)
    return (await benefits.store.held.count_documents({"person_ref": person_ref}),
            await benefits.store.queue.count_documents({"person_ref": person_ref}))


async def test_no_reply_by_day_45_registers_the_account_and_notifies_the_holder(benefits: Benefits):
    number = await propose(benefits, 402, "pension-402")
    await held_for_want_of_an_account(benefits, number, "cb-opt-out-402")
    assert await sweep(benefits, day(44)) == {}
    assert (await benefits.http.get(f"/accounts/{benefits.ref(number)}")).status_code == 404
    assert await sweep(benefits, day(45)) == {"pension-402": "registered"}
    registered = (await benefits.wait_fact(AccountRegistered, request_id="pension-402"))[0]
    assert registered["channel"] == "pension_opt_out" and registered["person_ref"] == benefits.ref(number)
    concluded = (await benefits.wait_fact(OptOutConcluded, proposal_id="pension-402"))[0]
    assert concluded["outcome"] == "registered" and "deleted" in concluded["message"]
    assert (await benefits.http.get(f"/accounts/{benefits.ref(number)}")).json()["status"] == "active"
    assert await payments_held_and_queued(benefits, number) == (0, 1), "the held payment is released"
    assert await sweep(benefits, day(46)) == {}, "a second sweep registers nothing again"
    assert len(benefits.of_type(AccountRegistered, request_id="pension-402")) == 1


async def test_a_refusal_after_registration_counts_as_a_deletion(benefits: Benefits):
    number = await propose(benefits, 403, "pension-403")
    assert await sweep(benefits, day(45)) == {"pension-403": "registered"}
    await benefits.wait_fact(AccountRegistered, request_id="pension-403")
    await benefits.send(RefusePensionAccount(proposal_id="pension-403", my_number=number, received_on=day(50)),
                        subject="pension-403", source=PENSION)
    deleted = (await benefits.wait_fact(AccountDeleted, request_id="pension-403"))[0]
    assert deleted["reason"] == "refused_after_registration"
    outcomes = [c["outcome"] for c in await benefits.wait_fact(OptOutConcluded, 2, proposal_id="pension-403")]
    assert outcomes == ["registered", "refused_after_registration"]
    assert (await benefits.http.get(f"/accounts/{benefits.ref(number)}")).status_code == 404
    assert (await benefits.http.get("/proposals/pension-403")).json()["status"] == "deleted"


async def test_a_refusal_after_the_holder_replaced_the_pension_account_deletes_nothing_and_says_so(benefits: Benefits):
    """The sweep registered the pension account, the holder then registered their own in its
    place, and the refusal comes after that: the holder's account stays, no AccountDeleted goes
    out and the conclusion says nothing was deleted. Run again late, after the holder deleted
    their own account meanwhile, the refusal gives the facts of its first run."""
    number = await propose(benefits, 408, "pension-408")
    person_ref = benefits.ref(number)
    assert await sweep(benefits, day(45)) == {"pension-408": "registered"}
    await benefits.wait_fact(AccountRegistered, request_id="pension-408")
    await benefits.send(RegisterReceivingAccount(request_id="reg-own-408", my_number=number, channel=AccountChannel.portal,
                                                 account=an_account(number="4080002", holder="イトウ ケン")),
                        subject="pension-408", source=PORTAL)
    await benefits.wait_fact(AccountChanged, request_id="reg-own-408")

    refusal = benefits.partner.record(RefusePensionAccount(proposal_id="pension-408", my_number=number,
                                                           received_on=day(50)), subject="pension-408", source=PENSION)
    database, topic = benefits.running.service.database, RefusePensionAccount.topic(benefits.namespace)
    await run_late(benefits.partner, database, topic, refusal)  # its first run
    concluded = (await benefits.wait_fact(OptOutConcluded, 2, proposal_id="pension-408"))[-1]
    assert concluded["outcome"] == "refused_after_registration"
    assert "already been replaced" in concluded["message"] and "nothing was deleted" in concluded["message"]
    assert benefits.of_type(AccountDeleted, request_id="pension-408") == []
    account = (await benefits.http.get(f"/accounts/{person_ref}")).json()
    assert account["status"] == "active" and account["account"]["account_number_masked"] == "****002"
    assert (await benefits.http.get("/proposals/pension-408")).json()["status"] == "deleted"
    assert await sweep(benefits, day(46)) == {}, "nothing is left for a sweep"

    await benefits.send(DeleteReceivingAccount(request_id="del-own-408", my_number=number), subject="pension-408",
                        source=PORTAL)
    await benefits.wait_fact(AccountDeleted, request_id="del-own-408")
    await run_late(benefits.partner, database, topic, refusal)
    again = (await benefits.wait_fact(OptOutConcluded, 3, proposal_id="pension-408"))[-1]
    assert again == concluded, "the same facts as its first run"
    assert benefits.of_type(AccountDeleted, request_id="pension-408") == []
    audit = (await benefits.http.get(f"/audit/persons/{person_ref}")).json()
    assert "account_deleted" not in [e["action"] for e in audit if e["actor"] == PENSION]


async def test_a_refusal_that_arrives_while_the_sweep_goes_through_its_list_stops_the_registration(
        benefits: Benefits, monkeypatch):
    """The sweep reads the due proposals first and then goes through them; a refusal taken in
    meanwhile (a national sweep takes a long while) is answered "nothing is registered", and the
    sweep, reaching the proposal, must not register it all the same."""
    number = await propose(benefits, 404, "pension-404")
    read_the_list = benefits.store.due_proposals

    async def refused_meanwhile(as_of):
        listed = await read_the_list(as_of)
        await benefits.send(RefusePensionAccount(proposal_id="pension-404", my_number=number, received_on=day(45)),
                            subject="pension-404", source=PENSION)
        assert (await benefits.wait_fact(OptOutConcluded, proposal_id="pension-404"))[0]["outcome"] == "refused"
        return listed

    monkeypatch.setattr(benefits.store, "due_proposals", refused_meanwhile)
    assert await sweep(benefits, day(45)) == {}
    assert (await benefits.http.get(f"/accounts/{benefits.ref(number)}")).status_code == 404
    assert (await benefits.http.get("/proposals/pension-404")).json()["status"] == "refused"
    assert benefits.of_type(AccountRegistered) == []


async def test_a_refusal_that_arrives_while_the_sweep_registers_the_account_deletes_it(benefits: Benefits, monkeypatch):
    """Once the sweep has taken a proposal, a refusal is a refusal after registration, even when
    it runs before the account is saved: the sweep then deletes the account it saved."""
    number = await propose(benefits, 405, "pension-405")
    monkeypatch.setattr(benefits.store, "save_account", refused_around_the_save(benefits, number, "pension-405", before=True))
    assert await sweep(benefits, day(45)) == {"pension-405": "deleted"}
    assert (await benefits.http.get(f"/accounts/{benefits.ref(number)}")).status_code == 404
    assert (await benefits.http.get("/proposals/pension-405")).json()["status"] == "deleted"
    outcomes = {c["outcome"] for c in await benefits.wait_fact(OptOutConcluded, 2, proposal_id="pension-405")}
    assert outcomes == {"registered", "refused_after_registration"}
    # The refusal's deletion went out before the sweep's registration: the sweep says it again last.
    assert await account_facts(benefits, benefits.ref(number), 3) == [
        ("AccountDeleted", "pension-405", "refused_after_registration"),
        ("AccountRegistered", "pension-405", ""),
        ("AccountDeleted", "pension-405", "refused_after_registration"),
    ]


async def test_a_refusal_just_after_the_sweep_saved_the_account_is_the_last_account_fact(
        benefits: Benefits, monkeypatch):
    """The refusal runs once the sweep has saved the account, before the sweep publishes: it deletes
    the account, and the sweep's AccountRegistered goes out after its AccountDeleted. The sweep,
    finding the proposal `deleted`, publishes the deletion again, so no one following the facts
    believes the refused account is registered."""
    number = await propose(benefits, 409, "pension-409")
    monkeypatch.setattr(benefits.store, "save_account", refused_around_the_save(benefits, number, "pension-409"))
    assert await sweep(benefits, day(45)) == {"pension-409": "deleted"}
    assert (await benefits.http.get(f"/accounts/{benefits.ref(number)}")).status_code == 404
    assert await account_facts(benefits, benefits.ref(number), 3) == [
        ("AccountDeleted", "pension-409", "refused_after_registration"),
        ("AccountRegistered", "pension-409", ""),
        ("AccountDeleted", "pension-409", "refused_after_registration"),
    ]


async def test_a_refusal_after_the_sweep_published_and_before_it_finished_ends_with_a_deletion(
        benefits: Benefits, monkeypatch):
    """The refusal runs after the sweep's AccountRegistered went out, before the sweep records its
    outcome: its AccountDeleted already comes last. The sweep cannot tell this from a refusal that
    ran before its registration went out, so it publishes the deletion again: a repeat, never a
    registration, is the last account fact."""
    number = await propose(benefits, 410, "pension-410")
    move = benefits.store.move_proposal
    refused: list[bool] = []

    async def refused_before_the_sweep_finishes(proposal_id, *, from_, to, on=None):
        if to == "registered" and not refused:  # the sweep recording its outcome (the refusal moves to `deleted`)
            refused.append(True)
            await benefits.send(RefusePensionAccount(proposal_id="pension-410", my_number=number, received_on=day(45)),
                                subject="pension-410", source=PENSION)
            await benefits.wait_fact(AccountDeleted, request_id="pension-410")
        return await move(proposal_id, from_=from_, to=to, on=on)

    monkeypatch.setattr(benefits.store, "move_proposal", refused_before_the_sweep_finishes)
    assert await sweep(benefits, day(45)) == {"pension-410": "deleted"}
    assert (await benefits.http.get(f"/accounts/{benefits.ref(number)}")).status_code == 404
    assert await account_facts(benefits, benefits.ref(number), 3) == [
        ("AccountRegistered", "pension-410", ""),
        ("AccountDeleted", "pension-410", "refused_after_registration"),
        ("AccountDeleted", "pension-410", "refused_after_registration"),
    ]


async def test_two_sweeps_at_the_same_moment_register_the_account_once_and_keep_it(benefits: Benefits, monkeypatch):
    """An operator runs the sweep again while the first (a national one, slow) is still going:
    both take the proposal; the one that finishes second must not undo the registration."""
    number = await propose(benefits, 407, "pension-407")
    save = benefits.store.save_account
    second_sweep: list[dict[str, str]] = []

    async def another_sweep_meanwhile(account, **kwargs):
        if not second_sweep:
            second_sweep.append({})
            second_sweep[0] = await sweep(benefits, day(45))
        return await save(account, **kwargs)

    monkeypatch.setattr(benefits.store, "save_account", another_sweep_meanwhile)
    assert await sweep(benefits, day(45)) == {"pension-407": "registered"}
    assert second_sweep == [{"pension-407": "registered"}]
    assert (await benefits.http.get(f"/accounts/{benefits.ref(number)}")).json()["status"] == "active"
    assert (await benefits.http.get("/proposals/pension-407")).json()["status"] == "registered"
    assert benefits.of_type(AccountDeleted, request_id="pension-407") == []


async def test_a_sweep_cut_short_mid_registration_is_finished_by_the_next(benefits: Benefits, monkeypatch):
    number = await propose(benefits, 406, "pension-406")

    async def the_process_dies_here(account, **kwargs):
        raise RuntimeError("the process died while it registered the account")

    monkeypatch.setattr(benefits.store, "save_account", the_process_dies_here)
    with pytest.raises(RuntimeError):
        await sweep(benefits, day(45))
    monkeypatch.undo()
    assert (await benefits.http.get("/proposals/pension-406")).json()["status"] == "registering"
    assert await sweep(benefits, day(46)) == {"pension-406": "registered"}
    assert (await benefits.http.get(f"/accounts/{benefits.ref(number)}")).json()["status"] == "active"
    assert (await benefits.wait_fact(OptOutConcluded, proposal_id="pension-406"))[0]["outcome"] == "registered"


async def test_the_reply_period_is_a_setting(settings_for):
    assert settings_for("benefits").opt_out_reply_days == 45
    assert settings_for("benefits", opt_out_reply_days=30).opt_out_reply_days == 30


async def test_a_refusal_just_after_the_sweep_saved_the_account_leaves_the_persons_held_payments_held(
        benefits: Benefits, monkeypatch):
    """The account is gone by the time the sweep's registration finishes its check: the payments
    held for want of an account stay held, rather than being sent again to be held again."""
    number = await propose(benefits, 411, "pension-411")
    await held_for_want_of_an_account(benefits, number, "cb-opt-out-411")
    monkeypatch.setattr(benefits.store, "save_account", refused_around_the_save(benefits, number, "pension-411"))
    assert await sweep(benefits, day(45)) == {"pension-411": "deleted"}
    assert await payments_held_and_queued(benefits, number) == (1, 0)


async def test_a_refusal_before_the_sweep_saved_the_account_leaves_the_persons_held_payments_held(
        benefits: Benefits, monkeypatch):
    """The refusal ran first and deleted nothing; the sweep then saves the account. It finds the
    proposal refused, deletes the account at once and sends no held payment to it."""
    number = await propose(benefits, 412, "pension-412")
    await held_for_want_of_an_account(benefits, number, "cb-opt-out-412")
    monkeypatch.setattr(benefits.store, "save_account", refused_around_the_save(benefits, number, "pension-412", before=True))
    assert await sweep(benefits, day(45)) == {"pension-412": "deleted"}
    assert await payments_held_and_queued(benefits, number) == (1, 0)
    assert (await benefits.http.get(f"/accounts/{benefits.ref(number)}")).status_code == 404


async def test_a_refusal_that_read_the_proposal_before_the_sweep_saved_and_finished_still_deletes_the_account(
        benefits: Benefits, monkeypatch):
    """The refusal reads the proposal while the sweep is registering (no account yet, so nothing
    to delete), and records the refusal only after the sweep has saved the account and finished.
    The account it refused must still go, and the deletion must be the last account fact."""
    number = await propose(benefits, 413, "pension-413")
    save, move = benefits.store.save_account, benefits.store.move_proposal
    refusal_records, sweep_finished = asyncio.Event(), asyncio.Event()

    async def save_once_the_refusal_is_about_to_record(account, **kwargs):
        await benefits.send(RefusePensionAccount(proposal_id="pension-413", my_number=number, received_on=day(45)),
                            subject="pension-413", source=PENSION)
        await asyncio.wait_for(refusal_records.wait(), 60)  # only so that a broken test cannot hang
        return await save(account, **kwargs)

    async def refusal_records_after_the_sweep(proposal_id, *, from_, to, on=None):
        refusal_moves = to in ("deleted", "refused_while_registering") and "registering" in from_
        if refusal_moves and not refusal_records.is_set():
            refusal_records.set()
            await asyncio.wait_for(sweep_finished.wait(), 60)
        return await move(proposal_id, from_=from_, to=to, on=on)

    monkeypatch.setattr(benefits.store, "save_account", save_once_the_refusal_is_about_to_record)
    monkeypatch.setattr(benefits.store, "move_proposal", refusal_records_after_the_sweep)
    assert await sweep(benefits, day(45)) == {"pension-413": "registered"}
    sweep_finished.set()
    await benefits.wait_fact(OptOutConcluded, proposal_id="pension-413", outcome="refused_after_registration")
    assert (await benefits.http.get(f"/accounts/{benefits.ref(number)}")).status_code == 404
    assert (await benefits.http.get("/proposals/pension-413")).json()["status"] == "deleted"
    assert (await account_facts(benefits, benefits.ref(number), 2))[-1] == (
        "AccountDeleted", "pension-413", "refused_after_registration")


async def test_a_sweep_that_stops_before_it_says_the_refused_account_is_deleted_has_the_next_say_it(
        benefits: Benefits, monkeypatch):
    """The refusal came while the sweep registered; the sweep published its AccountRegistered after
    the refusal's AccountDeleted, deleted the account and stopped before it published the deletion
    again. The next sweep publishes it, so the registration is not the last account fact."""
    number = await propose(benefits, 414, "pension-414")
    monkeypatch.setattr(benefits.store, "save_account", refused_around_the_save(benefits, number, "pension-414", before=True))
    publish = benefits.running.service.publish_facts

    async def the_process_dies_before_the_deletion_goes_out(facts, *, cause):
        if any(isinstance(fact, AccountDeleted) for fact in facts):
            raise RuntimeError("the process died before it published the deletion")
        return await publish(facts, cause=cause)

    monkeypatch.setattr(benefits.running.service, "publish_facts", the_process_dies_before_the_deletion_goes_out)
    with pytest.raises(RuntimeError):
        await sweep(benefits, day(45))
    monkeypatch.undo()
    assert (await benefits.http.get(f"/accounts/{benefits.ref(number)}")).status_code == 404
    assert await sweep(benefits, day(46)) == {"pension-414": "deleted"}
    assert (await benefits.http.get("/proposals/pension-414")).json()["status"] == "deleted"
    assert await account_facts(benefits, benefits.ref(number), 3) == [
        ("AccountDeleted", "pension-414", "refused_after_registration"),
        ("AccountRegistered", "pension-414", ""),
        ("AccountDeleted", "pension-414", "refused_after_registration"),
    ]


async def test_a_sweep_that_stops_just_after_saving_a_refused_account_has_the_next_delete_it(
        benefits: Benefits, monkeypatch):
    """The refusal came while the sweep registered and deleted nothing yet; the sweep saved the
    account and stopped there. The next sweep deletes the account and says so."""
    number = await propose(benefits, 415, "pension-415")
    refuse_then_save = refused_around_the_save(benefits, number, "pension-415", before=True)

    async def the_process_dies_after_the_save(account, **kwargs):
        await refuse_then_save(account, **kwargs)
        raise RuntimeError("the process died just after it saved the account")

    monkeypatch.setattr(benefits.store, "save_account", the_process_dies_after_the_save)
    with pytest.raises(RuntimeError):
        await sweep(benefits, day(45))
    monkeypatch.undo()
    assert (await benefits.http.get(f"/accounts/{benefits.ref(number)}")).status_code == 200  # the refused account
    assert await sweep(benefits, day(46)) == {"pension-415": "deleted"}
    assert (await benefits.http.get(f"/accounts/{benefits.ref(number)}")).status_code == 404
    assert (await benefits.http.get("/proposals/pension-415")).json()["status"] == "deleted"
    assert (await account_facts(benefits, benefits.ref(number), 2))[-1] == (
        "AccountDeleted", "pension-415", "refused_after_registration")
