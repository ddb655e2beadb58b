"""The ``tafsir`` command. Settings are built here, once, and passed down.

Exit codes: 0 success, 1 unexpected failure, 2 bad input (a source file, a setting, the model),
3 the store is unavailable (held by another process, unreachable, damaged).
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

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
    full: Annotated[bool, typer.Option("--full", help="Re-embed everything into a fresh collection.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
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

    from ingest.pipeline import IngestPipeline
    from services.embedding import Embedder, EmbeddingModelError

    embedder = Embedder(settings)
    with open_store_or_exit(settings) as store:
        pipeline = IngestPipeline(settings, store, embedder)
        try:
            with _progress() as progress:
                summary = pipeline.run(ayat_source, full=full, progress=progress)
        except EmbeddingModelError as exc:
            raise _fail(str(exc), EXIT_INPUT) from None
    if as_json:
        _print_json(summary.as_dict())
        return
    table = Table(title=f"ingest {summary.edition} → {summary.alias} ({summary.collection})", show_header=False)
    for key in (
        "chunks",
        "embedded",
        "unchanged",
        "deleted",
        "carried_over",
        "rebuilt",
        "resumed",
        "seconds",
    ):
        table.add_row(key, str(getattr(summary, key)))
    table.add_row("model", f"{summary.model} ({summary.dense_size}-d)")
    stdout.print(table)


@contextmanager
def _progress():
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
        # Scheduled jobs and pipes get a line at most every 2 s (and the last one), readable in logs.
        started = time.monotonic()
        last = [0.0]

        def log(done: int, total: int) -> None:
            now = time.monotonic()
            if done in (0, total) or now - last[0] >= 2:
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


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print as one JSON object.")] = False,
) -> None:
    """What the alias points at: collection, points, model, vector size, editions."""
    settings = load_settings()
    with open_store_or_exit(settings) as store:
        name = store.resolve_alias(settings.collection)
        info = store.collection_info(name) if name else None
        report = {
            "store": store.location,
            "alias": settings.collection,
            "collection": name,
            "points": info.points if info else 0,
            "model": info.spec.model if info and info.spec else None,
            "vector_size": info.spec.dense_size if info and info.spec else None,
            "editions": store.editions(name) if name else {},
        }
    if as_json:
        _print_json(report)
        return
    if name is None:
        stdout.print(f"alias {settings.collection!r} does not exist in {report['store']} yet: run `tafsir ingest`")
        raise typer.Exit(1)
    table = Table(show_header=False)
    for key, value in report.items():
        table.add_row(key, ", ".join(f"{e}: {n}" for e, n in value.items()) if isinstance(value, dict) else str(value))
    stdout.print(table)


def _engine_or_exit(settings, store):
    from services.search import SearchEngine

    if store.resolve_alias(settings.collection) is None:
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
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=50, help="How many passages.")] = 5,
    mode: ModeOption = "hybrid",
    neighbors: Annotated[int, typer.Option(min=0, max=10, help="Add n adjacent ayat as context.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Find the tafsir passages that answer a question, with citations."""
    from services.embedding import EmbeddingModelError
    from services.search import SearchOptions

    settings = load_settings()
    options = SearchOptions(k=k, mode=_mode(mode), neighbors=neighbors)
    with open_store_or_exit(settings) as store:
        engine = _engine_or_exit(settings, store)
        try:
            passages = engine.search(query, options)
        except EmbeddingModelError as exc:
            raise _fail(str(exc), EXIT_INPUT) from None
        except ValueError as exc:
            raise _fail(str(exc), EXIT_INPUT) from None
    if as_json:
        fields = ("citation", "score", "surah", "ayah", "chunk", "edition", "text", "id", "context_for")
        _print_json([{f: getattr(p, f) for f in fields} for p in passages])
        return
    for rank, p in enumerate(passages, start=1):
        first_line = p.text.strip().splitlines()[0] if p.text.strip() else ""
        if len(first_line) > 160:
            first_line = first_line[:157] + "..."
        label = f"(konteks untuk {p.context_for})" if p.is_context else f"score {p.score:.4f}"
        stdout.print(f"{rank}. [bold]{p.citation}[/]  {label}\n   {first_line}", highlight=False)


@app.command(name="eval")
def evaluate(
    queries: Annotated[Path, typer.Option("--queries", help="JSONL: {qid, query, relevant: [[surah, ayah, grade]]}.")],
    mode: ModeOption = "hybrid",
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=100, help="Cut-off for the metrics.")] = 10,
    neighbors: Annotated[int, typer.Option(min=0, max=10, help="Add n adjacent ayat as context.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
) -> None:
    """Retrieval quality on labelled queries: hit@k, Recall@k, MRR@k, nDCG@k (ayah level) and the misses."""
    from services.evaluation import QueryFileError, evaluate, load_queries
    from services.search import SearchOptions

    settings = load_settings()
    try:
        labelled = load_queries(queries)
    except QueryFileError as exc:
        raise _fail(str(exc), EXIT_INPUT) from None
    options = SearchOptions(k=k, mode=_mode(mode), neighbors=neighbors)
    with open_store_or_exit(settings) as store:
        engine = _engine_or_exit(settings, store)
        rankings = [[(p.surah, p.ayah) for p in engine.search(q.query, options)] for q in labelled]
    report = evaluate(labelled, rankings, k=k).as_dict()
    report.update(mode=options.mode.value, neighbors=neighbors, queries_file=str(queries))
    if as_json:
        _print_json(report)
        return
    table = Table(title=f"{queries} — mode {options.mode.value}, k={k}, neighbors={neighbors}", show_header=False)
    for key, value in report.items():
        if key not in ("missed", "queries_file", "mode", "neighbors"):
            table.add_row(key, str(value))
    stdout.print(table)
    for miss in report["missed"]:
        stdout.print(f"missed {miss['qid']}: {miss['query']}", highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
