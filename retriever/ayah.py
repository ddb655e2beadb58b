"""One ayah as stored: its tafsir chunks (every edition, or one), translation and Arabic text. Shared by
``GET /v1/ayah/{surah}/{ayah}`` and the MCP tool ``get_ayah``."""

from __future__ import annotations

from dataclasses import dataclass

from retriever.search import SearchEngine
from services.quran import TRANSLATION_FIELDS, check_ayah, citation, shown_translation
from services.quran import surah as surah_info
from services.store.base import PointFilter


class AyahNotStored(LookupError):
    """The ayah exists, but nothing of it is stored (in that edition)."""


@dataclass(frozen=True)
class StoredChunk:
    id: str
    edition: str
    chunk: int
    chunks: int
    text: str


@dataclass(frozen=True)
class StoredAyah:
    citation: str
    surah: int
    surah_name: str
    surah_name_ar: str
    ayah: int
    translation: str | None  # in the wording TAFSIR_TRANSLATION chooses
    arabic: str | None
    chunks: tuple[StoredChunk, ...]


def lookup_ayah(engine: SearchEngine, surah: int, ayah: int, edition: str | None = None) -> StoredAyah:
    """The ayah's stored chunks; ValueError (naming the valid range) for an ayah that does not exist,
    ``AyahNotStored`` for one with nothing stored."""
    check_ayah(surah, ayah)
    settings = engine.settings
    point_filter = PointFilter(ayat=[(surah, ayah)], editions=[edition] if edition is not None else None)
    hits = engine.store.retrieve(settings.collection, point_filter, 1000)
    if not hits:
        scope = f" for edition {edition!r}" if edition is not None else ""
        raise AyahNotStored(f"{citation(surah, ayah)} has no tafsir stored in {settings.collection!r}{scope}.")
    # The ayah's translation from whichever edition stores it, the chosen wording first.
    wordings: dict[str, str] = {}
    for field in (*TRANSLATION_FIELDS.values(), "translation"):
        wordings.update(next(({field: h.payload[field]} for h in hits if h.payload.get(field)), {}))
    info = surah_info(surah)
    return StoredAyah(
        citation=citation(surah, ayah),
        surah=surah,
        surah_name=info.name,
        surah_name_ar=info.name_ar,
        ayah=ayah,
        translation=shown_translation(wordings, settings.translation),
        arabic=next((h.payload["arabic"] for h in hits if h.payload.get("arabic")), None),
        chunks=tuple(
            StoredChunk(
                id=h.id,
                edition=h.payload["edition"],
                chunk=h.payload.get("chunk", 0),
                chunks=h.payload.get("chunks", 1),
                text=h.payload["text"],
            )
            for h in hits
        ),
    )
