"""Many editions in one collection: ingest runs per edition that proceed side by side, runs of one edition that
never interleave, a rebuild or removal that excludes every other run, and retrieval by edition and language."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from ingest.lock import IngestBusyError, IngestLock
from ingest.pipeline import IngestPipeline
from ingest.schedule import ScheduledIngest, run_ingest, scheduled_lock
from retriever.search import SearchEngine, SearchOptions, TafsirFilter
from services.embedding import Embedder
from services.settings import Settings
from services.store.base import PointFilter, languages_filter
from services.store.edge import EdgeStore
from services.store.server import ServerStore
from tests.conftest import ROOT, tafsir_cmd
from tests.test_api import LiveServer, store_env, write_jsonl
from tests.test_pipeline import make_source

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")

EDITIONS = ("id.satu", "id.dua", "en.three")


def settings_for(tmp_path: Path, tiny_model: Path) -> Settings:
    return Settings(
        _env_file=None,
        qdrant_path=tmp_path / "qdrant",
        embedding_model=str(tiny_model),
        upsert_batch_size=8,
        ingest_lock_dir=tmp_path / "locks",
    )


HOLD = """
import sys
from pathlib import Path
from ingest.lock import IngestLock
lock = IngestLock(sys.argv[3], "tafsir", Path(sys.argv[1]), sys.argv[2] or None)
lock.acquire()
print("held", flush=True)
sys.stdin.readline()
lock.release()
"""


class HeldElsewhere:
    """An ingest lock held by another process until :meth:`release`: the real flock across processes."""

    def __init__(self, lock_dir: Path, edition: str | None, store_location: str = "store") -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(lock_dir), edition or "", store_location],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout.readline().strip() == "held"

    def release(self) -> None:
        self.process.communicate("\n", timeout=30)


# --- the locks ----------------------------------------------------------------------------------------------


def test_runs_of_different_editions_take_their_locks_side_by_side_across_processes(tmp_path):
    other = HeldElsewhere(tmp_path, "id.satu")
    try:
        with IngestLock("store", "tafsir", tmp_path, "id.dua").hold():
            pass  # not refused, not waiting
    finally:
        other.release()


def test_a_second_run_of_one_edition_is_refused_naming_the_first(tmp_path):
    other = HeldElsewhere(tmp_path, "id.satu")
    try:
        with pytest.raises(IngestBusyError, match=rf"edition 'id.satu' of alias 'tafsir'.*process {other.process.pid}"):
            IngestLock("store", "tafsir", tmp_path, "id.satu").acquire()
    finally:
        other.release()
    with IngestLock("store", "tafsir", tmp_path, "id.satu").hold():  # free once the first run ended
        pass


def test_a_rebuild_or_removal_waits_for_no_edition_run_and_is_refused_while_one_runs(tmp_path):
    other = HeldElsewhere(tmp_path, "id.satu")
    try:
        with pytest.raises(IngestBusyError, match=r"editions of alias 'tafsir'.*needs the alias to itself"):
            IngestLock("store", "tafsir", tmp_path).acquire()
    finally:
        other.release()
    with IngestLock("store", "tafsir", tmp_path).hold():
        pass


def test_an_edition_run_is_refused_while_a_rebuild_holds_the_alias(tmp_path):
    other = HeldElsewhere(tmp_path, None)
    try:
        with pytest.raises(IngestBusyError, match=f"process {other.process.pid}"):
            IngestLock("store", "tafsir", tmp_path, "id.dua").acquire()
    finally:
        other.release()


# --- two workers on one collection ---------------------------------------------------------------------------


@pytest.fixture(params=["edge", "server"])
def shared_store(request, tmp_path):
    """One store two workers write through: the embedded one, or the server adapter on qdrant-client's local mode."""
    if request.param == "edge":
        store = EdgeStore(tmp_path / "qdrant")
    else:
        store = ServerStore(QdrantClient(location=":memory:"), ":memory:")
    yield store
    store.close()


