"""The one narrow interface both Qdrant backends implement (docs/ARCHITECTURE.md).

Readers address a collection through an *alias*; writers build *physical* collections and move
the alias in one atomic step once a collection is complete. Everything in here is plain data,
so the pipeline and the retriever never import a Qdrant client themselves.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

DENSE = "dense"  # name of the dense vector in every collection: the chunk behind its ayah's translation
# A second dense vector: the ayah's translation alone (short), searched as one more list of the fusion. Added to a
# collection made before it in place (``add_vectors``) and filled by the next ingest, as bm25_ar was; a point with
# no translation (a user file without one) has none, and is simply not in that list.
DENSE_TRANSLATION = "dense_tr"
DENSE_VECTORS = (DENSE, DENSE_TRANSLATION)
# Sparse vectors (BM25 term weights; Qdrant applies IDF with modifier=idf), see services/sparse.py:
SPARSE = "bm25"  # the chunk's tafsir + the ayah's translation + the surah name
SPARSE_CONTEXT = "bm25_ctx"  # the same, plus a share of the neighbouring ayat (stories span ayat)
SPARSE_TRANSLATION = "bm25_tr"  # the ayah's translation alone
SPARSE_ARABIC = "bm25_ar"  # the ayah's Arabic text, normalised (services/arabic.py)
SPARSE_VECTORS = (SPARSE, SPARSE_CONTEXT, SPARSE_TRANSLATION, SPARSE_ARABIC)
# The sparse vectors of the first collections: they, not the ones added since, are part of a collection's
# fingerprint, so that a vector added later (bm25_ar, dense_tr) joins a live collection in place (``add_vectors``,
# filled by the next ingest's rewrite) instead of building a new one and embedding everything again.
FIRST_SPARSE_VECTORS = (SPARSE, SPARSE_CONTEXT, SPARSE_TRANSLATION)

# Payload fields with an index: what the retriever filters on and what an operator filters on in
# the dashboard. Integer for surah/ayah (range filters), keyword for edition.
INTEGER_INDEXES = ("surah", "ayah")
KEYWORD_INDEXES = ("edition",)
TENANT_FIELD = "edition"  # one collection holds many editions: Qdrant's tenant flag goes on this keyword index
INDEX_KEY = "tafsir_index"  # a server collection's metadata key of the IndexConfig it was created with


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


class Quantization(enum.StrEnum):
    NONE = "none"
    INT8 = "int8"  # scalar quantization: one byte a dimension, searched first, rescored with the originals


@dataclass(frozen=True)
class IndexConfig:
    """How a collection is indexed and held in memory: the defaults of the TAFSIR_* settings, measured by
    bench/scale.py (docs/SCALING.md).

    Not part of :class:`CollectionSpec`: these settings change how fast a collection answers, not what it
    answers, so a collection built with other settings stays usable and an incremental ingest keeps writing
    to it. Everything but ``hnsw_ef`` is fixed when a collection is created (the store records it with the
    collection) and applies to the next one, after ``tafsir ingest --rebuild``; ``hnsw_ef`` is a query
    parameter and applies at once. docs/SCALING.md has the measurements behind the defaults.
    """

    hnsw_m: int = 16  # edges per node of the HNSW graph
    hnsw_ef_construct: int = 100  # candidates while building the graph
    hnsw_ef: int | None = 256  # candidates while searching; None: Qdrant's default (ef_construct)
    vectors_on_disk: bool = True  # original dense vectors memory-mapped from disk instead of held in RAM
    payload_on_disk: bool = True  # payload memory-mapped from disk (Qdrant's default)
    sparse_on_disk: bool = True  # the BM25 inverted indexes memory-mapped from disk instead of held in RAM
    quantization: Quantization = Quantization.INT8
    quantization_always_ram: bool = True  # keep the quantized vectors in RAM even when the originals are on disk
    indexing_threshold_kb: int = 10_000  # segments larger than this get an HNSW index (Qdrant's default)

    def described(self) -> dict[str, Any]:
        return {**asdict(self), "quantization": self.quantization.value}


def recorded_index(reported: dict[str, Any]) -> dict[str, Any]:
    """The index settings a store reports for a collection (its ``index_settings``), in :class:`IndexConfig`'s
    names. A setting the store does not report is left out (a collection made before it existed, or qdrant-client's
    local mode, which keeps no HNSW nor quantization config)."""
    found: dict[str, Any] = {}
    hnsw = reported.get("hnsw_config") or {}
    for key, name in (("m", "hnsw_m"), ("ef_construct", "hnsw_ef_construct")):
        if key in hnsw:
            found[name] = hnsw[key]
    scalar = (reported.get("quantization_config") or {}).get("scalar")
    found["quantization"] = str(scalar.get("type", Quantization.INT8.value)) if scalar else Quantization.NONE.value
    vectors = reported.get("vectors") or (reported.get("params") or {}).get("vectors") or {}
    dense = vectors.get(DENSE) or {}
    if "memory" in dense:  # Edge
        found["vectors_on_disk"] = dense["memory"] == "cold"
    elif "on_disk" in dense:  # a server
        found["vectors_on_disk"] = bool(dense["on_disk"])
    return found


def recorded_vectors(reported: dict[str, Any]) -> list[str]:
    """The named vectors a store reports for a collection (its ``index_settings``, or a server's collection params;
    Edge's config names them at the top, a server's under ``params``), in the order of :data:`DENSE_VECTORS` and
    :data:`SPARSE_VECTORS`, others last. A collection made elsewhere with one unnamed dense vector reports its
    parameters there instead (``{"size": ..., "distance": ...}``): no name."""
    params = reported.get("params") or {}
    dense = reported.get("vectors") or params.get("vectors") or {}
    sparse = reported.get("sparse_vectors") or params.get("sparse_vectors") or {}
    named = [name for name, config in dense.items() if isinstance(config, dict)]
    order = {name: place for place, name in enumerate((*DENSE_VECTORS, *SPARSE_VECTORS))}
    return sorted([*named, *sparse], key=lambda name: (order.get(name, len(order)), name))


def collection_index(reported: dict[str, Any], default: IndexConfig) -> IndexConfig:
    """The full :class:`IndexConfig` a collection was created with, from what its store reports
    (``index_settings``): every setting it reports, ``default``'s for the rest. ``tafsir migrate`` creates the
    copy with it, so a migrated collection is indexed as its source was.

    A server collection made by this version records the config in its metadata too (:data:`INDEX_KEY`), which
    wins: qdrant-client's local mode reports no HNSW nor quantization config of its own."""
    found = recorded_index(reported)
    scalar = (reported.get("quantization_config") or {}).get("scalar") or {}
    if "always_ram" in scalar:  # a server
        found["quantization_always_ram"] = bool(scalar["always_ram"])
    elif scalar:  # Edge: memory "pinned" keeps the quantized vectors in RAM
        found["quantization_always_ram"] = scalar.get("memory") == "pinned"
    params = reported.get("params") or {}
    if "payload_memory" in reported:  # Edge
        found["payload_on_disk"] = reported["payload_memory"] == "cold"
    elif "on_disk_payload" in params:
        found["payload_on_disk"] = bool(params["on_disk_payload"])
    sparse = (reported.get("sparse_vectors") or params.get("sparse_vectors") or {}).get(SPARSE) or {}
    if "payload_memory" in reported:  # Edge: no memory given is RAM
        found["sparse_on_disk"] = sparse.get("memory") == "cold"
    elif "index" in sparse:
        found["sparse_on_disk"] = bool((sparse.get("index") or {}).get("on_disk"))
    optimizers = reported.get("optimizers") or reported.get("optimizer_config") or {}
    if optimizers.get("indexing_threshold") is not None:
        found["indexing_threshold_kb"] = int(optimizers["indexing_threshold"])
    found.update(reported.get(INDEX_KEY) or {})
    found.pop("hnsw_ef", None)  # a query parameter: the reading store's own
    found["quantization"] = Quantization(found.get("quantization", default.quantization.value))
    return replace(default, **found)


