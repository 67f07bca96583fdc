"""The insurance rules on their own: matching, certificates, eligibility and consent (no servers)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from mynumber_contracts import ResidentAttributes, Sex
from mynumber_contracts.insurance import (
    CertificateApplicationReason,
    CertificateIssueReason,
    CertificateWithdrawalReason,
    CopayCategory,
    EligibilityDenialReason,
    HeldReason,
    MatchedAttribute,
    MedicalDataDenialReason,
    MedicalDataType,
    RejectionReason,
)

from services.insurance.domain import (
    Card,
    CardStatus,
    CertificateStatus,
    EligibilityCertificate,
    InsuranceUse,
    IssueCertificate,
    LinkState,
    MatchKey,
    MedicalDataPolicy,
    Membership,
    MembershipStatus,
    Person,
    RegisteredResident,
    WithdrawalStep,
    WithdrawCertificate,
    answer_eligibility,
    card_insurance_blocker,
    decide_link,
    decide_withdrawal,
    eligibility_records,
    has_expired,
    holder_card_refusal,
    kept_through_last_day,
    plan_certificates,
    renewal_due,
    renewed,
    validity_period,
)

TODAY = date(2026, 4, 1)


def attrs(**changes: object) -> ResidentAttributes:
    values = dict(name_kanji="山田 祥子", name_kana="ヤマダ ショウコ", date_of_birth=date(1985, 6, 15), sex=Sex.female,
                  address="東京都千代田区永田町1-7-1")
    values.update(changes)
    return ResidentAttributes(**values)


# --- matching --------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", [
    attrs(name_kana="ﾔﾏﾀﾞ ｼｮｳｺ"),
    attrs(name_kana="ヤマダ　シヨウコ"),
    attrs(name_kana="ヤマダショウコ", name_kanji="山田　祥子"),
    attrs(name_kanji="山田祥子"),
    attrs(address="東京都千代田区永田町一丁目7番1号"),
    attrs(address="東京都千代田区永田町１－７－１"),
    attrs(address="東京都 千代田区 永田町1丁目7番地1"),
    attrs(address="東京都千代田区永田町1‐7‐1"),
])
def test_notation_variants_match(variant):
    assert MatchKey.of(variant) == MatchKey.of(attrs())


@pytest.mark.parametrize(("variant", "field"), [
    (attrs(name_kana="ヤマダ ジョウコ"), MatchedAttribute.name_kana),  # a voiced mark is a different name
    (attrs(name_kana="ヤマダ ショーコ"), MatchedAttribute.name_kana),  # so is a long vowel
    (attrs(name_kanji="山田 翔子"), MatchedAttribute.name_kanji),
    (attrs(name_kanji="山田 祥子", address="千代田区永田町1-7-1"), MatchedAttribute.address),  # no prefecture
    (attrs(address="東京都千代田区永田町1-7-2"), MatchedAttribute.address),
    (attrs(address="東京都千代田区永田町1-71"), MatchedAttribute.address),
    (attrs(date_of_birth=date(1985, 6, 16)), MatchedAttribute.date_of_birth),
    (attrs(sex=Sex.male), MatchedAttribute.sex),
])
def test_real_differences_never_match(variant, field):
    assert MatchKey.of(variant).differences(MatchKey.of(attrs())) == (field,)


def test_decide_link_links_only_the_numbers_person_on_five_matching_attributes():
    resident = RegisteredResident("pr_a", attrs())
    assert decide_link(claimed_person_ref="pr_a", resident=resident, insurer_attributes=attrs(name_kana="ﾔﾏﾀﾞ ｼｮｳｺ"),
                       residents_with_same_attributes=["pr_a"]).person_ref == "pr_a"
    cases = {
        HeldReason.number_missing: dict(claimed_person_ref=None, resident=None),
        HeldReason.resident_not_found: dict(claimed_person_ref="pr_a", resident=None),
        HeldReason.resident_not_active: dict(claimed_person_ref="pr_a", resident=RegisteredResident("pr_a", attrs(), deceased=True)),
    }
    for reason, kwargs in cases.items():
        outcome = decide_link(**kwargs, insurer_attributes=attrs(), residents_with_same_attributes=["pr_a"])
        assert (outcome.linked, outcome.person_ref, outcome.held_reason) == (False, None, reason)
    mismatch = decide_link(claimed_person_ref="pr_a", resident=resident, insurer_attributes=attrs(address="大阪府大阪市北区梅田1-1-1", sex=Sex.male),
                           residents_with_same_attributes=[])
    assert mismatch.held_reason is HeldReason.attribute_mismatch and set(mismatch.mismatched) == {MatchedAttribute.sex, MatchedAttribute.address}
    ambiguous = decide_link(claimed_person_ref="pr_a", resident=resident, insurer_attributes=attrs(),
                            residents_with_same_attributes=["pr_a", "pr_b"])
    assert ambiguous.held_reason is HeldReason.ambiguous and ambiguous.person_ref is None


# --- the card, certificates and eligibility ---------------------------------------------------


def card(status: CardStatus = CardStatus.active, certificate_expires_on: date = date(2031, 1, 1)) -> Card:
    return Card("C-1", "cert-1", status, date(2036, 1, 1), certificate_expires_on)


def membership(**changes: object) -> Membership:
    values = dict(member_key="06139999/記号/1", insurer_number="06139999", member_symbol="記号", member_number="1",
                  copay_category=CopayCategory.thirty_percent, enrolled_on=date(2026, 4, 1), status=MembershipStatus.active,
                  link_state=LinkState.linked, person_ref="pr_a")
    values.update(changes)
    return Membership(**values)


SITUATIONS = {
    CertificateIssueReason.no_card: Person("pr_a"),
    CertificateIssueReason.card_not_registered: Person("pr_a", card=card()),
    CertificateIssueReason.card_certificate_expired: Person("pr_a", card=card(certificate_expires_on=TODAY - timedelta(days=1)),
                                                           insurance_use=InsuranceUse.registered),
    CertificateIssueReason.insurance_use_cancelled: Person("pr_a", card=card(), insurance_use=InsuranceUse.cancelled),
    CertificateIssueReason.card_returned: Person("pr_a", card=card(CardStatus.returned), insurance_use=InsuranceUse.registered),
    CertificateIssueReason.card_lost: Person("pr_a", card=card(CardStatus.suspended), insurance_use=InsuranceUse.registered),
    CertificateIssueReason.card_unusable: Person("pr_a", card=card(CardStatus.revoked), insurance_use=InsuranceUse.registered),
    CertificateIssueReason.applied_needs_assistance: Person(
        "pr_a", card=card(), insurance_use=InsuranceUse.registered,
        certificate_application=CertificateApplicationReason.needs_assistance),
}
CARD_BASED = Person("pr_a", card=card(), insurance_use=InsuranceUse.registered)


@pytest.mark.parametrize("reason", list(SITUATIONS))
def test_each_situation_without_usable_card_gets_a_certificate_with_its_reason(reason):
    person = SITUATIONS[reason]
    assert card_insurance_blocker(person, TODAY) is reason
    [action] = plan_certificates(person, [membership()], {}, today=TODAY, validity_years={}, cause_id="e1")
    assert isinstance(action, IssueCertificate)
    certificate = action.certificate
    assert (certificate.reason, certificate.valid_from, certificate.valid_until) == (reason, TODAY, date(2027, 3, 31))
    assert certificate.on_application is (reason is CertificateIssueReason.applied_needs_assistance)


def test_never_both_a_certificate_and_card_based_insurance():
    """For every combination of card state, use and application: a certificate is planned exactly
    when the eligibility check by card says no."""
    cards = [None, card(), card(CardStatus.suspended), card(CardStatus.returned), card(certificate_expires_on=TODAY - timedelta(days=1))]
    for card_state, use, application in itertools.product(cards, InsuranceUse, [None, *CertificateApplicationReason]):
        person = Person("pr_a", card=card_state, insurance_use=use, certificate_application=application)
        planned = plan_certificates(person, [membership()], {}, today=TODAY, validity_years={}, cause_id="e1")
        [record] = eligibility_records(person, [membership()], on=TODAY) or [None]
        card_says_yes = record is not None and answer_eligibility(record, today=TODAY, no_card_surcharge=True).eligible
        assert bool(planned) is not card_says_yes, (card_state, use, application)


def test_a_certificate_is_withdrawn_when_the_card_is_linked_or_the_membership_ends():
    [issue] = plan_certificates(Person("pr_a"), [membership()], {}, today=TODAY, validity_years={}, cause_id="e1")
    held = {issue.certificate.member_key: issue.certificate}
    [withdraw] = plan_certificates(CARD_BASED, [membership()], held, today=TODAY, validity_years={}, cause_id="e2")
    assert isinstance(withdraw, WithdrawCertificate) and withdraw.reason is CertificateWithdrawalReason.card_linked
    [ended] = plan_certificates(Person("pr_a"), [membership(status=MembershipStatus.withdrawn)], held, today=TODAY, validity_years={}, cause_id="e3")
    assert ended.reason is CertificateWithdrawalReason.member_withdrawn
    [died] = plan_certificates(Person("pr_a", deceased=True), [membership()], held, today=TODAY, validity_years={}, cause_id="e4")
    assert died.reason is CertificateWithdrawalReason.resident_deceased
    assert plan_certificates(Person("pr_a"), [membership(link_state=LinkState.held)], {}, today=TODAY, validity_years={}, cause_id="e5") == []


def test_a_person_is_settled_only_on_their_own_certificates():
    """Member record 1 was linked to pr_a, withdrawn, and enrolled again for pr_q, who holds its
    certificate now; the record stays among pr_a's member keys."""
    moved = membership(person_ref="pr_q")
    [issue] = plan_certificates(Person("pr_q"), [moved], {}, today=TODAY, validity_years={}, cause_id="e1")
    theirs = {moved.member_key: issue.certificate}
    for person in (CARD_BASED, Person("pr_a"), Person("pr_a", deceased=True)):
        assert plan_certificates(person, [moved], theirs, today=TODAY, validity_years={}, cause_id="e2") == [], person
    # A certificate of pr_a's own left on the record (pr_a not settled since) is withdrawn as the membership's end.
    [own] = plan_certificates(Person("pr_a"), [membership()], {}, today=TODAY, validity_years={}, cause_id="e3")
    [withdraw] = plan_certificates(CARD_BASED, [moved], {moved.member_key: own.certificate}, today=TODAY,
                                   validity_years={}, cause_id="e4")
    assert isinstance(withdraw, WithdrawCertificate) and withdraw.reason is CertificateWithdrawalReason.member_withdrawn


