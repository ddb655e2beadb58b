"""`tafsir migrate`: a collection copied between the embedded store (Qdrant Edge) and a server (qdrant-client's
local mode on a folder, ``local:PATH``, the client API a server speaks), whole, checked, resumable, and the
search of a copy identical to its source's."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest

from ingest.migrate import AliasTaken, VerificationError, migrate
from services.store.base import (
    SPARSE,
    SPARSE_CONTEXT,
    SPARSE_TRANSLATION,
    CollectionSpec,
    IndexConfig,
    Mode,
    PayloadIndex,
    PointToStore,
    Quantization,
    SearchRequest,
    SparseVector,
    VectorStore,
    collection_index,
)
from services.store.edge import EdgeStore
from services.store.server import ServerStore
from tests.conftest import ROOT, clean_env, tafsir_cmd

pytestmark = pytest.mark.filterwarnings("ignore:Local mode performs exact:UserWarning")

SPEC = CollectionSpec(dense_size=8, model="test-model@0123456789ab", fingerprint="fp-migrate")
COLLECTION = "tafsir-fpmigrate-20260101000000"
# Not the defaults: a copy made with the target's own settings would differ.
INDEX = IndexConfig(
    hnsw_m=8,
    hnsw_ef_construct=40,
    vectors_on_disk=False,
    payload_on_disk=False,
    sparse_on_disk=False,
    quantization=Quantization.INT8,
    quantization_always_ram=False,
    indexing_threshold_kb=1,
)
EXTRA_INDEX = PayloadIndex("chunk", "integer")


def make_points(count: int, seed: int = 7) -> list[PointToStore]:
    """Points of two editions whose texts repeat (every 5th point shares vectors and terms with another): ties."""
    rng = np.random.default_rng(seed)
    bases = rng.normal(size=(max(count // 5, 1), SPEC.dense_size))
    points = []
    for n in range(count):
        base = n % len(bases) if n % 5 == 0 else n
        dense = bases[base % len(bases)] if n % 5 == 0 else rng.normal(size=SPEC.dense_size)
        terms = sorted({int(t) for t in np.random.default_rng(base).integers(0, 50, 4)})
        sparse = SparseVector(terms, [1.0 + t / 100 for t in terms])
        edition = "id.satu" if n % 3 else "en.dua"
        payload = {
            "text": f"text {base}",
            "edition": edition,
            "surah": 1 + n % 114,
            "ayah": 1 + n % 7,
            "chunk": 0,
            "content_hash": f"c{n}",
            "sparse_hash": f"s{n}",
            "dense_hash": f"d{n}",
        }
        point_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"migrate:{n}"))
        vectors = {SPARSE: sparse, SPARSE_CONTEXT: sparse, SPARSE_TRANSLATION: SparseVector(terms[:1], [1.0])}
        # A translation vector on most points (a point of an ayah without a translation has none).
        translation = [float(x) for x in rng.normal(size=SPEC.dense_size)] if n % 4 else None
        payload["dense_tr_hash"] = f"t{n}" if translation else None
        points.append(PointToStore(point_id, [float(x) for x in dense], vectors, payload, translation))
    return points


def build_source(path: Path, count: int) -> list[PointToStore]:
    points = make_points(count)
    with EdgeStore(path, index=INDEX) as store:
        store.create_collection(COLLECTION, SPEC)
        store.create_payload_index(COLLECTION, EXTRA_INDEX)
        for start in range(0, count, 500):
            store.upsert(COLLECTION, points[start : start + 500])
        store.optimize(COLLECTION)
        store.swap_alias("tafsir", COLLECTION)
    return points


def all_points(store: VectorStore, name: str) -> dict[str, PointToStore]:
    found, offset = {}, None
    while True:
        page, offset = store.scroll_points(name, offset, 100)
        found.update((p.id, p) for p in page)
        if offset is None:
            return found


def assert_same_collection(source: VectorStore, target: VectorStore) -> None:
    assert target.resolve_alias("tafsir") == COLLECTION
    assert target.collection_info("tafsir").spec == SPEC  # the model identity an ingest checks
    expected, found = all_points(source, COLLECTION), all_points(target, COLLECTION)
    assert found.keys() == expected.keys()
    for point_id, point in expected.items():
        copy = found[point_id]
        assert copy.payload == point.payload and copy.sparse == point.sparse
        assert copy.dense == pytest.approx(point.dense, rel=1e-6)
        assert (copy.dense_tr is None) == (point.dense_tr is None)
        if point.dense_tr is not None:
            assert copy.dense_tr == pytest.approx(point.dense_tr, rel=1e-6)
    assert target.editions(COLLECTION) == source.editions(COLLECTION)
    assert collection_index(target.index_settings(COLLECTION), IndexConfig()) == INDEX
    assert {(i.field, i.kind, i.tenant) for i in target.payload_indexes(COLLECTION)} == {
        ("surah", "integer", False),
        ("ayah", "integer", False),
        ("edition", "keyword", True),
        ("chunk", "integer", False),
    }


def test_a_round_trip_embedded_server_embedded_keeps_every_point_setting_index_and_search(tmp_path):
    points = build_source(tmp_path / "edge", 300)
    source = EdgeStore(tmp_path / "edge")
    server = ServerStore.connect(f"local:{tmp_path / 'server'}")  # default index settings: the copy keeps its own
    back = EdgeStore(tmp_path / "back")
    try:
        summary = migrate(source, server, "tafsir", batch=64)
        assert (summary.points, summary.copied, summary.kept, summary.resumed) == (300, 300, 0, False)
        assert summary.checked_queries > 0 and summary.editions == {"id.satu": 200, "en.dua": 100}
        assert_same_collection(source, server)
        assert migrate(server, back, "tafsir", batch=64).copied == 300
        assert_same_collection(source, back)
        # Hybrid searches with tied points (repeated texts): the same ranking from the store and its copy (exact:
        # the HNSW graphs of two Edge stores differ, as two builds of one store would).
        tied = 0
        for point in points[::10]:
            request = SearchRequest(
                mode=Mode.HYBRID,
                limit=10,
                dense=point.dense,
                sparse=point.sparse[SPARSE],
                prefetch_limit=12,
                sparse_weights={SPARSE: 1.0, SPARSE_CONTEXT: 2.0},
                dense_tr_weight=0.5,
                exact=True,
            )
            assert [hit.id for hit in source.search("tafsir", request)] == [
                hit.id for hit in back.search("tafsir", request)
            ]
            dense_only = SearchRequest(mode=Mode.DENSE, limit=12, dense=point.dense, exact=True)
            scores = [round(hit.score, 6) for hit in source.search("tafsir", dense_only)]
            tied += len(scores) - len(set(scores))
        assert tied > 10  # the lists fused do hold ties
    finally:
        for store in (source, server, back):
            store.close()


def test_a_copy_whose_translation_vectors_differ_fails_the_check_and_the_alias_stays(tmp_path, monkeypatch):
    """The check searches each sampled point's translation vector on both sides too: a copy that lost them is
    caught, though its points, payloads, chunk vectors and counts are all equal."""
    build_source(tmp_path / "edge", 60)
    source = EdgeStore(tmp_path / "edge")
    server = ServerStore.connect(f"local:{tmp_path / 'server'}")
    upsert = ServerStore.upsert

    def without_translations(self, name, points):
        upsert(self, name, [dataclasses.replace(point, dense_tr=None) for point in points])

    monkeypatch.setattr(ServerStore, "upsert", without_translations)
    try:
        with pytest.raises(VerificationError, match="dense search from point"):
            migrate(source, server, "tafsir", batch=64, sample=60)
        assert server.resolve_alias("tafsir") is None
    finally:
        source.close()
        server.close()


def test_an_existing_target_alias_is_kept_unless_replace_is_given(tmp_path):
    build_source(tmp_path / "edge", 50)
    source = EdgeStore(tmp_path / "edge")
    server = ServerStore.connect(f"local:{tmp_path / 'server'}")
    try:
        server.create_collection("tafsir-old", SPEC)
        server.swap_alias("tafsir", "tafsir-old")
        with pytest.raises(AliasTaken, match=r"'tafsir'.*--replace"):
            migrate(source, server, "tafsir")
        assert server.list_collections() == ["tafsir-old"]  # nothing written
        summary = migrate(source, server, "tafsir", replace=True)
        assert summary.replaced == "tafsir-old"
        assert server.resolve_alias("tafsir") == COLLECTION and server.list_collections() == [COLLECTION]
    finally:
        source.close()
        server.close()


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(tafsir_cmd(*args), env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_cli_refuses_an_existing_alias_with_exit_2_naming_it_and_the_flag(tmp_path):
    build_source(tmp_path / "edge", 20)
    env = clean_env(TAFSIR_QDRANT_PATH=str(tmp_path / "edge"))
    url = f"local:{tmp_path / 'server'}"
    assert run_cli(env, "migrate", "--to", url).returncode == 0
    refused = run_cli(env, "migrate", "--to", url)
    assert refused.returncode == 2
    assert "alias 'tafsir' already exists" in refused.stderr and "--replace" in refused.stderr
    replaced = run_cli(env, "migrate", "--to", url, "--replace")
    assert replaced.returncode == 0, replaced.stderr
    assert json.loads(replaced.stdout)["kept"] == 20  # the copy was there: resumed into, nothing rewritten


@pytest.mark.server
def test_a_migration_killed_midway_is_finished_by_the_next_run(tmp_path):
    build_source(tmp_path / "edge", 2000)
    env = clean_env(TAFSIR_QDRANT_PATH=str(tmp_path / "edge"), TAFSIR_PROGRESS_INTERVAL="0")
    url = f"local:{tmp_path / 'server'}"
    command = tafsir_cmd("migrate", "--to", url, "--batch", "20")
    process = subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stderr:
            done = line.startswith("copied ") and int(line.split()[1].split("/")[0])
            if done and done >= 200:  # some batches are in
                process.send_signal(signal.SIGKILL)
                break
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    with ServerStore.connect(url) as server:
        assert server.resolve_alias("tafsir") is None  # readers of the target see nothing of a half copy
        assert 200 <= server.count(COLLECTION) < 2000
    rerun = run_cli(env, "migrate", "--to", url)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["resumed"] and summary["kept"] >= 200 and summary["kept"] + summary["copied"] == 2000
    with EdgeStore(tmp_path / "edge") as source, ServerStore.connect(url) as server:
        assert server.editions("tafsir") == source.editions("tafsir") == {"id.satu": 1333, "en.dua": 667}
