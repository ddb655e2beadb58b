"""The ``tafsir`` command. Settings are built here, once, and passed down.

Exit codes: 0 success, 1 unexpected failure, 2 bad input (a source file, a setting, the model),
3 the store is unavailable (held by another process, unreachable, damaged).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:  # pragma: no cover
    from ingest.pipeline import IngestSummary

app = typer.Typer(
    name="tafsir",
    help="Quran tafsir in Qdrant for chatbots: ingest, inspect and search.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
stderr = Console(stderr=True)
stdout = Console()

EXIT_INPUT = 2
EXIT_STORE = 3


def _fail(message: str, code: int) -> typer.Exit:
    stderr.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def load_settings():
    from pydantic import ValidationError

    from services.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"TAFSIR_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors())
        raise _fail(f"invalid settings: {problems}", EXIT_INPUT) from None


@contextmanager
def open_store_or_exit(settings):
    from services.store import StoreError, StoreLockedError, open_store

    try:
        store = open_store(settings)
    except StoreLockedError as exc:
        raise _fail(str(exc), EXIT_STORE) from None
    except StoreError as exc:
        raise _fail(str(exc), EXIT_STORE) from None
    try:
        yield store
    except StoreError as exc:
        raise _fail(str(exc), EXIT_STORE) from None
    finally:
        store.close()


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")


@app.command()
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
    from ingest.sources import SourceError, read_builtin, read_source

    settings = load_settings()
    # The whole source is validated before anything is opened or written.
    try:
        ayat_source = read_source(source, edition) if source is not None else read_builtin()
    except SourceError as exc:
        raise _fail(str(exc), EXIT_INPUT) from None
    if source is None and edition is not None:
        raise _fail("--edition names the edition of --source; the built-in source is id.jalalayn", EXIT_INPUT)
    if schedule is not None:
        if full or dry_run:
            flag = "--full rebuilds once" if full else "--dry-run plans once"
            raise _fail(f"{flag}; it cannot be combined with --schedule", EXIT_INPUT)
        _ingest_worker(settings, schedule, source, edition, metrics_port)
        return

    from ingest.lock import IngestLock, IngestLockError
    from ingest.pipeline import IngestPipeline
    from services.embedding import Embedder, EmbeddingModelError

    lock = IngestLock.for_settings(settings)
    if not dry_run:  # a dry run only reads
        try:
            lock.acquire(wait=False)  # never two runs on one collection (a scheduled worker may be running)
        except IngestLockError as exc:
            raise _fail(str(exc), EXIT_STORE) from None
    try:
        with open_store_or_exit(settings) as store:
            embedder = Embedder(_model_settings(settings, store, rebuild=full))
            embedder.on_export = lambda message: stderr.print(message, highlight=False)
            pipeline = IngestPipeline(settings, store, embedder)
            try:
                if dry_run:
                    summary = pipeline.plan(ayat_source, full=full, dry_run=True).summary
                else:
                    with _progress(settings.progress_interval) as progress:
                        summary = pipeline.run(ayat_source, full=full, progress=progress)
            except EmbeddingModelError as exc:
                raise _fail(str(exc), EXIT_INPUT) from None
    finally:
        if not dry_run:
            lock.release()
    if as_json:
        _print_json(summary.as_dict())
        return
    _print_summary(summary)


def _model_settings(settings, store, rebuild: bool = False):
    """Settings whose model is the one to use on this store: TAFSIR_EMBEDDING_MODEL=default follows the bundled
    model the live collection records until a rebuild (services.embedding.settings_for_collection)."""
    from services.embedding import settings_for_collection
    from services.store.base import recorded_model

    recorded = None if rebuild else recorded_model(store, settings.collection)
    return settings_for_collection(settings, recorded[1] if recorded else None)


def _print_summary(summary: IngestSummary) -> None:
    if summary.dry_run:
        title = f"dry run: ingest {summary.edition} → {summary.alias} ({summary.collection})"
        caption = "nothing was embedded or written"
        rows = {
            "chunks": "chunks",
            "embedded": "to embed",
            "resparsed": "to update, not embed (payload, BM25)",
            "unchanged": "unchanged",
            "deleted": "to delete",
            "carried_over": "to carry over",
            "rebuilt": "new collection",
            "resumed": "resumes a build",
        }
    else:
        title, caption = f"ingest {summary.edition} → {summary.alias} ({summary.collection})", None
        rows = {key: key for key in ("chunks", "embedded", "unchanged")}
        rows["resparsed"] = "of which updated, not embedded (payload, BM25)"
        rows |= {key: key for key in ("deleted", "carried_over", "rebuilt", "resumed", "seconds")}
    table = Table(title=title, caption=caption, show_header=False)
    for key, label in rows.items():
        table.add_row(label, str(getattr(summary, key)))
    table.add_row("model", f"{summary.model} ({summary.dense_size}-d)")
    stdout.print(table)


def _configure_logging(level: str = "info") -> None:
    import logging

    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True
    )


def _ingest_worker(settings, expression: str, source: Path | None, edition: str | None, metrics_port: int | None):
    """`tafsir ingest --schedule CRON`: the scheduled re-ingestion loop, until SIGTERM or Ctrl-C."""
    import logging
    import signal

    from ingest.lock import IngestLock
    from ingest.schedule import IngestScheduler, Schedule, alias_missing, ingest_check, ingest_job
    from services.embedding import Embedder

    try:
        plan = Schedule.parse(expression)
    except ValueError as exc:
        raise _fail(f"--schedule: {exc}", EXIT_INPUT) from None
    _configure_logging()
    log = logging.getLogger("services.cli")
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
        embedder = Embedder(_model_settings(settings, store))
        scheduler = IngestScheduler(
            plan,
            ingest_job(settings, store, embedder, source, edition),
            IngestLock.for_settings(settings),
            run_first=alias_missing(settings, store),
            check=ingest_check(settings, store, embedder, source, edition),
        )

        def stop(signum: int, _frame) -> None:
            if scheduler.stopping:  # a second signal: stop now; the pipeline resumes next time
                raise typer.Exit(128 + signum)
            log.info("stopping after the current run (signal %d; send it again to stop at once)", signum)
            scheduler.request_stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        log.info("ingest worker for alias %r in %s, schedule %s", settings.collection, store.location, plan.expression)
        scheduler.run_forever()


@contextmanager
def _progress(interval: float = 2.0):
    """Progress on stderr: a live bar with chunks/s and ETA on a terminal, plain lines in logs."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if not stderr.is_terminal:
        # Scheduled jobs and pipes get a line at most every `interval` s (and the last one), readable in logs.
        started = time.monotonic()
        last = [0.0]

        def log(done: int, total: int) -> None:
            now = time.monotonic()
            if done in (0, total) or now - last[0] >= interval:
                last[0] = now
                rate = done / (now - started) if now > started else 0.0
                print(f"embedded {done}/{total} chunks ({rate:.0f} chunks/s)", file=sys.stderr, flush=True)

        yield log
        return
    with Progress(
        TextColumn("embedding"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]} chunks/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=stderr,
    ) as bar:
        task = bar.add_task("embed", total=None, rate="-")

        def update(done: int, total: int) -> None:
            speed = bar.tasks[task].speed
            bar.update(task, completed=done, total=total, rate=f"{speed:.0f}" if speed else "-")

        yield update


