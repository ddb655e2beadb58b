"""Security review (issue 7, part 3), one test a point: the API key stays secret, its comparison is
constant-time, the limits hold, CLI paths are data and never shell, the server backend uses its key and HTTPS."""

from __future__ import annotations

import inspect
import json
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from interfaces.http import middleware
from services.settings import Settings
from services.store import open_store
from services.store.server import ServerStore
from tests.conftest import ROOT, tafsir_cmd
from tests.test_api import LiveServer, free_port, serving_short_surahs

SECRET = "rahasia-KUNCI-9f3c2b7e1d"  # distinctive, so a substring search cannot miss or misfire


class DebugServer(LiveServer):
    """`tafsir serve --log-level debug`: the chattiest log is the one to search for the key."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("w")
        command = tafsir_cmd("serve", "--port", str(self.port), "--log-level", "debug")
        self.process = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model) -> Iterator[DebugServer]:
    folder = tmp_path_factory.mktemp("security")
    with serving_short_surahs(folder, tiny_model, (112, 113, 114), DebugServer, TAFSIR_API_KEY=SECRET) as live:
        yield live


def post(server: LiveServer, headers: dict | None = None, **kwargs) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/retrieve", headers=headers or {"X-API-Key": SECRET}, timeout=30, **kwargs)


# --- the API key never leaks ------------------------------------------------------------------------------

WRONG_KEYS = [
    SECRET + "x",  # holds the real key: a log line quoting it would leak the secret
    "x" + SECRET,
    SECRET[:-1],
    SECRET.upper(),
    f"{SECRET} {SECRET}",
]


def test_the_api_key_never_appears_in_the_log_or_in_any_error_body(server):
    responses = []
    for wrong in WRONG_KEYS:
        responses.append(post(server, {"X-API-Key": wrong}, json={"query": "Allah"}))
        responses.append(post(server, {"Authorization": f"Bearer {wrong}"}, json={"query": "Allah"}))
        responses.append(httpx.get(f"{server.url}/v1/ayah/1/1", headers={"X-API-Key": wrong}, timeout=30))
    responses.append(post(server, {"Authorization": f"Basic {SECRET}"}, json={"query": "Allah"}))  # wrong scheme
    # Malformed requests with the right key, and with the key inside the malformed body.
    malformed = [
        {"content": b'{"query": ', "headers": {"content-type": "application/json"}},
        {"json": {"query": SECRET, "k": 0}},
        {"json": {"query": SECRET * 200}},  # over 2,000 characters
        {"json": {"query": "Allah", "filter": {"edition": SECRET, "surah": 115}}},
        {"json": [SECRET]},
        {"data": {"query": SECRET}},  # a form, not JSON
        {"content": json.dumps({"query": SECRET, "pad": "x" * 70_000}).encode()},  # over 64 KiB
    ]
    for kwargs in malformed:
        headers = {"X-API-Key": SECRET, **kwargs.pop("headers", {})}
        responses.append(httpx.post(f"{server.url}/v1/retrieve", headers=headers, timeout=30, **kwargs))
    responses.append(httpx.get(f"{server.url}/v1/ayah/1/1", params={"edition": "x" * 101}, timeout=30))

    assert all(400 <= r.status_code < 500 for r in responses), [(r.status_code, r.text) for r in responses]
    for r in responses:
        assert r.headers["content-type"].startswith("application/json"), r.text
        assert SECRET not in r.text and SECRET.lower() not in r.text.lower(), r.text
        assert all(SECRET not in value for value in r.headers.values())
    # A valid request with the key in its query: the answer does not echo it either.
    ok = post(server, json={"query": SECRET})
    assert ok.status_code == 200 and SECRET not in ok.text
    log = server.log()
    assert "/v1/retrieve" in log  # the log is being written (access lines), so the search below means something
    assert SECRET.lower() not in log.lower()


# --- constant-time comparison -----------------------------------------------------------------------------


def test_the_key_is_compared_in_constant_time():
    source = inspect.getsource(middleware.check_api_key)
    assert "hmac.compare_digest(" in source
    # No ordinary comparison touches the provided key (== / != / startswith would leak timing).
    assert not re.search(r"provided\s*(==|!=)|(==|!=)\s*expected|\.startswith\(", source), source
    # Both the /v1 routes' dependency and the /mcp endpoint's wrapper go through it.
    for checker in (middleware.require_api_key, middleware.RequireApiKey):
        source = inspect.getsource(checker)
        assert "check_api_key(" in source and not re.search(r"(==|!=)\s*(self\.)?expected", source), source


@pytest.mark.parametrize(
    "key",
    ["x", SECRET[:-1], SECRET + "x", "k" * 4096, "kunci-ünicode-ключ", b"\xff\xfe\x80 raw bytes"],
    ids=["1 char", "one short", "one long", "4 KiB", "non-ASCII", "not UTF-8"],
)
def test_a_key_of_another_length_or_charset_is_refused_with_403_not_an_exception(server, key):
    # httpx sends str headers as ASCII only; bytes go on the wire as they are (Starlette reads them as Latin-1).
    value = key if isinstance(key, bytes) else key.encode("utf-8")
    for headers in ({"X-API-Key": value}, {"Authorization": b"Bearer " + value}):
        response = post(server, headers, json={"query": "Allah"})
        assert response.status_code == 403, response.text
        assert response.json()["error"] == "forbidden"
    assert "Traceback" not in server.log()


# --- limits ------------------------------------------------------------------------------------------------


def test_query_length_limit(server):
    assert post(server, json={"query": "a" * 2000}).status_code == 200
    for query in ("a" * 2001, "ا" * 2001, "a" * 50_000):
        response = post(server, json={"query": query})
        assert response.status_code in ((422,) if len(query) < 10_000 else (413, 422)), response.text
        assert response.headers["content-type"].startswith("application/json")


def test_body_size_limit_is_64_kib_exactly(server):
    def padded(size: int) -> bytes:
        head, tail = b'{"query": "Allah"', b"}"
        return head + b" " * (size - len(head) - len(tail)) + tail  # JSON whitespace: a valid body of any size

    headers = {"X-API-Key": SECRET, "content-type": "application/json"}
    assert post(server, headers, content=padded(64 * 1024)).status_code == 200
    for body in (padded(64 * 1024 + 1), padded(1024 * 1024)):
        response = post(server, headers, content=body)
        assert response.status_code == 413 and response.json()["error"] == "body_too_large", response.text

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit counts what arrives
        yield b'{"query": "Allah"'
        for _ in range(65):
            yield b" " * 1024
        yield b"}"

    response = post(server, headers, content=chunked())
    assert response.status_code == 413 and response.headers["content-type"].startswith("application/json")


def test_k_must_be_between_1_and_50(server):
    for k in (1, 50):
        assert post(server, json={"query": "Allah", "k": k}).status_code == 200
    for k in (0, -1, 51, 10**6, 10**30, 2.5, "5x", False, None):
        response = post(server, json={"query": "Allah", "k": k})
        assert response.status_code == 422, (k, response.text)
        assert response.json()["error"] == "invalid_request"


# --- CLI paths are data, never shell ------------------------------------------------------------------------

HOSTILE_NAMES = [
    "$(touch pwned-1); x.jsonl",
    "; rm -rf victim; touch pwned-2; y.jsonl",
    "`touch pwned-3`.jsonl",
    "a | touch pwned-4 && z.jsonl",
    "q' \"; touch pwned-5 #.csv",
    "-h; touch pwned-6.xml",
]


def _run_ingest(cli_env: dict[str, str], cwd: Path, name: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        tafsir_cmd("ingest", "--source", name, "--edition", "id.shell", "--json"),
        cwd=cwd,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _assert_no_side_effects(cwd: Path) -> None:
    assert not list(cwd.glob("pwned*")), list(cwd.iterdir())
    assert (cwd / "victim" / "keep.txt").read_text() == "keep"


@pytest.fixture
def shell_dir(tmp_path) -> Path:
    work = tmp_path / "work"
    (work / "victim").mkdir(parents=True)
    (work / "victim" / "keep.txt").write_text("keep")
    return work


def test_cli_reads_files_with_shell_metacharacters_in_their_names(cli_env, shell_dir):
    """One ingest of a valid file per hostile name (a real subprocess; the model is tiny)."""
    contents = {
        ".jsonl": '{"surah": 112, "ayah": 1, "text": "Katakanlah: Dialah Allah, Yang Maha Esa."}\n',
        ".csv": "surah,ayah,text\n112,1,Katakanlah: Dialah Allah.\n",
        ".xml": '<quran><sura index="112"><aya index="1" text="Katakanlah: Dialah Allah."/></sura></quran>',
    }
    for name in HOSTILE_NAMES[:3]:  # each an ingest of its own; three keep the suite quick
        (shell_dir / name).write_text(contents[Path(name).suffix])
        result = _run_ingest(cli_env, shell_dir, name)
        assert result.returncode == 0, (name, result.stderr)
        assert json.loads(result.stdout)["edition"] == "id.shell"
        _assert_no_side_effects(shell_dir)


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_cli_reports_missing_files_with_shell_metacharacters_as_missing(cli_env, shell_dir, name):
    if name.startswith("-"):
        name = "./" + name  # an option-like name given as a path, as a careful user would
    result = _run_ingest(cli_env, shell_dir, name)
    assert result.returncode == 2, result.stderr
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
    _assert_no_side_effects(shell_dir)


# The one exec allowed: `tafsir serve` re-running itself, the same interpreter with its own argument vector
# (a list, no shell), to switch allocators (interfaces/cli/serve.py, `_use_the_system_allocator`).
REVIEWED_EXEC = 'os.execve(sys.executable, sys.orig_argv, {**os.environ, "PYTHONMALLOC": "malloc"})'


def test_production_code_never_runs_a_shell():
    pattern = re.compile(r"shell\s*=\s*True|os\.system\(|os\.popen\(|\bcommands\.|pty\.spawn|os\.exec[lv]p?e?\(")
    found = [
        (f"{path.relative_to(ROOT)}", line.strip())
        for folder in ("services", "ingest", "retriever", "training", "interfaces", "bench")
        if (ROOT / folder).is_dir()
        for path in sorted((ROOT / folder).rglob("*.py"))
        for line in path.read_text().splitlines()
        if pattern.search(line)
    ]
    assert [hit for hit in found if hit != ("interfaces/cli/serve.py", REVIEWED_EXEC)] == []
    assert found.count(("interfaces/cli/serve.py", REVIEWED_EXEC)) == 1


# --- the server backend: its API key and HTTPS ---------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch) -> list:
    """Fail any attempt to resolve or connect, and record it: building a client must send nothing."""
    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network use in a test that must send nothing")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


def _assert_https_with_key(store: ServerStore, url: str, key: str) -> None:
    remote = store.client._client  # qdrant_client.qdrant_remote.QdrantRemote
    assert remote._https is True and remote._scheme == "https"
    assert remote.rest_uri == url and remote.rest_uri.startswith("https://")
    assert remote._rest_headers["api-key"] == key
    http = remote.openapi_client.client  # the generated ApiClient and its httpx.Client
    assert http.host.startswith("https://")
    assert http._client.headers["api-key"] == key
    assert store.location == url


def test_server_store_connect_uses_https_and_the_api_key_without_sending_anything(no_network):
    url = "https://qdrant.example:6333"
    store = ServerStore.connect(url, "secret", 5)
    try:
        _assert_https_with_key(store, url, "secret")
        assert store.client._client._timeout == 5
    finally:
        store.close()
    assert no_network == []


def test_settings_pass_tafsir_qdrant_api_key_to_the_server_store(monkeypatch, no_network):
    for name in ("TAFSIR_QDRANT_PATH", "TAFSIR_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TAFSIR_QDRANT_URL", "https://qdrant.example:6333")
    monkeypatch.setenv("TAFSIR_QDRANT_API_KEY", "s3cret-from-env")
    store = open_store(Settings(_env_file=None))
    try:
        assert isinstance(store, ServerStore)
        _assert_https_with_key(store, "https://qdrant.example:6333", "s3cret-from-env")
    finally:
        store.close()
    assert no_network == []