def test_validity_is_per_insurer_one_year_by_default_at_most_five():
    [issue] = plan_certificates(Person("pr_a"), [membership()], {}, today=TODAY, validity_years={"06139999": 5}, cause_id="e1")
    assert issue.certificate.valid_until == date(2031, 3, 31)
    assert validity_period(date(2028, 2, 29), 1) == (date(2028, 2, 29), date(2029, 2, 28)), "the last day of February"
    assert validity_period(date(2028, 2, 28), 1) == (date(2028, 2, 28), date(2029, 2, 27))
    assert validity_period(date(2028, 2, 29), 4) == (date(2028, 2, 29), date(2032, 2, 28))
    with pytest.raises(ValueError):
        validity_period(TODAY, 6)


def test_renewal_and_expiry_windows():
    [issue] = plan_certificates(Person("pr_a"), [membership()], {}, today=TODAY, validity_years={}, cause_id="e1")
    certificate = issue.certificate  # valid until 2027-03-31
    assert not renewal_due(certificate, date(2027, 2, 28), 30)
    assert renewal_due(certificate, date(2027, 3, 1), 30) and renewal_due(certificate, date(2027, 3, 31), 30)
    assert not renewal_due(certificate, date(2027, 4, 1), 30)
    assert renewed(certificate, 2).valid_from == date(2027, 4, 1) and renewed(certificate, 2).valid_until == date(2029, 3, 31)
    assert not has_expired(certificate, date(2027, 3, 31)) and has_expired(certificate, date(2027, 4, 1))
    assert not has_expired(replace(certificate, status=CertificateStatus.withdrawn), date(2028, 1, 1))


