"""Where to draw "not found": the cosine between a question and its closest passage, on questions the tafsir
answers (the dev files) and on questions it does not (bench/off_topic_questions.jsonl, written for this).

A hybrid score is an RRF score: it ranks, but does not say how near a passage is, so the answering core judges
by the dense cosine of the nearest passage (``SearchEngine.search_with_similarity``). The threshold proposed is
the highest, in steps of 0.005, below which no dev query falls; the report shows how many off-topic questions
each candidate turns away, so the trade-off is visible.

Uses the store at TAFSIR_QDRANT_PATH (run `tafsir ingest` first) and the model it records. Prints one JSON
object.

Usage: python bench/not_found.py [--answerable FILE]... [--off-topic FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# the natural questions shipped with the project; any labelled query file can be given instead
QUESTIONS = ROOT / "services"
DEFAULT_ANSWERABLE = [QUESTIONS / "evaluation_questions.jsonl", QUESTIONS / "question_set" / "dev.jsonl"]
DEFAULT_OFF_TOPIC = ROOT / "bench" / "off_topic_questions.jsonl"
STEP = 0.005


def questions(path: Path) -> list[str]:
    return [json.loads(line)["query"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(values),
        "min": round(ordered[0], 4),
        "p5": round(ordered[int(0.05 * (len(ordered) - 1))], 4),
        "median": round(statistics.median(ordered), 4),
        "max": round(ordered[-1], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answerable", type=Path, action="append", help="a query file the tafsir answers")
    parser.add_argument("--off-topic", type=Path, default=DEFAULT_OFF_TOPIC)
    args = parser.parse_args()

    from retriever.search import SearchEngine, SearchOptions
    from services.settings import Settings

    engine = SearchEngine(Settings())
    similarity = {}
    for path in [*(args.answerable or DEFAULT_ANSWERABLE), args.off_topic]:
        similarity[path.stem] = [engine.search_with_similarity(q, SearchOptions(k=1))[1] for q in questions(path)]
    off_topic = similarity.pop(args.off_topic.stem)
    answerable = [s for values in similarity.values() for s in values]

    def turned_away(threshold: float, values: list[float]) -> float:
        return round(sum(v < threshold for v in values) / len(values), 3)

    lowest = min(answerable)
    proposed = round(int(lowest / STEP) * STEP, 3)
    candidates = [round(proposed + i * STEP, 3) for i in range(-4, 4)]
    report = {
        "model": engine.embedder.identity,
        "similarity": {
            **{name: summary(values) for name, values in similarity.items()},
            "off_topic": summary(off_topic),
        },
        "candidates": [
            {
                "threshold": t,
                "answerable_turned_away": turned_away(t, answerable),
                "off_topic_turned_away": turned_away(t, off_topic),
            }
            for t in candidates
        ],
        "proposed": {
            "threshold": proposed,
            "rule": f"the highest multiple of {STEP} at or below the lowest answerable query's cosine ({lowest:.4f})",
            "off_topic_turned_away": turned_away(proposed, off_topic),
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
