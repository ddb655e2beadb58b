"""Scheduled re-ingestion: the cron schedule, the run lock, the loop, and both hosts of it — the API process
(embedded store) and the `tafsir ingest --schedule` worker — run for real with a schedule of seconds."""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from ingest.lock import IngestBusyError, IngestLock
from ingest.schedule import (
    IngestScheduler,
    Schedule,
    ScheduledIngest,
    run_check,
    run_ingest,
)
from services.settings import Settings
from tests.conftest import tafsir_cmd
from tests.test_api import SURAHS, LiveServer, free_port, ingest, store_env, write_jsonl

EVERY_SECOND = Schedule.parse("* * * * * *")


def runs(outcome: str, trigger: str) -> float:
    return REGISTRY.get_sample_value("tafsir_ingest_runs_total", {"outcome": outcome, "trigger": trigger}) or 0.0


def lock_for(tmp_path: Path, alias: str = "tafsir") -> IngestLock:
    settings = Settings(_env_file=None, qdrant_path=tmp_path / "qdrant", collection=alias, ingest_lock_dir=tmp_path)
    return IngestLock.for_settings(settings)


def ingest_runs_in(log: str, event: str = "ingest_run") -> list[dict]:
    """The JSON lines (`... ingest.schedule: {"event": "ingest_run", ...}`) of one event in a log."""
    return [json.loads(line[line.index("{") :]) for line in log.splitlines() if f'{{"event": "{event}"' in line]


def run_worker(env: dict[str, str], log_path: Path, args: tuple[str, ...], runs: int, timeout: float):
    """`tafsir ingest --schedule ...` (``args``) with its metrics on a free port, until ``runs`` ingest runs are
    logged (or ``timeout`` s pass), then SIGTERM: its exit code, its log and its metrics then."""
    port = free_port()
    with log_path.open("w") as log_file:
        worker = subprocess.Popen(
            tafsir_cmd(*args, "--metrics-port", str(port)), env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + timeout
            while len(ingest_runs_in(log_path.read_text())) < runs and time.monotonic() < deadline:
                assert worker.poll() is None, log_path.read_text()
                time.sleep(0.2)
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        finally:
            worker.send_signal(signal.SIGTERM)
            code = worker.wait(timeout=60)
    return code, log_path.read_text(), metrics


def checks(outcome: str) -> float:
    return REGISTRY.get_sample_value("tafsir_ingest_checks_total", {"outcome": outcome}) or 0.0


# --- the schedule -------------------------------------------------------------------------------------------


def test_five_fields_are_standard_cron():
    moment = datetime(2026, 1, 1, 4, 0, tzinfo=UTC)
    assert Schedule.parse("0 3 * * *").next_after(moment) == datetime(2026, 1, 2, 3, 0, tzinfo=UTC)


def test_six_fields_put_seconds_first():
    moment = datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    plan = Schedule.parse("*/10  *  * * * *")
    assert plan.expression == "*/10 * * * * *"
    assert plan.next_after(moment) == datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)


def test_macros_are_accepted():
    moment = datetime(2026, 1, 1, 0, 30, tzinfo=UTC)
    assert Schedule.parse("@hourly").next_after(moment) == datetime(2026, 1, 1, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize("expression", ["every day", "61 * * * *", "* * * *", "* * * * * * * *", "@sometimes"])
def test_a_malformed_schedule_names_the_forms_expected(expression):
    with pytest.raises(ValueError, match="5 fields") as caught:
        Settings(_env_file=None, ingest_schedule=expression)
    assert "seconds first" in str(caught.value)


# --- the lock -----------------------------------------------------------------------------------------------


def test_a_second_run_in_the_same_process_is_refused_until_the_first_ends(tmp_path):
    first, second = lock_for(tmp_path), lock_for(tmp_path)
    with first.hold(), pytest.raises(IngestBusyError, match="in this process"):
        second.acquire()
    with second.hold():  # released: free again
        pass


def test_runs_on_different_collections_do_not_block_each_other(tmp_path):
    with lock_for(tmp_path, "tafsir").hold(), lock_for(tmp_path, "other").hold():
        pass


def test_a_run_in_another_process_is_refused_naming_the_holder(tmp_path, tiny_model):
    env = store_env(tiny_model, tmp_path / "qdrant")
    settings = Settings(_env_file=None, qdrant_path=tmp_path / "qdrant", ingest_lock_dir=tmp_path / "locks")
    source = write_jsonl(tmp_path / "s.jsonl", "t.s", [114])
    with IngestLock.for_settings(settings).hold():
        result = subprocess.run(
            tafsir_cmd("ingest", "--source", str(source)), env=env, capture_output=True, text=True, timeout=120
        )
    assert result.returncode == 3, result.stderr
    assert f"process {os.getpid()}" in result.stderr and "already in progress" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "qdrant" / "aliases.json").exists()  # nothing was written


