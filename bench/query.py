"""Warm in-process query latency over the ingested collection: p50/p95 per mode, k=10.

Uses the store at TAFSIR_QDRANT_PATH (run `tafsir ingest` first) and the dev questions as queries
(each run several times). Prints one JSON object; splits the time into query embedding and search.
``--versus weight_dense_tr=0`` (settings fields) also times the hybrid search under those settings, each query
under both in turn, and reports the ratio of the medians: a cost measured in one run, the same load on both.

Usage: python bench/query.py [--queries FILE] [--rounds N] [--versus FIELD=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_QUERIES = ROOT / "services" / "evaluation_questions.jsonl"  # the 40 natural questions shipped with the project


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=Path, default=DEFAULT_QUERIES)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--versus", nargs="*", default=[], help="settings of a second hybrid timing: field=value")
    args = parser.parse_args()

    from retriever.search import SearchEngine, SearchOptions
    from services.evaluation import load_queries
    from services.settings import Settings
    from services.store.base import Mode

    queries = [q.query for q in load_queries(args.queries)]
    engine = SearchEngine(Settings())
    engine.embedder.warm_up()
    report: dict = {"queries": len(queries), "rounds": args.rounds, "backend": engine.embedder.describe_backend()}
    for mode in (Mode.SPARSE, Mode.DENSE, Mode.HYBRID):
        options = SearchOptions(k=10, mode=mode)
        for q in queries[:5]:  # warm-up
            engine.search(q, options)
        total, embed, store = [], [], []
        for _ in range(args.rounds):
            for q in queries:
                t0 = time.perf_counter()
                request = engine.request(q, options)
                t1 = time.perf_counter()
                engine.store.search(engine.settings.collection, request)
                t2 = time.perf_counter()
                engine.search(q, options)  # the full path, timed on its own
                t3 = time.perf_counter()
                embed.append((t1 - t0) * 1000)
                store.append((t2 - t1) * 1000)
                total.append((t3 - t2) * 1000)
        report[mode.value] = {
            "p50_ms": round(statistics.median(total), 2),
            "p95_ms": round(percentile(total, 0.95), 2),
            "embed_p50_ms": round(statistics.median(embed), 2),
            "search_p50_ms": round(statistics.median(store), 2),
        }
    if args.versus:
        update = dict(item.split("=", 1) for item in args.versus)
        other = SearchEngine(
            Settings(**{**engine.settings.model_dump(), **update}), store=engine.store, embedder=engine.embedder
        )
        options = SearchOptions(k=10, mode=Mode.HYBRID)
        timings: dict[str, list[float]] = {"defaults": [], "versus": []}
        for _ in range(args.rounds):
            for q in queries:
                for name, searcher in (("defaults", engine), ("versus", other)):
                    t0 = time.perf_counter()
                    searcher.search(q, options)
                    timings[name].append((time.perf_counter() - t0) * 1000)
        medians = {name: statistics.median(values) for name, values in timings.items()}
        report["hybrid_versus"] = {
            "settings": update,
            "defaults_p50_ms": round(medians["defaults"], 2),
            "versus_p50_ms": round(medians["versus"], 2),
            "defaults_over_versus": round(medians["defaults"] / medians["versus"], 3),
        }
    engine.store.close()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
