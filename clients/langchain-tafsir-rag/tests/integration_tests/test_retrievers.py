"""The client against a real `tafsir serve` (any corpus holding surah 112, Al-Ikhlas)."""

from __future__ import annotations

import pytest
from langchain_tafsir_rag import TafsirRAGError, TafsirRAGRetriever
from langchain_tests.integration_tests import RetrieversIntegrationTests

from tests.integration_tests.conftest import Service, running_service

QUERY = "Allah Yang Maha Esa tempat meminta"


class TestTafsirRAGRetrieverStandard(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[TafsirRAGRetriever]:
        return TafsirRAGRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        service = running_service()
        return {"base_url": service.url, "api_key": service.api_key, "k": 2}

    @property
    def retriever_query_example(self) -> str:
        return QUERY


@pytest.fixture
def retriever(service: Service) -> TafsirRAGRetriever:
    return TafsirRAGRetriever(base_url=service.url, api_key=service.api_key, k=3)


async def test_sync_and_async_calls_return_the_same_documents(retriever):
    assert await retriever.ainvoke(QUERY, mode="sparse") == retriever.invoke(QUERY, mode="sparse")


def test_a_surah_filter_keeps_only_that_surah(retriever):
    documents = retriever.invoke(QUERY, filter={"surah": 112})
    assert documents
    assert {d.metadata["surah"] for d in documents} == {112}
    assert all(d.metadata["citation"].startswith("QS Al-Ikhlas [112]: ") for d in documents)


def test_the_edition_and_language_filters_take_the_services_editions(retriever):
    editions = retriever.editions()
    assert editions
    first = editions[0]
    assert {d.metadata["edition"] for d in retriever.invoke(QUERY, filter={"edition": first["edition"]})} == {
        first["edition"]
    }
    in_language = {e["edition"] for e in editions if e["language"] == first["language"]}
    documents = retriever.invoke(QUERY, filter={"language": first["language"]})
    assert documents
    assert {d.metadata["edition"] for d in documents} <= in_language


async def test_editions_async_are_the_same(retriever):
    assert await retriever.aeditions() == retriever.editions()


def test_neighbouring_ayat_are_marked_with_the_hit_they_surround(retriever):
    documents = retriever.invoke(QUERY, k=1, filter={"surah": 112, "ayah_from": 2, "ayah_to": 2}, neighbors=1)
    hit, *context = documents
    assert "context_for" not in hit.metadata
    assert {d.metadata["ayah"] for d in context} == {1, 3}
    assert {d.metadata["context_for"] for d in context} == {hit.metadata["citation"]}


def test_without_the_api_key_the_error_names_the_api_key_parameter(service):
    with pytest.raises(TafsirRAGError, match=r"answered 401: .*Pass api_key=") as caught:
        TafsirRAGRetriever(base_url=service.url, api_key=None).invoke(QUERY)
    assert (caught.value.status, caught.value.parameter) == (401, "api_key")
    assert caught.value.url == f"{service.url.rstrip('/')}/v1/retrieve"


def test_a_wrong_api_key_names_the_api_key_parameter(service):
    with pytest.raises(TafsirRAGError, match=r"answered 403: .*Check api_key") as caught:
        TafsirRAGRetriever(base_url=service.url, api_key="not-the-key").invoke(QUERY)
    assert caught.value.parameter == "api_key"


def test_a_request_the_service_refuses_shows_its_message_and_is_not_retried(retriever):
    with pytest.raises(TafsirRAGError) as caught:
        retriever.invoke(QUERY, filter={"surah": 115})
    assert caught.value.status == 422
    assert "filter.surah: surah must be between 1 and 114" in str(caught.value)
    assert "attempts" not in str(caught.value)