def test_two_workers_on_different_editions_of_one_collection_run_at_the_same_time(tmp_path, tiny_model, shared_store):
    settings = settings_for(tmp_path, tiny_model)
    IngestPipeline(settings, shared_store, Embedder(settings)).run(make_source("id.satu", surahs=[112]))
    # Each worker stops at its first progress report until the other has reached its own: if one waited for the
    # other's lock, the barrier would break.
    embedders = {edition: Embedder(settings) for edition in EDITIONS[1:]}
    both_running = threading.Barrier(2, timeout=60)
    summaries: dict[str, object] = {}
    errors: list[BaseException] = []

    def worker(edition: str) -> None:
        try:
            lock = IngestLock.for_settings(settings, edition=edition)
            with lock.hold():
                pipeline = IngestPipeline(settings, shared_store, embedders[edition])
                assert not pipeline.needs_new_collection()
                met = []

                def progress(done: int, total: int) -> None:
                    if not met:
                        met.append(both_running.wait())

                summaries[edition] = pipeline.run(make_source(edition, surahs=[113, 114]), progress=progress)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(edition,)) for edition in EDITIONS[1:]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert set(summaries) == {"id.dua", "en.three"}
    assert not any(summary.rebuilt for summary in summaries.values())
    counts = shared_store.editions("tafsir")
    assert set(counts) == set(EDITIONS) and all(counts.values())


def test_a_second_worker_on_the_same_edition_is_refused_while_the_first_writes(tmp_path, tiny_model):
    settings = settings_for(tmp_path, tiny_model)
    with IngestLock.for_settings(settings, edition="id.satu").hold():
        with pytest.raises(IngestBusyError, match=r"edition 'id\.satu'.*already in progress in this process"):
            IngestLock.for_settings(settings, edition="id.satu").acquire()
        with IngestLock.for_settings(settings, edition="id.dua").hold():  # another edition goes ahead
            pass


# --- scheduled workers ----------------------------------------------------------------------------------------


def held_elsewhere(settings: Settings, edition: str | None) -> HeldElsewhere:
    lock = IngestLock.for_settings(settings, edition)
    return HeldElsewhere(lock.lock_dir, edition, lock.store_location)


def scheduled_run(settings: Settings, store, source: Path):
    """One firing of a scheduled worker of ``source``, as `tafsir ingest --schedule` and `tafsir serve` make it."""
    lock = scheduled_lock(settings, source)
    job = ScheduledIngest(settings, store, Embedder(settings), source).job(lock)
    return lambda: run_ingest(job, lock, trigger="schedule")


def test_a_scheduled_worker_locks_the_edition_of_its_source_and_the_built_in_one(tmp_path, tiny_model):
    settings = settings_for(tmp_path, tiny_model)
    source = write_jsonl(tmp_path / "dua.jsonl", "id.dua", [112])
    assert scheduled_lock(settings, source).edition == "id.dua"
    assert scheduled_lock(settings, tmp_path / "not-yet-there.csv", edition="id.tiga").edition == "id.tiga"
    assert scheduled_lock(settings).edition == "id.jalalayn"
    # A source that cannot be read now: the whole alias (more, never less).
    assert scheduled_lock(settings, tmp_path / "missing.jsonl").edition is None


def test_a_scheduled_run_goes_on_beside_another_edition_and_skips_while_its_own_edition_runs(tmp_path, tiny_model):
    settings = settings_for(tmp_path, tiny_model)
    store = EdgeStore(settings.qdrant_path)
    try:
        IngestPipeline(settings, store, Embedder(settings)).run(make_source("id.satu", surahs=[112]))
        fire = scheduled_run(settings, store, write_jsonl(tmp_path / "dua.jsonl", "id.dua", [113]))
        other = held_elsewhere(settings, "id.satu")
        try:
            summary = fire()  # another edition runs in another process: this one is not held up
        finally:
            other.release()
        assert summary is not None and summary["edition"] == "id.dua" and summary["embedded"] > 0
        same = held_elsewhere(settings, "id.dua")
        try:
            assert fire() is None  # skipped: its own edition runs elsewhere
        finally:
            same.release()
        assert set(store.editions("tafsir")) == {"id.satu", "id.dua"}
    finally:
        store.close()


