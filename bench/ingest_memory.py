"""Memory a schedule leaves in a serving process: anonymous RSS after the start-up check and each run.

Opens a copy of the store at TAFSIR_QDRANT_PATH, answers a few queries (the serving path warmed up), then
does what a server with a schedule does: the start-up check of the source (a dry run), then the scheduled
ingest job (built-in source, unchanged corpus) three times, returning freed memory to the OS after each
(``run_check``/``run_ingest`` do). Prints anonymous RSS after each step and the peak RSS (VmHWM) over
the whole.

Usage: python bench/ingest_memory.py
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import status_mb  # noqa: E402


def anon_mb() -> float | None:
    return status_mb(os.getpid()).get("RssAnon")


def main() -> None:
    from ingest.lock import IngestLock
    from ingest.schedule import ScheduledIngest, return_freed_memory, run_check, run_ingest
    from retriever.search import SearchEngine, SearchOptions
    from services.embedding import Embedder
    from services.settings import Settings
    from services.store import open_store

    settings = Settings()
    work = Path(tempfile.mkdtemp(prefix="tafsir-memory-"))
    shutil.copytree(settings.qdrant_path, work / "qdrant", ignore=shutil.ignore_patterns(".lock"))
    settings = settings.model_copy(update={"qdrant_path": work / "qdrant"})
    store = open_store(settings)
    embedder = Embedder(settings)
    engine = SearchEngine(settings, store=store, embedder=embedder)
    for query in ["Apa hukum meminum khamar?", "Siapa Thalut?", "zakat fitrah"] * 5:
        engine.search(query, SearchOptions(k=5))
    return_freed_memory()
    report: dict = {"anon_mb_after_queries": anon_mb()}
    check = run_check(ScheduledIngest(settings, store, embedder).check())
    report["check"] = {key: check[key] for key in ("chunks", "embedded", "seconds")} if check else None
    report["anon_mb_after_check"] = anon_mb()
    job, lock = ScheduledIngest(settings, store, embedder).job(), IngestLock.for_settings(settings)
    report["anon_mb_after_run"] = []
    for _ in range(3):
        run_ingest(job, lock, trigger="bench")
        report["anon_mb_after_run"].append(anon_mb())
    report["peak_rss_mb"] = status_mb(os.getpid()).get("VmHWM")
    store.close()
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
