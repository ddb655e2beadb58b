"""The ingest pipeline on a real embedded Qdrant (Edge) store with a tiny real model."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from ingest.pipeline import IngestPipeline
from ingest.sources import Source, read_builtin
from services.embedding import Embedder, ModelMismatchError
from services.settings import Settings
from services.store import open_store
from services.store.base import PointFilter


def make_source(edition: str, surahs=range(97, 115), edit=None, drop=()) -> Source:
    """Built-in ayat of some short surahs, as a user edition; ``edit`` maps (surah, ayah) -> new text."""
    ayat = []
    for a in read_builtin().ayat:
        if a.surah in surahs and (a.surah, a.ayah) not in drop:
            text = (edit or {}).get((a.surah, a.ayah), a.text)
            ayat.append(dataclasses.replace(a, edition=edition, text=text))
    return Source(edition, "test", tuple(ayat))


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
    for key in ("content_hash", "model", "ingested_at"):
        assert payload[key]


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


def test_changing_bm25_settings_rewrites_sparse_vectors_without_embedding(settings, store):
    from services.sparse import Bm25Settings, SparseEncoder

    source = make_source("test.one")
    first = IngestPipeline(settings, store, Embedder(settings)).run(source)
    retuned = IngestPipeline(settings, store, Embedder(settings), SparseEncoder(Bm25Settings(k=1.5)))
    summary = retuned.run(source)
    assert (summary.embedded, summary.resparsed, summary.rebuilt) == (0, first.chunks, False)


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
    from ingest.sources import read_builtin as builtin
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
    original = {a.ayah: a.text for a in builtin().ayat if a.surah == 1}
    assert all(h.payload["text"] == original[h.payload["ayah"]] for h in ikhlas)


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
