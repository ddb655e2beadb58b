"""The ingest pipeline on a real embedded Qdrant (Edge) store with a tiny real model."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

from ingest.builtin import BUILTIN_EDITION, BUILTIN_ORIGIN, read_builtin
from ingest.pipeline import IngestPipeline, translation_text
from ingest.sources import Source
from services.embedding import Embedder, ModelMismatchError
from services.settings import Settings
from services.store import open_store
from services.store.base import DENSE, PointFilter

BUILTIN = read_builtin()


def make_source(edition: str, surahs=range(97, 115), edit=None, drop=(), keep=None) -> Source:
    """Built-in ayat of some short surahs, as a user edition; ``edit`` maps (surah, ayah) -> new text;
    ``keep`` lists the only (surah, ayah) to take, if given."""
    ayat = []
    for a in BUILTIN.ayat:
        if a.surah in surahs and (a.surah, a.ayah) not in drop and (keep is None or (a.surah, a.ayah) in keep):
            text = (edit or {}).get((a.surah, a.ayah), a.text)
            ayat.append(dataclasses.replace(a, edition=edition, text=text))
    # The built-in edition's id stands for the built-in source (a user file may not replace it: ingest/pipeline.py).
    return Source(edition, BUILTIN_ORIGIN if edition == BUILTIN_EDITION else "test", tuple(ayat))


@pytest.fixture
def settings(tmp_path, tiny_model) -> Settings:
    return Settings(
        _env_file=None, qdrant_path=tmp_path / "qdrant", embedding_model=str(tiny_model), upsert_batch_size=64
    )


@pytest.fixture
def store(settings):
    store = open_store(settings)
    yield store
    store.close()


@pytest.fixture
def pipeline(settings, store) -> IngestPipeline:
    return IngestPipeline(settings, store, Embedder(settings))


def translation_vectors(store, alias="tafsir") -> dict[str, list[float] | None]:
    """Each stored point's dense_tr vector (None where it has none), by point id."""
    found, offset = {}, None
    while True:
        points, offset = store.scroll_points(store.resolve_alias(alias), offset)
        found |= {point.id: point.dense_tr for point in points}
        if offset is None:
            return found


def stored_hashes(store, alias="tafsir") -> dict[str, str]:
    return {h.id: h.content_hash for h in store.iter_hashes(alias)}


def test_first_ingest_stores_one_point_per_chunk_behind_the_alias(pipeline, store):
    source = make_source("test.one")
    summary = pipeline.run(source)
    chunks = pipeline.chunk(source.ayat)
    assert summary.rebuilt and summary.embedded == summary.chunks == len(chunks)
    assert store.resolve_alias("tafsir") == summary.collection
    assert store.count("tafsir") == len(chunks)
    assert set(stored_hashes(store)) == {c.id for c in chunks}
    ayat = {(h.payload["surah"], h.payload["ayah"]) for h in store.retrieve("tafsir", PointFilter(), limit=10_000)}
    assert len(ayat) == len(source.ayat)


def test_stored_payload_has_what_an_operator_filters_on(pipeline, store):
    pipeline.run(make_source("test.one", surahs=[112]))
    hit = store.retrieve("tafsir", PointFilter(surahs=[112], ayah_min=1, ayah_max=1), limit=10)[0]
    payload = hit.payload
    assert payload["surah_name"] == "Al-Ikhlas" and payload["surah_name_ar"] == "الإخلاص"
    assert (payload["edition"], payload["surah"], payload["ayah"], payload["chunk"], payload["chunks"]) == (
        "test.one",
        112,
        1,
        0,
        1,
    )
    assert payload["translation"] and payload["arabic"] and payload["text"]
    for key in ("dense_hash", "content_hash", "sparse_hash", "model", "ingested_at"):
        assert payload[key]