@dataclass(frozen=True)
class PayloadIndex:
    """A payload index of a collection: the field, Qdrant's schema type (integer, keyword, float, bool, datetime,
    uuid, text, geo) and the tenant flag of a keyword index."""

    field: str
    kind: str
    tenant: bool = False


def standard_payload_indexes() -> list[PayloadIndex]:
    """The indexes every collection this project creates has (:data:`INTEGER_INDEXES`, :data:`KEYWORD_INDEXES`)."""
    return [PayloadIndex(field, "integer") for field in INTEGER_INDEXES] + [
        PayloadIndex(field, "keyword", tenant=field == TENANT_FIELD) for field in KEYWORD_INDEXES
    ]


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    spec: CollectionSpec | None  # None when the collection carries no spec (made by someone else)
    points: int


@dataclass(frozen=True)
class PointToStore:
    id: str  # UUID string
    dense: list[float]
    sparse: dict[str, SparseVector]  # by vector name; names not given are left empty
    payload: dict[str, Any]
    dense_tr: list[float] | None = None  # the ayah's translation alone (DENSE_TRANSLATION); None: the point has none


@dataclass(frozen=True)
class SparseUpdate:
    """New sparse vectors (and payload fields, and the translation's dense vector when given) for a stored point
    whose chunk vector stays."""

    id: str
    sparse: dict[str, SparseVector]
    payload: dict[str, Any]
    dense_tr: list[float] | None = None  # None: the point's translation vector stays as it is


