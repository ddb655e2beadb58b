"""Soak: concurrent queries against `tafsir serve` for 10 minutes while scheduled re-ingestions run.

Setup: a copy of the embedded store at TAFSIR_QDRANT_PATH (a complete ingest of the built-in corpus) and
a JSONL export of the built-in edition as the scheduled source. The server re-ingests it every
``--every`` minutes (in-process, the embedded store's only process); after the second run the
source changes one ayah (2:255 gains a marker word), so the third run re-embeds it. Clients query
/v1/retrieve throughout. Prints one JSON object: requests, errors, p50/p99 per minute, RSS of the
server at the start and the end, the runs seen in /metrics, and whether the marker query finds 2:255
after the last run.

The start is taken once the server is ready, has finished its start-up check of the scheduled source
(a dry run that reads, chunks and diffs it; counted in /metrics), has answered a few queries and has
served the same load as the soak for ``--warmup`` seconds (30): the footprint of a serving process that
hosts a schedule, in its steady state. ``rss_after_first_queries_mb`` is the RSS before that warm-up,
and the growth from it is reported too. ``bench/ingest_memory.py`` measures what the
check itself costs.

Usage: python bench/soak.py [--minutes 10] [--every 3] [--clients 4]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import load_queries, rss_mb, rss_split_mb, start_server, stop_server, wait_ready  # noqa: E402

MARKER = "soakpenandaunik"
CHANGED = (2, 255)


def export_source(path: Path, changed: bool) -> None:
    from ingest.builtin import read_builtin

    with path.open("w", encoding="utf-8") as f:
        for a in read_builtin().ayat:
            text = a.text + (f" Kata {MARKER}." if changed and (a.surah, a.ayah) == CHANGED else "")
            row = {"surah": a.surah, "ayah": a.ayah, "text": text, "translation": a.translation, "arabic": a.arabic}
            f.write(json.dumps({**row, "edition": a.edition}, ensure_ascii=False) + "\n")


def wait_for_check(url: str, timeout: float = 120) -> str:
    """The outcome of the server's start-up check of the scheduled source, once /metrics counts it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(
            r'^tafsir_ingest_checks_total\{outcome="(\w+)"\} 1\.0', httpx.get(url + "/metrics").text, re.M
        )
        if found:
            return found.group(1)
        time.sleep(0.5)
    raise SystemExit(f"the server's start-up check did not finish within {timeout} s")


def successful_runs(url: str) -> int:
    text = httpx.get(url + "/metrics", timeout=10).text
    return int(
        sum(float(m) for m in re.findall(r'^tafsir_ingest_runs_total\{[^}]*outcome="success"[^}]*\} (\S+)', text, re.M))
    )


