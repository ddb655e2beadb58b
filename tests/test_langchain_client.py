"""The LangChain client package (clients/langchain-tafsir-rag) against a real `tafsir serve` on a loopback port:
its own tests, the same Documents as the in-process retriever, and a venv holding only the client."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from retriever import TafsirRetriever
from services.settings import Settings
from tests.conftest import ROOT, clean_env
from tests.test_api import SURAHS, LiveServer, ingest, store_env, write_jsonl

pytestmark = [pytest.mark.server]

CLIENT = ROOT / "clients" / "langchain-tafsir-rag"
API_KEY = "kunci-klien-langchain-42"
# What a chatbot process must not need: the model runtimes and the store (they are the service's).
SERVICE_ONLY = {"torch", "qdrant-edge-py", "openvino", "onnxruntime", "sentence-transformers", "tafsir-rag"}


@dataclass
class Served:
    server: LiveServer
    store_copy: Path  # the same store, for an in-process retriever beside the server (one process a store)
    tiny_model: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_model) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("client")
    env = store_env(tiny_model, folder / "qdrant", TAFSIR_API_KEY=API_KEY)
    ingest(env, write_jsonl(folder / "short.jsonl", "id.test", SURAHS))
    shutil.copytree(folder / "qdrant", folder / "copy")
    server = LiveServer(env, folder / "server.log")
    try:
        server.wait("/readyz")
        yield Served(server, folder / "copy", tiny_model)
    finally:
        assert server.stop() == 0, server.log()


def client_env(served: Served) -> dict[str, str]:
    """The client's tests find the service in these two variables."""
    return clean_env(LANGCHAIN_TAFSIR_RAG_URL=served.server.url, LANGCHAIN_TAFSIR_RAG_API_KEY=API_KEY)


STANDARD_TEST_PASSED = "PASSED tests/integration_tests/test_retrievers.py::TestTafsirRAGRetrieverStandard::"


def run_client_tests(python: str | Path, served: Served, folder: Path, **env: str) -> str:
    """The client's tests (unit, and integration against ``served``) with ``python``, from ``folder``; their
    report, after checking that they all passed."""
    result = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "tests"],
        cwd=folder,
        env={**client_env(served), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failed" not in result.stdout.splitlines()[-1]
    for test in ("test_k_constructor_param", "test_invoke_with_k_kwarg", "test_ainvoke_returns_documents"):
        assert STANDARD_TEST_PASSED + test in result.stdout, result.stdout
    return result.stdout


def test_the_clients_own_tests_pass_against_tafsir_serve(served):
    # From the client's folder, which `python -m` puts first on the path: the client as its source has it.
    run_client_tests(sys.executable, served, CLIENT, PYTHONPATH=str(CLIENT))


QUESTIONS = [
    ("Allah Yang Maha Esa tempat meminta", {}),
    ("pertolongan Allah dan kemenangan", {"mode": "sparse", "k": 4}),
    ("orang-orang yang merugi kecuali yang beriman", {"mode": "dense", "neighbors": 1}),
    ("berlindung kepada Tuhan manusia", {"k": 3, "filter": {"surah": [113, 114]}, "neighbors": 2}),
]


@pytest.mark.parametrize(("question", "options"), QUESTIONS, ids=[q for q, _ in QUESTIONS])
def test_the_services_documents_equal_the_in_process_retrievers(served, question, options):
    from langchain_tafsir_rag import TafsirRAGRetriever

    settings = Settings(
        _env_file=None, qdrant_path=served.store_copy, embedding_model=str(served.tiny_model), collection="tafsir"
    )
    in_process = TafsirRetriever(settings=settings).invoke(question, **options)
    remote = TafsirRAGRetriever(base_url=served.server.url, api_key=API_KEY).invoke(question, **options)
    assert in_process  # something to compare
    assert [(d.id, d.page_content, d.metadata) for d in remote] == [
        (d.id, d.page_content, d.metadata) for d in in_process
    ]


@pytest.mark.slow
def test_a_venv_with_only_the_client_and_langchain_tests_passes_the_standard_tests(served, tmp_path):
    """The acceptance check: `pip install ./clients/langchain-tafsir-rag langchain-tests` in a new venv brings no
    torch, no store and no model runtime, and LangChain's standard retriever tests pass against the service."""
    started = time.monotonic()
    venv = tmp_path / "venv"
    # No pip of its own (ensurepip costs seconds): this venv's pip installs into it. The versions are the
    # project's pins, so that CI tests what it tested the day before.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    alone = clean_env(PYTHONPATH="")  # nothing of this project's folders on the venv's path
    # From a copy: building in place would leave build/ in the repository.
    source = tmp_path / "langchain-tafsir-rag"
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    install = subprocess.run(
        [*pip, "install", "-q", "-c", str(ROOT / "constraints.txt"), str(source), "langchain-tests"],
        env=alone,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr
    listed = subprocess.run([*pip, "list", "--format", "json"], env=alone, capture_output=True, text=True, check=True)
    installed = {p["name"].lower().replace("_", "-") for p in json.loads(listed.stdout)}
    assert {"langchain-tafsir-rag", "langchain-core", "httpx", "langchain-tests"} <= installed
    assert not installed & SERVICE_ONLY, f"the client's venv holds {sorted(installed & SERVICE_ONLY)}"
    # The installed package, not the source: the tests run from a copy of them, away from the package's folder.
    where = subprocess.run(
        [str(python), "-c", "import langchain_tafsir_rag; print(langchain_tafsir_rag.__file__)"],
        cwd=tmp_path,
        env=alone,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(venv)
    copy = tmp_path / "client-tests"
    shutil.copytree(CLIENT / "tests", copy / "tests")
    shutil.copy(CLIENT / "pyproject.toml", copy / "pyproject.toml")  # pytest's settings (asyncio_mode)
    run_client_tests(python, served, copy, PYTHONPATH="")
    print(f"client venv: built and tested in {time.monotonic() - started:.0f} s")
