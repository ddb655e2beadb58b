"""Whole sentences of Indonesian tafsir text (retriever/sentences.py), the unit of extractive answers."""

from __future__ import annotations

import pytest

from bench.answers_fragments import is_whole
from ingest.builtin import read_builtin
from retriever.sentences import sentence_spans, whole_sentences


def sentences(text: str) -> list[str]:
    return [text[start:end] for start, end in sentence_spans(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Honorifics: a lowercase word after them goes on with the sentence, a capital starts the next one.
        (
            "kepada Nabi Muhammad saw. beserta keluarganya. Lalu ia pergi.",
            ["kepada Nabi Muhammad saw. beserta keluarganya.", "Lalu ia pergi."],
        ),
        (
            "Ia dari Allah swt. Kalimat negatif menjadi predikat.",
            ["Ia dari Allah swt.", "Kalimat negatif menjadi predikat."],
        ),
        (
            "melalui Aisyah r.a. katanya benar. Ibrahim a.s. berdoa.",
            ["melalui Aisyah r.a. katanya benar.", "Ibrahim a.s. berdoa."],
        ),
        # Abbreviations that a name or a number follows, and initials, end nothing.
        (
            'Yang Maha Mengalahkan." (Q.S. Al-Mukmin 16) Bagi orang yang membacanya.',
            ['Yang Maha Mengalahkan."', "(Q.S. Al-Mukmin 16) Bagi orang yang membacanya."],
        ),
        ("Lihat QS. Al-Baqarah 2:255. Itulah ayat kursi.", ["Lihat QS. Al-Baqarah 2:255.", "Itulah ayat kursi."]),
        ('atas kamu." (H.R. Baihaqi) Sabdanya pula.', ['atas kamu."', "(H.R. Baihaqi) Sabdanya pula."]),
        (
            "Menurut A. Hassan begitu. Dr. Quraish berkata lain.",
            ["Menurut A. Hassan begitu.", "Dr. Quraish berkata lain."],
        ),
        # Jalalayn's parentheses (the ayah's own words) and quotes stay with the sentence they belong to.
        ("(mereka yang sesat.) Yang dimaksud orang Nasrani.", ["(mereka yang sesat.)", "Yang dimaksud orang Nasrani."]),
        (
            'siapa yang durhaka. "Maka barang siapa meminumnya", katanya.',
            ["siapa yang durhaka.", '"Maka barang siapa meminumnya", katanya.'],
        ),
        (
            'dengan firman-Nya. ("Hai Musa! Kami tidak akan beriman) kepadamu.',
            ["dengan firman-Nya.", '("Hai Musa!', "Kami tidak akan beriman) kepadamu."],
        ),
        ('("Janganlah berbuat kerusakan!") yakni kekafiran.', ['("Janganlah berbuat kerusakan!") yakni kekafiran.']),
        (
            "(Maka tatkala keluar) artinya berangkat. (Maka jawabnya) ia.",
            ["(Maka tatkala keluar) artinya berangkat.", "(Maka jawabnya) ia."],
        ),
        ("hai warga Mekah? (kepada Allah, padahal) tadi.", ["hai warga Mekah? (kepada Allah, padahal) tadi."]),
        # Numbers and ellipses.
        ("Ayat 2:255 dan 3.5 persen. Selesai.", ["Ayat 2:255 dan 3.5 persen.", "Selesai."]),
        (
            'Engkau jadikan... dan seterusnya" (dan apa). Lalu.',
            ['Engkau jadikan... dan seterusnya" (dan apa).', "Lalu."],
        ),
        # Arabic has no capitals: any letter after an end opens the next sentence; English abbreviations.
        ("قال الله تعالى. وهو الحق؟ نعم", ["قال الله تعالى.", "وهو الحق؟", "نعم"]),
        ("As Mr. Smith said. It is so.", ["As Mr. Smith said.", "It is so."]),
        # A text without an end mark is one sentence; blank text none.
        (
            "(Dengan nama Allah Yang Maha Pemurah lagi Maha Penyayang)",
            ["(Dengan nama Allah Yang Maha Pemurah lagi Maha Penyayang)"],
        ),
        ("  ", []),
    ],
)
def test_sentences_end_where_indonesian_tafsir_ends_them(text, expected):
    assert sentences(text) == expected


