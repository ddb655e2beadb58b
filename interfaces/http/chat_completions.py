"""OpenAI-compatible routes: ``POST /v1/chat/completions`` and ``GET /v1/models``, so that any OpenAI client or
chat front-end (the official ``openai`` package, LangChain's ``ChatOpenAI``, Open WebUI, LibreChat) pointed at
this server as its base URL gets grounded answers from the answering core (``retriever.answer``).

The model is ``tafsir-rag``. The last message is the question, the earlier user and assistant messages the
conversation (system messages are the client's instructions, not the tafsir's: they are not passed on). The
reply's text ends with its sources ("Sumber: [1] QS ..."); the structured sources are in the extra field
``tafsir``. ``k``, ``mode`` and ``filter`` may be sent as extra body fields (``extra_body`` in the openai client).
Streaming follows OpenAI's format: ``chat.completion.chunk`` events, a usage chunk when
``stream_options.include_usage`` is set, then ``data: [DONE]``; a failure mid-stream is an ``{"error": ...}``
event, which OpenAI's clients raise as an error.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from interfaces.http.errors import ApiError, error_response
from interfaces.http.routes import ServiceDep
from interfaces.http.schemas import AnswerResponse, answer_error, answer_response, error_responses
from interfaces.requests import MAX_TURN_CHARS, MAX_TURNS, RetrieveFilter, search_options
from retriever.answer import Answer, AnswerEvent, Delta, Done, Failed, Turn, sources_footer
from retriever.search import MAX_K, MAX_QUERY_CHARS, SearchOptions
from services.store.base import Mode

MODEL_ID = "tafsir-rag"
CREATED = 1_767_225_600  # 2026-01-01: when the model id was first served (OpenAI's `created` is a timestamp)

openai_compatible = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])
PATH = "/v1/chat/completions"


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str = Field(max_length=50)
    text: str | None = Field(None, max_length=MAX_TURN_CHARS)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")  # name, tool_calls, ...: accepted, not used

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | Annotated[list[ContentPart], Field(max_length=50)] | None = Field(None, max_length=MAX_TURN_CHARS)

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """OpenAI's request body; the options that shape generation (temperature, max_tokens, ...) are accepted and
    left to the server's settings, since the answer must stay grounded whatever a client asks."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [{"model": MODEL_ID, "messages": [{"role": "user", "content": "Siapa Thalut?"}]}]
        },
    )

    # A string, as in OpenAI's API (another model is 404 model_not_found, as there); the schema names the one.
    model: str = Field(
        max_length=200, description=f"Must be {MODEL_ID!r} (GET /v1/models).", json_schema_extra={"enum": [MODEL_ID]}
    )
    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=MAX_TURNS + 1)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    k: int = Field(5, ge=1, le=MAX_K, description="Extension: how many passages to answer from.")
    mode: Mode = Field(Mode.HYBRID, description="Extension: dense, sparse or hybrid search.")
    filter: RetrieveFilter | None = Field(None, description="Extension: surah(s), ayah range, edition(s).")

    @model_validator(mode="after")
    def _ends_with_a_question(self) -> ChatCompletionRequest:
        last = self.messages[-1]
        if last.role != "user":
            raise ValueError(f"the last message must be the user's question (role 'user'), not {last.role!r}")
        if not last.text.strip():
            raise ValueError("the last message (the question) is blank")
        if len(last.text) > MAX_QUERY_CHARS:
            raise ValueError(f"the question (the last message) must be at most {MAX_QUERY_CHARS:,} characters")
        return self

    def question(self) -> str:
        return self.messages[-1].text

    def history(self) -> list[Turn]:
        return [
            Turn(role=m.role, content=m.text)
            for m in self.messages[:-1]
            if m.role in ("user", "assistant") and m.text.strip()
        ]

    def options(self) -> SearchOptions:
        return search_options(self.k, self.mode, self.filter)


class ModelCard(BaseModel):
    id: str = MODEL_ID
    object: Literal["model"] = "model"
    created: int = CREATED
    owned_by: str = "tafsir-rag"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop"] = "stop"
    logprobs: None = None


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str = MODEL_ID
    choices: list[Choice]
    usage: CompletionUsage
    tafsir: AnswerResponse = Field(description="Extension: the answer's sources, citations and searched query.")


@openai_compatible.get("/models", response_model=ModelList)
async def models() -> ModelList:
    """The models this server answers with (OpenAI's format): one, `tafsir-rag`."""
    return ModelList(data=[ModelCard()])


