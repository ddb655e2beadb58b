"""The HTTP service for chatbots (FastAPI), run by ``tafsir serve``; OpenAPI at ``/docs``.

- ``POST /v1/retrieve``: passages with citations, the same search core as the CLI and the LangChain
  retriever (``retriever.search.SearchEngine``), run in a worker thread so the event loop never blocks.
- ``GET /v1/ayah/{surah}/{ayah}``: an ayah's stored tafsir chunks, translation and Arabic text.
- ``GET /healthz`` (the process lives), ``GET /readyz`` (store reachable, alias present, model loaded),
  ``GET /metrics`` (Prometheus).

Every error is JSON (``{"error": code, "message": ..., "details": [...]}``) and never a stack trace. With
the embedded store and ``TAFSIR_INGEST_SCHEDULE`` set, the process also runs scheduled re-ingestion in a
background thread on the same store object (the embedded store admits one process).
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import ingest.schedule  # noqa: F401  (registers the ingest metrics, so /metrics always lists them)
from retriever.search import (
    MAX_EDITION_CHARS,
    Passage,
    RetrieveRequest,
    SearchEngine,
    humane_errors,
)
from services.embedding import EmbeddingModelError
from services.quran import TRANSLATION_FIELDS, check_ayah, citation, shown_translation
from services.quran import surah as surah_info
from services.settings import Settings
from services.store.base import PointFilter, StoreError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
# Swagger UI and ReDoc come from the pinned PyPI package fastapi-offline and are served from here: FastAPI's
# own pages load them from a CDN, which leaves /docs blank on a machine without internet.
DOCS_ASSETS_URL = "/docs-assets"
DOCS_ASSETS = resources.files("fastapi_offline") / "static"

# --- HTTP metrics (the default registry, shared with the ingest metrics in ingest.schedule) -------------

HTTP_REQUESTS = Counter(
    "tafsir_http_requests", "HTTP requests by method, route template and status.", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "tafsir_http_request_duration_seconds",
    "HTTP request latency by method, route template and status.",
    ["method", "route", "status"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


# --- request and response bodies --------------------------------------------------------------------------


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


def _error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
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


# --- errors -------------------------------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def _error(status: int, code: str, message: str, details: list[dict] | None = None, headers=None) -> JSONResponse:
    body = ErrorResponse(error=code, message=message, details=details).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, headers=headers)


_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # The offending input is not echoed back: it may be large, and a header could hold a secret.
        details = [
            {
                "location": [p if isinstance(p, int) else str(p) for p in e["loc"]],
                "message": e["msg"],
                "type": e["type"],
            }
            for e in humane_errors(exc.errors())
        ]
        summary = "; ".join(d["message"] for d in details[:5])  # each message names its field
        content_type = request.headers.get("content-type", "")
        if request.method == "POST" and "json" not in content_type:
            # FastAPI reads a body as JSON only when it is declared so (e.g. `curl -d` sends a form).
            summary = f"send the body as JSON with `Content-Type: application/json` (got {content_type!r}); {summary}"
        return _error(422, "invalid_request", summary or "invalid request", details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        return _error(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> JSONResponse:
        log.error("store unavailable on %s %s: %s", request.method, request.url.path, exc)
        return _error(503, "store_unavailable", str(exc))

    @app.exception_handler(EmbeddingModelError)
    async def model_error(request: Request, exc: EmbeddingModelError) -> JSONResponse:
        log.error("embedding model unavailable: %s", exc)
        return _error(503, "model_unavailable", str(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        error_id = uuid.uuid4().hex[:12]
        log.error("unexpected error %s on %s %s", error_id, request.method, request.url.path, exc_info=exc)
        return _error(500, "internal_error", f"An unexpected error occurred (error id {error_id}); see the server log.")


# --- middleware (plain ASGI: no buffering of responses, no extra task per request) -----------------------


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413 JSON, before the app reads them.

    A declared Content-Length is checked up front; a chunked body is read up to the limit and then
    handed to the app from memory (the limit is small, so buffering it costs nothing).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = f"{self.max_bytes // 1024} KiB"
        await _error(413, "body_too_large", f"The request body exceeds {limit}.")(scope, receive, send)


class MetricsMiddleware:
    """Count requests and observe latency by method, route *template* (bounded labels) and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            labels = {"method": scope.get("method", ""), "route": template, "status": str(status)}
            HTTP_REQUESTS.labels(**labels).inc()
            HTTP_LATENCY.labels(**labels).observe(time.perf_counter() - started)


# --- authentication -----------------------------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <TAFSIR_API_KEY>`")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: <TAFSIR_API_KEY>`")


