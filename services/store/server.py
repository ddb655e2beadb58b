"""The server store: a Qdrant server (or cluster) through qdrant-client.

Real collections and real aliases: ``swap_alias`` is one ``update_collection_aliases`` call, which
Qdrant applies atomically. Every call goes through :func:`call_with_retries`, so a restarting
server or a brief network fault costs a few seconds, not a failed ingest. The same class runs on
qdrant-client's local mode (``QdrantClient(location=":memory:")``), which speaks the same client
API; that is how the shared behavioural tests exercise it.

The collection's :class:`CollectionSpec` is stored in the collection's own ``metadata`` (a recent
Qdrant server, and qdrant-client's local mode), under :data:`SPEC_KEY`, where the dashboard shows it
too. Weighted RRF likewise needs a recent server; an older one rejects the query with a 4xx.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict
from functools import partial
from typing import Any, TypeVar

import httpx
from qdrant_client import QdrantClient, models
from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from services.store import base

log = logging.getLogger(__name__)

T = TypeVar("T")

SPEC_KEY = "tafsir_spec"  # key of the CollectionSpec in the collection's metadata
# key of the payload indexes made through this class, for qdrant-client's local mode, which keeps none itself
PAYLOAD_INDEXES_KEY = "tafsir_payload_indexes"
LOCAL_PREFIX = "local:"  # TAFSIR_QDRANT_URL=local:PATH: qdrant-client's local mode in the folder PATH
SCROLL_PAGE = 1000
TRIES = 5
FIRST_DELAY = 0.5  # seconds; doubles after each failure
MAX_DELAY = 8.0


def is_transient(exc: BaseException) -> bool:
    """Failures worth another try: the server unreachable, slow, overloaded or failing (5xx)."""
    if isinstance(exc, ResponseHandlingException):
        # qdrant-client wraps transport errors (connection refused, timeouts) in this; it also wraps
        # a response it could not parse, which no retry fixes.
        return isinstance(exc.source, httpx.TransportError | OSError)
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code is not None and (exc.status_code >= 500 or exc.status_code == 429)
    return isinstance(exc, httpx.TransportError | ResourceExhaustedResponse)


def call_with_retries(
    call: Callable[[], T],
    *,
    location: str,
    tries: int = TRIES,
    first_delay: float = FIRST_DELAY,
    max_delay: float = MAX_DELAY,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``call``, retrying transient failures with bounded exponential backoff.

    After ``tries`` transient failures, raise :class:`TransientStoreError` naming the server and the
    setting; any other error passes through unchanged.
    """
    delay = first_delay
    for attempt in range(1, tries + 1):
        try:
            return call()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if attempt == tries:
                raise base.TransientStoreError(
                    f"The Qdrant server at {location} did not answer after {tries} tries "
                    f"(last error: {_describe(exc)}). Check that it is running and that "
                    "TAFSIR_QDRANT_URL points at it, or unset TAFSIR_QDRANT_URL to use the embedded store."
                ) from exc
            wait = delay
            if isinstance(exc, ResourceExhaustedResponse):
                wait = max(wait, float(exc.retry_after_s))
            wait = min(wait, max_delay)
            log.warning("Qdrant at %s: %s; retrying in %.1f s", location, _describe(exc), wait)
            sleep(wait)
            delay = min(delay * 2, max_delay)
    raise AssertionError("unreachable")  # the loop returns or raises


