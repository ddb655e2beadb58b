"""TafsirRetriever and the RAG chain over a real store (Edge, and qdrant-client local mode) with a tiny model."""

from __future__ import annotations

import asyncio
import dataclasses
import threading

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_tests.integration_tests import RetrieversIntegrationTests

from ingest.builtin import read_builtin
from ingest.pipeline import IngestPipeline
from ingest.sources import Source
from retriever import TafsirRetriever
from retriever.chain import build_rag_chain, format_docs
from retriever.search import SearchEngine, TafsirFilter, shared_engine
from services.embedding import Embedder
from services.settings import Settings
from services.store import open_store
from services.store.base import Mode

QUERY = "Allah Yang Maha Esa tempat meminta"


def edition_source(edition: str, surahs) -> Source:
    ayat = tuple(dataclasses.replace(a, edition=edition) for a in read_builtin().ayat if a.surah in surahs)
    return Source(edition, "test", ayat)


SURAHS = [1, *range(90, 115)]


@pytest.fixture(scope="module")
def settings(tmp_path_factory, tiny_model) -> Settings:
    """An embedded store holding surahs 1 and 90-114, ingested once for the whole module."""
    settings = Settings(
        _env_file=None, qdrant_path=tmp_path_factory.mktemp("r") / "qdrant", embedding_model=str(tiny_model)
    )
    store = open_store(settings)
    try:
        IngestPipeline(settings, store, Embedder(settings)).run(edition_source("id.test", SURAHS))
    finally:
        store.close()
    return settings


@pytest.fixture(scope="module")
def server_engine(tiny_model) -> SearchEngine:
    """The same corpus in qdrant-client's local mode (the server adapter's API)."""
    from qdrant_client import QdrantClient

    from services.store.server import ServerStore

    settings = Settings(_env_file=None, embedding_model=str(tiny_model))
    store = ServerStore(QdrantClient(location=":memory:"), ":memory:")
    embedder = Embedder(settings)
    IngestPipeline(settings, store, embedder).run(edition_source("id.test", SURAHS))
    return SearchEngine(settings, store=store, embedder=embedder)


class TestTafsirRetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _settings(self, settings):
        self._store_settings = settings

    @property
    def retriever_constructor(self) -> type[TafsirRetriever]:
        return TafsirRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"settings": self._store_settings, "k": 2}

    @property
    def retriever_query_example(self) -> str:
        return QUERY


def test_documents_carry_citation_metadata_and_point_id(settings):
    docs = TafsirRetriever(settings=settings, k=4).invoke(QUERY)
    assert len(docs) == 4
    for doc in docs:
        meta = doc.metadata
        assert meta["citation"] == f"QS {meta['surah_name']} [{meta['surah']}]: {meta['ayah']}"
        assert meta["edition"] == "id.test" and meta["translation"] and meta["arabic"]
        assert isinstance(meta["score"], float) and doc.id and doc.page_content
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)


def test_constructible_without_arguments_from_the_environment(settings, monkeypatch):
    monkeypatch.setenv("TAFSIR_QDRANT_PATH", str(settings.qdrant_path))
    monkeypatch.setenv("TAFSIR_EMBEDDING_MODEL", settings.embedding_model)
    retriever = TafsirRetriever()
    assert (retriever.k, retriever.mode, retriever.neighbors) == (5, Mode.HYBRID, 0)
    assert len(retriever.invoke(QUERY)) == 5


def test_invoke_keywords_override_the_fields_for_one_call(settings):
    retriever = TafsirRetriever(settings=settings, k=5)
    assert len(retriever.invoke(QUERY, k=2)) == 2
    sparse = retriever.invoke(QUERY, mode="sparse", k=3)
    assert [d.id for d in sparse] == [
        d.id for d in TafsirRetriever(settings=settings, mode=Mode.SPARSE, k=3).invoke(QUERY)
    ]
    assert len(retriever.invoke(QUERY)) == 5  # the override did not stick
    with pytest.raises(TypeError, match="unknown retriever option"):
        retriever.invoke(QUERY, limit=3)


@pytest.mark.parametrize("mode", list(Mode))
def test_filter_restricts_surah_and_ayah_range(settings, mode):
    only = TafsirFilter(surah=[112, 113], ayah_from=2, ayah_to=3)
    docs = TafsirRetriever(settings=settings, k=10, mode=mode, filter=only).invoke(QUERY)
    assert docs and {(d.metadata["surah"], d.metadata["ayah"]) for d in docs} <= {
        (112, 2),
        (112, 3),
        (113, 2),
        (113, 3),
    }


def test_a_filter_on_another_edition_returns_nothing(settings):
    assert TafsirRetriever(settings=settings, filter=TafsirFilter(edition="id.other")).invoke(QUERY) == []


def test_a_filter_names_a_surah_that_does_not_exist():
    with pytest.raises(ValueError, match="surahs are numbered 1-114"):
        TafsirFilter(surah=115)


