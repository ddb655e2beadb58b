"""English questions: retrieval quality per mode and for the routed default, and how well the query language is told.

``measure(engine, queries)`` searches each labelled query (services/evaluation.py, ``LabelledQuery``) with the
engine as it is configured and returns hit@10 and nDCG@10

- for each mode (``dense``, ``sparse``, ``hybrid``): the default ``hybrid`` is the routed one, the fusion chosen for
  the query's language (services/models.py, ``language_fusions``);
- for ``hybrid_indonesian_fusion``: hybrid with the model's own (Indonesian) fusion for every query, which is what
  English questions got before the routing;

and ``detection``: the share of the queries that services/language.py reads as English, and its accuracy on the
short keyword and code-mixed queries of bench/query_languages.jsonl, with the time a query takes.

Point TAFSIR_QDRANT_PATH at a copy of a store ingested with the default sparse layout (the English translation in
``bm25_tr``). Prints one JSON object.

Usage: python bench/answers_english.py [--queries FILE]   (default: services/evaluation_questions_en.jsonl)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHORT_QUERIES = ROOT / "bench" / "query_languages.jsonl"
K = 10


def _scores(engine, queries, mode) -> dict[str, float]:
    from retriever.search import SearchOptions
    from services.evaluation import evaluate

    options = SearchOptions(k=K, mode=mode)
    rankings = [[(p.surah, p.ayah) for p in engine.search(q.query, options)] for q in queries]
    report = evaluate(queries, rankings, k=K).as_dict()
    return {f"hit@{K}": report[f"hit@{K}"], f"ndcg@{K}": report[f"ndcg@{K}"]}


def _indonesian_fusion_engine(engine):
    """The same store and model, with the model's own fusion for every query (settings override any fusion)."""
    from retriever.search import SearchEngine

    fusion = engine.embedder.profile.fusion.overridden(engine.settings.fusion_overrides())
    weights = {
        "rrf_k": fusion.rrf_k,
        "prefetch_limit": fusion.prefetch_limit,
        "weight_dense": fusion.dense,
        "weight_bm25": fusion.bm25,
        "weight_bm25_ctx": fusion.bm25_ctx,
        "weight_bm25_tr": fusion.bm25_tr,
    }
    settings = engine.settings.model_copy(update=weights)
    return SearchEngine(settings, store=engine.store, embedder=engine.embedder, sparse=engine.sparse)


def detection(queries) -> dict:
    """How services/language.py reads the English queries and the short ones of bench/query_languages.jsonl."""
    from services.language import detect_language

    rows = [json.loads(line) for line in SHORT_QUERIES.read_text(encoding="utf-8").splitlines() if line.strip()]
    detect_language("warm up")  # the model loads once
    started = time.perf_counter()
    english = [detect_language(q.query) == "en" for q in queries]
    right: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        right[f"{row['kind']}_{row['language']}"].append(detect_language(row["query"]) == row["language"])
    took = time.perf_counter() - started
    return {
        "english_questions_read_as_english": round(sum(english) / len(english), 4),
        **{f"accuracy_{kind}": round(sum(v) / len(v), 4) for kind, v in sorted(right.items())},
        "short_queries": {kind: len(v) for kind, v in sorted(right.items())},
        "ms_per_query": round(1000 * took / (len(english) + len(rows)), 3),
    }


def measure(engine, queries) -> dict:
    """hit@10 and nDCG@10 per mode (hybrid: routed by the query's language) and with the Indonesian fusion for
    every query, and the language detection's accuracy."""
    from services.store.base import Mode

    result = {"queries": len(queries)}
    for mode in (Mode.DENSE, Mode.SPARSE, Mode.HYBRID):
        result[mode.value] = _scores(engine, queries, mode)
    result["hybrid_indonesian_fusion"] = _scores(_indonesian_fusion_engine(engine), queries, Mode.HYBRID)
    result["routed_default"] = result[Mode.HYBRID.value]
    result["detection"] = detection(queries)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=Path, help="A labelled query file (default: the shipped English questions).")
    args = parser.parse_args()

    from retriever.search import shared_engine
    from services.evaluation import ENGLISH_QUERIES, load_queries
    from services.settings import Settings

    path = args.queries or ENGLISH_QUERIES
    engine = shared_engine(Settings())
    report = {"queries_file": str(path), "model": engine.embedder.identity, **measure(engine, load_queries(path))}
    print(json.dumps(report, ensure_ascii=False))


if __name__ == "__main__":
    main()
