"""The bodies the HTTP API sends, and their OpenAPI error entries (requests are ``retriever.search.RetrieveRequest``,
the same model the CLI validates with)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from retriever.search import Passage


class DocumentMetadata(BaseModel):
    surah: int
    surah_name: str
    ayah: int
    chunk: int = Field(description="This chunk's position within the ayah's tafsir (0-based).")
    chunks: int = Field(description="How many chunks the ayah's tafsir has.")
    edition: str
    translation: str | None = Field(description="The ayah's translation, in the wording TAFSIR_TRANSLATION chooses.")
    arabic: str | None
    context_for: str | None = Field(
        None, description="For a neighbouring ayah added as context: the citation of the hit it surrounds."
    )
    also_in: list[str] = Field(
        default_factory=list,
        description="Other editions holding the same text for this ayah: one passage stands for them all.",
    )


class Document(BaseModel):
    id: str = Field(description="The Qdrant point id (UUIDv5 of edition:surah:ayah:chunk).")
    text: str = Field(description="The chunk's tafsir text.")
    citation: str = Field(description='E.g. "QS Al-Baqarah [2]: 255".')
    score: float = Field(description="Relevance; 0 for neighbouring ayat added as context.")
    metadata: DocumentMetadata


class RetrieveResponse(BaseModel):
    documents: list[Document]
    took_ms: float = Field(description="Time spent searching, in milliseconds.")


class AyahChunk(BaseModel):
    id: str
    edition: str
    chunk: int
    chunks: int
    text: str


class AyahResponse(BaseModel):
    citation: str
    surah: int
    surah_name: str
    surah_name_ar: str
    ayah: int
    translation: str | None = Field(description="The ayah's translation, in the wording TAFSIR_TRANSLATION chooses.")
    arabic: str | None
    chunks: list[AyahChunk] = Field(description="The stored tafsir chunks of this ayah, by edition and position.")


class HealthResponse(BaseModel):
    status: str = "ok"


class ReadyResponse(BaseModel):
    status: str = "ready"
    collection: str = Field(description="The physical collection behind the alias.")
    points: int
    model: str


class ErrorDetail(BaseModel):
    location: list[str | int]
    message: str
    type: str


class ErrorResponse(BaseModel):
    error: str = Field(description="A stable code, e.g. invalid_request, unauthorized, not_found, not_ready.")
    message: str = Field(description="What went wrong, for people.")
    details: list[ErrorDetail] | None = Field(None, description="For invalid_request: each problem and where.")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    meaning = {
        400: "The body could not be parsed (e.g. not UTF-8)",
        401: "No API key was sent",
        403: "The API key is wrong",
        404: "Not found",
        413: "The body exceeds 64 KiB",
        422: "The request is invalid",
        500: "An unexpected error (details in the server log only)",
        503: "The store or the model is unavailable",
    }
    return {status: {"model": ErrorResponse, "description": meaning[status]} for status in statuses}


def document(passage: Passage) -> Document:
    return Document(
        id=passage.id,
        text=passage.text,
        citation=passage.citation,
        score=passage.score,
        metadata=DocumentMetadata(
            surah=passage.surah,
            surah_name=passage.surah_name,
            ayah=passage.ayah,
            chunk=passage.chunk,
            chunks=passage.chunks,
            edition=passage.edition,
            translation=passage.translation,
            arabic=passage.arabic,
            context_for=passage.context_for,
            also_in=list(passage.also_in),
        ),
    )
