"""The one search core behind the LangChain retriever, ``tafsir search``/``tafsir eval`` and the HTTP API.

Query → (dense embedding, BM25 query vector) → Qdrant (dense, sparse, or hybrid prefetch + RRF) →
passages with citations, optionally followed by their neighbouring ayat as context.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.collection_model import model_settings
from services.embedding import Embedder, ModelMismatchError
from services.language import detect_language
from services.models import Fusion
from services.quran import SURAH_COUNT, citation, shown_translation
from services.quran import surah as surah_info
from services.settings import Settings
from services.sparse import Bm25Settings, SparseEncoder
from services.store.base import (
    SPARSE,
    SPARSE_ARABIC,
    SPARSE_CONTEXT,
    SPARSE_TRANSLATION,
    Mode,
    PointFilter,
    SearchRequest,
    StoreError,
    VectorStore,
    languages_filter,
    recorded_model,
)


class TafsirFilter(BaseModel):
    """Which passages a query may return: surah(s), an ayah range, edition(s), language(s). All given conditions
    hold. The filter argument of the read path's Python callers (``TafsirRetriever``), checked against the Quran;
    the bodies' filter (``interfaces/requests.py``) adds the bounds a client sees in the schema."""

    model_config = ConfigDict(extra="forbid")

    surah: int | list[int] | None = Field(None, description="A surah number 1-114, or several.")
    ayah_from: int | None = Field(None, ge=1, description="Lowest ayah number (inclusive).")
    ayah_to: int | None = Field(None, ge=1, description="Highest ayah number (inclusive).")
    edition: str | list[str] | None = Field(None, description="An edition id such as id.jalalayn, or several.")
    language: str | list[str] | None = Field(
        None, description="The language of the editions: the edition id before its first dot (id, en, ar), or several."
    )

    @field_validator("surah")
    @classmethod
    def _surah_exists(cls, value: int | list[int] | None) -> int | list[int] | None:
        for number in [value] if isinstance(value, int) else value or []:
            if not 1 <= number <= SURAH_COUNT:
                raise ValueError(f"surah {number} does not exist: surahs are numbered 1-{SURAH_COUNT}")
        return value

    @model_validator(mode="after")
    def _range_is_ordered(self) -> TafsirFilter:
        if self.ayah_from is not None and self.ayah_to is not None and self.ayah_from > self.ayah_to:
            raise ValueError(f"ayah_from {self.ayah_from} is above ayah_to {self.ayah_to}")
        return self

    def to_point_filter(self) -> PointFilter:
        def as_list(value):
            return None if value is None else [value] if isinstance(value, int | str) else list(value)

        return PointFilter(
            surahs=as_list(self.surah),
            ayah_min=self.ayah_from,
            ayah_max=self.ayah_to,
            editions=as_list(self.edition),
            languages=as_list(self.language),
        )


# How much one search may ask for, whatever the face (HTTP, CLI, MCP, TafsirRetriever): the bodies'
# bounds in interfaces/requests.py are these.
MAX_K = 50
MAX_NEIGHBORS = 10
MAX_QUERY_CHARS = 2_000


@dataclass(frozen=True)
class SearchOptions:
    k: int = 5
    mode: Mode = Mode.HYBRID
    filter: PointFilter | None = None
    score_threshold: float | None = None
    neighbors: int = 0  # add up to n adjacent ayat of the same surah (and edition) around each hit