def test_eligibility_answers_and_the_surcharge_setting():
    [record] = eligibility_records(CARD_BASED, [membership()], on=TODAY)
    yes = answer_eligibility(record, today=TODAY, no_card_surcharge=True)
    assert yes.eligible and yes.membership.copay_category is CopayCategory.thirty_percent and yes.no_card_surcharge is False
    unknown = answer_eligibility(None, today=TODAY, no_card_surcharge=False)
    assert (unknown.eligible, unknown.reason, unknown.no_card_surcharge) == (False, EligibilityDenialReason.unknown_card, False)
    [no_member] = eligibility_records(CARD_BASED, [], on=TODAY)
    assert answer_eligibility(no_member, today=TODAY, no_card_surcharge=True).reason is EligibilityDenialReason.no_active_membership
    [replaced, current] = eligibility_records(CARD_BASED, [membership()], retired=[card(CardStatus.replaced)], on=TODAY)
    assert answer_eligibility(replaced, today=TODAY, no_card_surcharge=True).reason is EligibilityDenialReason.card_replaced
    assert answer_eligibility(record, today=date(2031, 1, 2), no_card_surcharge=True).reason is EligibilityDenialReason.card_certificate_expired


# --- eligibility by day: a membership counts from its first day through its last ------------------


def answer_on(day: date, memberships: list[Membership], *, written_on: date = TODAY):
    [record] = eligibility_records(CARD_BASED, memberships, on=written_on)
    return answer_eligibility(record, today=day, no_card_surcharge=True)


