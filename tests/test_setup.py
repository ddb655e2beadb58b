"""`make setup`'s torch step, run for real with make against a loopback index and a pip that records its arguments.

Installing torch itself takes minutes and gigabytes; which build pip is asked for, and from where, is what the
step decides, so a stand-in `pip` records the command and the real Makefile and probe do the rest.
"""

from __future__ import annotations

import http.server
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

TORCH = re.search(r"^TORCH \?= (\S+)$", (ROOT / "Makefile").read_text(), re.M).group(1)


@pytest.fixture
def venv(tmp_path) -> Path:
    """A venv's bin folder with the real python (for the probe) and a pip that logs its arguments."""
    folder = tmp_path / "venv"
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "python").symlink_to(sys.executable)
    pip = folder / "bin" / "pip"
    pip.write_text('#!/bin/sh\necho "$@" >> "$(dirname "$0")/pip.log"\nexit "${FAKE_PIP_EXIT:-0}"\n')
    pip.chmod(0o755)
    return folder


@pytest.fixture
def torch_index() -> Iterator[str]:
    """A loopback package index that has a torch project page (PEP 503), as PyTorch's wheel indexes do."""

    class Index(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == "/whl/cpu/torch/"
            self.send_response(200 if found else 404)
            self.end_headers()
            self.wfile.write(b"<html><body><a href='torch-x.whl'>torch-x.whl</a></body></html>" if found else b"")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/whl/cpu"
    finally:
        server.shutdown()
        server.server_close()


def unreachable_index() -> str:
    with socket.socket() as sock:  # a port nothing listens on: the connection is refused
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/whl/cpu"


def make_torch(venv: Path, index_url: str, **env: str) -> tuple[subprocess.CompletedProcess, float, list[str]]:
    started = time.monotonic()
    result = subprocess.run(
        ["make", "--no-print-directory", "torch", f"VENV={venv}", f"TORCH_INDEX_URL={index_url}"],
        cwd=ROOT,
        # a clean make: not the settings of a `make test` this suite may run under
        env={**{k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    log = venv / "bin" / "pip.log"
    return result, time.monotonic() - started, log.read_text().splitlines() if log.exists() else []


def test_torch_comes_from_the_index_the_setting_names_and_only_torch(venv, torch_index):
    result, _, pip = make_torch(venv, torch_index)
    assert result.returncode == 0, result.stderr
    assert pip == [f"install -q --no-deps --index-url {torch_index} {TORCH}"]  # its dependencies: with the project


def test_an_unreachable_index_falls_back_to_a_local_wheel_at_once(venv):
    index = unreachable_index()
    result, seconds, pip = make_torch(venv, index)
    assert result.returncode == 0, result.stderr
    assert pip == [f"install -q --no-deps --no-index {TORCH}"]  # pip's find-links only: no index to wait for
    assert f"{index} cannot be reached" in result.stdout
    assert seconds < 15  # one probe; pip itself retries an unreachable index for minutes


def test_with_neither_the_index_nor_a_local_wheel_setup_stops_and_names_the_setting(venv):
    result, _, pip = make_torch(venv, unreachable_index(), FAKE_PIP_EXIT="1")
    assert result.returncode != 0 and len(pip) == 1
    assert "set TORCH_INDEX_URL to a torch index" in result.stderr


def test_the_default_build_is_pytorchs_cpu_wheels():
    default = re.search(r"^TORCH_INDEX_URL \?= (\S+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert default == "https://download.pytorch.org/whl/cpu"
