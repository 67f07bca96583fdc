"""Who may move a card: a loss is reported to any municipality or the 24-hour hotline; finding,
reissue, return and revocation come from the holder's municipality of residence; and every card
request comes from the office it names. Run at the use cases with the sender given."""

from __future__ import annotations

from datetime import date

from mynumber_contracts.enrollment import (
    RecordMoveAbroad,
    ReportCardFound,
    ReportCardLost,
    RequestCardReissue,
    ReturnCard,
    RevokeCard,
)
from mynumber_contracts.partners import PartnerType

from services.enrollment.handlers import (
    record_move_abroad,
    report_card_found,
    report_card_lost,
    request_card_reissue,
    return_card,
    revoke_card,
)
from tests.enrollment.support import TODAY, a_card_holder, kinds, use_cases

OSAKA = "municipality/271004"  # the holder lives in Chiyoda (131016)
EMBASSY = "diplomatic-office/us-washington"


async def test_another_municipality_cannot_end_or_replace_a_residents_card(settings_for):
    async with use_cases(settings_for("enrollment")) as run:
        digits, card = await a_card_holder(run)
        requests = [
            (revoke_card, RevokeCard(request_id="r1", my_number=digits, office_id=OSAKA, reason="fraud")),
            (return_card, ReturnCard(request_id="r2", my_number=digits, office_id=OSAKA)),
            (request_card_reissue, RequestCardReissue(request_id="r3", my_number=digits, office_id=OSAKA,
                                                      requested_on=TODAY, photo_ref="p")),
        ]
        for use_case, request in requests:
            [refused] = await run.run(use_case, request, source=OSAKA)
            assert (type(refused).__name__, refused.reason, refused.person_ref) == (
                "CardRequestRejected", "channel_not_allowed", None), use_case.__name__
            assert "131016" not in refused.message

        assert (await run.deps.store.card(card.card_number)).state == "active"


async def test_a_loss_is_reported_anywhere_but_the_card_is_resumed_at_home(settings_for):
    async with use_cases(settings_for("enrollment")) as run:
        digits, card = await a_card_holder(run)

        lost = await run.run(report_card_lost, ReportCardLost(request_id="l1", my_number=digits, office_id=OSAKA),
                             source=OSAKA)
        found_elsewhere = await run.run(report_card_found, ReportCardFound(request_id="f1", my_number=digits, office_id=OSAKA),
                                        source=OSAKA)
        assert kinds(lost) == ["CardSuspended"]
        assert (kinds(found_elsewhere), found_elsewhere[0].reason) == (["CardRequestRejected"], "channel_not_allowed")
        assert (await run.deps.store.card(card.card_number)).state == "suspended"

        found = await run.run(report_card_found, ReportCardFound(request_id="f2", my_number=digits,
                                                                 office_id="municipality/131016"))
        assert kinds(found) == ["CardResumed"]


async def test_a_request_naming_another_office_is_refused_and_leaves_that_offices_request_id_free(settings_for):
    async with use_cases(settings_for("enrollment")) as run:
        digits, card = await a_card_holder(run)
        home = "municipality/131016"
        revoke = RevokeCard(request_id="r1", my_number=digits, office_id=home, reason="fraud")

        [refused] = await run.run(revoke_card, revoke, source=OSAKA)
        assert (refused.reason, refused.person_ref) == ("channel_not_allowed", None)
        assert (await run.deps.store.card(card.card_number)).state == "active"

        [revoked] = await run.run(revoke_card, revoke, source=home)
        assert (type(revoked).__name__, revoked.card_number) == ("CardRevoked", card.card_number)


async def test_a_japanese_national_abroad_keeps_the_card_through_an_embassy_which_may_not_revoke_it(settings_for):
    """Facts §2: since 27 May 2024 a Japanese national who moved abroad keeps the card through an
    embassy or consulate. The embassy reports it lost or found, has it reissued and takes it back;
    revocation stays with the municipality that keeps the record."""
    async with use_cases(settings_for("enrollment")) as run:
        digits, card = await a_card_holder(run)
        await run.run(record_move_abroad, RecordMoveAbroad(my_number=digits, moved_on=date(2025, 5, 30),
                                                           destination_country="US"))
        assert (await run.deps.store.card(card.card_number)).state == "active"  # kept abroad

        def at_embassy(use_case, request):
            return run.run(use_case, request, source=EMBASSY)

        assert kinds(await at_embassy(report_card_lost, ReportCardLost(
            request_id="l1", my_number=digits, office_id=EMBASSY))) == ["CardSuspended"]
        assert kinds(await at_embassy(report_card_found, ReportCardFound(
            request_id="f1", my_number=digits, office_id=EMBASSY))) == ["CardResumed"]
        [refused] = await at_embassy(revoke_card, RevokeCard(request_id="r1", my_number=digits, office_id=EMBASSY,
                                                             reason="fraud"))
        assert (refused.reason, refused.person_ref) == ("channel_not_allowed", None)
        [reissued] = await at_embassy(request_card_reissue, RequestCardReissue(
            request_id="n1", my_number=digits, office_id=EMBASSY, requested_on=TODAY, photo_ref="p"))
        assert (type(reissued).__name__, reissued.previous_card_number) == ("CardReissued", card.card_number)
        assert (await run.deps.store.card(reissued.card_number)).state == "active"


async def test_an_embassy_cannot_move_the_card_of_someone_who_lives_in_japan(settings_for):
    async with use_cases(settings_for("enrollment")) as run:
        digits, card = await a_card_holder(run)
        for use_case, request in [
            (request_card_reissue, RequestCardReissue(request_id="n1", my_number=digits, office_id=EMBASSY,
                                                      requested_on=TODAY, photo_ref="p")),
            (return_card, ReturnCard(request_id="t1", my_number=digits, office_id=EMBASSY)),
        ]:
            [refused] = await run.run(use_case, request, source=EMBASSY)
            assert (refused.reason, refused.person_ref) == ("channel_not_allowed", None), use_case.__name__
        assert (await run.deps.store.card(card.card_number)).state == "active"


def test_diplomatic_offices_may_send_the_card_requests_of_a_holder_abroad_but_not_a_revocation():
    for model in (ReportCardLost, ReportCardFound, RequestCardReissue, ReturnCard):
        assert PartnerType.diplomatic_office in model.publishers, model.__name__
    assert PartnerType.diplomatic_office not in RevokeCard.publishers
