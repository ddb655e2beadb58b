"""The client against loopback stand-ins for what a real service cannot be made to do on demand (5xx, slow
answers, a refused connection); tests/integration_tests runs it against a real `tafsir serve`."""

from __future__ import annotations

import time

import pytest
from langchain_core.documents import Document
from langchain_tafsir_rag import TafsirRAGError, TafsirRAGRetriever
from langchain_tafsir_rag.retrievers import to_document
from pydantic import ValidationError

from tests.unit_tests.stub_service import PASSAGE

ANSWER = {"documents": [PASSAGE], "took_ms": 1.0}
UNAVAILABLE = {"error": "not_ready", "message": "The embedding model is still loading."}


def test_a_document_carries_the_citation_and_score_in_its_metadata_and_no_empty_context_for():
    document = to_document(PASSAGE)
    assert document == Document(
        id=PASSAGE["id"],
        page_content=PASSAGE["text"],
        metadata={
            **{k: v for k, v in PASSAGE["metadata"].items() if k != "context_for"},
            "citation": "QS Al-Ikhlas [112]: 1",
            "score": 0.5,
        },
    )
    assert (
        to_document({**PASSAGE, "metadata": {**PASSAGE["metadata"], "context_for": "QS Al-Ikhlas [112]: 2"}}).metadata[
            "context_for"
        ]
        == "QS Al-Ikhlas [112]: 2"
    )


def test_the_body_carries_the_fields_and_one_calls_overrides(stub):
    stub.reply(200, ANSWER)
    stub.reply(200, ANSWER)
    retriever = TafsirRAGRetriever(base_url=stub.url, api_key=None, k=4, filter={"surah": 112})
    retriever.invoke("Dialah Allah")
    retriever.invoke(
        "Dialah Allah", k=2, mode="sparse", filter={"edition": ["id.jalalayn"], "language": "id"}, neighbors=1
    )
    assert [r["body"] for r in stub.requests] == [
        {"query": "Dialah Allah", "k": 4, "mode": "hybrid", "neighbors": 0, "filter": {"surah": 112}},
        {
            "query": "Dialah Allah",
            "k": 2,
            "mode": "sparse",
            "neighbors": 1,
            "filter": {"edition": ["id.jalalayn"], "language": "id"},
        },
    ]
    assert {r["path"] for r in stub.requests} == {"/v1/retrieve"}


def test_the_api_key_goes_as_a_bearer_token_and_defaults_to_the_environment(stub, monkeypatch):
    monkeypatch.setenv("TAFSIR_API_KEY", "kunci-dari-lingkungan")
    stub.reply(200, ANSWER)
    TafsirRAGRetriever(base_url=stub.url).invoke("Dialah Allah")
    assert stub.requests[0]["headers"]["Authorization"] == "Bearer kunci-dari-lingkungan"


def test_a_base_url_ending_in_v1_is_the_same_service():
    assert TafsirRAGRetriever(base_url="http://127.0.0.1:8000/v1/").base_url == "http://127.0.0.1:8000"


def test_a_base_url_without_a_scheme_is_refused_with_an_example():
    with pytest.raises(ValidationError, match="must start with http:// or https://"):
        TafsirRAGRetriever(base_url="127.0.0.1:8000")


def test_a_misspelled_filter_key_or_option_is_refused_before_any_request(stub):
    retriever = TafsirRAGRetriever(base_url=stub.url, api_key=None)
    with pytest.raises(ValidationError, match="surahs"):
        retriever.invoke("Dialah Allah", filter={"surahs": 112})
    with pytest.raises(TypeError, match=r"unknown retriever option\(s\) \['top_k'\]"):
        retriever.invoke("Dialah Allah", top_k=3)
    assert stub.requests == []


def test_a_refused_connection_names_the_url_and_base_url_after_the_retries(closed_port):
    url = f"http://127.0.0.1:{closed_port}"
    retriever = TafsirRAGRetriever(base_url=url, api_key=None, max_retries=2, retry_backoff=0.01)
    with pytest.raises(TafsirRAGError) as caught:
        retriever.invoke("Dialah Allah")
    message = str(caught.value)
    assert f"{url}/v1/retrieve" in message
    assert f"base_url={url!r}" in message
    assert "`tafsir serve` must be running there" in message
    assert "after 3 attempts; max_retries=2" in message
    assert caught.value.parameter == "base_url"


def test_a_5xx_is_retried_with_backoff_until_the_service_answers(stub):
    stub.reply(503, UNAVAILABLE)
    stub.reply(502, "bad gateway")
    stub.reply(200, ANSWER)
    retriever = TafsirRAGRetriever(base_url=stub.url, api_key=None, max_retries=2, retry_backoff=0.1)
    started = time.monotonic()
    documents = retriever.invoke("Dialah Allah")
    assert time.monotonic() - started >= 0.1 + 0.2  # waited 0.1 s, then twice as long
    assert [d.metadata["citation"] for d in documents] == ["QS Al-Ikhlas [112]: 1"]
    assert len(stub.requests) == 3


async def test_async_calls_retry_the_same_way(stub):
    stub.reply(503, UNAVAILABLE)
    stub.reply(200, ANSWER)
    retriever = TafsirRAGRetriever(base_url=stub.url, api_key=None, max_retries=1, retry_backoff=0.01)
    documents = await retriever.ainvoke("Dialah Allah")
    assert [d.id for d in documents] == [PASSAGE["id"]]
    assert len(stub.requests) == 2


def test_past_max_retries_the_error_shows_the_services_message_and_the_attempts(stub):
    for _ in range(3):
        stub.reply(503, UNAVAILABLE)
    retriever = TafsirRAGRetriever(base_url=stub.url, api_key=None, max_retries=1, retry_backoff=0.01)
    with pytest.raises(TafsirRAGError) as caught:
        retriever.invoke("Dialah Allah")
    assert str(caught.value) == (
        f"The tafsir-rag service at {stub.url}/v1/retrieve answered 503: The embedding model is still loading. "
        "(after 2 attempts; max_retries=1)"
    )
    assert (caught.value.status, caught.value.code) == (503, "not_ready")
    assert len(stub.requests) == 2


def test_a_4xx_is_not_retried(stub):
    stub.reply(422, {"error": "invalid_request", "message": "The request is invalid.", "details": []})
    stub.reply(200, ANSWER)
    retriever = TafsirRAGRetriever(base_url=stub.url, api_key=None, max_retries=3, retry_backoff=0.01)
    with pytest.raises(TafsirRAGError, match="answered 422: The request is invalid"):
        retriever.invoke("Dialah Allah")
    assert len(stub.requests) == 1


def test_no_answer_within_the_timeout_names_the_timeout_parameter(stub):
    stub.reply(200, ANSWER, delay=1.0)
    retriever = TafsirRAGRetriever(base_url=stub.url, api_key=None, timeout=0.2)
    with pytest.raises(TafsirRAGError, match=r"did not answer within timeout=0.2 s") as caught:
        retriever.invoke("Dialah Allah")
    assert caught.value.parameter == "timeout"
    assert len(stub.requests) == 1  # a slow service is not asked again


def test_an_answer_that_is_not_the_services_names_base_url(stub):
    stub.reply(200, {"choices": []})
    with pytest.raises(TafsirRAGError, match=r"not a tafsir-rag response \(no 'documents'.*Is base_url="):
        TafsirRAGRetriever(base_url=stub.url, api_key=None).invoke("Dialah Allah")
