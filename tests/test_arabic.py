"""Arabic queries: the normaliser (services/arabic.py), the bm25_ar list, its route, and adding it to a collection
made before it existed, on real stores (Edge; qdrant-client's local mode) with the tiny model."""

from __future__ import annotations

import json
import unicodedata
import uuid
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from ingest.builtin import BUILTIN_ORIGIN, read_builtin
from ingest.pipeline import IngestPipeline
from ingest.sources import Source
from retriever.search import SearchEngine, SearchOptions
from services import arabic
from services.embedding import Embedder
from services.settings import Settings
from services.store import open_store
from services.store.base import (
    FIRST_SPARSE_VECTORS,
    SPARSE,
    SPARSE_ARABIC,
    CollectionSpec,
    Mode,
    PointToStore,
    SearchRequest,
    SparseVector,
    StoreError,
)
from services.store.edge import EdgeStore
from services.store.server import ServerStore
from tests.conftest import engine_over

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")

BUILTIN = read_builtin()


def al_baqarah(first: int = 246, last: int = 266) -> Source:
    ayat = tuple(a for a in BUILTIN.ayat if a.surah == 2 and first <= a.ayah <= last)
    return Source("id.jalalayn", BUILTIN_ORIGIN, ayat)


def arabic_of(surah: int, ayah: int) -> str:
    return next(a.arabic for a in BUILTIN.ayat if (a.surah, a.ayah) == (surah, ayah))


