"""The embedded store: Qdrant Edge (PyPI ``qdrant-edge-py``), the Qdrant engine in-process.

Layout under ``path``::

    .lock                       held with flock while a process has the store open (pid, command, since)
    aliases.json                {alias: collection}, replaced atomically: Edge has no aliases of its own
    collections/<name>/shard/   one EdgeShard folder per physical collection
    collections/<name>/spec.json

One process at a time: an EdgeShard locks its WAL, so a second process could not open a shard
anyway; the store-wide ``.lock`` turns that into a message a person can act on, before anything is
touched. Inside the process every method is thread-safe: the API serves queries while an
in-process re-ingest builds a new collection, moves the alias and drops the old one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import qdrant_edge as edge

from services import locking
from services.files import fsync_folder, write_atomically
from services.store import base
from services.store.edge_types import (
    edge_field_index,
    edge_filter,
    edge_point,
    edge_query,
    shard_config,
    stored_payload_index,
    stored_point,
    updated_vectors,
)

log = logging.getLogger(__name__)

SCROLL_PAGE = 1000
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")
_REBUILD = "Run `tafsir ingest --full` to rebuild it."


@dataclass
class _OpenShard:
    shard: edge.EdgeShard
    users: int = 0  # calls running on the shard right now; it is closed only at zero


class EdgeStore:
    """``VectorStore`` on Qdrant Edge shards in one folder."""

    def __init__(self, path: Path, index: base.IndexConfig | None = None) -> None:
        self.path = Path(path)
        self.index = index or base.IndexConfig()  # applied to collections created from now on; hnsw_ef to every search
        self.location = str(self.path)
        self.archive_root = self.path / "sources"
        self._collections = self.path / "collections"
        self._aliases_file = self.path / "aliases.json"
        try:
            self._collections.mkdir(parents=True, exist_ok=True)
            self._lock_fd = _acquire_store_lock(self.path)
        except OSError as exc:
            raise base.StoreError(
                f"Cannot use {self.path} for the embedded Qdrant store: {exc}. "
                "Set TAFSIR_QDRANT_PATH to a writable folder."
            ) from exc
        # One condition guards the shard cache, the alias map and the drop bookkeeping.
        self._cond = threading.Condition()
        self._shards: dict[str, _OpenShard] = {}
        self._dropping: set[str] = set()
        self._aliases: dict[str, str] | None = None  # read lazily; we hold the lock, so it stays valid
        self._vector_names: dict[str, frozenset[str]] = {}  # per physical collection, from its shard's config
        self._closed = False
        for leftover in self._collections.glob(".*-*"):  # a create or drop interrupted by a crash
            if leftover.name.startswith((".building-", ".trash-")):
                shutil.rmtree(leftover, ignore_errors=True)

    # --- lifecycle ---------------------------------------------------------------------------------

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True  # refuse new calls, then let running ones finish
            self._cond.wait_for(lambda: all(entry.users == 0 for entry in self._shards.values()))
            try:
                for entry in self._shards.values():
                    entry.shard.close()
            finally:
                self._shards.clear()
                locking.release(self._lock_fd)

    def __enter__(self) -> EdgeStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- collections and aliases -------------------------------------------------------------------

    def resolve_alias(self, alias: str) -> str | None:
        """The collection ``alias`` points to, or None.

        A damaged alias file counts as no alias here (with a warning), so that an ingest can rebuild
        and write a fresh one; reads through the alias report the damage instead.
        """
        with self._cond:
            self._check_open()
            target = self._alias_map(tolerant=True).get(alias)
            return target if target is not None and self._exists(target) else None

    def list_collections(self) -> list[str]:
        with self._cond:
            self._check_open()
            return sorted(
                folder.name
                for folder in self._collections.iterdir()
                if folder.is_dir() and not folder.name.startswith(".") and folder.name not in self._dropping
            )

    def collection_info(self, name: str) -> base.CollectionInfo | None:
        """``None`` when neither a collection nor an alias has this name."""
        try:
            with self._use(name) as (physical, shard):
                points = shard.count(edge.CountRequest(exact=True))
        except _Missing:
            return None
        return base.CollectionInfo(name=physical, spec=self._read_spec(physical), points=points)

    def create_collection(self, name: str, spec: base.CollectionSpec, index: base.IndexConfig | None = None) -> None:
        _check_name(name)
        with self._cond:
            self._check_open()
            self._cond.wait_for(lambda: name not in self._dropping)
            folder = self._collections / name
            if folder.exists():
                raise base.StoreError(f"Collection {name!r} already exists in {self.location}.")
            if name in self._alias_map(tolerant=True):
                raise base.StoreError(f"{name!r} is already an alias in {self.location}; pick another name.")
            # Built aside and renamed into place: a crash half-way leaves no half-made collection.
            # The shard is closed before the rename and opened again at its final path on first use.
            staging = self._collections / f".building-{name}-{uuid.uuid4().hex}"
            try:
                staging.mkdir()
                shard = edge.EdgeShard.create(str(staging / "shard"), shard_config(spec, index or self.index))
                try:
                    # The edition index is a tenant one: Qdrant keeps each edition's points together on disk, so a
                    # search filtered by edition reads one edition's
                    # (https://qdrant.tech/documentation/guides/multiple-partitions/).
                    for payload_index in base.standard_payload_indexes():
                        shard.update(edge_field_index(payload_index))
                    shard.flush()
                finally:
                    shard.close()
                _write_json_atomically(staging / "spec.json", asdict(spec))
                staging.rename(folder)
                fsync_folder(self._collections)
            except Exception as exc:
                shutil.rmtree(staging, ignore_errors=True)
                raise base.StoreError(f"Could not create collection {name!r} in {self._collections}: {exc}") from exc

    def drop_collection(self, name: str) -> None:
        """Close and delete a physical collection (and aliases to it, as Qdrant does).

        Waits for calls running on it in other threads to finish; calls arriving meanwhile see it
        as missing. Dropping a name that does not exist does nothing.
        """
        _check_name(name)
        with self._cond:
            self._check_open()
            self._cond.wait_for(lambda: name not in self._dropping)
            folder = self._collections / name
            if not folder.is_dir():
                return
            self._dropping.add(name)
            try:
                entry = self._shards.get(name)
                self._cond.wait_for(lambda: entry is None or entry.users == 0)
                self._shards.pop(name, None)
                self._vector_names.pop(name, None)
                aliases = self._alias_map(tolerant=True)
                if name in aliases.values():
                    self._write_aliases({alias: target for alias, target in aliases.items() if target != name})
            except BaseException:
                self._dropping.discard(name)
                raise
        try:
            if entry is not None:
                entry.shard.close()
            # Rename first: a crash half-way through rmtree must not leave a broken collection behind.
            trash = self._collections / f".trash-{name}-{uuid.uuid4().hex}"
            folder.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)
        finally:
            with self._cond:
                self._dropping.discard(name)
                self._cond.notify_all()

    def swap_alias(self, alias: str, name: str) -> None:
        _check_name(alias)
        with self._cond:
            self._check_open()
            if not self._exists(name):
                raise base.missing_collection_error(name, self.location)
            if (self._collections / alias).exists():
                raise base.StoreError(f"{alias!r} is a collection in {self.location}; an alias cannot take its name.")
            aliases = self._alias_map(tolerant=True)
            self._write_aliases({**aliases, alias: name})

    # --- points --------------------------------------------------------------------------------------

    def upsert(self, name: str, points: Sequence[base.PointToStore]) -> None:
        if not points:
            return
        operation = edge.UpdateOperation.upsert_points([edge_point(point) for point in points])
        with self._use(name) as (physical, shard):
            try:
                shard.update(operation)
                shard.flush()  # durable on return: a kill -9 afterwards loses nothing
            except Exception as exc:
                raise self._failure("upsert into", physical, exc) from exc

    def update_sparse(self, name: str, updates: Sequence[base.SparseUpdate]) -> None:
        if not updates:
            return
        operations = [
            edge.UpdateOperation.update_vectors([edge.PointVectors(u.id, updated_vectors(u)) for u in updates]),
            *(edge.UpdateOperation.set_payload([u.id], u.payload) for u in updates if u.payload),
        ]
        with self._use(name) as (physical, shard):
            try:
                for operation in operations:
                    shard.update(operation)
                shard.flush()
            except Exception as exc:
                raise self._failure("update vectors in", physical, exc) from exc

    def add_vectors(self, name: str) -> list[str]:
        """Add the vectors of ``DENSE_VECTORS`` and ``SPARSE_VECTORS`` that the collection lacks (made before they
        existed), empty until points get them (``update_sparse``); the names added. Edge records them in the shard's
        config."""
        with self._use(name) as (physical, shard):
            present = self._vectors(physical)
            missing = [n for n in (*base.DENSE_VECTORS, *base.SPARSE_VECTORS) if n not in present]
            try:
                for vector in missing:
                    # Edge's operations take no memory setting: an added vector lives where Qdrant's default keeps it.
                    if vector in base.DENSE_VECTORS:
                        size = (self._read_spec(physical) or _no_spec(physical)).dense_size
                        operation = edge.UpdateOperation.create_dense_vector(vector, size, edge.Distance.Cosine)
                    else:
                        operation = edge.UpdateOperation.create_sparse_vector(vector, modifier=edge.Modifier.Idf)
                    shard.update(operation)
                if missing:
                    shard.flush()
            except Exception as exc:
                raise self._failure("add vectors to", physical, exc) from exc
            finally:
                with self._cond:
                    self._vector_names.pop(physical, None)
        return missing

    def delete(self, name: str, ids: Iterable[str]) -> None:
        point_ids: list[edge.PointId] = list(ids)
        if not point_ids:
            return
        with self._use(name) as (physical, shard):
            try:
                shard.update(edge.UpdateOperation.delete_points(point_ids))
                shard.flush()
            except Exception as exc:
                raise self._failure("delete from", physical, exc) from exc

    def count(self, name: str, filter: base.PointFilter | None = None) -> int:
        with self._use(name) as (physical, shard):
            if base.matches_nothing(filter):
                return 0
            try:
                return shard.count(edge.CountRequest(exact=True, filter=edge_filter(filter)))
            except Exception as exc:
                raise self._failure("count", physical, exc) from exc

    def search(self, name: str, request: base.SearchRequest) -> list[base.Hit]:
        base.check_search_request(request)
        with self._use(name) as (physical, shard):
            if base.matches_nothing(request.filter):
                return []
            request = base.present_lists(request, self._vectors(physical), physical, self.location)
            try:
                results = [
                    base.complete_ties(lambda limit, part=part: self._scored(shard, part, limit), part)
                    for part in base.list_requests(request)
                ]
                ranked = base.fuse(results, request)
                records = shard.retrieve([hit.id for hit in ranked], with_payload=True, with_vector=False)
            except Exception as exc:
                raise self._failure("search", physical, exc) from exc
        return base.attach_payloads(ranked, {str(record.id): record.payload or {} for record in records})

    def _scored(self, shard: edge.EdgeShard, request: base.SearchRequest, limit: int) -> list[base.Hit]:
        return [base.Hit(str(point.id), point.score) for point in shard.query(edge_query(request, self.index, limit))]

    def retrieve(self, name: str, filter: base.PointFilter, limit: int = 1000) -> list[base.Hit]:
        """Points matching ``filter`` (at most ``limit``, taken in id order) in reading order."""
        with self._use(name) as (physical, shard):
            if base.matches_nothing(filter) or limit < 1:
                return []
            request = edge.ScrollRequest(limit=limit, filter=edge_filter(filter), with_payload=True, with_vector=False)
            try:
                records, _ = shard.scroll(request)
            except Exception as exc:
                raise self._failure("read", physical, exc) from exc
        return sorted(
            (base.Hit(str(record.id), 0.0, record.payload or {}) for record in records), key=base.reading_order
        )

    def iter_hashes(self, name: str, edition: str | None = None) -> Iterator[base.StoredHash]:
        physical = self._physical_name(name)  # pinned: a swap of the alias mid-way changes nothing
        point_filter = edge_filter(base.PointFilter(editions=[edition])) if edition is not None else None
        offset: edge.PointId | None = None
        while True:
            request = edge.ScrollRequest(
                offset=offset,
                limit=SCROLL_PAGE,
                filter=point_filter,
                with_payload=list(base.HASH_FIELDS),
                with_vector=False,
            )
            # One page per use, so a slow consumer never holds the shard open between pages.
            with self._use(physical) as (_, shard):
                try:
                    records, offset = shard.scroll(request)
                except Exception as exc:
                    raise self._failure("read", physical, exc) from exc
            yield from (base.StoredHash.of(record.id, record.payload) for record in records)
            if offset is None:
                return

    def editions(self, name: str) -> dict[str, int]:
        with self._use(name) as (physical, shard):
            try:
                facets = shard.facet(edge.FacetRequest("edition", limit=100_000, exact=True))
            except Exception as exc:
                raise self._failure("count editions in", physical, exc) from exc
        return {str(hit.value): hit.count for hit in facets}

    def optimize(self, name: str) -> None:
        """Build the HNSW graph (and the quantized vectors) of the segments past the indexing threshold.

        Edge has no background optimizer: points stay in their unindexed segments, searched vector by vector,
        until this runs. It blocks until Qdrant has nothing left to optimize; the pipeline calls it after writing.
        """
        with self._use(name) as (physical, shard):
            try:
                shard.optimize()
            except Exception as exc:
                raise self._failure("optimize", physical, exc) from exc

    def index_settings(self, name: str) -> dict[str, Any]:
        """The collection's configuration as Qdrant Edge records it (its ``edge_config.json``), and its state."""
        with self._use(name) as (physical, shard):
            info = shard.info()
        config_file = self._collections / physical / "shard" / "edge_config.json"
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise base.StoreError(f"Cannot read {config_file}: {exc}. {_REBUILD}") from exc
        return {
            **config,
            "hnsw_ef": self.index.hnsw_ef,
            "segments": info.segments_count,
            "indexed_vectors": info.indexed_vectors_count,
            "tenant_fields": sorted(
                field for field, schema in info.payload_schema.items() if getattr(schema.params, "is_tenant", None)
            ),
        }

    def scroll_points(
        self, name: str, offset: str | None = None, limit: int = SCROLL_PAGE
    ) -> tuple[list[base.PointToStore], str | None]:
        request = edge.ScrollRequest(offset=offset, limit=limit, with_payload=True, with_vector=True)
        with self._use(name) as (physical, shard):
            try:
                records, following = shard.scroll(request)
            except Exception as exc:
                raise self._failure("read", physical, exc) from exc
        return [stored_point(record) for record in records], None if following is None else str(following)

    def payload_indexes(self, name: str) -> list[base.PayloadIndex]:
        with self._use(name) as (_, shard):
            schema = shard.info().payload_schema
        return sorted((stored_payload_index(field, info) for field, info in schema.items()), key=lambda i: i.field)

    def create_payload_index(self, name: str, index: base.PayloadIndex) -> None:
        with self._use(name) as (physical, shard):
            try:
                shard.update(edge_field_index(index))
                shard.flush()
            except Exception as exc:
                raise self._failure(f"index the field {index.field!r} of", physical, exc) from exc

    # --- internals ---------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise base.StoreError(f"The store at {self.location} is closed.")

    def _exists(self, name: str) -> bool:
        return _NAME.fullmatch(name) is not None and name not in self._dropping and (self._collections / name).is_dir()

    def _physical_name(self, name: str) -> str:
        with self._cond:
            self._check_open()
            return self._resolve(name)

    def _resolve(self, name: str) -> str:
        """Alias or collection name -> physical name; the caller holds ``_cond``."""
        if self._exists(name):
            return name
        target = self._alias_map().get(name) if _NAME.fullmatch(name) else None
        if target is None:
            raise _Missing(name, self.location)
        if not self._exists(target):
            raise base.StoreError(
                f"Alias {name!r} in {self._aliases_file} points to collection {target!r}, "
                f"which is missing from {self._collections}. {_REBUILD}"
            )
        return target

    @contextlib.contextmanager
    def _use(self, name: str) -> Iterator[tuple[str, edge.EdgeShard]]:
        """Borrow the shard behind ``name``: it stays open until the block ends, even if dropped."""
        with self._cond:
            self._check_open()
            physical = self._resolve(name)
            entry = self._shards.get(physical) or self._load(physical)
            entry.users += 1
        try:
            yield physical, entry.shard
        finally:
            with self._cond:
                entry.users -= 1
                if entry.users == 0:
                    self._cond.notify_all()

    def _load(self, name: str) -> _OpenShard:
        folder = self._collections / name / "shard"
        if not folder.is_dir():
            raise base.StoreError(f"The shard folder {folder} is missing. {_REBUILD}")
        try:
            entry = _OpenShard(edge.EdgeShard.load(str(folder)))
        except Exception as exc:
            raise base.StoreError(f"Could not open the shard {folder}: {exc}. {_REBUILD}") from exc
        self._shards[name] = entry
        return entry

    def _vectors(self, physical: str) -> frozenset[str]:
        """The vectors (dense and sparse) a collection has, as its shard's config records them (read once, kept)."""
        with self._cond:
            known = self._vector_names.get(physical)
        if known is not None:
            return known
        config = self._collections / physical / "shard" / "edge_config.json"
        try:
            names = frozenset(base.recorded_vectors(json.loads(config.read_text(encoding="utf-8"))))
        except (OSError, ValueError, AttributeError) as exc:
            raise base.StoreError(f"{config} is unreadable ({exc}). {_REBUILD}") from exc
        with self._cond:
            self._vector_names[physical] = names
        return names

    def _read_spec(self, name: str) -> base.CollectionSpec | None:
        spec_file = self._collections / name / "spec.json"
        if not spec_file.exists():
            return None
        try:
            return base.CollectionSpec(**json.loads(spec_file.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as exc:
            raise base.StoreError(f"{spec_file} is unreadable ({exc}). {_REBUILD}") from exc

    def _alias_map(self, tolerant: bool = False) -> dict[str, str]:
        """The alias pointers; a damaged file is an error for readers, and is replaced by writers."""
        if self._aliases is None:
            try:
                self._aliases = _read_aliases(self._aliases_file)
            except base.StoreError:
                if not tolerant:
                    raise
                log.warning("%s is damaged; it will be rewritten with the next alias change", self._aliases_file)
                return {}
        return dict(self._aliases)

    def _write_aliases(self, aliases: dict[str, str]) -> None:
        _write_json_atomically(self._aliases_file, aliases)
        self._aliases = dict(aliases)

    def _failure(self, action: str, name: str, exc: Exception) -> base.StoreError:
        return base.StoreError(f"Qdrant Edge could not {action} collection {name!r} in {self.location}: {exc}")


class _Missing(base.StoreError):
    def __init__(self, name: str, location: str) -> None:
        super().__init__(str(base.missing_collection_error(name, location)))


# --- files ----------------------------------------------------------------------------------------


def _no_spec(physical: str) -> base.CollectionSpec:
    raise base.StoreError(f"Collection {physical!r} records no spec (its vector size): {_REBUILD}")


def _check_name(name: str) -> None:
    # Names become folder names: no separators, no hidden or relative names.
    if not _NAME.fullmatch(name):
        raise base.StoreError(
            f"{name!r} is not a valid collection or alias name: use letters, digits, '_', '-' and '.', "
            "not starting with '.' or '-'."
        )


def _read_aliases(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        aliases = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise base.StoreError(f"The alias file {path} is damaged ({exc}). {_REBUILD}") from exc
    if not isinstance(aliases, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in aliases.items()
    ):
        raise base.StoreError(f"The alias file {path} is damaged (expected {{alias: collection}}). {_REBUILD}")
    return aliases


def _write_json_atomically(path: Path, data: Any) -> None:
    write_atomically(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def _acquire_store_lock(path: Path) -> int:
    try:
        return locking.acquire(path / ".lock")
    except locking.LockHeld as held:
        raise base.StoreLockedError(
            f"The embedded Qdrant store at {path} is in use by {held.holder}. "
            "Stop it, or set TAFSIR_QDRANT_PATH to another folder. In embedded mode `tafsir serve` "
            "runs scheduled re-ingestion itself; to share one store between processes, use a Qdrant "
            "server via TAFSIR_QDRANT_URL."
        ) from None
