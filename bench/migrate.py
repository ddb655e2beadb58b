"""Points per second of `tafsir migrate` (ingest/migrate.py): the collection of the embedded store at
TAFSIR_QDRANT_PATH copied to a server and from it into a new embedded store, with the check included.

The server is qdrant-client's local mode (`local:PATH`, the same client API as a server; no server binary can be
installed here): it is pure Python and slower than a server, so the figures are a floor. Prints one JSON object.

With ``--points N`` the source is a copy of that store grown to N points with bench/scale.py's generator (each
synthetic point a real chunk's vectors, perturbed, under one of ten synthetic editions), so the figure is measured
at a size where the built-in corpus (about 6,500 points) is not the whole story.

Usage: TAFSIR_QDRANT_PATH=<a copy of a store> python bench/migrate.py [--work FOLDER] [--batch 256] [--points 100000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="folder for the server and the new store (default: a temporary one)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--points", type=int, help="grow a copy of the store to this many points first")
    args = parser.parse_args()

    from ingest.migrate import migrate
    from services.settings import Settings
    from services.store import open_store

    work = args.work or Path(tempfile.mkdtemp(prefix="tafsir-migrate-bench-"))
    settings = Settings()
    grown = None
    if args.points:
        grown = grow(settings, work / "source", args.points)
        settings = settings.model_copy(update={"qdrant_path": work / "source"})
    server = settings.model_copy(update={"qdrant_url": f"local:{work / 'server'}"})
    copy = settings.model_copy(update={"qdrant_path": work / "embedded", "qdrant_url": None})
    report = {}
    for leg, (src, dst) in {"to_server": (settings, server), "from_server": (server, copy)}.items():
        source, target = open_store(src), open_store(dst)
        try:
            summary = migrate(source, target, settings.collection, batch=args.batch).as_dict()
        finally:
            source.close(), target.close()
        report[leg] = {k: summary[k] for k in ("points", "copied", "checked_queries", "seconds", "points_per_second")}
    print(json.dumps({"store": str(settings.qdrant_path), "batch": args.batch, "grown": grown, **report}, indent=1))


def grow(settings, folder: Path, points: int) -> dict:
    """Copy the store at ``settings.qdrant_path`` to ``folder`` and add synthetic points to its live collection
    until it holds ``points``."""
    import shutil
    import time

    from bench.scale import read_corpus, synthetic_points
    from services.store import open_store

    shutil.copytree(settings.qdrant_path, folder)
    corpus = read_corpus(settings.qdrant_path, folder.parent)
    store = open_store(settings.model_copy(update={"qdrant_path": folder}))
    try:
        name = store.resolve_alias(settings.collection)
        real = store.count(name)
        started = time.perf_counter()
        for batch in synthetic_points(corpus, max(0, points - real), editions=10, noise=0.25, seed=25):
            store.upsert(name, batch)
        store.optimize(name)
        seconds = time.perf_counter() - started
        total = store.count(name)
    finally:
        store.close()
    return {"real_points": real, "points": total, "build_seconds": round(seconds, 1)}


if __name__ == "__main__":
    main()
