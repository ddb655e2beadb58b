"""Retrieval before and after training (``evaluation.json``): the corpus ingested into a temporary embedded
store with the real pipeline, queried through the real search engine and scored by ``services.evaluation``,
so a number here is the number ``tafsir eval`` gives for the same model after an ingest.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.sources import Source
from services.embedding import Embedder
from services.evaluation import LabelledQuery, evaluate
from services.settings import Settings
from services.store.base import Mode

EVALUATION_FILE = "evaluation.json"
EVAL_MODES = (Mode.DENSE, Mode.HYBRID)
EVAL_K = 10

EmbeddingProgress = Callable[[int, int], None]  # (chunks done, chunks to embed), as ingest reports it


@dataclass(frozen=True)
class EvalSet:
    path: str
    queries: list[LabelledQuery] = field(repr=False)


def evaluate_model(
    settings: Settings,
    model: str,
    source: Source,
    eval_sets: Sequence[EvalSet],
    k: int = EVAL_K,
    progress: EmbeddingProgress | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Retrieval metrics of ``model`` on each query file and mode: ``{file: {mode: report}}``.

    Ingests ``source`` into a temporary embedded store with the real pipeline and queries it through
    the real search engine, so a number here is the number ``tafsir eval`` gives after an ingest.
    """
    from ingest.pipeline import IngestPipeline
    from retriever.search import SearchEngine, SearchOptions
    from services.store import open_store

    with tempfile.TemporaryDirectory(prefix="tafsir-eval-") as folder:
        scratch = settings.model_copy(
            update={"embedding_model": model, "qdrant_path": Path(folder), "qdrant_url": None, "collection": "eval"}
        )
        embedder = Embedder(scratch)
        store = open_store(scratch)
        try:
            IngestPipeline(scratch, store, embedder).run(source, progress=progress)
            engine = SearchEngine(scratch, store=store, embedder=embedder)
            results: dict[str, dict[str, dict[str, Any]]] = {}
            for eval_set in eval_sets:
                by_mode = results.setdefault(eval_set.path, {})
                for mode in EVAL_MODES:
                    options = SearchOptions(k=k, mode=mode)
                    rankings = [[(p.surah, p.ayah) for p in engine.search(q.query, options)] for q in eval_set.queries]
                    report = evaluate(eval_set.queries, rankings, k=k).as_dict()
                    report.pop("missed")
                    by_mode[mode.value] = report
        finally:
            store.close()
    return results


def with_deltas(before: dict, after: dict) -> dict:
    """``{file: {mode: {"before": report, "after": report, "change": {metric: after - before}}}}``."""
    merged: dict[str, dict[str, dict[str, Any]]] = {}
    for path, modes in after.items():
        for mode, report in modes.items():
            old = before.get(path, {}).get(mode)
            change = (
                {
                    key: round(value - old[key], 4)
                    for key, value in report.items()
                    if isinstance(value, float) and isinstance(old.get(key), float)
                }
                if old
                else None
            )
            merged.setdefault(path, {})[mode] = {"before": old, "after": report, "change": change}
    return merged


def load_before(output: Path, identity: str, eval_sets: Sequence[EvalSet]) -> dict | None:
    """The base model's metrics recorded by an interrupted run, if they cover the same model and files."""
    path = output / EVALUATION_FILE
    if not path.is_file():
        return None
    recorded = json.loads(path.read_text())
    before = recorded.get("before")
    if recorded.get("base_model") != identity or not isinstance(before, dict):
        return None
    return before if all(s.path in before for s in eval_sets) else None