class ServerStore:
    """``VectorStore`` on a Qdrant server through qdrant-client."""

    def __init__(
        self,
        client: QdrantClient,
        location: str,
        *,
        tries: int = TRIES,
        sleep: Callable[[float], None] = time.sleep,
        shard_number: int | None = None,
        replication_factor: int | None = None,
        write_consistency_factor: int | None = None,
        index: base.IndexConfig | None = None,
    ) -> None:
        self.client = client
        self.index = index or base.IndexConfig()  # applied to collections created from now on; hnsw_ef to every search
        self.location = location
        self.archive_root = None  # the server keeps its own data; a rebuild reads its collections back
        self._tries = tries
        self._sleep = sleep
        # A new collection's layout over a cluster; None leaves each to the server's default.
        self._layout = {
            "shard_number": shard_number,
            "replication_factor": replication_factor,
            "write_consistency_factor": write_consistency_factor,
        }
        self._known_vectors: dict[str, set[str]] = {}  # per collection or alias searched: its vectors

    @classmethod
    def connect(
        cls,
        url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        index: base.IndexConfig | None = None,
        **layout: int | None,
    ) -> ServerStore:
        """A store on the server at ``url`` (or, ``local:PATH``, qdrant-client's local mode in the folder PATH).
        Nothing is sent until the first call.

        ``layout``: ``shard_number``, ``replication_factor``, ``write_consistency_factor`` of new collections.
        """
        if url.startswith(LOCAL_PREFIX):
            # qdrant-client's local mode on a folder: the server's client API without a server, for tests and
            # trials (one process at a time; no HNSW, quantization nor payload index).
            return cls(QdrantClient(path=url.removeprefix(LOCAL_PREFIX)), url, index=index, **layout)
        client = QdrantClient(
            url=url,
            api_key=api_key,
            timeout=math.ceil(timeout),  # qdrant-client takes whole seconds
            # The version check would contact the server here, and only warn; the first real call
            # reports an unreachable server properly.
            check_compatibility=False,
        )
        return cls(client, url, index=index, **layout)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> ServerStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- collections and aliases -------------------------------------------------------------------

    def resolve_alias(self, alias: str) -> str | None:
        response = self._call("list aliases", self.client.get_aliases)
        for description in response.aliases:
            if description.alias_name == alias:
                return description.collection_name
        return None

    def list_collections(self) -> list[str]:
        response = self._call("list collections", self.client.get_collections)
        return sorted(collection.name for collection in response.collections)

    def collection_info(self, name: str) -> base.CollectionInfo | None:
        """``None`` when neither a collection nor an alias has this name."""
        physical = self.resolve_alias(name) or name
        try:
            info = self._call("read collection", lambda: self.client.get_collection(physical), physical)
        except _Missing:
            return None
        points = self.count(physical)
        metadata = info.config.metadata or {}
        stored = metadata.get(SPEC_KEY)
        spec = base.CollectionSpec(**stored) if isinstance(stored, dict) else None
        return base.CollectionInfo(name=physical, spec=spec, points=points)

    def create_collection(self, name: str, spec: base.CollectionSpec, index: base.IndexConfig | None = None) -> None:
        index = index or self.index
        # collection_exists is true for an alias too in local mode; the server refuses either clash.
        if self._call("check collection", lambda: self.client.collection_exists(name)):
            raise base.StoreError(f"Collection {name!r} already exists on {self.location}.")
        recorded = {key: value for key, value in index.described().items() if key != "hnsw_ef"}
        self._call(
            "create collection",
            lambda: self.client.create_collection(
                collection_name=name,
                vectors_config={
                    vector: models.VectorParams(
                        size=spec.dense_size, distance=models.Distance.COSINE, on_disk=index.vectors_on_disk
                    )
                    for vector in base.DENSE_VECTORS
                },
                sparse_vectors_config={
                    name: models.SparseVectorParams(
                        modifier=models.Modifier.IDF,
                        index=models.SparseIndexParams(on_disk=True) if index.sparse_on_disk else None,
                    )
                    for name in base.SPARSE_VECTORS
                },
                metadata={
                    SPEC_KEY: asdict(spec),
                    base.INDEX_KEY: recorded,
                    PAYLOAD_INDEXES_KEY: [asdict(i) for i in base.standard_payload_indexes()],
                },
                **_index_arguments(index),
                **self._layout,
            ),
        )
        # is_tenant on the edition index: the server keeps each edition's points together (Qdrant >= 1.11,
        # https://qdrant.tech/documentation/guides/multiple-partitions/).
        for payload_index in base.standard_payload_indexes():
            self._create_payload_index(name, payload_index)

    def drop_collection(self, name: str) -> None:
        """Delete a physical collection; Qdrant deletes its aliases with it. A missing name is fine."""
        self._call("delete collection", lambda: self.client.delete_collection(name))

    def swap_alias(self, alias: str, name: str) -> None:
        operations: list[models.AliasOperations] = []
        if self.resolve_alias(alias) is not None:
            operations.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
        operations.append(
            models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=name, alias_name=alias))
        )
        # One request: Qdrant applies the list atomically, so readers never see the alias missing.
        self._call(
            "move alias", lambda: self.client.update_collection_aliases(change_aliases_operations=operations), name
        )

    # --- points --------------------------------------------------------------------------------------

    def upsert(self, name: str, points: Sequence[base.PointToStore]) -> None:
        if not points:
            return
        structs = [
            models.PointStruct(
                id=point.id,
                vector={
                    base.DENSE: list(point.dense),
                    **({base.DENSE_TRANSLATION: list(point.dense_tr)} if point.dense_tr is not None else {}),
                    **{n: _server_sparse(v) for n, v in point.sparse.items()},
                },
                payload=point.payload,
            )
            for point in points
        ]
        # Upserting by id is idempotent, so a retry after a lost answer is safe.
        self._call("upsert", lambda: self.client.upsert(name, points=structs, wait=True), name)

    def update_sparse(self, name: str, updates: Sequence[base.SparseUpdate]) -> None:
        if not updates:
            return
        vectors = [
            models.PointVectors(
                id=u.id,
                vector={
                    **{n: _server_sparse(v) for n, v in u.sparse.items()},
                    **({base.DENSE_TRANSLATION: list(u.dense_tr)} if u.dense_tr is not None else {}),
                },
            )
            for u in updates
        ]
        self._call("update vectors", lambda: self.client.update_vectors(name, points=vectors, wait=True), name)
        payloads = [
            models.SetPayloadOperation(set_payload=models.SetPayload(payload=u.payload, points=[u.id]))
            for u in updates
            if u.payload
        ]
        if payloads:
            self._call("set payload", lambda: self.client.batch_update_points(name, payloads, wait=True), name)

    def add_vectors(self, name: str) -> list[str]:
        """Add the vectors of ``DENSE_VECTORS`` and ``SPARSE_VECTORS`` that the collection lacks (made before they
        existed), empty until points get them (``update_sparse``); the names added."""
        physical = self.resolve_alias(name) or name
        params = self._params(physical)
        present = set(base.recorded_vectors(params.model_dump()))
        missing = [n for n in (*base.DENSE_VECTORS, *base.SPARSE_VECTORS) if n not in present]
        for vector in missing:
            # The calls take no storage settings: an added vector lives where the server keeps vectors by default.
            config: models.DenseVectorNameConfig | models.SparseVectorNameConfig
            if vector in base.DENSE_VECTORS:
                size = params.vectors[base.DENSE].size  # this project's collections: named vectors, a dict
                config = models.DenseVectorNameConfig(
                    dense=models.DenseVectorConfig(size=size, distance=models.Distance.COSINE)
                )
            else:
                config = models.SparseVectorNameConfig(sparse=models.SparseVectorConfig(modifier=models.Modifier.IDF))
            self._call(
                "add a vector",
                lambda vector=vector, config=config: self.client.create_vector_name(physical, vector, config),
                physical,
            )
        return missing

    def _sparse_params(self) -> models.SparseVectorParams:
        return models.SparseVectorParams(
            modifier=models.Modifier.IDF,
            index=models.SparseIndexParams(on_disk=True) if self.index.sparse_on_disk else None,
        )

    def _params(self, name: str) -> models.CollectionParams:
        return self._call("read collection", lambda: self.client.get_collection(name), name).config.params

    def _vectors(self, name: str) -> set[str]:
        """The vectors (dense and sparse) the collection has."""
        return set(base.recorded_vectors(self._params(name).model_dump()))

    def delete(self, name: str, ids: Iterable[str]) -> None:
        point_ids: list[models.ExtendedPointId] = list(ids)
        if not point_ids:
            return
        selector = models.PointIdsList(points=point_ids)
        self._call("delete", lambda: self.client.delete(name, points_selector=selector, wait=True), name)

    def count(self, name: str, filter: base.PointFilter | None = None) -> int:
        if base.matches_nothing(filter):
            self._require(name)
            return 0
        point_filter = _server_filter(filter)
        result = self._call("count", lambda: self.client.count(name, count_filter=point_filter, exact=True), name)
        return result.count

    def search(self, name: str, request: base.SearchRequest) -> list[base.Hit]:
        base.check_search_request(request)
        if base.matches_nothing(request.filter):
            self._require(name)
            return []
        known = self._known_vectors.get(name, set())
        if any(n not in known for n, _ in request.lists()):
            # A vector this process has not seen in the collection: ask the server (a collection made before the
            # vector existed answers with its other lists until an ingest adds it).
            known = self._known_vectors[name] = self._vectors(name)
            request = base.present_lists(request, known, name, self.location)
        parts = base.list_requests(request)
        batch = [models.QueryRequest(**_query_arguments(part, self.index)) for part in parts]
        # One request for every list of a fusion; fused here (see base.list_requests)
        responses = self._call("search", lambda: self.client.query_batch_points(name, requests=batch), name)

        def fetch(part: base.SearchRequest, limit: int) -> list[base.Hit]:
            query = models.QueryRequest(**{**_query_arguments(part, self.index), "limit": limit})
            response = self._call("search", lambda: self.client.query_batch_points(name, requests=[query]), name)[0]
            return [base.Hit(str(point.id), point.score) for point in response.points]

        results = [
            base.complete_ties(partial(fetch, part), part, [base.Hit(str(p.id), p.score) for p in response.points])
            for part, response in zip(parts, responses, strict=True)
        ]
        ranked = base.fuse(results, request)
        if not ranked:
            return []
        ids: list[models.ExtendedPointId] = [hit.id for hit in ranked]
        records = self._call(
            "search", lambda: self.client.retrieve(name, ids=ids, with_payload=True, with_vectors=False), name
        )
        return base.attach_payloads(ranked, {str(record.id): record.payload or {} for record in records})

    def retrieve(self, name: str, filter: base.PointFilter, limit: int = 1000) -> list[base.Hit]:
        """Points matching ``filter`` (at most ``limit``, taken in id order) in reading order."""
        if base.matches_nothing(filter) or limit < 1:
            self._require(name)
            return []
        point_filter = _server_filter(filter)
        records, _ = self._call(
            "read",
            lambda: self.client.scroll(
                name, scroll_filter=point_filter, limit=limit, with_payload=True, with_vectors=False
            ),
            name,
        )
        return sorted(
            (base.Hit(str(record.id), 0.0, record.payload or {}) for record in records), key=base.reading_order
        )

    def iter_hashes(self, name: str, edition: str | None = None) -> Iterator[base.StoredHash]:
        physical = self.resolve_alias(name) or name  # pinned: a swap of the alias mid-way changes nothing
        point_filter = _server_filter(base.PointFilter(editions=[edition])) if edition is not None else None
        offset: models.ExtendedPointId | None = None
        while True:
            records, offset = self._call(
                "read",
                lambda offset=offset: self.client.scroll(
                    physical,
                    scroll_filter=point_filter,
                    limit=SCROLL_PAGE,
                    offset=offset,
                    with_payload=list(base.HASH_FIELDS),
                    with_vectors=False,
                ),
                physical,
            )
            yield from (base.StoredHash.of(record.id, record.payload) for record in records)
            if offset is None:
                return

    def editions(self, name: str) -> dict[str, int]:
        response = self._call(
            "count editions", lambda: self.client.facet(name, key="edition", limit=100_000, exact=True), name
        )
        return {str(hit.value): hit.count for hit in response.hits}

    def optimize(self, name: str) -> None:
        """Nothing to do: a Qdrant server builds its indexes in the background once a segment passes the
        indexing threshold; searches meanwhile read the unindexed segments vector by vector."""

    def index_settings(self, name: str) -> dict[str, Any]:
        """The collection's configuration as the server reports it (hnsw, quantization, optimizers, layout)."""
        physical = self.resolve_alias(name) or name
        info = self._call("read collection", lambda: self.client.get_collection(physical), physical)
        config = info.config.model_dump(mode="json", exclude_none=True)
        metadata = config.pop("metadata", None) or {}
        if base.INDEX_KEY in metadata:
            config[base.INDEX_KEY] = metadata[base.INDEX_KEY]
        schema = info.model_dump(mode="json")["payload_schema"]
        return {**config, "hnsw_ef": self.index.hnsw_ef, "payload_schema": schema}

    def scroll_points(
        self, name: str, offset: str | None = None, limit: int = SCROLL_PAGE
    ) -> tuple[list[base.PointToStore], str | None]:
        records, following = self._call(
            "read",
            lambda: self.client.scroll(name, offset=offset, limit=limit, with_payload=True, with_vectors=True),
            name,
        )
        return [_stored_point(record) for record in records], None if following is None else str(following)

    def payload_indexes(self, name: str) -> list[base.PayloadIndex]:
        """The server's payload schema; in local mode, which keeps no payload index, those this class made."""
        physical = self.resolve_alias(name) or name
        info = self._call("read collection", lambda: self.client.get_collection(physical), physical)
        found = {
            field: base.PayloadIndex(
                field, str(schema.data_type.value), bool(getattr(schema.params, "is_tenant", None))
            )
            for field, schema in (info.payload_schema or {}).items()
        }
        for recorded in (info.config.metadata or {}).get(PAYLOAD_INDEXES_KEY) or []:
            found.setdefault(recorded["field"], base.PayloadIndex(**recorded))
        return sorted(found.values(), key=lambda index: index.field)

    def create_payload_index(self, name: str, index: base.PayloadIndex) -> None:
        self._create_payload_index(name, index)
        info = self._call("read collection", lambda: self.client.get_collection(name), name)
        recorded = [i for i in (info.config.metadata or {}).get(PAYLOAD_INDEXES_KEY) or [] if i["field"] != index.field]
        metadata = {PAYLOAD_INDEXES_KEY: [*recorded, asdict(index)]}
        self._call("record payload index", lambda: self.client.update_collection(name, metadata=metadata), name)

    def _create_payload_index(self, name: str, index: base.PayloadIndex) -> None:
        schema: models.PayloadSchemaType | models.KeywordIndexParams = models.PayloadSchemaType(index.kind)
        if index.kind == "keyword" and index.tenant:
            schema = models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True)
        with warnings.catch_warnings():  # local mode warns that its payload indexes do nothing
            warnings.simplefilter("ignore", UserWarning)
            self._call(
                "create payload index",
                lambda: self.client.create_payload_index(name, field_name=index.field, field_schema=schema, wait=True),
                name,
            )

    # --- internals ---------------------------------------------------------------------------------

    def _require(self, name: str) -> None:
        """Raise the missing-collection error for ``name``, as a real read would."""
        self._call("read collection", lambda: self.client.get_collection(name), name)

    def _call(self, action: str, call: Callable[[], T], collection: str | None = None) -> T:
        """One client call: retried while transient, then turned into a StoreError for people."""
        try:
            return call_with_retries(call, location=self.location, tries=self._tries, sleep=self._sleep)
        except base.StoreError:
            raise
        except UnexpectedResponse as exc:
            if exc.status_code == 404 and collection is not None:
                raise _Missing(collection, self.location) from exc
            if exc.status_code in (401, 403):
                raise base.StoreError(
                    f"The Qdrant server at {self.location} refused the credentials ({exc.status_code}). "
                    "Check TAFSIR_QDRANT_API_KEY."
                ) from exc
            raise base.StoreError(f"The Qdrant server at {self.location} could not {action}: {_describe(exc)}") from exc
        except (ValueError, RuntimeError) as exc:
            # Local mode reports server-side errors as ValueError ("Collection x not found").
            if collection is not None and "not found" in str(exc):
                raise _Missing(collection, self.location) from exc
            raise base.StoreError(f"Qdrant at {self.location} could not {action}: {exc}") from exc


