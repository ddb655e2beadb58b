"""Scheduled re-ingestion: the cron schedule, one run under the lock (``ingest.lock``), the worker loop and the
ingest metrics.

Where it runs: with the embedded store the API process hosts the scheduler in a
background thread, sharing its one store object, because the embedded store admits one process; with
a Qdrant server ``tafsir ingest --schedule CRON`` runs the same loop as a worker process.

Two runs of one edition never overlap: every run holds :class:`ingest.lock.IngestLock` for its edition
(:func:`scheduled_lock`), and widens it to the whole alias when it must build a new collection.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram

from ingest.lock import IngestLock, IngestLockError
from services.settings import Settings, cron_expression

if TYPE_CHECKING:  # pragma: no cover
    from services.embedding import Embedder
    from services.store.base import VectorStore

log = logging.getLogger(__name__)

IngestJob = Callable[[], dict[str, Any]]  # one run; returns the IngestSummary as a dict

# How a scheduled run is allowed to replace what ingest.pipeline.ReplaceRefused protects.
REPLACE_SETTING = "TAFSIR_INGEST_REPLACE=true"


class Refused(RuntimeError):
    """A scheduled run the pipeline refused before writing (``ReplaceRefused``), its message naming ``allow``."""


# --- metrics (the process's default Prometheus registry, served at /metrics) -----------------------

INGEST_RUNS = Counter(
    "tafsir_ingest_runs",
    "Ingest runs by outcome (success, error, skipped: another run held the lock, refused: the run would replace "
    "or delete stored points without TAFSIR_INGEST_REPLACE/--replace) and trigger.",
    ["outcome", "trigger"],
)
INGEST_DURATION = Histogram(
    "tafsir_ingest_duration_seconds",
    "Duration of ingest runs that started (success or error).",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600),
)
INGEST_POINTS = Gauge(
    "tafsir_ingest_points", "Chunks (points) of the edition after its last successful run.", ["edition"]
)
INGEST_EMBEDDED = Counter("tafsir_ingest_embedded_chunks", "Chunks embedded and upserted by ingest runs.", ["edition"])
INGEST_DELETED = Counter("tafsir_ingest_deleted_chunks", "Stale points deleted by ingest runs.", ["edition"])
INGEST_LAST_SUCCESS = Gauge("tafsir_ingest_last_success_timestamp_seconds", "Unix time the last successful run ended.")
INGEST_RUNNING = Gauge("tafsir_ingest_running", "1 while an ingest run is in progress in this process.")
INGEST_CHECKS = Counter(
    "tafsir_ingest_checks",
    "Checks of the scheduled source when the scheduler starts (a dry run: read, chunk, diff), by outcome (ok, error, "
    "refused: a run would be refused, see tafsir_ingest_runs).",
    ["outcome"],
)


# --- the schedule ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """A cron expression: 5 fields (minute hour day month weekday), or 6 with *seconds first*.

    Six fields follow the Quartz/Spring order (``*/30 * * * * *`` = every 30 seconds); croniter, which
    evaluates the expression, is told so (``second_at_beginning``). Times are the process's local time
    (UTC in the container).
    """

    expression: str
    with_seconds: bool

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        """ValueError names the expected forms (the check TAFSIR_INGEST_SCHEDULE gets, services.settings)."""
        text = cron_expression(expression)
        return cls(text, with_seconds=len(text.split(" ")) == 6)

    def next_after(self, moment: datetime) -> datetime:
        """The first firing time strictly after ``moment`` (an aware datetime)."""
        from croniter import croniter

        return croniter(self.expression, moment, second_at_beginning=self.with_seconds).get_next(datetime)


# --- one run -------------------------------------------------------------------------------------------


def run_ingest(job: IngestJob, lock: IngestLock, trigger: str) -> dict[str, Any] | None:
    """Run ``job`` under ``lock``; log one JSON summary line and update the metrics. Never raises.

    Returns the summary, or None when the run was skipped (lock busy) or failed.
    """
    try:
        lock.acquire(wait=False)
    except IngestLockError as exc:
        INGEST_RUNS.labels(outcome="skipped", trigger=trigger).inc()
        _log_event("ingest_run", logging.WARNING, {"outcome": "skipped", "trigger": trigger, "reason": str(exc)})
        return None
    INGEST_RUNNING.set(1)
    started = time.perf_counter()
    try:
        summary = job()
    except Refused as exc:
        # Nothing was written; the same source is refused again at each firing until it or the setting changes.
        INGEST_RUNS.labels(outcome="refused", trigger=trigger).inc()
        _log_event("ingest_run", logging.WARNING, {"outcome": "refused", "trigger": trigger, "reason": str(exc)})
        return None
    except Exception as exc:
        seconds = round(time.perf_counter() - started, 3)
        INGEST_DURATION.observe(seconds)
        INGEST_RUNS.labels(outcome="error", trigger=trigger).inc()
        # Errors meant for people (a bad source, the store, the model) carry their own explanation;
        # anything else also gets its traceback in the log.
        expected = _is_explained(exc)
        _log_event(
            "ingest_run",
            logging.ERROR,
            {"outcome": "error", "trigger": trigger, "seconds": seconds, "error": f"{type(exc).__name__}: {exc}"},
            exc_info=None if expected else exc,
        )
        return None
    finally:
        INGEST_RUNNING.set(0)
        lock.release()
        return_freed_memory()
    seconds = round(time.perf_counter() - started, 3)
    INGEST_DURATION.observe(seconds)
    INGEST_RUNS.labels(outcome="success", trigger=trigger).inc()
    edition = str(summary.get("edition", ""))
    INGEST_POINTS.labels(edition=edition).set(summary.get("chunks", 0))
    INGEST_EMBEDDED.labels(edition=edition).inc(summary.get("embedded", 0))
    INGEST_DELETED.labels(edition=edition).inc(summary.get("deleted", 0))
    INGEST_LAST_SUCCESS.set(time.time())
    _log_event("ingest_run", logging.INFO, {"outcome": "success", "trigger": trigger, **summary})
    return summary


def return_freed_memory() -> None:
    """Give the memory a run freed back to the OS: a long-lived server otherwise keeps the peak of every
    run (chunk lists, tokenizer encodings, payloads) in glibc's per-thread arenas, and its RSS creeps."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _is_explained(exc: BaseException) -> bool:
    from ingest.sources import SourceError
    from services.model_source import EmbeddingModelError
    from services.store.base import StoreError

    return isinstance(exc, StoreError | EmbeddingModelError | SourceError)


