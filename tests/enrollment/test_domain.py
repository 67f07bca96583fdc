"""Enrollment's pure rules: ages by birthdays, 29 February, validity, channels and photos."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from mynumber_contracts import ResidentAttributes, Sex
from mynumber_contracts.enrollment import ApplyForCard, Channel, RecordPeriodOfStay
from pydantic import ValidationError

from services.enrollment.domain import (
    Approval,
    Card,
    CardAction,
    CardRules,
    CardState,
    CardValidity,
    Rejection,
    Resident,
    age_on,
    birthday_in,
    card_validity,
    check_municipality,
    check_municipality_of_residence,
    check_period_of_stay,
    check_sender,
    nth_birthday_after,
    plan_correction,
    repeats_change,
    review_application,
    review_transition,
    validity_with_period_of_stay,
)

RULES = CardRules()


def resident(born=date(1990, 4, 1), **overrides) -> Resident:
    attributes = ResidentAttributes(name_kanji="山田 太郎", name_kana="ヤマダ タロウ", date_of_birth=born, sex=Sex.male,
                                    address="東京都千代田区永田町1-7-1")
    return Resident(**({"person_ref": "pr_" + "a" * 26, "municipality_code": "131016", "attributes": attributes,
                        "nationality": "JP"} | overrides))


def apply(channel=Channel.municipal_office, applied_on=date(2025, 6, 2), photo_ref="photo") -> ApplyForCard:
    return ApplyForCard(application_id="a", channel=channel, office_id="office", my_number="123456789018",
                        applied_on=applied_on, photo_ref=photo_ref)


@pytest.mark.parametrize(("born", "on", "age"), [
    (date(2000, 6, 2), date(2025, 6, 1), 24),
    (date(2000, 6, 2), date(2025, 6, 2), 25),
    (date(2024, 2, 29), date(2025, 2, 28), 0),
    (date(2024, 2, 29), date(2025, 3, 1), 1),
    (date(2024, 2, 29), date(2028, 2, 29), 4),
    (date(2024, 6, 3), date(2025, 6, 2), 0),  # 364 days
    (date(2023, 6, 3), date(2025, 6, 2), 1),  # 730 days, a leap day between: still 1 by birthdays
])
def test_age_is_counted_by_birthdays(born, on, age):
    assert age_on(born, on) == age


def test_a_29_february_birthday_falls_on_28_february_in_common_years():
    assert birthday_in(date(2004, 2, 29), 2025) == date(2025, 2, 28)
    assert birthday_in(date(2004, 2, 29), 2028) == date(2028, 2, 29)
    assert nth_birthday_after(date(2004, 2, 29), date(2026, 6, 1), 10) == date(2036, 2, 29)
    assert nth_birthday_after(date(2004, 2, 29), date(2025, 6, 1), 10) == date(2035, 2, 28)


def test_a_card_issued_on_a_birthday_does_not_count_that_birthday():
    assert nth_birthday_after(date(1990, 6, 2), date(2025, 6, 2), 10) == date(2035, 6, 2)
    assert nth_birthday_after(date(1990, 6, 3), date(2025, 6, 2), 10) == date(2034, 6, 3)


def test_validity_depends_on_age_at_issue_and_the_residence_period():
    assert card_validity(resident(date(2007, 6, 2)), date(2025, 6, 2), RULES).expires_on == date(2035, 6, 2)  # 18 today
    assert card_validity(resident(date(2007, 6, 3)), date(2025, 6, 2), RULES).expires_on == date(2029, 6, 3)  # 17: the 1st birthday after is the next day
    foreign = resident(nationality="VN", residence_status="student", residence_period_end=date(2026, 9, 30))
    assert card_validity(foreign, date(2025, 6, 2), RULES).expires_on == date(2026, 9, 30)
    assert card_validity(foreign, date(2025, 6, 2), RULES).certificate_expires_on == date(2026, 9, 30)
    permanent = resident(nationality="VN", residence_status="special_permanent_resident")
    assert card_validity(permanent, date(2025, 6, 2), RULES).expires_on == date(2035, 4, 1)


def test_the_rules_are_settings():
    rules = CardRules(adult_age=20, infant_photo_exemption_from=date(2030, 1, 1))
    assert card_validity(resident(date(2006, 1, 1)), date(2025, 6, 2), rules).expires_on == date(2030, 1, 1)
    assert isinstance(review_application(apply(photo_ref=None), resident(date(2025, 1, 1)), post_office_delegated=False,
                                         rules=rules), Rejection)


@pytest.mark.parametrize(("channel", "person", "delegated", "reason"), [
    (Channel.post_office, resident(), False, "no_delegation"),
    (Channel.diplomatic_office, resident(), False, "channel_not_allowed"),
    (Channel.diplomatic_office, resident(nationality="US", residence_status="permanent_resident",
                                         moved_abroad_on=date(2020, 1, 1)), False, "not_eligible_abroad"),
    (Channel.diplomatic_office, resident(moved_abroad_on=date(2015, 10, 4)), False, "not_eligible_abroad"),
    (Channel.municipal_office, resident(moved_abroad_on=date(2020, 1, 1)), False, "channel_not_allowed"),
    (Channel.municipal_office, resident(deceased_on=date(2025, 1, 1)), False, "resident_state"),
    (Channel.municipal_office, resident(nationality="VN", residence_status="student",
                                        residence_period_end=date(2025, 6, 1)), False, "resident_state"),
])
def test_applications_refused_with_a_reason(channel, person, delegated, reason):
    verdict = review_application(apply(channel), person, post_office_delegated=delegated, rules=RULES)
    assert isinstance(verdict, Rejection) and verdict.reason == reason and verdict.message


def test_applications_accepted_name_the_issuing_municipality():
    verdict = review_application(apply(Channel.post_office), resident(), post_office_delegated=True, rules=RULES)
    assert verdict == Approval(issuing_municipality="131016", photo_less=False)
    abroad = review_application(apply(Channel.diplomatic_office), resident(moved_abroad_on=date(2015, 10, 5)),
                                post_office_delegated=False, rules=RULES)
    assert isinstance(abroad, Approval)


def test_an_application_must_come_from_the_office_it_names_on_its_channel():
    at_post = ApplyForCard(application_id="a", channel=Channel.post_office, office_id="post-office/tokyo-chuo",
                           my_number="123456789018", applied_on=date(2025, 6, 2), photo_ref="p")
    assert check_sender(at_post, "post-office/tokyo-chuo") is None
    assert check_sender(at_post, "post-office/elsewhere").reason == "channel_not_allowed"
    as_municipality = at_post.model_copy(update={"office_id": "municipality/131016"})
    assert check_sender(as_municipality, "municipality/131016").reason == "channel_not_allowed"


def test_a_municipality_acts_in_its_own_name_only():
    assert check_municipality("131016", "municipality/131016") is None
    for sender in ("municipality/271004", "post-office/tokyo-chuo", "municipality/1310161", "131016"):
        refused = check_municipality("131016", sender)
        assert refused.reason == "channel_not_allowed" and sender in refused.message, sender


def test_only_the_municipality_of_residence_changes_a_residents_record():
    in_osaka = resident(municipality_code="271004")
    assert check_municipality_of_residence(in_osaka, "municipality/271004") is None
    for sender in ("municipality/131016", "post-office/osaka-kita", "diplomatic-office/us-1", "271004"):
        refused = check_municipality_of_residence(in_osaka, sender)
        assert refused.reason == "channel_not_allowed" and sender in refused.message, sender
        assert "271004" not in refused.message.replace(sender, ""), "the refusal does not say where the resident lives"


def card(state: CardState) -> Card:
    return Card(card_number="C-1", person_ref="pr_x", certificate_id="c", state=state, issued_on=date(2025, 1, 1),
                expires_on=date(2030, 1, 1), certificate_expires_on=date(2030, 1, 1), photo_less=False,
                issuing_municipality="131016", origin_key="application/a", application_id="a")


@pytest.mark.parametrize(("state", "action", "allowed"), [
    (CardState.active, CardAction.report_lost, CardState.suspended),
    (CardState.suspended, CardAction.report_lost, None),
    (CardState.suspended, CardAction.report_found, CardState.active),
    (CardState.active, CardAction.report_found, None),
    (CardState.suspended, CardAction.reissue, CardState.reissued),
    (CardState.active, CardAction.return_card, CardState.returned),
    (CardState.suspended, CardAction.revoke, CardState.revoked),
    (CardState.expired, CardAction.reissue, None),
])
def test_card_transitions(state, action, allowed):
    verdict = review_transition(card(state), action)
    assert verdict == allowed if allowed else (isinstance(verdict, Rejection) and verdict.reason == "card_state")


def test_a_registration_of_a_number_on_record_for_another_date_of_birth_or_sex_is_someone_elses():
    from services.enrollment.domain import held_by_someone_else

    on_record = ResidentAttributes(name_kanji="山田 太郎", name_kana="ヤマダ タロウ", date_of_birth=date(1990, 4, 1),
                                   sex=Sex.male, address="東京都千代田区永田町1-7-1")
    moving_in = on_record.model_copy(update={"address": "大阪府大阪市北区2-2", "name_kanji": "佐藤 太郎"})
    assert held_by_someone_else(on_record, moving_in) is None, "the same person, moving in under a new name"
    for other in ({"date_of_birth": date(1990, 4, 2)}, {"sex": Sex.female}):
        rejection = held_by_someone_else(on_record, on_record.model_copy(update=other))
        assert rejection is not None and rejection.reason.value == "duplicate" and "check the number" in rejection.message


def test_a_correction_changes_only_the_date_of_birth_or_sex_that_differs_from_the_record():
    on_record = resident().attributes  # born 1990-04-01, male

    def plan(born, sex, shown=(date(1990, 4, 1), Sex.male)):
        return plan_correction(on_record, date_of_birth=born, sex=sex, date_of_birth_on_record=shown[0], sex_on_record=shown[1])

    assert plan(date(1990, 4, 10), Sex.female) == {"date_of_birth": date(1990, 4, 10), "sex": Sex.female}
    assert plan(date(1990, 4, 10), None) == {"date_of_birth": date(1990, 4, 10)}
    assert plan(date(1990, 4, 1), Sex.female) == {"sex": Sex.female}
    assert plan(None, Sex.female) == {"sex": Sex.female}
    assert plan(date(1990, 4, 1), Sex.male) == {}, "the record already says so"
    # Sent again after it was made: the record shows the corrected values, not those "on record".
    assert plan(date(1990, 4, 1), Sex.male, shown=(date(1985, 1, 1), Sex.female)) == {}


def test_a_correction_is_made_only_to_a_record_that_shows_what_it_says_it_shows():
    on_record = resident().attributes  # born 1 April 1990, male
    for born, sex, shown in (
        (date(1990, 4, 10), None, (date(1990, 4, 2), Sex.male)),  # another date of birth on record
        (None, Sex.female, (date(1990, 4, 1), Sex.female)),  # another sex on record
        # The field it corrects already shows the new value, the other one differs: someone else's record.
        (None, Sex.male, (date(1975, 8, 20), Sex.female)),
    ):
        refused = plan_correction(on_record, date_of_birth=born, sex=sex, date_of_birth_on_record=shown[0],
                                  sex_on_record=shown[1])
        assert isinstance(refused, Rejection) and refused.reason == "record_differs", (born, sex, shown)
        assert "check the number" in refused.message and "1990" not in refused.message


def test_a_request_repeats_a_recorded_change_only_if_it_sets_what_that_change_left_and_nothing_else_changed():
    left = resident().attributes  # what the recorded change left
    assert repeats_change(["address"], left, {"address": left.address})
    assert repeats_change(["address"], left, {"address": left.address, "name_kanji": left.name_kanji}), (
        "a value the request gives but that was already on record does not make it another request")
    assert not repeats_change(["address"], left, {"address": "東京都港区1-1"}), "another address"
    assert not repeats_change(["address", "name_kanji"], left, {"address": left.address}), "that change did more"
    assert not repeats_change(["address"], left, {}), "a request that sets nothing repeats no change"
    assert not repeats_change(["address"], None, {"address": left.address}), "a record that did not keep what it left"
    assert repeats_change(["sex"], left, {"sex": Sex.male})
    assert repeats_change((), None, {}), "a death or a move abroad: the kind and the day say it all"


# --- a renewed or changed period of stay (session 17) ----------------------------------------------


def foreign_card(issued_on=date(2025, 6, 2), expires_on=date(2026, 9, 30), certificate_expires_on=date(2026, 9, 30),
                 state=CardState.active) -> Card:
    """A card issued on 2 June 2025 to a resident born on 1 April 1990, ending with the period of stay."""
    return Card(card_number="C-1", person_ref="pr_x", certificate_id="c", state=state, issued_on=issued_on,
                expires_on=expires_on, certificate_expires_on=certificate_expires_on, photo_less=False,
                issuing_municipality="131016", origin_key="application/a", application_id="a")


def test_a_longer_stay_extends_the_card_up_to_the_birthday_rule_and_its_certificate_to_the_5th_birthday():
    renewed = resident(nationality="VN", residence_status="engineer", residence_period_end=date(2029, 9, 30))
    validity = validity_with_period_of_stay(foreign_card(), renewed, date(2025, 7, 1), RULES)
    assert validity == CardValidity(expires_on=date(2029, 9, 30), certificate_expires_on=date(2029, 9, 30))

    long_stay = resident(nationality="VN", residence_status="engineer", residence_period_end=date(2040, 1, 1))
    validity = validity_with_period_of_stay(foreign_card(), long_stay, date(2025, 7, 1), RULES)
    # The birthday rule from the card's issue day (10th birthday), the certificates' 5th birthday.
    assert validity == CardValidity(expires_on=date(2035, 4, 1), certificate_expires_on=date(2030, 4, 1))


def test_a_permanent_status_gives_the_card_the_birthday_rule_expiry():
    permanent = resident(nationality="VN", residence_status="permanent_resident")
    validity = validity_with_period_of_stay(foreign_card(), permanent, date(2025, 7, 1), RULES)
    assert validity == CardValidity(expires_on=date(2035, 4, 1), certificate_expires_on=date(2030, 4, 1))


def test_a_shorter_period_of_stay_shortens_the_card_and_its_certificates():
    shortened = resident(nationality="VN", residence_status="designated_activities", residence_period_end=date(2025, 12, 31))
    validity = validity_with_period_of_stay(foreign_card(), shortened, date(2025, 7, 1), RULES)
    assert validity == CardValidity(expires_on=date(2025, 12, 31), certificate_expires_on=date(2025, 12, 31))


def test_a_card_that_keeps_its_validity_is_past_its_last_day_or_is_not_held_is_left_as_it_is():
    same = resident(nationality="VN", residence_status="student", residence_period_end=date(2026, 9, 30))
    assert validity_with_period_of_stay(foreign_card(), same, date(2025, 7, 1), RULES) is None
    renewed = resident(nationality="VN", residence_status="engineer", residence_period_end=date(2029, 9, 30))
    assert validity_with_period_of_stay(None, renewed, date(2025, 7, 1), RULES) is None
    assert validity_with_period_of_stay(foreign_card(), renewed, date(2026, 10, 1), RULES) is None, "not revived"
    for state in (CardState.expired, CardState.revoked, CardState.returned, CardState.reissued):
        assert validity_with_period_of_stay(foreign_card(state=state), renewed, date(2025, 7, 1), RULES) is None, state
    suspended = validity_with_period_of_stay(foreign_card(state=CardState.suspended), renewed, date(2025, 7, 1), RULES)
    assert suspended is not None and suspended.expires_on == date(2029, 9, 30), "a card reported lost follows too"


def test_a_period_of_stay_is_recorded_only_for_a_living_foreign_resident_in_japan_and_not_already_ended():
    foreign = resident(nationality="VN", residence_status="student", residence_period_end=date(2026, 9, 30))
    today = date(2025, 7, 1)
    assert check_period_of_stay(foreign, date(2029, 9, 30), today) is None
    assert check_period_of_stay(foreign, today, today) is None, "a period ending today has not ended"
    assert check_period_of_stay(foreign, None, today) is None, "a permanent status"
    refusals = {
        "deceased": check_period_of_stay(replace(foreign, deceased_on=date(2025, 6, 20)), date(2029, 9, 30), today),
        "japanese": check_period_of_stay(resident(), date(2029, 9, 30), today),
        "abroad": check_period_of_stay(replace(foreign, moved_abroad_on=date(2025, 6, 20)), date(2029, 9, 30), today),
        "ended": check_period_of_stay(foreign, date(2025, 6, 30), today),
    }
    for case, refusal in refusals.items():
        assert isinstance(refusal, Rejection) and refusal.reason == "resident_state", case


def test_a_period_of_stay_request_names_a_period_end_for_any_status_but_a_permanent_one():
    common = {"my_number": "123456789018", "effective_on": date(2025, 7, 1)}
    assert RecordPeriodOfStay(residence_status="engineer", residence_period_end=date(2029, 9, 30), **common)
    assert RecordPeriodOfStay(residence_status="permanent_resident", **common).residence_period_end is None
    with pytest.raises(ValidationError, match="needs a residence_period_end"):
        RecordPeriodOfStay(residence_status="engineer", **common)
    with pytest.raises(ValidationError, match="has no period of stay"):
        RecordPeriodOfStay(residence_status="permanent_resident", residence_period_end=date(2029, 9, 30), **common)