def _ayat_present(store, collection: str, edition: str) -> int:
    """Distinct ayat with at least one stored chunk (6,236 for a complete edition)."""
    from services.store.base import PointFilter

    only = PointFilter(editions=[edition])
    hits = store.retrieve(collection, only, limit=store.count(collection, only))
    return len({(h.payload["surah"], h.payload["ayah"]) for h in hits})


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print as one JSON object.")] = False,
) -> None:
    """What the alias points at: collection, points, model, vector size, editions; and the built-in texts."""
    from ingest.sources import BUILTIN_TEXTS

    settings = load_settings()
    with open_store_or_exit(settings) as store:
        name = _live_collection(store, settings.collection)
        info = store.collection_info(name) if name else None
        report = {
            "store": store.location,
            "alias": settings.collection,
            "collection": name,
            "points": info.points if info else 0,
            "model": info.spec.model if info and info.spec else None,
            "vector_size": info.spec.dense_size if info and info.spec else None,
            **_reader_model(_model_settings(settings, store)),
            "editions": store.editions(name) if name else {},
        }
        report["ayat"] = {edition: _ayat_present(store, name, edition) for edition in report["editions"]}
    report["builtin_texts"] = [text.as_dict() for text in BUILTIN_TEXTS]  # what `tafsir ingest` reads by default
    if as_json:
        _print_json(report)
        return
    if name is None:
        stdout.print(f"alias {settings.collection!r} does not exist in {report['store']} yet: run `tafsir ingest`")
        raise typer.Exit(1)
    table = Table(show_header=False)
    for key, value in report.items():
        if isinstance(value, dict):
            table.add_row(key, ", ".join(f"{e}: {n}" for e, n in value.items()))
        elif key == "builtin_texts":
            for text in value:
                where = f"{text['package']} {text['version']}, {text['files']}"
                table.add_row("built-in text", escape(f"{text['content']} — {where}; licence: {text['licence']}"))
        else:
            table.add_row(key, str(value))
    stdout.print(table)