def _log_event(event: str, level: int, record: dict[str, Any], exc_info: BaseException | None = None) -> None:
    """One line of JSON per run or check, for log collectors (``docker logs ... | jq``)."""
    log.log(level, json.dumps({"event": event, **record}, ensure_ascii=False, default=str), exc_info=exc_info)


@dataclass(frozen=True)
class ScheduledIngest:
    """What scheduled runs ingest (``source``, or the built-in edition), into which store, with which model; and
    whether a run may replace what the pipeline protects (``ReplaceRefused``): without ``replace`` it raises
    :class:`Refused` (logged and counted, nothing written), whose message says ``allow`` lets it."""

    settings: Settings
    store: VectorStore
    embedder: Embedder
    source: Path | None = None
    edition: str | None = None
    replace: bool = False
    allow: str = REPLACE_SETTING

    def job(self, lock: IngestLock | None = None) -> IngestJob:
        """A job that reads the source afresh and runs the pipeline (``ingest.run.run_pipeline``) under ``lock``,
        the one :func:`run_ingest` holds around it (see :func:`scheduled_lock`): a lock of one edition is widened
        to the whole alias when the run must build a new collection, or the source now names another edition."""

        def job() -> dict[str, Any]:
            from ingest.pipeline import IngestPipeline, ReplaceRefused
            from ingest.run import run_pipeline

            ayat_source = _read(self.source, self.edition)
            pipeline = IngestPipeline(self.settings, self.store, self.embedder)
            try:
                if lock is None:
                    return pipeline.run(ayat_source, replace=self.replace).as_dict()
                return run_pipeline(pipeline, ayat_source, lock, replace=self.replace).as_dict()
            except ReplaceRefused as exc:
                raise Refused(exc.message(self.allow)) from None
            finally:
                self.embedder.release_working_memory()  # the process serves queries until the next run

        return job

    def check(self) -> IngestJob:
        """The dry run of :meth:`job`: read and chunk the source and diff it against the store. Nothing is
        embedded or written; the summary says what the next run would do; :class:`Refused` if it would be
        refused."""

        def check() -> dict[str, Any]:
            from ingest.pipeline import IngestPipeline

            pipeline = IngestPipeline(self.settings, self.store, self.embedder)
            plan = pipeline.plan(_read(self.source, self.edition), dry_run=True, replace=self.replace)
            if plan.refusal is not None:
                raise Refused(plan.refusal.message(self.allow))
            return plan.summary.as_dict()

        return check

    def worker(self, schedule: Schedule) -> IngestScheduler:
        """The scheduled worker, as ``tafsir ingest --schedule`` and ``tafsir serve`` (TAFSIR_INGEST_SCHEDULE)
        run it: the runs under :func:`scheduled_lock`, a first run when the alias is missing, else a dry run at
        the start."""
        lock = scheduled_lock(self.settings, self.source, self.edition)
        return IngestScheduler(
            schedule, self.job(lock), lock, run_first=alias_missing(self.settings, self.store), check=self.check()
        )