def test_the_payload_keeps_both_wordings_and_shows_the_2019_one(pipeline, store):
    pipeline.run(make_source("test.one", surahs=[2], keep=[(2, 2)]))
    payload = store.retrieve("tafsir", PointFilter(ayat=[(2, 2)]), limit=10)[0].payload
    assert (
        payload["translation_2019"]
        == "Kitab (Al-Qur'an) ini tidak ada keraguan padanya; petunjuk bagi mereka yang bertakwa,"
    )
    assert (
        payload["translation_legacy"]
        == "Kitab (Al Quran) ini tidak ada keraguan padanya; petunjuk bagi mereka yang bertakwa,"
    )
    assert payload["translation"] == payload["translation_2019"]  # TAFSIR_TRANSLATION=2019, the default
    assert payload["transliteration"].startswith("Żālikal-kitābu")


def test_choosing_the_legacy_wording_rewrites_payloads_without_embedding(settings, store):
    source = make_source("test.one", surahs=[2], keep=[(2, 1), (2, 2), (2, 3)])
    first = IngestPipeline(settings, store, Embedder(settings)).run(source)
    legacy = settings.model_copy(update={"translation": "legacy"})
    summary = IngestPipeline(legacy, store, Embedder(legacy)).run(source)
    assert (summary.embedded, summary.resparsed) == (0, first.chunks)
    payload = store.retrieve("tafsir", PointFilter(ayat=[(2, 2)]), limit=10)[0].payload
    assert payload["translation"] == payload["translation_legacy"] != payload["translation_2019"]


def test_reingest_of_unchanged_corpus_embeds_nothing(pipeline, store):
    source = make_source("test.one")
    first = pipeline.run(source)
    before = stored_hashes(store)
    second = pipeline.run(source)
    assert (second.embedded, second.deleted, second.rebuilt) == (0, 0, False)
    assert second.unchanged == first.chunks
    assert second.collection == first.collection
    assert stored_hashes(store) == before


def test_editing_one_ayah_reembeds_exactly_its_chunks(pipeline, store):
    pipeline.run(make_source("test.one"))
    before = stored_hashes(store)
    edited = make_source("test.one", edit={(103, 2): "Sesungguhnya manusia itu benar-benar dalam kerugian besar."})
    summary = pipeline.run(edited)
    after = stored_hashes(store)
    changed = {pid for pid in after if before.get(pid) != after[pid]}
    expected = {c.id for c in pipeline.chunk(edited.ayat) if (c.surah, c.ayah) == (103, 2)}
    assert summary.embedded == len(expected) == 1
    assert changed == expected
    # Its neighbours (103:1 and 103:3) keep their dense vectors; only their context vectors change.
    assert summary.resparsed == 2


def test_each_point_holds_its_ayah_translation_as_a_second_dense_vector(pipeline, store):
    """dense_tr is the model's document vector of the ayah's 2019 wording (the older one where there is none);
    an ayah without a translation has none, and a search of that list never returns it."""
    source = make_source("test.one", surahs=[2], keep=[(2, 1), (2, 2), (2, 255)])
    untranslated = make_source("test.bare", surahs=[112])
    untranslated = dataclasses.replace(
        untranslated,
        ayat=tuple(dataclasses.replace(a, translation=None, translation_2019=None) for a in untranslated.ayat),
    )
    pipeline.run(source)
    pipeline.run(untranslated)
    vectors = translation_vectors(store)
    payloads = {h.id: h.payload for h in store.retrieve("tafsir", PointFilter(), limit=1000)}
    index = {(a.edition, a.surah, a.ayah): a for a in (*source.ayat, *untranslated.ayat)}
    for point_id, vector in vectors.items():
        payload = payloads[point_id]
        ayah = index[payload["edition"], payload["surah"], payload["ayah"]]
        if payload["edition"] == "test.bare":
            assert vector is None and payload["dense_tr_hash"] is None
            continue
        assert translation_text(ayah) == ayah.translation_2019
        expected = pipeline.embedder.encode_documents([ayah.translation_2019])[0]
        assert vector == pytest.approx(list(expected / np.linalg.norm(expected)), abs=1e-5)
    assert sum(v is None for v in vectors.values()) == len(untranslated.ayat)