def _require_api_key(expected: bytes) -> Callable[..., Awaitable[None]]:
    async def require_api_key(
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        header_key: Annotated[str | None, Depends(_api_key_header)],
    ) -> None:
        provided = header_key or (bearer.credentials if bearer is not None else None)
        if not provided:
            raise ApiError(
                401,
                "unauthorized",
                "This API needs a key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        # Constant time, so the comparison leaks nothing about how much of a guess was right.
        if not hmac.compare_digest(provided.encode("utf-8", "surrogateescape"), expected):
            raise ApiError(403, "forbidden", "The API key is not valid.")

    return require_api_key


# --- the service behind the routes ------------------------------------------------------------------------


class Service:
    """What the routes share: the search engine, readiness, and the in-process ingest scheduler."""

    def __init__(self, settings: Settings, engine: SearchEngine | None) -> None:
        self.settings = settings
        self.owns_engine = engine is None
        self.engine = engine or SearchEngine(settings)
        self.model_error: str | None = None
        self.store_error: str | None = None
        self.scheduler = None

    def start(self) -> None:
        """Open the store, load the model (so that ready means ready), start the scheduler."""
        try:
            _ = self.engine.store
        except StoreError as exc:
            self.store_error = str(exc)
            log.error("%s", exc)
        try:
            self.engine.embedder.warm_up()
            self.engine.embedder.encode_query("pemanasan")  # the first forward pass is the slow one
        except EmbeddingModelError as exc:
            self.model_error = str(exc)
            log.error("%s", exc)
        self._start_scheduler()

    def stop(self) -> None:
        if self.scheduler is not None:
            # A run in progress keeps its store calls; the pipeline is resumable if cut short.
            self.scheduler.stop(timeout=10)
        if self.owns_engine and self.store_error is None:
            self.engine.store.close()

    def _start_scheduler(self) -> None:
        settings = self.settings
        if settings.ingest_schedule is None:
            return
        if settings.uses_server:
            log.info(
                "TAFSIR_INGEST_SCHEDULE is set, but with a Qdrant server re-ingestion runs in its own worker "
                "(`tafsir ingest --schedule CRON`, the `ingest` service in docker-compose.yml), not in the API"
            )
            return
        if self.store_error is not None:
            return
        from ingest.lock import IngestLock
        from ingest.schedule import IngestScheduler, Schedule, alias_missing, ingest_check, ingest_job

        store, embedder = self.engine.store, self.engine.embedder
        source, edition = settings.ingest_source, settings.ingest_edition
        self.scheduler = IngestScheduler(
            Schedule.parse(settings.ingest_schedule),
            ingest_job(settings, store, embedder, source, edition),
            IngestLock.for_settings(settings),
            run_first=alias_missing(settings, store),
            check=ingest_check(settings, store, embedder, source, edition),
        ).start()
        log.info("scheduled re-ingestion in this process: %s", settings.ingest_schedule)

    def readiness(self) -> ReadyResponse:
        """Raise ``ApiError(503)`` naming the first thing that is not ready."""
        if self.store_error is not None:
            raise ApiError(503, "not_ready", f"The store could not be opened: {self.store_error}")
        if self.model_error is not None:
            raise ApiError(503, "not_ready", f"The embedding model failed to load: {self.model_error}")
        embedder = self.engine.embedder
        if not embedder.loaded:
            raise ApiError(503, "not_ready", "The embedding model is still loading.")
        store = self.engine.store
        alias = self.settings.collection
        try:
            name = store.resolve_alias(alias)
            if name is None:  # missing, or damaged: reading through the alias names the damaged file
                store.collection_info(alias)
            info = store.collection_info(name) if name is not None else None
        except StoreError as exc:
            raise ApiError(503, "not_ready", f"The store is unreadable: {exc}") from None
        if name is None or info is None:
            raise ApiError(
                503,
                "not_ready",
                f"The alias {alias!r} does not exist in {store.location}: run `tafsir ingest` "
                "(or wait for the scheduled ingest) to build the collection.",
            )
        try:
            self.engine.check_model()
        except EmbeddingModelError as exc:
            raise ApiError(503, "not_ready", str(exc)) from None
        return ReadyResponse(collection=name, points=info.points, model=embedder.identity)


def _document(passage: Passage) -> Document:
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


# --- the app ------------------------------------------------------------------------------------------------


def _install_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc over /openapi.json, with every asset served by this process."""
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=str(DOCS_ASSETS)), name="docs-assets")

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")  # behind a proxy that strips a prefix

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        base = root(request)
        return get_swagger_ui_html(
            openapi_url=f"{base}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{base}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{base}{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{base}{DOCS_ASSETS_URL}/favicon.png",
            # Swagger UI would otherwise show a badge image from validator.swagger.io
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        base = root(request)
        return get_redoc_html(
            openapi_url=f"{base}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{base}{DOCS_ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{base}{DOCS_ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )


def create_app(settings: Settings, engine: SearchEngine | None = None) -> FastAPI:
    """The API over ``engine`` (or a new one on ``settings``; the app then opens and closes its store)."""
    service = Service(settings, engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(service.start)
        try:
            yield
        finally:
            await run_in_threadpool(service.stop)

    app = FastAPI(
        title="tafsir-rag",
        version="0.1.0",
        summary="Quran tafsir passages with exact citations, for chatbots.",
        description=(
            "Hybrid (dense + BM25) retrieval over Indonesian tafsir stored in Qdrant. "
            "If the server sets `TAFSIR_API_KEY`, the /v1 routes need it as `Authorization: Bearer <key>` "
            "or `X-API-Key: <key>`; /healthz, /readyz and /metrics stay open."
        ),
        lifespan=lifespan,
        docs_url=None,  # served below, from local assets
        redoc_url=None,
    )
    app.state.service = service
    _install_docs(app)
    _install_error_handlers(app)

    auth = []
    if settings.api_key is not None:
        auth = [Depends(_require_api_key(settings.api_key.get_secret_value().encode("utf-8")))]
    v1_errors = (401, 403, 422, 500, 503) if auth else (422, 500, 503)
    body_errors = (400, 413)  # a body FastAPI cannot decode; a body over the limit

    @app.post(
        "/v1/retrieve",
        response_model=RetrieveResponse,
        responses=_error_responses(*v1_errors, *body_errors),
        dependencies=auth,
        tags=["retrieval"],
    )
    async def retrieve(body: RetrieveRequest) -> RetrieveResponse:
        """The passages that answer a question, best first, each with its citation."""
        started = time.perf_counter()
        passages = await run_in_threadpool(service.engine.search, body.query, body.options())
        took_ms = round((time.perf_counter() - started) * 1000, 3)
        return RetrieveResponse(documents=[_document(p) for p in passages], took_ms=took_ms)

    @app.get(
        "/v1/ayah/{surah}/{ayah}",
        response_model=AyahResponse,
        responses=_error_responses(*v1_errors, 404),
        dependencies=auth,
        tags=["retrieval"],
    )
    async def ayah(
        surah: Annotated[int, Path(description="Surah number, 1-114.")],
        ayah: Annotated[int, Path(description="Ayah number within the surah.")],
        edition: Annotated[
            str | None, Query(max_length=MAX_EDITION_CHARS, description="Only this edition's tafsir.")
        ] = None,
    ) -> AyahResponse:
        """One ayah: its stored tafsir chunks, translation and Arabic text."""
        try:
            check_ayah(surah, ayah)
        except ValueError as exc:
            raise ApiError(404, "no_such_ayah", str(exc)) from None
        point_filter = PointFilter(ayat=[(surah, ayah)], editions=[edition] if edition is not None else None)
        hits = await run_in_threadpool(service.engine.store.retrieve, settings.collection, point_filter, 1000)
        if not hits:
            scope = f" for edition {edition!r}" if edition is not None else ""
            message = f"{citation(surah, ayah)} has no tafsir stored in {settings.collection!r}{scope}."
            raise ApiError(404, "ayah_not_stored", message)
        # The ayah's translation from whichever edition stores it, the chosen wording first.
        wordings: dict[str, str] = {}
        for field in (*TRANSLATION_FIELDS.values(), "translation"):
            wordings.update(next(({field: h.payload[field]} for h in hits if h.payload.get(field)), {}))
        info = surah_info(surah)
        return AyahResponse(
            citation=citation(surah, ayah),
            surah=surah,
            surah_name=info.name,
            surah_name_ar=info.name_ar,
            ayah=ayah,
            translation=shown_translation(wordings, settings.translation),
            arabic=next((h.payload["arabic"] for h in hits if h.payload.get("arabic")), None),
            chunks=[
                AyahChunk(
                    id=h.id,
                    edition=h.payload["edition"],
                    chunk=h.payload.get("chunk", 0),
                    chunks=h.payload.get("chunks", 1),
                    text=h.payload["text"],
                )
                for h in hits
            ],
        )

    @app.get("/healthz", response_model=HealthResponse, tags=["operations"])
    async def healthz() -> HealthResponse:
        """The process is alive (says nothing about the store or the model: see /readyz)."""
        return HealthResponse()

    @app.get("/readyz", response_model=ReadyResponse, responses=_error_responses(503), tags=["operations"])
    async def readyz() -> ReadyResponse:
        """Ready to answer: the store is reachable, the alias exists and the model is loaded; else 503 and why."""
        return await run_in_threadpool(service.readiness)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    # Outermost last: metrics see every response, CORS headers reach error responses too.
    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )
    app.add_middleware(MetricsMiddleware)
    return app
