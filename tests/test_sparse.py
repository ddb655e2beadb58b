"""The Indonesian BM25 side: normaliser, vectors, and the corpus-derived length normalisation."""

from __future__ import annotations

from typing import get_args

import pytest
from pydantic import ValidationError

from ingest.builtin import read_builtin
from ingest.pipeline import ayah_texts
from services.settings import Settings, SparseLayoutName
from services.sparse import (
    DEFAULT_SPARSE_LAYOUT,
    FIELD_AVG_LEN,
    SPARSE_LAYOUTS,
    STEMMERS,
    SURAH_NAME,
    TAFSIR,
    TEXT_FIELDS,
    TRANSLATION_2019,
    TRANSLATION_LEGACY,
    Bm25Settings,
    SparseEncoder,
    SparseList,
    document_text,
    measure_avg_len,
    normalise,
)
from services.store.base import SPARSE, SPARSE_CONTEXT, SPARSE_TRANSLATION


@pytest.mark.parametrize(
    ("variant", "canonical"),
    [
        ("Zakariyyâ", "zakaria"),  # diacritic, doubled letter, iy before a vowel
        ("Zakaria", "zakaria"),
        ("Ka'bah", "kabah"),  # apostrophe inside a word
        ("nusyûz", "nusyuz"),
        ("shalat", "salat"),  # Arabic digraphs folded to their KBBI spelling
        ("dzikir", "zikir"),
        ("hadits", "hadis"),
        ("taqwa", "takwa"),
        ("orang-orang", "orang"),  # reduplication
    ],
)
def test_transliteration_variants_meet(variant, canonical):
    assert normalise(variant) == canonical


@pytest.mark.parametrize("word", ["tinggal", "masukkan", "keadaan", "diikuti", "membangunnya"])
def test_doubles_made_by_indonesian_affixes_are_kept(word):
    assert normalise(word) == word


def texts(tafsir: str, translation: str | None = None, surah_name: str = "Al-Baqarah", **more: str) -> dict:
    return {TAFSIR: tafsir, TRANSLATION_LEGACY: translation, SURAH_NAME: surah_name, **more}


def terms(vector) -> dict[int, float]:
    return dict(zip(vector.indices, vector.values, strict=True))


def test_a_query_finds_the_differently_spelled_document_term():
    encoder = SparseEncoder()
    document = encoder.vectors(texts("Nabi Zakariyyâ berdoa di mihrab.", surah_name="Maryam"))[SPARSE]
    query = encoder.query("nabi zakaria di mihrab")
    assert set(query.indices) <= set(document.indices)


def test_context_vector_adds_a_share_of_the_neighbours():
    encoder = SparseEncoder(Bm25Settings(neighbour_weight=0.4))
    neighbour = encoder.neighbour_weights(texts("Thalut memimpin tentara"))
    vectors = encoder.vectors(texts("Jalut dibunuh Daud", "terjemahan"), [neighbour])
    own, context = terms(vectors[SPARSE]), terms(vectors[SPARSE_CONTEXT])
    for term, weight in neighbour.items():
        assert context[term] == pytest.approx(own.get(term, 0.0) + 0.4 * weight)
    assert set(vectors) == {SPARSE, SPARSE_CONTEXT, SPARSE_TRANSLATION}


def test_both_wordings_of_the_translation_are_searchable_in_the_default_layout():
    encoder = SparseEncoder()
    vectors = encoder.vectors(
        texts("Tafsir ayat.", "Kitab (Al Quran) ini tidak ada keraguan", **{TRANSLATION_2019: "petunjuk bertakwa"})
    )
    for wording in ("keraguan", "bertakwa"):
        query = set(encoder.query(wording).indices)
        for name in (SPARSE, SPARSE_CONTEXT, SPARSE_TRANSLATION):
            assert query <= set(vectors[name].indices), (wording, name)


def test_the_older_wording_layout_leaves_the_2019_wording_out():
    encoder = SparseEncoder(Bm25Settings.named("older-wording"))
    vectors = encoder.vectors(texts("Tafsir ayat.", "tidak ada keraguan", **{TRANSLATION_2019: "bertakwa"}))
    assert not set(encoder.query("bertakwa").indices) & set(vectors[SPARSE].indices)


def test_a_layout_says_which_texts_feed_which_vector():
    encoder = SparseEncoder(Bm25Settings.named("split-fields"))
    vectors = encoder.vectors(texts("Thalut memimpin tentara", "Jalut dibunuh"))
    thalut, jalut = set(encoder.query("thalut").indices), set(encoder.query("jalut").indices)
    assert thalut <= set(vectors[SPARSE].indices) and not jalut & set(vectors[SPARSE].indices)
    assert jalut <= set(vectors[SPARSE_TRANSLATION].indices) and not thalut & set(vectors[SPARSE_TRANSLATION].indices)


