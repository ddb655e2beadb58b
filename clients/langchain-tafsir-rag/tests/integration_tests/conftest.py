"""Which `tafsir serve` the integration tests ask: its address and API key come from the environment, so the same
tests run from any venv (the project's tests start one with a tiny model: tests/test_langchain_client.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

URL_VARIABLE = "LANGCHAIN_TAFSIR_RAG_URL"
KEY_VARIABLE = "LANGCHAIN_TAFSIR_RAG_API_KEY"


@dataclass(frozen=True)
class Service:
    url: str
    api_key: str


def running_service() -> Service:
    url, api_key = os.environ.get(URL_VARIABLE), os.environ.get(KEY_VARIABLE)
    if not url or not api_key:
        pytest.fail(
            f"the integration tests ask a running `tafsir serve` started with an API key: set {URL_VARIABLE} "
            f"(e.g. http://127.0.0.1:8000) and {KEY_VARIABLE} (its TAFSIR_API_KEY)",
            pytrace=False,
        )
    return Service(url, api_key)


@pytest.fixture(scope="session")
def service() -> Service:
    return running_service()
