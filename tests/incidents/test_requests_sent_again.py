"""A partner sends a request again under a new event id (its retry after a timeout, say) after
later requests have changed the record. Enrollment answers with the facts it decided then, under
the ids they had, so the services that keep copies of those facts apply them once and their
copies do not go back in time. Replayed end to end: enrollment and benefits, through Kafka."""

from __future__ import annotations

from datetime import date

from mynumber_contracts import topics
from mynumber_contracts.benefits import AccountChannel, BankAccount, RegisterReceivingAccount
from mynumber_contracts.enrollment import RecordDeath, RegisterResident

from tests.incidents.support import MUNICIPAL_OFFICE, MUNICIPALITY, a_number, person, running_platform

REGISTERED = "jp.mynumber.enrollment.resident_registered.v1"
DECEASED = "jp.mynumber.enrollment.resident_deceased.v1"


async def test_a_registration_sent_again_after_the_death_does_not_bring_the_person_back(servers, settings_for, namespace):
    number = a_number(40500000001)
    registration = RegisterResident(request_id="reg-405", municipality_code=MUNICIPALITY, my_number=number,
                                    attributes=person("伊藤 健", "イトウ ケン"), nationality="JP")
    async with running_platform(servers, settings_for, namespace, {"enrollment": 1, "benefits": 1}) as platform:
        person_ref = platform.ref(number)
        await platform.send(registration, source=MUNICIPAL_OFFICE, subject=number.reveal())
        await platform.fact("enrollment", REGISTERED, person_ref=person_ref)
        await platform.send(RecordDeath(my_number=number, died_on=date(2026, 5, 30)),
                            source=MUNICIPAL_OFFICE, subject=number.reveal())
        await platform.fact("enrollment", DECEASED, person_ref=person_ref)
        await platform.consumed("benefits", DECEASED, 1)

        await platform.send(registration, source=MUNICIPAL_OFFICE, subject=number.reveal())  # a new event id
        await platform.fact("enrollment", REGISTERED, 2, person_ref=person_ref)
        await platform.caught_up("benefits", topics.for_service("enrollment", namespace).facts)
        assert await platform.database("benefits")["processed_events"].count_documents({"type": REGISTERED}) == 1, \
            "the same fact id: taken in once"

        await platform.send(RegisterReceivingAccount(
            request_id="acc-405", my_number=number, channel=AccountChannel.portal,
            account=BankAccount(bank_code="0005", branch_code="123", account_number="4050001",
                                holder_name_kana="イトウ ケン")), source="portal/myna", subject=number.reveal())
        refusal = (await platform.fact("benefits", "jp.mynumber.benefits.account_registration_refused.v1",
                                       request_id="acc-405"))[0]
        assert refusal["reason"] == "resident_deceased", "benefits still knows the person died"
