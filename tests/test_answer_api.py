"""POST /v1/answer and the OpenAI-compatible routes on the real server (`tafsir serve` in a subprocess), with a
real OpenAI-compatible endpoint on loopback as its language model: the scripted server of tests/llm_server.py.

The OpenAI-compatible route is called with the official `openai` client, as a chatbot would."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest
import schemathesis
from schemathesis import GenerationMode

from retriever.answer import NOT_FOUND_TEXT
from tests.test_api import (
    API_KEY,
    JSON,
    LiveServer,
    check_generated_requests,
    scripted_llm_settings,
    serving_short_surahs,
)

QUESTION = "Katakanlah Dialah Allah Yang Maha Esa"


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model, llm) -> Iterator[LiveServer]:
    """`tafsir serve` with an API key, seven short surahs, and the scripted endpoint as its language model."""
    folder = tmp_path_factory.mktemp("answer-api")
    with serving_short_surahs(folder, tiny_model, TAFSIR_API_KEY=API_KEY, **scripted_llm_settings(llm)) as live:
        yield live


@pytest.fixture
def client(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"X-API-Key": API_KEY}, timeout=30) as c:
        yield c


@pytest.fixture
def openai_client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=30)


def passages(client: httpx.Client, query: str = QUESTION, k: int = 5) -> list[dict]:
    return client.post("/v1/retrieve", json={"query": query, "k": k}).json()["documents"]


def server_sent_events(response: httpx.Response) -> list[tuple[str | None, str]]:
    """(event, data) of each event of a text/event-stream response, comments (pings) left out."""
    events, name, data = [], None, []
    for line in response.iter_lines():
        if line == "":
            if data:
                events.append((name, "\n".join(data)))
            name, data = None, []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        events.append((name, "\n".join(data)))
    return events


# --- POST /v1/answer ----------------------------------------------------------------------------------------


def test_an_answer_cites_what_it_was_given_and_reports_the_rest(client, llm):
    first = passages(client)[0]
    llm.script({"content": f"Dialah Allah Yang Maha Esa [1], {first['citation']}. Juga QS Al-Baqarah [2]: 255."})
    body = client.post("/v1/answer", json={"question": QUESTION}).json()
    assert body["mode"] == "generated"
    assert body["answer"] == f"Dialah Allah Yang Maha Esa [1], {first['citation']}. Juga."
    assert body["invalid_citations"] == [
        {"text": "QS Al-Baqarah [2]: 255", "reason": "QS Al-Baqarah [2]: 255 is not among the passages given"}
    ]
    assert body["cited"] == [1]
    assert [s["cited"] for s in body["sources"]] == [True, False, False, False, False]
    source = body["sources"][0]
    assert source["citation"] == first["citation"] and source["arabic"] and source["translation"]
    assert body["searched_query"] == QUESTION and body["usage"]["completion_tokens"] > 0
    assert body["llm"] == f"the chat endpoint {llm.url} (model scripted)"


def test_a_streamed_answer_sends_its_deltas_then_one_final_event_with_the_sources(client, llm):
    llm.script({"content": "Dialah Allah Yang Maha Esa [1], bukan [9]. Allah tempat meminta [2]."})
    with client.stream("POST", "/v1/answer", json={"question": QUESTION, "stream": True}) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        events = server_sent_events(response)
    names = [name for name, _ in events]
    assert names[-1] == "done" and set(names[:-1]) == {"delta"} and len(names) > 3
    final = json.loads(events[-1][1])
    text = "".join(json.loads(data)["text"] for _, data in events[:-1])
    assert text == final["answer"] == "Dialah Allah Yang Maha Esa [1], bukan. Allah tempat meminta [2]."
    assert final["cited"] == [1, 2] and len(final["sources"]) == 5
    assert [c["text"] for c in final["invalid_citations"]] == ["[9]"]


def test_nothing_found_says_so_and_asks_no_language_model(client, llm):
    llm.script({"content": "this reply must never be requested"})
    body = client.post("/v1/answer", json={"question": QUESTION, "filter": {"edition": "no.such.edition"}}).json()
    assert body["mode"] == "not_found" and body["answer"] == NOT_FOUND_TEXT and body["sources"] == []
    assert body["usage"] is None and body["llm"] is None
    assert llm.calls() == []


def test_a_follow_up_is_searched_as_the_standalone_question_the_model_wrote(client, llm):
    llm.script({"content": "Apa makna surah Al-Ikhlas?"}, {"content": "Keesaan Allah [1]."})
    history = [
        {"role": "user", "content": "Surah apa yang menjelaskan keesaan Allah?"},
        {"role": "assistant", "content": "Surah Al-Ikhlas [1]."},
    ]
    body = client.post("/v1/answer", json={"question": "lalu apa maknanya?", "messages": history}).json()
    assert body["searched_query"] == "Apa makna surah Al-Ikhlas?"
    assert [s["id"] for s in body["sources"]] == [p["id"] for p in passages(client, "Apa makna surah Al-Ikhlas?")]
    assert len(llm.calls()) == 2  # the rewriting, then the answer


def test_a_timeout_is_504_naming_the_setting_with_the_sources_found(client, llm):
    llm.script({"content": "terlambat", "delay": 4})
    response = client.post("/v1/answer", json={"question": QUESTION})
    assert response.status_code == 504, response.text
    body = response.json()
    assert body["error"] == "llm_timeout" and body["setting"] == "TAFSIR_LLM_TIMEOUT"
    assert llm.url in body["message"] and "Traceback" not in response.text
    assert [s["id"] for s in body["sources"]] == [p["id"] for p in passages(client)]


@pytest.mark.parametrize(
    ("reply", "code"), [({"malformed": True}, "llm_malformed_reply"), ({"status": 500}, "llm_failed")], ids=str
)
def test_a_failing_model_is_502_with_the_sources_found(client, llm, reply, code):
    llm.script(reply)
    response = client.post("/v1/answer", json={"question": QUESTION})
    assert response.status_code == 502, response.text
    body = response.json()
    assert body["error"] == code and llm.url in body["message"] and len(body["sources"]) == 5


def test_a_failure_while_streaming_ends_with_an_error_event_holding_the_sources(client, llm):
    llm.script({"status": 503})
    with client.stream("POST", "/v1/answer", json={"question": QUESTION, "stream": True}) as response:
        events = server_sent_events(response)
    name, data = events[-1]
    assert name == "error"
    body = json.loads(data)
    assert body["error"] == "llm_failed" and "HTTP 503" in body["message"] and len(body["sources"]) == 5


# --- the OpenAI-compatible routes, through the official client ----------------------------------------------


def test_the_openai_client_lists_the_model(openai_client):
    assert [m.id for m in openai_client.models.list()] == ["tafsir-rag"]
    assert openai_client.models.retrieve("tafsir-rag").id == "tafsir-rag"


def test_the_openai_client_gets_a_grounded_answer_ending_with_its_sources(openai_client, client, llm):
    first = passages(client)[0]
    llm.script({"content": "Dialah Allah Yang Maha Esa [1]. Khamar haram QS Al-Ma'idah [5]: 90."})
    completion = openai_client.chat.completions.create(
        model="tafsir-rag", messages=[{"role": "user", "content": QUESTION}]
    )
    text = completion.choices[0].message.content
    assert text == f"Dialah Allah Yang Maha Esa [1]. Khamar haram.\n\nSumber:\n[1] {first['citation']} (id.test)"
    assert completion.choices[0].finish_reason == "stop" and completion.model == "tafsir-rag"
    assert completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    tafsir = completion.model_extra["tafsir"]
    assert tafsir["cited"] == [1] and tafsir["invalid_citations"][0]["text"] == "QS Al-Ma'idah [5]: 90"


def test_the_openai_client_streams_the_answer_then_its_sources_then_usage(openai_client, client, llm):
    second = passages(client)[1]
    llm.script({"content": "Allah tempat meminta [2]."})
    stream = openai_client.chat.completions.create(
        model="tafsir-rag",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"Allah tempat meminta [2].\n\nSumber:\n[2] {second['citation']} (id.test)"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_the_openai_client_sends_the_conversation_and_extra_options(openai_client, llm):
    llm.script({"content": "Apa makna surah Al-Ikhlas?"}, {"content": "Keesaan Allah [1]."})
    completion = openai_client.chat.completions.create(
        model="tafsir-rag",
        messages=[
            {"role": "system", "content": "Kamu asisten yang ramah."},
            {"role": "user", "content": "Surah apa yang menjelaskan keesaan Allah?"},
            {"role": "assistant", "content": "Surah Al-Ikhlas."},
            {"role": "user", "content": [{"type": "text", "text": "lalu apa maknanya?"}]},
        ],
        extra_body={"k": 2, "filter": {"surah": 112}},
    )
    tafsir = completion.model_extra["tafsir"]
    assert tafsir["searched_query"] == "Apa makna surah Al-Ikhlas?"
    assert len(tafsir["sources"]) == 2 and {s["surah"] for s in tafsir["sources"]} == {112}
    rewriting = llm.calls()[0]["messages"][-1]["content"]
    assert "Surah apa yang menjelaskan keesaan Allah?" in rewriting and "ramah" not in rewriting


def test_a_failing_model_reaches_the_openai_client_as_an_error_naming_the_setting(openai_client, llm):
    llm.script({"content": "terlambat", "delay": 4})
    with pytest.raises(openai.APIStatusError) as caught:
        openai_client.chat.completions.create(model="tafsir-rag", messages=[{"role": "user", "content": QUESTION}])
    assert caught.value.status_code == 504 and "TAFSIR_LLM_TIMEOUT" in caught.value.message
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert len(caught.value.body["sources"]) == 5  # the sources found come with the error
    llm.script({"malformed": True})
    with pytest.raises(openai.APIError, match="not an OpenAI chat completion"):
        list(
            openai_client.chat.completions.create(
                model="tafsir-rag", messages=[{"role": "user", "content": QUESTION}], stream=True
            )
        )


def test_an_unknown_model_is_404_model_not_found(openai_client):
    with pytest.raises(openai.NotFoundError, match="tafsir-rag"):
        openai_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": QUESTION}])


# --- auth and limits on every new route ---------------------------------------------------------------------

NEW_ROUTES = [
    ("POST", "/v1/answer", {"json": {"question": QUESTION}}),
    ("POST", "/v1/chat/completions", {"json": {"model": "tafsir-rag", "messages": [{"role": "user", "content": "a"}]}}),
    ("GET", "/v1/models", {}),
    ("GET", "/v1/models/tafsir-rag", {}),
]


def error_code(response: httpx.Response, status: int) -> str:
    """The error code of a JSON error, in our shape or (on the OpenAI-compatible routes) in OpenAI's."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json") and "Traceback" not in response.text
    error = response.json()["error"]
    return error if isinstance(error, str) else error["code"]