def test_a_changed_translation_embeds_its_translation_vector_alone(settings, store):
    source = make_source("test.one", surahs=[103])
    IngestPipeline(settings, store, Embedder(settings)).run(source)
    before = translation_vectors(store)
    new_wording = "Demi masa, sungguh manusia dalam kerugian."
    edited = dataclasses.replace(
        source,
        ayat=tuple(dataclasses.replace(a, translation_2019=new_wording) if a.ayah == 2 else a for a in source.ayat),
    )
    embedder = CountingEmbedder(settings)
    summary = IngestPipeline(settings, store, embedder).run(edited)
    of_103_2 = {c.id for c in IngestPipeline(settings, store, embedder).chunk(edited.ayat) if c.ayah == 2}
    assert (summary.embedded, summary.translated) == (0, len(of_103_2))
    assert embedder.texts == [new_wording]  # once, and no chunk
    after = translation_vectors(store)
    assert {i for i in after if after[i] != before[i]} == of_103_2
    expected = embedder.encode_documents([new_wording])[0]
    for point_id in of_103_2:
        assert after[point_id] == pytest.approx(list(expected / np.linalg.norm(expected)), abs=1e-5)


def test_changing_bm25_settings_rewrites_sparse_vectors_without_embedding(settings, store):
    from services.sparse import Bm25Settings, SparseEncoder

    source = make_source("test.one")
    first = IngestPipeline(settings, store, Embedder(settings)).run(source)
    retuned = IngestPipeline(settings, store, Embedder(settings), SparseEncoder(Bm25Settings(neighbour_weight=0.5)))
    summary = retuned.run(source)
    assert (summary.embedded, summary.resparsed, summary.rebuilt) == (0, first.chunks, False)


def test_another_sparse_layout_rewrites_sparse_vectors_without_embedding(settings, store):
    source = make_source("test.one", surahs=[112, 113])
    first = IngestPipeline(settings, store, Embedder(settings)).run(source)
    split = settings.model_copy(update={"sparse_layout": "split-fields"})
    summary = IngestPipeline(split, store, Embedder(split)).run(source)
    assert (summary.embedded, summary.resparsed, summary.rebuilt) == (0, first.chunks, False)
    again = IngestPipeline(split, store, Embedder(split)).run(source)
    assert (again.embedded, again.resparsed) == (0, 0)


def test_removing_an_ayah_deletes_its_points(pipeline, store):
    source = make_source("test.one")
    pipeline.run(source)
    summary = pipeline.run(make_source("test.one", drop={(114, 6)}))
    assert summary.deleted == 1 and summary.embedded == 0
    assert store.count("tafsir", PointFilter(surahs=[114])) == 5
    assert store.count("tafsir", PointFilter(ayat=[(114, 6)])) == 0


def test_editions_are_independent(pipeline, store):
    pipeline.run(make_source("test.one"))
    pipeline.run(make_source("test.two", surahs=[1]))
    shrunk = pipeline.run(make_source("test.two", surahs=[1], drop={(1, 7)}))
    assert shrunk.deleted == 1
    assert store.editions("tafsir") == {"test.one": len(pipeline.chunk(make_source("test.one").ayat)), "test.two": 6}


def test_a_rebuild_with_another_model_builds_a_new_collection_and_carries_other_editions(settings, store, tmp_path):
    from ingest.builtin import read_builtin as builtin
    from tests.tiny_model import build_tiny_model

    first = IngestPipeline(settings, store, Embedder(settings))
    first.run(make_source("test.one"))
    first.run(make_source("test.two", surahs=[1]))
    old = store.resolve_alias("tafsir")

    other_model = build_tiny_model(tmp_path / "m16", [a.text for a in builtin().ayat[::5]], dim=16)
    new_settings = settings.model_copy(update={"embedding_model": str(other_model)})
    second = IngestPipeline(new_settings, store, Embedder(new_settings))
    summary = second.run(make_source("test.one"), full=True)

    assert summary.rebuilt and summary.dense_size == 16
    assert store.resolve_alias("tafsir") == summary.collection != old
    assert old in summary.dropped and old not in store.list_collections()
    info = store.collection_info("tafsir")
    assert info.spec.dense_size == 16 and info.spec.model == second.embedder.identity
    # The other edition was re-embedded from its stored text, not lost.
    assert summary.carried_over == 7
    ikhlas = store.retrieve("tafsir", PointFilter(editions=["test.two"]), limit=100)
    assert sorted(h.payload["ayah"] for h in ikhlas) == list(range(1, 8))
    original = {a.ayah: a for a in builtin().ayat if a.surah == 1}
    for hit in ikhlas:
        ayah = original[hit.payload["ayah"]]
        assert hit.payload["text"] == ayah.text
        assert (hit.payload["translation_legacy"], hit.payload["translation_2019"]) == (
            ayah.translation,
            ayah.translation_2019,
        )


