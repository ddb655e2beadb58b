"""The real HTTP server (`tafsir serve` in a subprocess on a loopback port) on a real store, called over HTTP."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from ingest.builtin import read_builtin
from tests.conftest import ROOT, cli_environment, tafsir_cmd
from tests.llm_server import stop_process

pytestmark = [pytest.mark.server]

API_KEY = "kunci-rahasia-uji-123"
JSON = {"content-type": "application/json"}
ORIGIN = "https://chat.example"
SURAHS = (1, 103, 108, 110, 112, 113, 114)  # 7 + 3 + 3 + 3 + 4 + 5 + 6 = 31 ayat: ingests in seconds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def store_env(tiny_model: Path, store: Path, **extra: str) -> dict[str, str]:
    """``cli_environment`` on the store ``store``, its ingest locks beside it."""
    locks = {"TAFSIR_INGEST_LOCK_DIR": str(store.parent / "locks")}
    return {**cli_environment(store.parent, tiny_model, **locks, **extra), "TAFSIR_QDRANT_PATH": str(store)}


def write_jsonl(path: Path, edition: str, surahs) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for a in read_builtin().ayat:
            if a.surah in surahs:
                row = {"surah": a.surah, "ayah": a.ayah, "text": a.text, "translation": a.translation}
                f.write(json.dumps({**row, "arabic": a.arabic, "edition": edition}, ensure_ascii=False) + "\n")
    return path


def ingest(env: dict[str, str], source: Path) -> dict:
    result = subprocess.run(
        tafsir_cmd("ingest", "--source", str(source), "--json"), env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


class LiveServer:
    """`tafsir serve` in a subprocess; its log goes to a file so a chatty server never blocks on a pipe."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("w")
        self.process = subprocess.Popen(
            tafsir_cmd("serve", "--port", str(self.port)), env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait(self, path: str = "/healthz", timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        pytest.fail(f"{path} did not answer 200 within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        code = stop_process(self.process, timeout=30)
        self._log.close()
        return code


def scripted_llm_settings(llm) -> dict[str, str]:
    """Settings that make the scripted endpoint (tests/llm_server.py) the server's language model: a short
    timeout and no retries, so that a scripted failure shows at once."""
    return {
        "TAFSIR_LLM_BASE_URL": llm.url,
        "TAFSIR_LLM_MODEL": "scripted",
        "TAFSIR_LLM_TIMEOUT": "1.5",
        "TAFSIR_LLM_MAX_RETRIES": "0",
    }


@contextmanager
def serving_short_surahs(
    folder: Path, tiny_model: Path, surahs: Iterable[int] = SURAHS, server: type[LiveServer] | None = None, **extra: str
) -> Iterator[LiveServer]:
    """`tafsir serve` (or ``server``) over ``surahs`` (seven short ones) ingested into a new store in ``folder``,
    with ``extra`` settings."""
    env = store_env(tiny_model, folder / "qdrant", **extra)
    ingest(env, write_jsonl(folder / "short.jsonl", "id.test", surahs))
    live = (server or LiveServer)(env, folder / "server.log")
    try:
        live.wait("/readyz")
        yield live
    finally:
        assert live.stop() == 0, live.log()


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model) -> Iterator[LiveServer]:
    """A server with an API key and CORS on a store holding seven short surahs (edition id.test)."""
    folder = tmp_path_factory.mktemp("api")
    with serving_short_surahs(folder, tiny_model, TAFSIR_API_KEY=API_KEY, TAFSIR_CORS_ORIGINS=ORIGIN) as live:
        yield live


@pytest.fixture
def client(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"X-API-Key": API_KEY}, timeout=30) as c:
        yield c


def assert_json_error(response: httpx.Response, status: int | None = None) -> dict:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    if status is not None:
        assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["error"], str) and body["message"]
    assert "Traceback" not in response.text
    return body


# --- retrieval --------------------------------------------------------------------------------------------