@dataclass(frozen=True)
class Passage:
    id: str
    text: str
    score: float
    citation: str
    surah: int
    surah_name: str
    ayah: int
    chunk: int
    chunks: int
    edition: str
    translation: str | None  # in the wording TAFSIR_TRANSLATION chooses
    arabic: str | None
    context_for: str | None = None  # for a neighbour: the citation of the hit it surrounds
    also_in: tuple[str, ...] = ()  # other editions holding the same text for this ayah, merged into this passage
    payload: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def editions(self) -> tuple[str, ...]:
        """Its edition, then the others holding the same text."""
        return (self.edition, *self.also_in)

    @property
    def is_context(self) -> bool:
        return self.context_for is not None

    @classmethod
    def from_payload(
        cls,
        point_id: str,
        payload: dict[str, Any],
        score: float,
        context_for: str | None = None,
        *,
        translation: str = "2019",
    ) -> Passage:
        """The passage a point holds; ``translation`` is the wording shown (TAFSIR_TRANSLATION)."""
        return cls(
            id=point_id,
            text=payload["text"],
            score=score,
            citation=citation(payload["surah"], payload["ayah"]),
            surah=payload["surah"],
            surah_name=payload.get("surah_name", ""),
            ayah=payload["ayah"],
            chunk=payload.get("chunk", 0),
            chunks=payload.get("chunks", 1),
            edition=payload["edition"],
            translation=shown_translation(payload, translation),
            arabic=payload.get("arabic"),
            context_for=context_for,
            payload=payload,
        )


@dataclass(frozen=True)
class Probe:
    """A search's passages, how near the passage nearest the query by the dense vector alone lies, and the query's
    embedding: what the answering core decides "not found" on (retriever/not_found.py)."""

    passages: list[Passage]
    similarity: float  # cosine of the nearest passage by the dense vector (-1 when nothing matches the filter)
    vector: list[float]  # the query's embedding


