"""Memory a schedule leaves in a serving process: anonymous RSS after the start-up check and each run.

Opens a copy of the store at TAFSIR_QDRANT_PATH, answers a few queries (the serving path warmed up), then
does what a server with a schedule does: the start-up check of the source (a dry run), then the scheduled
ingest job (built-in source, unchanged corpus) three times, returning freed memory to the OS after each
(``run_check``/``run_ingest`` do). Prints anonymous RSS after each step, the peak RSS (VmHWM) over the
whole, and the Python-level allocations that tracemalloc attributes to the runs (by file).

Usage: python bench/ingest_memory.py
"""

from __future__ import annotations

import ctypes
import gc
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def trim() -> None:
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)


def main() -> None:
    from services.embedding import Embedder
    from services.schedule import IngestLock, ingest_check, ingest_job, run_check, run_ingest
    from services.search import SearchEngine, SearchOptions
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
    trim()
    report: dict = {"anon_mb_after_queries": anon_mb()}
    check = run_check(ingest_check(settings, store, embedder))
    report["check"] = {key: check[key] for key in ("chunks", "embedded", "seconds")} if check else None
    report["anon_mb_after_check"] = anon_mb()
    job, lock = ingest_job(settings, store, embedder), IngestLock.for_settings(settings)
    report["anon_mb_after_run"] = []
    for _ in range(3):
        run_ingest(job, lock, trigger="bench")
        report["anon_mb_after_run"].append(anon_mb())
    report["peak_rss_mb"] = peak_mb()
    store.close()
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
