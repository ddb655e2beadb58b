"""The onnx and openvino backends: a local export, checked against torch, cached, and run without torch."""

from __future__ import annotations

import json
import locale
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from services import backends
from services.embedding import Embedder
from services.model_source import EmbeddingModelError
from services.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
# One-token, medium, over-the-limit and empty-ish texts, in no particular length order.
TEXTS = [
    "Dan (ingatlah) ketika Tuhanmu berfirman kepada para malaikat.",
    "a",
    "Allah, tidak ada tuhan selain Dia. Yang Mahahidup, yang terus menerus mengurus makhluk-Nya. " * 30,
    "zakat",
    "Siapakah Nabi Zakaria dan apa doanya ketika meminta keturunan?",
]


def embedder(model: Path, cache: Path, **settings) -> Embedder:
    return Embedder(Settings(_env_file=None, embedding_model=str(model), model_cache=cache, **settings))


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def torch_rows(tiny_model) -> np.ndarray:
    return embedder(tiny_model, Path("/nonexistent"), embedding_backend="torch").encode_documents(TEXTS, 2)


@pytest.mark.parametrize(
    ("backend", "quantization", "floor"),
    [("onnx", "none", 0.9999), ("openvino", "none", 0.9999), ("onnx", "int8", 0.98), ("openvino", "int8", 0.98)],
)
def test_exported_backends_embed_like_torch_row_for_row(tiny_model, torch_rows, tmp_path, backend, quantization, floor):
    model = embedder(
        tiny_model, tmp_path, embedding_backend=backend, embedding_quantization=quantization, embedding_precision="f32"
    )
    rows = model.encode_documents(TEXTS, batch_size=2)  # batches mix lengths; rows must come back in input order
    assert rows.shape == torch_rows.shape and rows.dtype == np.float32
    assert cosine(rows, torch_rows).min() >= floor
    query = np.asarray([model.encode_query(TEXTS[3])])
    assert cosine(query, torch_rows[3:4])[0] >= floor
    described = model.describe_backend()
    assert described["backend"] == backend and described["quantization"] == quantization


def test_int8_quantizes_every_weight_matmul_of_the_onnx_graph(tiny_model, tmp_path):
    import onnx

    ops = {}
    for quantization in ("none", "int8"):
        model = embedder(tiny_model, tmp_path, embedding_backend="onnx", embedding_quantization=quantization)
        model.warm_up()
        graph = onnx.load(str(Path(model.describe_backend()["export"]) / backends.ONNX_FILE)).graph
        ops[quantization] = [node.op_type for node in graph.node]
    weight_matmuls = ops["none"].count("MatMul") - ops["int8"].count("MatMul")
    assert weight_matmuls > 0 and ops["int8"].count("MatMulInteger") == weight_matmuls
    assert "MatMulInteger" not in ops["none"]


def test_the_export_is_made_once_and_a_new_process_serves_from_it_without_importing_torch(tiny_model, tmp_path):
    exports: list[str] = []
    first = embedder(tiny_model, tmp_path, embedding_backend="openvino")
    first.on_export = exports.append
    expected = first.encode_query(TEXTS[0])
    assert len(exports) == 1 and str(tmp_path) in exports[0]
    folder = Path(first.describe_backend()["export"])
    manifest_mtime = (folder / backends.MANIFEST).stat().st_mtime_ns

    script = (
        "import json, sys\n"
        "from services.settings import Settings\n"
        "from services.embedding import Embedder\n"
        "e = Embedder(Settings(_env_file=None))\n"
        "seen = []\n"
        "e.on_export = seen.append\n"
        "v = e.encode_query(sys.argv[1])\n"
        "print(json.dumps({'vector': v, 'exports': seen, 'torch': 'torch' in sys.modules,"
        " 'transformers': 'transformers' in sys.modules}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAFSIR_")}
    env.update(
        TAFSIR_EMBEDDING_MODEL=str(tiny_model),
        TAFSIR_EMBEDDING_BACKEND="openvino",
        TAFSIR_MODEL_CACHE=str(tmp_path),
        PYTHONPATH=str(ROOT),
    )
    result = subprocess.run(
        [sys.executable, "-c", script, TEXTS[0]], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["exports"] == [] and not report["torch"] and not report["transformers"]
    assert cosine(np.asarray([report["vector"]]), np.asarray([expected]))[0] > 0.9999
    assert (folder / backends.MANIFEST).stat().st_mtime_ns == manifest_mtime


def test_an_export_that_disagrees_with_torch_is_refused_and_nothing_is_cached(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setitem(backends.MIN_PROBE_COSINE, "none", 1.5)  # no export can reach it
    model = embedder(tiny_model, tmp_path, embedding_backend="onnx")
    with pytest.raises(backends.BackendError, match=r"TAFSIR_EMBEDDING_BACKEND=onnx.*disagrees with torch"):
        model.warm_up()
    assert not list(tmp_path.rglob(backends.MANIFEST))
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".export-")]  # no half-written folder left


