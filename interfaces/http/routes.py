"""The routes: retrieval under /v1 (behind the API key when one is set) and the operations routes."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.concurrency import run_in_threadpool

from interfaces.http.errors import ApiError
from interfaces.http.schemas import (
    AyahResponse,
    EditionOut,
    EditionsResponse,
    HealthResponse,
    ReadyResponse,
    RetrieveResponse,
    document,
    error_responses,
)
from interfaces.http.service import Service
from interfaces.requests import MAX_EDITION_CHARS, RetrieveRequest
from retriever.ayah import AyahNotStored, lookup_ayah
from services.store.base import edition_language


def the_service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(the_service)]

# The /v1 routes; create_app adds the API key check and the error entries it brings to each of them.
retrieval = APIRouter(prefix="/v1", tags=["retrieval"])
operations = APIRouter(tags=["operations"])


@retrieval.post(
    "/retrieve",
    response_model=RetrieveResponse,
    responses=error_responses(400, 413),  # a body FastAPI cannot decode; a body over the limit
)
async def retrieve(body: RetrieveRequest, service: ServiceDep) -> RetrieveResponse:
    """The passages that answer a question, best first, each with its citation."""
    started = time.perf_counter()
    passages = await run_in_threadpool(service.engine.search, body.query, body.options())
    took_ms = round((time.perf_counter() - started) * 1000, 3)
    return RetrieveResponse(documents=[document(p) for p in passages], took_ms=took_ms)


@retrieval.get("/ayah/{surah}/{ayah}", response_model=AyahResponse, responses=error_responses(404))
async def ayah(
    surah: Annotated[int, Path(description="Surah number, 1-114.")],
    ayah: Annotated[int, Path(description="Ayah number within the surah.")],
    service: ServiceDep,
    edition: Annotated[
        str | None, Query(max_length=MAX_EDITION_CHARS, description="Only this edition's tafsir.")
    ] = None,
) -> AyahResponse:
    """One ayah: its stored tafsir chunks, translation and Arabic text."""
    try:
        found = await run_in_threadpool(lookup_ayah, service.engine, surah, ayah, edition)
    except ValueError as exc:
        raise ApiError(404, "no_such_ayah", str(exc)) from None
    except AyahNotStored as exc:
        raise ApiError(404, "ayah_not_stored", str(exc)) from None
    return AyahResponse.model_validate(found)


@retrieval.get("/editions", response_model=EditionsResponse)
async def editions(service: ServiceDep) -> EditionsResponse:
    """The editions in the collection, with their language and number of chunks: the values the `edition` and
    `language` filters take."""
    counts = await run_in_threadpool(service.engine.editions)
    return EditionsResponse(
        editions=[EditionOut(edition=e, language=edition_language(e), points=n) for e, n in sorted(counts.items())]
    )


@operations.get("/healthz", response_model=HealthResponse)
async def healthz() -> HealthResponse:
    """The process is alive (says nothing about the store or the model: see /readyz)."""
    return HealthResponse()


@operations.get("/readyz", response_model=ReadyResponse, responses=error_responses(503))
async def readyz(service: ServiceDep) -> ReadyResponse:
    """Ready to answer: the store is reachable, the alias exists and the model is loaded; else 503 and why."""
    return await run_in_threadpool(service.readiness)


@operations.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
