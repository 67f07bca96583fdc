"""The insurance service's MongoDB repository.

Collections (every hot-path read is by `_id`, the one lookup FerretDB v1 does without a scan):

- `people`: the read model of enrollment facts (five attributes, card, deceased) plus the
  person's insurance state (insurance use, certificate application, linked member keys).
  `version` grows with every change and guards the denormalised eligibility documents.
- `match_index`: normalised five attributes (digest) -> the residents that have them.
- `pending_links`: person ref -> member records held because that resident was not yet known.
- `members`: insurer member records and their link state, by `insurer/symbol/number`.
- `certificates`: the current eligibility certificate of each membership, with the causes that
  issued and ended it, the insurer's withdrawal that kept it through the member's last day, and
  the ended certificate it replaced (`replaced`, one deep).
- `eligibility`: the eligibility answer, denormalised, by card certificate id, with the holder's
  memberships and their first and last days (the check picks by the day it is asked).
- `insurers`: insurer settings.
- `consents`, `medical_records`, `releases`: consent, prescriptions/checkups, released data.
- `medical_data_decisions`: the first decision on each data type of a medical-data request.
- `withdrawals`: what each insurer's withdrawal request gave (its facts and the event that gave
  them), by member key and request id, so one sent again gives them again with their ids.
- `sweep_work`: a certificate a sweep began to renew or expire, by the sweep's cause id, kept
  until its facts are published, so a rerun after a failure finishes it (a small scan).

Link decisions (automatic and the operator's), withdrawals, an insurer's enrollment or withdrawal
refused on a member record, and medical-data requests go to the kit's append-only audit trail.

The Individual Number is never stored: only the person reference derived from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from typing import Any

from mynumber_contracts import Fact, ResidentAttributes
from mynumber_contracts.insurance import (
    CertificateApplicationReason,
    CertificateIssueReason,
    CopayCategory,
    MedicalDataType,
)
from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.kit.idempotency import facts_from_documents, facts_to_documents
from services.kit.store import apply_fact, insert_or_read, update_by_id

from .domain import (
    Card,
    CardStatus,
    CertificateStatus,
    EligibilityCertificate,
    EligibilityRecord,
    InsuranceUse,
    LinkState,
    MatchKey,
    Membership,
    MembershipStatus,
    Person,
    RegisteredResident,
)


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def _card_document(card: Card) -> dict[str, Any]:
    return {
        "card_number": card.card_number,
        "certificate_id": card.certificate_id,
        "status": card.status.value,
        "expires_on": card.expires_on.isoformat(),
        "certificate_expires_on": card.certificate_expires_on.isoformat(),
    }


def _card(document: Mapping[str, Any] | None) -> Card | None:
    if not document:
        return None
    return Card(
        card_number=document["card_number"],
        certificate_id=document["certificate_id"],
        status=CardStatus(document["status"]),
        expires_on=date.fromisoformat(document["expires_on"]),
        certificate_expires_on=date.fromisoformat(document["certificate_expires_on"]),
    )


def _attributes_document(attributes: ResidentAttributes) -> dict[str, Any]:
    return attributes.model_dump(mode="json")


def _person(document: Mapping[str, Any]) -> Person:
    application = document.get("certificate_application")
    return Person(
        person_ref=document["_id"],
        deceased=bool(document.get("deceased", False)),
        card=_card(document.get("card")),
        insurance_use=InsuranceUse(document.get("insurance_use", InsuranceUse.unregistered.value)),
        certificate_application=CertificateApplicationReason(application) if application else None,
        member_keys=tuple(document.get("member_keys", ())),
        version=int(document.get("version", 0)),
        registry_facts=tuple(document.get("registry_facts", ())),
    )


def _membership(document: Mapping[str, Any]) -> Membership:
    return Membership(
        member_key=document["_id"],
        insurer_number=document["insurer_number"],
        member_symbol=document["member_symbol"],
        member_number=document["member_number"],
        copay_category=CopayCategory(document["copay_category"]),
        enrolled_on=date.fromisoformat(document["enrolled_on"]),
        status=MembershipStatus(document["status"]),
        link_state=LinkState(document["link_state"]),
        person_ref=document.get("person_ref"),
        withdrawn_on=_day(document.get("withdrawn_on")),
    )


def _certificate_document(certificate: EligibilityCertificate) -> dict[str, Any]:
    return {
        "certificate_number": certificate.certificate_number,
        "person_ref": certificate.person_ref,
        "insurer_number": certificate.insurer_number,
        "member_symbol": certificate.member_symbol,
        "member_number": certificate.member_number,
        "valid_from": certificate.valid_from.isoformat(),
        "valid_until": certificate.valid_until.isoformat(),
        "status": certificate.status.value,
        "reason": certificate.reason.value,
        "on_application": certificate.on_application,
        "uncut_until": certificate.uncut_until.isoformat() if certificate.uncut_until else None,
    }


def _certificate(document: Mapping[str, Any]) -> EligibilityCertificate:
    return EligibilityCertificate(
        member_key=document["_id"],
        certificate_number=document["certificate_number"],
        person_ref=document["person_ref"],
        insurer_number=document["insurer_number"],
        member_symbol=document["member_symbol"],
        member_number=document["member_number"],
        valid_from=date.fromisoformat(document["valid_from"]),
        valid_until=date.fromisoformat(document["valid_until"]),
        status=CertificateStatus(document["status"]),
        reason=CertificateIssueReason(document["reason"]),
        on_application=bool(document["on_application"]),
        uncut_until=_day(document.get("uncut_until")),
    )


def _eligibility_membership_document(membership: Membership) -> dict[str, Any]:
    return {
        "member_key": membership.member_key,
        "insurer_number": membership.insurer_number,
        "member_symbol": membership.member_symbol,
        "member_number": membership.member_number,
        "copay_category": membership.copay_category.value,
        "enrolled_on": membership.enrolled_on.isoformat(),
        "withdrawn_on": membership.withdrawn_on.isoformat() if membership.withdrawn_on else None,
    }


def _eligibility_membership(document: Mapping[str, Any], person_ref: str) -> Membership:
    """An eligibility document keeps linked memberships only; one with a last day is withdrawn."""
    status = MembershipStatus.withdrawn if document.get("withdrawn_on") else MembershipStatus.active
    return _membership({**document, "_id": document["member_key"], "status": status.value,
                        "link_state": LinkState.linked.value, "person_ref": person_ref})


def _eligibility_document(record: EligibilityRecord) -> dict[str, Any]:
    return {
        "person_ref": record.person_ref,
        "card_status": record.card_status.value,
        "card_certificate_expires_on": record.card_certificate_expires_on.isoformat(),
        "insurance_use": record.insurance_use.value,
        "certificate_application": record.certificate_application.value if record.certificate_application else None,
        "deceased": record.deceased,
        "memberships": [_eligibility_membership_document(m) for m in record.memberships],
        "version": record.version,
    }


def _eligibility(document: Mapping[str, Any]) -> EligibilityRecord:
    person_ref = document["person_ref"]
    if "memberships" in document:
        memberships = document["memberships"]
    else:  # written before memberships had dates: the primary membership in force then, or None
        memberships = [document["membership"]] if document.get("membership") else []
    application = document.get("certificate_application")
    return EligibilityRecord(
        certificate_id=document["_id"],
        person_ref=person_ref,
        card_status=CardStatus(document["card_status"]),
        card_certificate_expires_on=date.fromisoformat(document["card_certificate_expires_on"]),
        insurance_use=InsuranceUse(document["insurance_use"]),
        certificate_application=CertificateApplicationReason(application) if application else None,
        deceased=bool(document["deceased"]),
        memberships=tuple(_eligibility_membership(m, person_ref) for m in memberships),
        version=int(document["version"]),
    )


@dataclass(frozen=True)
class WithdrawalOutcome:
    """What an insurer's withdrawal request gave (its facts), and the event that gave it."""

    event_id: str
    withdrawn_on: date
    facts: list[Fact]


