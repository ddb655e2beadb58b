"""Fusion grid: which RRF k, list weights and prefetch depth rank the dev questions best, for the model in use.

Each list (dense, bm25, bm25_ctx, bm25_tr) is searched once per query through the project's own engine, to
the deepest prefetch of the grid; every fusion of the grid is then computed from those lists with Qdrant's
weighted RRF (score = sum over lists of 1 / ((rank + 1) / weight + k - 1), rank from 0; ties by point id,
as services/store/base.py ranks them) and, for comparison, the plain client-side weighted RRF
(sum of weight / (k + rank + 1)). Metrics are the ones `tafsir eval` reports (services/evaluation.py).

It reads an existing collection (run `tafsir ingest` first) and prints one JSON object: the best
configurations by mean nDCG@10 over the given files, and per-query nDCG@10 of the best and the runner-up.
Confirm the winner with `tafsir eval` (TAFSIR_RRF_K, TAFSIR_WEIGHT_*, TAFSIR_PREFETCH_LIMIT): the two agree.

Usage: python bench/fusion.py --queries FILE [--queries FILE ...] [--top 10]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LISTS = ("dense", "bm25", "bm25_ctx", "bm25_tr")
GRID = {
    "rrf_k": [2, 5, 10, 20, 60],
    "prefetch_limit": [100],
    "dense": [0.5, 1.0, 1.5, 2.0, 3.0],
    "bm25": [0.0, 0.5, 1.0],
    "bm25_ctx": [0.0, 1.0, 2.0, 4.0],
    "bm25_tr": [0.0, 0.5, 1.0, 2.0],
}
K = 10


def ranked_lists(engine, queries, depth: int) -> list[dict[str, list[tuple[str, tuple[int, int]]]]]:
    """Per query, each list's top ``depth`` as (point id, (surah, ayah)), searched alone."""
    from retriever.search import SearchOptions
    from services.store.base import Mode

    only = {name: {n: (1.0 if n == name else 0.0) for n in LISTS} for name in LISTS}
    result = []
    for query in queries:
        lists = {}
        for name in LISTS:
            mode = Mode.DENSE if name == "dense" else Mode.SPARSE
            weights = {f"weight_{n}" if n != "dense" else "weight_dense": w for n, w in only[name].items()}
            engine.settings = engine.settings.model_copy(update={**weights, "prefetch_limit": depth})
            passages = engine.search(query.query, SearchOptions(k=depth, mode=mode))
            lists[name] = [(p.id, (p.surah, p.ayah)) for p in passages]
        result.append(lists)
    return result


def fuse(lists, config: dict, formula: str) -> list[tuple[int, int]]:
    from services.store.base import weighted_rrf

    k = config["rrf_k"]
    ranked = {name: lists[name][: config["prefetch_limit"]] for name in LISTS if config[name] > 0}
    where = {point: ayah for found in ranked.values() for point, ayah in found}
    if formula == "qdrant":
        scores = weighted_rrf((([p for p, _ in found], config[name]) for name, found in ranked.items()), k)
    else:
        scores = defaultdict(float)
        for name, found in ranked.items():
            for rank, (point, _) in enumerate(found):
                scores[point] += config[name] / (k + rank + 1)
    order = sorted(scores, key=lambda p: (-scores[p], p))[:K]
    return [where[p] for p in order]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=Path, action="append", required=True)
    parser.add_argument("--top", type=int, default=10, help="How many configurations to print.")
    parser.add_argument("--grid", type=json.loads, help='JSON object replacing grid entries, e.g. {"rrf_k": [2, 3]}.')
    parser.add_argument("--formula", choices=["qdrant", "client"], action="append", help="Default: both.")
    parser.add_argument(
        "--floor",
        action="append",
        default=[],
        metavar="FILE:METRIC:VALUE",
        help="Keep only configurations with at least VALUE of METRIC on FILE (e.g. a target that must hold).",
    )
    args = parser.parse_args()
    GRID.update(args.grid or {})

    from retriever.search import shared_engine
    from services.evaluation import evaluate, load_queries
    from services.settings import Settings

    settings = Settings()
    engine = shared_engine(settings)
    depth = max(GRID["prefetch_limit"])
    files = {str(path): load_queries(path) for path in args.queries}
    searched = {name: ranked_lists(engine, queries, depth) for name, queries in files.items()}
    print(f"searched {sum(len(q) for q in files.values())} queries", file=sys.stderr)

    configs = [dict(zip(GRID, values, strict=True)) for values in itertools.product(*GRID.values())]
    formulas = args.formula or ["qdrant", "client"]
    configs = [(f, c) for f in formulas for c in configs if any(c[n] > 0 for n in LISTS)]

    def score(formula: str, config: dict, names) -> dict:
        per_file = {}
        for name in names:
            rankings = [fuse(lists, config, formula) for lists in searched[name]]
            report = evaluate(files[name], rankings, k=K).as_dict()
            per_file[name] = {m: report[m] for m in ("ndcg@10", "hit@10", "recall@1", "mrr@10")}
        mean = statistics.fmean(r["ndcg@10"] for r in per_file.values())
        return {"formula": formula, **config, "mean_ndcg@10": round(mean, 4), "files": per_file}

    first = next(iter(files))
    floors = [(str(Path(f)), m, float(v)) for f, m, v in (floor.rsplit(":", 2) for floor in args.floor)]
    scored = [score(f, c, files) for f, c in configs]
    by_formula = {
        f: max((s for s in scored if s["formula"] == f), key=lambda s: s["files"][first]["ndcg@10"]) for f in formulas
    }
    # Ranked by the first file (the natural questions); the others are floors that must hold, not objectives.
    scored = sorted(
        (s for s in scored if all(s["files"][f][m] >= v for f, m, v in floors)),
        key=lambda s: -s["files"][first]["ndcg@10"],
    )
    best, runner_up = scored[0], scored[1]

    def per_query(entry):
        config = {n: entry[n] for n in GRID}
        out = {}
        for name, queries in files.items():
            for query, lists in zip(queries, searched[name], strict=True):
                ranking = fuse(lists, config, entry["formula"])
                out[query.qid] = round(evaluate([query], [ranking], k=K).as_dict()["ndcg@10"], 4)
        return out

    print(
        json.dumps(
            {
                "model": engine.embedder.identity,
                "grid": GRID,
                "configurations": len(configs),
                "top": scored[: args.top],
                "floors": args.floor,
                "best_per_formula_on_first_file_without_floors": by_formula,
                "per_query_ndcg@10": {"best": per_query(best), "runner_up": per_query(runner_up)},
            },
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    main()