def test_retrieve_returns_passages_with_citation_score_and_metadata(client):
    response = client.post("/v1/retrieve", json={"query": "Katakanlah Dia Allah Yang Maha Esa", "k": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["documents"]) == 3 and body["took_ms"] >= 0
    first = body["documents"][0]
    assert first["citation"].startswith("QS ") and first["text"] and isinstance(first["score"], float)
    assert set(first["metadata"]) >= {"surah", "surah_name", "ayah", "chunk", "chunks", "edition", "translation"}
    assert first["metadata"]["surah"] in SURAHS and first["metadata"]["edition"] == "id.test"
    scores = [d["score"] for d in body["documents"]]
    assert scores == sorted(scores, reverse=True)


def test_retrieve_honours_filter_mode_and_neighbors(client):
    body = {"query": "Allah", "k": 2, "mode": "sparse", "filter": {"surah": 112}, "neighbors": 1}
    documents = client.post("/v1/retrieve", json=body).json()["documents"]
    assert {d["metadata"]["surah"] for d in documents} == {112}
    hits = [d for d in documents if d["metadata"]["context_for"] is None]
    context = [d for d in documents if d["metadata"]["context_for"] is not None]
    assert len(hits) == 2 and context and all(d["score"] == 0.0 for d in context)


def test_the_same_question_gets_the_same_answer(client):
    request = {"query": "hari kiamat dan manusia", "k": 5}
    answers = {json.dumps([d["id"] for d in client.post("/v1/retrieve", json=request).json()["documents"]])}
    answers |= {json.dumps([d["id"] for d in client.post("/v1/retrieve", json=request).json()["documents"]])}
    assert len(answers) == 1


def test_concurrent_queries_are_all_answered(client, server):
    def ask(i: int) -> int:
        return httpx.post(
            f"{server.url}/v1/retrieve", json={"query": f"rezeki {i}"}, headers={"X-API-Key": API_KEY}, timeout=30
        ).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(ask, range(24))) == [200] * 24


# --- ayah lookup --------------------------------------------------------------------------------------------


def test_ayah_lookup_returns_stored_chunks_translation_and_arabic(client):
    response = client.get("/v1/ayah/112/1")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["citation"] == "QS Al-Ikhlas [112]: 1" and body["surah_name_ar"] == "الإخلاص"
    assert body["translation"] and body["arabic"]
    assert body["chunks"] and all(c["edition"] == "id.test" and c["text"] for c in body["chunks"])


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/ayah/1/8", "1-7"),  # Al-Fatihah has seven ayat
        ("/v1/ayah/115/1", "1-114"),
        ("/v1/ayah/0/1", "1-114"),
        ("/v1/ayah/2/0", "1-286"),
    ],
)
def test_an_ayah_that_does_not_exist_is_404_naming_the_valid_range(client, path, expected):
    body = assert_json_error(client.get(path), 404)
    assert body["error"] == "no_such_ayah" and expected in body["message"]


def test_an_ayah_without_stored_tafsir_is_404(client):
    body = assert_json_error(client.get("/v1/ayah/2/255"), 404)
    assert body["error"] == "ayah_not_stored" and "QS Al-Baqarah [2]: 255" in body["message"]
    assert_json_error(client.get("/v1/ayah/112/1", params={"edition": "id.other"}), 404)


# --- authentication -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_args",
    [("POST", "/v1/retrieve", {"query": "Allah"}), ("GET", "/v1/ayah/112/1", None), ("GET", "/v1/editions", None)],
    ids=["retrieve", "ayah", "editions"],
)
def test_api_key_401_without_403_wrong_200_right(server, request_args):
    method, path, body = request_args

    def call(headers: dict[str, str]) -> httpx.Response:
        return httpx.request(method, server.url + path, json=body, headers=headers, timeout=30)

    missing = call({})
    assert_json_error(missing, 401)
    assert missing.headers["www-authenticate"] == "Bearer"
    assert_json_error(call({"X-API-Key": API_KEY + "x"}), 403)
    assert_json_error(call({"Authorization": "Bearer wrong"}), 403)
    assert call({"X-API-Key": API_KEY}).status_code == 200
    assert call({"Authorization": f"Bearer {API_KEY}"}).status_code == 200