def test_an_incremental_run_with_another_model_is_refused_naming_both_and_the_rebuild(settings, store, tmp_path):
    from tests.tiny_model import build_tiny_model

    first = IngestPipeline(settings, store, Embedder(settings))
    first.run(make_source("test.one"))
    before = store_snapshot(store)
    # Same vector size, other weights: only the fingerprint tells them apart.
    other_model = build_tiny_model(tmp_path / "other", [a.text for a in read_builtin().ayat[::3]], seed=1)
    new_settings = settings.model_copy(update={"embedding_model": str(other_model)})
    second = IngestPipeline(new_settings, store, Embedder(new_settings))
    assert second.embedder.dimension == first.embedder.dimension
    with pytest.raises(ModelMismatchError) as refused:
        second.run(make_source("test.one"))
    message = str(refused.value)
    assert first.embedder.identity in message and second.embedder.identity in message
    assert "tafsir ingest --rebuild" in message
    assert store_snapshot(store) == before


def test_full_rebuild_keeps_readers_on_a_complete_collection(pipeline, store):
    source = make_source("test.one")
    first = pipeline.run(source)
    seen: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.append(store.count("tafsir"))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        summary = pipeline.run(source, full=True)
    finally:
        stop.set()
        thread.join()
    assert summary.rebuilt and summary.embedded == first.chunks
    assert summary.collection != first.collection
    assert len(seen) > 10 and set(seen) == {first.chunks}


def test_an_interrupted_first_build_is_resumed_without_duplicates(settings, store, monkeypatch):
    source = make_source("test.one")
    settings = settings.model_copy(update={"upsert_batch_size": 16})
    pipeline = IngestPipeline(settings, store, Embedder(settings))
    calls = {"n": 0}
    real_upsert = store.upsert

    def failing_upsert(name, points):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the run dies here, as after Ctrl-C
        real_upsert(name, points)

    monkeypatch.setattr(store, "upsert", failing_upsert)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(source)
    monkeypatch.setattr(store, "upsert", real_upsert)
    assert store.resolve_alias("tafsir") is None  # readers never saw the half-built collection

    summary = pipeline.run(source)
    assert summary.resumed and summary.embedded == summary.chunks - 2 * settings.upsert_batch_size
    assert store.count("tafsir") == summary.chunks
    assert len(stored_hashes(store)) == summary.chunks


def store_snapshot(store) -> tuple:
    """Everything a run could change: the collections, the alias, and every point's hashes."""
    return (
        sorted(store.list_collections()),
        store.resolve_alias("tafsir"),
        {h.id: (h.content_hash, h.sparse_hash) for h in store.iter_hashes("tafsir")},
    )


def test_a_dry_run_says_what_the_run_will_do_and_writes_nothing(pipeline, store):
    pipeline.run(make_source("test.one"))
    before = store_snapshot(store)
    changed = make_source(
        "test.one", edit={(103, 2): "Sesungguhnya manusia itu benar-benar dalam kerugian besar."}, drop={(114, 6)}
    )
    plan = pipeline.plan(changed, dry_run=True).summary
    assert store_snapshot(store) == before
    assert plan.dry_run and (plan.embedded, plan.deleted) == (1, 1)
    # 103:1 and 103:3 change context; 114:5 loses its neighbour 114:6.
    assert plan.resparsed == 3

    done = pipeline.run(changed)
    assert not done.dry_run
    counted = ("chunks", "embedded", "resparsed", "unchanged", "deleted", "collection", "rebuilt")
    assert {k: getattr(plan, k) for k in counted} == {k: getattr(done, k) for k in counted}