@pytest.mark.parametrize(("method", "path", "kwargs"), NEW_ROUTES, ids=lambda v: v if isinstance(v, str) else "")
def test_every_new_route_needs_the_api_key(server, method, path, kwargs):
    missing = httpx.request(method, server.url + path, timeout=30, **kwargs)
    assert error_code(missing, 401) == "unauthorized"
    wrong = httpx.request(method, server.url + path, headers={"Authorization": "Bearer salah"}, timeout=30, **kwargs)
    assert error_code(wrong, 403) == "forbidden"


def test_the_openai_compatible_routes_answer_errors_in_openais_shape(client):
    body = client.post("/v1/chat/completions", json={"model": "tafsir-rag", "messages": []}).json()
    assert set(body) == {"error"} and body["error"]["type"] == "invalid_request" and body["error"]["message"]


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/v1/answer", {"question": "a" * 2001}, "question must be between 1 and 2,000 characters"),
        (
            "/v1/chat/completions",
            {"model": "tafsir-rag", "messages": [{"role": "user", "content": "a" * 2001}]},
            "the question (the last message) must be at most 2,000 characters",
        ),
    ],
    ids=["answer", "chat"],
)
def test_a_question_over_2000_characters_is_422_naming_the_limit(client, llm, path, body, message):
    llm.script()
    response = client.post(path, json=body)
    assert error_code(response, 422) == "invalid_request"
    assert message in json.dumps(response.json())
    assert llm.calls() == []


@pytest.mark.parametrize("path", ["/v1/answer", "/v1/chat/completions"])
def test_a_body_over_64_kib_is_413(client, path):
    turns = [{"role": "user", "content": "a" * 7000}] * 10  # each turn within its limit, the body over 64 KiB
    body = {"question": QUESTION, "messages": turns, "model": "tafsir-rag"}
    assert error_code(client.post(path, content=json.dumps(body), headers=JSON), 413) == "body_too_large"


def test_the_last_chat_message_must_be_the_users_question(client):
    body = {"model": "tafsir-rag", "messages": [{"role": "assistant", "content": "Halo"}]}
    response = client.post("/v1/chat/completions", json=body)
    assert error_code(response, 422) == "invalid_request"
    assert "the last message must be the user's question" in response.json()["error"]["message"]


# --- schemathesis on the new routes, with the language model answering ----------------------------------------


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize("path", ["/v1/answer", "/v1/chat/completions"])
def test_generated_requests_to_the_answering_routes_get_no_5xx(server, llm, path, mode):
    llm.script()  # every request gets the default reply: the model never fails here
    operation = schemathesis.openapi.from_url(server.url + "/openapi.json")[path]["POST"]
    check_generated_requests(operation, server, mode, examples=25)