def test_health_readiness_and_metrics_need_no_key(server):
    for path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(server.url + path, timeout=30).status_code == 200, path


def test_a_server_without_a_schedule_keeps_pythons_own_allocator(server):
    environ = Path(f"/proc/{server.process.pid}/environ").read_bytes().split(b"\0")
    assert not any(entry.startswith(b"PYTHONMALLOC=") for entry in environ)


def test_the_api_key_never_reaches_the_log(client, server):
    client.post("/v1/retrieve", json={"query": API_KEY})  # even as a query
    httpx.get(f"{server.url}/v1/ayah/1/1", headers={"Authorization": f"Bearer {API_KEY}-wrong"}, timeout=30)
    assert API_KEY not in server.log()


def test_cors_allows_the_configured_origin_only(server):
    def preflight(origin: str) -> httpx.Response:
        headers = {
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key",
        }
        return httpx.options(f"{server.url}/v1/retrieve", headers=headers, timeout=30)

    assert preflight(ORIGIN).headers["access-control-allow-origin"] == ORIGIN
    assert "access-control-allow-origin" not in preflight("https://evil.example").headers


# --- malformed requests -------------------------------------------------------------------------------------

MALFORMED = {
    "invalid JSON": (
        "POST",
        "/v1/retrieve",
        {"content": b'{"query": ', "headers": {"content-type": "application/json"}},
    ),
    "body is a list": ("POST", "/v1/retrieve", {"json": ["Allah"]}),
    "no query": ("POST", "/v1/retrieve", {"json": {"k": 3}}),
    "empty query": ("POST", "/v1/retrieve", {"json": {"query": ""}}),
    "blank query": ("POST", "/v1/retrieve", {"json": {"query": " \n\t "}}),
    "query over 2,000 characters": ("POST", "/v1/retrieve", {"json": {"query": "a" * 2001}}),
    "k = 0": ("POST", "/v1/retrieve", {"json": {"query": "Allah", "k": 0}}),
    "k = 51": ("POST", "/v1/retrieve", {"json": {"query": "Allah", "k": 51}}),
    "k not a number": ("POST", "/v1/retrieve", {"json": {"query": "Allah", "k": "banyak"}}),
    "unknown mode": ("POST", "/v1/retrieve", {"json": {"query": "Allah", "mode": "fuzzy"}}),
    "surah 115": ("POST", "/v1/retrieve", {"json": {"query": "Allah", "filter": {"surah": 115}}}),
    "ayah range reversed": ("POST", "/v1/retrieve", {"json": {"query": "A", "filter": {"ayah_from": 5, "ayah_to": 2}}}),
    "unknown filter field": ("POST", "/v1/retrieve", {"json": {"query": "Allah", "filter": {"juz": 30}}}),
    "unknown top-level field": ("POST", "/v1/retrieve", {"json": {"query": "Allah", "top_k": 3}}),
    "negative neighbors": ("POST", "/v1/retrieve", {"json": {"query": "Allah", "neighbors": -1}}),
    "threshold not a number": ("POST", "/v1/retrieve", {"json": {"query": "Allah", "score_threshold": "tinggi"}}),
    "threshold NaN": (
        "POST",
        "/v1/retrieve",
        {"content": b'{"query": "Allah", "score_threshold": NaN}', "headers": {"content-type": "application/json"}},
    ),
    "form instead of JSON": ("POST", "/v1/retrieve", {"data": {"query": "Allah"}}),
    "GET on retrieve": ("GET", "/v1/retrieve", {}),
    "unknown route": ("POST", "/v1/nowhere", {"json": {}}),
    "ayah not a number": ("GET", "/v1/ayah/satu/1", {}),
    "edition too long": ("GET", "/v1/ayah/1/1", {"params": {"edition": "x" * 101}}),
}


@pytest.mark.parametrize("case", MALFORMED, ids=str)
def test_malformed_request_gets_a_4xx_json_error(client, case):
    method, path, kwargs = MALFORMED[case]
    assert_json_error(client.request(method, path, **kwargs))


