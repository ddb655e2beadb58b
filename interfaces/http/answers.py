"""``POST /v1/answer``: a grounded answer from the answering core (``retriever.answer.Answerer``), whole or as
Server-Sent Events (sse-starlette): ``delta`` events with the text as it is written, then one ``done`` event
with the whole response (or one ``error`` event, with the sources found, when the language model fails)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from interfaces.http.routes import ServiceDep
from interfaces.http.schemas import AnswerResponse, answer_error, answer_response, error_responses
from interfaces.requests import AnswerRequest, history
from retriever.answer import AnswerEvent, Delta, Done, Failed

answering = APIRouter(prefix="/v1", tags=["answers"])

# One event of the stream, as OpenAPI describes a text/event-stream body: its fields (data is JSON text).
SSE_EVENT = {
    "type": "object",
    "properties": {"event": {"type": "string", "enum": ["delta", "done", "error"]}, "data": {"type": "string"}},
    "required": ["event", "data"],
}

STREAM_DESCRIPTION = (
    'With `stream: true`: Server-Sent Events. `event: delta` with `{"text": ...}` as the answer is written '
    "(citations already checked), then one `event: done` whose data is the response above; or, if the language "
    "model fails, one `event: error` whose data is the 502/504 body below."
)


@answering.post(
    "/answer",
    response_model=AnswerResponse,
    responses={
        200: {"content": {"text/event-stream": {"schema": SSE_EVENT}}, "description": STREAM_DESCRIPTION},
        **error_responses(400, 413, 502, 504),
    },
)
async def answer(body: AnswerRequest, service: ServiceDep) -> Any:
    """An answer to a question from the tafsir, citing its passages, with the sources it rests on.

    Follow-ups ("lalu apa hukumannya?") carry the earlier turns in `messages`; `searched_query` shows what was
    searched. Without a language model (TAFSIR_LLM_BASE_URL) the answer is extractive; when no passage is close
    to the question, `mode` is `not_found` and no language model is asked."""
    events = service.answerer.stream(body.question, history(body.messages), body.options())
    # Retrieval runs before the first event: a store or model error is an ordinary error response.
    first = await run_in_threadpool(next, events, None)
    if body.stream:
        return EventSourceResponse(_server_sent(first, events))
    rest = await run_in_threadpool(list, events)
    last = [first, *rest][-1]
    if isinstance(last, Failed):
        status, error = answer_error(last.error, last.answer)
        return JSONResponse(error.model_dump(), status_code=status)
    return answer_response(last.answer)


async def _server_sent(first: AnswerEvent, rest: Iterator[AnswerEvent]) -> AsyncIterator[ServerSentEvent]:
    yield _event(first)
    async for event in iterate_in_threadpool(rest):
        yield _event(event)


def _event(event: AnswerEvent) -> ServerSentEvent:
    if isinstance(event, Delta):
        return ServerSentEvent(data=json.dumps({"text": event.text}, ensure_ascii=False), event="delta")
    if isinstance(event, Done):
        return ServerSentEvent(data=answer_response(event.answer).model_dump_json(), event="done")
    _, error = answer_error(event.error, event.answer)
    return ServerSentEvent(data=error.model_dump_json(), event="error")
