"""Which embedding model a collection needs: the one place that decides it, for the read path, ingest and the CLI.

It joins the store (the identity a collection records) and the model's resolution
(``services.model_source.settings_for_collection``), which never import each other (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from services.model_source import settings_for_collection
from services.settings import Settings
from services.store.base import VectorStore, recorded_model


def model_settings(settings: Settings, store: VectorStore, *, rebuild: bool = False) -> Settings:
    """Settings whose model is the one to use on ``store``: TAFSIR_EMBEDDING_MODEL=default follows the bundled
    model the live collection records until a rebuild, which builds with today's default. A damaged store
    raises ``StoreError``, naming the file."""
    recorded = None if rebuild else recorded_model(store, settings.collection)
    return settings_for_collection(settings, recorded[1] if recorded else None)