def test_a_scheduled_run_that_builds_the_collection_waits_for_the_runs_of_other_editions(tmp_path, tiny_model):
    settings = settings_for(tmp_path, tiny_model)
    store = EdgeStore(settings.qdrant_path)
    try:
        fire = scheduled_run(settings, store, write_jsonl(tmp_path / "dua.jsonl", "id.dua", [112]))
        results: list[object] = []
        other = held_elsewhere(settings, "id.satu")
        try:
            runner = threading.Thread(target=lambda: results.append(fire()))
            runner.start()
            runner.join(timeout=5)
            assert runner.is_alive() and not results  # no collection yet: it waits for id.satu's run
            assert store.resolve_alias("tafsir") is None
        finally:
            other.release()
        runner.join(timeout=120)
        assert results and results[0] is not None and results[0]["rebuilt"], results
    finally:
        store.close()


# --- the CLI -----------------------------------------------------------------------------------------------


def run(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(tafsir_cmd(*args), env=env, capture_output=True, encoding="utf-8", timeout=timeout)


def cli_lock(env: dict[str, str], edition: str | None) -> IngestLock:
    settings = Settings(
        _env_file=None, qdrant_path=env["TAFSIR_QDRANT_PATH"], ingest_lock_dir=env["TAFSIR_INGEST_LOCK_DIR"]
    )
    return IngestLock.for_settings(settings, edition=edition)


def test_cli_ingest_of_an_edition_being_ingested_exits_with_a_clear_message(tmp_path, tiny_model):
    env = store_env(tiny_model, tmp_path / "qdrant")
    source = write_jsonl(tmp_path / "satu.jsonl", "id.satu", [112])
    with cli_lock(env, "id.satu").hold():
        result = run(env, "ingest", "--source", str(source))
    message = " ".join(result.stderr.split())
    assert result.returncode == 3, result.stderr
    assert "edition 'id.satu' of alias 'tafsir'" in message and f"process {os.getpid()}" in message
    assert "Traceback" not in message
    assert not (tmp_path / "qdrant" / "aliases.json").exists()  # nothing was written


def test_cli_rebuild_and_remove_are_refused_while_an_edition_is_being_ingested(tmp_path, tiny_model):
    env = store_env(tiny_model, tmp_path / "qdrant")
    assert run(env, "ingest", "--source", str(write_jsonl(tmp_path / "satu.jsonl", "id.satu", [112]))).returncode == 0
    with cli_lock(env, "id.dua").hold():
        rebuild = run(env, "ingest", "--source", str(write_jsonl(tmp_path / "s.jsonl", "id.satu", [112])), "--rebuild")
        remove = run(env, "remove", "--edition", "id.satu", "--yes")
    for result in (rebuild, remove):
        assert result.returncode == 3, result.stderr
        assert "needs the alias to itself" in " ".join(result.stderr.split())


def test_a_first_ingest_waits_for_the_runs_of_other_editions_before_building_the_collection(tmp_path, tiny_model):
    env = store_env(tiny_model, tmp_path / "qdrant")
    source = write_jsonl(tmp_path / "satu.jsonl", "id.satu", [112])
    lock = cli_lock(env, "id.dua")
    lock.acquire()
    try:
        process = subprocess.Popen(
            tafsir_cmd("ingest", "--source", str(source)),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            encoding="utf-8",
        )
        said: list[str] = []
        deadline = time.monotonic() + 180
        # The CLI starts, finds no collection, says it waits for the alias, and waits while id.dua runs.
        while "waiting for other ingest runs" not in " ".join(" ".join(said).split()):
            line = process.stderr.readline()
            assert line and time.monotonic() < deadline, (process.poll(), said)
            said.append(line)
        time.sleep(2)
        assert process.poll() is None, said  # still waiting
        assert not (tmp_path / "qdrant" / "aliases.json").exists()  # and nothing written yet
    finally:
        lock.release()
    rest = process.stderr.read()
    assert process.wait(timeout=300) == 0, [*said, rest]
    assert (tmp_path / "qdrant" / "aliases.json").exists()


# --- three editions, retrieved by edition and by language ----------------------------------------------------------


@pytest.fixture(scope="module")
def three_editions(tmp_path_factory, tiny_model):
    folder = tmp_path_factory.mktemp("editions")
    env = store_env(tiny_model, folder / "qdrant")
    for edition in EDITIONS:
        source = write_jsonl(folder / f"{edition}.jsonl", edition, [112, 113])
        result = run(env, "ingest", "--source", str(source))
        assert result.returncode == 0, result.stderr
    return env, folder


def test_status_counts_each_of_three_user_editions(three_editions):
    env, _ = three_editions
    result = run(env, "status", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report["editions"]) == set(EDITIONS) and len(set(report["editions"].values())) == 1
    assert report["languages"] == {"en": ["en.three"], "id": ["id.dua", "id.satu"]}
    assert set(report["ayat"].values()) == {9}  # surahs 112 and 113 in each


def test_status_shows_the_index_settings_the_collection_was_built_with_and_those_a_rebuild_would_apply(
    three_editions,
):
    env, _ = three_editions
    report = json.loads(run(env, "status", "--json").stdout)
    assert report["index"] == {
        "hnsw_m": 16,
        "hnsw_ef_construct": 100,
        "quantization": "int8",
        "vectors_on_disk": True,
    }
    assert report["index_at_rebuild"] == {}
    changed = {**env, "TAFSIR_VECTOR_QUANTIZATION": "none", "TAFSIR_HNSW_M": "32"}
    report = json.loads(run(changed, "status", "--json").stdout)
    assert report["index"]["quantization"] == "int8"  # the collection keeps what it was built with
    assert report["index_at_rebuild"] == {"hnsw_m": 32, "quantization": "none"}


def test_status_names_the_vectors_a_collection_lacks_until_an_ingest_adds_them(tmp_path, tiny_model):
    """An operator upgrading a store sees which vectors the next `tafsir ingest` adds (here dense_tr, taken off a
    collection as an earlier release made it), and that the ingest added them."""
    import qdrant_edge as edge

    from services.store.base import DENSE_TRANSLATION, DENSE_VECTORS, SPARSE_VECTORS

    env = store_env(tiny_model, tmp_path / "qdrant")
    source = write_jsonl(tmp_path / "satu.jsonl", "id.satu", [112])
    assert run(env, "ingest", "--source", str(source)).returncode == 0
    report = json.loads(run(env, "status", "--json").stdout)
    assert report["vectors"] == {"present": [*DENSE_VECTORS, *SPARSE_VECTORS], "added_by_next_ingest": []}

    store = EdgeStore(tmp_path / "qdrant")
    with store._use("tafsir") as (_, shard):
        shard.update(edge.UpdateOperation.delete_vector_name(DENSE_TRANSLATION))
        shard.flush()
    store.close()
    report = json.loads(run(env, "status", "--json").stdout)
    assert report["vectors"]["added_by_next_ingest"] == [DENSE_TRANSLATION]
    assert "added_by_next_ingest: dense_tr" in run(env, "status").stdout.replace("\n", " ")

    upgraded = run(env, "ingest", "--source", str(source), "--json")
    assert upgraded.returncode == 0, upgraded.stderr
    assert json.loads(upgraded.stdout)["embedded"] == 0 and json.loads(upgraded.stdout)["translated"] > 0
    assert json.loads(run(env, "status", "--json").stdout)["vectors"]["added_by_next_ingest"] == []


def test_python_search_filters_by_edition_and_by_language(three_editions):
    env, _ = three_editions
    settings = Settings(
        _env_file=None, qdrant_path=env["TAFSIR_QDRANT_PATH"], embedding_model=env["TAFSIR_EMBEDDING_MODEL"]
    )
    engine = SearchEngine(settings)
    try:

        def editions_found(only: TafsirFilter) -> set[str]:
            options = SearchOptions(k=20, filter=only.to_point_filter())
            found = set()
            for passage in engine.search("Allah yang Maha Esa", options):
                found |= {passage.edition, *passage.also_in}
            return found

        assert editions_found(TafsirFilter(edition="id.dua")) == {"id.dua"}
        assert editions_found(TafsirFilter(language="en")) == {"en.three"}
        assert editions_found(TafsirFilter(language="id")) == {"id.satu", "id.dua"}
        assert editions_found(TafsirFilter(language="id", edition=["id.dua", "en.three"])) == {"id.dua"}
        assert editions_found(TafsirFilter(language="ar")) == set()
        # the search behind answers (the cosine of the nearest passage) filters the same way
        in_english = SearchOptions(k=20, filter=TafsirFilter(language="en").to_point_filter())
        passages, similarity = engine.search_with_similarity("Allah yang Maha Esa", in_english)
        assert passages and {p.edition for p in passages} == {"en.three"} and similarity > -1
    finally:
        engine.store.close()


def test_cli_search_filters_by_language(three_editions):
    env, _ = three_editions
    result = run(env, "search", "Allah yang Maha Esa", "-k", "20", "--language", "en", "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found and {p["edition"] for p in found} | {e for p in found for e in p["also_in"]} == {"en.three"}


@pytest.mark.server
def test_http_retrieve_filters_by_edition_and_by_language_and_lists_the_editions(three_editions, tmp_path):
    env, _ = three_editions
    listed = run(env, "editions", "--json")  # before the server holds the embedded store
    assert listed.returncode == 0, listed.stderr
    counts = {row["edition"]: row["points"] for row in json.loads(listed.stdout)}
    server = LiveServer(env, tmp_path / "server.log")
    try:
        server.wait("/readyz")
        import httpx

        response = httpx.get(server.url + "/v1/editions", timeout=60)
        assert response.status_code == 200, response.text
        assert response.json()["editions"] == [
            {"edition": "en.three", "language": "en", "points": counts["en.three"]},
            {"edition": "id.dua", "language": "id", "points": counts["id.dua"]},
            {"edition": "id.satu", "language": "id", "points": counts["id.satu"]},
        ]

        def editions_found(only: dict) -> set[str]:
            body = {"query": "Allah yang Maha Esa", "k": 20, "filter": only}
            response = httpx.post(server.url + "/v1/retrieve", json=body, timeout=60)
            assert response.status_code == 200, response.text
            found = [d["metadata"] for d in response.json()["documents"]]
            return {e for meta in found for e in (meta["edition"], *meta["also_in"])}

        assert editions_found({"edition": "en.three"}) == {"en.three"}
        assert editions_found({"language": "id"}) == {"id.satu", "id.dua"}
        assert editions_found({"language": ["en"]}) == {"en.three"}
    finally:
        assert server.stop() == 0, server.log()


def test_a_language_is_the_edition_id_before_its_first_dot():
    available = ["id.jalalayn", "id.kemenag", "en.ibnkathir", "tafsir-tanpa-bahasa"]
    assert languages_filter(PointFilter(languages=["id"]), available).editions == ["id.jalalayn", "id.kemenag"]
    assert languages_filter(PointFilter(languages=["en"], editions=["id.kemenag"]), available).editions == []
    assert languages_filter(PointFilter(surahs=[1]), available) == PointFilter(surahs=[1])