HASH_FIELDS = ("content_hash", "edition", "sparse_hash", "dense_hash", "dense_tr_hash")  # what StoredHash reads


@dataclass(frozen=True)
class StoredHash:
    id: str
    content_hash: str
    edition: str
    sparse_hash: str | None = None
    dense_hash: str | None = None  # None on points stored before it existed
    dense_tr_hash: str | None = None  # what the translation vector was made from; None: the point has none

    @classmethod
    def of(cls, point_id: object, payload: dict | None) -> StoredHash:
        """The hashes a stored point's payload holds (either store's record)."""
        payload = payload or {}
        return cls(
            str(point_id),
            str(payload.get("content_hash", "")),
            str(payload.get("edition", "")),
            payload.get("sparse_hash"),
            payload.get("dense_hash"),
            payload.get("dense_tr_hash"),
        )


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
    # Languages of the editions (see edition_language). The retriever turns them into editions with
    # languages_filter before a store sees the filter; the stores refuse a filter that still has them.
    languages: Sequence[str] | None = None


def edition_language(edition: str) -> str | None:
    """An edition's language: its id up to the first dot (``id.jalalayn`` -> ``id``, ``en.ibnkathir`` -> ``en``),
    the convention of Tanzil's ids; None for an id without a dot."""
    language, dot, _ = edition.partition(".")
    return language if dot and language else None


def languages_filter(point_filter: PointFilter, editions: Iterable[str]) -> PointFilter:
    """``point_filter`` with its languages replaced by the editions among ``editions`` in those languages (and in
    its own editions, if it names some). A filter without languages comes back as it is."""
    if point_filter.languages is None:
        return point_filter
    wanted = set(point_filter.languages)
    chosen = sorted(e for e in editions if edition_language(e) in wanted)
    if point_filter.editions is not None:
        chosen = [e for e in chosen if e in set(point_filter.editions)]
    return replace(point_filter, editions=chosen, languages=None)


def check_resolved(point_filter: PointFilter | None) -> None:
    if point_filter is not None and point_filter.languages is not None:
        raise ValueError("a filter by language must be resolved to editions first (languages_filter)")


