"""A synthetic population for the demo: people with plausible Japanese (and foreign)
names in kanji and kana, birthdays, addresses and Individual Numbers with valid check
digits. Nothing here is real personal data; a seeded generator makes runs repeatable."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta

from mynumber_contracts import MyNumber, ResidentAttributes, Sex, check_digit

SURNAMES = [
    ("佐藤", "サトウ"), ("鈴木", "スズキ"), ("高橋", "タカハシ"), ("田中", "タナカ"), ("伊藤", "イトウ"), ("渡辺", "ワタナベ"),
    ("山本", "ヤマモト"), ("中村", "ナカムラ"), ("小林", "コバヤシ"), ("加藤", "カトウ"), ("吉田", "ヨシダ"), ("山田", "ヤマダ"),
    ("佐々木", "ササキ"), ("山口", "ヤマグチ"), ("松本", "マツモト"), ("井上", "イノウエ"), ("木村", "キムラ"), ("林", "ハヤシ"),
    ("斎藤", "サイトウ"), ("清水", "シミズ"), ("山崎", "ヤマザキ"), ("森", "モリ"), ("池田", "イケダ"), ("橋本", "ハシモト"),
]
GIVEN_MALE = [("太郎", "タロウ"), ("一郎", "イチロウ"), ("健", "ケン"), ("翔太", "ショウタ"), ("大輔", "ダイスケ"), ("拓也", "タクヤ"),
              ("蓮", "レン"), ("湊", "ミナト"), ("悠真", "ユウマ"), ("陽翔", "ハルト"), ("誠", "マコト"), ("浩", "ヒロシ")]
GIVEN_FEMALE = [("花子", "ハナコ"), ("陽菜", "ヒナ"), ("結衣", "ユイ"), ("美咲", "ミサキ"), ("葵", "アオイ"), ("さくら", "サクラ"),
                ("凛", "リン"), ("芽依", "メイ"), ("恵子", "ケイコ"), ("由美", "ユミ"), ("愛", "アイ"), ("真央", "マオ")]
FOREIGN = [("US", "SMITH JOHN", "スミス ジョン", Sex.male), ("VN", "NGUYEN VAN AN", "グエン ヴァン アン", Sex.male),
           ("CN", "王 芳", "ワン ファン", Sex.female), ("PH", "SANTOS MARIA", "サントス マリア", Sex.female),
           ("BR", "SILVA PEDRO", "シルバ ペドロ", Sex.male), ("KR", "金 民俊", "キム ミンジュン", Sex.male)]
MUNICIPALITIES = {
    "131016": ("東京都千代田区", ["永田町", "霞が関", "丸の内", "神田"]),
    "271004": ("大阪府大阪市", ["北区梅田", "中央区難波", "天王寺区上本町"]),
    "011002": ("北海道札幌市", ["中央区大通西", "北区北八条西", "白石区本郷通"]),
}


@dataclass
class Person:
    number: MyNumber
    attributes: ResidentAttributes
    municipality: str
    nationality: str = "JP"
    residence_status: str | None = None
    residence_period_end: date | None = None
    moved_abroad_on: date | None = None
    tags: set[str] = field(default_factory=set)

    @property
    def digits(self) -> str:
        return self.number.reveal()

    @property
    def surname_kana(self) -> str:
        return self.attributes.name_kana.split(" ")[0]


def _number(rng: random.Random, used: set[str]) -> MyNumber:
    while True:
        base = f"{rng.randrange(10**10, 10**11):011d}"
        digits = base + str(check_digit(base))
        if digits not in used:
            used.add(digits)
            return MyNumber(digits)


def _address(rng: random.Random, municipality: str) -> str:
    city, districts = MUNICIPALITIES[municipality]
    return f"{city}{rng.choice(districts)}{rng.randint(1, 9)}-{rng.randint(1, 30)}-{rng.randint(1, 20)}"


def generate(count: int, today: date, seed: int = 2026) -> list[Person]:
    """`count` people: mostly adults, some children and infants under 1, some foreign
    residents with a period of stay, some nationals who moved abroad after 5 October 2015."""
    rng = random.Random(seed)
    used: set[str] = set()
    people: list[Person] = []
    for index in range(count):
        municipality = rng.choice(list(MUNICIPALITIES))
        roll = rng.random()
        if roll < 0.07:
            country, kanji, kana, sex = rng.choice(FOREIGN)
            birth = today - timedelta(days=rng.randint(20 * 365, 60 * 365))
            permanent = rng.random() < 0.3
            person = Person(
                _number(rng, used),
                ResidentAttributes(name_kanji=kanji, name_kana=kana, date_of_birth=birth, sex=sex,
                                   address=_address(rng, municipality)),
                municipality, nationality=country,
                residence_status="permanent_resident" if permanent else rng.choice(["engineer", "student", "skilled_labor"]),
                residence_period_end=None if permanent else today + timedelta(days=rng.randint(200, 1500)),
                tags={"foreign"},
            )
        else:
            sex = Sex.male if rng.random() < 0.5 else Sex.female
            surname = rng.choice(SURNAMES)
            given = rng.choice(GIVEN_MALE if sex is Sex.male else GIVEN_FEMALE)
            if roll < 0.12:
                birth, tags = today - timedelta(days=rng.randint(10, 300)), {"infant"}
            elif roll < 0.25:
                birth, tags = today - timedelta(days=rng.randint(2 * 365, 17 * 365)), {"child"}
            else:
                birth, tags = today - timedelta(days=rng.randint(18 * 365, 85 * 365)), {"adult"}
            if index % 97 == 5:
                birth, tags = date(2000 + 4 * rng.randint(0, 5), 2, 29), {"adult", "leap_day"}
            person = Person(
                _number(rng, used),
                ResidentAttributes(name_kanji=f"{surname[0]} {given[0]}", name_kana=f"{surname[1]} {given[1]}",
                                   date_of_birth=birth, sex=sex, address=_address(rng, municipality)),
                municipality, tags=set(tags),
            )
            if "adult" in tags and rng.random() < 0.03:
                person.moved_abroad_on = date(2016 + rng.randint(0, 8), rng.randint(1, 12), rng.randint(1, 28))
                person.tags.add("abroad")
        people.append(person)
    return people
