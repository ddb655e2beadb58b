"""The Indonesian BM25 side: normaliser, vectors, and the corpus-derived length normalisation."""

from __future__ import annotations

import pytest

from ingest.sources import read_builtin
from services.quran import surah
from services.sparse import Bm25Settings, SparseEncoder, document_text, measure_avg_len, normalise
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


def test_a_query_finds_the_differently_spelled_document_term():
    encoder = SparseEncoder()
    document = encoder.vectors("Nabi Zakariyyâ berdoa di mihrab.", None, "Maryam", [])[SPARSE]
    query = encoder.query("nabi zakaria di mihrab")
    assert set(query.indices) <= set(document.indices)


def test_context_vector_adds_a_share_of_the_neighbours():
    encoder = SparseEncoder(Bm25Settings(neighbour_weight=0.4))
    neighbour = encoder.weights(document_text("Thalut memimpin tentara", None, "Al-Baqarah"))
    vectors = encoder.vectors("Jalut dibunuh Daud", "terjemahan", "Al-Baqarah", [neighbour])
    own = dict(zip(vectors[SPARSE].indices, vectors[SPARSE].values, strict=True))
    context = dict(zip(vectors[SPARSE_CONTEXT].indices, vectors[SPARSE_CONTEXT].values, strict=True))
    for term, weight in neighbour.items():
        assert context[term] == pytest.approx(own.get(term, 0.0) + 0.4 * weight)
    assert set(vectors) == {SPARSE, SPARSE_CONTEXT, SPARSE_TRANSLATION}


def test_default_avg_len_is_the_built_in_corpus_mean():
    ayat = read_builtin().ayat
    documents = [document_text(a.text, a.translation, surah(a.surah).name) for a in ayat]
    settings = Bm25Settings()
    assert measure_avg_len(documents) == pytest.approx(settings.avg_len, rel=0.01)
    assert measure_avg_len([normalise(a.translation) for a in ayat]) == pytest.approx(
        settings.translation_avg_len, rel=0.01
    )
