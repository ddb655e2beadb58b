"""Storage: one interface (``base``), two Qdrant adapters (``edge`` embedded, ``server`` qdrant-client).

Only :func:`open_store` picks an adapter, and it imports just the one it needs, so using the
embedded store never loads qdrant-client, nor a server store the Edge engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.store.base import (
    DENSE,
    DENSE_TRANSLATION,
    DENSE_VECTORS,
    INTEGER_INDEXES,
    KEYWORD_INDEXES,
    SPARSE,
    SPARSE_ARABIC,
    SPARSE_CONTEXT,
    SPARSE_TRANSLATION,
    SPARSE_VECTORS,
    CollectionInfo,
    CollectionSpec,
    Hit,
    IndexConfig,
    Mode,
    PointFilter,
    PointToStore,
    Quantization,
    SearchRequest,
    SparseUpdate,
    SparseVector,
    StoredHash,
    StoreError,
    StoreLockedError,
    TransientStoreError,
    VectorStore,
)

if TYPE_CHECKING:
    from services.settings import Settings

__all__ = [
    "DENSE",
    "DENSE_TRANSLATION",
    "DENSE_VECTORS",
    "INTEGER_INDEXES",
    "KEYWORD_INDEXES",
    "SPARSE",
    "SPARSE_ARABIC",
    "SPARSE_CONTEXT",
    "SPARSE_TRANSLATION",
    "SPARSE_VECTORS",
    "CollectionInfo",
    "CollectionSpec",
    "Hit",
    "IndexConfig",
    "Mode",
    "PointFilter",
    "PointToStore",
    "Quantization",
    "SearchRequest",
    "SparseUpdate",
    "SparseVector",
    "StoreError",
    "StoreLockedError",
    "StoredHash",
    "TransientStoreError",
    "VectorStore",
    "index_config",
    "open_store",
]


def open_store(settings: Settings) -> VectorStore:
    """The Qdrant server at ``TAFSIR_QDRANT_URL`` if set, else the embedded store at ``TAFSIR_QDRANT_PATH``."""
    if settings.qdrant_url:
        from services.store.server import ServerStore

        return ServerStore.connect(
            settings.qdrant_url,
            settings.qdrant_api_key,
            settings.qdrant_timeout,
            shard_number=settings.shard_number,
            replication_factor=settings.replication_factor,
            write_consistency_factor=settings.write_consistency_factor,
            index=index_config(settings),
        )
    from services.store.edge import EdgeStore

    return EdgeStore(settings.qdrant_path, index=index_config(settings))


def index_config(settings: Settings) -> IndexConfig:
    """The index settings (``TAFSIR_HNSW_*``, ``TAFSIR_VECTORS_ON_DISK``, ...) as the stores take them."""
    return IndexConfig(
        hnsw_m=settings.hnsw_m,
        hnsw_ef_construct=settings.hnsw_ef_construct,
        hnsw_ef=settings.hnsw_ef,
        vectors_on_disk=settings.vectors_on_disk,
        payload_on_disk=settings.payload_on_disk,
        sparse_on_disk=settings.sparse_on_disk,
        quantization=Quantization(settings.vector_quantization),
        quantization_always_ram=settings.quantization_always_ram,
        indexing_threshold_kb=settings.indexing_threshold_kb,
    )
