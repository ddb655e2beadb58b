"""Our store types (``services.store.base``) in qdrant_edge's terms: collection config, points, filters, queries.

Apart from ``EdgeStore`` because it changes for a different reason: ``qdrant-edge-py`` is 0.x and its API
moves between releases (pinned in constraints.txt); an upgrade should touch this module alone.
"""

from __future__ import annotations

from typing import Any

import qdrant_edge as edge

from services.store.base import (
    DENSE,
    SPARSE_VECTORS,
    CollectionSpec,
    PointFilter,
    PointToStore,
    SearchRequest,
    SparseVector,
    candidate_limit,
)


def shard_config(spec: CollectionSpec) -> edge.EdgeConfig:
    return edge.EdgeConfig(
        vectors={DENSE: edge.EdgeVectorParams(size=spec.dense_size, distance=edge.Distance.Cosine)},
        sparse_vectors={name: edge.EdgeSparseVectorParams(modifier=edge.Modifier.Idf) for name in SPARSE_VECTORS},
    )


def edge_point(point: PointToStore) -> edge.Point:
    vectors: dict[str, Any] = {DENSE: list(point.dense)}
    vectors.update((name, edge_sparse(vector)) for name, vector in point.sparse.items())
    return edge.Point(point.id, vectors, point.payload)


def edge_sparse(vector: SparseVector) -> edge.SparseVector:
    return edge.SparseVector(list(vector.indices), list(vector.values))


def edge_filter(point_filter: PointFilter | None) -> edge.Filter | None:
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


def edge_query(request: SearchRequest) -> edge.QueryRequest:
    point_filter = edge_filter(request.filter)

    def nearest(using: str) -> edge.Query:
        vector = list(request.dense) if using == DENSE else edge_sparse(request.sparse)
        return edge.Query.Nearest(vector, using=using)

    common: dict[str, Any] = {
        "limit": candidate_limit(request),
        "filter": point_filter,
        "with_payload": False,  # fetched for the returned hits only: see attach_payloads
        "with_vector": False,
        "score_threshold": request.score_threshold,
    }
    lists = request.lists()
    if len(lists) == 1:
        return edge.QueryRequest(query=nearest(lists[0][0]), **common)
    prefetches = [
        edge.Prefetch(limit=request.prefetch_limit, query=nearest(using), filter=point_filter) for using, _ in lists
    ]
    fusion = edge.Fusion.Rrf(k=request.rrf_k, weights=[weight for _, weight in lists])
    return edge.QueryRequest(query=fusion, prefetches=prefetches, **common)
