"""The one search core behind the LangChain retriever, ``tafsir search``/``tafsir eval`` and the HTTP API.

Query → (dense embedding, BM25 query vector) → Qdrant (dense, sparse, or hybrid prefetch + RRF) →
passages with citations, optionally followed by their neighbouring ayat as context.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.embedding import Embedder, ModelMismatchError, settings_for_collection
from services.models import Fusion
from services.quran import SURAH_COUNT, citation, shown_translation
from services.quran import surah as surah_info
from services.settings import Settings
from services.sparse import Bm25Settings, SparseEncoder
from services.store.base import (
    SPARSE,
    SPARSE_CONTEXT,
    SPARSE_TRANSLATION,
    Mode,
    PointFilter,
    SearchRequest,
    StoreError,
    VectorStore,
    recorded_model,
)


class TafsirFilter(BaseModel):
    """Which passages a query may return: surah(s), an ayah range, edition(s). All given conditions hold."""

    model_config = ConfigDict(extra="forbid")

    surah: int | list[int] | None = Field(None, description="A surah number 1-114, or several.")
    ayah_from: int | None = Field(None, ge=1, description="Lowest ayah number (inclusive).")
    ayah_to: int | None = Field(None, ge=1, description="Highest ayah number (inclusive).")
    edition: str | list[str] | None = Field(None, description="An edition id such as id.jalalayn, or several.")

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
            surahs=as_list(self.surah), ayah_min=self.ayah_from, ayah_max=self.ayah_to, editions=as_list(self.edition)
        )


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
    payload: dict[str, Any] = field(default_factory=dict, repr=False)

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
        self.sparse = sparse or SparseEncoder(Bm25Settings.named(settings.sparse_layout))
        self._lock = threading.Lock()
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
        recorded = self._recorded_model()
        return settings_for_collection(self.settings, recorded[1] if recorded else None)

    def check_model(self) -> None:
        """Refuse to query a collection with vectors of another model (or other weights of the same one)."""
        recorded = self._recorded_model()
        if recorded is None or recorded[0] in self._verified:
            return
        collection, model = recorded
        if model != self.embedder.identity:
            raise ModelMismatchError(collection, self.settings.collection, model, self.embedder)
        self._verified.add(collection)

    @property
    def fusion(self) -> Fusion:
        """The model's measured fusion (services/models.py) with the settings that override it."""
        return self.embedder.profile.fusion.overridden(self.settings.fusion_overrides())

    def request(self, query: str, options: SearchOptions) -> SearchRequest:
        mode = Mode(options.mode)
        fusion = self.fusion
        return SearchRequest(
            mode=mode,
            limit=options.k,
            dense=self.embedder.encode_query(query) if mode in (Mode.DENSE, Mode.HYBRID) else None,
            sparse=self.sparse.query(query) if mode in (Mode.SPARSE, Mode.HYBRID) else None,
            filter=options.filter,
            prefetch_limit=max(fusion.prefetch_limit, options.k),
            rrf_k=fusion.rrf_k,
            dense_weight=fusion.dense,
            sparse_weights={
                SPARSE: fusion.bm25,
                SPARSE_CONTEXT: fusion.bm25_ctx,
                SPARSE_TRANSLATION: fusion.bm25_tr,
            },
            score_threshold=options.score_threshold,
        )

    def search(self, query: str, options: SearchOptions | None = None) -> list[Passage]:
        options = options or SearchOptions()
        if not query.strip():
            raise ValueError("the query is empty")
        if Mode(options.mode) is not Mode.SPARSE:
            self.check_model()
        hits = self.store.search(self.settings.collection, self.request(query, options))
        wording = self.settings.translation
        passages = [Passage.from_payload(h.id, h.payload, h.score, translation=wording) for h in hits]
        if options.neighbors > 0 and passages:
            passages = self._with_neighbors(passages, options.neighbors)
        return passages

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
