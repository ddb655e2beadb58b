"""Plain ASGI middleware (no buffering of responses, no extra task per request): the body limit and the HTTP
metrics; and the API key check, a dependency of the /v1 routes."""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from interfaces.http.errors import ApiError, error_response

MAX_BODY_BYTES = 64 * 1024

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
        response = error_response(
            413, "body_too_large", f"The request body exceeds {limit}.", path=scope.get("path", "")
        )
        await response(scope, receive, send)


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


def check_api_key(provided: str | None, expected: bytes) -> None:
    """Raise ``ApiError`` 401 without a key, 403 for a wrong one."""
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


def require_api_key(expected: bytes) -> Callable[..., Awaitable[None]]:
    async def require_api_key(
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        header_key: Annotated[str | None, Depends(_api_key_header)],
    ) -> None:
        check_api_key(header_key or (bearer.credentials if bearer is not None else None), expected)

    return require_api_key


class RequireApiKey:
    """The same key check around a plain ASGI app (the MCP endpoint, which is not a FastAPI route)."""

    def __init__(self, app: ASGIApp, expected: bytes) -> None:
        self.app = app
        self.expected = expected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        provided = headers.get("x-api-key")
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if not provided and scheme.lower() == "bearer":
            provided = credentials.strip()
        try:
            check_api_key(provided, self.expected)
        except ApiError as exc:
            response = error_response(exc.status, exc.code, exc.message, headers=exc.headers, path=scope["path"])
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