def _reader_model(settings) -> dict[str, Any]:
    """The model that queries run with: its source (bundle, folder, hub), fingerprint and backend."""
    from services.embedding import Embedder, EmbeddingModelError

    try:
        described = Embedder(settings).describe()
    except EmbeddingModelError as exc:
        return {"model_error": str(exc), "backend": settings.embedding_backend}
    return {
        "model_source": described["source"] + (f" ({described['package']})" if described["package"] else ""),
        "fingerprint": described["fingerprint"],
        "backend": described["backend"],
    }


def _live_collection(store, alias: str) -> str | None:
    """The collection behind ``alias``; None if there is no such alias yet.

    ``resolve_alias`` takes a damaged or dangling alias for a missing one, so that an ingest can
    rebuild; a reader must report the damage instead: reading through the alias raises the
    StoreError that names the file and `tafsir ingest --full`.
    """
    name = store.resolve_alias(alias)
    if name is None:
        store.collection_info(alias)  # None (no error) when the alias is simply missing
    return name


def _engine_or_exit(settings, store):
    from retriever.search import SearchEngine

    if _live_collection(store, settings.collection) is None:
        raise _fail(f"alias {settings.collection!r} does not exist in {store.location}: run `tafsir ingest`", 1)
    return SearchEngine(settings, store=store)


ModeOption = Annotated[str, typer.Option("--mode", help="hybrid (default), dense or sparse.")]