def test_an_ayah_without_translation_gets_no_translation_vector():
    assert SPARSE_TRANSLATION not in SparseEncoder().vectors(texts("Tafsir saja."))


def test_unknown_layouts_and_texts_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="unknown sparse layout 'nope': expected one of both-wordings, "):
        Bm25Settings.named("nope")
    with pytest.raises(ValueError, match="a sparse list indexes some of"):
        SparseList(("tafsir", "footnotes"), 1.2, 0.75)


def test_the_setting_names_exactly_the_layouts_and_refuses_others():
    assert get_args(SparseLayoutName) == tuple(SPARSE_LAYOUTS)
    assert Settings(_env_file=None).sparse_layout == DEFAULT_SPARSE_LAYOUT
    with pytest.raises(ValidationError, match=r"sparse_layout(.|\n)*'both-wordings', 'older-wording'"):
        Settings(_env_file=None, sparse_layout="nope")


def test_the_layout_is_part_of_the_sparse_hash_version():
    versions = {Bm25Settings.named(name).version for name in SPARSE_LAYOUTS}
    assert len(versions) == len(SPARSE_LAYOUTS)


def test_field_avg_len_is_the_built_in_corpus_mean_of_each_text():
    ayat = read_builtin().ayat
    for field in TEXT_FIELDS:
        documents = [document_text(ayah_texts(a), [field]) for a in ayat]
        assert measure_avg_len(documents) == pytest.approx(FIELD_AVG_LEN[field], rel=0.01), field
    # Lengths add up, so each list's avg_len is the mean length of its own documents.
    default = Bm25Settings().layout
    for lst in (default.bm25, default.bm25_tr):
        documents = [document_text(ayah_texts(a), lst.fields) for a in ayat]
        assert measure_avg_len(documents) == pytest.approx(lst.avg_len, rel=0.01)


def test_the_sastrawi_stemmer_lets_an_affixed_word_meet_its_root():
    document = texts("Dan janganlah kamu membunuh dirimu; mereka bergunjing.")
    query = "larangan bunuh diri dan menggunjing"
    plain, stemmed = SparseEncoder(), SparseEncoder(Bm25Settings.named(DEFAULT_SPARSE_LAYOUT, "sastrawi"))
    shared = {
        name: set(encoder.query(query).indices) & set(encoder.vectors(document)[SPARSE].indices)
        for name, encoder in (("plain", plain), ("stemmed", stemmed))
    }
    assert shared["plain"] == set()  # Qdrant's Bm25 has no Indonesian stemmer
    assert shared["stemmed"] == set(stemmed.query("bunuh gunjing").indices)


def test_the_stemmer_is_part_of_the_sparse_hash_and_off_keeps_the_stored_hashes():
    assert Bm25Settings.named(DEFAULT_SPARSE_LAYOUT, "none").version == Bm25Settings().version
    assert "stemmer" not in Bm25Settings().version  # vectors stored before the setting existed stay current
    assert Bm25Settings.named(DEFAULT_SPARSE_LAYOUT, "sastrawi").version != Bm25Settings().version
    assert get_args(Settings.model_fields["sparse_stemmer"].annotation) == STEMMERS
    assert Settings(_env_file=None).sparse_stemmer == "sastrawi"  # chosen on the question set: docs/BENCHMARKS.md
    with pytest.raises(ValueError, match="unknown sparse stemmer 'porter': expected one of none, sastrawi"):
        Bm25Settings.named(DEFAULT_SPARSE_LAYOUT, "porter")


def test_with_a_stemmer_the_translation_list_keeps_the_words_as_written_and_a_query_meets_both():
    encoder = SparseEncoder(Bm25Settings.named(DEFAULT_SPARSE_LAYOUT, "sastrawi"))
    vectors = encoder.vectors(texts("mereka membunuh", translation="mereka membunuh"))
    written, root = (set(encoder._query.embed_query(word).indices) for word in ("membunuh", "bunuh"))
    assert root <= set(vectors[SPARSE].indices) and not written & set(vectors[SPARSE].indices)
    assert written <= set(vectors[SPARSE_TRANSLATION].indices) and not root & set(vectors[SPARSE_TRANSLATION].indices)
    assert written | root == set(encoder.query("membunuh").indices)