@openai_compatible.get("/models/{model}", response_model=ModelCard, responses=error_responses(404, openai=True))
async def model(model: Annotated[str, Path(max_length=200)]) -> ModelCard:
    """One model (OpenAI's format)."""
    _check_model(model)
    return ModelCard()


@openai_compatible.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={
        200: {
            "content": {
                "text/event-stream": {
                    "schema": {"type": "object", "properties": {"data": {"type": "string"}}, "required": ["data"]}
                }
            },
            "description": "With `stream: true`: OpenAI's `chat.completion.chunk` events, then `data: [DONE]`.",
        },
        **error_responses(400, 404, 413, 502, 504, openai=True),
    },
)
async def chat_completions(body: ChatCompletionRequest, service: ServiceDep) -> Any:
    """A grounded answer in OpenAI's chat completion format; its text ends with its sources."""
    _check_model(body.model)
    answerer = service.answerer
    events = answerer.stream(body.question(), body.history(), body.options())
    first = await run_in_threadpool(next, events, None)
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        chunks = _chunks(first, events, ident, created, include_usage, lambda a: usage(service, body, a))
        return EventSourceResponse(chunks)
    rest = await run_in_threadpool(list, events)
    last = [first, *rest][-1]
    if isinstance(last, Failed):
        status, error = answer_error(last.error, last.answer)
        # OpenAI's clients retry 5xx unless told not to: the same request would fail the same way.
        return openai_error(status, error, headers={"x-should-retry": "false"})
    answer = last.answer
    return ChatCompletion(
        id=ident,
        created=created,
        choices=[Choice(message=AssistantMessage(content=with_sources(answer)))],
        usage=await run_in_threadpool(usage, service, body, answer),
        tafsir=answer_response(answer),
    )


def openai_error(status: int, error, headers: dict[str, str] | None = None) -> JSONResponse:
    """A language model's failure in OpenAI's error shape, with the sources found."""
    extra = error.model_dump(exclude={"error", "message", "details"})
    return error_response(status, error.error, error.message, headers=headers, path=PATH, extra=extra)


def _check_model(model: str) -> None:
    if model != MODEL_ID:
        raise ApiError(404, "model_not_found", f"The model {model!r} does not exist: this server serves {MODEL_ID!r}.")


def with_sources(answer: Answer) -> str:
    footer = sources_footer(answer)
    return f"{answer.text}\n\n{footer}" if footer else answer.text


def usage(service, body: ChatCompletionRequest, answer: Answer) -> CompletionUsage:
    """The language model's tokens when one wrote the answer; else the question and the answer counted with the
    embedding model's tokenizer (the only one this server has), so that clients that add usage up still can."""
    if answer.usage is not None:
        prompt, completion = answer.usage.prompt_tokens, answer.usage.completion_tokens
    else:
        tokenizer = service.engine.embedder.tokenizer
        prompt = len(tokenizer.encode(body.question()).ids)
        completion = len(tokenizer.encode(with_sources(answer)).ids)
    return CompletionUsage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


async def _chunks(
    first: AnswerEvent, rest: Iterator[AnswerEvent], ident: str, created: int, include_usage: bool, count
) -> AsyncIterator[ServerSentEvent]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> ServerSentEvent:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        payload = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": MODEL_ID}
        payload.update(choices=[choice], **extra)
        return ServerSentEvent(data=json.dumps(payload, ensure_ascii=False))

    yield chunk({"role": "assistant", "content": ""})

    async def events() -> AsyncIterator[AnswerEvent]:
        yield first
        async for event in iterate_in_threadpool(rest):
            yield event

    async for event in events():
        if isinstance(event, Delta):
            yield chunk({"content": event.text})
        elif isinstance(event, Failed):
            status, error = answer_error(event.error, event.answer)
            yield ServerSentEvent(data=openai_error(status, error).body.decode("utf-8"))
            return
        elif isinstance(event, Done):
            answer = event.answer
            footer = sources_footer(answer)
            if footer:
                yield chunk({"content": f"\n\n{footer}"})
            yield chunk({}, "stop", tafsir=json.loads(answer_response(answer).model_dump_json()))
            if include_usage:
                counted = await run_in_threadpool(count, answer)
                payload = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": MODEL_ID}
                yield ServerSentEvent(data=json.dumps({**payload, "choices": [], "usage": counted.model_dump()}))
    yield ServerSentEvent(data="[DONE]")
