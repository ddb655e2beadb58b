"""Load benchmark of the HTTP API: N concurrent clients for S seconds against ``POST /v1/retrieve`` on loopback.

Prints one JSON object: requests/s, latency p50/p95/p99 as the clients saw it (and the server's own
``took_ms``), the error count (anything but 200, or a failed connection), and the server's RSS before and
after. By default it starts `tafsir serve` itself on a free loopback port with the current environment
(``TAFSIR_*``: point ``TAFSIR_QDRANT_PATH`` at a copy of a complete store, since the embedded store
admits one process), waits for /readyz, and stops it afterwards; ``--url`` measures a running server
instead (``--pid`` adds its RSS). The clients run on the same machine and share its cores.

Usage: python bench/load.py [--clients 8] [--seconds 30] [--k 5] [--mode hybrid] [--queries FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
DEV_QUESTIONS = ROOT / "services" / "evaluation_questions.jsonl"  # the 40 natural questions shipped with the project
FALLBACK_QUERIES = [
    "Siapa Thalut dan bagaimana pasukannya mengalahkan Jalut?",
    "Apa hukum riba dalam jual beli?",
    "Kisah Nabi Musa dan Firaun",
    "Bagaimana cara berwudu sebelum salat?",
    "Allah Yang Maha Esa tempat meminta segala sesuatu",
    "Balasan bagi orang yang bersabar",
    "Hari kiamat dan tanda-tandanya",
    "Kewajiban berpuasa di bulan Ramadan",
]


def load_queries(path: Path | None) -> list[str]:
    path = path or (DEV_QUESTIONS if DEV_QUESTIONS.is_file() else None)
    if path is None:
        return FALLBACK_QUERIES
    return [json.loads(line)["query"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def status_mb(pid: int | None) -> dict[str, float]:
    """The memory fields of ``/proc/<pid>/status`` in MB (VmRSS, VmHWM, RssAnon, RssFile, ...); empty if the
    process is gone."""
    if pid is None:
        return {}
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    parts = (line.split() for line in lines)
    return {p[0].rstrip(":"): round(int(p[1]) / 1024, 1) for p in parts if len(p) == 3 and p[2] == "kB"}


def rss_mb(pid: int | None) -> float | None:
    return status_mb(pid).get("VmRSS")


def rss_split_mb(pid: int | None) -> dict[str, float] | None:
    """RSS by kind: anonymous (heap: what a leak grows) and file-backed (mapped store and model files,
    pages the kernel may reclaim)."""
    status = status_mb(pid)
    fields = {"RssAnon": "anon_mb", "RssFile": "file_mb", "RssShmem": "shmem_mb"}
    return {name: status[field] for field, name in fields.items() if field in status} if status else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(log_path: Path, extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """`tafsir serve` on a free loopback port, logging to ``log_path``; ``extra_env`` adds settings."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    env.update(extra_env or {})
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "interfaces.cli", "serve", "--port", str(port), "--log-level", "warning"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    return process, f"http://127.0.0.1:{port}"


def stop_server(process: subprocess.Popen) -> None:
    """SIGTERM (a graceful shutdown), then SIGKILL if it has not exited within 30 s."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def wait_ready(url: str, process: subprocess.Popen | None, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"the server exited with code {process.returncode}")
        try:
            response = httpx.get(url + "/readyz", timeout=5)
            if response.status_code == 200:
                return response.json()
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url}/readyz did not answer 200 within {timeout} s")


async def run_load(url: str, headers: dict[str, str], queries: list[str], args: argparse.Namespace) -> dict:
    latencies: list[float] = []
    took: list[float] = []
    errors: dict[str, int] = {}
    next_query = itertools.cycle(queries)
    deadline = time.perf_counter() + args.seconds

    async def client_loop(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            body = {"query": next(next_query), "k": args.k, "mode": args.mode}
            started = time.perf_counter()
            try:
                response = await client.post("/v1/retrieve", json=body)
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            latencies.append(time.perf_counter() - started)
            if response.status_code == 200:
                took.append(response.json()["took_ms"])
            else:
                errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1

    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(args.clients)))
        elapsed = time.perf_counter() - started

    def percentiles(values: list[float], scale: float) -> dict[str, float | None]:
        if len(values) < 2:
            return {"p50": None, "p95": None, "p99": None}
        cuts = statistics.quantiles(values, n=100, method="inclusive")
        return {"p50": round(cuts[49] * scale, 2), "p95": round(cuts[94] * scale, 2), "p99": round(cuts[98] * scale, 2)}

    client_ms = percentiles(latencies, 1000)
    server_ms = percentiles(took, 1)
    answered = len(took)
    return {
        "requests": len(latencies) + sum(v for k, v in errors.items() if not k.isdigit()),
        "answered_200": answered,
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "elapsed_s": round(elapsed, 2),
        "requests_per_s": round(answered / elapsed, 1),
        "p50_ms": client_ms["p50"],
        "p95_ms": client_ms["p95"],
        "p99_ms": client_ms["p99"],
        "server_search_p50_ms": server_ms["p50"],
        "server_search_p95_ms": server_ms["p95"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--mode", default="hybrid", choices=["hybrid", "dense", "sparse"])
    parser.add_argument("--queries", type=Path, help="JSONL with a `query` field (default: the dev questions)")
    parser.add_argument("--url", help="measure this running server instead of starting one")
    parser.add_argument("--pid", type=int, help="with --url: the server's pid, for its RSS")
    parser.add_argument("--api-key", default=os.environ.get("TAFSIR_API_KEY"), help="default: $TAFSIR_API_KEY")
    args = parser.parse_args()

    queries = load_queries(args.queries)
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    process = None
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"tafsir-load-{os.getpid()}.log"
    if args.url:
        url, pid = args.url.rstrip("/"), args.pid
    else:
        process, url = start_server(log_path)
        pid = process.pid
    try:
        ready = wait_ready(url, process)
        # Warm-up outside the measurement: first requests pay for lazy imports and allocations.
        for query in queries[:8]:
            httpx.post(url + "/v1/retrieve", json={"query": query, "k": args.k, "mode": args.mode}, headers=headers)
        rss_before = rss_mb(pid)
        result = asyncio.run(run_load(url, headers, queries, args))
        rss_after = rss_mb(pid)
    finally:
        if process is not None:
            stop_server(process)
    report = {
        "benchmark": "load",
        "clients": args.clients,
        "seconds": args.seconds,
        "k": args.k,
        "mode": args.mode,
        "queries": len(queries),
        "collection": ready.get("collection"),
        "points": ready.get("points"),
        "model": ready.get("model"),
        **result,
        "rss_before_mb": rss_before,
        "rss_after_mb": rss_after,
        "cpus": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    print(json.dumps(report, ensure_ascii=False))


if __name__ == "__main__":
    main()