class SearchEngine:
    """Holds the store, the model and the BM25 encoder; everything heavy is created on first use."""

    def __init__(
        self,
        settings: Settings,
        store: VectorStore | None = None,
        embedder: Embedder | None = None,
        sparse: SparseEncoder | None = None,
    ) -> None:
        self.settings = settings
        self._store = store
        self._embedder = embedder
        self.sparse = sparse or SparseEncoder(Bm25Settings.named(settings.sparse_layout, settings.sparse_stemmer))
        # Re-entrant: the first use of the embedder reads the store (which model the collection records).
        self._lock = threading.RLock()
        self._verified: set[str] = set()  # collections whose recorded model is this engine's

    @property
    def store(self) -> VectorStore:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    from services.store import open_store

                    self._store = open_store(self.settings)
        return self._store

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            with self._lock:
                if self._embedder is None:
                    self._embedder = Embedder(self._model_settings())
        return self._embedder

    def _recorded_model(self) -> tuple[str, str] | None:
        try:
            return recorded_model(self.store, self.settings.collection)
        except StoreError:
            return None  # the search itself reports the damage, naming the file and the repair

    def _model_settings(self) -> Settings:
        """A collection built by an earlier default (all-MiniLM-L6-v2) keeps answering until rebuilt."""
        try:
            return model_settings(self.settings, self.store)
        except StoreError:
            return self.settings  # the search itself reports the damage, naming the file and the repair

    def check_model(self) -> None:
        """Refuse to query a collection with vectors of another model (or other weights of the same one).

        Once per physical collection: a query resolves the alias only, and reads the collection's record (an exact
        count on the embedded store) when the alias points somewhere new."""
        try:
            if self.store.resolve_alias(self.settings.collection) in self._verified:
                return
        except StoreError:
            return  # the search itself reports the damage, naming the file and the repair
        recorded = self._recorded_model()
        if recorded is None:
            return
        collection, model = recorded
        if model != self.embedder.identity:
            raise ModelMismatchError(collection, self.settings.collection, model, self.embedder)
        self._verified.add(collection)

    @property
    def fusion(self) -> Fusion:
        """The model's measured fusion (services/models.py) with the settings that override it."""
        return self.embedder.profile.fusion.overridden(self.settings.fusion_overrides())

    def fusion_for(self, query: str) -> Fusion:
        """The fusion measured for the query's language (services/models.py, ``language_fusions``: English
        questions lean on the lists that read English) with the settings that override it."""
        language = detect_language(query)
        return self.embedder.profile.fusion_for(language).overridden(self.settings.fusion_overrides())

    def request(self, query: str, options: SearchOptions, dense: list[float] | None = None) -> SearchRequest:
        """The store query for ``query``; ``dense`` is its embedding when the caller has it already."""
        mode = Mode(options.mode)
        fusion = self.fusion_for(query)
        if dense is None and mode in (Mode.DENSE, Mode.HYBRID):
            dense = self.embedder.encode_query(query)
        return SearchRequest(
            mode=mode,
            limit=options.k,
            dense=dense if mode in (Mode.DENSE, Mode.HYBRID) else None,
            sparse=self.sparse.query(query) if mode in (Mode.SPARSE, Mode.HYBRID) else None,
            filter=options.filter,
            prefetch_limit=max(fusion.prefetch_limit, options.k),
            rrf_k=fusion.rrf_k,
            dense_weight=fusion.dense,
            dense_tr_weight=fusion.dense_tr,
            sparse_weights={
                SPARSE: fusion.bm25,
                SPARSE_CONTEXT: fusion.bm25_ctx,
                SPARSE_TRANSLATION: fusion.bm25_tr,
                SPARSE_ARABIC: fusion.bm25_ar,
            },
            score_threshold=options.score_threshold,
        )

    def search(self, query: str, options: SearchOptions | None = None) -> list[Passage]:
        """The ``k`` best passages, each ayah's same text shown once whatever the editions holding it."""
        options = options or SearchOptions()
        if not query.strip():
            raise ValueError("the query is empty")
        options = self._by_edition(options)
        if Mode(options.mode) is not Mode.SPARSE:
            self.check_model()
        return self._search(self.request(query, options), options)

    def search_with_similarity(self, query: str, options: SearchOptions | None = None) -> tuple[list[Passage], float]:
        """``search``, and the cosine between the query and the passage closest to it by the dense vector alone
        (within the filter; -1 when nothing matches the filter), whatever the mode."""
        probe = self.search_probed(query, options)
        return probe.passages, probe.similarity

    def search_probed(self, query: str, options: SearchOptions | None = None) -> Probe:
        """``search``, and the cosine between the query and the passage closest to it by the dense vector alone
        (within the filter), whatever the mode.

        A hybrid score is an RRF score: it says how a passage ranks, not how near it is, so whether the tafsir
        answers a question at all is judged on the cosine and the query's embedding (retriever/not_found.py). The
        query is embedded once."""
        options = options or SearchOptions()
        if not query.strip():
            raise ValueError("the query is empty")
        options = self._by_edition(options)
        self.check_model()
        dense = self.embedder.encode_query(query)
        # One nearest passage: each hit's payload is read back, so more would cost a millisecond or more.
        nearest = SearchRequest(mode=Mode.DENSE, limit=1, dense=dense, filter=options.filter)
        hits = self.store.search(self.settings.collection, nearest)
        return Probe(
            passages=self._search(self.request(query, options, dense=dense), options),
            similarity=hits[0].score if hits else -1.0,
            vector=dense,
        )

    def editions(self) -> dict[str, int]:
        """The editions behind the alias and their numbers of chunks (a facet over the payload index)."""
        return self.store.editions(self.settings.collection)

    def _by_edition(self, options: SearchOptions) -> SearchOptions:
        """``options`` with a filter by language turned into one by the editions in that language."""
        if options.filter is None or options.filter.languages is None:
            return options
        # Editions are few (a facet over the payload index); a language is a prefix of their ids.
        editions = self.store.editions(self.settings.collection)
        return dataclasses.replace(options, filter=languages_filter(options.filter, editions))

    def _search(self, request: SearchRequest, options: SearchOptions) -> list[Passage]:
        wording = self.settings.translation
        limit = 2 * options.k  # room for twins from other editions, merged below
        while True:
            hits = self.store.search(self.settings.collection, dataclasses.replace(request, limit=limit))
            passages = merge_editions(Passage.from_payload(h.id, h.payload, h.score, translation=wording) for h in hits)
            # Merged duplicates leave fewer than k: ask for more, unless the store has given all it has.
            if len(passages) >= options.k or len(hits) < limit or limit >= options.k * _MAX_EDITIONS_MERGED:
                break
            limit *= 2
        passages = passages[: options.k]
        if len({h.payload["edition"] for h in hits}) > 1:
            # A twin can rank just below the hits fetched (Qdrant orders equal scores inside a prefetch list its
            # own way): look the kept passages' ayat up in every edition, so also_in is whole.
            passages = self._with_every_twin(passages, options.filter)
        if options.neighbors > 0 and passages:
            passages = self._with_neighbors(passages, options.neighbors)
        return passages

    def _with_every_twin(self, passages: list[Passage], only: PointFilter | None) -> list[Passage]:
        """``passages`` with ``also_in`` naming every other edition (within ``only``'s) that holds the same text."""
        ayat = sorted({(p.surah, p.ayah) for p in passages})
        editions = only.editions if only is not None else None
        found = self.store.retrieve(self.settings.collection, PointFilter(editions=editions, ayat=ayat), limit=10_000)
        holders: dict[tuple[int, int, str], set[str]] = defaultdict(set)
        for hit in found:
            payload = hit.payload
            holders[payload["surah"], payload["ayah"], str(payload["text"]).strip()].add(payload["edition"])
        completed = []
        for p in passages:
            others = holders[p.surah, p.ayah, p.text.strip()] - {p.edition, *p.also_in}
            completed.append(dataclasses.replace(p, also_in=(*p.also_in, *sorted(others))) if others else p)
        return completed

    def _with_neighbors(self, hits: list[Passage], n: int) -> list[Passage]:
        """Each hit followed by up to ``n`` ayat before and after it in its surah, each fetched once."""
        wanted: dict[tuple[str, int, int], str] = {}
        present = {(p.edition, p.surah, p.ayah) for p in hits}
        for p in hits:
            last = surah_info(p.surah).ayat
            for ayah in range(max(1, p.ayah - n), min(last, p.ayah + n) + 1):
                key = (p.edition, p.surah, ayah)
                if key not in present and key not in wanted:
                    wanted[key] = p.citation
        if not wanted:
            return hits
        editions = sorted({e for e, _, _ in wanted})
        found = self.store.retrieve(
            self.settings.collection,
            PointFilter(editions=editions, ayat=sorted({(s, a) for _, s, a in wanted})),
            limit=len(wanted) * 8,
        )
        by_hit: dict[str, list[Passage]] = {}
        for h in found:
            key = (h.payload["edition"], h.payload["surah"], h.payload["ayah"])
            if key in wanted:
                passage = Passage.from_payload(h.id, h.payload, 0.0, wanted[key], translation=self.settings.translation)
                by_hit.setdefault(wanted[key], []).append(passage)
        result = []
        for p in hits:
            result.append(p)
            result.extend(by_hit.pop(p.citation, []))
        return result


