"""Retrieval quality per embedding backend: each one ingests the built-in corpus into its own temporary
embedded store with the real pipeline and answers the labelled query files through the real search
engine (dense and hybrid, k=10), as `tafsir eval` would after an ingest. Prints one JSON object with the
metrics of each backend and their differences from torch fp32 (the reference).

Usage: python bench/quality.py [--backends torch onnx onnx-int8 openvino openvino-int8] [--queries FILE ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# the natural questions shipped with the project; any labelled query file can be given instead
QUESTIONS = ROOT / "services"
DEFAULT_QUERIES = [QUESTIONS / "evaluation_questions.jsonl", QUESTIONS / "question_set" / "dev.jsonl"]
DEFAULT_BACKENDS = ["torch", "onnx", "onnx-int8", "openvino", "openvino-int8"]
METRICS = ("ndcg@10", "recall@10", "recall@1", "hit@10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=DEFAULT_BACKENDS)
    parser.add_argument("--queries", nargs="+", type=Path, default=DEFAULT_QUERIES)
    args = parser.parse_args()

    from ingest.builtin import read_builtin
    from services.evaluation import load_queries
    from services.settings import Settings
    from training.evaluation import EvalSet, evaluate_model

    source = read_builtin()
    eval_sets = [EvalSet(path.name, load_queries(path)) for path in args.queries]
    results: dict = {}
    for name in args.backends:
        backend, _, quantization = name.partition("-")
        settings = Settings(embedding_backend=backend, embedding_quantization=quantization or "none")
        started = time.perf_counter()
        measured = evaluate_model(settings, settings.embedding_model, source, eval_sets)
        results[name] = {
            "seconds": round(time.perf_counter() - started, 1),
            **{
                file: {mode: {m: report[m] for m in METRICS} for mode, report in by_mode.items()}
                for file, by_mode in measured.items()
            },
        }
    reference = results.get("torch")
    if reference is not None:
        files = [file for file, value in reference.items() if isinstance(value, dict)]
        for result in results.values():
            result["change_vs_torch"] = {
                file: {
                    mode: {m: round(result[file][mode][m] - reference[file][mode][m], 4) for m in METRICS}
                    for mode in reference[file]
                }
                for file in files
            }
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
