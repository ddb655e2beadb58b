"""Indonesian BM25 sparse vectors: one function for ingest (documents) and for queries.

Qdrant's own BM25 (``qdrant_edge.Bm25``) computes term-frequency weights client-side with the
same configuration a Qdrant server's ``qdrant/bm25`` inference takes, so both backends agree; the
collection's sparse vector uses Qdrant's IDF modifier, which supplies the IDF half of BM25.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cached_property

from services.store.base import SparseVector


@dataclass(frozen=True)
class Bm25Settings:
    language: str = "indonesian"
    ascii_folding: bool = True
    k: float = 1.2
    b: float = 0.75
    avg_len: float = 256.0

    @property
    def version(self) -> str:
        """Part of every point's content hash: a change here re-indexes the sparse vectors."""
        return "bm25:" + json.dumps(asdict(self), sort_keys=True)


class SparseEncoder:
    def __init__(self, settings: Bm25Settings | None = None) -> None:
        self.settings = settings or Bm25Settings()

    @cached_property
    def _bm25(self):  # qdrant_edge.Bm25; imported lazily (the server backend needs only this class)
        from qdrant_edge import Bm25, Bm25Config

        s = self.settings
        return Bm25(Bm25Config(language=s.language, ascii_folding=s.ascii_folding, k=s.k, b=s.b, avg_len=s.avg_len))

    def document(self, text: str) -> SparseVector:
        vector = self._bm25.embed_document(text)
        return SparseVector(indices=list(vector.indices), values=list(vector.values))

    def query(self, text: str) -> SparseVector:
        vector = self._bm25.embed_query(text)
        return SparseVector(indices=list(vector.indices), values=list(vector.values))
