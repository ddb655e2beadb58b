"""Fault injection: a flaky or dead Qdrant server, kill -9, damaged files and two ingests at once.

Real components throughout: the real pipeline and tiny model, qdrant-client's local mode behind a
wrapper that raises the exceptions qdrant-client really raises, and the real `tafsir` CLI on a real
embedded store. docs/RELIABILITY.md lists each fault, what the system did and what was lost.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from ingest.pipeline import IngestPipeline
from services.embedding import Embedder
from services.settings import Settings
from services.store import open_store
from services.store.base import StoreError, TransientStoreError
from services.store.server import ServerStore
from tests.conftest import tafsir_cmd
from tests.test_cli import run, write_jsonl
from tests.test_pipeline import make_source

URL = "http://test:6333"

# --- the server backend: a qdrant-client that fails on chosen calls -------------------------------------


def connection_refused() -> Exception:
    return ResponseHandlingException(httpx.ConnectError("[Errno 111] Connection refused"))


def unavailable() -> Exception:
    return UnexpectedResponse(503, "Service Unavailable", b'{"status":{"error":"overloaded"}}', httpx.Headers())


def read_timeout() -> Exception:
    return ResponseHandlingException(httpx.ReadTimeout("timed out"))


class FlakyClient:
    """A real local-mode QdrantClient whose calls fail as scheduled, then go through.

    ``faults`` maps a method name to {call number (from 1): exception factory}; ``always`` maps a
    method name to (first failing call number, exception factory) for a server that goes away for good.
    """

    def __init__(
        self,
        faults: dict[str, dict[int, Callable[[], Exception]]] | None = None,
        always: dict[str, tuple[int, Callable[[], Exception]]] | None = None,
    ) -> None:
        self.inner = QdrantClient(location=":memory:")
        self.faults = faults or {}
        self.always = always or {}
        self.calls: Counter[str] = Counter()
        self.raised: list[tuple[str, int, str]] = []

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            number = self.calls[name]
            factory = self.faults.get(name, {}).get(number)
            if factory is None and name in self.always and number >= self.always[name][0]:
                factory = self.always[name][1]
            if factory is not None:
                exc = factory()
                self.raised.append((name, number, type(exc).__name__))
                raise exc
            return target(*args, **kwargs)

        return call


@pytest.fixture
def server_settings(tiny_model) -> Settings:
    return Settings(_env_file=None, qdrant_url=URL, embedding_model=str(tiny_model), upsert_batch_size=16)


@pytest.fixture(scope="module")
def embedder(tiny_model) -> Embedder:
    return Embedder(Settings(_env_file=None, embedding_model=str(tiny_model)))


def test_transient_server_faults_are_retried_and_the_ingest_completes(server_settings, embedder):
    client = FlakyClient(
        faults={
            "upsert": {2: connection_refused, 5: unavailable, 6: read_timeout},
            "update_collection_aliases": {1: read_timeout},
            "count": {1: unavailable},
        }
    )
    sleeps: list[float] = []
    store = ServerStore(client, URL, sleep=sleeps.append)  # type: ignore[arg-type]
    pipeline = IngestPipeline(server_settings, store, embedder)
    source = make_source("test.flaky", surahs=range(100, 115))

    summary = pipeline.run(source)

    chunks = pipeline.chunk(source.ayat)
    assert [name for name, _, _ in client.raised] == [
        "upsert",
        "upsert",
        "upsert",
        "count",
        "update_collection_aliases",
    ]
    assert len(sleeps) == 5 and max(sleeps) <= 8.0  # one bounded backoff per fault
    assert summary.embedded == summary.chunks == len(chunks)
    assert store.resolve_alias("tafsir") == summary.collection
    assert store.count("tafsir") == len(chunks)
    ids = [h.id for h in store.iter_hashes("tafsir")]
    assert len(ids) == len(set(ids)) and set(ids) == {c.id for c in chunks}  # nothing lost, nothing twice
    assert store.list_collections() == [summary.collection]


def test_a_server_gone_for_good_during_a_rebuild_stops_the_run_and_keeps_the_alias(server_settings, embedder):
    client = FlakyClient()
    store = ServerStore(client, URL, sleep=lambda _: None)  # type: ignore[arg-type]
    pipeline = IngestPipeline(server_settings, store, embedder)
    source = make_source("test.dead", surahs=range(100, 115))
    first = pipeline.run(source)
    complete = store.count("tafsir")
    assert complete == first.chunks

    client.always["upsert"] = (client.calls["upsert"] + 3, connection_refused)  # three batches go in, then none
    with pytest.raises(StoreError) as raised:
        pipeline.run(source, full=True)

    assert isinstance(raised.value, TransientStoreError)
    message = str(raised.value)
    assert URL in message and "TAFSIR_QDRANT_URL" in message
    assert store.resolve_alias("tafsir") == first.collection
    assert store.count("tafsir") == complete
    assert {h.id for h in store.iter_hashes("tafsir")} == {c.id for c in pipeline.chunk(source.ayat)}

    # The server is back: the next run finishes the job and leaves one collection.
    del client.always["upsert"]
    again = pipeline.run(source, full=True)
    assert store.resolve_alias("tafsir") == again.collection and store.count("tafsir") == again.chunks
    assert store.list_collections() == [again.collection]


# --- the embedded backend through the real CLI ----------------------------------------------------------


def open_in_process(env: dict[str, str]):
    return open_store(Settings(_env_file=None, qdrant_path=env["TAFSIR_QDRANT_PATH"]))


def read_alias(env: dict[str, str]) -> tuple[str | None, int, list[str], list[str]]:
    """(collection behind the alias, its point count, its point ids, all collections), as a reader sees them."""
    store = open_in_process(env)
    try:
        name = store.resolve_alias("tafsir")
        ids = [h.id for h in store.iter_hashes("tafsir")] if name else []
        return name, store.count("tafsir") if name else 0, ids, store.list_collections()
    finally:
        store.close()


def kill_ingest_at(
    env: dict[str, str], when: Callable[[int, int], bool], delay: float, *args: str
) -> tuple[int, int, bool]:
    """Run `tafsir ingest`; ``delay`` seconds after the first progress line where ``when(done, total)``, kill -9 it.

    Returns (done, total) of that line and whether the kill landed (false: the run had ended on its own).
    """
    process = subprocess.Popen(tafsir_cmd("ingest", *args), env=env, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stderr or ():
            if line.startswith("embedded "):
                done, total = map(int, line.split()[1].split("/"))
                if when(done, total):
                    time.sleep(delay)
                    process.send_signal(signal.SIGKILL)  # a no-op if it has ended already
                    break
        else:
            pytest.fail(f"the ingest ended before it could be killed (exit {process.wait(timeout=60)})")
    finally:
        process.wait(timeout=120)
    assert process.returncode in (-signal.SIGKILL, 0)
    return done, total, process.returncode == -signal.SIGKILL


def test_kill_9_of_a_rebuild_at_several_points_never_reaches_readers_and_the_rerun_completes(slow_env, tmp_path):
    small = write_jsonl(tmp_path / "small.jsonl", "test.kill", [1, 112, 113, 114])
    first = run(slow_env, "ingest", "--source", str(small), "--json")
    assert first.returncode == 0, first.stderr
    old = json.loads(first.stdout)
    # The edition grows (a rebuild that dropped most of it would be refused without --replace).
    big = write_jsonl(tmp_path / "big.jsonl", "test.kill", [1, 2, 3, 4, 5, 112, 113, 114])

    points = {  # where: (kill at the first progress line where ..., and this many seconds later)
        "during embedding (nothing stored yet)": (lambda done, total: done == 0, 0.0),
        "early (first batches stored)": (lambda done, total: 0 < done < total, 0.0),
        "late (most batches stored)": (lambda done, total: 0 < done < total, 1.0),
        "in the swap window (all stored; verify, swap, drop)": (lambda done, total: done == total, 0.0),
    }
    for where, (when, delay) in points.items():
        done, total, killed = kill_ingest_at(slow_env, when, delay, "--source", str(big), "--full")
        alias, count, ids, _ = read_alias(slow_env)
        assert count == len(ids) == len(set(ids)), where
        if killed and done < total and delay == 0:
            # Killed before the swap: readers still get the complete first collection.
            assert alias == old["collection"] and count == old["chunks"], where
        else:
            # Killed late or in the swap window: the old collection or the new complete one, never a partial one.
            assert (alias, count) == (old["collection"], old["chunks"]) or count == total, (where, alias, count)

    result = run(slow_env, "ingest", "--source", str(big), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    alias, count, ids, collections = read_alias(slow_env)
    assert alias == summary["collection"]
    assert count == len(ids) == len(set(ids)) == summary["chunks"]  # points == chunks, no duplicates
    assert collections == [alias]  # the interrupted builds were cleaned up
    assert not [p for p in (Path(slow_env["TAFSIR_QDRANT_PATH"]) / "collections").iterdir() if p.name != alias]


def _damage_aliases_json(store: Path, collection: str) -> Path:
    path = store / "aliases.json"
    path.write_text('{"tafsir": "tafsir-', encoding="utf-8")
    return path


def _point_alias_at_a_missing_collection(store: Path, collection: str) -> Path:
    path = store / "aliases.json"
    path.write_text(json.dumps({"tafsir": "tafsir-0123456789-20000101000000"}), encoding="utf-8")
    return path


def _delete_segment_descriptions(store: Path, collection: str) -> Path:
    shard = store / "collections" / collection / "shard"
    removed = list(shard.rglob("segment.json"))
    assert removed
    for path in removed:
        path.unlink()
    return shard


def _delete_payload_pages(store: Path, collection: str) -> Path:
    shard = store / "collections" / collection / "shard"
    removed = [p for p in shard.rglob("page_*.dat") if p.parent.name == "payload_storage"]
    assert removed
    for path in removed:
        path.unlink()
    return shard


DAMAGE = {
    "aliases.json-invalid-json": _damage_aliases_json,
    "aliases.json-points-at-a-missing-collection": _point_alias_at_a_missing_collection,
    "shard-half-written-segment.json-missing": _delete_segment_descriptions,
    "shard-half-written-payload-pages-missing": _delete_payload_pages,
}


@pytest.mark.parametrize("damage", DAMAGE, ids=str)
def test_a_damaged_store_is_reported_with_its_path_and_the_repair_and_ingest_full_repairs_it(cli_env, tmp_path, damage):
    source = write_jsonl(tmp_path / "s.jsonl", "test.damage", [113, 114])
    first = run(cli_env, "ingest", "--source", str(source), "--json")
    assert first.returncode == 0, first.stderr
    chunks = json.loads(first.stdout)["chunks"]
    # A second edition whose file is gone by the time of the repair: only the store knows it.
    other_file = write_jsonl(tmp_path / "other.jsonl", "test.other", [1])
    other = run(cli_env, "ingest", "--source", str(other_file), "--json")
    assert other.returncode == 0, other.stderr
    other_file.unlink()
    store = Path(cli_env["TAFSIR_QDRANT_PATH"])
    damaged = DAMAGE[damage](store, json.loads(first.stdout)["collection"])

    for command in (["status"], ["search", "Allah Yang Maha Esa", "-k", "3"]):
        result = run(cli_env, *command)
        assert result.returncode != 0, (command, result.stdout)
        message = " ".join(result.stderr.split())  # rich wraps long lines
        assert str(damaged) in message, (command, result.stderr)
        assert "tafsir ingest --full" in message, (command, result.stderr)
        assert "Traceback" not in result.stderr

    repaired = run(cli_env, "ingest", "--source", str(source), "--full", "--json")
    assert repaired.returncode == 0, repaired.stderr
    assert json.loads(repaired.stdout)["carried_over"] == 7  # test.other, from the store's source archive
    status = run(cli_env, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["editions"] == {"test.damage": chunks, "test.other": 7}
    alias, count, ids, collections = read_alias(cli_env)
    assert count == len(set(ids)) == chunks + 7 and collections == [alias]  # the damaged collection is gone


def test_two_ingests_started_together_one_runs_the_other_is_told_who_holds_the_store(slow_env, tmp_path):
    source = write_jsonl(tmp_path / "s.jsonl", "test.race", [2])
    processes = [
        subprocess.Popen(
            tafsir_cmd("ingest", "--source", str(source), "--json"),
            env=slow_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=180) for process in processes]
    codes = [process.returncode for process in processes]

    assert sorted(codes) == [0, 3], [err[-500:] for _, err in outputs]
    winner = codes.index(0)
    loser_stderr = " ".join(outputs[1 - winner][1].split())
    assert f"process {processes[winner].pid} " in loser_stderr
    assert "Traceback" not in loser_stderr
    summary = json.loads(outputs[winner][0])
    alias, count, ids, collections = read_alias(slow_env)
    assert alias == summary["collection"] and collections == [alias]
    assert count == len(set(ids)) == summary["chunks"] == summary["embedded"]


def test_leftovers_of_a_crash_inside_create_or_drop_are_cleaned_and_never_served(slow_env, tmp_path):
    """The outcome of kill -9 inside create_collection (a .building- folder) or drop (a .trash- folder),
    or between writing the alias file's temporary copy and renaming it into place."""
    source = write_jsonl(tmp_path / "s.jsonl", "test.leftover", [113, 114])
    first = run(slow_env, "ingest", "--source", str(source), "--json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    store = Path(slow_env["TAFSIR_QDRANT_PATH"])
    collection = store / "collections" / summary["collection"]
    for leftover in (".building-tafsir-x-0123", ".trash-tafsir-y-4567"):
        shutil.copytree(collection, store / "collections" / leftover)
    (store / ".aliases.json.4242.1.tmp").write_text('{"tafsir": "tafsir-half', encoding="utf-8")

    alias, count, ids, collections = read_alias(slow_env)
    assert alias == summary["collection"] and count == len(set(ids)) == summary["chunks"]
    assert collections == [alias]
    assert sorted(p.name for p in (store / "collections").iterdir()) == [alias]

    again = run(slow_env, "ingest", "--source", str(source), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["unchanged"] == summary["chunks"]


def test_a_contender_arriving_before_the_holder_wrote_its_record_still_learns_who_holds_it(tmp_path):
    import fcntl
    import threading

    from services import locking

    path = tmp_path / "run.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # taken, record not written yet: the window a racing start hits

    def write_record_late() -> None:
        time.sleep(0.3)
        record = {"pid": 4242, "host": "h", "command": "tafsir ingest", "since": "now"}
        os.pwrite(fd, json.dumps(record).encode(), 0)

    writer = threading.Thread(target=write_record_late)
    writer.start()
    try:
        with pytest.raises(locking.LockHeld) as held:
            locking.acquire(path)
    finally:
        writer.join()
        os.close(fd)
    assert held.value.holder.startswith("process 4242 on h")
