"""The built-in edition, and most of any edition, are protected (issue 23): a run that would replace or delete
them is refused before its first write unless --replace (TAFSIR_INGEST_REPLACE for scheduled runs) allows it.
Every face runs for real: the CLI in a subprocess, the scheduled worker, and `tafsir serve` with its schedule."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from ingest.builtin import BUILTIN_EDITION
from services.settings import Settings
from services.store import open_store
from tests.conftest import cli_environment, tafsir_cmd
from tests.test_api import LiveServer
from tests.test_cli import write_jsonl
from tests.test_schedule import ingest_runs_in, run_worker

pytestmark = [pytest.mark.cli]  # the real `tafsir` in a subprocess


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(tafsir_cmd(*args), env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def builtin_store(tmp_path_factory, tiny_model) -> tuple[Path, int]:
    """A store holding the whole built-in edition (ingested by the real CLI), and its number of points."""
    folder = tmp_path_factory.mktemp("builtin")
    result = run(cli_environment(folder, tiny_model), "ingest", "--json")
    assert result.returncode == 0, result.stderr
    return folder / "qdrant", json.loads(result.stdout)["chunks"]


@pytest.fixture
def store_copy(builtin_store, tmp_path, tiny_model):
    """A copy of the built-in store for one test, its environment, and the built-in edition's points."""
    shutil.copytree(builtin_store[0], tmp_path / "qdrant")
    return cli_environment(tmp_path, tiny_model), builtin_store[1]


@pytest.fixture
def one_line(tmp_path) -> Path:
    path = tmp_path / "one-line.jsonl"
    path.write_text(json.dumps({"surah": 1, "ayah": 1, "text": "Dengan nama Allah, tafsir saya sendiri."}) + "\n")
    return path


def snapshot(env: dict[str, str]) -> tuple:
    """Everything stored that a run could change: collections, alias, every point's hashes, the source archive."""
    folder = Path(env["TAFSIR_QDRANT_PATH"])
    store = open_store(Settings(_env_file=None, qdrant_path=folder))
    try:
        alias = store.resolve_alias("tafsir")
        points = {h.id: (h.edition, h.content_hash, h.sparse_hash, h.dense_hash) for h in store.iter_hashes(alias)}
        collections = sorted(store.list_collections())
    finally:
        store.close()
    archive = {p.name: p.read_bytes() for p in sorted((folder / "sources").rglob("*")) if p.is_file()}
    return collections, alias, points, archive


