"""``python -m ingest``: the ingest worker, same options as ``tafsir ingest``.

An entry point, so a face: the import rule (docs/ARCHITECTURE.md) counts ``__main__`` modules with the
faces, and nothing imports this one.
"""

import typer

from interfaces.cli.ingest import ingest

if __name__ == "__main__":
    typer.run(ingest)
