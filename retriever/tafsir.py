"""``TafsirRetriever``: a LangChain ``BaseRetriever`` over the tafsir collection.

A thin wrapper: the search itself is ``retriever.search.SearchEngine``, shared with the CLI and the
HTTP API; sync and async calls run the same core (async in a worker thread).
"""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, PrivateAttr

from retriever.search import MAX_K, MAX_NEIGHBORS, Passage, SearchEngine, SearchOptions, TafsirFilter, shared_engine
from services.settings import Settings
from services.store.base import Mode

_OPTION_NAMES = ("k", "mode", "filter", "score_threshold", "neighbors")


class TafsirRetriever(BaseRetriever):
    """Retrieve tafsir passages with citations, e.g. ``TafsirRetriever(k=5).invoke("siapa Thalut?")``.

    Each Document: ``page_content`` the chunk text; ``metadata`` surah, surah_name, ayah, chunk, edition, also_in
    (other editions with the same text, merged into this one),
    translation, arabic, score, citation ("QS Al-Baqarah [2]: 255") and, for neighbouring ayat added as
    context, ``context_for``; ``id`` the Qdrant point id. ``invoke(query, k=..., mode=..., filter=...)``
    overrides the fields for one call.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    k: int = Field(5, ge=1, le=MAX_K, description="How many passages (before neighbours are added).")
    mode: Mode = Field(Mode.HYBRID, description="dense, sparse (BM25) or hybrid (both, fused by RRF).")
    filter: TafsirFilter | None = Field(None, description="Surah(s), ayah range, edition(s).")
    score_threshold: float | None = Field(None, description="Drop passages scoring below this.")
    neighbors: int = Field(
        0, ge=0, le=MAX_NEIGHBORS, description="Add up to n adjacent ayat of the same surah as context."
    )
    settings: Settings | None = Field(None, exclude=True, description="Defaults to the environment (TAFSIR_*).")

    _engine: SearchEngine | None = PrivateAttr(None)

    def __init__(self, engine: SearchEngine | None = None, **data: Any) -> None:
        super().__init__(**data)
        self._engine = engine

    @property
    def engine(self) -> SearchEngine:
        if self._engine is None:
            self._engine = shared_engine(self.settings or Settings())
        return self._engine

    def _options(self, overrides: dict[str, Any]) -> SearchOptions:
        unknown = set(overrides) - set(_OPTION_NAMES)
        if unknown:
            raise TypeError(f"unknown retriever option(s) {sorted(unknown)}; expected some of {list(_OPTION_NAMES)}")
        # Validate one call's overrides exactly like the constructor's fields.
        merged = self.model_validate({**self.model_dump(include=set(_OPTION_NAMES)), **overrides})
        return SearchOptions(
            k=merged.k,
            mode=merged.mode,
            filter=merged.filter.to_point_filter() if merged.filter else None,
            score_threshold=merged.score_threshold,
            neighbors=merged.neighbors,
        )

    def _search(self, query: str, overrides: dict[str, Any]) -> list[Document]:
        return [to_document(p) for p in self.engine.search(query, self._options(overrides))]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        return self._search(query, kwargs)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        return await asyncio.to_thread(self._search, query, kwargs)


# A Document's metadata: these fields of its Passage (and context_for, for a neighbour).
METADATA = ("citation", "surah", "surah_name", "ayah", "chunk", "chunks", "edition", "also_in", "translation", "arabic")


def to_document(passage: Passage) -> Document:
    metadata = {name: getattr(passage, name) for name in METADATA}
    metadata.update(also_in=list(passage.also_in), score=passage.score)
    if passage.context_for is not None:
        metadata["context_for"] = passage.context_for
    return Document(page_content=passage.text, metadata=metadata, id=passage.id)
