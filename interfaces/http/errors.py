"""Every error is JSON (``{"error": code, "message": ..., "details": [...]}``) and never a stack trace."""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from interfaces.http.schemas import ErrorResponse
from interfaces.requests import humane_errors
from services.model_source import EmbeddingModelError
from services.store.base import StoreError

log = logging.getLogger("interfaces.http")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


# Routes that speak OpenAI's protocol answer errors in OpenAI's shape, which its clients and chat front-ends read
# (`{"error": {"message", "type", "code", "param"}}`); every other route in ours.
OPENAI_PATHS = ("/v1/chat/completions", "/v1/models")


def speaks_openai(path: str) -> bool:
    return path.startswith(OPENAI_PATHS)


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict] | None = None,
    headers=None,
    path: str = "",
    extra: dict | None = None,
) -> JSONResponse:
    """The error body for a request to ``path``: ours, or OpenAI's shape on the OpenAI-compatible routes, with
    the same code and message, and ``extra`` fields (e.g. the sources found before a language model failed)."""
    body = ErrorResponse(error=code, message=message, details=details).model_dump(exclude_none=True)
    if speaks_openai(path):
        inner = {"message": message, "type": code, "code": code, "param": None}
        if details:
            inner["details"] = details
        return JSONResponse({"error": {**inner, **(extra or {})}}, status_code=status, headers=headers)
    return JSONResponse({**body, **(extra or {})}, status_code=status, headers=headers)


_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, headers=exc.headers, path=request.url.path)

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
        return error_response(422, "invalid_request", summary or "invalid request", details, path=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        headers = getattr(exc, "headers", None)
        return error_response(exc.status_code, code, str(exc.detail), headers=headers, path=request.url.path)

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> JSONResponse:
        log.error("store unavailable on %s %s: %s", request.method, request.url.path, exc)
        return error_response(503, "store_unavailable", str(exc), path=request.url.path)

    @app.exception_handler(EmbeddingModelError)
    async def model_error(request: Request, exc: EmbeddingModelError) -> JSONResponse:
        log.error("embedding model unavailable: %s", exc)
        return error_response(503, "model_unavailable", str(exc), path=request.url.path)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        error_id = uuid.uuid4().hex[:12]
        log.error("unexpected error %s on %s %s", error_id, request.method, request.url.path, exc_info=exc)
        message = f"An unexpected error occurred (error id {error_id}); see the server log."
        return error_response(500, "internal_error", message, path=request.url.path)
