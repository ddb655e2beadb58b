"""Which wording of the Ministry's translation every face shows (TAFSIR_TRANSLATION), on the built-in corpus
ingested by the real CLI: `tafsir search`, the HTTP API on a loopback port, and the LangChain retriever."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from retriever import TafsirRetriever
from retriever.chain import format_docs
from retriever.search import SearchEngine
from services.settings import Settings
from tests.conftest import tafsir_cmd
from tests.test_api import LiveServer, store_env

pytestmark = [pytest.mark.slow]

QUESTION = "Kitab ini tidak ada keraguan padanya"
CITATION = "QS Al-Baqarah [2]: 2"
WORDINGS = {
    "2019": "Kitab (Al-Qur'an) ini tidak ada keraguan padanya; petunjuk bagi mereka yang bertakwa,",
    "legacy": "Kitab (Al Quran) ini tidak ada keraguan padanya; petunjuk bagi mereka yang bertakwa,",
}


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(tafsir_cmd(*args), env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def builtin_store(tmp_path_factory, tiny_model) -> dict[str, str]:
    """The whole built-in corpus, ingested once by `tafsir ingest` (about 30 s with the tiny model)."""
    env = store_env(tiny_model, tmp_path_factory.mktemp("builtin") / "qdrant")
    result = run(env, "ingest", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["edition"] == "id.jalalayn"
    return env


def test_search_json_returns_al_baqarah_2_carrying_the_2019_wording(builtin_store):
    result = run(builtin_store, "search", QUESTION, "--json")
    assert result.returncode == 0, result.stderr
    hit = next(p for p in json.loads(result.stdout) if p["citation"] == CITATION)
    assert hit["translation"] == WORDINGS["2019"]
    assert hit["arabic"].startswith("ذَٰلِكَ ٱلْكِتَـٰبُ")


@pytest.mark.parametrize("wording", ["2019", "legacy"])
def test_the_cli_shows_the_wording_the_setting_chooses(builtin_store, wording):
    env = {**builtin_store, "TAFSIR_TRANSLATION": wording}
    (other,) = set(WORDINGS) - {wording}
    as_json = run(env, "search", QUESTION, "--json")
    assert as_json.returncode == 0, as_json.stderr
    hit = next(p for p in json.loads(as_json.stdout) if p["citation"] == CITATION)
    assert hit["translation"] == WORDINGS[wording]

    as_text = run({**env, "COLUMNS": "500"}, "search", QUESTION)
    assert as_text.returncode == 0, as_text.stderr
    assert f"“{WORDINGS[wording]}”" in as_text.stdout and WORDINGS[other] not in as_text.stdout


def test_an_unknown_wording_is_refused_naming_the_setting_and_the_choices(builtin_store):
    result = run({**builtin_store, "TAFSIR_TRANSLATION": "1990"}, "search", QUESTION)
    assert result.returncode == 2
    assert "TAFSIR_TRANSLATION" in result.stderr and "'2019' or 'legacy'" in result.stderr


@pytest.mark.server
def test_the_http_api_shows_the_wording_the_setting_chooses(builtin_store, tmp_path: Path):
    for wording, expected in WORDINGS.items():
        server = LiveServer({**builtin_store, "TAFSIR_TRANSLATION": wording}, tmp_path / f"{wording}.log")
        try:
            server.wait("/readyz")
            with httpx.Client(base_url=server.url, timeout=30) as client:
                found = client.post("/v1/retrieve", json={"query": QUESTION, "k": 5})
                assert found.status_code == 200, found.text
                document = next(d for d in found.json()["documents"] if d["citation"] == CITATION)
                assert document["metadata"]["translation"] == expected
                ayah = client.get("/v1/ayah/2/2")
                assert ayah.status_code == 200 and ayah.json()["translation"] == expected
        finally:
            assert server.stop() == 0, server.log()


@pytest.mark.parametrize("wording", ["2019", "legacy"])
def test_the_langchain_retriever_shows_the_wording_the_setting_chooses(builtin_store, wording):
    settings = Settings(
        _env_file=None,
        qdrant_path=builtin_store["TAFSIR_QDRANT_PATH"],
        embedding_model=builtin_store["TAFSIR_EMBEDDING_MODEL"],
        translation=wording,
    )
    engine = SearchEngine(settings)
    try:
        docs = TafsirRetriever(engine=engine, k=5).invoke(QUESTION)
    finally:
        engine.store.close()  # the embedded store admits one process: free it for the CLI tests
    doc = next(d for d in docs if d.metadata["citation"] == CITATION)
    assert doc.metadata["translation"] == WORDINGS[wording]
    assert f"[{docs.index(doc) + 1}] {CITATION}\nTerjemahan: {WORDINGS[wording]}\n" in format_docs(docs)
