"""The licensing rules on their own: no broker, no database."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from mynumber_contracts import MyNumber, check_digit
from mynumber_contracts.licensing import (
    ConventionalLicenceUpdateRequired,
    HolderChoice,
    LicenceClass,
    LicenceReRecordingNeeded,
    LicenceTransaction,
    RecordLicence,
    RecordLicenceOnNewCard,
    RegisterVehicle,
    RevokeLicence,
    SuspendLicence,
    TransferVehicle,
)
from pydantic import ValidationError

from services.licensing import domain
from services.licensing.domain import Card, CardStatus, Holder, Licence, RoadsideStatus
from services.licensing.settings import LicensingSettings

FEES = LicensingSettings().fee_table()
TODAY = date(2026, 6, 1)
HOLDER, OTHER = "pr_" + "a" * 26, "pr_" + "b" * 26


def number(seed: int) -> MyNumber:
    base = f"{seed:011d}"
    return MyNumber(base + str(check_digit(base)))


def card(card_number: str = "C-1", person_ref: str = HOLDER, status: CardStatus = CardStatus.active,
         issued_on: date = date(2025, 4, 1), expires_on: date = date(2035, 4, 1)) -> Card:
    return Card(card_number=card_number, person_ref=person_ref, status=status, issued_on=issued_on, expires_on=expires_on)


def licence(**changes) -> Licence:
    values = dict(person_ref=HOLDER, licence_number="300000000001", holder_choice=HolderChoice.card_only,
                  card_number="C-1", issued_on=date(2026, 5, 20), expires_on=date(2029, 7, 1),
                  classes=[LicenceClass.ordinary], conditions=[], photo_ref="photo/1", recorded_by="pol-1",
                  card_recorded_by="pol-1", version=1)
    values.update(changes)
    return Licence(**values)


def request(**changes) -> RecordLicence:
    values = dict(request_id="pol-9", card_number="C-1", transaction=LicenceTransaction.renewal,
                  holder_choice=HolderChoice.card_only, licence_number="300000000001", issued_on=date(2026, 5, 20),
                  expires_on=date(2029, 7, 1), classes=[LicenceClass.ordinary], photo_ref="photo/1")
    values.update(changes)
    return RecordLicence(**values)


@pytest.mark.parametrize(("transaction", "choice", "fee"), [
    ("renewal", "card_only", 2100), ("renewal", "conventional_only", 2850), ("renewal", "both", 2950),
    ("new", "card_only", 1550), ("new", "conventional_only", 2350), ("new", "both", 2450),
])
def test_the_fee_follows_the_transaction_and_the_holder_choice(transaction, choice, fee):
    decision = domain.record_licence(request(transaction=transaction, holder_choice=choice), Holder(HOLDER, card()),
                                     current=None, number_holder=None, address=None, fees=FEES, today=TODAY)
    assert decision.facts[0].fee_yen == fee


def test_fees_are_settings(monkeypatch):
    monkeypatch.setenv("MYNUMBER_FEE_RENEWAL_CARD_ONLY_YEN", "1800")
    assert LicensingSettings().fee_table().fee(LicenceTransaction.renewal, HolderChoice.card_only) == 1800


def test_requests_must_name_the_holder_and_be_consistent():
    with pytest.raises(ValidationError, match="identify the holder"):
        request(card_number=None)
    with pytest.raises(ValidationError, match="expires_on must be after issued_on"):
        request(expires_on=date(2026, 5, 1))
    with pytest.raises(ValidationError, match="classes must not repeat"):
        request(classes=[LicenceClass.ordinary, LicenceClass.ordinary])
    assert number(123).reveal() not in repr(request(card_number=None, my_number=number(123)))  # masked


def test_a_card_past_its_expiry_date_is_expired_and_the_current_card_is_the_newest_active_one():
    assert card(expires_on=date(2026, 5, 31)).status_on(TODAY) is CardStatus.expired
    assert card(expires_on=TODAY).status_on(TODAY) is CardStatus.active
    old, new = card("C-old", status=CardStatus.replaced), card("C-new", issued_on=date(2026, 6, 1))
    assert domain.current_card([old, new]).card_number == "C-new"
    assert domain.current_card([card("C-lost", status=CardStatus.suspended)]).status is CardStatus.suspended
    assert domain.current_card([]) is None


def test_renewing_a_revoked_licence_is_refused_and_a_renewal_keeps_a_suspension():
    revoked = licence(revoked_on=date(2026, 1, 1), revoked_by="pol-r")
    refused = domain.record_licence(request(), Holder(HOLDER, card()), current=revoked, number_holder=HOLDER,
                                    address=None, fees=FEES, today=TODAY)
    assert refused.saved is None and refused.facts[0].reason == "licence_revoked"
    suspended = licence(suspended_from=date(2026, 6, 1), suspended_until=date(2026, 6, 30), suspended_by="pol-s")
    renewed = domain.record_licence(request(), Holder(HOLDER, card()), current=suspended, number_holder=HOLDER,
                                    address="新住所", fees=FEES, today=TODAY)
    assert renewed.saved.suspended_until == date(2026, 6, 30) and renewed.saved.address == "新住所"
    assert renewed.saved.version == 1, "saved over the version that was read"


def record(licence_request: RecordLicence, current: Licence | None) -> domain.Decision[Licence]:
    return domain.record_licence(licence_request, Holder(HOLDER, card()), current=current,
                                 number_holder=HOLDER if current else None, address=None, fees=FEES, today=TODAY)


def test_an_issue_run_again_after_a_revocation_or_a_renewal_gives_its_fact_and_writes_nothing():
    """The same request run again (after a crash, or by a consumer that fell behind after later
    requests) must not put back the licence as it recorded it: the revocation and the renewal stand."""
    issue = request(request_id="pol-1", transaction=LicenceTransaction.new)
    first = record(issue, None)
    revoked = domain.revoke_licence(RevokeLicence(request_id="pol-r", licence_number="300000000001",
                                                  revoked_on=date(2026, 6, 1)), first.saved).saved
    renewed = record(request(request_id="pol-2", expires_on=date(2032, 7, 1)), first.saved).saved
    assert renewed.earlier_records == ["pol-1"]

    for since in (first.saved, revoked, renewed):
        again = record(issue, since)
        assert again.saved is None, "nothing written"
        assert again.facts == first.facts, "the same fact"
    changed = request(request_id="pol-2", expires_on=date(2033, 7, 1))  # the last request id, with other content
    assert record(changed, renewed).saved.expires_on == date(2033, 7, 1), "recorded again, as before"


def test_a_suspension_run_again_after_a_later_one_or_a_revocation_gives_its_fact_and_writes_nothing():
    first = SuspendLicence(request_id="pol-s1", licence_number="300000000001", suspended_from=date(2026, 6, 1),
                           suspended_until=date(2026, 6, 30))
    second = first.model_copy(update={"request_id": "pol-s2", "suspended_until": date(2026, 8, 31)})
    once = domain.suspend_licence(first, licence())
    twice = domain.suspend_licence(second, once.saved)
    assert twice.saved.earlier_suspensions == ["pol-s1"]
    revoked = domain.revoke_licence(RevokeLicence(request_id="pol-r", licence_number="300000000001",
                                                  revoked_on=date(2026, 7, 1)), twice.saved).saved

    for since in (once.saved, twice.saved, revoked):
        again = domain.suspend_licence(first, since)
        assert (again.saved, again.facts) == (None, once.facts), "the same fact, nothing written"
    issued_new = record(request(request_id="pol-2", transaction=LicenceTransaction.new), revoked).saved
    assert issued_new.suspended_by is None and issued_new.earlier_suspensions == ["pol-s1", "pol-s2"]
    assert domain.suspend_licence(second, issued_new).saved is None, "known after a new issue of the number too"


def test_a_new_issue_of_a_suspended_licence_keeps_the_suspension():
    """A class added under the same number while the holder is suspended does not lift the suspension."""
    suspended = domain.suspend_licence(SuspendLicence(request_id="pol-s", licence_number="300000000001",
                                                      suspended_from=date(2026, 6, 1), suspended_until=date(2026, 8, 31)),
                                       licence()).saved
    added_class = record(request(request_id="pol-2", transaction=LicenceTransaction.new,
                                 classes=[LicenceClass.ordinary, LicenceClass.medium]), suspended).saved
    assert (added_class.suspended_from, added_class.suspended_until) == (date(2026, 6, 1), date(2026, 8, 31))
    assert added_class.suspended_by == "pol-s" and added_class.suspended_on(TODAY)
    assert domain.roadside_check(card(), added_class, TODAY).status is RoadsideStatus.licence_suspended


@pytest.mark.parametrize("choice", list(HolderChoice))
def test_no_licence_is_recorded_for_a_deceased_holder_and_no_one_is_named(choice):
    for current in (None, licence()):
        refused = domain.record_licence(request(holder_choice=choice), Holder(HOLDER, card()), current=current,
                                        number_holder=HOLDER if current else None, address=None, fees=FEES,
                                        today=TODAY, holder_deceased=True)
        assert refused.saved is None
        assert [(f.reason, f.person_ref) for f in refused.facts] == [("holder_deceased", None)]
    recorded_before = record(request(request_id="pol-1"), None)
    again = domain.record_licence(request(request_id="pol-1"), Holder(HOLDER, card()), current=recorded_before.saved,
                                  number_holder=HOLDER, address=None, fees=FEES, today=TODAY, holder_deceased=True)
    assert (again.saved, again.facts) == (None, recorded_before.facts), "a licence recorded before the death, run again"


def test_a_revocation_run_again_after_the_number_was_issued_new_leaves_the_new_licence():
    """Revoked by pol-r, the number is later issued new to the holder; pol-r run again late (a
    consumer that fell behind) must not revoke the new licence with the old date."""
    revocation = RevokeLicence(request_id="pol-r", licence_number="300000000001", revoked_on=date(2026, 6, 1))
    revoked = domain.revoke_licence(revocation, licence())
    issued_new = record(request(request_id="pol-3", transaction=LicenceTransaction.new, issued_on=date(2027, 6, 1),
                                expires_on=date(2030, 7, 1)), revoked.saved).saved
    assert not issued_new.revoked and issued_new.earlier_revocations == ["pol-r"]
    again = domain.revoke_licence(revocation, issued_new)
    assert (again.saved, again.facts) == (None, revoked.facts), "the same fact, nothing written"
    later = RevokeLicence(request_id="pol-r2", licence_number="300000000001", revoked_on=date(2028, 1, 1))
    assert domain.revoke_licence(later, issued_new).saved.revoked_on == date(2028, 1, 1), "a new revocation applies"


def test_an_issue_run_again_after_the_holder_got_a_licence_under_a_new_number_leaves_the_new_one():
    first = record(request(request_id="pol-1", transaction=LicenceTransaction.new), None)
    new_number = record(request(request_id="pol-5", transaction=LicenceTransaction.new, licence_number="300000000002"),
                        first.saved).saved
    assert new_number.earlier_records == ["pol-1"]
    again = record(request(request_id="pol-1", transaction=LicenceTransaction.new), new_number)
    assert (again.saved, again.facts) == (None, first.facts), "the same fact; the licence under the new number stands"


def test_a_licence_needs_the_holders_active_card_unless_it_is_conventional_only():
    mismatch = domain.identify_holder(request(my_number=number(1)), number_ref=OTHER, card=card())
    assert (mismatch.facts[0].reason, mismatch.facts[0].person_ref) == ("card_holder_mismatch", None)
    lost = Holder(HOLDER, card(status=CardStatus.suspended))
    assert domain.record_licence(request(), lost, current=None, number_holder=None, address=None, fees=FEES,
                                 today=TODAY).facts[0].reason == "card_not_active"
    conventional = domain.record_licence(request(holder_choice=HolderChoice.conventional_only), lost, current=None,
                                         number_holder=None, address=None, fees=FEES, today=TODAY)
    assert conventional.saved.card_number is None and conventional.facts[0].card_number is None


def test_reissued_twice_before_re_recording_asks_for_the_newest_card_and_a_replay_asks_again():
    on_card = licence()
    first = domain.new_card_for_holder(on_card, void_card_number="C-1", new_card_number="C-2")
    assert first.saved.re_recording_card_number == "C-2"
    second = domain.new_card_for_holder(first.saved, void_card_number="C-2", new_card_number="C-3")
    assert second.facts == [LicenceReRecordingNeeded(person_ref=HOLDER, licence_number="300000000001",
                                                     previous_card_number="C-1", card_number="C-3")]
    assert domain.new_card_for_holder(second.saved, void_card_number="C-2", new_card_number="C-3").facts == second.facts
    assert domain.new_card_for_holder(licence(holder_choice=HolderChoice.conventional_only, card_number=None),
                                      void_card_number="C-1", new_card_number="C-2").facts == []


def test_a_new_card_after_the_old_one_expired_needs_a_re_recording_but_not_while_the_old_one_is_active():
    assert domain.card_issued(licence(), card(status=CardStatus.expired), "C-2", TODAY).saved.re_recording_card_number == "C-2"
    assert domain.card_issued(licence(), card(), "C-2", TODAY).facts == []


def test_re_recording_is_idempotent_per_request_and_refused_otherwise():
    pending = licence(re_recording_card_number="C-2")
    rerecord = RecordLicenceOnNewCard(request_id="pol-rr", card_number="C-2", licence_number="300000000001")
    done = domain.record_licence_on_new_card(rerecord, Holder(HOLDER, card("C-2")), licence=pending, fees=FEES, today=TODAY)
    assert (done.saved.card_number, done.saved.previous_card_number, done.saved.re_recording_card_number) == ("C-2", "C-1", None)
    replay = domain.record_licence_on_new_card(rerecord, Holder(HOLDER, card("C-2")), licence=done.saved, fees=FEES,
                                               today=TODAY)
    assert replay.facts == done.facts
    other = rerecord.model_copy(update={"request_id": "pol-rr-2"})
    assert domain.record_licence_on_new_card(other, Holder(HOLDER, card("C-2")), licence=done.saved, fees=FEES,
                                             today=TODAY).facts[0].reason == "already_recorded"


def test_holders_of_both_forms_are_told_to_update_the_conventional_licence():
    decision = domain.address_changed(licence(holder_choice=HolderChoice.both), "新住所", TODAY)
    assert decision.saved is None and isinstance(decision.facts[0], ConventionalLicenceUpdateRequired)
    assert domain.address_changed(None, "新住所", TODAY).facts == []


@pytest.mark.parametrize(("the_card", "the_licence", "day", "status"), [
    (card(), licence(), TODAY, RoadsideStatus.valid),
    (card(), licence(), date(2026, 5, 19), RoadsideStatus.licence_not_yet_valid),
    (card(), licence(suspended_from=TODAY, suspended_until=TODAY), TODAY, RoadsideStatus.licence_suspended),
    (card(), licence(revoked_on=TODAY), TODAY, RoadsideStatus.licence_revoked),
    (card(status=CardStatus.replaced), licence(re_recording_card_number="C-2"), TODAY, RoadsideStatus.card_unusable),
    (card("C-2"), licence(re_recording_card_number="C-2"), TODAY, RoadsideStatus.re_recording_pending),
    (card(expires_on=date(2026, 5, 31)), licence(), TODAY, RoadsideStatus.card_unusable),
    (card(), licence(holder_choice=HolderChoice.conventional_only, card_number=None), TODAY,
     RoadsideStatus.no_licence_on_card),
])
def test_the_roadside_verdict(the_card, the_licence, day, status):
    verdict = domain.roadside_check(the_card, the_licence, day)
    assert verdict.status is status
    assert verdict.valid == (status in (RoadsideStatus.valid, RoadsideStatus.re_recording_pending))


def test_vehicle_requests_replay_by_request_id_and_check_the_card_on_the_day():
    register = RegisterVehicle(request_id="tb-1", vehicle_id="V-1", registration_number="品川 330 あ 1",
                               owner_card_number="C-1", registered_on=TODAY)
    registered = domain.register_vehicle(register, card(), None)
    assert domain.register_vehicle(register, card(), registered.saved).facts == registered.facts
    late = register.model_copy(update={"request_id": "tb-2", "vehicle_id": "V-2", "registered_on": date(2035, 4, 2)})
    assert domain.register_vehicle(late, card(), None).facts[0].reason == "card_expired"

    move = TransferVehicle(request_id="tb-3", vehicle_id="V-1", new_owner_card_number="C-9", transferred_on=TODAY)
    moved = domain.transfer_vehicle(move, card("C-9", OTHER), registered.saved)
    assert [o.person_ref for o in moved.saved.owners] == [HOLDER, OTHER]
    replay = domain.transfer_vehicle(move, card("C-9", OTHER), moved.saved)
    assert replay.saved is None and replay.facts == moved.facts


def test_dates_are_counted_in_japan():
    assert domain.japan_date(datetime(2026, 6, 30, 15, 0, tzinfo=UTC)) == date(2026, 7, 1)


def test_a_licence_under_another_number_replaces_a_valid_one_only_when_the_card_confirms_the_holder():
    """Named by the number alone (a typo may pass the check digit), the person's valid licence stands."""
    valid = licence()
    by_number = request(request_id="pol-7", card_number=None, my_number=number(7), transaction=LicenceTransaction.new,
                        licence_number="300000000020")
    refused = record(by_number, valid)
    assert refused.saved is None
    assert (refused.facts[0].reason, refused.facts[0].person_ref) == ("other_licence_on_record", None)
    assert number(7).reveal() not in refused.facts[0].message
    by_card = by_number.model_copy(update={"card_number": "C-1"})
    assert record(by_card, valid).saved.licence_number == "300000000020", "the holder's card confirms them"
    for ended in (licence(revoked_on=date(2026, 1, 1), revoked_by="pol-r"), licence(expires_on=date(2026, 5, 31))):
        assert record(by_number, ended).saved.licence_number == "300000000020", "a revoked or lapsed licence is replaced"
    assert record(by_number.model_copy(update={"licence_number": "300000000001"}), valid).saved is not None, "same number"
    reissued = by_number.model_copy(update={"licence_number": "300000000011"})  # a new last digit: the reissue count
    assert record(reissued, licence(licence_number="300000000010")).saved.licence_number == "300000000011"


