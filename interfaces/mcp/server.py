"""The tafsir as MCP tools, with the official SDK's ``MCPServer`` (FastMCP, renamed in mcp 2).

Three tools, in the spirit of Qdrant's ``mcp-server-qdrant`` (a search tool whose results an agent reads), but
over this project's own search and answering core, so that an agent gets exactly what the HTTP API gives:

- ``search_tafsir(query, k, surah?)``: passages with citations, Arabic text and translation;
- ``get_ayah(surah, ayah)``: one ayah with its stored tafsir;
- ``answer(question, messages?)``: a grounded answer with checked citations (``retriever.answer``); a follow-up
  carries the earlier turns of the conversation, as ``POST /v1/answer`` takes them.

Descriptions are in English, which agents read best, with Indonesian examples, the language of the tafsir.
Bad arguments (a surah outside 1-114, an ayah its surah lacks, an empty query) and failures (the store, the
language model) come back as tool errors, text an agent can read; nothing crashes the server. The work runs in
a worker thread, so that an HTTP server's event loop keeps serving while a query embeds.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, ConfigDict, Field

from interfaces.requests import MAX_EDITION_CHARS, MAX_TURNS, Turn, history
from retriever.answer import Answerer, AnswerFailed
from retriever.ayah import AyahNotStored, lookup_ayah
from retriever.search import MAX_K, MAX_QUERY_CHARS, Passage, SearchOptions, TafsirFilter
from services.model_source import EmbeddingModelError
from services.quran import SURAH_COUNT
from services.store.base import PointFilter, StoreError

INSTRUCTIONS = (
    "Indonesian tafsir (Quran commentary) with exact citations such as 'QS Al-Baqarah [2]: 255'. Ask in "
    "Indonesian. Use search_tafsir to read passages, get_ayah for a known ayah, and answer for a finished, "
    "cited answer. Quote citations exactly as given; never cite an ayah you did not get from these tools."
)


class PassageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # read from a Passage's attributes

    citation: str = Field(description="E.g. 'QS Al-Baqarah [2]: 255'.")
    surah: int
    surah_name: str
    ayah: int
    edition: str
    score: float
    text: str = Field(description="The tafsir (commentary) passage, in Indonesian.")
    translation: str | None = Field(description="The ayah's Indonesian translation (Ministry of Religious Affairs).")
    arabic: str | None = Field(description="The ayah's Arabic text.")


class SearchResult(BaseModel):
    passages: list[PassageOut] = Field(description="Best first.")


class AyahOut(BaseModel):
    citation: str
    surah: int
    surah_name: str
    surah_name_ar: str
    ayah: int
    translation: str | None
    arabic: str | None
    tafsir: list[str] = Field(description="The stored tafsir of this ayah, chunk by chunk, by edition.")
    editions: list[str]


class SourceOut(PassageOut):
    number: int = Field(description="The passage's number as the answer cites it: [1], [2], ...")
    cited: bool


class AnswerOut(BaseModel):
    answer: str = Field(description="The answer in Indonesian; it cites its passages as [n] or 'QS Name [s]: a'.")
    mode: str = Field(description="generated, extractive (no language model configured) or not_found.")
    sources: list[SourceOut]
    searched_query: str = Field(description="What was searched (a follow-up made standalone).")
    invalid_citations: list[str] = Field(description="Citations of passages not given to the model: cut out.")
    confidence: float | None = Field(
        None, description="Probability that the tafsir answers the question (below the model's threshold: not_found)."
    )


def passage_out(passage: Passage) -> PassageOut:
    return PassageOut.model_validate(passage)


# The filters every search-backed tool takes besides its own (one collection holds many editions: docs/SCALING.md).
Edition = Annotated[
    str | None,
    Field(
        min_length=1,
        max_length=MAX_EDITION_CHARS,
        description="Only this edition, by its id, e.g. 'id.jalalayn' (get_ayah lists the editions of an ayah).",
    ),
]
Language = Annotated[
    str | None,
    Field(
        min_length=1,
        max_length=MAX_EDITION_CHARS,
        description="Only the editions in this language: the edition id before its first dot, e.g. 'id' or 'en'.",
    ),
]


def point_filter(
    surah: int | None = None, edition: str | None = None, language: str | None = None
) -> PointFilter | None:
    """The tools' filter arguments as the search engine's filter (none when none is given)."""
    if (surah, edition, language) == (None, None, None):
        return None
    return TafsirFilter(surah=surah, edition=edition, language=language).to_point_filter()


def build_server(answerer: Answerer, warm_up: Callable[[], None] | None = None) -> MCPServer:
    """An MCP server over ``answerer`` (and its search engine).

    ``warm_up`` (loading the model) runs in a background thread once the server is up, so that a client's
    ``initialize`` and ``tools/list`` are answered at once rather than after the model loads (clients give a
    server a few seconds to connect); a tool called meanwhile waits for the load it needs.
    """
    engine = answerer.engine

    @contextlib.asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[dict]:
        # Entered once the transport holds stdout (mcp's stdio_server points fd 1 at stderr meanwhile), so
        # whatever the load prints never reaches the protocol.
        if warm_up is not None:
            threading.Thread(target=_logged(warm_up), name="tafsir-mcp-warm-up", daemon=True).start()
        yield {}

    server = MCPServer(
        name="tafsir-rag", instructions=INSTRUCTIONS, version="0.1.0", log_level="WARNING", lifespan=lifespan
    )

    async def in_thread(function, *args):
        try:
            return await anyio.to_thread.run_sync(function, *args)
        except (StoreError, EmbeddingModelError) as exc:
            raise ToolError(f"The tafsir store cannot be searched right now: {exc}") from None

    @server.tool(
        description=(
            "Search Indonesian tafsir (commentary on the Quran) for the passages that best match a question or "
            "topic. Each passage comes with its exact citation (e.g. 'QS Al-Baqarah [2]: 255'), the ayah's Arabic "
            "text and Indonesian translation, and the commentary. Write the query in Indonesian, e.g. "
            "'hukum meminum khamar', 'kisah Nabi Musa dan Firaun', 'Siapa Thalut?'. "
            "Optionally restrict to one surah by its number, e.g. surah=2 for Al-Baqarah."
        )
    )
    async def search_tafsir(
        query: Annotated[
            str,
            Field(min_length=1, max_length=MAX_QUERY_CHARS, description="The question or topic, in Indonesian."),
        ],
        k: Annotated[int, Field(ge=1, le=MAX_K, description="How many passages (1-50).")] = 5,
        surah: Annotated[
            int | None, Field(ge=1, le=SURAH_COUNT, description="Only this surah (1-114), e.g. 2 for Al-Baqarah.")
        ] = None,
        edition: Edition = None,
        language: Language = None,
    ) -> SearchResult:
        if not query.strip():
            raise ToolError("query is blank: write a question or topic in Indonesian, e.g. 'hukum riba'")
        options = SearchOptions(k=k, filter=point_filter(surah, edition, language))
        passages = await in_thread(engine.search, query, options)
        return SearchResult(passages=[passage_out(p) for p in passages])

    @server.tool(
        description=(
            "Get one ayah (verse) of the Quran by surah and ayah number: its Arabic text, its Indonesian "
            "translation and the stored tafsir (commentary). E.g. surah=2, ayah=255 (Ayat al-Kursi, "
            "'QS Al-Baqarah [2]: 255'); surah=112, ayah=1 ('QS Al-Ikhlas [112]: 1')."
        )
    )
    async def get_ayah(
        surah: Annotated[int, Field(ge=1, le=SURAH_COUNT, description="Surah number, 1-114.")],
        ayah: Annotated[int, Field(ge=1, description="Ayah number within the surah, from 1.")],
    ) -> AyahOut:
        try:
            found = await in_thread(lookup_ayah, engine, surah, ayah)
        except (ValueError, AyahNotStored) as exc:
            raise ToolError(str(exc)) from None
        tafsir, editions = [c.text for c in found.chunks], sorted({c.edition for c in found.chunks})
        return AyahOut.model_validate({**vars(found), "tafsir": tafsir, "editions": editions})

    @server.tool(
        description=(
            "Answer a question from the tafsir alone, citing the passages used as [n] or 'QS Name [s]: a'; "
            "citations of anything the answer was not given are removed. Returns the answer with its sources "
            "(Arabic text, translation, commentary). mode says how it was made: 'generated' by the server's "
            "language model, 'extractive' (sentences quoted from the passages, when the server has no language "
            "model), or 'not_found' when the tafsir does not cover the question. Ask in Indonesian, e.g. "
            "'Apa hukuman bagi pencuri menurut Al-Qur'an?', 'Bagaimana kisah Ashabul Kahfi?'."
        )
    )
    async def answer(
        question: Annotated[
            str, Field(min_length=1, max_length=MAX_QUERY_CHARS, description="The question, in Indonesian.")
        ],
        messages: Annotated[
            list[Turn],
            Field(
                max_length=MAX_TURNS,
                description="Earlier turns of the conversation, oldest first, each {role: 'user' or 'assistant', "
                "content}: a follow-up such as 'lalu apa hukumannya?' needs them (searched_query shows what was "
                "searched).",
            ),
        ] = [],  # noqa: B006 (pydantic copies a default; the schema shows [] as optional)
        edition: Edition = None,
        language: Language = None,
    ) -> AnswerOut:
        if not question.strip():
            raise ToolError("question is blank: ask in Indonesian, e.g. 'Siapa Thalut?'")
        options = SearchOptions(filter=point_filter(edition=edition, language=language))
        try:
            result = await in_thread(answerer.answer, question, history(messages), options)
        except AnswerFailed as failed:
            found = ", ".join(p.citation for p in failed.answer.passages) or "none"
            raise ToolError(f"{failed.error.message}. Passages found: {found}.") from None
        cited = set(result.cited)
        return AnswerOut(
            answer=result.text,
            mode=str(result.mode),
            sources=[
                SourceOut.model_validate({**vars(p), "number": n, "cited": n in cited})
                for n, p in enumerate(result.passages, start=1)
            ],
            searched_query=result.searched_query,
            invalid_citations=[c.text for c in result.invalid_citations],
            confidence=result.confidence,
        )

    return server


# Seconds the background load waits: a client sends initialize and tools/list as soon as the server is up, and on
# a busy CPU (two cores, the GIL) a load started at once (imports, an export) delays those answers by seconds.
WARM_UP_DELAY = 1.0


def _logged(warm_up: Callable[[], None]) -> Callable[[], None]:
    """``warm_up`` after :data:`WARM_UP_DELAY`, its failure logged rather than raised: a tool called later
    reports it to the client (and a tool called sooner loads what it needs itself)."""

    def run() -> None:
        time.sleep(WARM_UP_DELAY)
        try:
            warm_up()
        except Exception as exc:
            logging.getLogger("interfaces.mcp").error("loading the model in the background failed: %s", exc)

    return run