def test_a_membership_enrolled_ahead_counts_from_its_first_day():
    """Enrolled on 1 April with a first day of 1 May: not insured in April, insured from 1 May, with
    the record written in April (no later write is needed)."""
    ahead = membership(enrolled_on=date(2026, 5, 1))
    for day in (TODAY, date(2026, 4, 30)):
        april = answer_on(day, [ahead])
        assert (april.eligible, april.reason, april.membership) == (False, EligibilityDenialReason.no_active_membership, None), day
    for day in (date(2026, 5, 1), date(2027, 1, 1)):
        assert answer_on(day, [ahead]).membership == ahead, day


def test_a_withdrawal_announced_ahead_ends_eligibility_after_its_last_day_only():
    """Withdrawn on 1 April with a last day of 30 April: insured through 30 April, not from 1 May."""
    leaving = membership(enrolled_on=date(2025, 4, 1), status=MembershipStatus.withdrawn, withdrawn_on=date(2026, 4, 30))
    for day in (TODAY, date(2026, 4, 30)):
        assert answer_on(day, [leaving]).membership == leaving, day
    may = answer_on(date(2026, 5, 1), [leaving])
    assert (may.eligible, may.reason) == (False, EligibilityDenialReason.no_active_membership)


def test_a_job_change_announced_ahead_answers_the_old_insurer_through_its_last_day():
    """The old insurer's last day is 31 May, the new insurer's first day 1 June; both are known on
    1 April. The new one is enrolled first in one case, the old one withdrawn first in the other."""
    old = membership(member_key="06139999/記号/1", enrolled_on=date(2020, 4, 1), status=MembershipStatus.withdrawn,
                     withdrawn_on=date(2026, 5, 31))
    new = membership(member_key="01130012/新/7", insurer_number="01130012", member_symbol="新", member_number="7",
                     copay_category=CopayCategory.twenty_percent, enrolled_on=date(2026, 6, 1))
    still_active = replace(old, status=MembershipStatus.active, withdrawn_on=None)  # the withdrawal not known yet
    for day, expected in ((TODAY, old), (date(2026, 5, 20), old), (date(2026, 5, 31), old), (date(2026, 6, 1), new),
                          (date(2027, 4, 1), new)):
        assert answer_on(day, [new, old]).membership == expected, day
        # Before the old insurer's withdrawal arrives, the new insurer takes over on its first day all the same.
        assert answer_on(day, [still_active, new]).membership == (still_active if day < new.enrolled_on else new), day


def test_the_eligibility_record_keeps_the_memberships_that_can_still_count():
    """Written on 1 May: a membership whose last day was 30 April can never count again and is left
    out; one ending later, one not started yet and an open one stay; so do only the holder's linked ones."""
    ended = membership(member_key="k/ended", status=MembershipStatus.withdrawn, withdrawn_on=date(2026, 4, 30))
    no_last_day = membership(member_key="k/no-last-day", status=MembershipStatus.withdrawn)  # withdrawn before last days were kept
    ending = membership(member_key="k/ending", status=MembershipStatus.withdrawn, withdrawn_on=date(2026, 5, 1))
    ahead = membership(member_key="k/ahead", enrolled_on=date(2026, 7, 1))
    open_ended = membership(member_key="k/open", enrolled_on=date(2020, 4, 1))
    someone_elses = membership(member_key="k/moved", person_ref="pr_q")
    held = membership(member_key="k/held", link_state=LinkState.held)
    [record] = eligibility_records(CARD_BASED, [ended, no_last_day, ending, ahead, open_ended, someone_elses, held],
                                   on=date(2026, 5, 1))
    assert record.memberships == (open_ended, ending, ahead)  # by first day
    assert answer_eligibility(record, today=date(2026, 5, 1), no_card_surcharge=True).membership == ending
    assert answer_eligibility(record, today=date(2026, 5, 2), no_card_surcharge=True).membership == open_ended
    assert answer_eligibility(record, today=date(2026, 7, 1), no_card_surcharge=True).membership == ahead


def test_a_certificate_is_issued_when_the_enrollment_is_recorded():
    """Enrolled ahead: the member holds the certificate by the first day."""
    [issue] = plan_certificates(Person("pr_a"), [membership(enrolled_on=date(2026, 5, 1))], {}, today=TODAY,
                                validity_years={}, cause_id="e1")
    assert isinstance(issue, IssueCertificate) and issue.certificate.valid_from == TODAY


