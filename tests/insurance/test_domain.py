"""The insurance rules on their own: matching, certificates, eligibility and consent (no servers)."""

from __future__ import annotations

import itertools
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
)

from services.insurance.domain import (
    Card,
    CardStatus,
    CertificateStatus,
    InsuranceUse,
    IssueCertificate,
    LinkState,
    MatchKey,
    MedicalDataPolicy,
    Membership,
    MembershipStatus,
    Person,
    RegisteredResident,
    WithdrawCertificate,
    answer_eligibility,
    card_insurance_blocker,
    decide_link,
    eligibility_records,
    has_expired,
    holder_card_refusal,
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
        [record] = eligibility_records(person, [membership()]) or [None]
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
    from dataclasses import replace

    assert not has_expired(replace(certificate, status=CertificateStatus.withdrawn), date(2028, 1, 1))


def test_eligibility_answers_and_the_surcharge_setting():
    [record] = eligibility_records(CARD_BASED, [membership()])
    yes = answer_eligibility(record, today=TODAY, no_card_surcharge=True)
    assert yes.eligible and yes.membership.copay_category is CopayCategory.thirty_percent and yes.no_card_surcharge is False
    unknown = answer_eligibility(None, today=TODAY, no_card_surcharge=False)
    assert (unknown.eligible, unknown.reason, unknown.no_card_surcharge) == (False, EligibilityDenialReason.unknown_card, False)
    [no_member] = eligibility_records(CARD_BASED, [])
    assert answer_eligibility(no_member, today=TODAY, no_card_surcharge=True).reason is EligibilityDenialReason.no_active_membership
    [replaced, current] = eligibility_records(CARD_BASED, [membership()], retired=[card(CardStatus.replaced)])
    assert answer_eligibility(replaced, today=TODAY, no_card_surcharge=True).reason is EligibilityDenialReason.card_replaced
    assert answer_eligibility(record, today=date(2031, 1, 2), no_card_surcharge=True).reason is EligibilityDenialReason.card_certificate_expired


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
