"""What answering costs over retrieval alone, over HTTP on loopback, one request at a time.

Starts the scripted OpenAI-compatible endpoint of tests/llm_server.py (zero latency: it replies at once with a
fixed answer of ~60 words citing [1] and [2]) and `tafsir serve` with it as the language model and no
not-found threshold (TAFSIR_ANSWER_MIN_SIMILARITY=-1, so every question reaches the model). For each query, in
turn: ``POST /v1/retrieve`` (k 5), ``POST /v1/answer`` (k 5), and ``POST /v1/answer`` with ``stream: true``,
timed to the first delta event (time to first streamed byte of the answer) and to the final event. Then the
same answer without a language model (extractive). Everything the model does not cost (follow-up check,
retrieval with the similarity probe, prompt, the model's HTTP round trip, the citation check as it streams,
the response) is the overhead.

Point TAFSIR_QDRANT_PATH at a copy of a complete store (the embedded store admits one process). Prints one
JSON object with p50/p95 in milliseconds and the load average.

Usage: python bench/answer.py [--rounds 3] [--queries FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEV_QUESTIONS = ROOT / "services" / "evaluation_questions.jsonl"  # the 40 natural questions shipped with the project
REPLY = (
    "Menurut tafsir, Allah Maha Esa dan tempat bergantung segala sesuatu [1]. Dia tidak beranak dan tidak pula "
    "diperanakkan [2], dan tidak ada sesuatu pun yang setara dengan Dia. Karena itu manusia diperintahkan untuk "
    "menyembah-Nya saja dan memohon pertolongan hanya kepada-Nya [1], sebagaimana dijelaskan dalam kutipan yang "
    "diberikan [2]."
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 2)


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 0.5), "p95": percentile(values, 0.95), "n": len(values)}


def start_server(env: dict[str, str], log: Path):
    from tests.llm_server import free_port

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "interfaces.cli", "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"tafsir serve exited: {log.read_text()}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    process.kill()
    raise SystemExit(f"tafsir serve was not ready within 300 s: {log.read_text()}")


def stop(process) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def streamed(client: httpx.Client, question: str) -> tuple[float, float]:
    """(ms to the first delta event, ms to the final event)."""
    started = time.perf_counter()
    first = None
    with client.stream("POST", "/v1/answer", json={"question": question, "k": 5, "stream": True}) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if first is None and line.startswith("event: delta"):
                first = time.perf_counter()
            if line.startswith("event: done"):
                break
            if line.startswith("event: error"):
                raise SystemExit(f"the answer failed: {line}")
    done = time.perf_counter()
    return (first - started) * 1000, (done - started) * 1000


def measure(url: str, questions: list[str], rounds: int, stream: bool) -> dict:
    retrieve, answer, overhead, first_byte, stream_total = [], [], [], [], []
    with httpx.Client(base_url=url, timeout=120) as client:
        for question in questions[:3]:  # warm-up
            client.post("/v1/answer", json={"question": question, "k": 5}).raise_for_status()
        for _ in range(rounds):
            for question in questions:
                t0 = time.perf_counter()
                client.post("/v1/retrieve", json={"query": question, "k": 5}).raise_for_status()
                t1 = time.perf_counter()
                response = client.post("/v1/answer", json={"question": question, "k": 5})
                t2 = time.perf_counter()
                response.raise_for_status()
                retrieve.append((t1 - t0) * 1000)
                answer.append((t2 - t1) * 1000)
                overhead.append((t2 - t1 - (t1 - t0)) * 1000)
                if stream:
                    first, total = streamed(client, question)
                    first_byte.append(first)
                    stream_total.append(total)
    report = {
        "retrieve_ms": summary(retrieve),
        "answer_ms": summary(answer),
        "overhead_ms": summary(overhead),
        "overhead_of_medians_ms": round(statistics.median(answer) - statistics.median(retrieve), 2),
    }
    if stream:
        report["stream_first_delta_ms"] = summary(first_byte)
        report["stream_done_ms"] = summary(stream_total)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=Path, default=DEV_QUESTIONS)
    args = parser.parse_args()
    questions = [json.loads(line)["query"] for line in args.queries.read_text(encoding="utf-8").splitlines() if line]

    from tests.llm_server import LlmServer

    logs = Path(os.environ.get("TMPDIR", "/tmp"))
    llm = LlmServer(logs / "bench-answer-llm.log").wait()
    base = {k: v for k, v in os.environ.items() if not k.startswith("TAFSIR_LLM_")}
    base.update(PYTHONPATH=str(ROOT), TAFSIR_ANSWER_MIN_SIMILARITY="-1")
    report: dict = {"queries": len(questions), "rounds": args.rounds, "load_before": os.getloadavg()}
    try:
        # Every request gets the same reply: the scripted server's default when nothing is queued.
        httpx.post(f"http://127.0.0.1:{llm.port}/_default", json={"content": REPLY}, timeout=10).raise_for_status()
        env = {**base, "TAFSIR_LLM_BASE_URL": llm.url, "TAFSIR_LLM_MODEL": "scripted", "TAFSIR_LLM_MAX_RETRIES": "0"}
        server, url = start_server(env, logs / "bench-answer-serve.log")
        try:
            report["generated"] = measure(url, questions, args.rounds, stream=True)
        finally:
            stop(server)
        server, url = start_server(base, logs / "bench-answer-serve.log")
        try:
            report["extractive"] = measure(url, questions, args.rounds, stream=False)
        finally:
            stop(server)
    finally:
        llm.stop()
    report["load_after"] = os.getloadavg()
    report["cpu"] = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        None,
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