def without_marks(text: str) -> str:
    """Every combining mark removed, the small alef and the Quranic signs with the harakat."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


# --- the normaliser --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("printed", "typed"),
    [
        ("لَآ إِكْرَاهَ فِى ٱلدِّينِ", "لا إكراه في الدين"),  # harakat, maddah, alef wasla, alef maqsura
        ("ٱلرَّحْمَـٰنِ ٱلرَّحِيمِ", "الرحمن الرحيم"),  # small alef where modern spelling has none, tatweel
        ("رَبِّ ٱلْعَـٰلَمِينَ", "رب العالمين"),  # small alef where modern spelling has a full alef
        ("ءَامَنُوا۟ بِٱلْءَاخِرَةِ", "آمنوا بالآخرة"),  # bare hamza, ta marbuta, the Quranic small high rounded zero
        ("شَىْءٍ قَدِيرٌ ۗ", "شيء قدير"),  # a pause mark between words
        ("مُؤْمِنٌ", "مومن"),  # hamza on waw
    ],
)
def test_a_printed_ayah_and_a_typed_quote_share_their_terms(printed, typed):
    assert set(arabic.terms(typed)) <= set(arabic.terms(printed))
    assert set(arabic.terms(without_marks(printed))) <= set(arabic.terms(printed))


def test_normalise_unifies_alef_ya_ta_marbuta_and_hamza_forms():
    assert arabic.normalise("أَإِآٱ ى ة ؤ ئ ء") == "اااا ي ه و ي"
    assert arabic.normalise("ﻻ") == "لا"  # a presentation-form ligature
    assert arabic.normalise("Tidak ada paksaan") == ""  # anything not Arabic is left out
    assert arabic.has_arabic("QS 2:256 لا إكراه") and not arabic.has_arabic("laa ikraaha")


def test_terms_pair_adjacent_words_so_that_word_order_counts():
    forward, backward = arabic.terms("في الدين"), arabic.terms("الدين في")
    assert set(forward) & set(backward) == {"في", "الدين"}
    assert f"في{arabic.PAIR_JOINER}الدين" in forward
    assert arabic.terms("في الدين", pairs=False) == ["في", "الدين"]


# --- the route and the list, on a built store ------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tiny_model):
    with engine_over(tmp_path_factory.mktemp("arabic"), tiny_model, al_baqarah()) as built:
        yield built


def first_ayah(engine: SearchEngine, query: str, mode: Mode = Mode.HYBRID) -> tuple[int, int]:
    passage = engine.search(query, SearchOptions(k=3, mode=mode))[0]
    return passage.surah, passage.ayah


def test_an_arabic_query_is_routed_to_bm25_ar(engine):
    request = engine.request("لا إكراه في الدين", SearchOptions(), dense=[0.0])
    assert {name for name, _ in request.lists()} == {SPARSE_ARABIC}
    indonesian = engine.request("tidak ada paksaan dalam agama", SearchOptions(), dense=[0.0])
    assert SPARSE_ARABIC not in {name for name, _ in indonesian.lists()}


@pytest.mark.parametrize("spelling", ["printed", "harakat stripped", "marks stripped"])
def test_a_quoted_span_finds_its_ayah_first(engine, spelling):
    # 2:255, Ayat al-Kursi: six words and a pause mark, with a small alef, a hamza on a seat, a tatweel.
    words = arabic_of(2, 255).split()
    span = " ".join(words[46:53])
    quote = {"printed": span, "harakat stripped": "".join(c for c in span if not "\u064b" <= c <= "\u0652")}.get(
        spelling, without_marks(span)
    )
    assert first_ayah(engine, quote) == (2, 255)


def test_la_ikraha_fid_din_finds_al_baqarah_256(engine):
    assert first_ayah(engine, "لا إكراه في الدين") == (2, 256)
    assert first_ayah(engine, "لا إكراه في الدين", Mode.SPARSE) == (2, 256)


def test_the_not_found_decision_reads_the_quote_in_the_first_passages_arabic(engine):
    from retriever.not_found import gather

    probe = engine.search_probed("لا إكراه في الدين")
    assert gather("لا إكراه في الدين", probe, engine.sparse).overlap_first == 1.0


# --- a collection made before bm25_ar ---------------------------------------------------------------------------


def as_before_bm25_ar(store_path: Path, ids: list[str]) -> None:
    """The Edge collection behind the alias as an ingest before bm25_ar left it: no such vector, and each point's
    sparse_hash from other BM25 settings (written with the shard opened directly, the store closed)."""
    import qdrant_edge as edge

    collection = json.loads((store_path / "aliases.json").read_text())["tafsir"]
    shard = edge.EdgeShard.load(str(store_path / "collections" / collection / "shard"))
    try:
        shard.update(edge.UpdateOperation.delete_vector_name(SPARSE_ARABIC))
        shard.update(edge.UpdateOperation.set_payload(ids, {"sparse_hash": "before bm25_ar"}))
        shard.flush()
    finally:
        shard.close()


class CountingEmbedder(Embedder):
    embedded = 0

    def encode_documents(self, texts, batch_size=32):
        self.embedded += len(texts)
        return super().encode_documents(texts, batch_size)


def test_an_ingest_adds_bm25_ar_to_a_collection_without_it_and_embeds_nothing(tmp_path, tiny_model):
    settings = Settings(_env_file=None, qdrant_path=tmp_path / "qdrant", embedding_model=str(tiny_model))
    source = al_baqarah(250, 260)
    store = open_store(settings)
    first = IngestPipeline(settings, store, Embedder(settings)).run(source)
    ids = [h.id for h in store.iter_hashes("tafsir")]
    store.close()
    as_before_bm25_ar(tmp_path / "qdrant", ids)

    store = open_store(settings)
    try:
        engine = SearchEngine(settings, store=store, embedder=Embedder(settings))
        with pytest.raises(StoreError, match=r"no vector bm25_ar yet\. Run `tafsir ingest`"):
            engine.search("لا إكراه في الدين", SearchOptions(k=3, mode=Mode.SPARSE))
        # The Indonesian lists answer meanwhile.
        assert engine.search("tidak ada paksaan dalam agama", SearchOptions(k=3, mode=Mode.SPARSE))

        embedder = CountingEmbedder(settings)
        summary = IngestPipeline(settings, store, embedder).run(source)
        assert (summary.embedded, summary.resparsed, summary.rebuilt) == (0, first.chunks, False)
        assert embedder.embedded == 0 and summary.collection == first.collection
        assert first_ayah(engine, "لا إكراه في الدين", Mode.SPARSE) == (2, 256)
    finally:
        store.close()


@pytest.mark.parametrize("adapter", ["edge", "server"])
def test_each_store_adds_the_sparse_vectors_a_collection_lacks(adapter, tmp_path, monkeypatch):
    """A collection created with the first three sparse vectors gets bm25_ar, which then holds and finds points."""
    from services.store import base

    store = EdgeStore(tmp_path / "qdrant") if adapter == "edge" else ServerStore(QdrantClient(":memory:"), ":memory:")
    try:
        with monkeypatch.context() as before:  # a collection made with the sparse vectors of earlier releases
            before.setattr(base, "SPARSE_VECTORS", FIRST_SPARSE_VECTORS)
            store.create_collection("c", CollectionSpec(dense_size=2, model="m", fingerprint="f"))
        terms = SparseVector([7], [1.0])
        point_id = str(uuid.uuid4())
        store.upsert("c", [PointToStore(point_id, [1.0, 0.0], {SPARSE: terms}, {"text": "t", "edition": "e"})])
        only_arabic = SearchRequest(mode=Mode.SPARSE, limit=3, sparse=terms, sparse_weights={SPARSE_ARABIC: 1.0})
        with pytest.raises(StoreError, match="bm25_ar"):
            store.search("c", only_arabic)
        both = SearchRequest(mode=Mode.SPARSE, limit=3, sparse=terms, sparse_weights={SPARSE: 1.0, SPARSE_ARABIC: 1.0})
        assert [h.id for h in store.search("c", both)] == [point_id]  # the lists it has answer

        assert store.add_vectors("c") == [SPARSE_ARABIC]
        assert store.add_vectors("c") == []
        from services.store.base import SparseUpdate

        store.update_sparse("c", [SparseUpdate(point_id, {SPARSE_ARABIC: terms}, {})])
        assert [h.id for h in store.search("c", only_arabic)] == [point_id]
    finally:
        store.close()
