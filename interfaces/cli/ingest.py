"""``tafsir ingest`` (once, or as a worker on a cron schedule) and ``tafsir remove``: the commands that write."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from interfaces.cli.common import (
    EXIT_INPUT,
    EXIT_STORE,
    configure_logging,
    embedding_progress,
    fail,
    live_collection,
    load_settings,
    open_store_or_exit,
    print_json,
    stderr,
    stdout,
)

if TYPE_CHECKING:  # pragma: no cover
    from ingest.lock import IngestLock
    from ingest.pipeline import IngestSummary


def ingest(
    source: Annotated[
        Path | None, typer.Option(help="A user source: Tanzil XML, JSONL or CSV (surah, ayah, text).")
    ] = None,
    edition: Annotated[str | None, typer.Option(help="Edition id of --source, if its file does not name one.")] = None,
    full: Annotated[
        bool,
        typer.Option(
            "--rebuild",
            "--full",
            help="Re-embed everything into a fresh collection and move the alias to it when complete (readers "
            "keep the old one until then); the way to change the model.",
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Read, chunk and diff against the store, then print what a run would embed, update and "
            "delete; nothing is embedded or written.",
        ),
    ] = False,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Allow a run that replaces or deletes points of the built-in edition from a user file, or "
            "deletes more than half of an edition; without it such a run is refused (exit 2) and nothing is written.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
    schedule: Annotated[
        str | None,
        typer.Option(
            "--schedule",
            metavar="CRON",
            help="Run as a worker: re-ingest at each firing of this cron expression (5 fields, or 6 with "
            "seconds first) until stopped; each run logs one JSON summary line.",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="With --schedule: serve Prometheus /metrics on this port.")
    ] = None,
) -> None:
    """Chunk, embed and upsert a tafsir edition (default: the built-in Tafsir Jalalayn), incrementally."""
    from ingest.builtin import read_builtin
    from ingest.sources import SourceError, read_source

    settings = load_settings()
    # The whole source is validated before anything is opened or written.
    try:
        ayat_source = read_source(source, edition) if source is not None else read_builtin()
    except SourceError as exc:
        raise fail(str(exc), EXIT_INPUT) from None
    if source is None and edition is not None:
        raise fail("--edition names the edition of --source; the built-in source is id.jalalayn", EXIT_INPUT)
    if schedule is not None:
        if full or dry_run:
            flag = "--full rebuilds once" if full else "--dry-run plans once"
            raise fail(f"{flag}; it cannot be combined with --schedule", EXIT_INPUT)
        _ingest_worker(settings, schedule, source, edition, metrics_port, replace)
        return

    from ingest.lock import IngestLockError
    from ingest.pipeline import IngestPipeline, ReplaceRefused
    from ingest.run import run_lock, run_pipeline
    from services.collection_model import model_settings
    from services.embedding import Embedder
    from services.model_source import EmbeddingModelError

    lock = run_lock(settings, ayat_source.edition, rebuild=full)
    if not dry_run:  # a dry run only reads
        try:
            lock.acquire(wait=False)  # never two runs on one edition (a scheduled worker may be running)
        except IngestLockError as exc:
            raise fail(str(exc), EXIT_STORE) from None
    try:
        with open_store_or_exit(settings) as store:
            embedder = Embedder(model_settings(settings, store, rebuild=full))
            embedder.on_export = lambda message: stderr.print(message, highlight=False)
            pipeline = IngestPipeline(settings, store, embedder)
            try:
                if dry_run:
                    summary = pipeline.plan(ayat_source, full=full, dry_run=True, replace=replace).summary
                else:
                    with embedding_progress(settings.progress_interval) as progress:
                        summary = run_pipeline(
                            pipeline,
                            ayat_source,
                            lock,
                            full=full,
                            replace=replace,
                            progress=progress,
                            widening=_widening,
                        )
            except (EmbeddingModelError, ReplaceRefused) as exc:
                raise fail(str(exc), EXIT_INPUT) from None
            except IngestLockError as exc:
                raise fail(str(exc), EXIT_STORE) from None
    finally:
        if not dry_run:
            lock.release()
    if as_json:
        print_json(summary.as_dict())
        return
    _print_summary(summary)


def _widening(lock: IngestLock) -> None:
    stderr.print(
        f"this run builds a new collection behind alias {lock.alias!r}: waiting for other ingest runs on it",
        highlight=False,
    )


def _print_summary(summary: IngestSummary) -> None:
    if summary.dry_run:
        title = f"dry run: ingest {summary.edition} → {summary.alias} ({summary.collection})"
        caption = "nothing was embedded or written"
        rows = {
            "chunks": "chunks",
            "embedded": "to embed",
            "resparsed": "to update, not embed (payload, BM25)",
            "translated": "of them, translation vector to embed",
            "unchanged": "unchanged",
            "stored": "points of the edition stored now",
            "replaced": "of them to replace (other content)",
            "deleted": "of them to delete",
            "carried_over": "to carry over",
            "rebuilt": "new collection",
            "resumed": "resumes a build",
        }
    else:
        title, caption = f"ingest {summary.edition} → {summary.alias} ({summary.collection})", None
        rows = {key: key for key in ("chunks", "embedded", "unchanged")}
        rows["resparsed"] = "of which updated, not embedded (payload, BM25)"
        rows["translated"] = "of those, translation vector embedded"
        rows |= {key: key for key in ("deleted", "carried_over", "rebuilt", "resumed", "seconds")}
    table = Table(title=title, caption=caption, show_header=False)
    for key, label in rows.items():
        table.add_row(label, str(getattr(summary, key)))
    table.add_row("model", f"{summary.model} ({summary.dense_size}-d)")
    stdout.print(table)
    if summary.refused:
        stdout.print(f"without --replace this run is {summary.refused}", highlight=False, soft_wrap=True)


def _ingest_worker(
    settings, expression: str, source: Path | None, edition: str | None, metrics_port: int | None, replace: bool
):
    """`tafsir ingest --schedule CRON`: the scheduled re-ingestion loop, until SIGTERM or Ctrl-C."""
    import logging
    import signal

    from ingest.schedule import REPLACE_SETTING, Schedule, ScheduledIngest
    from services.collection_model import model_settings
    from services.embedding import Embedder

    try:
        plan = Schedule.parse(expression)
    except ValueError as exc:
        raise fail(f"--schedule: {exc}", EXIT_INPUT) from None
    configure_logging()
    log = logging.getLogger("interfaces.cli")
    if not settings.uses_server:
        log.warning(
            "the embedded store admits one process: while this worker runs, `tafsir serve` cannot open %s. "
            "To serve and re-ingest one embedded store, set TAFSIR_INGEST_SCHEDULE for `tafsir serve` instead.",
            settings.qdrant_path,
        )
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=settings.api_host)
        log.info("Prometheus metrics on http://%s:%d/metrics", settings.api_host, metrics_port)
    with open_store_or_exit(settings) as store:
        embedder = Embedder(model_settings(settings, store))
        allow = f"--replace (or {REPLACE_SETTING})"
        runs = ScheduledIngest(settings, store, embedder, source, edition, replace or settings.ingest_replace, allow)
        scheduler = runs.worker(plan)

        def stop(signum: int, _frame) -> None:
            if scheduler.stopping:  # a second signal: stop now; the pipeline resumes next time
                raise typer.Exit(128 + signum)
            log.info("stopping after the current run (signal %d; send it again to stop at once)", signum)
            scheduler.request_stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        log.info("ingest worker for alias %r in %s, schedule %s", settings.collection, store.location, plan.expression)
        scheduler.run_forever()


def remove(
    edition: Annotated[str, typer.Option("--edition", help="The edition to remove (`tafsir editions` lists them).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Remove without asking for confirmation.")] = False,
) -> None:
    """Remove an edition: its points from the collection behind the alias, and the store's copy of its source."""
    from ingest.archive import SourceArchive
    from ingest.lock import IngestLock, IngestLockError
    from services.store.base import PointFilter, StoreError

    settings = load_settings()
    lock = IngestLock.for_settings(settings)
    try:
        lock.acquire(wait=False)  # like an ingest: never while a run (a scheduled worker) writes the collection
    except IngestLockError as exc:
        raise fail(str(exc), EXIT_STORE) from None
    try:
        with open_store_or_exit(settings) as store:
            name = live_collection(store, settings.collection)
            archive = SourceArchive.for_store(store, settings.collection)
            stored = store.editions(name) if name is not None else {}
            archived = archive is not None and edition in archive.editions()
            if edition not in stored and not archived:
                known = ", ".join(sorted(stored)) or "none"
                raise fail(
                    f"--edition {edition!r}: no such edition behind alias {settings.collection!r} in "
                    f"{store.location} (its editions: {known}; `tafsir editions` lists them)",
                    EXIT_INPUT,
                )
            points = stored.get(edition, 0)
            if not yes and not _confirmed(f"Remove edition {edition!r} ({points} points) from {name}?"):
                raise fail(f"nothing removed: edition {edition!r} is kept (--yes removes without asking)", 1)
            if points:
                store.delete(name, [h.id for h in store.iter_hashes(name, edition)])
                left = store.count(name, PointFilter(editions=[edition]))
                if left:
                    raise StoreError(f"{left} points of edition {edition!r} are still in {name}; run the command again")
            # The copy goes after the points: a rebuild must never carry a removed edition back in.
            removed = archive.remove(edition) if archive is not None else []
    finally:
        lock.release()
    copy = f" and its copy in {archive.folder}" if removed else ""
    stdout.print(f"removed edition {edition}: {points} points from {name}{copy}", highlight=False)


def _confirmed(question: str) -> bool:
    try:
        return typer.confirm(question, default=False, err=True)
    except (typer.Abort, EOFError):  # no answer (stdin closed): nothing is removed
        return False
