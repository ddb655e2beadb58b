"""Cold start: from a new process to the first answer, and the memory of a serving process.

Against the store at TAFSIR_QDRANT_PATH (run `tafsir ingest` first), with the current TAFSIR_* settings:
  - ``cli_first_answer_s``: `tafsir search QUESTION --json` in a new process, start to exit (imports,
    settings, store open, model load from the cached export, query embedding, hybrid search, output);
  - ``serve_first_answer_s``: `tafsir serve` started, then ``POST /v1/retrieve`` retried until the first
    200, timed from the start of the process;
  - ``serve_rss_mb``: the server's RSS after 50 further queries (and its peak, VmHWM).
Medians over ``--repeat`` rounds. Prints one JSON object.

Usage: python bench/coldstart.py [--repeat 5] [--question TEXT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import load_queries, rss_mb, start_server, status_mb, stop_server  # noqa: E402

QUESTION = "Apa hukum meminum khamar?"


def cli_first_answer(question: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "interfaces.cli", "search", question, "--json"],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0 or not json.loads(result.stdout):
        raise SystemExit(f"tafsir search failed: {result.stderr[-2000:]}")
    return elapsed


def serve_first_answer(question: str, queries: list[str]) -> tuple[float, float | None, float | None]:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        process, url = start_server(Path(tmp) / "serve.log")
        try:
            while True:
                if process.poll() is not None:
                    raise SystemExit((Path(tmp) / "serve.log").read_text()[-2000:])
                try:
                    response = httpx.post(url + "/v1/retrieve", json={"query": question, "k": 5}, timeout=30)
                    if response.status_code == 200 and response.json()["documents"]:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.02)
            first = time.perf_counter() - started
            with httpx.Client(base_url=url, timeout=30) as client:
                for query in (queries * 2)[:50]:
                    client.post("/v1/retrieve", json={"query": query, "k": 10})
            rss, peak = rss_mb(process.pid), status_mb(process.pid).get("VmHWM")
        finally:
            stop_server(process)
    return first, rss, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--question", default=QUESTION)
    args = parser.parse_args()
    queries = load_queries(None)
    cli_first_answer(args.question)  # untimed: fills the OS page cache and any missing export
    cli = [cli_first_answer(args.question) for _ in range(args.repeat)]
    served = [serve_first_answer(args.question, queries) for _ in range(args.repeat)]
    report = {
        "benchmark": "coldstart",
        "repeat": args.repeat,
        "backend": os.environ.get("TAFSIR_EMBEDDING_BACKEND", "default"),
        "cli_first_answer_s": round(statistics.median(cli), 2),
        "cli_first_answer_max_s": round(max(cli), 2),
        "serve_first_answer_s": round(statistics.median(s[0] for s in served), 2),
        "serve_first_answer_max_s": round(max(s[0] for s in served), 2),
        "serve_rss_mb": statistics.median(s[1] for s in served),
        "serve_peak_rss_mb": max(s[2] for s in served),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