# --- certificates and a last day announced ahead ------------------------------------------------

LAST_DAY = date(2026, 4, 21)


def held_certificate(person: Person = Person("pr_a"), **changes: object) -> dict[str, EligibilityCertificate]:
    """The person's certificate of membership 1, issued on 1 April: valid through 31 March 2027."""
    [issue] = plan_certificates(person, [membership(person_ref=person.person_ref)], {}, today=TODAY, validity_years={},
                                cause_id="e1")
    return {issue.certificate.member_key: replace(issue.certificate, **changes)}


def test_a_withdrawal_announced_ahead_keeps_the_certificate_through_the_last_day_only():
    """Withdrawn on 1 April with a last day of 21 April: settling the person leaves the certificate,
    which is cut to end on 21 April; from 22 April it has lapsed, so it is the expiry sweep's to end
    (not withdrawn), and once ended none is issued again."""
    leaving = membership(status=MembershipStatus.withdrawn, withdrawn_on=LAST_DAY)
    held = held_certificate()
    [certificate] = held.values()
    for day in (TODAY, LAST_DAY):
        assert plan_certificates(Person("pr_a"), [leaving], held, today=day, validity_years={}, cause_id="e2") == [], day

    kept = kept_through_last_day(certificate, leaving, TODAY)
    assert kept == replace(certificate, valid_until=LAST_DAY, uncut_until=date(2027, 3, 31)), "cut, with the validity it had"
    assert kept_through_last_day(kept, leaving, LAST_DAY) == kept, "run again on a later day: not cut again"
    assert not has_expired(kept, LAST_DAY) and has_expired(kept, LAST_DAY + timedelta(days=1))

    after = LAST_DAY + timedelta(days=1)
    for certificates in ({leaving.member_key: kept}, {leaving.member_key: replace(kept, status=CertificateStatus.expired)}, {}):
        assert plan_certificates(Person("pr_a"), [leaving], certificates, today=after, validity_years={}, cause_id="e3") == []
    assert kept_through_last_day(kept, leaving, after) is None


def test_a_withdrawal_recorded_after_its_last_day_withdraws_the_certificate_at_once():
    leaving = membership(status=MembershipStatus.withdrawn, withdrawn_on=TODAY - timedelta(days=1))
    held = held_certificate()
    [withdraw] = plan_certificates(Person("pr_a"), [leaving], held, today=TODAY, validity_years={}, cause_id="e2")
    assert isinstance(withdraw, WithdrawCertificate) and withdraw.reason is CertificateWithdrawalReason.member_withdrawn
    assert kept_through_last_day(held[leaving.member_key], leaving, TODAY) is None


def test_a_certificate_needed_before_the_last_day_ends_on_it():
    """The member is insured through the last day: a card lost meanwhile, or a certificate that
    lapsed meanwhile, gives a certificate ending on the last day; the card back ends it as usual."""
    leaving = membership(status=MembershipStatus.withdrawn, withdrawn_on=LAST_DAY)
    lost = SITUATIONS[CertificateIssueReason.card_lost]
    [issue] = plan_certificates(lost, [leaving], {}, today=date(2026, 4, 10), validity_years={}, cause_id="e2")
    assert isinstance(issue, IssueCertificate)
    assert (issue.certificate.valid_from, issue.certificate.valid_until, issue.certificate.reason) == (
        date(2026, 4, 10), LAST_DAY, CertificateIssueReason.card_lost)
    lapsed = held_certificate(valid_until=date(2026, 4, 9), status=CertificateStatus.expired)
    [replacement] = plan_certificates(Person("pr_a"), [leaving], lapsed, today=date(2026, 4, 10), validity_years={}, cause_id="e3")
    assert (replacement.certificate.valid_from, replacement.certificate.valid_until) == (date(2026, 4, 10), LAST_DAY)
    [withdraw] = plan_certificates(CARD_BASED, [leaving], {leaving.member_key: issue.certificate}, today=date(2026, 4, 15),
                                   validity_years={}, cause_id="e4")
    assert isinstance(withdraw, WithdrawCertificate) and withdraw.reason is CertificateWithdrawalReason.card_linked