class _Missing(base.StoreError):
    def __init__(self, name: str, location: str) -> None:
        super().__init__(str(base.missing_collection_error(name, location)))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, UnexpectedResponse):
        content = exc.content.decode("utf-8", errors="replace")[:200]
        return f"HTTP {exc.status_code} {exc.reason_phrase}: {content}".strip()
    if isinstance(exc, ResponseHandlingException):
        return _describe(exc.source)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# --- translation to qdrant-client models -------------------------------------------------------------


def _server_filter(point_filter: base.PointFilter | None) -> models.Filter | None:
    base.check_resolved(point_filter)
    if point_filter is None:
        return None
    must: list[models.Condition] = []
    if point_filter.surahs is not None:
        must.append(
            models.FieldCondition(key="surah", match=models.MatchAny(any=[int(s) for s in point_filter.surahs]))
        )
    if point_filter.ayah_min is not None or point_filter.ayah_max is not None:
        ayah_range = models.Range(gte=point_filter.ayah_min, lte=point_filter.ayah_max)
        must.append(models.FieldCondition(key="ayah", range=ayah_range))
    if point_filter.editions is not None:
        editions = [str(e) for e in point_filter.editions]
        must.append(models.FieldCondition(key="edition", match=models.MatchAny(any=editions)))
    if point_filter.ayat is not None:
        pairs: list[models.Condition] = [
            models.Filter(
                must=[
                    models.FieldCondition(key="surah", match=models.MatchValue(value=int(surah))),
                    models.FieldCondition(key="ayah", match=models.MatchValue(value=int(ayah))),
                ]
            )
            for surah, ayah in point_filter.ayat
        ]
        must.append(models.Filter(should=pairs))
    return models.Filter(must=must) if must else None


