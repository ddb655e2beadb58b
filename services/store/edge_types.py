"""Our store types (``services.store.base``) in qdrant_edge's terms: collection config, points, filters, queries.

Apart from ``EdgeStore`` because it changes for a different reason: ``qdrant-edge-py`` is 0.x and its API
moves between releases (pinned in constraints.txt); an upgrade should touch this module alone.
"""

from __future__ import annotations

from typing import Any

import qdrant_edge as edge

from services.store import base

# Below this many points a segment's dense vectors are compared one by one rather than through HNSW (Qdrant's
# default full_scan_threshold is in KB; Edge's HnswIndexConfig asks for it, so we give Qdrant's 10 000).
FULL_SCAN_THRESHOLD_KB = 10_000


def shard_config(spec: base.CollectionSpec, index: base.IndexConfig | None = None) -> edge.EdgeConfig:
    """A new shard's configuration; Edge records it in the shard (``edge_config.json``) and keeps it on load."""
    index = index or base.IndexConfig()
    quantization = None
    if index.quantization is base.Quantization.INT8:
        # quantile 0.99 drops the extreme 1 % of values from the int8 range (Qdrant's recommended setting,
        # https://qdrant.tech/documentation/guides/quantization/#setting-up-scalar-quantization).
        quantization = edge.ScalarQuantizationConfig(
            edge.ScalarType.Int8, quantile=0.99, memory=edge.Memory.Pinned if index.quantization_always_ram else None
        )
    return edge.EdgeConfig(
        vectors={
            name: edge.EdgeVectorParams(
                size=spec.dense_size,
                distance=edge.Distance.Cosine,
                memory=edge.Memory.Cold if index.vectors_on_disk else edge.Memory.Cached,
            )
            for name in base.DENSE_VECTORS
        },
        sparse_vectors={
            name: edge.EdgeSparseVectorParams(
                modifier=edge.Modifier.Idf, memory=edge.Memory.Cold if index.sparse_on_disk else None
            )
            for name in base.SPARSE_VECTORS
        },
        payload_memory=edge.Memory.Cold if index.payload_on_disk else edge.Memory.Cached,
        hnsw_config=edge.HnswIndexConfig(
            m=index.hnsw_m, ef_construct=index.hnsw_ef_construct, full_scan_threshold=FULL_SCAN_THRESHOLD_KB
        ),
        quantization_config=quantization,
        optimizers=edge.EdgeOptimizersConfig(indexing_threshold=index.indexing_threshold_kb),
    )


def edge_point(point: base.PointToStore) -> edge.Point:
    vectors: dict[str, Any] = {base.DENSE: list(point.dense)}
    if point.dense_tr is not None:
        vectors[base.DENSE_TRANSLATION] = list(point.dense_tr)
    vectors.update((name, edge_sparse(vector)) for name, vector in point.sparse.items())
    return edge.Point(point.id, vectors, point.payload)


def updated_vectors(update: base.SparseUpdate) -> dict[str, Any]:
    """The vectors an update writes to a stored point, by name."""
    vectors: dict[str, Any] = {n: edge_sparse(v) for n, v in update.sparse.items()}
    if update.dense_tr is not None:
        vectors[base.DENSE_TRANSLATION] = list(update.dense_tr)
    return vectors


def stored_point(record: Any) -> base.PointToStore:
    """A scrolled record (with vector and payload) as a whole point, ready to upsert elsewhere."""
    vectors = dict(record.vector or {})
    dense = vectors.pop(base.DENSE, None) or []
    translation = vectors.pop(base.DENSE_TRANSLATION, None)
    sparse = {
        name: base.SparseVector(list(v.indices), list(v.values))
        for name, v in vectors.items()
        if name in base.SPARSE_VECTORS
    }
    return base.PointToStore(
        str(record.id),
        list(dense),
        sparse,
        dict(record.payload or {}),
        list(translation) if translation is not None else None,
    )


def edge_field_index(index: base.PayloadIndex) -> edge.UpdateOperation:
    """The operation that creates ``index``; a tenant keyword index carries Qdrant's tenant flag."""
    try:
        schema: Any = getattr(edge.PayloadSchemaType, index.kind.capitalize())
    except AttributeError:
        raise ValueError(f"unknown payload index type {index.kind!r} of field {index.field!r}") from None
    if index.kind == "keyword" and index.tenant:
        schema = edge.KeywordIndexParams(is_tenant=True)
    return edge.UpdateOperation.create_field_index(index.field, schema)


def stored_payload_index(field: str, info: Any) -> base.PayloadIndex:
    kind = str(info.data_type).rpartition(".")[2].lower()  # PayloadSchemaType.Keyword -> keyword
    return base.PayloadIndex(field, kind, tenant=bool(getattr(info.params, "is_tenant", None)))


def edge_sparse(vector: base.SparseVector) -> edge.SparseVector:
    return edge.SparseVector(list(vector.indices), list(vector.values))


def edge_filter(point_filter: base.PointFilter | None) -> edge.Filter | None:
    base.check_resolved(point_filter)
    if point_filter is None:
        return None
    must: list[Any] = []
    if point_filter.surahs is not None:
        must.append(edge.FieldCondition("surah", match=edge.MatchAny([int(s) for s in point_filter.surahs])))
    if point_filter.ayah_min is not None or point_filter.ayah_max is not None:
        ayah_range = edge.RangeFloat(gte=point_filter.ayah_min, lte=point_filter.ayah_max)
        must.append(edge.FieldCondition("ayah", range=ayah_range))
    if point_filter.editions is not None:
        must.append(edge.FieldCondition("edition", match=edge.MatchAny([str(e) for e in point_filter.editions])))
    if point_filter.ayat is not None:
        pairs = [
            edge.Filter(
                must=[
                    edge.FieldCondition("surah", match=edge.MatchValue(int(surah))),
                    edge.FieldCondition("ayah", match=edge.MatchValue(int(ayah))),
                ]
            )
            for surah, ayah in point_filter.ayat
        ]
        must.append(edge.Filter(should=pairs))
    return edge.Filter(must=must) if must else None


def edge_query(
    request: base.SearchRequest, index: base.IndexConfig | None = None, limit: int | None = None
) -> edge.QueryRequest:
    """A search of one list (see ``list_requests``: a fusion is made of several, fused by the caller) for ``limit``
    candidates (default: ``candidate_limit``)."""
    (using, _), *more = request.lists()
    if more:
        raise ValueError("one list at a time: split a fusion with list_requests")
    vector = list(request.dense or []) if using in base.DENSE_VECTORS else edge_sparse(request.sparse)
    return edge.QueryRequest(
        query=edge.Query.Nearest(vector, using=using),
        params=base.search_params(request, index or base.IndexConfig(), edge),
        limit=limit or base.candidate_limit(request),
        filter=edge_filter(request.filter),
        with_payload=False,  # fetched for the returned hits only: see attach_payloads
        with_vector=False,
        score_threshold=request.score_threshold,
    )
