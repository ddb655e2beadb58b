"""Two retrieval configurations on the same labelled questions: each one's hit@1/3/5/10, MRR@10 and nDCG@10,
and the difference B - A with a paired bootstrap 95 % confidence interval (the questions resampled with
replacement, the same resample for both; fixed seed). Prints one JSON object.

A configuration is either the output of ``tafsir eval --json --per-query`` saved to a file (``--a-file``),
or environment settings to run ``tafsir eval`` with in a subprocess (``--a "TAFSIR_WEIGHT_DENSE=1 ..."``;
``""`` is today's defaults; TAFSIR_QDRANT_PATH and the rest come from this process's environment unless
given). A difference is called significant when its interval excludes zero.

Usage: python bench/compare.py --queries held --a "" --b "TAFSIR_WEIGHT_BM25=2"
       python bench/compare.py --a-file base.json --b-file lever.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
METRICS = ("hit@1", "hit@3", "hit@5", "hit@10", "mrr@10", "ndcg@10")


def per_query_metrics(report: dict) -> dict[str, dict[str, float]]:
    """qid -> the metrics of one question, from ``tafsir eval --json --per-query`` (k=10)."""
    if report.get("k") != 10 or "per_query" not in report:
        raise SystemExit("expected the output of `tafsir eval --json --per-query` with k=10")
    result = {}
    for row in report["per_query"]:
        rank = row["first_relevant_rank"]
        result[row["qid"]] = {
            **{f"hit@{n}": float(rank is not None and rank <= n) for n in (1, 3, 5, 10)},
            "mrr@10": 1 / rank if rank else 0.0,
            "ndcg@10": row["ndcg@10"],
        }
    return result


def run_eval(queries: str, settings: str) -> dict:
    env = {**os.environ, **dict(item.split("=", 1) for item in shlex.split(settings))}
    command = [sys.executable, "-m", "interfaces.cli", "eval", "--queries", queries, "--json", "--per-query"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"tafsir eval failed with {settings!r}:\n{result.stderr}")
    return json.loads(result.stdout)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def paired_bootstrap(a: list[float], b: list[float], rounds: int, seed: int) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of the mean of b - a over resampled questions."""
    rng = random.Random(seed)
    differences = [y - x for x, y in zip(a, b, strict=True)]
    n = len(differences)
    means = sorted(mean([differences[rng.randrange(n)] for _ in range(n)]) for _ in range(rounds))
    return means[int(0.025 * rounds)], means[min(rounds - 1, int(0.975 * rounds))]


def compare(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]], rounds: int, seed: int) -> dict:
    if set(a) != set(b):
        raise SystemExit("the two reports are not on the same questions")
    qids = sorted(a)
    result: dict = {"questions": len(qids), "rounds": rounds, "seed": seed, "metrics": {}}
    for metric in METRICS:
        xs = [a[q][metric] for q in qids]
        ys = [b[q][metric] for q in qids]
        low, high = paired_bootstrap(xs, ys, rounds, seed)
        result["metrics"][metric] = {
            "a": round(mean(xs), 4),
            "b": round(mean(ys), 4),
            "b-a": round(mean(ys) - mean(xs), 4),
            "ci95": [round(low, 4), round(high, 4)],
            "significant": low > 0 or high < 0,
        }
    result["b better"] = sum(b[q]["ndcg@10"] > a[q]["ndcg@10"] for q in qids)
    result["b worse"] = sum(b[q]["ndcg@10"] < a[q]["ndcg@10"] for q in qids)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", default="held", help="a query file or a shipped set: builtin, dev, held")
    for side in ("a", "b"):
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument(f"--{side}", help='environment settings for `tafsir eval` ("": the defaults)')
        group.add_argument(f"--{side}-file", type=Path, help="a saved `tafsir eval --json --per-query` output")
    parser.add_argument("--rounds", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=20261203)
    args = parser.parse_args()

    reports = {}
    for side in ("a", "b"):
        path = getattr(args, f"{side}_file")
        reports[side] = json.loads(path.read_text()) if path else run_eval(args.queries, getattr(args, side))
    result = compare(per_query_metrics(reports["a"]), per_query_metrics(reports["b"]), args.rounds, args.seed)
    result["a"] = str(args.a_file) if args.a_file else args.a
    result["b"] = str(args.b_file) if args.b_file else args.b
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