def test_a_form_body_is_told_to_send_json(client):
    body = assert_json_error(client.post("/v1/retrieve", data={"query": "Allah"}), 422)
    assert "Content-Type: application/json" in body["message"]


def test_validation_errors_name_the_field(client):
    body = assert_json_error(client.post("/v1/retrieve", json={"query": "a" * 2001}), 422)
    assert body["error"] == "invalid_request" and body["details"][0]["location"] == ["body", "query"]
    assert body["message"] == "query must be between 1 and 2,000 characters"


@pytest.mark.parametrize(
    ("request_body", "location", "message", "kind"),
    [
        ({"filter": {"surah": 200}}, ["body", "filter", "surah"], "surah must be between 1 and 114", "less_than_equal"),
        ({"filter": {"surah": [2, 0]}}, ["body", "filter", "surah", 1], "surah must be between 1 and 114", None),
        ({"filter": {"ayah_from": 287}}, ["body", "filter", "ayah_from"], "ayah_from must be between 1 and 286", None),
        ({"k": 51}, ["body", "k"], "k must be between 1 and 50", "less_than_equal"),
        ({"neighbors": -1}, ["body", "neighbors"], "neighbors must be between 0 and 10", "greater_than_equal"),
        ({"filter": {"edition": "x" * 101}}, ["body", "filter", "edition"], "edition must be an edition id of 1", None),
        ({"filter": {"juz": 30}}, ["body", "filter", "juz"], "filter has no field 'juz'", "extra_forbidden"),
    ],
    ids=str,
)
def test_an_out_of_range_field_is_422_with_a_message_a_person_would_write(
    client, request_body, location, message, kind
):
    body = assert_json_error(client.post("/v1/retrieve", json={"query": "Allah", **request_body}), 422)
    [detail] = body["details"]  # one problem, one entry: not one per alternative of a number-or-list field
    assert detail["location"] == location and detail["message"].startswith(message)
    assert kind is None or detail["type"] == kind  # the machine-readable type stays pydantic's
    assert body["message"].startswith(message)
    for internal in ("constrained-int", "list[", "Input should"):
        assert internal not in json.dumps(body)


# For each status and code docs/HTTP_API.md documents: a request the running server must answer
# with exactly that. The 5xx codes need a broken store, model or code: the readiness tests below produce 503, and
# test_an_unexpected_error_is_500_internal_error_with_an_id_only produces 500.
DOCUMENTED_ERRORS = {
    (400, "bad_request"): [("POST", "/v1/retrieve", {"content": b'{"query": "\xff"}', "headers": JSON})],
    (401, "unauthorized"): [("GET", "/v1/ayah/1/1", {"headers": {"X-API-Key": ""}})],
    (403, "forbidden"): [("GET", "/v1/ayah/1/1", {"headers": {"X-API-Key": "salah"}})],
    (404, "not_found"): [("GET", "/v1/nowhere", {})],
    (404, "no_such_ayah"): [("GET", "/v1/ayah/1/8", {})],
    (404, "ayah_not_stored"): [("GET", "/v1/ayah/2/255", {})],
    (405, "method_not_allowed"): [("GET", "/v1/retrieve", {})],
    (413, "body_too_large"): [("POST", "/v1/retrieve", {"content": b" " * (65 * 1024), "headers": JSON})],
    (422, "invalid_request"): [
        ("POST", "/v1/retrieve", {"json": {"query": "Allah", "k": 51}}),
        ("POST", "/v1/retrieve", {"content": b'{"query": ', "headers": JSON}),  # not valid JSON: 422, not 400
    ],
}
PRODUCED_ELSEWHERE = {
    (500, "internal_error"),
    (503, "not_ready"),
    # a server with a language model that fails: tests/test_answer_api.py, and tests/test_answer.py for the kinds
    (504, "llm_timeout"),
    (502, "llm_unreachable"),
    (502, "llm_failed"),
    (502, "llm_malformed_reply"),
    (404, "model_not_found"),  # OpenAI's error shape: tests/test_answer_api.py
}