def test_a_dry_run_of_a_model_change_names_a_new_build_but_creates_nothing(settings, store, tmp_path):
    from tests.tiny_model import build_tiny_model

    IngestPipeline(settings, store, Embedder(settings)).run(make_source("test.one"))
    IngestPipeline(settings, store, Embedder(settings)).run(make_source("test.two", surahs=[1]))
    before = store_snapshot(store)
    other_model = build_tiny_model(tmp_path / "m16", [a.text for a in read_builtin().ayat[::5]], dim=16)
    new_settings = settings.model_copy(update={"embedding_model": str(other_model)})
    plan = IngestPipeline(new_settings, store, Embedder(new_settings)).plan(
        make_source("test.one"), full=True, dry_run=True
    )
    assert store_snapshot(store) == before
    summary = plan.summary
    assert summary.rebuilt and summary.collection not in before[0] and summary.dense_size == 16
    assert summary.embedded == summary.chunks and summary.carried_over == 7  # test.two comes along


def test_a_run_keeps_a_copy_of_its_edition_in_the_store(pipeline):
    source = make_source("test.kept", surahs=[112, 113])
    pipeline.run(source)
    assert pipeline.archive.load("test.kept").ayat == source.ayat


# --- upgrading a collection built before dense_hash and the 2019 wording -------------------------------------


class CountingEmbedder(Embedder):
    """The real embedder, keeping the document texts it embeds."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.texts: list[str] = []

    @property
    def embedded(self) -> int:
        return len(self.texts)

    def chunks_embedded(self, source: Source) -> int:
        """The texts embedded that are not one of ``source``'s translations (embedded for the dense_tr vector)."""
        translations = {translation_text(a) for a in source.ayat}
        return sum(1 for text in self.texts if text not in translations)

    def encode_documents(self, texts, batch_size=32):
        self.texts += texts
        return super().encode_documents(texts, batch_size)


def old_corpus(source: Source) -> Source:
    """The built-in corpus as the previous release read it: no 2019 wording, no transliteration."""
    ayat = tuple(dataclasses.replace(a, translation_2019=None, transliteration=None) for a in source.ayat)
    return dataclasses.replace(source, ayat=ayat)


OLD_INGESTED_AT = "2025-01-01T00:00:00+00:00"
# What the previous release copied from each chunk into its payload.
OLD_CHUNK_FIELDS = ("text", "edition", "surah", "ayah", "chunk", "chunks", "char_start", "char_end", "tokens")


def store_as_the_previous_release(pipeline: IngestPipeline, source: Source) -> int:
    """Write ``source`` behind the alias exactly as the previous release did (commit 2359cba, ``_upsert``):
    ``translation`` holds the older wording, no ``dense_hash``, ``content_hash`` over text + translation +
    Arabic + collection fingerprint, the sparse vectors of the layout before the 2019 wording, and a collection
    with the chunk vector alone (no dense_tr)."""
    from unittest import mock

    from ingest.chunking import content_hash
    from ingest.pipeline import ayah_texts, ayat_index, collection_spec, plan_target
    from services.quran import surah as surah_info
    from services.sparse import Bm25Settings, SparseEncoder
    from services.store.base import PointToStore

    store, alias = pipeline.store, pipeline.settings.collection
    spec = collection_spec(pipeline.embedder, pipeline.params)
    with mock.patch("services.store.base.DENSE_VECTORS", (DENSE,)):
        target = plan_target(store, alias, spec, full=False)
    chunks = pipeline.chunk(source.ayat)
    index = ayat_index(source.ayat)
    old_sparse = SparseEncoder(Bm25Settings.named("older-wording"))
    vectors = Embedder(pipeline.settings).encode_documents([c.text for c in chunks])
    points = []
    for chunk, vector in zip(chunks, vectors, strict=True):
        ayah, info = index[chunk.surah, chunk.ayah], surah_info(chunk.surah)
        payload = {
            **{field: getattr(chunk, field) for field in OLD_CHUNK_FIELDS},
            "surah_name": info.name,
            "surah_name_ar": info.name_ar,
            "translation": ayah.translation,
            "arabic": ayah.arabic,
            "content_hash": content_hash(chunk.text, ayah.translation or "", ayah.arabic or "", spec.fingerprint),
            "sparse_hash": content_hash("bm25-v2: the previous release's BM25 settings"),
            "model": spec.model,
            "ingested_at": OLD_INGESTED_AT,
        }
        sparse = old_sparse.vectors(ayah_texts(ayah, chunk.text))
        points.append(PointToStore(chunk.id, vector.tolist(), sparse, payload))
    store.upsert(target.name, points)
    store.swap_alias(alias, target.name)
    return len(points)