def test_only_the_members_own_certificate_running_past_the_last_day_is_cut():
    leaving = membership(status=MembershipStatus.withdrawn, withdrawn_on=LAST_DAY)
    [ending_sooner] = held_certificate(valid_until=date(2026, 4, 15)).values()
    assert kept_through_last_day(ending_sooner, leaving, TODAY) == ending_sooner
    [someone_elses] = held_certificate(Person("pr_q")).values()
    assert kept_through_last_day(someone_elses, leaving, TODAY) is None
    [certificate] = held_certificate().values()
    assert kept_through_last_day(certificate, membership(), TODAY) is None, "not withdrawn"
    assert kept_through_last_day(replace(certificate, status=CertificateStatus.withdrawn), leaving, TODAY) is None
    # Renewed ahead (from 1 April 2027), then withdrawn with a last day of 20 March: valid from the day it was cut.
    renewed_ahead = replace(certificate, valid_from=date(2027, 4, 1), valid_until=date(2028, 3, 31))
    late_leaver = replace(leaving, withdrawn_on=date(2027, 3, 20))
    kept = kept_through_last_day(renewed_ahead, late_leaver, date(2027, 3, 10))
    assert kept is not None and (kept.valid_from, kept.valid_until) == (date(2027, 3, 10), date(2027, 3, 20))


# --- moving an announced last day ---------------------------------------------------------------


def test_a_last_day_moved_earlier_cuts_the_kept_certificate_further_and_one_moved_later_gives_it_back_up_to_its_validity():
    leaving = membership(status=MembershipStatus.withdrawn, withdrawn_on=LAST_DAY)
    [certificate] = held_certificate().values()  # valid through 31 March 2027
    kept = kept_through_last_day(certificate, leaving, TODAY)
    assert kept is not None

    earlier = kept_through_last_day(kept, replace(leaving, withdrawn_on=date(2026, 4, 10)), TODAY)
    assert earlier == replace(certificate, valid_until=date(2026, 4, 10), uncut_until=date(2027, 3, 31))
    later = kept_through_last_day(earlier, replace(leaving, withdrawn_on=date(2026, 6, 30)), TODAY)
    assert later == replace(certificate, valid_until=date(2026, 6, 30), uncut_until=date(2027, 3, 31))
    beyond = kept_through_last_day(later, replace(leaving, withdrawn_on=date(2027, 9, 30)), TODAY)
    assert beyond == certificate, "never past the validity it had; no longer cut"
    assert kept_through_last_day(beyond, replace(leaving, withdrawn_on=date(2027, 12, 31)), TODAY) == certificate


def test_a_last_day_moved_later_gives_back_no_certificate_that_ended_and_no_validity_it_never_had():
    leaving = membership(status=MembershipStatus.withdrawn, withdrawn_on=date(2026, 6, 30))
    [certificate] = held_certificate().values()
    cut = replace(certificate, valid_until=LAST_DAY, uncut_until=date(2027, 3, 31))
    for status in (CertificateStatus.withdrawn, CertificateStatus.expired):
        assert kept_through_last_day(replace(cut, status=status), leaving, TODAY) is None, status
    # Its own validity ended before the last day (not cut), or cut by code that kept no `uncut_until`: as it is.
    ending_sooner = replace(certificate, valid_until=date(2026, 4, 15))
    assert kept_through_last_day(ending_sooner, leaving, TODAY) == ending_sooner
    assert kept_through_last_day(replace(cut, uncut_until=None), leaving, TODAY) == replace(cut, uncut_until=None)
    # A stale `uncut_until` (the certificate renewed since) never shortens it.
    renewed_since = replace(certificate, valid_until=date(2027, 4, 21), uncut_until=date(2027, 3, 31))
    assert kept_through_last_day(renewed_since, replace(leaving, withdrawn_on=date(2027, 6, 1)), TODAY) == renewed_since


def test_a_certificate_issued_in_the_notice_period_keeps_the_validity_the_last_day_cut():
    leaving = membership(status=MembershipStatus.withdrawn, withdrawn_on=LAST_DAY)
    [issue] = plan_certificates(SITUATIONS[CertificateIssueReason.card_lost], [leaving], {}, today=TODAY, validity_years={},
                                cause_id="e2")
    assert isinstance(issue, IssueCertificate)
    assert (issue.certificate.valid_until, issue.certificate.uncut_until) == (LAST_DAY, date(2027, 3, 31))
    moved = kept_through_last_day(issue.certificate, replace(leaving, withdrawn_on=date(2026, 5, 31)), TODAY)
    assert moved is not None and (moved.valid_until, moved.uncut_until) == (date(2026, 5, 31), date(2027, 3, 31))
    [not_cut] = held_certificate().values()
    assert not_cut.uncut_until is None


