"""``python -m ingest``: the ingest worker, same options as ``tafsir ingest``."""

import typer

from services.cli import ingest

if __name__ == "__main__":
    typer.run(ingest)
