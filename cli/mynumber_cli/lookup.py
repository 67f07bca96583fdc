"""`mynumber person`: one person across the four services, through their HTTP APIs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from . import processes


class ServiceDown(RuntimeError):
    pass


@dataclass
class PersonView:
    person_ref: str
    resident: dict[str, Any] | None = None
    audit: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def person(person_ref: str, token: str, *, client: httpx.Client | None = None) -> PersonView:
    headers = {"Authorization": f"Bearer {token}"}
    http = client or httpx.Client(timeout=10)
    view = PersonView(person_ref)
    try:
        for service in processes.SERVICES:
            try:
                if service.name == "enrollment":
                    answer = http.get(f"{service.url}/operator/residents/{person_ref}", headers=headers)
                    if answer.status_code == 200:
                        view.resident = answer.json()
                    elif answer.status_code != 404:
                        answer.raise_for_status()
                trail = http.get(f"{service.url}/audit/persons/{person_ref}", headers=headers)
                trail.raise_for_status()
                view.audit[service.name] = trail.json()
            except httpx.ConnectError:
                raise ServiceDown(f"the {service.name} service does not answer at {service.url}: "
                                  "run `mynumber services up` first") from None
    finally:
        if client is None:
            http.close()
    return view


def render(view: PersonView, number: Any, console: Console) -> None:
    console.print(f"[bold]{number}[/] (person reference {view.person_ref})")
    if view.resident is None:
        console.print("Not in the resident registry.")
    else:
        attributes = view.resident["attributes"]
        console.print(f"{attributes['name_kanji']} ({attributes['name_kana']}), born {attributes['date_of_birth']}, "
                      f"{attributes['sex']}, {attributes['address']}; number {view.resident['number_masked']}")
        cards = Table("card", "status", "issued", "expires")
        for card in view.resident.get("cards", []):
            cards.add_row(str(card.get("card_number")), str(card.get("status")), str(card.get("issued_on")),
                          str(card.get("expires_on")))
        console.print(cards)
    trail = Table("service", "when", "who", "what", "why")
    for service, records in view.audit.items():
        for record in records:
            trail.add_row(service, record["at"], record["actor"], record["action"], record["reason"])
    console.print(trail if trail.row_count else "No audit records.")
