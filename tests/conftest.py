from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Tests never reach a model hub; torch and BLAS share two cores politely.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Exports of the session's models (onnx/openvino backends) go to one folder per session, shared by the
# subprocesses the tests start and by pytest-xdist's workers of one run (`make test` runs two; an export is
# written to a temporary folder and renamed, so two workers exporting at once both end with a complete one),
# never into the working tree.
_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID")
os.environ.setdefault(
    "TAFSIR_MODEL_CACHE",
    os.path.join(tempfile.gettempdir(), f"tafsir-model-cache-{_RUN}")
    if _RUN
    else tempfile.mkdtemp(prefix="tafsir-model-cache-"),
)
# The store and model cache default to the per-user data folder (services/settings.py): in tests, a temporary
# one, never the developer's.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="tafsir-user-data-")


# Fixtures that stand for a server in a subprocess, a language model or the real CLI in a subprocess: a test using
# one (directly or through another fixture) carries the marker, so `make test-fast` (-m "not server and not llm
# and not cli ...") leaves it out.
FIXTURE_MARKERS = {"llm": "llm", "server": "server", "live_server": "server", "cli_env": "cli", "slow_env": "cli"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture in set(getattr(item, "fixturenames", ())) & FIXTURE_MARKERS.keys():
            item.add_marker(FIXTURE_MARKERS[fixture])


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment for a subprocess under test: no TAFSIR_* setting of the developer's shell
    leaks in (the session's model cache excepted), and the project is importable; ``settings`` on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAFSIR_") or k == "TAFSIR_MODEL_CACHE"}
    return {**env, "PYTHONPATH": str(ROOT), **settings}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random DistilBERT (tokenizer trained on the built-in tafsir), built once per session."""
    from ingest.builtin import read_builtin
    from tests.tiny_model import build_tiny_model

    folder = tmp_path_factory.mktemp("tiny")
    texts = [a.text for a in read_builtin().ayat[::3]]
    return build_tiny_model(folder, texts)


def cli_environment(folder: Path, tiny_model: Path, **extra: str) -> dict[str, str]:
    """Environment for running the real `tafsir` CLI (or server) in a subprocess on the store ``folder``/qdrant with
    the tiny model, one thread; ``extra`` settings on top."""
    return clean_env(
        TAFSIR_QDRANT_PATH=str(folder / "qdrant"),
        TAFSIR_EMBEDDING_MODEL=str(tiny_model),
        TAFSIR_COLLECTION="tafsir",
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        **extra,
    )


@pytest.fixture
def cli_env(tmp_path, tiny_model) -> dict[str, str]:
    """Environment for running the real `tafsir` CLI in a subprocess on a fresh store with the tiny model."""
    return cli_environment(tmp_path, tiny_model)


@pytest.fixture
def slow_env(cli_env) -> dict[str, str]:
    """cli_env with small batches and a progress line after each: lines to kill an ingest on, however fast
    the model runs."""
    return {
        **cli_env,
        "TAFSIR_UPSERT_BATCH_SIZE": "16",
        "TAFSIR_EMBED_BATCH_SIZE": "8",
        "TAFSIR_PROGRESS_INTERVAL": "0",
    }


def ingested_settings(folder: Path, tiny_model: Path, surahs: Iterable[int]):
    """Settings of a new store in ``folder``/qdrant holding the built-in tafsir of ``surahs`` as edition id.test,
    embedded with the tiny model (in this process: the store is closed again)."""
    import dataclasses

    from ingest.builtin import read_builtin
    from ingest.sources import Source

    ayat = tuple(dataclasses.replace(a, edition="id.test") for a in read_builtin().ayat if a.surah in surahs)
    with engine_over(folder, tiny_model, Source("id.test", "test", ayat)) as engine:
        return engine.settings


@contextlib.contextmanager
def engine_over(folder: Path, tiny_model: Path, *sources):
    """A search engine over a new embedded store in ``folder``/qdrant holding ``sources`` (ingested in this order
    with the tiny model); the store is closed when the block ends."""
    from ingest.pipeline import IngestPipeline
    from retriever.search import SearchEngine
    from services.embedding import Embedder
    from services.settings import Settings
    from services.store import open_store

    settings = Settings(_env_file=None, qdrant_path=folder / "qdrant", embedding_model=str(tiny_model))
    store = open_store(settings)
    embedder = Embedder(settings)
    try:
        pipeline = IngestPipeline(settings, store, embedder)
        for source in sources:
            pipeline.run(source)
        yield SearchEngine(settings, store=store, embedder=embedder)
    finally:
        store.close()


def tafsir_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "interfaces.cli", *args]


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    """The scripted OpenAI-compatible endpoint of tests/llm_server.py on a loopback port, one per test module."""
    from tests.llm_server import LlmServer

    server = LlmServer(tmp_path_factory.mktemp("llm") / "llm.log").wait()
    yield server
    server.stop()
