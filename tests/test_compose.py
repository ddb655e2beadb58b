"""docker-compose.yml and the Dockerfile, checked without a Docker engine (none runs in CI): the compose file
is validated by `docker-compose config` (Debian package `docker-compose`, installed by .ci/run), and the
settings it passes are checked against the real Settings."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version
from typing import ClassVar

import pytest
import yaml

from ingest.schedule import Schedule
from services.settings import Settings
from services.store.base import CollectionSpec
from tests.conftest import ROOT

COMPOSE = shutil.which("docker-compose")
needs_compose = pytest.mark.compose


def compose(*args: str) -> subprocess.CompletedProcess:
    if COMPOSE is None:
        pytest.fail("no docker-compose: install Debian's (`apt-get install docker-compose`, as `make test` does)")
    return subprocess.run(
        [COMPOSE, "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin"},  # no TAFSIR_* from the caller: the file's defaults
    )


@pytest.fixture(scope="module")
def services() -> dict:
    result = compose("--profile", "cluster", "config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


@needs_compose
@pytest.mark.parametrize("profile", [[], ["--profile", "cluster"]], ids=["default", "cluster"])
def test_docker_compose_config_accepts_the_file(profile):
    result = compose(*profile, "config", "-q")
    assert result.returncode == 0, result.stderr


@needs_compose
def test_qdrant_runs_the_pinned_clients_minor_version_with_a_volume_healthcheck_and_dashboard(services):
    qdrant = services["qdrant"]
    client_minor = ".".join(version("qdrant-client").split(".")[:2])
    image, tag = qdrant["image"].split(":")
    assert image == "qdrant/qdrant" and tag.startswith(f"v{client_minor}.")
    assert "/qdrant/storage" in _volume_targets(qdrant)
    assert "/readyz" in " ".join(qdrant["healthcheck"]["test"])
    assert ("127.0.0.1", 6333) in _published(qdrant)  # the REST API and its /dashboard, on loopback only


@needs_compose
def test_api_and_worker_start_when_qdrant_is_healthy(services):
    for name in ("api", "ingest"):
        assert services[name]["depends_on"] == {"qdrant": {"condition": "service_healthy"}}
        assert services[name]["environment"]["TAFSIR_QDRANT_URL"] == "http://qdrant:6333"
    assert services["api"]["command"] == ["tafsir", "serve"]
    command = services["ingest"]["command"]
    assert command[:3] == ["tafsir", "ingest", "--schedule"]
    Schedule.parse(command[3])  # the default schedule is a valid cron expression


@needs_compose
def test_the_cluster_profile_runs_three_qdrant_nodes_in_cluster_mode(services):
    nodes = {name: s for name, s in services.items() if name.startswith("qdrant-node")}
    assert len(nodes) == 3
    for name, node in nodes.items():
        assert node["profiles"] == ["cluster"] and node["environment"]["QDRANT__CLUSTER__ENABLED"] == "true"
        assert node["command"][-2:] == ["--uri", f"http://{name}:6335"]
    assert "--bootstrap" not in nodes["qdrant-node1"]["command"]
    for name in ("qdrant-node2", "qdrant-node3"):
        assert nodes[name]["command"][1:3] == ["--bootstrap", "http://qdrant-node1:6335"]
    layout = Settings(_env_file=None, **_settings_kwargs(services["api-cluster"]["environment"]))
    assert (layout.shard_number, layout.replication_factor, layout.write_consistency_factor) == (3, 2, 1)
    assert layout.qdrant_url == "http://qdrant-node1:6333"


@needs_compose
def test_every_tafsir_variable_in_the_compose_file_is_a_setting(services):
    fields = {f"TAFSIR_{name.upper()}" for name in Settings.model_fields}
    for name, service in services.items():
        variables = {key for key in service.get("environment", {}) if key.startswith("TAFSIR_")}
        assert variables <= fields, (name, variables - fields)
        Settings(_env_file=None, **_settings_kwargs(service.get("environment", {})))  # and each one parses


def _volume_targets(service: dict) -> set[str]:
    # docker-compose 1.x prints the short form "name:/target:rw", Compose v2 the long form.
    return {v["target"] if isinstance(v, dict) else v.split(":")[1] for v in service.get("volumes", [])}


def _published(service: dict) -> set[tuple[str, int]]:
    ports = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.add((port.get("host_ip", ""), int(port["target"])))
        else:  # "127.0.0.1:6333:6333/tcp"
            host_ip, _published_port, target = port.split("/")[0].rsplit(":", 2)
            ports.add((host_ip, int(target)))
    return ports


def _settings_kwargs(environment: dict) -> dict:
    return {k.removeprefix("TAFSIR_").lower(): v for k, v in environment.items() if k.startswith("TAFSIR_")}


def test_the_dockerfile_installs_the_makefiles_torch_from_the_cpu_index_then_the_pinned_project():
    dockerfile = (ROOT / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    makefile_torch = re.search(r"^TORCH \?= (\S+)", makefile, re.M).group(1)
    makefile_index = re.search(r"^TORCH_INDEX_URL \?= (\S+)", makefile, re.M).group(1)
    assert f"ARG TORCH_INDEX_URL={makefile_index}\n" in dockerfile  # the same one setting, as a build argument
    torch_line = dockerfile.index(f"pip install {makefile_torch} --index-url ${{TORCH_INDEX_URL}}")
    assert torch_line < dockerfile.index("pip install -c constraints.txt .")
    assert 'CMD ["tafsir", "serve"]' in dockerfile


def test_the_dockerfile_copies_every_package_the_project_installs():
    """`pip install .` in the image installs only what was copied: a package left out imports nowhere."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    assert {p for p in packages if (ROOT / p / "__init__.py").is_file()} == set(packages)
    copied = set(re.findall(r"^COPY (\S+) \./\1$", dockerfile, re.M))
    assert [p for p in packages if p not in copied] == []
    assert dockerfile.index("COPY interfaces") < dockerfile.index("pip install -c constraints.txt .")


