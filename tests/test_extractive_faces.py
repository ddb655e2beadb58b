"""Extractive answers (no language model) through every face of the real server, `tafsir serve` in a subprocess:
POST /v1/answer, the OpenAI-compatible /v1/chat/completions and the MCP tool `answer` at /mcp (the SDK's own
client) give the same answer, made of whole sentences of the passages they cite, one entry per ayah."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import anyio
import httpx
import httpx2
import pytest
from mcp import Client

from bench.answers_fragments import check_answer
from tests.test_api import LiveServer, serving_short_surahs

SURAHS = (1, 2)  # al-Fatihah ("saw. beserta", "Q.S. Al-Mukmin") and al-Baqarah (long ayat, long sentences)
# One question a line.
QUESTIONS = """
Siapa Thalut, dan bagaimana pasukannya yang sedikit bisa menang melawan Jalut?
Apa arti Maliki yaumiddin dan siapa yang menguasai hari pembalasan?
shalawat kepada Nabi Muhammad beserta keluarga dan para sahabatnya
Bagaimana sihir Harut dan Marut diajarkan di Babil?
apa hukum khamar dan judi?
""".strip().splitlines()


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model) -> Iterator[LiveServer]:
    # No TAFSIR_LLM_BASE_URL: extractive answers.
    with serving_short_surahs(tmp_path_factory.mktemp("extractive"), tiny_model, SURAHS) as live:
        yield live


def as_answer(text: str, sources: list[dict]) -> SimpleNamespace:
    """An answer as bench/answers_fragments.py reads it, from a face's sources. The faces do not say which window
    of an ayah a passage is, so a passage's own edges count as sentence edges here (tests/test_answer.py checks
    the windows' edges on the answering core)."""
    passages = [
        SimpleNamespace(**{k: s[k] for k in ("citation", "surah", "ayah", "text", "translation")}, chunk=0, chunks=1)
        for s in sorted(sources, key=lambda s: s["number"])
    ]
    return SimpleNamespace(text=text, passages=passages)


def mcp_answer(server: LiveServer, question: str) -> dict:
    async def call() -> dict:
        from mcp.client.streamable_http import streamable_http_client

        http = httpx2.AsyncClient(timeout=60)
        async with Client(streamable_http_client(server.url + "/mcp", http_client=http), read_timeout_seconds=60) as c:
            result = await c.call_tool("answer", {"question": question})
            assert not result.is_error, result.content
            return result.structured_content

    return anyio.run(call)


@pytest.mark.parametrize("question", QUESTIONS)
def test_every_face_answers_with_whole_sentences_one_entry_per_ayah(server, question):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        answer = client.post("/v1/answer", json={"question": question}).json()
        chat = client.post(
            "/v1/chat/completions", json={"model": "tafsir-rag", "messages": [{"role": "user", "content": question}]}
        ).json()
    assert answer["mode"] == "extractive", answer
    checked = check_answer(as_answer(answer["answer"], answer["sources"]))
    assert checked["checked"] >= 1 and checked["cut"] == [] and checked["duplicated"] == []

    # The OpenAI route: the same answer, its sources written under it.
    assert chat["tafsir"]["answer"] == answer["answer"]
    assert chat["choices"][0]["message"]["content"].startswith(answer["answer"] + "\n\nSumber:\n[")

    # The MCP tool: the same answer; its sources number the passages as the answer cites them.
    tool = mcp_answer(server, question)
    assert tool["mode"] == "extractive" and tool["answer"] == answer["answer"]
    assert check_answer(as_answer(tool["answer"], tool["sources"]))["cut"] == []