@dataclass(frozen=True)
class SearchRequest:
    mode: Mode
    limit: int
    dense: list[float] | None = None
    sparse: SparseVector | None = None  # the query's BM25 vector, searched in each sparse vector below
    filter: PointFilter | None = None
    # Each list (dense, and each sparse vector with a weight above 0) prefetches this many
    # candidates; sparse mode fuses the sparse lists, hybrid all of them, with Qdrant's RRF.
    prefetch_limit: int = 50
    rrf_k: int = 60
    dense_weight: float = 1.0
    dense_tr_weight: float = 0.0  # the translation vector's list (DENSE_TRANSLATION), searched with the same query
    dense_using: str = DENSE  # the dense vector a dense-mode request searches (``list_requests`` sets it)
    sparse_weights: dict[str, float] = field(default_factory=lambda: {SPARSE: 1.0})
    score_threshold: float | None = None
    exact: bool = False  # every vector compared, no HNSW nor quantization: the reference recall is measured against

    def lists(self) -> list[tuple[str, float]]:
        """(vector name, RRF weight) of every list this request searches, in a fixed order."""
        sparse = [(name, w) for name, w in self.sparse_weights.items() if w > 0]
        if self.mode is Mode.DENSE:
            return [(self.dense_using, 1.0)]
        if self.mode is Mode.SPARSE:
            return sparse
        dense = [(DENSE, self.dense_weight), (DENSE_TRANSLATION, self.dense_tr_weight)]
        return [(name, w) for name, w in dense if w > 0] + sparse


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    payload: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class VectorStore(Protocol):
    """Both adapters: ``EdgeStore`` (embedded, default) and ``ServerStore`` (qdrant-client)."""

    location: str  # for messages: the folder or the URL
    archive_root: Path | None  # where the source archive lives (ingest/archive.py); None: the store keeps none
    index: IndexConfig  # the index settings of collections created from now on (``hnsw_ef``: of every search)

    def resolve_alias(self, alias: str) -> str | None: ...
    def list_collections(self) -> list[str]: ...
    def collection_info(self, name: str) -> CollectionInfo | None: ...
    # ``index``: this collection's index settings instead of the store's (a migrated copy keeps its source's)
    def create_collection(self, name: str, spec: CollectionSpec, index: IndexConfig | None = None) -> None: ...
    def drop_collection(self, name: str) -> None: ...
    def swap_alias(self, alias: str, name: str) -> None: ...
    def iter_hashes(self, name: str, edition: str | None = None) -> Iterator[StoredHash]: ...
    def upsert(self, name: str, points: Sequence[PointToStore]) -> None: ...
    def update_sparse(self, name: str, updates: Sequence[SparseUpdate]) -> None: ...
    def add_vectors(self, name: str) -> list[str]: ...
    def delete(self, name: str, ids: Iterable[str]) -> None: ...
    def count(self, name: str, filter: PointFilter | None = None) -> int: ...
    def search(self, name: str, request: SearchRequest) -> list[Hit]: ...
    def retrieve(self, name: str, filter: PointFilter, limit: int = 1000) -> list[Hit]: ...
    def editions(self, name: str) -> dict[str, int]: ...
    def optimize(self, name: str) -> None: ...
    def index_settings(self, name: str) -> dict[str, Any]: ...
    # Whole points (vectors and payload) in id order, a page at a time: what a migration copies. The second
    # value is the offset of the next page, None after the last.
    def scroll_points(
        self, name: str, offset: str | None = None, limit: int = 1000
    ) -> tuple[list[PointToStore], str | None]: ...
    def payload_indexes(self, name: str) -> list[PayloadIndex]: ...
    def create_payload_index(self, name: str, index: PayloadIndex) -> None: ...
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
    if request.mode is not Mode.DENSE and request.prefetch_limit < 1:
        raise ValueError(f"prefetch_limit must be at least 1, got {request.prefetch_limit}")
    if not request.lists():
        raise ValueError(f"a {request.mode.value} search needs at least one vector with a weight above 0")
    unknown = set(request.sparse_weights) - set(SPARSE_VECTORS)
    if unknown:
        raise ValueError(f"unknown sparse vector(s) {sorted(unknown)}; expected some of {list(SPARSE_VECTORS)}")
    if request.dense_using not in DENSE_VECTORS:
        raise ValueError(f"unknown dense vector {request.dense_using!r}; expected one of {list(DENSE_VECTORS)}")


def present_lists(request: SearchRequest, names: Iterable[str], collection: str, location: str) -> SearchRequest:
    """``request`` without the lists whose vectors ``collection`` lacks (``names``: the vectors it has): one made
    before a vector existed (bm25_ar, dense_tr) answers with its other lists until the next ``tafsir ingest`` adds
    it. A request left with no list is refused, naming the vector and the fix."""
    present = set(names)
    missing = sorted(name for name, _ in request.lists() if name not in present)
    if not missing:
        return request
    kept = replace(
        request,
        sparse_weights={n: w for n, w in request.sparse_weights.items() if n in present},
        dense_tr_weight=request.dense_tr_weight if DENSE_TRANSLATION in present else 0.0,
    )
    if not kept.lists() or any(name not in present for name, _ in kept.lists()):
        raise StoreError(
            f"Collection {collection!r} in {location} has no vector {', '.join(missing)} yet. Run "
            "`tafsir ingest` to add it: the run rewrites what the vector is made from and embeds no chunk again."
        )
    return kept


def candidate_limit(request: SearchRequest) -> int:
    """How many points to ask Qdrant for in one list, so that ties can be broken here rather than by Qdrant.

    Qdrant orders equal scores in no fixed way (the order differs between a store and its copy: identical texts
    tie), so a cut at ``limit`` inside Qdrant could keep a different tied point each time: ask for a margin.
    """
    return request.limit + max(request.limit, 16)


