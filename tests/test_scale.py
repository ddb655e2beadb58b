"""Large collections: the index settings reach both stores, exact search is the reference recall is measured
against, and bench/scale.py measures it (at small sizes here; the figures are in docs/BENCHMARKS.md)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from http.server import ThreadingHTTPServer

import numpy as np
import pytest

from ingest.pipeline import IngestPipeline
from services.embedding import Embedder
from services.settings import Settings
from services.store import open_store
from services.store.base import (
    SPARSE,
    CollectionSpec,
    Mode,
    PointFilter,
    PointToStore,
    SearchRequest,
    SparseVector,
)
from services.store.edge import EdgeStore
from tests.conftest import ROOT
from tests.test_compose import _RecordingQdrant
from tests.test_pipeline import make_source

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")

DIM = 16
SPEC = CollectionSpec(dense_size=DIM, model="test-model@abc", fingerprint="f1")
LARGE = {
    "hnsw_m": 8,
    "hnsw_ef_construct": 40,
    "hnsw_ef": 32,
    "vectors_on_disk": True,
    "sparse_on_disk": True,
    "vector_quantization": "int8",
    "indexing_threshold_kb": 1,  # a few hundred points of 16 floats get their HNSW graph
}


def random_points(count: int, seed: int = 0) -> tuple[np.ndarray, list[PointToStore]]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(count, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    points = [
        PointToStore(
            str(uuid.UUID(int=number + 1)),
            vector.tolist(),
            {SPARSE: SparseVector([number % 50], [1.0])},
            {"edition": f"id.e{number % 3}", "surah": 1 + number % 114, "ayah": 1},
        )
        for number, vector in enumerate(vectors)
    ]
    return vectors, points


def test_index_settings_reach_the_embedded_store_and_its_index_is_built(tmp_path):
    store = open_store(Settings(_env_file=None, qdrant_path=tmp_path / "qdrant", **LARGE))
    try:
        store.create_collection("big", SPEC)
        _, points = random_points(600)
        store.upsert("big", points)
        store.optimize("big")
        recorded = store.index_settings("big")
    finally:
        store.close()
    assert recorded["quantization_config"]["scalar"]["type"] == "int8"
    assert recorded["quantization_config"]["scalar"]["memory"] == "pinned"  # the int8 copy stays in RAM
    assert (recorded["hnsw_config"]["m"], recorded["hnsw_config"]["ef_construct"]) == (8, 40)
    assert recorded["vectors"]["dense"]["memory"] == "cold"  # the originals on disk
    assert {params["memory"] for params in recorded["sparse_vectors"].values()} == {"cold"}
    assert recorded["optimizers"]["indexing_threshold"] == 1
    assert recorded["hnsw_ef"] == 32
    assert recorded["tenant_fields"] == ["edition"]
    assert recorded["indexed_vectors"] >= 600  # the dense vectors are in an HNSW graph, not scanned


def test_a_collection_keeps_the_index_settings_it_was_created_with(tmp_path):
    """Changed settings apply to the next collection (a rebuild); an existing one opens as it was built."""
    with open_store(Settings(_env_file=None, qdrant_path=tmp_path / "qdrant", **LARGE)) as store:
        store.create_collection("big", SPEC)
        store.upsert("big", random_points(50)[1])
    with open_store(Settings(_env_file=None, qdrant_path=tmp_path / "qdrant", vector_quantization="none")) as store:
        assert store.index_settings("big")["quantization_config"]["scalar"]["type"] == "int8"
        assert store.count("big") == 50
        store.create_collection("next", SPEC)
        assert store.index_settings("next").get("quantization_config") is None


def test_exact_search_returns_the_true_nearest_neighbours(tmp_path):
    vectors, points = random_points(800, seed=1)
    store = open_store(Settings(_env_file=None, qdrant_path=tmp_path / "qdrant", **LARGE))
    try:
        store.create_collection("big", SPEC)
        store.upsert("big", points)
        store.optimize("big")
        query = vectors[5] + 0.3 * vectors[6]
        query /= np.linalg.norm(query)
        truth = [points[i].id for i in np.argsort(-(vectors @ query))[:10]]
        request = SearchRequest(mode=Mode.DENSE, limit=10, dense=query.tolist(), exact=True)
        assert [hit.id for hit in store.search("big", request)] == truth
        only = PointFilter(editions=["id.e1"])
        in_edition = [i for i in np.argsort(-(vectors @ query)) if i % 3 == 1][:10]
        filtered = SearchRequest(mode=Mode.DENSE, limit=10, dense=query.tolist(), exact=True, filter=only)
        assert [hit.id for hit in store.search("big", filtered)] == [points[i].id for i in in_edition]
    finally:
        store.close()


def test_index_settings_and_the_tenant_flag_reach_a_qdrant_servers_requests():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RecordingQdrant)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        store = open_store(Settings(_env_file=None, qdrant_url=url, **LARGE))
        store.create_collection("tafsir-scale", SPEC)
        store.close()
    finally:
        server.shutdown()
        server.server_close()
    requests = [(path.split("?")[0], body) for method, path, body in _RecordingQdrant.requests if method == "PUT"]
    (create,) = [body for path, body in requests if path == "/collections/tafsir-scale"]
    assert create["hnsw_config"] == {"m": 8, "ef_construct": 40}
    assert create["quantization_config"] == {"scalar": {"type": "int8", "quantile": 0.99, "always_ram": True}}
    assert create["optimizers_config"] == {"indexing_threshold": 1}
    assert create["vectors"]["dense"]["on_disk"] is True
    assert {params["index"]["on_disk"] for params in create["sparse_vectors"].values()} == {True}
    indexes = {body["field_name"]: body["field_schema"] for path, body in requests if path.endswith("/index")}
    assert indexes["edition"] == {"type": "keyword", "is_tenant": True}
    assert indexes["surah"] == "integer"


# --- bench/scale.py ----------------------------------------------------------------------------------------------


def test_recall_at_k_is_the_share_of_the_exact_top_k_found():
    sys.path.insert(0, str(ROOT / "bench"))
    from scale import recall_at_k

    assert recall_at_k(["a", "b", "c"], ["a", "b", "c"], k=3) == 1.0
    assert recall_at_k(["a", "x", "y", "b"], ["a", "b", "c"], k=3) == pytest.approx(1 / 3)  # b is past the cut
    assert recall_at_k(["c", "b", "a"], ["a", "b", "c"], k=3) == 1.0  # order within the top k does not count
    assert recall_at_k([], [], k=10) == 1.0


def test_scale_benchmark_builds_measures_and_reports_the_recorded_settings(tmp_path, tiny_model):
    settings = Settings(_env_file=None, qdrant_path=tmp_path / "corpus", embedding_model=str(tiny_model))
    with open_store(settings) as store:
        IngestPipeline(settings, store, Embedder(settings)).run(make_source("id.kecil", surahs=range(100, 115)))
    command = [
        sys.executable,
        str(ROOT / "bench" / "scale.py"),
        "--sizes=400",
        "--configs=int8",
        "--stores=edge,server",
        "--indexing-threshold-kb=1",
        "--ef=16",
        "--queries=12",
        "--server-queries=4",
        "--questions=none",
        f"--corpus-store={tmp_path / 'corpus'}",
        f"--work-dir={tmp_path / 'work'}",
    ]
    result = subprocess.run(command, capture_output=True, encoding="utf-8", timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert [(run["store"], run["size"]) for run in report["runs"]] == [("edge", 400), ("server", 400)]
    edge = report["runs"][0]
    assert edge["build"]["recorded"]["quantization_config"]["scalar"]["type"] == "int8"
    assert edge["build"]["indexed_vectors"] >= 400
    measured = edge["serve"]["ef=16"]
    for key in ("dense", "dense+edition", "sparse", "sparse+edition", "hybrid", "hybrid+edition"):
        assert 0 < measured[key]["p50_ms"] <= measured[key]["p95_ms"] <= measured[key]["p99_ms"]
    for key in ("dense", "dense+edition", "hybrid", "hybrid+edition"):
        assert 0.0 <= measured[key]["recall_at_10"] <= 1.0
    assert measured["rss"]["rss_mb"] > 0 and edge["build"]["disk_mb"] > 0
    assert not (tmp_path / "work" / "edge-int8-400").exists()  # the built collections are deleted


class CountingEdgeStore(EdgeStore):
    """The real embedded store, counting its index builds."""

    def __init__(self, path) -> None:
        super().__init__(path)
        self.index_builds = 0

    def optimize(self, name: str) -> None:
        self.index_builds += 1
        super().optimize(name)


def test_a_long_ingest_builds_the_embedded_stores_indexes_as_it_goes(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setattr("ingest.pipeline.INDEX_EVERY", 64)
    settings = Settings(
        _env_file=None, qdrant_path=tmp_path / "qdrant", embedding_model=str(tiny_model), upsert_batch_size=32
    )
    store = CountingEdgeStore(settings.qdrant_path)
    try:
        summary = IngestPipeline(settings, store, Embedder(settings)).run(make_source("id.panjang", surahs=[2]))
        assert summary.embedded > 4 * 64
        assert store.index_builds >= summary.embedded // 64  # every 64 points, and once at the end
        assert store.count("tafsir") == summary.chunks
    finally:
        store.close()