def scheduled_lock(settings: Settings, source: Path | None = None, edition: str | None = None) -> IngestLock:
    """The lock of a scheduled worker's runs: the edition its source holds, so that workers of other editions
    of one collection run beside it; the whole alias when the source cannot be read now (the start-up check
    reports why). A given ``edition`` is the source's (read_source refuses a file that names another), so the
    file is read only when it must say its edition itself."""
    from ingest.builtin import BUILTIN_EDITION

    if source is None:
        name: str | None = BUILTIN_EDITION
    elif edition is not None:
        name = edition
    else:
        try:
            name = _read(source, edition).edition
        except Exception:  # a missing or bad file: lock more, never less
            name = None
    return IngestLock.for_settings(settings, edition=name)


def _read(source: Path | None, edition: str | None):
    from ingest.builtin import read_builtin
    from ingest.sources import read_source

    return read_source(source, edition) if source is not None else read_builtin()


def run_check(check: IngestJob) -> dict[str, Any] | None:
    """Run ``check`` (see :meth:`ScheduledIngest.check`); log one JSON line and count the outcome. Never raises.

    Run when a scheduler starts, so that a source which has gone bad is reported now, not at the next
    firing (perhaps 03:00), and the log says how much the next run will embed. It also pays the ingest
    path's one-time memory (parser, tokenizer, store readers) at start rather than at the first run.
    """
    started = time.perf_counter()
    try:
        summary = check()
    except Refused as exc:
        INGEST_CHECKS.labels(outcome="refused").inc()
        _log_event("ingest_check", logging.WARNING, {"outcome": "refused", "reason": str(exc)})
        return None
    except Exception as exc:
        INGEST_CHECKS.labels(outcome="error").inc()
        record = {"outcome": "error", "error": f"{type(exc).__name__}: {exc}"}
        _log_event("ingest_check", logging.ERROR, record, exc_info=None if _is_explained(exc) else exc)
        return None
    finally:
        return_freed_memory()
    INGEST_CHECKS.labels(outcome="ok").inc()
    record = {"outcome": "ok", "seconds": round(time.perf_counter() - started, 3)}
    record |= {
        key: summary[key]
        for key in ("edition", "collection", "chunks", "embedded", "resparsed", "translated", "deleted")
    }
    record["rebuild"] = summary["rebuilt"]
    _log_event("ingest_check", logging.INFO, record)
    return summary


# --- the loop ------------------------------------------------------------------------------------------


class IngestScheduler:
    """Runs ``job`` at each firing of ``schedule`` until stopped; in a thread (``start``) or in the caller.

    A firing that comes while the previous run still holds the lock is skipped, and firings missed
    during a long run are not made up: the next run is the next firing after the previous one ends.
    ``run_first`` (checked once at the start) asks for an immediate run, e.g. when the alias is missing;
    otherwise ``check`` (a dry run, :meth:`ScheduledIngest.check`) runs at the start, reporting a bad source at once.
    """

    def __init__(
        self,
        schedule: Schedule,
        job: IngestJob,
        lock: IngestLock,
        *,
        run_first: Callable[[], bool] | None = None,
        check: IngestJob | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now().astimezone(),
    ) -> None:
        self.schedule = schedule
        self.job = job
        self.lock = lock
        self.run_first = run_first
        self.check = check
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Stop before the next firing; a run in progress finishes first."""
        self._stop.set()

    def run_forever(self) -> None:
        if self.run_first is not None and not self._stop.is_set() and self._should_run_first():
            run_ingest(self.job, self.lock, trigger="start")
        elif self.check is not None and not self._stop.is_set():
            run_check(self.check)
        last_fire: datetime | None = None
        while not self._stop.is_set():
            now = self.clock()
            # Never fire twice for one slot, even if the wait below wakes a hair early.
            fire = self.schedule.next_after(max(now, last_fire) if last_fire else now)
            log.info("next scheduled ingest at %s (%s)", fire.isoformat(timespec="seconds"), self.schedule.expression)
            if self._stop.wait(max(0.0, (fire - now).total_seconds())):
                break
            last_fire = fire
            run_ingest(self.job, self.lock, trigger="schedule")

    def start(self) -> IngestScheduler:
        self._thread = threading.Thread(target=self.run_forever, name="tafsir-ingest-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)

    def _should_run_first(self) -> bool:
        try:
            return bool(self.run_first and self.run_first())
        except Exception as exc:  # e.g. the server is unreachable: the schedule still stands
            log.warning("could not check whether to ingest at start: %s", exc)
            return False


def alias_missing(settings: Settings, store: VectorStore) -> Callable[[], bool]:
    """``run_first`` for a scheduler: ingest at once when there is nothing to serve yet."""

    def check() -> bool:
        missing = store.resolve_alias(settings.collection) is None
        if missing:
            log.info("alias %r does not exist in %s yet: ingesting now", settings.collection, store.location)
        return missing

    return check