def documented_api_errors() -> set[tuple[int, str]]:
    page = (ROOT / "docs" / "HTTP_API.md").read_text(encoding="utf-8")
    return {(int(status), code) for status, code in re.findall(r"\b([1-5]\d\d) `([a-z_]+)`", page)}


def test_every_status_code_the_docs_document_is_the_one_returned(client):
    documented = documented_api_errors()
    assert documented - PRODUCED_ELSEWHERE == set(DOCUMENTED_ERRORS), "docs/HTTP_API.md and this table disagree"
    for (status, code), requests in DOCUMENTED_ERRORS.items():
        for method, path, kwargs in requests:
            response = client.request(method, path, **kwargs)
            assert (response.status_code, response.json()["error"]) == (status, code), (method, path, response.text)
    invalid_json = client.post("/v1/retrieve", content=b'{"query": ', headers=JSON).json()
    assert invalid_json["message"].startswith("the body is not valid JSON")


def test_an_unexpected_error_is_500_internal_error_with_an_id_only(tmp_path):
    """A bug must not show its traceback to a client: in-process, since only a broken route produces one."""
    from fastapi.testclient import TestClient

    from interfaces.http import create_app
    from services.settings import Settings

    app = create_app(Settings(_env_file=None, qdrant_path=tmp_path / "qdrant"))

    @app.get("/broken")
    async def broken() -> None:
        raise RuntimeError("a bug with a secret inside")

    response = TestClient(app, raise_server_exceptions=False).get("/broken")
    assert response.status_code == 500 and response.json()["error"] == "internal_error"
    assert "error id" in response.json()["message"] and "secret" not in response.text