def complete_ties(
    fetch: Callable[[int], list[Hit]], request: SearchRequest, first: list[Hit] | None = None
) -> list[Hit]:
    """The candidates of a one-list ``request``, asked again for twice as many while the last one asked for ties
    with the one at the cut (at ``limit``): then Qdrant may have left out a tied point that ranks above the cut by
    id. ``fetch(n)`` asks Qdrant for ``n``; ``first`` is an answer to :func:`candidate_limit` already at hand."""
    asked = candidate_limit(request)
    hits = first if first is not None else fetch(asked)
    while len(hits) >= asked:
        scores = sorted((hit.score for hit in hits), reverse=True)
        if scores[min(request.limit, len(scores)) - 1] > scores[-1]:
            break
        asked *= 2
        hits = fetch(asked)
    return hits


def list_requests(request: SearchRequest) -> list[SearchRequest]:
    """The single-list searches a request is made of: itself if it searches one list, else one per fused list.

    A fusion is computed here (:func:`fuse`), not by Qdrant's RRF over prefetches: a prefetch list would be cut
    and ranked in Qdrant's order of equal scores, so two stores holding the same points (a collection and its
    migrated copy) could fuse tied points at different ranks and answer differently.
    """
    lists = request.lists()
    if len(lists) == 1:
        return [request]
    return [
        replace(
            request,
            mode=Mode.DENSE if using in DENSE_VECTORS else Mode.SPARSE,
            limit=request.prefetch_limit,
            sparse_weights={using: 1.0} if using not in DENSE_VECTORS else {},
            dense_weight=1.0,
            dense_using=using if using in DENSE_VECTORS else DENSE,
            score_threshold=None,
        )
        for using, _ in lists
    ]


def search_params(request: SearchRequest, index: IndexConfig, types: Any) -> Any:
    """The search parameters of one list in either adapter's types (``types``: qdrant_edge, or qdrant_client's
    ``models``; both name them ``SearchParams`` and ``QuantizationSearchParams``); None for the store's default."""
    if request.exact:
        return types.SearchParams(exact=True, quantization=types.QuantizationSearchParams(ignore=True))
    if index.hnsw_ef is None and index.quantization is Quantization.NONE:
        return None
    # Rescoring re-ranks the int8 candidates by their original vectors: the recall of int8 without its error.
    rescore = types.QuantizationSearchParams(rescore=True) if index.quantization is Quantization.INT8 else None
    return types.SearchParams(hnsw_ef=index.hnsw_ef, quantization=rescore)


def fuse(results: Sequence[Iterable[Hit]], request: SearchRequest) -> list[Hit]:
    """The answer to ``request`` from the hits of each of its :func:`list_requests`, in the same order.

    Each list is ranked by score, ties by id, and cut at the prefetch limit; then weighted RRF, Qdrant's formula
    (qdrant_client/hybrid/fusion.py): score = sum over the lists of 1 / ((rank + 1) / weight + k - 1), rank from 0.
    """
    parts = list_requests(request)
    if len(parts) == 1:
        return rank_hits(next(iter(results)), request)
    ranked = (
        ((hit.id for hit in rank_hits(hits, part)), weight)
        for (_, weight), part, hits in zip(request.lists(), parts, results, strict=True)
    )
    scores = weighted_rrf(ranked, request.rrf_k)
    return rank_hits((Hit(point_id, score) for point_id, score in scores.items()), request)


def weighted_rrf(lists: Iterable[tuple[Iterable[str], float]], rrf_k: float) -> dict[str, float]:
    """Qdrant's weighted RRF (qdrant_client/hybrid/fusion.py) of ranked id lists, each with its weight (above 0):
    score = sum over the lists of 1 / ((rank + 1) / weight + k - 1), rank from 0."""
    scores: dict[str, float] = {}
    for ids, weight in lists:
        for rank, point_id in enumerate(ids):
            scores[point_id] = scores.get(point_id, 0.0) + 1.0 / ((rank + 1.0) / weight + rrf_k - 1.0)
    return scores


def recorded_model(store: VectorStore, alias: str) -> tuple[str, str] | None:
    """(collection, model identity) of the collection behind ``alias``, if there is one that records a model."""
    name = store.resolve_alias(alias)
    info = store.collection_info(name) if name is not None else None
    if info is None or info.spec is None:
        return None
    return info.name, info.spec.model


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
