"""The one narrow interface both Qdrant backends implement (DESIGN.md, "Storage").

Readers address a collection through an *alias*; writers build *physical* collections and move
the alias in one atomic step once a collection is complete. Everything in here is plain data,
so the pipeline and the retriever never import a Qdrant client themselves.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

DENSE = "dense"  # name of the dense vector in every collection
SPARSE = "bm25"  # name of the sparse vector (BM25 term weights, IDF applied by Qdrant)

# Payload fields with an index: what the retriever filters on and what an operator filters on in
# the dashboard. Integer for surah/ayah (range filters), keyword for edition.
INTEGER_INDEXES = ("surah", "ayah")
KEYWORD_INDEXES = ("edition",)


class StoreError(RuntimeError):
    """A storage problem explained for people: what failed, where, and what to do."""


class StoreLockedError(StoreError):
    """The embedded store is held by another process."""


class TransientStoreError(StoreError):
    """A failure worth retrying (connection refused, timeout, 5xx)."""


@dataclass(frozen=True)
class SparseVector:
    indices: list[int]
    values: list[float]


@dataclass(frozen=True)
class CollectionSpec:
    """What a physical collection holds; a different spec never shares a collection."""

    dense_size: int
    model: str  # the embedding model's identity (name and weights fingerprint)
    fingerprint: str  # hash of model + chunking + sparse settings: the collection's compatibility key


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    spec: CollectionSpec | None  # None when the collection carries no spec (made by someone else)
    points: int


@dataclass(frozen=True)
class PointToStore:
    id: str  # UUID string
    dense: list[float]
    sparse: SparseVector
    payload: dict[str, Any]


@dataclass(frozen=True)
class StoredHash:
    id: str
    content_hash: str
    edition: str


class Mode(enum.StrEnum):
    DENSE = "dense"
    SPARSE = "sparse"
    HYBRID = "hybrid"


@dataclass(frozen=True)
class PointFilter:
    """Filters the retriever and the API expose. All given conditions must hold."""

    surahs: Sequence[int] | None = None
    ayah_min: int | None = None
    ayah_max: int | None = None
    editions: Sequence[str] | None = None
    # Exact (surah, ayah) pairs, e.g. to fetch neighbouring ayat; ORed together.
    ayat: Sequence[tuple[int, int]] | None = None


@dataclass(frozen=True)
class SearchRequest:
    mode: Mode
    limit: int
    dense: list[float] | None = None
    sparse: SparseVector | None = None
    filter: PointFilter | None = None
    # Hybrid: each side prefetches this many candidates, fused with Qdrant's RRF (k, weights).
    prefetch_limit: int = 50
    rrf_k: int = 60
    dense_weight: float = 1.0
    sparse_weight: float = 1.0
    score_threshold: float | None = None


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    payload: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class VectorStore(Protocol):
    """Both adapters: ``EdgeStore`` (embedded, default) and ``ServerStore`` (qdrant-client)."""

    location: str  # for messages: the folder or the URL

    def resolve_alias(self, alias: str) -> str | None: ...
    def list_collections(self) -> list[str]: ...
    def collection_info(self, name: str) -> CollectionInfo | None: ...
    def create_collection(self, name: str, spec: CollectionSpec) -> None: ...
    def drop_collection(self, name: str) -> None: ...
    def swap_alias(self, alias: str, name: str) -> None: ...
    def iter_hashes(self, name: str, edition: str | None = None) -> Iterator[StoredHash]: ...
    def upsert(self, name: str, points: Sequence[PointToStore]) -> None: ...
    def delete(self, name: str, ids: Iterable[str]) -> None: ...
    def count(self, name: str, filter: PointFilter | None = None) -> int: ...
    def search(self, name: str, request: SearchRequest) -> list[Hit]: ...
    def retrieve(self, name: str, filter: PointFilter, limit: int = 1000) -> list[Hit]: ...
    def editions(self, name: str) -> dict[str, int]: ...
    def close(self) -> None: ...


# --- Helpers both adapters share: one copy of the rules, not two -----------------------------------


def missing_collection_error(name: str, location: str) -> StoreError:
    return StoreError(
        f"No collection or alias named {name!r} in the Qdrant store at {location}. "
        "Run `tafsir ingest` to build it (or check TAFSIR_COLLECTION)."
    )


def check_search_request(request: SearchRequest) -> None:
    """Raise ``ValueError`` when the request lacks the vector its mode needs."""
    if request.limit < 1:
        raise ValueError(f"limit must be at least 1, got {request.limit}")
    if request.mode in (Mode.DENSE, Mode.HYBRID) and request.dense is None:
        raise ValueError(f"a {request.mode.value} search needs a dense query vector")
    if request.mode in (Mode.SPARSE, Mode.HYBRID) and request.sparse is None:
        raise ValueError(f"a {request.mode.value} search needs a sparse query vector")
    if request.mode is Mode.HYBRID and request.prefetch_limit < 1:
        raise ValueError(f"prefetch_limit must be at least 1, got {request.prefetch_limit}")


def candidate_limit(request: SearchRequest) -> int:
    """How many points to ask Qdrant for, so that ties can be broken here rather than by Qdrant.

    Qdrant orders equal scores in no fixed way (RRF most of all: ranks tie by construction), so a
    cut at ``limit`` inside Qdrant could keep a different tied point each time. Hybrid asks for every
    fused candidate (each point appears in at most two prefetch lists); single modes for a margin.
    """
    if request.mode is Mode.HYBRID:
        return max(2 * request.prefetch_limit, request.limit)
    return request.limit + max(request.limit, 16)


def rank_hits(hits: Iterable[Hit], request: SearchRequest) -> list[Hit]:
    """Deterministic order: best score first, ties by id; then the threshold and the limit."""
    threshold = request.score_threshold
    kept = [hit for hit in hits if threshold is None or hit.score >= threshold]
    kept.sort(key=lambda hit: (-hit.score, hit.id))
    return kept[: request.limit]


def attach_payloads(ranked: Iterable[Hit], payloads: dict[str, dict[str, Any]]) -> list[Hit]:
    """The ranked hits with their payloads, fetched after ranking for the few that are returned.

    Ranking needs only ids and scores, so the candidates come without payload (a tafsir chunk's
    payload is kilobytes; converting a hundred of them per query costs more than the search). A hit
    whose point vanished between the two calls is dropped: it is no longer an answer.
    """
    return [Hit(hit.id, hit.score, payloads[hit.id]) for hit in ranked if hit.id in payloads]


def reading_order(hit: Hit) -> tuple[Any, ...]:
    """Order of ``retrieve``: edition, then the mushaf order, then chunks of one ayah."""
    payload = hit.payload
    return (
        str(payload.get("edition", "")),
        int(payload.get("surah", 0)),
        int(payload.get("ayah", 0)),
        int(payload.get("chunk", 0)),
        hit.id,
    )


def matches_nothing(point_filter: PointFilter | None) -> bool:
    """An empty list of allowed values admits no point (Qdrant would read an empty OR as "any")."""
    if point_filter is None:
        return False
    lists = (point_filter.surahs, point_filter.editions, point_filter.ayat)
    if any(values is not None and len(values) == 0 for values in lists):
        return True
    low, high = point_filter.ayah_min, point_filter.ayah_max
    return low is not None and high is not None and low > high
