"""Japanese notation, normalised (services/kit/notation.py): the rules insurance uses to link a
record to a person and benefits uses to check an account holder. Pure: no broker, no database."""

from __future__ import annotations

from services.kit.notation import normalise_address, normalise_name_kana, normalise_name_kanji


def test_kana_names_compare_after_width_space_hiragana_and_small_kana_normalisation():
    assert normalise_name_kana("ﾔﾏﾀﾞ ﾊﾅｺ") == normalise_name_kana("ヤマダ　ハナコ") == "ヤマダハナコ"
    assert normalise_name_kana("やまだ はなこ") == "ヤマダハナコ"
    assert normalise_name_kana("ｷﾖｳｺ") == normalise_name_kana("キョウコ")  # banks spell small kana large
    assert normalise_name_kana("ｶﾞｯｺｳ") == normalise_name_kana("ガツコウ")
    assert normalise_name_kana("ｻ-ﾄｳ") == normalise_name_kana("サートウ")  # a hyphen for the long-vowel mark


def test_different_kana_names_stay_different():
    assert normalise_name_kana("サトウ") != normalise_name_kana("サートウ")  # a long vowel is a real difference
    assert normalise_name_kana("カトウ") != normalise_name_kana("ガトウ")  # so is a voiced mark


def test_kanji_names_ignore_spacing_and_width_only():
    assert normalise_name_kanji("山田　花子") == normalise_name_kanji("山田花子") == normalise_name_kanji("山田・花子")
    assert normalise_name_kanji("髙橋") != normalise_name_kanji("高橋")  # kanji variants are not folded


def test_address_number_notation_is_normalised():
    assert normalise_address("宮城県仙台市青葉区一番町2番地の3") == "宮城県仙台市青葉区一番町2-3"  # 一番町 is a place name
    assert normalise_address("東京都千代田区霞ヶ関1-2") == normalise_address("東京都千代田区霞が関1-2")
    assert normalise_address("大阪市北区梅田二十三丁目4番5号 梅田ビル") == "大阪市北区梅田23-4-5梅田ビル"
    assert normalise_address("東京都港区１−１") == normalise_address("東京都港区1-1") == normalise_address("東京都港区1ー1")


def test_different_addresses_stay_different():
    assert normalise_address("東京都千代田区永田町1-7-1") != normalise_address("東京都千代田区永田町1-7-2")
    assert normalise_address("東京都千代田区永田町1-7-1") != normalise_address("千代田区永田町1-7-1")
