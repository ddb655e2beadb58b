"""Memory a scheduled run leaves in a serving process: anonymous RSS after each of three in-process runs.

Opens a copy of the store at TAFSIR_QDRANT_PATH, answers a few queries (the serving path warmed up), then
runs the scheduled ingest job (built-in source, unchanged corpus) three times, returning freed memory to
the OS after each as the server does, and prints anonymous RSS after each run and the Python-level
allocations that tracemalloc attributes to the runs (by file).

Usage: python bench/ingest_memory.py
"""

from __future__ import annotations

import ctypes
import gc
import json
import shutil
import sys
import tempfile
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def trim() -> None:
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)


def main() -> None:
    from services.embedding import Embedder
    from services.schedule import ingest_job
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
    report: dict = {"anon_mb_after_queries": anon_mb(), "anon_mb_after_run": []}
    tracemalloc.start(25)
    before = tracemalloc.take_snapshot()
    job = ingest_job(settings, store, embedder)
    for _ in range(3):
        job()
        trim()
        report["anon_mb_after_run"].append(anon_mb())
    after = tracemalloc.take_snapshot()
    report["python_allocations_kib_by_file"] = {
        str(stat.traceback[0].filename): round(stat.size_diff / 1024, 1)
        for stat in after.compare_to(before, "filename")[:8]
    }
    store.close()
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
