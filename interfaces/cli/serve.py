"""``tafsir serve``: the HTTP API (``interfaces.http``) under uvicorn, with scheduled re-ingestion in-process."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Annotated

import typer

from interfaces.cli.common import EXIT_INPUT, configure_logging, fail, load_settings, open_store_or_exit


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


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default TAFSIR_API_HOST, 127.0.0.1).")] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port to listen on (default TAFSIR_API_PORT, 8000).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve the HTTP API for chatbots (OpenAPI at /docs); with the embedded store, also scheduled re-ingestion."""
    if log_level not in ("debug", "info", "warning", "error"):
        raise fail(f"--log-level {log_level!r}: expected debug, info, warning or error", EXIT_INPUT)
    settings = load_settings()
    if settings.ingest_schedule is not None and not settings.uses_server:
        _use_the_system_allocator()

    import signal

    import uvicorn

    from interfaces.http import create_app
    from retriever.search import SearchEngine
    from services.model_source import EmbeddingModelError

    configure_logging(log_level)

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
            raise fail(str(exc), EXIT_INPUT) from None
        # One worker process: the embedded store admits one process, and the scheduler lives in it.
        uvicorn.run(
            create_app(settings, engine=engine),
            host=host or settings.api_host,
            port=port or settings.api_port,
            log_level=log_level,
            timeout_graceful_shutdown=15,
        )


def mcp() -> None:
    """Serve the MCP server (tools search_tafsir, get_ayah, answer) over stdio, for agents and desktop assistants.

    An MCP client starts this command itself, from a folder of its choosing: stdout carries the protocol, logs go
    to stderr, and the store and model cache are the settings' (absolute; by default the per-user data folder).
    With the embedded store, no other process may hold it (a running `tafsir serve` has the same tools at /mcp).
    The server answers at once; the model loads in the background (clients allow a few seconds to connect)."""
    settings = load_settings()

    import logging

    from interfaces.mcp import build_server
    from retriever.answer import Answerer
    from retriever.search import SearchEngine

    configure_logging("warning")
    with open_store_or_exit(settings) as store:  # in use or damaged: said at once, exit code 3
        engine = SearchEngine(settings, store=store)
        # Finding the model's files may expand the bundled one (seconds) and loading it takes longer: both
        # happen in the background, after the server answers; a model that cannot load is a tool error.
        logging.getLogger("interfaces.cli").warning(
            "tafsir mcp: store %s, model cache %s; the model loads in the background",
            store.location,
            settings.model_cache,
        )
        build_server(Answerer(engine), warm_up=lambda: engine.embedder.warm_up()).run("stdio")
