"""Points per second of `tafsir migrate` (ingest/migrate.py): the collection of the embedded store at
TAFSIR_QDRANT_PATH copied to a server and from it into a new embedded store, with the check included.

The server is qdrant-client's local mode (`local:PATH`, the same client API as a server; no server binary can be
installed here): it is pure Python and slower than a server, so the figures are a floor. Prints one JSON object.

Usage: TAFSIR_QDRANT_PATH=<a copy of a store> python bench/migrate.py [--work FOLDER] [--batch 256]
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
    args = parser.parse_args()

    from ingest.migrate import migrate
    from services.settings import Settings
    from services.store import open_store

    work = args.work or Path(tempfile.mkdtemp(prefix="tafsir-migrate-bench-"))
    settings = Settings()
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
    print(json.dumps({"store": str(settings.qdrant_path), "batch": args.batch, **report}, indent=1))


if __name__ == "__main__":
    main()