def test_a_holder_born_on_another_day_than_the_person_named_is_refused_and_no_one_is_named():
    """The police's date of birth against the one enrollment told us: a mistyped number (or card) that
    names someone else, with no licence of theirs to give it away, no longer gets that person the licence."""
    def decide(born, on_record, current=None):
        return domain.record_licence(request(request_id="pol-1", holder_date_of_birth=born), Holder(HOLDER, card()),
                                     current=current, number_holder=HOLDER if current else None, address=None,
                                     fees=FEES, today=TODAY, date_of_birth_on_record=on_record)

    refused = decide(date(1990, 1, 2), date(1980, 4, 1))
    assert refused.saved is None
    assert [(f.reason, f.person_ref) for f in refused.facts] == [("record_differs", None)]
    assert decide(date(1980, 4, 1), date(1980, 4, 1)).saved is not None, "the same day"
    assert decide(None, date(1980, 4, 1)).saved is not None, "not sent: not checked"
    assert decide(date(1990, 1, 2), None).saved is not None, "not known (a resident recorded before it was kept)"
    first = decide(date(1980, 4, 1), date(1980, 4, 1))
    assert decide(date(1980, 4, 1), date(1980, 4, 2), current=first.saved).facts == first.facts, (
        "recorded before a correction of the date on record, run again: its first fact")