def test_neighbors_add_adjacent_ayat_marked_as_context(settings):
    only = TafsirFilter(surah=112, ayah_from=2, ayah_to=2)
    docs = TafsirRetriever(settings=settings, k=1, filter=only, neighbors=1).invoke(QUERY)
    assert [(d.metadata["ayah"], d.metadata.get("context_for")) for d in docs] == [
        (2, None),
        (1, "QS Al-Ikhlas [112]: 2"),
        (3, "QS Al-Ikhlas [112]: 2"),
    ]


def test_sync_and_async_return_the_same_documents(settings):
    retriever = TafsirRetriever(settings=settings, k=5)
    assert [d.id for d in asyncio.run(retriever.ainvoke(QUERY))] == [d.id for d in retriever.invoke(QUERY)]


@pytest.mark.parametrize("backend", ["edge", "server"])
def test_the_same_query_returns_the_same_order_every_time(settings, server_engine, backend):
    retriever = (
        TafsirRetriever(settings=settings, k=10) if backend == "edge" else TafsirRetriever(engine=server_engine, k=10)
    )
    # A short query matches many chunks with tied BM25 scores: the order must still be stable.
    for query in (QUERY, "Allah", "surga"):
        first = [d.id for d in retriever.invoke(query)]
        assert len(first) == 10
        for _ in range(10):
            assert [d.id for d in retriever.invoke(query)] == first


def test_both_backends_agree_on_sparse_results(settings, server_engine):
    # One BM25 list: the same scores on both backends, so the same order (ties broken by id).
    one_list = {"weight_bm25_ctx": 0.0, "weight_bm25_tr": 0.0}
    shared = shared_engine(settings)  # the process's one opener of this embedded store
    edge_one = SearchEngine(settings.model_copy(update=one_list), store=shared.store, embedder=shared.embedder)
    server_one = SearchEngine(
        server_engine.settings.model_copy(update=one_list), store=server_engine.store, embedder=server_engine.embedder
    )
    edge = [d.id for d in TafsirRetriever(engine=edge_one, k=10, mode="sparse").invoke(QUERY)]
    server = [d.id for d in TafsirRetriever(engine=server_one, k=10, mode="sparse").invoke(QUERY)]
    assert edge == server
    # Fused lists: each backend orders equal scores inside a prefetch list its own way, which can swap
    # neighbours after fusion; the passages found are the same.
    edge_fused = {d.id for d in TafsirRetriever(settings=settings, k=10, mode="sparse").invoke(QUERY)}
    server_fused = {d.id for d in TafsirRetriever(engine=server_engine, k=10, mode="sparse").invoke(QUERY)}
    assert len(edge_fused & server_fused) >= 9


class _PromptRecorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.prompts: list[str] = []

    def on_chat_model_start(self, serialized, messages, **kwargs) -> None:
        self.prompts.extend(m.content for batch in messages for m in batch)


def test_rag_chain_prompt_holds_passages_with_citations_and_output_carries_sources(settings):
    retriever = TafsirRetriever(settings=settings, k=3)
    llm = FakeListChatModel(responses=["Allah Maha Esa [1]."])
    recorder = _PromptRecorder()
    result = build_rag_chain(llm, retriever).invoke(QUERY, config={"callbacks": [recorder]})
    docs = result["documents"]
    prompt = "\n".join(recorder.prompts)
    assert result["answer"] == "Allah Maha Esa [1]."
    assert QUERY in prompt
    for number, doc in enumerate(docs, start=1):
        assert f"[{number}] {doc.metadata['citation']}" in prompt
        assert doc.page_content.strip()[:80] in prompt
    assert [s["citation"] for s in result["sources"]] == [d.metadata["citation"] for d in docs]
    assert [s["id"] for s in result["sources"]] == [d.id for d in docs]


def test_format_docs_numbers_passages_and_marks_context():
    docs = [
        Document("Tafsir satu.", metadata={"citation": "QS Al-Ikhlas [112]: 2"}),
        Document("Tafsir dua.", metadata={"citation": "QS Al-Ikhlas [112]: 3", "context_for": "QS Al-Ikhlas [112]: 2"}),
    ]
    assert format_docs(docs) == (
        "[1] QS Al-Ikhlas [112]: 2\nTafsir satu.\n\n"
        "[2] QS Al-Ikhlas [112]: 3 (konteks untuk QS Al-Ikhlas [112]: 2)\nTafsir dua."
    )


def test_an_engine_asked_for_its_model_before_its_store_answers(settings, tmp_path):
    """The first use of the embedder reads which model the collection records, through the store: that must not
    wait on the engine's own lock (it did: a bench script that warmed the model up first hung)."""
    engine = SearchEngine(settings.model_copy(update={"qdrant_path": tmp_path / "qdrant"}))
    done = threading.Event()

    def ask() -> None:
        _ = engine.embedder.identity
        done.set()

    threading.Thread(target=ask, daemon=True).start()
    try:
        assert done.wait(timeout=60)
    finally:
        if done.is_set():
            engine.store.close()