def test_upgrading_rewrites_payload_and_sparse_vectors_and_embeds_the_translations_alone(settings, store):
    from retriever.search import SearchEngine, SearchOptions
    from services.store.base import Mode

    source = make_source("id.jalalayn", surahs=range(93, 115))
    stored = store_as_the_previous_release(IngestPipeline(settings, store, Embedder(settings)), old_corpus(source))
    engine = SearchEngine(settings, store=store, embedder=Embedder(settings))
    only_in_2019 = ("tetaplah bekerja keras", (94, 7))  # 94:7's 2019 wording; the older one and the tafsir differ
    before = engine.search(only_in_2019[0], SearchOptions(k=1, mode=Mode.SPARSE))
    assert (before[0].surah, before[0].ayah) != only_in_2019[1]

    embedder = CountingEmbedder(settings)
    summary = IngestPipeline(settings, store, embedder).run(source)

    assert (summary.chunks, summary.embedded, summary.resparsed, summary.deleted) == (stored, 0, stored, 0)
    # No chunk is embedded again; each ayah's translation is, once, for the vector the collection gained.
    assert embedder.chunks_embedded(source) == 0 and not summary.rebuilt
    assert summary.translated == stored and len(source.ayat) <= embedder.embedded <= stored
    hits = store.retrieve("tafsir", PointFilter(), limit=10_000)
    assert len(hits) == stored
    for hit in hits:
        payload = hit.payload
        assert payload["translation_2019"] and payload["translation"] == payload["translation_2019"]
        assert payload["translation_legacy"] and payload["dense_hash"] and payload["dense_tr_hash"]
        assert payload["ingested_at"] == OLD_INGESTED_AT  # the dense vector was kept, not written again
    vectors = translation_vectors(store)
    assert len(vectors) == stored and all(vectors.values())
    after = engine.search(only_in_2019[0], SearchOptions(k=1, mode=Mode.SPARSE))
    assert (after[0].surah, after[0].ayah) == only_in_2019[1]
    assert after[0].translation.startswith("Maka apabila engkau telah selesai (dari sesuatu urusan), tetaplah bekerja")

    again = IngestPipeline(settings, store, embedder).run(source)
    assert (again.embedded, again.resparsed, again.unchanged) == (0, 0, stored)


def test_upgrading_embeds_exactly_the_chunks_whose_text_changed(settings, store):
    source = make_source("id.jalalayn", surahs=range(100, 115))
    stored = store_as_the_previous_release(IngestPipeline(settings, store, Embedder(settings)), old_corpus(source))
    edited = make_source("id.jalalayn", surahs=range(100, 115), edit={(103, 2): "Manusia benar-benar merugi."})
    embedder = CountingEmbedder(settings)
    summary = IngestPipeline(settings, store, embedder).run(edited)
    assert (summary.embedded, summary.resparsed) == (1, stored - 1)
    assert embedder.chunks_embedded(edited) == 1


def test_a_rebuild_carries_an_edition_stored_by_the_previous_release_over_with_its_translation(
    settings, store, tmp_path
):
    from tests.tiny_model import build_tiny_model

    old = old_corpus(make_source("test.two", surahs=[1]))
    store_as_the_previous_release(IngestPipeline(settings, store, Embedder(settings)), old)
    other_model = build_tiny_model(tmp_path / "m16", [a.text for a in BUILTIN.ayat[::5]], dim=16)
    new_settings = settings.model_copy(update={"embedding_model": str(other_model)})
    summary = IngestPipeline(new_settings, store, Embedder(new_settings)).run(
        make_source("test.one", surahs=[112]), full=True
    )
    assert summary.rebuilt and summary.carried_over == 7
    carried = {h.payload["ayah"]: h.payload for h in store.retrieve("tafsir", PointFilter(editions=["test.two"]))}
    for ayah in old.ayat:
        payload = carried[ayah.ayah]
        assert payload["translation_legacy"] == payload["translation"] == ayah.translation
        assert payload["translation_2019"] is None and payload["dense_hash"]