# How far a search looks past k for passages that merged duplicates leave out: k x 8 results at most.
_MAX_EDITIONS_MERGED = 8


def merge_editions(ranked: Iterable[Passage]) -> list[Passage]:
    """Passages that cite the same ayah with the same text, from several editions, as one: the best-ranked
    is kept and names the other editions in ``also_in`` (a user edition that copies the built-in tafsir, say).
    Texts are compared without surrounding whitespace."""
    kept: list[Passage] = []
    index: dict[tuple[int, int, str], int] = {}
    for passage in ranked:
        key = (passage.surah, passage.ayah, passage.text.strip())
        at = index.get(key)
        if at is None:
            index[key] = len(kept)
            kept.append(passage)
            continue
        first = kept[at]
        if passage.edition != first.edition and passage.edition not in first.also_in:
            kept[at] = dataclasses.replace(first, also_in=(*first.also_in, passage.edition))
    return kept


_SHARED: dict[str, SearchEngine] = {}
_SHARED_LOCK = threading.Lock()


def shared_engine(settings: Settings) -> SearchEngine:
    """One engine per configuration in a process: the embedded store admits one opener, and the model
    is loaded once however many retrievers a program constructs."""
    key = settings.model_dump_json()
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = SearchEngine(settings)
        return _SHARED[key]