def test_an_unwritable_cache_names_the_setting(tiny_model, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    model = embedder(tiny_model, blocker / "cache", embedding_backend="onnx")
    with pytest.raises(backends.BackendError, match="TAFSIR_MODEL_CACHE"):
        model.warm_up()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"embedding_backend": "openvino", "device": "cuda"}, "TAFSIR_DEVICE=cuda needs TAFSIR_EMBEDDING_BACKEND"),
        ({"embedding_backend": "torch", "embedding_quantization": "int8"}, "TAFSIR_EMBEDDING_QUANTIZATION=int8"),
    ],
)
def test_settings_that_cannot_run_together_are_refused_with_both_names(tiny_model, tmp_path, settings, message):
    with pytest.raises(EmbeddingModelError, match=message):
        embedder(tiny_model, tmp_path, **settings)


def test_an_unknown_backend_is_refused_by_the_settings(monkeypatch):
    monkeypatch.setenv("TAFSIR_EMBEDDING_BACKEND", "tensorflow")
    with pytest.raises(ValueError, match="embedding_backend"):
        Settings(_env_file=None)


def test_openvino_document_batches_run_on_a_model_that_release_drops_and_queries_keep_working(tiny_model, tmp_path):
    model = embedder(tiny_model, tmp_path, embedding_backend="openvino")
    query_before = model.encode_query(TEXTS[4])
    rows = model.encode_documents(TEXTS, batch_size=4)
    runner = model.runner
    assert runner._documents is not None and runner._documents[0] is not runner.compiled
    model.release_working_memory()
    assert runner._documents is None
    assert np.allclose(model.encode_query(TEXTS[4]), query_before, atol=1e-5)
    assert np.allclose(model.encode_documents(TEXTS, batch_size=4), rows, atol=1e-5)  # compiled again on demand


def test_batches_are_padded_to_a_multiple_of_16_tokens_so_shapes_stay_few(tiny_model, tmp_path):
    model = embedder(tiny_model, tmp_path, embedding_backend="onnx")
    model.warm_up()
    lengths = {model.runner._feeds([text])["input_ids"].shape[1] for text in TEXTS}
    assert lengths and all(length % backends.PAD_MULTIPLE == 0 for length in lengths)
    assert max(lengths) <= model.max_tokens


def test_a_text_over_the_limit_is_cut_as_the_tokenizer_would_cut_it_keeping_its_closing_token(tiny_model, tmp_path):
    model = embedder(tiny_model, tmp_path, embedding_backend="onnx", chunk_tokens=64, chunk_overlap=8)
    model.warm_up()
    long = TEXTS[2]
    assert len(model.tokenizer.encode(long).ids) > 64
    feeds = model.runner._feeds([long, "zakat"])
    reference = model.tokenizer.encode(long, add_special_tokens=False)
    reference.truncate(64 - model.special_tokens)  # the text cut first, as the tokenizers library does ...
    expected = model.tokenizer.post_process(reference).ids  # ... then its special tokens added
    assert feeds["input_ids"].shape == (2, 64) and feeds["input_ids"][0].tolist() == expected
    assert feeds["attention_mask"][1].sum() == len(model.tokenizer.encode("zakat").ids)
    assert model.tokenizer.truncation is None and model.tokenizer.padding is None  # shared, never changed


def test_openvino_models_compiled_in_several_threads_at_once_leave_the_process_locale_alone(tiny_model, tmp_path):
    # OpenVINO switches the C locale while it loads a compiled blob from its cache; two threads doing so at once
    # left LC_CTYPE at "C" (then open() reads UTF-8 files as ASCII). Compiling takes turns in the process.
    embedder(tiny_model, tmp_path, embedding_backend="openvino").encode_query(TEXTS[0])  # export and blob cache
    runners = [embedder(tiny_model, tmp_path, embedding_backend="openvino").runner for _ in range(2)]
    before = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C.UTF-8")
    errors: list[BaseException] = []

    def compile_again(runner) -> None:
        try:
            for _ in range(8):
                runner.encode_documents(TEXTS[:2], batch_size=2)
                runner.release()  # the document model is compiled again on the next batch
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=compile_again, args=(runner,)) for runner in runners]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        after = locale.setlocale(locale.LC_CTYPE)
    finally:
        locale.setlocale(locale.LC_CTYPE, before)
    assert not errors, errors
    assert after == "C.UTF-8"