def _mode(value: str):
    from services.store.base import Mode

    try:
        return Mode(value)
    except ValueError:
        raise _fail(f"--mode {value!r}: expected one of {[m.value for m in Mode]}", EXIT_INPUT) from None


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="The question, in Indonesian.")],
    k: Annotated[int, typer.Option("-k", "--k", help="How many passages (1-50).")] = 5,
    mode: ModeOption = "hybrid",
    neighbors: Annotated[int, typer.Option(help="Add n adjacent ayat as context (0-10).")] = 0,
    edition: Annotated[
        list[str] | None,
        typer.Option("--edition", help="Only passages of this edition (repeatable); `tafsir editions` lists them."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Find the tafsir passages that answer a question, with citations and editions."""
    from pydantic import ValidationError

    from retriever.search import RetrieveRequest, humane_errors
    from services.embedding import EmbeddingModelError

    settings = load_settings()
    # The HTTP API's request model: the same bounds and the same messages ("k must be between 1 and 50").
    asked: dict[str, Any] = {"query": query, "k": k, "mode": mode, "neighbors": neighbors}
    if edition:
        asked["filter"] = {"edition": edition}
    try:
        options = RetrieveRequest.model_validate(asked).options()
    except ValidationError as exc:
        raise _fail("; ".join(e["msg"] for e in humane_errors(exc.errors())), EXIT_INPUT) from None
    with open_store_or_exit(settings) as store:
        engine = _engine_or_exit(settings, store)
        try:
            passages = engine.search(query, options)
        except EmbeddingModelError as exc:
            raise _fail(str(exc), EXIT_INPUT) from None
        except ValueError as exc:
            raise _fail(str(exc), EXIT_INPUT) from None
    if as_json:
        fields = ("citation", "score", "surah", "ayah", "chunk", "edition", "also_in", "text", "translation", "arabic")
        _print_json([{f: getattr(p, f) for f in (*fields, "id", "context_for")} for p in passages])
        return
    for rank, p in enumerate(passages, start=1):
        label = f"(konteks untuk {p.context_for})" if p.is_context else f"score {p.score:.4f}"
        editions = p.edition + (f" (juga {', '.join(p.also_in)})" if p.also_in else "")
        lines = [f"{rank}. [bold]{p.citation}[/]  {label}  {escape(editions)}"]
        if p.translation:
            lines.append(f"   “{escape(_first_line(p.translation))}”")
        lines.append(f"   {escape(_first_line(p.text))}")
        stdout.print("\n".join(lines), highlight=False)


def _first_line(text: str, limit: int = 160) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 3] + "..."


def _in_range(option: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise _fail(f"{option} must be between {low} and {high}", EXIT_INPUT)
    return value


@app.command()
def editions(
    as_json: Annotated[bool, typer.Option("--json", help="Print as a JSON list.")] = False,
) -> None:
    """The editions behind the alias: points, source, model and last ingest of each."""
    from ingest.archive import SourceArchive

    settings = load_settings()
    with open_store_or_exit(settings) as store:
        name = _live_collection(store, settings.collection)
        if name is None:
            raise _fail(f"alias {settings.collection!r} does not exist in {store.location} yet: run `tafsir ingest`", 1)
        info = store.collection_info(name)
        archive = SourceArchive.for_store(store, settings.collection)
        rows = []
        for edition, points in sorted(store.editions(name).items()):
            last_run = archive.last_run(edition) if archive is not None else None
            rows.append(
                {
                    "edition": edition,
                    "points": points,
                    # A Qdrant server keeps no per-edition record: its source is unknown, and the last ingest
                    # is the newest point's, the last run that wrote (not merely checked) the edition.
                    "source": last_run.get("source") if last_run else None,
                    "model": info.spec.model if info is not None and info.spec is not None else None,
                    "last_ingest": last_run.get("ingested_at") if last_run else _newest_point(store, name, edition),
                }
            )
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"editions in {settings.collection} ({name})")
    for column in ("edition", "points", "source", "model", "last ingest"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row[key] if row[key] is not None else "—") for key in row))
    stdout.print(table)


def _newest_point(store, collection: str, edition: str) -> str | None:
    from services.store.base import PointFilter

    only = PointFilter(editions=[edition])
    points = store.retrieve(collection, only, limit=store.count(collection, only))
    return max((stamp for h in points if (stamp := h.payload.get("ingested_at"))), default=None)


@app.command()
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
        raise _fail(str(exc), EXIT_STORE) from None
    try:
        with open_store_or_exit(settings) as store:
            name = _live_collection(store, settings.collection)
            archive = SourceArchive.for_store(store, settings.collection)
            stored = store.editions(name) if name is not None else {}
            archived = archive is not None and edition in archive.editions()
            if edition not in stored and not archived:
                known = ", ".join(sorted(stored)) or "none"
                raise _fail(
                    f"--edition {edition!r}: no such edition behind alias {settings.collection!r} in "
                    f"{store.location} (its editions: {known}; `tafsir editions` lists them)",
                    EXIT_INPUT,
                )
            points = stored.get(edition, 0)
            if not yes and not _confirmed(f"Remove edition {edition!r} ({points} points) from {name}?"):
                raise _fail(f"nothing removed: edition {edition!r} is kept (--yes removes without asking)", 1)
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


@app.command(name="eval")
def evaluate(
    queries: Annotated[
        Path | None,
        typer.Option(
            "--queries",
            help="JSONL: {qid, query, relevant: [[surah, ayah, grade]]} (default: the 40 questions shipped with "
            "tafsir-rag, labelled against the built-in corpus).",
        ),
    ] = None,
    mode: ModeOption = "hybrid",
    k: Annotated[int, typer.Option("-k", "--k", help="Cut-off for the metrics (1-100).")] = 10,
    neighbors: Annotated[int, typer.Option(help="Add n adjacent ayat as context (0-10).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
    per_query: Annotated[
        bool, typer.Option("--per-query", help="With --json: each query's nDCG, first relevant rank and Recall@1.")
    ] = False,
) -> None:
    """Retrieval quality on labelled queries: hit@k, Recall@k, MRR@k, nDCG@k (ayah level) and the misses."""
    from retriever.search import SearchOptions
    from services.evaluation import BUILTIN_QUERIES, QueryFileError, evaluate, load_queries

    _in_range("k", k, 1, 100)
    _in_range("neighbors", neighbors, 0, 10)
    settings = load_settings()
    queries = queries or BUILTIN_QUERIES
    try:
        labelled = load_queries(queries)
    except QueryFileError as exc:
        raise _fail(str(exc), EXIT_INPUT) from None
    options = SearchOptions(k=k, mode=_mode(mode), neighbors=neighbors)
    with open_store_or_exit(settings) as store:
        engine = _engine_or_exit(settings, store)
        rankings = [[(p.surah, p.ayah) for p in engine.search(q.query, options)] for q in labelled]
    report = evaluate(labelled, rankings, k=k).as_dict(per_query=per_query)
    report.update(mode=options.mode.value, neighbors=neighbors, queries_file=str(queries))
    if as_json:
        _print_json(report)
        return
    table = Table(title=f"{queries} — mode {options.mode.value}, k={k}, neighbors={neighbors}", show_header=False)
    for key, value in report.items():
        if key not in ("missed", "queries_file", "mode", "neighbors", "per_query"):
            table.add_row(key, str(value))
    stdout.print(table)
    for row in report.get("per_query", []):
        stdout.print(" ".join(f"{name} {value}" for name, value in row.items()), highlight=False)
    for miss in report["missed"]:
        stdout.print(f"missed {miss['qid']}: {miss['query']}", highlight=False)


model_app = typer.Typer(help="The embedding model: what it is and where its files are.", no_args_is_help=True)
app.add_typer(model_app, name="model")


@model_app.command("info")
def model_info(
    as_json: Annotated[bool, typer.Option("--json", help="Print as one JSON object.")] = False,
) -> None:
    """Name, source, backend, fingerprint and the local sentence-transformers folder of TAFSIR_EMBEDDING_MODEL
    (load that folder with sentence-transformers to get exactly the same weights)."""
    from services.embedding import Embedder, EmbeddingModelError

    settings = load_settings()
    try:
        described = Embedder(settings).describe()
    except EmbeddingModelError as exc:
        raise _fail(str(exc), EXIT_INPUT) from None
    if as_json:
        _print_json(described)
        return
    table = Table(show_header=False)
    for key, value in described.items():
        table.add_row(key, "" if value is None else str(value))
    stdout.print(table)


@contextmanager
def _training_progress():
    """Training steps on stderr: a live bar with the loss, s/step and ETA on a terminal, plain lines in logs."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    started = time.monotonic()
    first: list[int | None] = [None]  # the step a resumed run starts from: its speed counts only new steps

    def speed(step: int) -> str:
        if first[0] is None:
            first[0] = step - 1
        done = step - first[0]
        return f"{(time.monotonic() - started) / done:.2f} s/step" if done > 0 else "-"

    if not stderr.is_terminal:
        last = [0.0]

        def log(step: int, total: int, loss: float | None) -> None:
            now = time.monotonic()
            if step in (1, total) or now - last[0] >= 10:
                last[0] = now
                shown = f"{loss:.4f}" if loss is not None else "-"
                print(f"step {step}/{total} loss {shown} ({speed(step)})", file=sys.stderr, flush=True)

        yield log
        return
    with Progress(
        TextColumn("training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[speed]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=stderr,
    ) as bar:
        task = bar.add_task("train", total=None, loss="-", speed="-")

        def update(step: int, total: int, loss: float | None) -> None:
            shown = f"{loss:.4f}" if loss is not None else "-"
            bar.update(task, completed=step, total=total, loss=shown, speed=speed(step))

        yield update


class _TrainingReporter:
    def message(self, text: str) -> None:
        stderr.print(text, highlight=False, soft_wrap=True)

    def embedding(self):
        return _progress()

    def training(self):
        return _training_progress()


@app.command()
def train(
    output: Annotated[
        Path, typer.Option("--output", help="Folder for the model, its card, training_args.json, evaluation.json.")
    ],
    pairs: Annotated[
        Path | None, typer.Option("--pairs", help="Pairs file: JSONL or CSV with columns sentence_0, sentence_1.")
    ] = None,
    from_corpus: Annotated[
        bool, typer.Option("--from-corpus", help="Derive pairs from the built-in edition: translation -> tafsir chunk.")
    ] = False,
    holdout: Annotated[
        list[Path] | None,
        typer.Option("--holdout", help="Query file whose labelled ayat --from-corpus leaves out (repeatable)."),
    ] = None,
    base_model: Annotated[
        str | None, typer.Option("--base-model", help="Model to start from (default TAFSIR_EMBEDDING_MODEL).")
    ] = None,
    epochs: Annotated[float | None, typer.Option(min=0, help="Epochs (default 3).")] = None,
    batch_size: Annotated[int | None, typer.Option(min=2, help="Pairs per batch (default 8).")] = None,
    lr: Annotated[float | None, typer.Option("--lr", min=0, help="Learning rate (default 5e-5).")] = None,
    warmup_steps: Annotated[
        float | None, typer.Option(min=0, help="Warmup steps, or a fraction of all steps below 1 (default 0).")
    ] = None,
    scheduler: Annotated[str | None, typer.Option(help="linear, constant or cosine (default linear).")] = None,
    scale: Annotated[float | None, typer.Option(min=0, help="Loss scale over cosine similarity (default 20).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default 42).")] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Stop after this many steps (smoke runs).")] = None,
    max_seq_length: Annotated[
        int | None, typer.Option(min=16, help="Token limit (default the chunk limit, TAFSIR_CHUNK_TOKENS).")
    ] = None,
    save_steps: Annotated[int | None, typer.Option(min=1, help="Checkpoint every n steps (default 200).")] = None,
    logging_steps: Annotated[int | None, typer.Option(min=1, help="Loss averaged over n steps (default 10).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint in --output.")] = False,
    eval_queries: Annotated[
        list[Path] | None,
        typer.Option("--eval-queries", help="Query file: retrieval before and after -> evaluation.json (repeatable)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
) -> None:
    """Fine-tune the embedding model on (question or ayah text, tafsir) pairs with the seed model's recipe."""
    from pydantic import ValidationError

    from ingest.sources import read_builtin
    from services.embedding import EmbeddingModelError
    from services.evaluation import QueryFileError, load_queries
    from training.pairs import PairsFileError, read_pairs
    from training.train import EvalSet, Recipe, TrainingError, pairs_from_corpus
    from training.train import train as run_training

    if (pairs is None) == (not from_corpus):
        raise _fail("give either --pairs FILE or --from-corpus", EXIT_INPUT)
    if holdout and not from_corpus:
        raise _fail("--holdout leaves ayat out of --from-corpus pairs; a --pairs file is used as it is", EXIT_INPUT)
    if scheduler is not None and scheduler not in ("linear", "constant", "cosine"):
        raise _fail(f"--scheduler {scheduler!r}: expected linear, constant or cosine", EXIT_INPUT)
    settings = load_settings()
    update: dict[str, Any] = {}
    if base_model is not None:
        update["embedding_model"] = base_model
    if max_seq_length is not None:
        update["chunk_tokens"] = max_seq_length
    try:
        settings = type(settings).model_validate(settings.model_dump() | update)
    except ValidationError as exc:
        problems = "; ".join(e["msg"] for e in exc.errors())
        raise _fail(f"--max-seq-length {max_seq_length}: {problems}", EXIT_INPUT) from None
    overrides = {
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": lr,
        "warmup_steps": warmup_steps,
        "scheduler": scheduler,
        "scale": scale,
        "seed": seed,
        "max_steps": max_steps,
        "save_steps": save_steps,
        "logging_steps": logging_steps,
    }
    recipe = Recipe(**{key: value for key, value in overrides.items() if value is not None})
    reporter = _TrainingReporter()
    try:
        eval_sets = [EvalSet(str(path), load_queries(path)) for path in eval_queries or []]
        corpus = read_builtin() if from_corpus or eval_sets else None
        if pairs is not None:
            training_pairs = read_pairs(pairs)
            data: dict[str, Any] = {"pairs_file": str(pairs), "pairs": len(training_pairs)}
        else:
            derived = pairs_from_corpus(settings, corpus, holdout or [])
            training_pairs = derived.pairs
            data = {
                "from_corpus": f"{corpus.origin}, edition {corpus.edition}",
                "pairs": len(training_pairs),
                "ayat": derived.ayat,
                "held_out_ayat": derived.held_out,
                "holdout_files": [str(p) for p in holdout or []],
            }
            reporter.message(f"{len(training_pairs)} pairs from {derived.ayat} ayat; {derived.held_out} ayat held out")
            labelled = {key for s in eval_sets for q in s.queries for key in q.relevant}
            leaked = labelled & {p.ayah for p in training_pairs}
            if leaked:
                reporter.message(
                    f"[yellow]warning:[/] {len(leaked)} ayat labelled in --eval-queries are in the training pairs; "
                    "pass the same files with --holdout for an honest evaluation"
                )
        result = run_training(
            training_pairs,
            output,
            settings,
            recipe,
            resume=resume,
            eval_sets=eval_sets,
            eval_source=corpus,
            data=data,
            reporter=reporter,
        )
    except EmbeddingModelError as exc:
        hint = f"--base-model {base_model!r}: " if base_model is not None else ""
        raise _fail(f"{hint}{exc}", EXIT_INPUT) from None
    except (PairsFileError, QueryFileError, TrainingError) as exc:
        raise _fail(str(exc), EXIT_INPUT) from None
    summary = {
        "output": str(result.output),
        "pairs": len(training_pairs),
        "steps": result.steps,
        "steps_run": result.steps_run,
        "seconds": round(result.seconds, 1),
        "seconds_per_step": round(result.seconds_per_step, 3),
        "first_loss": result.losses[0][1] if result.losses else None,
        "last_loss": result.losses[-1][1] if result.losses else None,
        "resumed_from": result.resumed_from,
        "evaluation": result.evaluation["queries"] if result.evaluation else None,
    }
    if as_json:
        _print_json(summary)
        return
    table = Table(title=f"train → {result.output}", show_header=False)
    for key, value in summary.items():
        if key != "evaluation" and value is not None:
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) and "loss" in key else str(value))
    stdout.print(table)
    for path, modes in (summary["evaluation"] or {}).items():
        scores = Table(title=f"{path} (before → after)")
        scores.add_column("mode")
        metrics = [m for m in next(iter(modes.values()))["after"] if m not in ("k", "queries")]
        for metric in metrics:
            scores.add_column(metric)
        for mode, report in modes.items():
            before = report["before"] or {}
            scores.add_row(mode, *(f"{before.get(m, float('nan')):.3f} → {report['after'][m]:.3f}" for m in metrics))
        stdout.print(scores)
    stdout.print(f"use it: TAFSIR_EMBEDDING_MODEL={result.output} tafsir ingest --rebuild", highlight=False)


def _use_the_system_allocator() -> None:
    """Run this process on glibc malloc instead of Python's own allocator (``PYTHONMALLOC=malloc``).

    A server that hosts scheduled runs serves for weeks between runs that each create and free some
    hundred thousand objects. Python's allocator keeps a 1 MiB arena as long as one object in it lives,
    and objects that outlive a run (those of the queries served meanwhile) pin a few arenas at every run
    (measured: 22 -> 35 arenas after a run under queries). glibc returns the freed pages after each run
    (``malloc_trim``), so the footprint stays flat (docs/BENCHMARKS.md, "Soak"). The interpreter reads
    the setting only at start, so the process re-executes itself once, same pid and arguments, before it
    has loaded anything; an explicit PYTHONMALLOC is left alone.

    On malloc, the mmap threshold is also fixed at 256 KiB. glibc otherwise raises it to the largest block
    freed so far (up to 32 MiB): after one run, a run's large buffers (a source file, its JSONL copy, batches
    of vectors) come from the heap instead of mmap and leave it fragmented; mmapped, they go back when freed.
    """
    if not os.environ.get("PYTHONMALLOC"):
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, sys.orig_argv, {**os.environ, "PYTHONMALLOC": "malloc"})
    if os.environ["PYTHONMALLOC"] == "malloc":
        import ctypes

        m_mmap_threshold = -3  # <malloc.h>
        with contextlib.suppress(OSError, AttributeError):  # not glibc
            ctypes.CDLL("libc.so.6").mallopt(m_mmap_threshold, 256 * 1024)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default TAFSIR_API_HOST, 127.0.0.1).")] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port to listen on (default TAFSIR_API_PORT, 8000).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve the HTTP API for chatbots (OpenAPI at /docs); with the embedded store, also scheduled re-ingestion."""
    if log_level not in ("debug", "info", "warning", "error"):
        raise _fail(f"--log-level {log_level!r}: expected debug, info, warning or error", EXIT_INPUT)
    settings = load_settings()
    if settings.ingest_schedule is not None and not settings.uses_server:
        _use_the_system_allocator()

    import signal

    import uvicorn

    from retriever.search import SearchEngine
    from services.api import create_app
    from services.embedding import EmbeddingModelError

    _configure_logging(log_level)

    def stopped(_signum: int, _frame) -> None:
        # uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again: end with exit
        # code 0 through the normal path, so the store is closed.
        raise typer.Exit(0)

    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, stopped)
    with open_store_or_exit(settings) as store:
        engine = SearchEngine(settings, store=store)
        try:
            _ = engine.embedder.source  # find the model's files now; the weights load at startup
        except EmbeddingModelError as exc:
            raise _fail(str(exc), EXIT_INPUT) from None
        # One worker process: the embedded store admits one process, and the scheduler lives in it.
        uvicorn.run(
            create_app(settings, engine=engine),
            host=host or settings.api_host,
            port=port or settings.api_port,
            log_level=log_level,
            timeout_graceful_shutdown=15,
        )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
