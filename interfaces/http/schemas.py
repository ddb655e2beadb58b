"""The bodies the HTTP API sends, and their OpenAPI error entries (what it receives is ``interfaces/requests.py``'s,
the models the CLI validates with too)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from retriever.search import Passage

# Output models read a ``Passage`` by its attributes (``from_attributes``): a field of a passage is named once,
# in the model that shows it.


class DocumentMetadata(BaseModel):
    model_config = ConfigDict(from_attributes=True)

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
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="The Qdrant point id (UUIDv5 of edition:surah:ayah:chunk).")
    text: str = Field(description="The chunk's tafsir text.")
    citation: str = Field(description='E.g. "QS Al-Baqarah [2]: 255".')
    score: float = Field(description="Relevance; 0 for neighbouring ayat added as context.")
    metadata: DocumentMetadata

    @model_validator(mode="before")
    @classmethod
    def _metadata_of_a_passage(cls, value: Any) -> Any:
        """A ``Passage`` carries its metadata in its own fields."""
        return {**vars(value), "metadata": value} if isinstance(value, Passage) else value


class RetrieveResponse(BaseModel):
    documents: list[Document]
    took_ms: float = Field(description="Time spent searching, in milliseconds.")


class AyahChunk(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    edition: str
    chunk: int
    chunks: int
    text: str


class AyahResponse(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    citation: str
    surah: int
    surah_name: str
    surah_name_ar: str
    ayah: int
    translation: str | None = Field(description="The ayah's translation, in the wording TAFSIR_TRANSLATION chooses.")
    arabic: str | None
    chunks: list[AyahChunk] = Field(description="The stored tafsir chunks of this ayah, by edition and position.")


class EditionOut(BaseModel):
    edition: str = Field(description="The edition id, as the edition filter takes it, e.g. id.jalalayn.")
    language: str | None = Field(
        description="The id before its first dot, as the language filter takes it (none for an id without a dot)."
    )
    points: int = Field(description="Its stored tafsir chunks.")


class EditionsResponse(BaseModel):
    editions: list[EditionOut] = Field(description="By edition id.")


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


def error_responses(*statuses: int, openai: bool = False) -> dict[int | str, dict[str, Any]]:
    meaning = {
        400: "The body could not be parsed (e.g. not UTF-8)",
        401: "No API key was sent",
        403: "The API key is wrong",
        404: "Not found",
        413: "The body exceeds 64 KiB",
        422: "The request is invalid",
        500: "An unexpected error (details in the server log only)",
        502: "The language model failed (unreachable, an error, a malformed reply); the sources found are included",
        503: "The store or the model is unavailable",
        504: "The language model did not answer in time (TAFSIR_LLM_TIMEOUT); the sources found are included",
    }

    def model(status: int) -> type[BaseModel]:
        if openai:
            return OpenAIErrorResponse
        return AnswerErrorResponse if status in (502, 504) else ErrorResponse

    return {status: {"model": model(status), "description": meaning[status]} for status in statuses}


def document(passage: Passage) -> Document:
    return Document.model_validate(passage)


# --- answers (POST /v1/answer, and the sources of /v1/chat/completions) ---------------------------------------


class Source(BaseModel):
    number: int = Field(description="The passage's number as the model saw it: [1], [2], ...")
    cited: bool = Field(description="Whether the answer cites this passage.")
    id: str = Field(description="The Qdrant point id.")
    citation: str = Field(description='E.g. "QS Al-Baqarah [2]: 255".')
    surah: int
    surah_name: str
    ayah: int
    edition: str
    also_in: list[str] = Field(default_factory=list, description="Other editions holding the same text.")
    score: float = Field(description="Relevance in the search mode used (an RRF score in hybrid mode).")
    text: str = Field(description="The tafsir passage.")
    translation: str | None = Field(description="The ayah's translation, in the wording TAFSIR_TRANSLATION chooses.")
    arabic: str | None


class InvalidCitationOut(BaseModel):
    text: str = Field(description="The citation as the model wrote it (cut from the answer).")
    reason: str


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class AnswerResponse(BaseModel):
    answer: str = Field(description="The answer, in Indonesian, citing its passages as [n] or QS Name [s]: a.")
    mode: str = Field(
        description="generated (by the language model), extractive (sentences of the passages: no language model "
        "is set) or not_found (the tafsir does not answer the question; no language model was asked)."
    )
    sources: list[Source] = Field(description="The passages the answer was made from, numbered as it cites them.")
    cited: list[int] = Field(description="Numbers of the passages the answer cites, in the order first cited.")
    invalid_citations: list[InvalidCitationOut] = Field(
        description="Citations the model wrote of passages it was not given: cut from the answer."
    )
    searched_query: str = Field(description="What was searched: the question, or a follow-up made standalone.")
    similarity: float | None = Field(description="Cosine between the searched query and its closest passage.")
    confidence: float | None = Field(
        description="Probability that the tafsir answers the question, from the model's fitted not-found decision "
        "(below its threshold: not_found); null when the model has none and the cosine alone decides."
    )
    llm: str | None = Field(description="The language model that wrote the answer, if one did.")
    usage: UsageOut | None = Field(description="The language model's tokens (rewriting and answer), if one ran.")
    took_ms: float


class AnswerErrorResponse(ErrorResponse):
    setting: str | None = Field(None, description="The setting to check (e.g. TAFSIR_LLM_BASE_URL).")
    searched_query: str = ""
    sources: list[Source] = Field(default_factory=list, description="The passages found before the model failed.")
    partial_answer: str = Field("", description="What the model had written (checked) when it failed.")


def sources(answer) -> list[Source]:
    """The passages of a ``retriever.answer.Answer``, numbered as the model saw them."""
    cited = set(answer.cited)
    return [
        Source.model_validate({**vars(p), "number": number, "cited": number in cited})
        for number, p in enumerate(answer.passages, start=1)
    ]


def answer_response(answer) -> AnswerResponse:
    return AnswerResponse(
        answer=answer.text,
        mode=str(answer.mode),
        sources=sources(answer),
        cited=list(answer.cited),
        invalid_citations=[InvalidCitationOut(text=c.text, reason=c.reason) for c in answer.invalid_citations],
        searched_query=answer.searched_query,
        similarity=answer.similarity,
        confidence=answer.confidence,
        llm=answer.llm,
        usage=UsageOut(**vars(answer.usage)) if answer.usage is not None else None,
        took_ms=answer.took_ms,
    )


# The language model's failures: the gateway's statuses (RFC 9110: 502 an invalid response from upstream, 504 no
# response in time), with the code a client can branch on.
LLM_ERRORS = {
    "timeout": (504, "llm_timeout"),
    "unreachable": (502, "llm_unreachable"),
    "status": (502, "llm_failed"),
    "malformed": (502, "llm_malformed_reply"),
}


def answer_error(error, answer) -> tuple[int, AnswerErrorResponse]:
    """The status and body for a ``retriever.answer.LlmError``, with what was found."""
    status, code = LLM_ERRORS[error.kind]
    body = AnswerErrorResponse(
        error=code,
        message=error.message,
        setting=error.setting,
        searched_query=answer.searched_query,
        sources=sources(answer),
        partial_answer=answer.text,
    )
    return status, body


class OpenAIError(BaseModel):
    message: str
    type: str = Field(description="The same code as `error` in the other routes' errors.")
    code: str
    param: None = None
    details: list[ErrorDetail] | None = None
    setting: str | None = None
    searched_query: str | None = None
    sources: list[Source] | None = None
    partial_answer: str | None = None


class OpenAIErrorResponse(BaseModel):
    """An error in OpenAI's shape, on the OpenAI-compatible routes."""

    error: OpenAIError