def test_two_schedulers_on_one_collection_never_overlap(tmp_path):
    active, most, lock_guard = [0], [0], threading.Lock()

    def slow_job() -> dict:
        with lock_guard:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(1.5)
        with lock_guard:
            active[0] -= 1
        return {"edition": "t.overlap", "chunks": 1}

    skipped_before = runs("skipped", "schedule")
    schedulers = [IngestScheduler(EVERY_SECOND, slow_job, lock_for(tmp_path)).start() for _ in range(2)]
    time.sleep(4.2)
    for scheduler in schedulers:
        scheduler.stop(timeout=5)
    assert most[0] == 1
    assert runs("skipped", "schedule") > skipped_before


# --- one run and the loop ------------------------------------------------------------------------------------


def test_a_run_logs_one_json_summary_and_updates_the_metrics(tmp_path, caplog):
    summary = {"edition": "t.metrics", "chunks": 12, "embedded": 5, "deleted": 1, "rebuilt": False}
    with caplog.at_level(logging.INFO, logger="ingest.schedule"):
        assert run_ingest(lambda: summary, lock_for(tmp_path), trigger="t-success") == summary
    (record,) = [json.loads(r.getMessage()) for r in caplog.records if r.getMessage().startswith("{")]
    assert record == {"event": "ingest_run", "outcome": "success", "trigger": "t-success", **summary}
    assert runs("success", "t-success") == 1
    assert REGISTRY.get_sample_value("tafsir_ingest_points", {"edition": "t.metrics"}) == 12
    assert REGISTRY.get_sample_value("tafsir_ingest_embedded_chunks_total", {"edition": "t.metrics"}) == 5


def test_a_failing_run_is_logged_and_counted_and_the_lock_is_released(tmp_path, caplog):
    from services.store.base import StoreError

    def failing() -> dict:
        raise StoreError("The Qdrant server at http://qdrant:6333 did not answer")

    lock = lock_for(tmp_path)
    with caplog.at_level(logging.INFO, logger="ingest.schedule"):
        assert run_ingest(failing, lock, trigger="t-error") is None
    (record,) = [json.loads(r.getMessage()) for r in caplog.records if r.getMessage().startswith("{")]
    assert record["outcome"] == "error" and "did not answer" in record["error"]
    assert runs("error", "t-error") == 1
    with lock.hold():  # released despite the failure
        pass


def test_the_loop_keeps_its_schedule_after_a_failed_run(tmp_path):
    calls: list[float] = []

    def flaky() -> dict:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RuntimeError("first run fails")
        return {"edition": "t.flaky", "chunks": 1}

    scheduler = IngestScheduler(EVERY_SECOND, flaky, lock_for(tmp_path), run_first=lambda: True).start()
    deadline = time.monotonic() + 10
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    scheduler.stop(timeout=5)
    assert len(calls) >= 3
    assert all(b - a > 0.5 for a, b in itertools.pairwise(calls[1:]))  # one run per firing


def test_the_check_at_start_says_what_the_next_run_will_do_and_writes_nothing(tmp_path, tiny_model, caplog):
    from services.embedding import Embedder
    from services.store import open_store

    env = store_env(tiny_model, tmp_path / "qdrant")
    before = ingest(env, write_jsonl(tmp_path / "s.jsonl", "t.check", [113, 114]))
    grown = write_jsonl(tmp_path / "grown.jsonl", "t.check", [112, 113, 114])  # 4 new ayat
    settings = Settings(_env_file=None, qdrant_path=tmp_path / "qdrant", embedding_model=str(tiny_model))
    store = open_store(settings)
    try:
        ok_before = checks("ok")
        with caplog.at_level(logging.INFO, logger="ingest.schedule"):
            summary = run_check(ScheduledIngest(settings, store, Embedder(settings), grown).check())
        assert summary is not None and summary["dry_run"]
        assert store.count("tafsir") == before["chunks"]  # nothing written
    finally:
        store.close()
    (record,) = [json.loads(r.getMessage()) for r in caplog.records if r.getMessage().startswith("{")]
    assert record["event"] == "ingest_check" and record["outcome"] == "ok"
    assert (record["embedded"], record["deleted"], record["rebuild"]) == (4, 0, False)
    assert record["collection"] == before["collection"]
    assert checks("ok") == ok_before + 1


# --- hosted by the API (embedded store) and by the worker ----------------------------------------------------


