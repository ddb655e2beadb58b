"""Copy a collection from one store to another: ``tafsir migrate`` (the embedded store <-> a Qdrant server).

What moves is the collection behind the alias, under its own name: every point as stored (the dense and
sparse vectors and the payload, so nothing is embedded again), its :class:`CollectionSpec` (the model identity
and the fingerprint an ingest checks before writing into it), its index settings and its payload indexes.
The alias moves last, as the ingest pipeline moves it after a build: readers of the target see nothing until
the copy is complete and checked, and an alias the target already has is replaced only when asked.

A run killed half-way leaves the collection in the target without an alias. The next run finds it (same
name, same spec), reads which points it holds already (their ids and hashes, no vectors) and copies the
rest; points of the copy that the source no longer holds are deleted before the check.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from services.store.base import (
    DENSE_TRANSLATION,
    SPARSE,
    CollectionSpec,
    Hit,
    Mode,
    PointToStore,
    SearchRequest,
    StoredHash,
    StoreError,
    VectorStore,
    collection_index,
)

BATCH = 256  # points a page: read from the source, written to the target in one call
SAMPLE = 20  # points whose vectors serve as the check's queries
TOP = 10
SCORE_NOISE = 1e-5  # scores closer than this are equal for the check (see _tie_groups)

ProgressCallback = Callable[[int, int], None]  # (points done, points in the source)


class AliasTaken(ValueError):
    """The target already has the alias and ``replace`` was not given; nothing was written."""

    def __init__(self, alias: str, collection: str, location: str) -> None:
        self.alias = alias
        super().__init__(
            f"refused: alias {alias!r} already exists in {location} (it points to collection {collection!r}); "
            "nothing was written. Run again with --replace to copy the collection and move the alias to the copy "
            "(the collection the alias points to now is then deleted)."
        )


class VerificationError(RuntimeError):
    """The copy differs from its source; the alias was not moved."""


@dataclass
class MigrationSummary:
    alias: str
    collection: str
    source: str
    target: str
    model: str
    points: int = 0  # points in the source collection
    copied: int = 0  # written by this run
    kept: int = 0  # already in the target from an earlier, interrupted run
    deleted: int = 0  # in the target but no longer in the source
    resumed: bool = False
    editions: dict[str, int] = field(default_factory=dict)
    index: dict[str, Any] = field(default_factory=dict)
    payload_indexes: list[dict[str, Any]] = field(default_factory=list)
    checked_queries: int = 0  # searches run on both sides with the same top 10
    replaced: str | None = None  # the collection the target's alias pointed to before, now deleted
    seconds: float = 0.0
    points_per_second: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def migrate(
    source: VectorStore,
    target: VectorStore,
    alias: str,
    *,
    replace: bool = False,
    batch: int = BATCH,
    sample: int = SAMPLE,
    progress: ProgressCallback | None = None,
) -> MigrationSummary:
    """Copy the collection behind ``alias`` in ``source`` to ``target``, check it and move ``target``'s alias."""
    started = time.monotonic()
    name, spec, total = _source_collection(source, alias)
    previous = target.resolve_alias(alias)
    if previous is not None and not replace:
        raise AliasTaken(alias, previous, target.location)
    summary = MigrationSummary(alias, name, source.location, target.location, spec.model, points=total)
    summary.resumed = _prepare_target(source, target, name, spec, summary)
    stored = {h.id: h for h in target.iter_hashes(name)} if summary.resumed else {}
    samples = _copy(source, target, name, stored, summary, batch, max(1, total // max(sample, 1)), progress)
    target.optimize(name)  # Edge builds its HNSW graph here; a server in the background
    summary.editions = _check_counts(source, target, name)
    summary.checked_queries = _check_searches(source, target, name, samples)
    target.swap_alias(alias, name)
    if previous is not None and previous != name:
        target.drop_collection(previous)
        summary.replaced = previous
    summary.seconds = round(time.monotonic() - started, 3)
    summary.points_per_second = round(summary.copied / summary.seconds, 1) if summary.seconds else 0.0
    return summary


def _source_collection(source: VectorStore, alias: str) -> tuple[str, CollectionSpec, int]:
    name = source.resolve_alias(alias)
    info = source.collection_info(name) if name is not None else None
    if name is None or info is None:
        raise StoreError(f"No alias {alias!r} in {source.location}: nothing to migrate (check TAFSIR_COLLECTION).")
    if info.spec is None:
        raise StoreError(
            f"Collection {name!r} in {source.location} records no model identity (not made by `tafsir ingest`); "
            "it cannot be migrated."
        )
    return name, info.spec, info.points


def _prepare_target(
    source: VectorStore, target: VectorStore, name: str, spec: CollectionSpec, summary: MigrationSummary
) -> bool:
    """Create the collection in the target, or find the one an interrupted run left; True when resumed."""
    index = collection_index(source.index_settings(name), source.index)
    summary.index = index.described() | {"hnsw_ef": target.index.hnsw_ef}
    existing = target.collection_info(name)
    if existing is not None and existing.name == name:
        if existing.spec != spec:
            raise StoreError(
                f"Collection {name!r} in {target.location} holds another model or layout ({existing.spec}); "
                "delete it or migrate another collection."
            )
        resumed = True
    else:
        target.create_collection(name, spec, index=index)
        resumed = False
    present = {i.field for i in target.payload_indexes(name)}
    for payload_index in source.payload_indexes(name):
        if payload_index.field not in present:
            target.create_payload_index(name, payload_index)
    summary.payload_indexes = [asdict(i) for i in target.payload_indexes(name)]
    return resumed


def _copy(
    source: VectorStore,
    target: VectorStore,
    name: str,
    stored: dict[str, StoredHash],
    summary: MigrationSummary,
    batch: int,
    every: int,
    progress: ProgressCallback | None,
) -> list[PointToStore]:
    """Every source point into the target, a page at a time; returns every ``every``-th point, for the check."""
    seen: set[str] = set()
    samples: list[PointToStore] = []
    offset: str | None = None
    done = 0
    if progress is not None:
        progress(0, summary.points)
    while True:
        points, offset = source.scroll_points(name, offset, batch)
        missing = [point for point in points if not _already_copied(point, stored.get(point.id))]
        target.upsert(name, missing)
        summary.copied += len(missing)
        summary.kept += len(points) - len(missing)
        for point in points:
            if done % every == 0:
                samples.append(point)
            seen.add(point.id)
            done += 1
        if progress is not None:
            progress(done, max(done, summary.points))
        if offset is None:
            break
    stale = [point_id for point_id in stored if point_id not in seen]
    target.delete(name, stale)
    summary.deleted = len(stale)
    return samples


def _already_copied(point: PointToStore, stored: StoredHash | None) -> bool:
    """Whether an earlier run wrote this very point: same id and the same four hashes (a point without a
    content hash is always written again; an upsert by id is idempotent)."""
    payload = point.payload
    if stored is None or not payload.get("content_hash"):
        return False
    return (stored.content_hash, stored.sparse_hash, stored.dense_hash, stored.dense_tr_hash) == (
        payload.get("content_hash"),
        payload.get("sparse_hash"),
        payload.get("dense_hash"),
        payload.get("dense_tr_hash"),
    )


def _check_counts(source: VectorStore, target: VectorStore, name: str) -> dict[str, int]:
    expected, found = source.editions(name), target.editions(name)
    if expected != found or source.count(name) != target.count(name):
        raise VerificationError(
            f"The copy of {name!r} in {target.location} differs from its source: points per edition "
            f"{found} (total {target.count(name)}), expected {expected} (total {source.count(name)}). "
            "The alias was not moved; run the migration again."
        )
    return found


def _check_searches(source: VectorStore, target: VectorStore, name: str, samples: list[PointToStore]) -> int:
    """The same top 10 on both sides (up to the order of equal scores) for a dense, a translation-vector (where the
    point has one) and a BM25 search from each sampled point's own vectors.

    Exact searches compare the data, not two HNSW graphs; no model is needed, so a store built with a model
    this machine lacks migrates too."""
    checked = 0
    for point in samples:
        requests = [SearchRequest(mode=Mode.DENSE, limit=TOP, dense=point.dense, exact=True)]
        if point.dense_tr is not None:
            requests.append(
                SearchRequest(
                    mode=Mode.DENSE, limit=TOP, dense=point.dense_tr, dense_using=DENSE_TRANSLATION, exact=True
                )
            )
        sparse = point.sparse.get(SPARSE)
        if sparse is not None and sparse.indices:
            requests.append(SearchRequest(mode=Mode.SPARSE, limit=TOP, sparse=sparse, exact=True))
        for request in requests:
            expected, found = source.search(name, request), target.search(name, request)
            if _tie_groups(expected) != _tie_groups(found):
                raise VerificationError(
                    f"The copy of {name!r} in {target.location} answers a {request.mode.value} search from point "
                    f"{point.id} with {[h.id for h in found]}, its source with {[h.id for h in expected]}. "
                    "The alias was not moved."
                )
            checked += 1
    return checked


def _tie_groups(hits: list[Hit]) -> list[frozenset[str] | int]:
    """A ranking as the sets of ids of equal scores, best first; the last group is cut by the limit, so only its
    size counts. Scores equal within :data:`SCORE_NOISE`: an engine's float rounding can differ for two rows that
    hold the same vector (qdrant-client's local mode: numpy's matrix product), which orders them either way."""
    groups: list[list[Hit]] = []
    for hit in hits:
        if groups and abs(groups[-1][-1].score - hit.score) <= SCORE_NOISE:
            groups[-1].append(hit)
        else:
            groups.append([hit])
    return [frozenset(h.id for h in group) for group in groups[:-1]] + [len(group) for group in groups[-1:]]