def _withdrawal_outcome(document: Mapping[str, Any]) -> WithdrawalOutcome:
    facts = facts_from_documents(document["facts"])
    return WithdrawalOutcome(document["event_id"], date.fromisoformat(document["withdrawn_on"]), facts)


@dataclass(frozen=True)
class SweepWork:
    """A certificate a sweep began to work on, as it was then, and the sweep's date."""

    cause_id: str
    kind: str
    certificate: EligibilityCertificate
    as_of: date
    ended: bool  # the expiry sweep ended the certificate (the replacement may overwrite its document)


def _sweep_work(document: Mapping[str, Any]) -> SweepWork:
    return SweepWork(cause_id=document["_id"], kind=document["kind"], certificate=_certificate(document["certificate"]),
                     as_of=date.fromisoformat(document["as_of"]), ended=bool(document.get("ended", False)))


class InsuranceStore:
    def __init__(self, database: AsyncDatabase) -> None:
        self.database = database
        self.people = database["people"]
        self.match_index = database["match_index"]
        self.pending_links = database["pending_links"]
        self.members = database["members"]
        self.certificates = database["certificates"]
        self.eligibility = database["eligibility"]
        self.insurers = database["insurers"]
        self.consents = database["consents"]
        self.medical_records = database["medical_records"]
        self.releases = database["releases"]
        self.medical_data_decisions = database["medical_data_decisions"]
        self.sweep_work = database["sweep_work"]
        self.withdrawals = database["withdrawals"]

    async def ensure_indexes(self) -> None:
        await self.members.create_index([("link_state", ASCENDING), ("status", ASCENDING)])
        await self.certificates.create_index([("status", ASCENDING), ("valid_until", ASCENDING)])
        await self.medical_records.create_index([("member_key", ASCENDING), ("data_type", ASCENDING)])

    # -- people: the read model of enrollment facts ---------------------------------------------

    async def person(self, person_ref: str) -> Person | None:
        document = await self.people.find_one({"_id": person_ref})
        return _person(document) if document else None

    async def registered_resident(self, person_ref: str) -> RegisteredResident | None:
        document = await self.people.find_one({"_id": person_ref})
        if not document or not document.get("attributes"):
            return None
        return RegisteredResident(
            person_ref=person_ref,
            attributes=ResidentAttributes.model_validate(document["attributes"]),
            deceased=bool(document.get("deceased", False)),
        )

    async def retired_cards(self, person_ref: str) -> list[Card]:
        document = await self.people.find_one({"_id": person_ref}, {"retired_cards": 1})
        return [card for card in map(_card, (document or {}).get("retired_cards", [])) if card]

    async def change_person(self, person_ref: str, changes: Mapping[str, Any], *, add_member_key: str | None = None,
                            retire_card: Card | None = None, registry_fact: str | None = None,
                            insurance_use_request: str | None = None, certificate_application: str | None = None) -> None:
        """One atomic write to the person's document; every change bumps `version`. A rerun may
        bump it again: the version only has to grow with every change. `registry_fact` is the id of
        the enrollment fact that makes the change, and `insurance_use_request` the holder's request
        that registers or cancels insurance use, and `certificate_application` the insurer's request
        that applies for a certificate: each is kept, so that it is applied once."""
        update: dict[str, Any] = {"$inc": {"version": 1}}
        if changes:
            update["$set"] = {name: _stored(value) for name, value in changes.items()}
        push: dict[str, Any] = {}
        if add_member_key is not None:
            push["member_keys"] = add_member_key
        if retire_card is not None:
            push["retired_cards"] = _card_document(retire_card)
        if registry_fact is not None:
            push["registry_facts"] = registry_fact
        if insurance_use_request is not None:
            update.setdefault("$set", {})["insurance_use_request"] = insurance_use_request
            push["insurance_use_requests"] = insurance_use_request
        if certificate_application is not None:
            push["certificate_applications"] = certificate_application
        if push:
            update["$addToSet"] = push
        await update_by_id(self.people, person_ref, update, upsert=True)

    async def record_attributes(self, person_ref: str, attributes: ResidentAttributes, *, registry_fact: str) -> None:
        """Store the registry's five attributes and keep the match index in step, once for the
        enrollment fact `registry_fact`: run again after later facts, it changes nothing."""
        key = MatchKey.of(attributes).digest()
        try:  # a new resident: an insert is several times cheaper than an upsert on FerretDB
            await self.people.insert_one({"_id": person_ref, "attributes": _attributes_document(attributes), "match_key": key,
                                          "version": 1, "registry_facts": [registry_fact]})
        except DuplicateKeyError:
            # The index first, the person last: until the person's document has the new key, a rerun
            # after a crash still finds the old one and takes the resident off its entry.
            before = await self.people.find_one({"_id": person_ref}, {"match_key": 1, "registry_facts": 1})
            if registry_fact in (before or {}).get("registry_facts", ()):
                return
            previous = (before or {}).get("match_key")
            await self._add_to_match_index(key, person_ref)
            if previous and previous != key:
                await self.match_index.update_one({"_id": previous}, {"$pull": {"person_refs": person_ref}})
            await self.people.update_one(
                {"_id": person_ref},
                {"$set": {"attributes": _attributes_document(attributes), "match_key": key}, "$inc": {"version": 1},
                 "$addToSet": {"registry_facts": registry_fact}},
            )
            return
        await self._add_to_match_index(key, person_ref)

    async def _add_to_match_index(self, key: str, person_ref: str) -> None:
        try:
            await self.match_index.insert_one({"_id": key, "person_refs": [person_ref]})
        except DuplicateKeyError:
            await self.match_index.update_one({"_id": key}, {"$addToSet": {"person_refs": person_ref}})

    async def residents_with(self, attributes: ResidentAttributes) -> list[str]:
        document = await self.match_index.find_one({"_id": MatchKey.of(attributes).digest()})
        return list((document or {}).get("person_refs", []))

    async def hold_until_resident_known(self, person_ref: str, member_key: str) -> None:
        await update_by_id(self.pending_links, person_ref, {"$addToSet": {"member_keys": member_key}}, upsert=True)

    async def pending_for(self, person_ref: str) -> list[str]:
        document = await self.pending_links.find_one({"_id": person_ref})
        return list((document or {}).get("member_keys", []))

    async def clear_pending(self, person_ref: str, member_keys: list[str]) -> None:
        if member_keys:
            await update_by_id(self.pending_links, person_ref, {"$pullAll": {"member_keys": member_keys}})

    async def people_with_card_certificates_ending_before(self, as_of: date) -> list[Person]:
        """Sweeps only: members whose card's electronic certificate ended before `as_of`."""
        cursor = self.people.find({"card.certificate_expires_on": {"$lt": as_of.isoformat()}})
        return [person for person in [_person(d) async for d in cursor] if person.member_keys]

    async def insurance_use_requested(self, person_ref: str, request_id: str) -> bool:
        """Whether the holder's registration or cancellation `request_id` was made, even if later ones followed."""
        return await self._request_kept(person_ref, request_id, "insurance_use_request", "insurance_use_requests")

    async def certificate_application_made(self, person_ref: str, request_id: str) -> bool:
        """Whether the insurer's certificate application `request_id` for this person was made, even if
        the person's application has ended since (a card back)."""
        return await self._request_kept(person_ref, request_id, "certificate_applications")

    async def _request_kept(self, person_ref: str, request_id: str, *fields: str) -> bool:
        """Whether `request_id` is kept on the person under one of `fields` (a list of ids, or one id).
        Read by `_id` alone, so the read joins the batch's other reads of people."""
        document = await self.people.find_one({"_id": person_ref}) or {}
        for field in fields:
            kept = document.get(field)
            if kept == request_id or (isinstance(kept, list) and request_id in kept):
                return True
        return False

    # -- members --------------------------------------------------------------------------------

    async def member_document(self, member_key: str) -> dict[str, Any] | None:
        return await self.members.find_one({"_id": member_key})

    async def membership(self, member_key: str) -> Membership | None:
        document = await self.members.find_one({"_id": member_key})
        return _membership(document) if document else None

    async def memberships(self, member_keys: tuple[str, ...] | list[str]) -> list[Membership]:
        found = []
        for key in member_keys:  # one _id lookup each: FerretDB v1 scans for `$in`
            membership = await self.membership(key)
            if membership is not None:
                found.append(membership)
        return found

    async def create_member(self, member_key: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        document = {"_id": member_key, **{name: _stored(value) for name, value in fields.items()}}
        try:
            await self.members.insert_one(document)
            return document
        except DuplicateKeyError:  # a rerun
            return await self.save_member(member_key, fields)

    async def save_member(self, member_key: str, fields: Mapping[str, Any], *, withdrawal: str | None = None) -> dict[str, Any]:
        """Set `fields` on the member record. `withdrawal` is the insurer's request that withdraws
        the member: every one is kept, so one run again after a later enrollment is known as made."""
        update: dict[str, Any] = {"$set": {name: _stored(value) for name, value in fields.items()}}
        if withdrawal is not None:
            update["$addToSet"] = {"withdrawals": withdrawal}
        document = await self.members.find_one_and_update(
            {"_id": member_key}, update, upsert=True, return_document=ReturnDocument.AFTER,
        )
        return document

    async def save_member_if(self, member_key: str, fields: Mapping[str, Any], *, still: Mapping[str, Any],
                             withdrawal: str | None = None) -> dict[str, Any] | None:
        """Set `fields` on the member record only while it still has the values `still` (one atomic
        update); None when it has changed since it was read (withdrawn, resolved by an operator, or
        enrolled again). `withdrawal` is kept as in `save_member`."""
        update: dict[str, Any] = {"$set": {name: _stored(value) for name, value in fields.items()}}
        if withdrawal is not None:
            update["$addToSet"] = {"withdrawals": withdrawal}
        return await self.members.find_one_and_update(
            {"_id": member_key, **{name: _stored(value) for name, value in still.items()}},
            update, return_document=ReturnDocument.AFTER,
        )

    async def withdrawal_outcome(self, member_key: str, request_id: str) -> WithdrawalOutcome | None:
        document = await self.withdrawals.find_one({"_id": f"{member_key}\n{request_id}"})
        return _withdrawal_outcome(document) if document else None

    async def record_withdrawal_outcome(self, member_key: str, request_id: str, *, event_id: str, withdrawn_on: date,
                                        facts: Sequence[Fact], at: datetime) -> WithdrawalOutcome:
        """Record what the insurer's withdrawal `request_id` gave, and the event that gave it, unless
        it was recorded first (a racer with the same request); return the one that stands."""
        return _withdrawal_outcome(await insert_or_read(self.withdrawals, {
            "_id": f"{member_key}\n{request_id}", "member_key": member_key, "request_id": request_id,
            "event_id": event_id, "withdrawn_on": withdrawn_on.isoformat(),
            "facts": facts_to_documents(facts), "decided_at": at,
        }))

    async def held_members(self, insurer_number: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"link_state": LinkState.held.value, "status": MembershipStatus.active.value}
        if insurer_number:
            query["insurer_number"] = insurer_number
        return await self.members.find(query).sort("_id", ASCENDING).limit(limit).to_list()

    # -- eligibility certificates ---------------------------------------------------------------

    async def certificate(self, member_key: str) -> EligibilityCertificate | None:
        document = await self.certificates.find_one({"_id": member_key})
        return _certificate(document) if document else None

    async def certificate_cause(self, member_key: str) -> dict[str, Any] | None:
        return await self.certificates.find_one({"_id": member_key}, {"issued_by": 1, "ended_by": 1, "ended_reason": 1,
                                                                   "certificate_number": 1, "status": 1})

    async def issue_certificate(self, certificate: EligibilityCertificate, *, cause_id: str, now: datetime) -> bool:
        """Make `certificate` the membership's current one unless an active one exists. True when
        it is now current (also on a rerun of the same cause).

        An ended certificate it takes the place of is kept in the document as `replaced`, with the
        causes that issued and ended it: the record's previous holder's certificate, withdrawn by
        the enrollment that then issues the new holder's, is found there by a rerun of it."""
        issued = {**_certificate_document(certificate), "issued_by": cause_id, "issued_at": now}
        try:  # the membership's first certificate: a plain insert
            await self.certificates.insert_one({"_id": certificate.member_key, **issued})
            return True
        except DuplicateKeyError:
            pass
        current = await self.certificates.find_one({"_id": certificate.member_key})
        if current is not None and current["status"] != CertificateStatus.active.value:
            # Conditional on the ended certificate read, so that `replaced` keeps the one overwritten.
            result = await self.certificates.update_one(
                {"_id": certificate.member_key, "certificate_number": current["certificate_number"], "status": current["status"]},
                {"$set": {**issued, "replaced": {k: v for k, v in current.items() if k not in ("_id", "replaced")}},
                 "$unset": {"ended_by": "", "ended_reason": "", "kept_by": "", "kept_until": ""}},
            )
            if result.matched_count:
                return True
            current = await self.certificates.find_one({"_id": certificate.member_key})  # changed meanwhile
        # An active certificate (or one issued meanwhile by another cause) is ours only if this is a rerun.
        return bool(current) and current["certificate_number"] == certificate.certificate_number

    async def replaced_certificate(self, member_key: str) -> tuple[EligibilityCertificate, dict[str, Any]] | None:
        """The ended certificate the membership's current one took the place of, with the causes that
        issued and ended it (`issued_by`, `ended_by`, `ended_reason`); None when none is kept."""
        document = await self.certificates.find_one({"_id": member_key}, {"replaced": 1})
        replaced = (document or {}).get("replaced")
        if not replaced:
            return None
        causes = {name: replaced[name] for name in ("issued_by", "ended_by", "ended_reason") if name in replaced}
        return _certificate({**replaced, "_id": member_key}), causes

    async def end_certificate(self, certificate: EligibilityCertificate, status: CertificateStatus, *,
                              reason: str, cause_id: str, now: datetime) -> bool:
        """End the active certificate. True when this cause ended it (also on a rerun)."""
        ended = await self.certificates.find_one_and_update(
            {"_id": certificate.member_key, "certificate_number": certificate.certificate_number,
             "status": CertificateStatus.active.value},
            {"$set": {"status": status.value, "ended_reason": reason, "ended_by": cause_id, "ended_at": now}},
        )
        if ended is not None:
            return True
        current = await self.certificates.find_one({"_id": certificate.member_key})
        return bool(current) and current.get("ended_by") == cause_id and current["certificate_number"] == certificate.certificate_number

    async def extend_certificate(self, certificate: EligibilityCertificate, new_valid_from: date, new_valid_until: date,
                                 *, cause_id: str, now: datetime) -> EligibilityCertificate | None:
        """Extend the active certificate. The certificate as extended when this cause extended it
        (also on a rerun), else None."""
        extended = await self.certificates.find_one_and_update(
            {"_id": certificate.member_key, "certificate_number": certificate.certificate_number,
             "status": CertificateStatus.active.value, "valid_until": certificate.valid_until.isoformat()},
            {"$set": {"valid_from": new_valid_from.isoformat(), "valid_until": new_valid_until.isoformat(),
                      "renewed_by": cause_id, "renewed_at": now}, "$unset": {"uncut_until": ""}},
            return_document=ReturnDocument.AFTER,
        )
        if extended is None:
            extended = await self.certificates.find_one({"_id": certificate.member_key})
        if extended and extended.get("renewed_by") == cause_id and extended["certificate_number"] == certificate.certificate_number:
            return _certificate(extended)
        return None

    async def keep_certificate(self, certificate: EligibilityCertificate, kept: EligibilityCertificate, *, withdrawal: str,
                               now: datetime) -> None:
        """Keep the active `certificate` through the member's last day for the insurer's withdrawal
        `withdrawal`, valid as `kept` is (cut, if it ran later; given back, if a later last day
        moved it), unless it changed meanwhile; the withdrawal is noted with the last day of
        validity, so one run again later says what it kept."""
        await self.certificates.update_one(
            {"_id": certificate.member_key, "certificate_number": certificate.certificate_number,
             "status": CertificateStatus.active.value, "valid_until": certificate.valid_until.isoformat()},
            {"$set": {"valid_from": kept.valid_from.isoformat(), "valid_until": kept.valid_until.isoformat(),
                      "uncut_until": kept.uncut_until.isoformat() if kept.uncut_until else None,
                      "kept_by": withdrawal, "kept_until": kept.valid_until.isoformat(), "kept_at": now}},
        )

    async def certificate_kept_by(self, member_key: str, withdrawal: str) -> tuple[str, date] | None:
        """The number and last day of validity of the certificate the withdrawal `withdrawal` kept, if
        it kept one and the membership has had no other since."""
        document = await self.certificates.find_one({"_id": member_key}, {"certificate_number": 1, "kept_by": 1, "kept_until": 1})
        if document is None or document.get("kept_by") != withdrawal:
            return None
        return document["certificate_number"], date.fromisoformat(document["kept_until"])

    async def active_certificates_ending_by(self, last_day: date) -> list[EligibilityCertificate]:
        """Sweeps only: active certificates whose validity ends on or before `last_day`."""
        cursor = self.certificates.find(
            {"status": CertificateStatus.active.value, "valid_until": {"$lte": last_day.isoformat()}}
        ).sort("_id", ASCENDING)
        return [_certificate(document) async for document in cursor]

    # -- sweep work ----------------------------------------------------------------------------

    async def begin_sweep_work(self, cause_id: str, kind: str, certificate: EligibilityCertificate, as_of: date) -> SweepWork:
        """Note the work before its first write; a rerun gets the work as first noted."""
        document = {"_id": cause_id, "kind": kind, "as_of": as_of.isoformat(), "ended": False,
                    "certificate": {"_id": certificate.member_key, **_certificate_document(certificate)}}
        return _sweep_work(await insert_or_read(self.sweep_work, document))

    async def sweep_work_ended_certificate(self, cause_id: str) -> None:
        await self.sweep_work.update_one({"_id": cause_id}, {"$set": {"ended": True}})

    async def unfinished_sweep_work(self, kind: str) -> list[SweepWork]:
        """Sweeps only: work a failed run began and did not finish (a scan of a small collection)."""
        cursor = self.sweep_work.find({"kind": kind}).sort("_id", ASCENDING)
        return [_sweep_work(document) async for document in cursor]

    async def finish_sweep_work(self, cause_id: str) -> None:
        await self.sweep_work.delete_one({"_id": cause_id})

    # -- eligibility by card --------------------------------------------------------------------

    async def eligibility_record(self, certificate_id: str) -> EligibilityRecord | None:
        document = await self.eligibility.find_one({"_id": certificate_id})
        return _eligibility(document) if document else None

    async def save_eligibility(self, record: EligibilityRecord) -> None:
        """Write the record unless a newer version of the person is already there.

        A read, then an insert or an update by `_id`, so side-by-side use cases send theirs
        together; the update carries the version condition, so a newer version written meanwhile
        stands, and an insert that loses to a racer's falls back to the same update.
        """
        document = _eligibility_document(record)
        standing = await self.eligibility.find_one({"_id": record.certificate_id})
        if standing is None:
            try:
                await self.eligibility.insert_one({"_id": record.certificate_id, **document})
                return
            except DuplicateKeyError:
                pass  # another change wrote it first: the version decides below
        elif standing["version"] > record.version:
            return  # a later change wrote it: it stands
        elif all(standing.get(name) == value for name, value in document.items()):
            return  # already written as it is (a second pass of the same change, or a rerun)
        # `membership` is the field of documents written before `memberships`: it goes with the first rewrite.
        await update_by_id(self.eligibility, record.certificate_id, {"$set": document, "$unset": {"membership": ""}},
                           condition={"version": {"$lte": record.version}})

    # -- insurers -------------------------------------------------------------------------------

    async def validity_years(self, insurer_numbers: set[str], default: int) -> dict[str, int]:
        years = {}
        for insurer in insurer_numbers:
            document = await self.insurers.find_one({"_id": insurer})
            years[insurer] = int(document["certificate_validity_years"]) if document else default
        return years

    async def configure_insurer(self, insurer_number: str, validity_years: int, now: datetime, *, request_id: str) -> None:
        """Apply the insurer's configuration request `request_id` once: one that runs again after a
        later one (a consumer that fell behind) leaves the later settings in place."""
        await apply_fact(self.insurers, insurer_number, {"certificate_validity_years": validity_years, "updated_at": now},
                         fact_id=request_id, create=True)

    # -- consent and medical data ---------------------------------------------------------------

    async def record_consent(self, institution_code: str, person_ref: str, data_type: MedicalDataType,
                             *, request_id: str, given_at: datetime) -> datetime:
        """The latest consent per institution, person and data type; a rerun keeps the first time.
        A consent replaced by a later one is kept as earlier (its request and time), so that one run
        again late gives its own time back and changes nothing: a late run never restarts the
        consent window (consent counts from when it was recorded)."""
        key = f"{institution_code}/{person_ref}/{data_type}"
        existing = await self.consents.find_one({"_id": key})
        if existing and existing.get("request_id") == request_id:
            return existing["given_at"]
        for earlier in (existing or {}).get("earlier", ()):
            if earlier["request_id"] == request_id:
                return earlier["given_at"]
        update: dict[str, Any] = {"$set": {"institution_code": institution_code, "person_ref": person_ref,
                                           "data_type": data_type.value, "request_id": request_id, "given_at": given_at}}
        if existing:
            update["$push"] = {"earlier": {"request_id": existing["request_id"], "given_at": existing["given_at"]}}
        await self.consents.update_one({"_id": key}, update, upsert=True)
        return given_at

    async def consent_recorded_by(self, institution_code: str, person_ref: str, data_type: MedicalDataType,
                                  request_id: str) -> bool:
        """Whether the consent request `request_id` was recorded (also when a later one replaced it)."""
        existing = await self.consents.find_one({"_id": f"{institution_code}/{person_ref}/{data_type}"})
        if not existing:
            return False
        return existing.get("request_id") == request_id or any(e["request_id"] == request_id for e in existing.get("earlier", ()))

    async def consent_given_at(self, institution_code: str, person_ref: str, data_type: MedicalDataType) -> datetime | None:
        document = await self.consents.find_one({"_id": f"{institution_code}/{person_ref}/{data_type}"})
        return document["given_at"] if document else None

    async def add_medical_record(self, record_key: str, document: Mapping[str, Any]) -> bool:
        """Insert a record once. False when the id is taken by different content."""
        try:
            await self.medical_records.insert_one({"_id": record_key, **document})
            return True
        except DuplicateKeyError:
            existing = await self.medical_records.find_one({"_id": record_key})
            return bool(existing) and all(existing.get(k) == _stored(v) for k, v in document.items())

    async def medical_records_for(self, member_keys: list[str], data_type: MedicalDataType,
                                  first_day: date, last_day: date) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for key in member_keys:
            cursor = self.medical_records.find({"member_key": key, "data_type": data_type.value})
            records += [
                r async for r in cursor if first_day.isoformat() <= r["recorded_for"] <= last_day.isoformat()
            ]
        return sorted(records, key=lambda r: (r["recorded_for"], r["_id"]), reverse=True)

    async def count_medical_records(self, member_keys: list[str], data_type: MedicalDataType,
                                    first_day: date, last_day: date) -> int:
        return len(await self.medical_records_for(member_keys, data_type, first_day, last_day))

    async def medical_data_decision(self, release_id: str, decision: Mapping[str, Any]) -> dict[str, Any]:
        """Keep the first decision on one data type of a request; return the one kept."""
        # On a rerun the first decision stands.
        return await insert_or_read(self.medical_data_decisions, {"_id": release_id, **{k: _stored(v) for k, v in decision.items()}})

    async def save_release(self, release_id: str, fields: Mapping[str, Any]) -> None:
        await self.releases.update_one({"_id": release_id}, {"$setOnInsert": {k: _stored(v) for k, v in fields.items()}}, upsert=True)

    async def release(self, release_id: str) -> dict[str, Any] | None:
        return await self.releases.find_one({"_id": release_id})


def _stored(value: Any) -> Any:
    """Dates as ISO strings (BSON has no date type); enums as their values."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Card):
        return _card_document(value)
    if isinstance(value, ResidentAttributes):
        return _attributes_document(value)
    if isinstance(value, list | tuple):
        return [_stored(v) for v in value]
    if isinstance(value, dict):
        return {k: _stored(v) for k, v in value.items()}
    return value
