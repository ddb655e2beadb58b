"""What the routes share: the search engine, the answering core, readiness, and the in-process ingest scheduler."""

from __future__ import annotations

import logging

from interfaces.http.errors import ApiError
from interfaces.http.schemas import ReadyResponse
from retriever.answer import Answerer
from retriever.search import SearchEngine
from services.model_source import EmbeddingModelError
from services.settings import Settings
from services.store.base import StoreError

log = logging.getLogger("interfaces.http")


class Service:
    """What the routes share: the search engine, readiness, and the in-process ingest scheduler."""

    def __init__(self, settings: Settings, engine: SearchEngine | None, llm=None) -> None:
        self.settings = settings
        self.owns_engine = engine is None
        self.engine = engine or SearchEngine(settings)
        # The one answering core for /v1/answer, /v1/chat/completions, the MCP tool and the page.
        self.answerer = Answerer(self.engine, llm=llm)
        self.model_error: str | None = None
        self.store_error: str | None = None
        self.scheduler = None

    def start(self) -> None:
        """Open the store, load the model (so that ready means ready), start the scheduler."""
        try:
            _ = self.engine.store
        except StoreError as exc:
            self.store_error = str(exc)
            log.error("%s", exc)
        try:
            self.engine.embedder.warm_up()
            self.engine.embedder.encode_query("pemanasan")  # the first forward pass is the slow one
        except EmbeddingModelError as exc:
            self.model_error = str(exc)
            log.error("%s", exc)
        self._start_scheduler()

    def stop(self) -> None:
        if self.scheduler is not None:
            # A run in progress keeps its store calls; the pipeline is resumable if cut short.
            self.scheduler.stop(timeout=10)
        if self.owns_engine and self.store_error is None:
            self.engine.store.close()

    def _start_scheduler(self) -> None:
        settings = self.settings
        if settings.ingest_schedule is None:
            return
        if settings.uses_server:
            log.info(
                "TAFSIR_INGEST_SCHEDULE is set, but with a Qdrant server re-ingestion runs in its own worker "
                "(`tafsir ingest --schedule CRON`, the `ingest` service in docker-compose.yml), not in the API"
            )
            return
        if self.store_error is not None:
            return
        from ingest.schedule import Schedule, ScheduledIngest

        runs = ScheduledIngest(
            settings,
            self.engine.store,
            self.engine.embedder,
            settings.ingest_source,
            settings.ingest_edition,
            # A run that would replace the built-in edition (or most of one) is refused, logged and counted under
            # tafsir_ingest_runs{outcome="refused"} unless TAFSIR_INGEST_REPLACE allows it (ingest/pipeline.py).
            replace=settings.ingest_replace,
        )
        self.scheduler = runs.worker(Schedule.parse(settings.ingest_schedule)).start()
        log.info("scheduled re-ingestion in this process: %s", settings.ingest_schedule)

    def readiness(self) -> ReadyResponse:
        """Raise ``ApiError(503)`` naming the first thing that is not ready."""
        if self.store_error is not None:
            raise ApiError(503, "not_ready", f"The store could not be opened: {self.store_error}")
        if self.model_error is not None:
            raise ApiError(503, "not_ready", f"The embedding model failed to load: {self.model_error}")
        embedder = self.engine.embedder
        if not embedder.loaded:
            raise ApiError(503, "not_ready", "The embedding model is still loading.")
        store = self.engine.store
        alias = self.settings.collection
        try:
            name = store.resolve_alias(alias)
            if name is None:  # missing, or damaged: reading through the alias names the damaged file
                store.collection_info(alias)
            info = store.collection_info(name) if name is not None else None
        except StoreError as exc:
            raise ApiError(503, "not_ready", f"The store is unreadable: {exc}") from None
        if name is None or info is None:
            raise ApiError(
                503,
                "not_ready",
                f"The alias {alias!r} does not exist in {store.location}: run `tafsir ingest` "
                "(or wait for the scheduled ingest) to build the collection.",
            )
        try:
            self.engine.check_model()
        except EmbeddingModelError as exc:
            raise ApiError(503, "not_ready", str(exc)) from None
        return ReadyResponse(collection=name, points=info.points, model=embedder.identity)
