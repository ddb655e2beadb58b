"""``TafsirRAGRetriever``: LangChain Documents from a running tafsir-rag service (``POST /v1/retrieve``).

The chatbot's process holds no model and no store: the service (``tafsir serve``) searches, this class asks it
over HTTP. Sync and async calls share one core (the request body, the decision to retry, the errors, the
Documents); only sending and sleeping differ.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any, Literal

import httpx
from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.utils import secret_from_env
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator

from langchain_tafsir_rag._version import __version__

Mode = Literal["hybrid", "dense", "sparse"]

_OPTION_NAMES = ("k", "mode", "filter", "score_threshold", "neighbors")
# Worth another try: the service restarting or overloaded (RFC 9110: 502-504 are transient by nature; a 500
# may be one request's bad luck). A 4xx says the request itself is wrong: the same request fails the same way.
_RETRY_STATUSES = frozenset({500, 502, 503, 504})


class TafsirFilter(BaseModel):
    """Which passages a query may return; all given conditions hold. The service checks the values (a surah
    1-114, ...) and its 422 message says what is wrong; a misspelled key is refused here."""

    model_config = ConfigDict(extra="forbid")

    surah: int | list[int] | None = Field(None, description="A surah number 1-114, or several.")
    ayah_from: int | None = Field(None, description="Lowest ayah number (inclusive).")
    ayah_to: int | None = Field(None, description="Highest ayah number (inclusive).")
    edition: str | list[str] | None = Field(None, description="An edition id such as id.jalalayn, or several.")
    language: str | list[str] | None = Field(
        None, description="The editions' language: the edition id before its first dot (id, en, ar), or several."
    )


class TafsirRAGError(RuntimeError):
    """The service could not be asked, or refused: ``url`` the address called, ``status`` its HTTP status (None
    when no answer came), ``code`` the service's error code, ``parameter`` the retriever's field to check."""

    def __init__(
        self,
        message: str,
        *,
        url: str,
        status: int | None = None,
        code: str | None = None,
        parameter: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.code = code
        self.parameter = parameter
        self.retryable = retryable


class TafsirRAGRetriever(BaseRetriever):
    """Tafsir passages with citations from a tafsir-rag service, e.g.
    ``TafsirRAGRetriever(base_url="http://127.0.0.1:8000", api_key="...", k=5).invoke("Siapa Thalut?")``.

    Each Document is the one the in-process ``TafsirRetriever`` returns for the same query: ``page_content`` the
    chunk text; ``metadata`` citation ("QS Al-Baqarah [2]: 249"), surah, surah_name, ayah, chunk, chunks,
    edition, also_in, translation, arabic, score and, for neighbouring ayat added as context, ``context_for``;
    ``id`` the Qdrant point id. ``invoke(query, k=..., mode=..., filter=..., neighbors=..., score_threshold=...)``
    overrides the fields for one call.
    """

    base_url: str = Field(
        "http://127.0.0.1:8000", description="Where `tafsir serve` listens (a trailing /v1 is accepted)."
    )
    api_key: SecretStr | None = Field(
        default_factory=secret_from_env("TAFSIR_API_KEY", default=None),
        description="The service's TAFSIR_API_KEY; defaults to the TAFSIR_API_KEY environment variable.",
    )
    k: int = Field(5, ge=1, description="How many passages (before neighbouring ayat are added); the service caps it.")
    mode: Mode = Field("hybrid", description="dense, sparse (BM25) or hybrid (both, fused by RRF).")
    filter: TafsirFilter | None = Field(None, description="Surah(s), ayah range, edition(s), language(s).")
    score_threshold: float | None = Field(None, description="Drop passages scoring below this.")
    neighbors: int = Field(0, ge=0, description="Add up to n adjacent ayat of the same surah as context.")
    timeout: float = Field(30.0, gt=0, description="Seconds to wait for the service to connect and to answer.")
    max_retries: int = Field(2, ge=0, description="Retries after a refused connection or a 5xx answer.")
    retry_backoff: float = Field(0.5, ge=0, description="Seconds before the first retry; doubled for each next one.")

    _client: httpx.Client | None = PrivateAttr(None)
    # An AsyncClient's connections belong to the event loop that opened them: one client per loop.
    _async_client: tuple[asyncio.AbstractEventLoop, httpx.AsyncClient] | None = PrivateAttr(None)

    @property
    def lc_secrets(self) -> dict[str, str]:
        return {"api_key": "TAFSIR_API_KEY"}

    @field_validator("base_url")
    @classmethod
    def _service_root(cls, value: str) -> str:
        root = value.rstrip("/")
        root = root.removesuffix("/v1")
        if not root.startswith(("http://", "https://")):
            raise ValueError(f"base_url {value!r} must start with http:// or https://, e.g. http://127.0.0.1:8000")
        return root

    # --- the one core: what to send, what an answer means -----------------------------------------------------

    def _body(self, query: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(overrides) - set(_OPTION_NAMES)
        if unknown:
            raise TypeError(f"unknown retriever option(s) {sorted(unknown)}; expected some of {list(_OPTION_NAMES)}")
        # Validate one call's overrides exactly like the constructor's fields.
        merged = self.model_validate({**self.model_dump(include=set(_OPTION_NAMES)), **overrides})
        body: dict[str, Any] = {"query": query, "k": merged.k, "mode": merged.mode, "neighbors": merged.neighbors}
        if merged.filter is not None:
            body["filter"] = merged.filter.model_dump(exclude_none=True)
        if merged.score_threshold is not None:
            body["score_threshold"] = merged.score_threshold
        return body

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": f"langchain-tafsir-rag/{__version__}"}
        if self.api_key is not None:
            headers["Authorization"] = f"Bearer {self.api_key.get_secret_value()}"
        return headers

    def _url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def _transport_error(self, url: str, exc: httpx.TransportError) -> TafsirRAGError:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return TafsirRAGError(
                f"Could not connect to the tafsir-rag service at {url} ({exc or type(exc).__name__}). Check "
                f"base_url={self.base_url!r}: `tafsir serve` must be running there.",
                url=url,
                parameter="base_url",
                retryable=True,
            )
        if isinstance(exc, httpx.TimeoutException):
            return TafsirRAGError(
                f"The tafsir-rag service at {url} did not answer within timeout={self.timeout} s; raise `timeout` "
                "or look at the service's log.",
                url=url,
                parameter="timeout",
            )
        return TafsirRAGError(
            f"The request to the tafsir-rag service at {url} failed: {type(exc).__name__}: {exc}", url=url
        )

    def _status_error(self, url: str, response: httpx.Response) -> TafsirRAGError | None:
        """None for a success; else the error, for people, with the service's own message."""
        if response.is_success:
            return None
        status = response.status_code
        code, message = _service_message(response)
        said = f"The tafsir-rag service at {url} answered {status}: {message}"
        advice = {  # what to check, and the parameter that sets it
            401: (
                "Pass api_key= (or set the TAFSIR_API_KEY environment variable) to the key the service was started "
                "with (its TAFSIR_API_KEY).",
                "api_key",
            ),
            403: ("Check api_key: it must equal the service's TAFSIR_API_KEY.", "api_key"),
            404: (f"Is base_url={self.base_url!r} a tafsir-rag service?", "base_url"),
        }
        if status in advice:
            check, parameter = advice[status]
            return TafsirRAGError(f"{said} {check}", url=url, status=status, code=code, parameter=parameter)
        return TafsirRAGError(said, url=url, status=status, code=code, retryable=status in _RETRY_STATUSES)

    def _retry_delay(self, attempt: int, error: TafsirRAGError) -> float | None:
        """Seconds to wait before trying again after ``attempt`` (0-based) failed, or None to give up."""
        if not error.retryable or attempt >= self.max_retries:
            return None
        return self.retry_backoff * 2**attempt

    def _gave_up(self, attempt: int, error: TafsirRAGError) -> TafsirRAGError:
        if attempt > 0:
            error.args = (f"{error.args[0]} (after {attempt + 1} attempts; max_retries={self.max_retries})",)
        return error

    def _json(self, response: httpx.Response, key: str) -> Any:
        url = str(response.request.url)
        try:
            return response.json()[key]
        except (ValueError, KeyError, TypeError):
            raise TafsirRAGError(
                f"The answer of {url} is not a tafsir-rag response (no {key!r} in {response.text[:200]!r}). Is "
                f"base_url={self.base_url!r} a tafsir-rag service?",
                url=url,
                status=response.status_code,
                parameter="base_url",
            ) from None

    # --- sending: sync and async ------------------------------------------------------------------------------

    def _client_for_sync(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client()
        return self._client

    def _client_for_async(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._async_client is None or self._async_client[0] is not loop:
            self._async_client = (loop, httpx.AsyncClient())
        return self._async_client[1]

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        url = self._url(path)
        attempt = 0
        while True:
            try:
                response = self._client_for_sync().request(
                    method, url, json=body, headers=self._headers(), timeout=self.timeout
                )
                error = self._status_error(url, response)
            except httpx.TransportError as exc:
                error = self._transport_error(url, exc)
            if error is None:
                return response
            delay = self._retry_delay(attempt, error)
            if delay is None:
                raise self._gave_up(attempt, error)
            time.sleep(delay)
            attempt += 1

    async def _acall(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        url = self._url(path)
        attempt = 0
        while True:
            try:
                response = await self._client_for_async().request(
                    method, url, json=body, headers=self._headers(), timeout=self.timeout
                )
                error = self._status_error(url, response)
            except httpx.TransportError as exc:
                error = self._transport_error(url, exc)
            if error is None:
                return response
            delay = self._retry_delay(attempt, error)
            if delay is None:
                raise self._gave_up(attempt, error)
            await asyncio.sleep(delay)
            attempt += 1

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        response = self._call("POST", "/v1/retrieve", self._body(query, kwargs))
        return [to_document(d) for d in self._json(response, "documents")]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        response = await self._acall("POST", "/v1/retrieve", self._body(query, kwargs))
        return [to_document(d) for d in self._json(response, "documents")]

    def editions(self) -> list[dict[str, Any]]:
        """The service's editions: ``[{"edition": "id.jalalayn", "language": "id", "points": 6412}, ...]``, the
        values the ``edition`` and ``language`` filters take."""
        response = self._call("GET", "/v1/editions")
        return self._json(response, "editions")

    async def aeditions(self) -> list[dict[str, Any]]:
        """``editions``, async."""
        response = await self._acall("GET", "/v1/editions")
        return self._json(response, "editions")

    def close(self) -> None:
        """Close the connections kept open to the service (the sync ones; ``aclose`` closes the async ones)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        if self._async_client is not None:
            await self._async_client[1].aclose()
            self._async_client = None


def _service_message(response: httpx.Response) -> tuple[str | None, str]:
    """The service's error code and message (with each problem of a 422 and where), or the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return None, response.text[:300] or response.reason_phrase
    if not isinstance(body, dict) or "message" not in body:
        return None, response.text[:300]
    message = str(body["message"])
    details = body.get("details") or []
    problems = [
        f"{'.'.join(str(part) for part in d.get('location', []))}: {d.get('message')}"
        for d in details
        if isinstance(d, dict)
    ]
    if problems:
        message = f"{message} ({'; '.join(problems)})"
    return body.get("error"), message


def to_document(found: Mapping[str, Any]) -> Document:
    """A Document of ``/v1/retrieve``'s answer, shaped like the in-process retriever's: the citation and the
    score join the metadata, and ``context_for`` is there only for a neighbouring ayah."""
    metadata = {key: value for key, value in found["metadata"].items() if key != "context_for" or value is not None}
    metadata["citation"] = found["citation"]
    metadata["score"] = found["score"]
    return Document(page_content=found["text"], metadata=metadata, id=found["id"])
