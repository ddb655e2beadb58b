"""The HTTP service for chatbots (FastAPI), run by ``tafsir serve``; OpenAPI at ``/docs``.

- ``POST /v1/retrieve``: passages with citations, the same search core as the CLI and the LangChain
  retriever (``retriever.search.SearchEngine``), run in a worker thread so the event loop never blocks.
- ``GET /v1/ayah/{surah}/{ayah}``: an ayah's stored tafsir chunks, translation and Arabic text.
- ``GET /healthz`` (the process lives), ``GET /readyz`` (store reachable, alias present, model loaded),
  ``GET /metrics`` (Prometheus).

This module builds the app (``create_app``); the routes are in ``interfaces.http.routes``, the middleware
in ``interfaces.http.middleware``, the errors in ``interfaces.http.errors``. With the embedded store and
``TAFSIR_INGEST_SCHEDULE`` set, the process also runs scheduled re-ingestion in a background thread on the
same store object (the embedded store admits one process; ``interfaces.http.service``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match, Route
from starlette.types import Scope

import ingest.schedule  # noqa: F401  (registers the ingest metrics, so /metrics always lists them)
from interfaces.http.answers import answering
from interfaces.http.chat_completions import openai_compatible
from interfaces.http.errors import ApiError, install_error_handlers
from interfaces.http.middleware import (
    MAX_BODY_BYTES,
    BodyLimitMiddleware,
    MetricsMiddleware,
    RequireApiKey,
    require_api_key,
)
from interfaces.http.routes import operations, retrieval
from interfaces.http.schemas import error_responses
from interfaces.http.service import Service
from interfaces.mcp import build_server
from retriever.search import SearchEngine
from services.settings import Settings

# Swagger UI and ReDoc come from the pinned PyPI package fastapi-offline and are served from here: FastAPI's
# own pages load them from a CDN, which leaves /docs blank on a machine without internet.
DOCS_ASSETS_URL = "/docs-assets"
DOCS_ASSETS = resources.files("fastapi_offline") / "static"
# The playground page (plain HTML, CSS and a little JS, no build step), served at / with its assets.
PLAYGROUND = resources.files("interfaces.http") / "static"
PLAYGROUND_ASSETS_URL = "/playground-assets"
# The page's Arabic font, Amiri (SIL Open Font License 1.1, its text served beside it), from the PyPI package
# fontpkg-amiri: the ayat must render on a machine that has no Arabic font installed.
PLAYGROUND_FONTS_URL = "/playground-fonts"
AMIRI = resources.files("fontpkg_amiri")
PLAYGROUND_FONTS = {
    "Amiri-Regular.ttf": (AMIRI / "files" / "Amiri-Regular.ttf", "font/ttf"),
    "LICENSE.txt": (AMIRI / "LICENSE", "text/plain; charset=utf-8"),
}
# The page runs only its own script and talks only to this server.
PLAYGROUND_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; font-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def create_app(settings: Settings, engine: SearchEngine | None = None, llm=None) -> FastAPI:
    """The API over ``engine`` (or a new one on ``settings``; the app then opens and closes its store).

    ``llm``: any LangChain chat model to write answers; by default the endpoint TAFSIR_LLM_BASE_URL names, if any.
    """
    service = Service(settings, engine, llm)

    # The MCP tools over the same answering core, as streamable HTTP at /mcp (stateless: any worker can answer
    # any request; JSON replies, which curl users can read).
    mcp_server = build_server(service.answerer)
    mcp_server.streamable_http_app(stateless_http=True, json_response=True, host=settings.api_host)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(service.start)
        try:
            async with mcp_server.session_manager.run():
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
    install_docs(app)
    install_playground(app)
    install_error_handlers(app)

    auth = []
    if settings.api_key is not None:
        auth = [Depends(require_api_key(settings.api_key.get_secret_value().encode("utf-8")))]
    v1_errors = (401, 403, 422, 500, 503) if auth else (422, 500, 503)
    app.include_router(retrieval, dependencies=auth, responses=error_responses(*v1_errors))
    app.include_router(answering, dependencies=auth, responses=error_responses(*v1_errors))
    app.include_router(openai_compatible, dependencies=auth, responses=error_responses(*v1_errors, openai=True))
    app.include_router(operations)
    mcp_endpoint = StreamableHTTPASGIApp(mcp_server.session_manager)
    if settings.api_key is not None:
        mcp_endpoint = RequireApiKey(mcp_endpoint, settings.api_key.get_secret_value().encode("utf-8"))
    app.router.routes.append(LabelledRoute("/mcp", endpoint=mcp_endpoint, methods=["GET", "POST", "DELETE"]))

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


class LabelledRoute(Route):
    """A plain Starlette route that, like FastAPI's own, names itself in the scope: the metrics label requests by
    route template, and would otherwise count the MCP endpoint's as unmatched."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope["route"] = self
        return match, child_scope


def install_playground(app: FastAPI) -> None:
    """The playground at /: a question, the answer as it streams, the cited passages; the same API key."""
    app.mount(PLAYGROUND_ASSETS_URL, StaticFiles(directory=str(PLAYGROUND)), name="playground-assets")
    page = (PLAYGROUND / "playground.html").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    async def playground() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": PLAYGROUND_CSP})

    @app.get(PLAYGROUND_FONTS_URL + "/{name}", include_in_schema=False)
    async def playground_font(name: str) -> FileResponse:
        if name not in PLAYGROUND_FONTS:
            raise ApiError(404, "not_found", f"No such file: {PLAYGROUND_FONTS_URL}/{name}.")
        path, media_type = PLAYGROUND_FONTS[name]
        return FileResponse(str(path), media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})


def install_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc over /openapi.json, with every asset served by this process."""
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=str(DOCS_ASSETS)), name="docs-assets")

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")  # behind a proxy that strips a prefix

    def page(request: Request, render, name: str, assets: dict[str, str], **options) -> HTMLResponse:
        """``render`` (FastAPI's page) over this app's schema, its ``assets`` (argument -> file) served here."""
        base = root(request)
        served = {argument: f"{base}{DOCS_ASSETS_URL}/{file}" for argument, file in assets.items()}
        return render(openapi_url=f"{base}{app.openapi_url}", title=f"{app.title} - {name}", **served, **options)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        assets = {
            "swagger_js_url": "swagger-ui-bundle.js",
            "swagger_css_url": "swagger-ui.css",
            "swagger_favicon_url": "favicon.png",
        }
        # Swagger UI would otherwise show a badge image from validator.swagger.io
        return page(request, get_swagger_ui_html, "Swagger UI", assets, swagger_ui_parameters={"validatorUrl": None})

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        assets = {"redoc_js_url": "redoc.standalone.js", "redoc_favicon_url": "favicon.png"}
        return page(request, get_redoc_html, "ReDoc", assets, with_google_fonts=False)
