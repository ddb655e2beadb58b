"""The language model the answering core writes with: the OpenAI-compatible chat endpoint the settings name
(langchain-openai), how it is described to people, its token counts, and its failures as ``LlmError``, which
names the endpoint, how it failed and the setting to check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    from langchain_core.language_models import BaseChatModel


@dataclass(frozen=True)
class Usage:
    """Tokens of the language model's calls (the rewriting and the answer), as it reports them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)


def usage_of(message: Any) -> Usage:
    metadata = getattr(message, "usage_metadata", None) or {}
    return Usage(int(metadata.get("input_tokens", 0)), int(metadata.get("output_tokens", 0)))


class LlmError(Exception):
    """The language model failed: ``message`` says how and names the endpoint; ``setting`` is the one to check."""

    def __init__(self, message: str, kind: str, provider: str, setting: str | None) -> None:
        super().__init__(message)
        self.message, self.kind, self.provider, self.setting = message, kind, provider, setting


def chat_model(settings: Settings) -> BaseChatModel | None:
    """The OpenAI-compatible chat model the settings name, or None when TAFSIR_LLM_BASE_URL is unset."""
    if settings.llm_base_url is None:
        return None
    from langchain_openai import ChatOpenAI

    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key is not None else "unused"
    return ChatOpenAI(
        model=settings.llm_model,
        base_url=settings.llm_base_url,
        api_key=key,  # local servers need none, but the client insists on one
        timeout=settings.llm_timeout,
        max_retries=settings.llm_max_retries,
        max_tokens=settings.llm_max_tokens,
        temperature=settings.llm_temperature,
        stream_usage=True,  # usage arrives in the last chunk
    )


def describe_llm(llm: BaseChatModel, settings: Settings) -> str:
    if settings.llm_base_url is not None and _is_openai(llm):
        return f"the chat endpoint {settings.llm_base_url} (model {settings.llm_model})"
    name = getattr(llm, "model_name", None) or getattr(llm, "model", None)
    return f"the chat model {type(llm).__name__}" + (f" ({name})" if isinstance(name, str) else "")


def _is_openai(llm: Any) -> bool:
    return type(llm).__module__.startswith("langchain_openai")


def llm_error(exc: BaseException, provider: str, configured: bool, timeout: float) -> LlmError:
    """What went wrong with the language model, for people: which endpoint, how, and the setting to check."""
    import openai

    def setting(name: str) -> str | None:
        return name if configured else None

    if isinstance(exc, openai.APITimeoutError | TimeoutError):
        return LlmError(
            f"{provider} did not answer within {timeout:g} s: raise TAFSIR_LLM_TIMEOUT, or check that the "
            "endpoint is not overloaded",
            "timeout",
            provider,
            setting("TAFSIR_LLM_TIMEOUT"),
        )
    if isinstance(exc, openai.APIConnectionError):
        return LlmError(
            f"{provider} cannot be reached ({exc.__cause__ or exc}): check TAFSIR_LLM_BASE_URL and that the server "
            "runs",
            "unreachable",
            provider,
            setting("TAFSIR_LLM_BASE_URL"),
        )
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        check = {401: "TAFSIR_LLM_API_KEY", 403: "TAFSIR_LLM_API_KEY", 404: "TAFSIR_LLM_MODEL"}.get(status)
        if check is None:
            check = "TAFSIR_LLM_BASE_URL" if status < 500 else None
        reason = _short(str(exc.message))
        advice = f": check {check}" if check and configured else ": the endpoint failed, try again later"
        return LlmError(f"{provider} answered HTTP {status} ({reason}){advice}", "status", provider, setting(check))
    return LlmError(
        f"{provider} sent a reply that is not an OpenAI chat completion ({type(exc).__name__}: {_short(str(exc))}): "
        "check that TAFSIR_LLM_BASE_URL is an OpenAI-compatible endpoint",
        "malformed",
        provider,
        setting("TAFSIR_LLM_BASE_URL"),
    )


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
