"""The citation check (retriever/citations.py): what counts as a citation of a given passage, what is cut."""

from __future__ import annotations

import random

import pytest

from retriever.citations import CitationChecker, CitedPassage

GIVEN = [CitedPassage(1, 2, 255), CitedPassage(2, 2, 256), CitedPassage(3, 112, 1)]


def check(text: str) -> CitationChecker:
    checker = CitationChecker(GIVEN)
    checker.check(text)
    return checker


@pytest.mark.parametrize(
    "text",
    [
        "Allah Maha Hidup [1].",
        "Lihat QS Al-Baqarah [2]: 255.",
        "Lihat QS. Al Baqarah [2]: 256.",  # another spelling of the name
        "Lihat QS 2:255-256.",  # a range whose every ayah was given
        "Dalam Al-Baqarah [2]: 256 disebutkan.",
        "Katakanlah (QS Al-Ikhlas [112]: 1).",
    ],
)
def test_a_citation_of_a_given_passage_is_kept(text):
    checker = check(text)
    assert checker.text == text
    assert checker.invalid == []
    assert checker.cited


@pytest.mark.parametrize(
    ("text", "kept", "reason"),
    [
        ("Khamar haram [7].", "Khamar haram.", "there is no passage [7]"),
        ("Khamar haram QS Al-Ma'idah [5]: 90 dan judi.", "Khamar haram dan judi.", "is not among the passages"),
        ("Lihat QS Ali Imran [2]: 255.", "Lihat.", "surah 2 is Al-Baqarah, not Ali Imran"),
        ("Lihat QS 2:255-257.", "Lihat.", "QS Al-Baqarah [2]: 257 is not among"),
        ("Ayat kursi (QS Al-Baqarah [2]: 7) agung.", "Ayat kursi agung.", "[2]: 7 is not among"),
        ("Lihat QS Al-Fil [200]: 1.", "Lihat.", "there is no surah 200"),
    ],
)
def test_a_citation_of_anything_else_is_cut_and_reported(text, kept, reason):
    checker = check(text)
    assert checker.text == kept
    assert len(checker.invalid) == 1
    assert reason in checker.invalid[0].reason


def test_cited_lists_each_passage_once_in_the_order_first_cited():
    checker = check("Tidak ada paksaan [2], Allah Maha Hidup QS Al-Baqarah [2]: 255 [2] [1]; Katakanlah [3].")
    assert checker.cited == [2, 1, 3]


def test_text_without_citations_passes_unchanged():
    text = "QS adalah singkatan dari Quran Surah; tanda [ dan ] dipakai juga. Quran itu mulia."
    assert check(text).text == text


def test_streamed_in_any_pieces_the_text_is_the_same_as_checked_whole():
    text = (
        "Allah Maha Hidup [1]. Tidak ada paksaan (QS Al-Baqarah [2]: 256) dan QS Al-Maidah [5]: 90 melarang "
        "khamar [7]. Lihat QS 2:255-256 dan QS Al-Ikhlas [112]: 1, serta QS Ali Imran [2]: 255. (QS Al-Baqarah "
        "[2]: 7) Quran [ ok. [9]"
    )
    whole = check(text).text
    for seed in range(100):
        rng = random.Random(seed)
        checker, at, shown = CitationChecker(GIVEN), 0, []
        while at < len(text):
            size = rng.randint(1, 9)
            shown.append(checker.feed(text[at : at + size]))
            at += size
        shown.append(checker.finish())
        assert "".join(shown) == whole, seed


def test_a_citation_still_forming_is_held_back_until_it_is_complete():
    checker = CitationChecker(GIVEN)
    assert checker.feed("Lihat QS Al-Baqarah [2]: 25") == "Lihat"  # "25" may yet become "255" or "256"
    assert checker.feed("7 dan") == " dan"  # 2:257 was not given: cut, with its space
    assert checker.finish() == ""
    assert [c.text for c in checker.invalid] == ["QS Al-Baqarah [2]: 257"]