def _stored_point(record: models.Record) -> base.PointToStore:
    """A scrolled record (with vectors and payload) as a whole point, ready to upsert elsewhere."""
    vectors = dict(record.vector) if isinstance(record.vector, dict) else {}
    dense = vectors.pop(base.DENSE, None) or []
    translation = vectors.pop(base.DENSE_TRANSLATION, None)
    sparse = {
        name: base.SparseVector(list(vector.indices), list(vector.values))
        for name, vector in vectors.items()
        if name in base.SPARSE_VECTORS and isinstance(vector, models.SparseVector)
    }
    return base.PointToStore(
        str(record.id),
        [float(x) for x in dense],
        sparse,
        dict(record.payload or {}),
        [float(x) for x in translation] if isinstance(translation, list) else None,
    )


def _server_sparse(vector: base.SparseVector) -> models.SparseVector:
    return models.SparseVector(indices=list(vector.indices), values=list(vector.values))


def _index_arguments(index: base.IndexConfig) -> dict[str, Any]:
    """``create_collection`` arguments for the index settings (as Edge's in services/store/edge_types.py)."""
    quantization = None
    if index.quantization is base.Quantization.INT8:
        quantization = models.ScalarQuantization(
            scalar=models.ScalarQuantizationConfig(
                type=models.ScalarType.INT8, quantile=0.99, always_ram=index.quantization_always_ram
            )
        )
    return {
        "hnsw_config": models.HnswConfigDiff(m=index.hnsw_m, ef_construct=index.hnsw_ef_construct),
        "optimizers_config": models.OptimizersConfigDiff(indexing_threshold=index.indexing_threshold_kb),
        "quantization_config": quantization,
        "on_disk_payload": index.payload_on_disk,
    }


def _query_arguments(request: base.SearchRequest, index: base.IndexConfig | None = None) -> dict[str, Any]:
    """A search of one list (see ``list_requests``: a fusion is made of several, fused by the caller)."""
    (using, _), *more = request.lists()
    if more:
        raise ValueError("one list at a time: split a fusion with list_requests")
    return {
        "query": list(request.dense or []) if using in base.DENSE_VECTORS else _server_sparse(request.sparse),
        "using": using,
        "filter": _server_filter(request.filter),
        "params": base.search_params(request, index or base.IndexConfig(), models),
        "limit": base.candidate_limit(request),
        "with_payload": False,  # fetched for the returned hits only: see base.attach_payloads
        "with_vector": False,
        "score_threshold": request.score_threshold,
    }
