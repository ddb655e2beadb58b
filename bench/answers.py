"""Answers a person can trust, in one run: every figure of the answering core's checks, as one JSON object.

- ``not_found``: the calibrated decision on the held-back part of its labelled set, off-topic and in-domain
  questions refused or answered per language, and the answer latency p50 with and without the decision and the
  language detection (``bench/answers_not_found.py``);
- ``natural``: the share of natural questions refused, on questions the decision was not fitted on (the built-in
  evaluation questions are in its labelled set; the question set's held-back part is not);
- ``fragments``: the quoted fragments of the extractive answers to those natural questions, checked and cut
  (``bench/answers_fragments.py``; cut must be 0);
- ``arabic``: hit@1 and hit@3 of spans of ayat, with and without diacritics, per mode (``bench/answers_arabic.py``);
- ``english``: hit@10 and nDCG@10 of the English questions per mode (``bench/answers_english.py``).

Point TAFSIR_QDRANT_PATH at a copy of a complete store (the embedded store admits one process) and
TAFSIR_MODEL_CACHE at the model cache; no language model is used (extractive answers).

Usage: python bench/answers.py [--rounds N] [--spans N] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

NATURAL = {
    "question set, held-back part": ROOT / "services" / "question_set" / "held.jsonl",
}


def natural_refused(answerer, questions: list[str]) -> dict:
    refused = [q for q in questions if answerer.answer(q).mode == "not_found"]
    return {"questions": len(questions), "refused": len(refused), "share": round(len(refused) / len(questions), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="rounds of the latency measurement (default 1)")
    parser.add_argument("--spans", type=int, default=120, help="Arabic spans (default 120)")
    parser.add_argument("--seed", type=int, default=23, help="the seed that draws the Arabic spans (default 23)")
    args = parser.parse_args()

    import answers_arabic
    import answers_english
    import answers_fragments
    import answers_not_found

    from ingest.builtin import read_builtin
    from retriever.answer import Answerer
    from retriever.search import shared_engine
    from services.evaluation import ENGLISH_QUERIES, load_queries
    from services.settings import Settings

    engine = shared_engine(Settings(llm_base_url=None))
    answerer = Answerer(engine, llm=None)
    natural = {
        name: [json.loads(line)["query"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        for name, path in NATURAL.items()
    }
    questions = [q for group in natural.values() for q in group]
    report = {
        "model": engine.embedder.identity,
        "not_found": answers_not_found.measure(rounds=args.rounds, engine=engine),
        "natural": {name: natural_refused(answerer, group) for name, group in natural.items()},
        "fragments": answers_fragments.measure(answerer, questions),
        "arabic": answers_arabic.measure(engine, answers_arabic.make_spans(read_builtin().ayat, args.spans, args.seed)),
        "english": answers_english.measure(engine, load_queries(ENGLISH_QUERIES)),
    }
    print(json.dumps(report, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
