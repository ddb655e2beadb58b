"""Sparse layouts compared with `tafsir eval`: which texts feed the three BM25 vectors (services/sparse.py,
SPARSE_LAYOUTS), measured in sparse and hybrid mode on the labelled query files.

For each layout, in one store that already holds the built-in corpus (TAFSIR_QDRANT_PATH): `tafsir ingest`
with TAFSIR_SPARSE_LAYOUT set (a layout change rewrites the sparse vectors only: nothing is embedded), then
`tafsir eval --json` on every file in every mode, each a new process of the real CLI. The store is left with
the default layout (re-ingested last). TAFSIR_WEIGHT_*, TAFSIR_RRF_K and the other settings pass through, so a
fusion can be compared across layouts. Prints one JSON object.

Usage: TAFSIR_QDRANT_PATH=<store> python bench/layouts.py [--layouts NAME ...] [--queries FILE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# the natural questions shipped with the project; any labelled query file can be given instead
QUESTIONS = ROOT / "services"
DEFAULT_QUERIES = [QUESTIONS / "evaluation_questions.jsonl", QUESTIONS / "question_set" / "dev.jsonl"]
MODES = ("sparse", "hybrid")
METRICS = ("ndcg@10", "hit@10", "recall@1", "mrr@10")


def tafsir(*args: str, layout: str) -> dict:
    env = {**os.environ, "TAFSIR_SPARSE_LAYOUT": layout, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "interfaces.cli", *args, "--json"], env=env, capture_output=True, text=True, cwd=ROOT
    )
    if result.returncode != 0:
        raise SystemExit(f"tafsir {' '.join(args)} (layout {layout}) failed:\n{result.stderr}")
    return json.loads(result.stdout)


def main() -> None:
    from services.settings import Settings
    from services.sparse import DEFAULT_SPARSE_LAYOUT, SPARSE_LAYOUTS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", nargs="+", default=list(SPARSE_LAYOUTS), choices=list(SPARSE_LAYOUTS))
    parser.add_argument("--queries", nargs="+", type=Path, default=DEFAULT_QUERIES)
    args = parser.parse_args()
    settings = Settings()

    results: dict = {}
    for layout in args.layouts:
        started = time.perf_counter()
        summary = tafsir("ingest", layout=layout)
        entry = {
            "ingest": {
                "seconds": round(time.perf_counter() - started, 1),
                "embedded": summary["embedded"],
                "resparsed": summary["resparsed"],
            }
        }
        for path in args.queries:
            for mode in MODES:
                report = tafsir("eval", "--queries", str(path), "--mode", mode, layout=layout)
                entry.setdefault(path.name, {})[mode] = {m: report[m] for m in METRICS}
        results[layout] = entry
        print(f"{layout}: {json.dumps(entry)}", file=sys.stderr, flush=True)
    if args.layouts[-1] != DEFAULT_SPARSE_LAYOUT:
        tafsir("ingest", layout=DEFAULT_SPARSE_LAYOUT)
    fusion = {key: value for key, value in settings.fusion_overrides().items() if value is not None}
    print(json.dumps({"store": str(settings.qdrant_path), "fusion_overrides": fusion, "layouts": results}))


if __name__ == "__main__":
    main()