def editions(env: dict[str, str]) -> dict[str, int]:
    result = run(env, "status", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["editions"]


def flat(text: str) -> str:
    return " ".join(text.split())


# --- the CLI ------------------------------------------------------------------------------------------------


def test_a_one_line_file_named_as_the_builtin_edition_is_refused_and_nothing_stored_changes(store_copy, one_line):
    env, points = store_copy
    before = snapshot(env)
    result = run(env, "ingest", "--source", str(one_line), "--edition", BUILTIN_EDITION)
    assert result.returncode == 2, result.stderr
    message = flat(result.stderr)
    assert f"replace 1 and delete {points - 1:,} of the {points:,} points of the built-in edition 'id.jalalayn'" in (
        message
    )
    assert "--replace" in message and "nothing was written" in message and "Traceback" not in message
    assert snapshot(env) == before
    assert editions(env) == {BUILTIN_EDITION: points}


def test_a_rebuild_from_the_one_line_file_is_refused_too_and_leaves_no_collection_behind(store_copy, one_line):
    env, points = store_copy
    before = snapshot(env)
    result = run(env, "ingest", "--source", str(one_line), "--edition", BUILTIN_EDITION, "--rebuild")
    assert result.returncode == 2, result.stderr
    assert f"delete {points - 1:,} of the {points:,} points" in flat(result.stderr)
    assert snapshot(env) == before


def test_a_dry_run_shows_the_deletions_and_that_a_run_would_be_refused(store_copy, one_line):
    env, points = store_copy
    before = snapshot(env)
    result = run(env, "ingest", "--source", str(one_line), "--edition", BUILTIN_EDITION, "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert (plan["stored"], plan["replaced"], plan["deleted"]) == (points, 1, points - 1)
    assert "--replace" in plan["refused"]
    table = run(env, "ingest", "--source", str(one_line), "--edition", BUILTIN_EDITION, "--dry-run")
    assert table.returncode == 0, table.stderr
    shown = flat(table.stdout)
    assert f"of them to delete │ {points - 1}" in shown and "without --replace this run is refused" in shown
    assert snapshot(env) == before

    allowed = run(
        env, "ingest", "--source", str(one_line), "--edition", BUILTIN_EDITION, "--dry-run", "--json", "--replace"
    )
    assert json.loads(allowed.stdout)["refused"] is None


def test_with_replace_the_file_replaces_the_builtin_edition_and_its_rerun_is_not_refused(store_copy, one_line):
    env, points = store_copy
    result = run(env, "ingest", "--source", str(one_line), "--edition", BUILTIN_EDITION, "--replace", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["deleted"] == points - 1
    assert editions(env) == {BUILTIN_EDITION: 1}
    again = run(env, "ingest", "--source", str(one_line), "--edition", BUILTIN_EDITION, "--json")
    assert again.returncode == 0, again.stderr  # the file's own points now: nothing replaced or deleted
    assert (json.loads(again.stdout)["embedded"], json.loads(again.stdout)["deleted"]) == (0, 0)
    back = run(env, "ingest", "--json")  # the built-in source itself may always restore its edition
    assert back.returncode == 0, back.stderr
    assert editions(env) == {BUILTIN_EDITION: points}


def test_a_user_file_beside_the_builtin_edition_and_its_reruns_are_not_refused(store_copy, tmp_path):
    env, points = store_copy
    mine = write_jsonl(tmp_path / "mine.jsonl", "my.tafsir", [112, 113, 114])
    for _ in range(2):  # the first run adds, the second is an ordinary incremental re-run
        result = run(env, "ingest", "--source", str(mine), "--json")
        assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["embedded"] == 0
    assert editions(env) == {BUILTIN_EDITION: points, "my.tafsir": 15}


def test_a_user_edition_reingested_with_most_of_its_ayat_missing_needs_replace(cli_env, tmp_path):
    whole = write_jsonl(tmp_path / "whole.jsonl", "my.tafsir", [112, 113, 114])  # 4 + 5 + 6 ayat
    assert run(cli_env, "ingest", "--source", str(whole)).returncode == 0
    before = snapshot(cli_env)
    most_gone = write_jsonl(tmp_path / "most-gone.jsonl", "my.tafsir", [114])
    refused = run(cli_env, "ingest", "--source", str(most_gone))
    assert refused.returncode == 2, refused.stderr
    message = flat(refused.stderr)
    assert "delete 9 of the 15 points of edition 'my.tafsir'" in message and "more than half" in message
    assert "--replace" in message
    assert snapshot(cli_env) == before

    some_gone = write_jsonl(tmp_path / "some-gone.jsonl", "my.tafsir", [113, 114])  # 4 of 15: not half
    kept = run(cli_env, "ingest", "--source", str(some_gone), "--json")
    assert kept.returncode == 0, kept.stderr
    assert json.loads(kept.stdout)["deleted"] == 4
    replaced = run(cli_env, "ingest", "--source", str(most_gone), "--replace", "--json")
    assert replaced.returncode == 0, replaced.stderr
    assert editions(cli_env) == {"my.tafsir": 6}


def test_a_file_without_an_edition_is_never_offered_the_builtin_id(cli_env, tmp_path):
    path = tmp_path / "no-edition.jsonl"
    path.write_text(json.dumps({"surah": 1, "ayah": 1, "text": "Dengan nama Allah."}) + "\n")
    result = run(cli_env, "ingest", "--source", str(path))
    assert result.returncode == 2, result.stderr
    message = flat(result.stderr)
    assert "no edition id: pass --edition" in message and BUILTIN_EDITION not in message


# --- the scheduled worker and the HTTP server's schedule -----------------------------------------------------


def test_the_scheduled_worker_refuses_logs_and_counts_and_changes_nothing(store_copy, one_line, tmp_path):
    env, points = store_copy
    before = snapshot(env)
    args = ("ingest", "--schedule", "* * * * * *", "--source", str(one_line), "--edition", BUILTIN_EDITION)
    code, log, metrics = run_worker(env, tmp_path / "worker.log", args, runs=1, timeout=120)
    assert code == 0, log
    (check,) = ingest_runs_in(log, "ingest_check")
    first = ingest_runs_in(log)[0]
    assert check["outcome"] == first["outcome"] == "refused", log
    assert f"delete {points - 1:,} of the {points:,} points" in first["reason"] and "--replace" in first["reason"]
    assert 'tafsir_ingest_runs_total{outcome="refused",trigger="schedule"}' in metrics
    assert 'tafsir_ingest_checks_total{outcome="refused"} 1.0' in metrics
    assert snapshot(env) == before


def _serve_until_a_run(env: dict[str, str], log_path: Path) -> tuple[str, dict[str, int], str]:
    """`tafsir serve` scheduling a run every second: its /metrics after the first run, /v1/editions, its log."""
    live = LiveServer(env, log_path)
    try:
        live.wait("/readyz")
        deadline = time.monotonic() + 120
        while not ingest_runs_in(live.log()) and time.monotonic() < deadline:
            time.sleep(0.2)
        metrics = httpx.get(live.url + "/metrics", timeout=30).text
        listed = httpx.get(live.url + "/v1/editions", timeout=30).json()
    finally:
        code = live.stop()
    assert code == 0, live.log()
    return metrics, {row["edition"]: row["points"] for row in listed["editions"]}, live.log()


def test_the_servers_scheduled_run_is_refused_and_serving_goes_on_unless_the_setting_allows(
    store_copy, one_line, tmp_path
):
    env, points = store_copy
    before = snapshot(env)
    scheduled = {
        **env,
        "TAFSIR_INGEST_SCHEDULE": "* * * * * *",
        "TAFSIR_INGEST_SOURCE": str(one_line),
        "TAFSIR_INGEST_EDITION": BUILTIN_EDITION,
    }
    metrics, served, log = _serve_until_a_run(scheduled, tmp_path / "refused.log")
    (first,) = ingest_runs_in(log)[:1]
    assert first["outcome"] == "refused" and "TAFSIR_INGEST_REPLACE=true" in first["reason"], log
    assert 'tafsir_ingest_runs_total{outcome="refused",trigger="schedule"}' in metrics
    assert served == {BUILTIN_EDITION: points}
    assert snapshot(env) == before

    metrics, served, log = _serve_until_a_run({**scheduled, "TAFSIR_INGEST_REPLACE": "true"}, tmp_path / "ok.log")
    assert ingest_runs_in(log)[0]["outcome"] == "success", log
    assert served == {BUILTIN_EDITION: 1}
