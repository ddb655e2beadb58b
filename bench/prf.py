"""Dense pseudo-relevance feedback (Rocchio) as one more lever of the question set's study, measured against
today's defaults on the same store.

The query's dense vector moves toward the chunks the default hybrid ranking puts first: q' = q + beta * mean of
the chunk vectors of its top ``m`` passages (unit length again); the chunk vectors are then searched with q' and
the result fused as one more RRF list (weight ``w``). No text is embedded again; the cost is one more dense search.
Broad and paraphrased questions are its target: their first passages share vocabulary the question lacks.

Today's ranking is rebuilt from the store's own lists, as bench/levers.py does (``Study``: each list searched
alone through the project's engine, then ``weighted_rrf``), so the baseline equals `tafsir eval`; the
feedback list is an exact numpy search of the stored chunk vectors. The setting (m, beta, w) is chosen on the
development part (best nDCG@10 among those keeping the translation floor), then reported on the held-back part
with bench/compare.py's paired bootstrap against the baseline. Prints one JSON object.

Usage: TAFSIR_QDRANT_PATH=<a copy of a store> python bench/prf.py [--choose dev] [--report held builtin]
       [--floor FILE]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.levers import DEPTH, Study, metrics, read_corpus, rrf, top  # noqa: E402

GRID = {"m": (3, 5, 10), "beta": (0.5, 1.0, 2.0), "w": (0.5, 1.0, 2.0, 4.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--choose", default="dev", help="the set the setting is chosen on")
    parser.add_argument("--report", nargs="+", default=["held", "builtin"], help="sets reported (held-back first)")
    parser.add_argument("--floor", type=Path, help="translation queries whose Recall@1 must stay at 0.96 or more")
    parser.add_argument("--seed", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=10_000)
    args = parser.parse_args()

    from bench.compare import compare
    from retriever.search import SearchEngine
    from services.evaluation import NAMED_QUERIES, load_queries
    from services.settings import Settings

    engine = SearchEngine(Settings())
    store = engine.store
    corpus = read_corpus(store, store.resolve_alias(engine.settings.collection))
    study = Study(engine, corpus)

    sets = {name: load_queries(NAMED_QUERIES.get(name, name)) for name in dict.fromkeys([args.choose, *args.report])}
    if args.floor:
        sets["floor"] = load_queries(args.floor)
    runs = {name: [study.lists(q.query) for q in queries] for name, queries in sets.items()}
    started = time.perf_counter()
    baseline_ranked = {name: [rrf(lists, k) for lists, k, _ in rows] for name, rows in runs.items()}

    def rank_all(name: str, m: int = 0, beta: float = 0.0, w: float = 0.0) -> list:
        rankings = []
        for (lists, k, dense), first in zip(runs[name], baseline_ranked[name], strict=True):
            if w == 0:
                rankings.append(study.ayat(first))
                continue
            feedback = corpus.chunks[[study.position[i] for i in first[:m]]].mean(axis=0)
            moved = dense / np.linalg.norm(dense) + beta * feedback
            moved /= np.linalg.norm(moved)
            extra = [*lists, ([corpus.ids[i] for i in top(corpus.chunks @ moved, DEPTH)], w)]
            rankings.append(study.ayat(rrf(extra, k)))
        return rankings

    baseline = {name: metrics(sets[name], rank_all(name)) for name in sets}
    result: dict = {"store": str(engine.settings.qdrant_path), "baseline": {n: s for n, (s, _) in baseline.items()}}
    grid = {}
    for m, beta, w in itertools.product(GRID["m"], GRID["beta"], GRID["w"]):
        on_choose = metrics(sets[args.choose], rank_all(args.choose, m, beta, w))[0]
        floor = metrics(sets["floor"], rank_all("floor", m, beta, w))[0]["recall@1"] if args.floor else None
        grid[f"m={m} beta={beta} w={w}"] = {"ndcg@10": on_choose["ndcg@10"], "floor_recall@1": floor}
    allowed = {key: v for key, v in grid.items() if v["floor_recall@1"] is None or v["floor_recall@1"] >= 0.96}
    chosen = max(allowed, key=lambda key: allowed[key]["ndcg@10"]) if allowed else None
    result["grid_on_" + args.choose] = grid
    result["chosen"] = chosen
    result["baseline_" + args.choose + "_ndcg@10"] = baseline[args.choose][0]["ndcg@10"]
    # Reported on held either way; adopted only if it beats today's on the choosing set first.
    result["chosen_beats_baseline_on_" + args.choose] = bool(
        chosen and grid[chosen]["ndcg@10"] > baseline[args.choose][0]["ndcg@10"]
    )
    if chosen:
        m, beta, w = (float(part.split("=")[1]) for part in chosen.split())
        for name in sets:
            summary, per_query = metrics(sets[name], rank_all(name, int(m), beta, w))
            entry = result.setdefault("figures", {}).setdefault(name, summary)
            if name in args.report:
                entry["vs_baseline"] = compare(baseline[name][1], per_query, args.rounds, args.seed)["metrics"]
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
