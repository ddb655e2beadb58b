"""The calibrated not-found decision (retriever/not_found.py) on the held-back part of its labelled set
(training/not_found_questions.jsonl): per language, questions the tafsir answers and off-topic ones, refused or
answered; and what the decision costs a query.

Latency, in one run on the same questions (extractive answers: no language model): the answering core's
``answer`` with the fitted decision, and with the single cosine it replaces (``TAFSIR_ANSWER_MIN_SIMILARITY``
at the model's measured threshold: no language detection, no evidence); alternated per question, so that both
see the same load, in alternating order. The added latency is read three ways: the difference of the two p50s;
the p50 of the per-question differences where both answer (the same work but for the decision); and the new
steps timed alone (language detection, the evidence and the decision).

Uses the store at TAFSIR_QDRANT_PATH and the model it records; the decision shipped for that model (refit with
``python -m training.not_found``). Prints one JSON object.

Usage: python bench/answers_not_found.py [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _p50(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def measure(settings: Any = None, rounds: int = 3, questions: Path | None = None, engine: Any = None) -> dict[str, Any]:
    """Held-back confusion per language, and answer latency p50 with and without the decision (ms); on
    ``engine`` if given (its store is open: the embedded store admits one opening), else a new one."""
    from retriever import not_found
    from retriever.answer import Answerer, AnswerMode
    from retriever.search import SearchEngine
    from services.language import detect_language
    from services.settings import Settings
    from training.not_found import QUESTIONS, collect, confusion, fingerprint, load_questions

    path = questions or QUESTIONS
    settings = engine.settings if engine is not None else settings or Settings()
    engine = engine or SearchEngine(settings)
    calibrated = Answerer(engine, llm=None)
    decision = calibrated.decision
    if decision is None:
        raise SystemExit(
            f"no fitted not-found decision for {engine.embedder.identity}: run python -m training.not_found"
        )
    cosine = engine.embedder.profile.min_similarity
    single = Answerer(
        SearchEngine(
            settings.model_copy(update={"answer_min_similarity": cosine if cosine is not None else -1.0}),
            store=engine.store,
            embedder=engine.embedder,
            sparse=engine.sparse,
        ),
        llm=None,
    )
    held = [q for q in load_questions(path) if q.held_back]
    evidence = collect(engine, held)
    for q in held[:5]:  # warm both paths (language model of py3langid, caches)
        calibrated.answer(q.query), single.answer(q.query)

    with_decision, without, steps, added_when_both_answer = [], [], [], []
    for round_number in range(rounds):
        for number, q in enumerate(held):
            pair = [(calibrated, with_decision), (single, without)]
            if (number + round_number) % 2:  # alternate which goes first: neither gets the warmer caches
                pair.reverse()
            took, modes = {}, {}
            for answerer, into in pair:
                started = time.perf_counter()
                answer = answerer.answer(q.query)
                took[id(into)] = (time.perf_counter() - started) * 1000
                modes[id(into)] = answer.mode
                into.append(took[id(into)])
            # Where both answer, both did the same work but for the decision's own steps.
            if AnswerMode.NOT_FOUND not in modes.values():
                added_when_both_answer.append(took[id(with_decision)] - took[id(without)])
            probe = engine.search_probed(q.query)
            started = time.perf_counter()
            decision.judge(not_found.gather(q.query, probe, engine.sparse, detect_language(q.query)))
            steps.append((time.perf_counter() - started) * 1000)
    return {
        "model": engine.embedder.identity,
        "data_matches": decision.data == fingerprint(path),
        "threshold": decision.threshold,
        "held_back": len(held),
        "confusion": confusion(decision, held, evidence),
        "latency_ms": {
            "requests_each": len(with_decision),
            "answer_p50_with_decision": _p50(with_decision),
            "answer_p50_single_cosine": _p50(without),
            "added_p50": round(_p50(with_decision) - _p50(without), 3),
            "added_p50_paired_both_answer": _p50(added_when_both_answer),
            "pairs_both_answer": len(added_when_both_answer),
            "decision_steps_p50": _p50(steps),
            "decision_steps_p95": round(sorted(steps)[int(0.95 * (len(steps) - 1))], 3),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(measure(rounds=args.rounds), indent=2))


if __name__ == "__main__":
    main()