def test_a_body_over_64_kib_is_refused_with_413_json(client):
    big = {"query": "Allah", "filter": {"edition": ["x" * 100] * 700}}  # ~72 KB, declared Content-Length
    assert_json_error(client.post("/v1/retrieve", json=big), 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts what arrives
        yield b'{"query": "'
        for _ in range(70):
            yield b"a" * 1024
        yield b'"}'

    body = assert_json_error(client.post("/v1/retrieve", content=chunks()), 413)
    assert body["error"] == "body_too_large"


# --- metrics and documentation ------------------------------------------------------------------------------


def test_metrics_count_requests_and_latency_by_route_template_and_status(client, server):
    client.get("/v1/ayah/112/2")
    client.get("/v1/ayah/1/99")
    text = httpx.get(server.url + "/metrics", timeout=30).text
    assert 'tafsir_http_requests_total{method="GET",route="/v1/ayah/{surah}/{ayah}",status="200"}' in text
    assert 'tafsir_http_requests_total{method="GET",route="/v1/ayah/{surah}/{ayah}",status="404"}' in text
    assert 'tafsir_http_request_duration_seconds_bucket{le="0.1",method="GET",route="/v1/ayah/{surah}/{ayah}"' in text
    assert "# TYPE tafsir_ingest_runs_total counter" in text  # listed before the first run


# What a documentation page loads: scripts, styles, icons, and the schema it renders.
PAGE_REFERENCE = re.compile(r"""(?:src|href|spec-url)="([^"]*)"|url: '([^']*)'""")


@pytest.mark.parametrize(
    ("page", "renderer"), [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")], ids=str
)
def test_the_docs_page_and_everything_it_loads_come_from_the_server_itself(server, page, renderer):
    response = httpx.get(server.url + page, timeout=30)  # no API key: documentation stays open
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "://" not in html and "//" not in html.replace("<!--", "").replace("-->", ""), "an external host"
    references = {a or b for a, b in PAGE_REFERENCE.findall(html)}
    assert "/openapi.json" in references and any(r.endswith(renderer) for r in references), references
    for reference in references:
        assert reference.startswith("/"), reference  # a path on this server
        asset = httpx.get(server.url + reference, timeout=30)
        assert asset.status_code == 200 and len(asset.content) > 1000, (reference, asset.status_code)
        kind = asset.headers["content-type"]
        expected = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}
        assert expected[Path(reference).suffix] in kind, (reference, kind)
    paths = httpx.get(server.url + "/openapi.json", timeout=30).json()["paths"]
    assert {"/v1/retrieve", "/v1/ayah/{surah}/{ayah}", "/healthz", "/readyz"} <= set(paths)


# --- schemathesis against the served OpenAPI -----------------------------------------------------------------
# Its Python API with Hypothesis directly: the pytest plugin's lazy loader does not run under pytest 9.

OPERATIONS = [
    ("POST", "/v1/retrieve"),
    ("GET", "/v1/ayah/{surah}/{ayah}"),
    ("GET", "/v1/editions"),
    ("POST", "/v1/answer"),  # extractive here (no language model); with one: tests/test_answer_api.py
    ("POST", "/v1/chat/completions"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model}"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
]


@pytest.fixture(scope="module")
def api_schema(server):
    return schemathesis.openapi.from_url(server.url + "/openapi.json")


def test_the_schema_lists_exactly_the_operations_under_test(api_schema):
    served = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert served == set(OPERATIONS)


# Valid inputs for every operation; invalid ones where there are inputs to break.
GENERATED = [(*op, GenerationMode.POSITIVE) for op in OPERATIONS] + [
    (*op, GenerationMode.NEGATIVE) for op in OPERATIONS if op[1].startswith("/v1/")
]


@pytest.mark.parametrize(("method", "path", "mode"), GENERATED, ids=lambda value: str(value).strip("/"))
def test_generated_requests_get_no_5xx_and_responses_match_the_schema(api_schema, server, method, path, mode):
    check_generated_requests(api_schema[path][method], server, mode, examples=30)


def check_generated_requests(operation, server: LiveServer, mode: GenerationMode, examples: int) -> None:
    """Requests schemathesis generates for ``operation`` (valid or broken, by ``mode``), sent with the key: no
    5xx, and every status, content type and body as the schema declares."""
    checks = schemathesis.checks
    selected = [
        checks.not_a_server_error,
        checks.status_code_conformance,
        checks.content_type_conformance,
        checks.response_schema_conformance,
    ]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def call(case) -> None:
        case.call_and_validate(base_url=server.url, headers={"X-API-Key": API_KEY}, timeout=30, checks=selected)

    call()


# --- readiness ---------------------------------------------------------------------------------------------


def test_readyz_is_503_with_the_reason_while_the_alias_is_missing(tmp_path, tiny_model):
    live = LiveServer(store_env(tiny_model, tmp_path / "empty"), tmp_path / "server.log")
    try:
        live.wait("/healthz")
        body = assert_json_error_5xx(httpx.get(live.url + "/readyz", timeout=30), 503)
        assert body["error"] == "not_ready" and "'tafsir' does not exist" in body["message"]
        assert "tafsir ingest" in body["message"]
        retrieve = httpx.post(live.url + "/v1/retrieve", json={"query": "Allah"}, timeout=30)
        assert assert_json_error_5xx(retrieve, 503)["error"] == "store_unavailable"
    finally:
        assert live.stop() == 0, live.log()


def test_readyz_and_retrieve_name_a_damaged_alias_file_and_the_repair(tmp_path, tiny_model):
    env = store_env(tiny_model, tmp_path / "qdrant")
    ingest(env, write_jsonl(tmp_path / "short.jsonl", "id.test", [113, 114]))
    aliases = tmp_path / "qdrant" / "aliases.json"
    aliases.write_text("{ not json")  # a half-written pointer file
    live = LiveServer(env, tmp_path / "server.log")
    try:
        live.wait("/healthz")
        body = assert_json_error_5xx(httpx.get(live.url + "/readyz", timeout=30), 503)
        assert str(aliases) in body["message"] and "tafsir ingest --full" in body["message"], body
        retrieve = httpx.post(live.url + "/v1/retrieve", json={"query": "Allah"}, timeout=30)
        body = assert_json_error_5xx(retrieve, 503)
        assert body["error"] == "store_unavailable" and str(aliases) in body["message"], body
    finally:
        assert live.stop() == 0, live.log()


def assert_json_error_5xx(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "Traceback" not in response.text
    return response.json()