# --- the cluster layout settings reach Qdrant ---------------------------------------------------------------


class _RecordingQdrant(BaseHTTPRequestHandler):
    """Answers the three REST calls of `create_collection` like a Qdrant server, and records their bodies."""

    requests: ClassVar[list[tuple[str, str, dict]]] = []

    def _answer(self, result) -> None:
        body = json.dumps({"result": result, "status": "ok", "time": 0.0}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.requests.append(("GET", self.path, {}))
        self._answer({"exists": False})

    def do_PUT(self) -> None:
        length = int(self.headers.get("content-length", 0))
        self.requests.append(("PUT", self.path, json.loads(self.rfile.read(length) or b"{}")))
        self._answer(True if self.path.rstrip("/").count("/") == 2 else {"operation_id": 0, "status": "completed"})

    def log_message(self, *args) -> None:
        pass


def test_shard_number_replication_and_write_consistency_reach_the_create_collection_request():
    from services.store import open_store

    server = ThreadingHTTPServer(("127.0.0.1", 0), _RecordingQdrant)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = Settings(
            _env_file=None,
            qdrant_url=f"http://127.0.0.1:{server.server_address[1]}",
            shard_number=3,
            replication_factor=2,
            write_consistency_factor=2,
        )
        store = open_store(settings)
        store.create_collection("tafsir-x", CollectionSpec(dense_size=8, model="m", fingerprint="f"))
        store.close()
    finally:
        server.shutdown()
        server.server_close()
    (create,) = [
        body
        for method, path, body in _RecordingQdrant.requests
        if method == "PUT" and path.split("?")[0] == "/collections/tafsir-x"
    ]
    assert (create["shard_number"], create["replication_factor"], create["write_consistency_factor"]) == (3, 2, 2)


def mount(volume: str | dict) -> tuple[str, str]:
    """(source, target) of a volume as `config` prints it: short syntax (v1) or long (v2)."""
    if isinstance(volume, dict):
        return volume["source"], volume["target"]
    source, target = volume.split(":")[:2]
    return source, target


@needs_compose
def test_every_tafsir_container_shares_one_named_volume_at_the_images_model_cache(services):
    """The model is exported once (minutes) into TAFSIR_MODEL_CACHE: a named volume there, shared by the api and
    the worker, keeps each container from exporting it again."""
    cache = re.search(r"TAFSIR_MODEL_CACHE=(\S+)", (ROOT / "Dockerfile").read_text()).group(1)
    for name in ("api", "ingest", "api-cluster", "ingest-cluster"):
        mounts = {mount(m) for m in services[name].get("volumes", [])}
        assert ("model-cache", cache) in mounts, f"{name}: no model-cache volume at {cache}: {mounts}"


def test_every_file_the_dockerfile_copies_exists():
    dockerfile = (ROOT / "Dockerfile").read_text()
    sources = [s for line in re.findall(r"^COPY (.+) \S+$", dockerfile, re.M) for s in line.split()]
    assert sources and [s for s in sources if not (ROOT / s).exists()] == []


def test_compose_commands_in_readme_and_comments_use_docker_compose_v2():
    """`docker compose` (the v2 plugin); `docker-compose` only as the file's name or Debian's package."""
    for path in (ROOT / "README.md", *(ROOT / "docs").glob("*.md"), ROOT / "docker-compose.yml", ROOT / "Dockerfile"):
        v1 = [
            line
            for line in path.read_text().splitlines()
            if re.search(r"docker-compose (up|run|logs|--|config|down|exec|ps)", line)
        ]
        assert v1 == [], f"{path.name}: {v1}"
