"""Synthetic people for the benchmarks: valid Individual Numbers (never printed), the person
reference every service derives from them, plausible attributes, a card and its certificate.

Numbers live in a seed space of their own so a benchmark never collides with the demo's people.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, timedelta

from mynumber_contracts import MyNumber, ResidentAttributes, Sex, check_digit

from services.kit.people import PersonReferences
from services.kit.settings import DEVELOPMENT_PERSON_REF_KEY

SURNAMES = [("佐藤", "サトウ"), ("鈴木", "スズキ"), ("高橋", "タカハシ"), ("田中", "タナカ"), ("伊藤", "イトウ"), ("渡辺", "ワタナベ"),
            ("山本", "ヤマモト"), ("中村", "ナカムラ"), ("小林", "コバヤシ"), ("加藤", "カトウ")]
GIVEN = [("太郎", "タロウ", Sex.male), ("花子", "ハナコ", Sex.female), ("翔太", "ショウタ", Sex.male), ("陽菜", "ヒナ", Sex.female),
         ("健", "ケン", Sex.male), ("結衣", "ユイ", Sex.female), ("大輔", "ダイスケ", Sex.male), ("葵", "アオイ", Sex.female)]
DISTRICTS = ["永田町", "霞が関", "丸の内", "神田", "大手町", "有楽町"]
PEOPLE = PersonReferences(DEVELOPMENT_PERSON_REF_KEY)  # the key the services use unless MYNUMBER_PERSON_REF_KEY is set


@dataclass(frozen=True)
class Person:
    index: int
    number: MyNumber
    ref: str
    attributes: ResidentAttributes
    card_number: str
    certificate_id: str

    @property
    def digits(self) -> str:
        return self.number.reveal()


def a_number(seed: int) -> MyNumber:
    base = f"{seed:011d}"
    return MyNumber(base + str(check_digit(base)))


def people(count: int, *, first: int = 0, seed_base: int = 61_000_000_000) -> list[Person]:
    """`count` adults with distinct numbers; `first` shifts the range so two groups never overlap."""
    run = uuid.uuid4().hex[:6].upper()
    result = []
    for i in range(first, first + count):
        surname, given = SURNAMES[i % len(SURNAMES)], GIVEN[(i // len(SURNAMES)) % len(GIVEN)]
        number = a_number(seed_base + i)
        attributes = ResidentAttributes(
            name_kanji=f"{surname[0]} {given[0]}", name_kana=f"{surname[1]} {given[1]}",
            date_of_birth=date(1960, 1, 1) + timedelta(days=(i * 37) % (40 * 365)), sex=given[2],
            address=f"東京都千代田区{DISTRICTS[i % len(DISTRICTS)]}{1 + i % 9}-{1 + i % 30}-{1 + i % 20}",
        )
        result.append(Person(i, number, PEOPLE.for_number(number), attributes,
                             card_number=f"C-B{run}{i:08d}", certificate_id=f"cert-b{run.lower()}{i:08d}"))
    return result
