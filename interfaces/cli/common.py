"""What every ``tafsir`` command shares: the consoles, exit codes and errors, the settings, the store, progress.

Exit codes: 0 success, 1 unexpected failure, 2 bad input (a source file, a setting, the model),
3 the store is unavailable (held by another process, unreachable, damaged).
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console

stderr = Console(stderr=True)


stdout = Console()


EXIT_INPUT = 2


EXIT_STORE = 3


def fail(message: str, code: int) -> typer.Exit:
    stderr.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def load_settings():
    from pydantic import ValidationError

    from services.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"TAFSIR_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors())
        raise fail(f"invalid settings: {problems}", EXIT_INPUT) from None


@contextmanager
def open_store_or_exit(settings):
    from services.store import StoreError, StoreLockedError, open_store

    try:
        store = open_store(settings)
    except StoreLockedError as exc:
        raise fail(str(exc), EXIT_STORE) from None
    except StoreError as exc:
        raise fail(str(exc), EXIT_STORE) from None
    try:
        yield store
    except StoreError as exc:
        raise fail(str(exc), EXIT_STORE) from None
    finally:
        store.close()


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")


def configure_logging(level: str = "info") -> None:
    import logging

    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True
    )


def progress_bar(label: str, *columns):
    """A live bar on stderr: ``label``, the bar, done/total, ``columns``, the time elapsed and the ETA."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    shown = (TextColumn(label), BarColumn(), MofNCompleteColumn(), *columns, TimeElapsedColumn(), TextColumn("ETA"))
    return Progress(*shown, TimeRemainingColumn(), console=stderr)


def every(interval: float):
    """For progress lines in logs (not a terminal): whether a line is due, at an edge (the first or last step)
    or ``interval`` s after the last line."""
    last = [0.0]

    def due(edge: bool) -> bool:
        now = time.monotonic()
        if edge or now - last[0] >= interval:
            last[0] = now
            return True
        return False

    return due


@contextmanager
def embedding_progress(interval: float = 2.0, action: str = "embedded", unit: str = "chunks"):
    """Progress on stderr: a live bar with chunks/s and ETA on a terminal, plain lines in logs (``action`` and
    ``unit`` name the work: ``tafsir migrate`` copies points)."""
    from rich.progress import TaskProgressColumn, TextColumn

    if not stderr.is_terminal:
        # Scheduled jobs and pipes get a line at most every `interval` s (and the last one), readable in logs.
        started, due = time.monotonic(), every(interval)

        def log(done: int, total: int) -> None:
            if due(done in (0, total)):
                elapsed = time.monotonic() - started
                rate = done / elapsed if elapsed > 0 else 0.0
                print(f"{action} {done}/{total} {unit} ({rate:.0f} {unit}/s)", file=sys.stderr, flush=True)

        yield log
        return
    with progress_bar(action, TaskProgressColumn(), TextColumn(f"{{task.fields[rate]}} {unit}/s")) as bar:
        task = bar.add_task("embed", total=None, rate="-")

        def update(done: int, total: int) -> None:
            speed = bar.tasks[task].speed
            bar.update(task, completed=done, total=total, rate=f"{speed:.0f}" if speed else "-")

        yield update


def live_collection(store, alias: str) -> str | None:
    """The collection behind ``alias``; None if there is no such alias yet.

    ``resolve_alias`` takes a damaged or dangling alias for a missing one, so that an ingest can
    rebuild; a reader must report the damage instead: reading through the alias raises the
    StoreError that names the file and `tafsir ingest --full`.
    """
    name = store.resolve_alias(alias)
    if name is None:
        store.collection_info(alias)  # None (no error) when the alias is simply missing
    return name


@contextmanager
def reading_the_alias():
    """For a command that reads: the settings, the open store and the collection behind the alias (None when
    there is none yet)."""
    settings = load_settings()
    with open_store_or_exit(settings) as store:
        yield settings, store, live_collection(store, settings.collection)


def engine_or_exit(settings, store):
    from retriever.search import SearchEngine

    if live_collection(store, settings.collection) is None:
        raise fail(f"alias {settings.collection!r} does not exist in {store.location}: run `tafsir ingest`", 1)
    return SearchEngine(settings, store=store)


ModeOption = Annotated[str, typer.Option("--mode", help="hybrid (default), dense or sparse.")]


def parse_mode(value: str):
    from services.store.base import Mode

    try:
        return Mode(value)
    except ValueError:
        raise fail(f"--mode {value!r}: expected one of {[m.value for m in Mode]}", EXIT_INPUT) from None


def in_range(option: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise fail(f"{option} must be between {low} and {high}", EXIT_INPUT)
    return value