FIRST_DAY = date(2026, 4, 1)
ACTIVE = dict(status=MembershipStatus.active, first_day=FIRST_DAY, last_day=None, withdrawn_by=None, made_before=False)
WITHDRAWN = dict(status=MembershipStatus.withdrawn, first_day=FIRST_DAY, last_day=LAST_DAY, withdrawn_by="w-1", made_before=False)


@pytest.mark.parametrize(("state", "request_id", "requested", "today", "step", "previous"), [
    # Not withdrawn: the withdrawal; made before and enrolled again since: nothing (the enrollment stands).
    (ACTIVE, "w-1", LAST_DAY, TODAY, WithdrawalStep.withdraw, None),
    ({**ACTIVE, "withdrawn_by": "w-1", "made_before": True}, "w-1", LAST_DAY, TODAY, WithdrawalStep.nothing, None),
    # The same request again (a rerun that finishes it): the withdrawal, as it was.
    (WITHDRAWN, "w-1", LAST_DAY, date(2026, 5, 1), WithdrawalStep.withdraw, None),
    # Another request while the last day has not passed (today is the last day at the latest): moved, either way.
    (WITHDRAWN, "w-2", date(2026, 4, 10), TODAY, WithdrawalStep.move, LAST_DAY),
    (WITHDRAWN, "w-2", date(2026, 6, 30), LAST_DAY, WithdrawalStep.move, LAST_DAY),
    (WITHDRAWN, "w-2", date(2026, 3, 31), date(2026, 4, 15), WithdrawalStep.move, LAST_DAY),
    # Made before and moved since by another request: that one stands.
    ({**WITHDRAWN, "made_before": True}, "w-0", date(2026, 4, 30), TODAY, WithdrawalStep.nothing, None),
])
def test_what_a_withdrawal_does_to_the_member_record(state, request_id, requested, today, step, previous):
    decision = decide_withdrawal(**state, request_id=request_id, requested_last_day=requested, today=today)
    assert (decision.step, decision.previous_last_day, decision.refusal) == (step, previous, None)


@pytest.mark.parametrize(("state", "request_id", "requested", "today", "says"), [
    (WITHDRAWN, "w-2", date(2026, 6, 30), date(2026, 4, 22), "its last day, 2026-04-21, has passed"),
    (WITHDRAWN, "w-2", LAST_DAY, date(2026, 4, 22), "its last day, 2026-04-21, has passed"),
    ({**WITHDRAWN, "last_day": None}, "w-2", LAST_DAY, TODAY, "it has no last day to move"),
    (WITHDRAWN, "w-2", LAST_DAY, TODAY, "already withdrawn with this last day, 2026-04-21"),
    (WITHDRAWN, "w-1", date(2026, 4, 30), TODAY, "this request id already set the member's last day to 2026-04-21"),
])
def test_a_withdrawal_that_would_move_a_passed_last_day_or_change_nothing_is_refused(state, request_id, requested, today, says):
    decision = decide_withdrawal(**state, request_id=request_id, requested_last_day=requested, today=today)
    assert decision.step is WithdrawalStep.refuse and decision.refusal is not None and says in decision.refusal
    assert decision.refusal_reason is RejectionReason.member_withdrawn


ENROLLED_AHEAD = date(2026, 5, 1)  # the membership's first day, a month after today


@pytest.mark.parametrize(("state", "requested", "step"), [
    # Its first day: a membership of one day.
    ({**ACTIVE, "first_day": ENROLLED_AHEAD}, ENROLLED_AHEAD, WithdrawalStep.withdraw),
    # The day before it: the membership never takes effect (cancelled), not refused.
    ({**ACTIVE, "first_day": ENROLLED_AHEAD}, date(2026, 4, 30), WithdrawalStep.withdraw),
    ({**WITHDRAWN, "first_day": ENROLLED_AHEAD, "last_day": date(2026, 5, 31)}, date(2026, 4, 30), WithdrawalStep.move),
])
def test_a_last_day_on_or_just_before_the_first_day_is_accepted(state, requested, step):
    decision = decide_withdrawal(**state, request_id="w-2", requested_last_day=requested, today=TODAY)
    assert (decision.step, decision.refusal) == (step, None)


@pytest.mark.parametrize("state", [
    {**ACTIVE, "first_day": ENROLLED_AHEAD},
    {**WITHDRAWN, "first_day": ENROLLED_AHEAD, "last_day": date(2026, 5, 31)},  # a move to it
], ids=["withdrawal", "move"])
def test_a_last_day_more_than_a_day_before_the_first_day_is_refused(state):
    decision = decide_withdrawal(**state, request_id="w-2", requested_last_day=date(2026, 4, 29), today=TODAY)
    assert (decision.step, decision.refusal_reason) == (WithdrawalStep.refuse, RejectionReason.last_day_before_first_day)
    assert decision.refusal == ("the last day, 2026-04-29, is before the membership's first day, 2026-05-01: the earliest "
                                "is 2026-04-30, the day before it, for a membership that never takes effect")