@pytest.mark.server
def test_a_server_with_a_schedule_reports_a_bad_source_at_start_and_keeps_serving(tmp_path, tiny_model):
    env = store_env(tiny_model, tmp_path / "qdrant")
    before = ingest(env, write_jsonl(tmp_path / "s.jsonl", "t.bad", [113, 114]))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"surah": 1, "ayah": 1, "text": "ok", "edition": "t.bad"}\n{"surah": 1, "ayah": 2, "text": \n')
    env.update(TAFSIR_INGEST_SCHEDULE="@yearly", TAFSIR_INGEST_SOURCE=str(broken))
    live = LiveServer(env, tmp_path / "server.log")
    try:
        live.wait("/readyz")
        # A process that hosts scheduled runs re-executes itself (same pid) on the system allocator.
        environ = Path(f"/proc/{live.process.pid}/environ").read_bytes().split(b"\0")
        deadline = time.monotonic() + 60
        while not ingest_runs_in(live.log(), "ingest_check") and time.monotonic() < deadline:
            time.sleep(0.2)
        metrics = httpx.get(live.url + "/metrics", timeout=30).text
        ready = httpx.get(live.url + "/readyz", timeout=30).json()
    finally:
        code = live.stop()
    log = live.log()
    assert code == 0, log
    (check,) = ingest_runs_in(log, "ingest_check")
    assert check["outcome"] == "error" and f"{broken}:2:" in check["error"], log
    assert "Traceback" not in log
    assert 'tafsir_ingest_checks_total{outcome="error"} 1.0' in metrics
    assert ingest_runs_in(log) == []  # the next run is next year's; the check ran none
    assert (ready["collection"], ready["points"]) == (before["collection"], before["chunks"])  # still serving
    assert b"PYTHONMALLOC=malloc" in environ


@pytest.mark.server
def test_a_scheduled_rebuild_during_queries_answers_every_query_and_shows_in_metrics(tmp_path, tiny_model):
    source = write_jsonl(tmp_path / "short.jsonl", "id.test", SURAHS)
    before = ingest(store_env(tiny_model, tmp_path / "qdrant"), source)
    # A different chunk limit changes the collection's spec: the scheduled run builds a new collection
    # and moves the alias while queries go on.
    env = store_env(
        tiny_model,
        tmp_path / "qdrant",
        TAFSIR_INGEST_SCHEDULE="*/2 * * * * *",
        TAFSIR_INGEST_SOURCE=str(source),
        TAFSIR_CHUNK_TOKENS="256",
    )
    live = LiveServer(env, tmp_path / "server.log")
    statuses: list[int] = []
    stop_querying = threading.Event()

    def query_until_stopped() -> None:
        with httpx.Client(base_url=live.url, timeout=30) as client:
            while not stop_querying.is_set():
                statuses.append(client.post("/v1/retrieve", json={"query": "Allah Yang Maha Esa", "k": 3}).status_code)

    try:
        live.wait("/readyz")
        querying = threading.Thread(target=query_until_stopped)
        querying.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            metrics = httpx.get(live.url + "/metrics", timeout=30).text
            if 'tafsir_ingest_runs_total{outcome="success",trigger="schedule"} 1.0' in metrics:
                break
            time.sleep(0.3)
        time.sleep(1)  # keep querying after the swap
        stop_querying.set()
        querying.join(timeout=30)
        ready = httpx.get(live.url + "/readyz", timeout=30).json()
    finally:
        stop_querying.set()
        code = live.stop()
    log = live.log()
    assert code == 0, log
    assert 'tafsir_ingest_runs_total{outcome="success",trigger="schedule"} 1.0' in metrics, log
    assert "tafsir_ingest_duration_seconds_count" in metrics
    assert len(statuses) > 10 and set(statuses) == {200}
    rebuilt = [run for run in ingest_runs_in(log) if run["outcome"] == "success" and run["rebuilt"]]
    assert len(rebuilt) == 1 and rebuilt[0]["collection"] == ready["collection"] != before["collection"]
    assert rebuilt[0]["dropped"] == [before["collection"]]
    assert rebuilt[0]["chunks"] > before["chunks"]  # 256-token chunks: long ayat split in more windows
    assert f'tafsir_ingest_points{{edition="id.test"}} {rebuilt[0]["chunks"]}.0' in metrics


@pytest.mark.server
def test_the_worker_ingests_at_start_then_on_schedule_and_stops_on_sigterm(tmp_path, tiny_model):
    env = store_env(tiny_model, tmp_path / "qdrant")
    source = write_jsonl(tmp_path / "s.jsonl", "t.worker", [113, 114])
    args = ("ingest", "--schedule", "*/2 * * * * *", "--source", str(source))
    code, log, metrics = run_worker(env, tmp_path / "worker.log", args, runs=2, timeout=60)
    assert code == 0, log
    first, second = ingest_runs_in(log)[:2]
    assert (first["trigger"], first["outcome"], first["embedded"]) == ("start", "success", 11)  # alias was missing
    assert (second["trigger"], second["outcome"], second["embedded"]) == ("schedule", "success", 0)  # unchanged
    assert 'tafsir_ingest_runs_total{outcome="success",trigger="schedule"}' in metrics
    assert "embedded store admits one process" in log  # the worker says what it blocks
