"""``tafsir migrate``: move the collection between the embedded store and a Qdrant server (ingest/migrate.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from interfaces.cli.common import (
    EXIT_INPUT,
    EXIT_STORE,
    embedding_progress,
    fail,
    load_settings,
    open_store_or_exit,
    print_json,
)


def migrate(
    to_url: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="URL",
            help="Copy the embedded store's collection (TAFSIR_QDRANT_PATH) to the Qdrant server at URL.",
        ),
    ] = None,
    from_url: Annotated[
        str | None,
        typer.Option(
            "--from", metavar="URL", help="Copy the collection of the Qdrant server at URL into the embedded store."
        ),
    ] = None,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Move the target's alias to the copy even if it exists, and delete the collection it pointed to; "
            "without it an existing alias is refused (exit 2) and nothing is written.",
        ),
    ] = False,
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="Points read and written at a time.")] = 256,
) -> None:
    """Copy the collection behind TAFSIR_COLLECTION, with its vectors, payloads, indexes and model identity, between
    the embedded store and a Qdrant server; checks the copy, then moves the alias. Rerun after an interruption: it
    resumes. Prints a JSON summary."""
    from ingest.lock import IngestLock, IngestLockError
    from ingest.migrate import AliasTaken, VerificationError
    from ingest.migrate import migrate as run_migration

    if (to_url is None) == (from_url is None):
        raise fail("give exactly one of --to URL (embedded -> server) and --from URL (server -> embedded)", EXIT_INPUT)
    settings = load_settings()
    url = (to_url or from_url or "").rstrip("/")
    embedded = settings.model_copy(update={"qdrant_url": None})
    server = settings.model_copy(update={"qdrant_url": url})
    # The server side may have scheduled workers writing behind the alias: hold the alias as a rebuild does. The
    # embedded side needs no more than its store lock, which admits one process.
    lock = IngestLock.for_settings(server)
    try:
        lock.acquire(wait=False)
    except IngestLockError as exc:
        raise fail(str(exc), EXIT_STORE) from None
    try:
        with open_store_or_exit(embedded) as local, open_store_or_exit(server) as remote:
            source, target = (local, remote) if to_url else (remote, local)
            with embedding_progress(settings.progress_interval, action="copied", unit="points") as progress:
                try:
                    summary = run_migration(
                        source, target, settings.collection, replace=replace, batch=batch, progress=progress
                    )
                except AliasTaken as exc:
                    raise fail(str(exc), EXIT_INPUT) from None
                except VerificationError as exc:
                    raise fail(str(exc), 1) from None
    finally:
        lock.release()
    print_json(summary.as_dict())