def test_a_withdrawal_saved_before_the_first_day_was_checked_finishes_as_it_was_saved():
    """A rerun after a crash of a request that already withdrew the record (earlier code took any day)."""
    saved = {**WITHDRAWN, "first_day": ENROLLED_AHEAD, "last_day": date(2026, 4, 10)}
    decision = decide_withdrawal(**saved, request_id="w-1", requested_last_day=date(2026, 4, 10), today=TODAY)
    assert decision.step is WithdrawalStep.withdraw


def test_a_membership_that_never_took_effect_keeps_no_certificate_and_answers_no_eligibility():
    """Enrolled ahead for 1 May, then cancelled with a last day of 30 April: the certificate issued
    at enrollment is withdrawn at once (not kept through a last day that covers no day), and the
    eligibility document leaves the membership out. A last day of 1 May keeps it through that day."""
    cancelled = membership(enrolled_on=ENROLLED_AHEAD, status=MembershipStatus.withdrawn, withdrawn_on=date(2026, 4, 30))
    assert cancelled.never_took_effect and not cancelled.can_still_count(TODAY)
    held = held_certificate()
    [withdraw] = plan_certificates(Person("pr_a"), [cancelled], held, today=TODAY, validity_years={}, cause_id="e2")
    assert isinstance(withdraw, WithdrawCertificate) and withdraw.reason is CertificateWithdrawalReason.member_withdrawn
    assert kept_through_last_day(held[cancelled.member_key], cancelled, TODAY) is None
    assert plan_certificates(SITUATIONS[CertificateIssueReason.card_lost], [cancelled], {}, today=TODAY, validity_years={},
                             cause_id="e3") == [], "none issued for it either"
    [record] = eligibility_records(CARD_BASED, [cancelled], on=TODAY)
    assert record.memberships == ()

    one_day = replace(cancelled, withdrawn_on=ENROLLED_AHEAD)
    assert not one_day.never_took_effect and one_day.can_still_count(TODAY) and one_day.in_force_on(ENROLLED_AHEAD)
    assert plan_certificates(Person("pr_a"), [one_day], held, today=TODAY, validity_years={}, cause_id="e2") == []
    kept = kept_through_last_day(held[one_day.member_key], one_day, TODAY)
    assert kept is not None and (kept.valid_from, kept.valid_until) == (TODAY, ENROLLED_AHEAD)


@pytest.mark.parametrize(("person", "refusal"), [
    (CARD_BASED, None),
    (Person("pr_a", card=card()), None),  # consent needs the card, not its registration for insurance use
    (None, EligibilityDenialReason.unknown_card),
    (Person("pr_a"), EligibilityDenialReason.card_replaced),
    (Person("pr_a", card=Card("C-2", "cert-2", CardStatus.active, date(2036, 1, 1), date(2031, 1, 1))),
     EligibilityDenialReason.card_replaced),
    *[(Person("pr_a", card=card(status)), EligibilityDenialReason.card_not_usable)
      for status in CardStatus if status is not CardStatus.active],
    (Person("pr_a", card=card(certificate_expires_on=TODAY - timedelta(days=1))), EligibilityDenialReason.card_certificate_expired),
    (Person("pr_a", deceased=True, card=card()), EligibilityDenialReason.resident_deceased),
])
def test_only_the_living_holders_own_usable_card_gives_consent_or_releases_data(person, refusal):
    assert holder_card_refusal(person, "cert-1", TODAY) is refusal


# --- consent and medical data -------------------------------------------------------------------


def test_consent_lasts_24_hours_for_its_data_type():
    policy = MedicalDataPolicy()
    given = datetime(2026, 4, 1, 1, 0, tzinfo=UTC)
    assert policy.consent_denial(given, given + timedelta(hours=24) - timedelta(seconds=1)) is None
    assert policy.consent_denial(given, given + timedelta(hours=24)) is MedicalDataDenialReason.consent_expired
    assert policy.consent_denial(None, given) is MedicalDataDenialReason.no_consent
    assert policy.covers_from(MedicalDataType.prescriptions, TODAY) == date(2023, 4, 1)
    assert policy.covers_from(MedicalDataType.checkups, TODAY) == date(2021, 4, 1)