def test_a_window_that_may_begin_or_end_inside_a_sentence_loses_its_edge_sentences():
    text = "awal yang terpotong. Kalimat utuh satu. Kalimat utuh dua. Akhir yang terpo"
    whole = lambda **edges: [text[a:b] for a, b in whole_sentences(text, **edges)]  # noqa: E731
    assert whole() == sentences(text)
    assert whole(starts_whole=False, ends_whole=False) == ["Kalimat utuh satu.", "Kalimat utuh dua."]


def test_every_sentence_of_the_built_in_tafsir_is_whole_by_the_benchmark_s_own_definition():
    """The splitter against the independent check of bench/answers_fragments.py, over all 6,236 ayat (tafsir and
    translation): every span is whole, and together they hold all of the text."""
    for ayah in read_builtin().ayat:
        for text in (ayah.text, ayah.translation):
            spans = sentence_spans(text)
            assert "".join(text[a:b] for a, b in spans).replace(" ", "") == "".join(text.split()), ayah
            for start, end in spans:
                assert is_whole(text[start:end], text), (ayah.surah, ayah.ayah, text[start:end])


# --- the fragment check of bench/answers_fragments.py: strict, on its own ------------------------------------

TAFSIR_2_249 = (
    "(Maka mereka meminumnya) banyak-banyak, (kecuali beberapa orang di antara mereka). Jumlah mereka tiga ratus "
    'dan beberapa belas orang (Tatkala ia telah melewati anak sungai itu) ("Tak ada kesanggupan kami") maksudnya '
    "untuk berperang. Mereka jadi pengecut."
)


@pytest.mark.parametrize(
    "fragment",
    [
        "Jumlah mereka tiga",  # the cut: ends inside a sentence
        "mereka tiga ratus dan beberapa belas orang",  # starts inside one
        "Jumlah mereka tiga ratus dan beberapa belas orang (Tatkala ia telah melewati anak sungai itu) "
        '("Tak ada kesanggupan kami") maksudnya untuk berperang',  # the mark left out
        "Jumlah mereka tiga ratus dan beberapa belas orang (Tatkala ia telah melewati anak sungai itu)",
        "Mereka jadi pengecut!",  # not verbatim
        "(kecuali beberapa orang di antara mereka).",  # starts inside the first sentence
    ],
)
def test_the_check_calls_a_fragment_that_is_not_a_run_of_whole_sentences_cut(fragment):
    assert not is_whole(fragment, TAFSIR_2_249)


@pytest.mark.parametrize(
    "fragment",
    [
        "(Maka mereka meminumnya) banyak-banyak, (kecuali beberapa orang di antara mereka).",
        "Jumlah mereka tiga ratus dan beberapa belas orang (Tatkala ia telah melewati anak sungai itu) "
        '("Tak ada kesanggupan kami") maksudnya untuk berperang.',
        "Mereka jadi pengecut.",
    ],
)
def test_the_check_accepts_whole_sentences(fragment):
    assert is_whole(fragment, TAFSIR_2_249)


def test_the_check_knows_abbreviations_and_the_edges_of_a_window():
    text = "Nabi saw. beserta sahabatnya pergi. Lihat Q.S. Al-Baqarah. Selesai"
    assert not is_whole("Nabi saw.", text)  # a lowercase word goes on
    assert not is_whole("Lihat Q.S.", text)  # a name follows
    assert is_whole("Lihat Q.S. Al-Baqarah.", text)
    assert is_whole("Selesai", text) and not is_whole("Selesai", text, text_ends_whole=False)
    assert not is_whole("Nabi saw. beserta sahabatnya pergi.", text, text_starts_whole=False)