async def clients(url: str, queries: list[str], n: int, seconds: float, samples: list) -> None:
    deadline = time.monotonic() + seconds
    cycle = itertools.cycle(queries)
    t0 = time.monotonic()

    async def loop(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                r = await client.post(url + "/v1/retrieve", json={"query": next(cycle), "k": 5}, timeout=60)
                ok = r.status_code == 200 and len(r.json()["documents"]) == 5
            except httpx.HTTPError:
                ok = False
            samples.append((started - t0, (time.monotonic() - started) * 1000, ok))

    async with httpx.AsyncClient() as client:
        await asyncio.gather(*(loop(client) for _ in range(n)))


async def watch_and_change(
    url: str, source: Path, seconds: float, runs_seen: list, pid: int, rss_samples: list
) -> None:
    """After the second successful scheduled run, change the source; record run counts as they come."""
    deadline = time.monotonic() + seconds
    changed = False
    while time.monotonic() < deadline:
        runs = await asyncio.to_thread(successful_runs, url)
        rss_samples.append((round(seconds - (deadline - time.monotonic())), rss_mb(pid)))
        if not runs_seen or runs != runs_seen[-1][1]:
            runs_seen.append((round(seconds - (deadline - time.monotonic())), runs))
        if runs >= 2 and not changed:
            await asyncio.to_thread(export_source, source, True)
            changed = True
        await asyncio.sleep(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--every", type=int, default=3, help="minutes between scheduled runs")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=30, help="seconds of the same load before the start figure")
    args = parser.parse_args()

    from services.settings import Settings

    origin = Settings().qdrant_path
    work = Path(tempfile.mkdtemp(prefix="tafsir-soak-"))
    store = work / "qdrant"
    shutil.copytree(origin, store, ignore=shutil.ignore_patterns(".lock"))
    source = work / "jalalayn.jsonl"
    export_source(source, changed=False)
    server_settings = {
        "TAFSIR_QDRANT_PATH": str(store),
        "TAFSIR_INGEST_SOURCE": str(source),
        "TAFSIR_INGEST_SCHEDULE": f"0 */{args.every} * * * *",
    }
    process, url = start_server(work / "server.log", server_settings)
    samples: list = []
    runs_seen: list = []
    rss_samples: list = []
    try:
        wait_ready(url, process)
        check = wait_for_check(url)
        queries = load_queries(None)
        for q in queries[:8]:
            httpx.post(url + "/v1/retrieve", json={"query": q, "k": 5}, timeout=60)
        rss_first_queries = rss_mb(process.pid)
        # The same load for --warmup seconds first: the server's worker threads, their stacks and
        # allocator arenas, and the query shapes are in place before the start figure.
        asyncio.run(clients(url, queries, args.clients, args.warmup, []))
        rss_start = rss_mb(process.pid)
        split_start = rss_split_mb(process.pid)
        seconds = args.minutes * 60

        async def soak() -> None:
            await asyncio.gather(
                clients(url, queries, args.clients, seconds, samples),
                watch_and_change(url, source, seconds, runs_seen, process.pid, rss_samples),
            )

        asyncio.run(soak())
        rss_end = rss_mb(process.pid)
        split_end = rss_split_mb(process.pid)
        # Let a run that started at the very end finish, then check the changed ayah is served.
        time.sleep(5)
        marker = httpx.post(url + "/v1/retrieve", json={"query": MARKER, "k": 1, "mode": "sparse"}, timeout=60).json()
        found = marker["documents"][0]["citation"] if marker["documents"] else None
    finally:
        stop_server(process)

    per_minute = []
    for minute in range(int(args.minutes)):
        window = [s for s in samples if minute * 60 <= s[0] < (minute + 1) * 60]
        latencies = sorted(s[1] for s in window)
        if latencies:
            per_minute.append(
                {
                    "minute": minute + 1,
                    "requests": len(window),
                    "errors": sum(1 for s in window if not s[2]),
                    "p50_ms": round(statistics.median(latencies), 1),
                    "p99_ms": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1),
                }
            )
    report = {
        "benchmark": "soak",
        "minutes": args.minutes,
        "clients": args.clients,
        "requests": len(samples),
        "errors": sum(1 for s in samples if not s[2]),
        "scheduled_runs_succeeded": runs_seen[-1][1] if runs_seen else 0,
        "runs_seen_at_s": runs_seen,
        "start_check_outcome": check,
        "warmup_s": args.warmup,
        "rss_after_first_queries_mb": rss_first_queries,
        "rss_growth_from_first_queries_pct": round(100 * (rss_end - rss_first_queries) / rss_first_queries, 2),
        "rss_start_mb": rss_start,
        "rss_end_mb": rss_end,
        "rss_growth_pct": round(100 * (rss_end - rss_start) / rss_start, 2) if rss_start and rss_end else None,
        "rss_split_start_mb": split_start,
        "rss_split_end_mb": split_end,
        "rss_mb_per_minute": [
            max((r for t, r in rss_samples if m * 60 <= t < (m + 1) * 60 and r), default=None)
            for m in range(int(args.minutes))
        ],
        "marker_query_top": found,
        "changed_source_served": found == "QS Al-Baqarah [2]: 255",
        "per_minute": per_minute,
    }
    print(json.dumps(report, ensure_ascii=False))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
