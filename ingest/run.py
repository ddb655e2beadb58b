"""One ingest run, for ``tafsir ingest`` and the scheduled worker alike: the lock it takes, when that lock widens
to the whole alias, and the pipeline run (ingest/lock.py says why runs lock so)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ingest.lock import IngestLock

if TYPE_CHECKING:  # pragma: no cover
    from ingest.pipeline import IngestPipeline, IngestSummary
    from ingest.sources import Source
    from services.settings import Settings


def run_lock(settings: Settings, edition: str | None, *, rebuild: bool = False) -> IngestLock:
    """A run of one edition into the live collection locks that edition (runs of other editions go on beside
    it); a rebuild locks the whole alias."""
    return IngestLock.for_settings(settings, edition=None if rebuild else edition)


def needs_whole_alias(lock: IngestLock, pipeline: IngestPipeline, source: Source, full: bool = False) -> bool:
    """Whether a run holding ``lock`` must widen it first: it holds one edition, and the run builds a new
    collection (which carries the other editions' points over) or the source now names another edition."""
    return lock.edition is not None and (source.edition != lock.edition or pipeline.needs_new_collection(full))


def run_pipeline(
    pipeline: IngestPipeline,
    source: Source,
    lock: IngestLock,
    *,
    full: bool = False,
    replace: bool = False,
    progress=None,
    widening: Callable[[IngestLock], None] | None = None,
) -> IngestSummary:
    """Run ``pipeline`` on ``source`` under ``lock`` (held by the caller), widened to the whole alias first when
    it must be (waiting for the runs of other editions to end; ``widening`` is told before the wait)."""
    if needs_whole_alias(lock, pipeline, source, full):
        if widening is not None:
            widening(lock)
        lock.widen()
    return pipeline.run(source, full=full, progress=progress, replace=replace)
