"""A copy of every edition's source inside the embedded store, so that a rebuild never loses an edition.

A rebuild (``tafsir ingest --full``, or a new model) carries the store's other editions into the new
collection from their stored text. When the old collection is damaged (a half-written shard, missing
payload pages: the cases ``tafsir ingest --full`` is there to repair) that text cannot be read, and
editions ingested from files that are gone or changed since would be lost. So every successful run
also keeps its edition's ayat as JSONL in ``<store>/sources/<alias>/<edition>.jsonl`` (written
atomically; rewritten only when the edition changed), and a rebuild that cannot read the old
collection carries the editions over from there.

Next to each copy, ``<edition>.json`` records the edition's last successful run (where it was read from,
when it ended), which ``tafsir editions`` shows; ``tafsir remove --edition`` deletes both.

Only the embedded store keeps an archive: a Qdrant server keeps its own data, and its collections are
read back for a rebuild (``stored_ayat``).
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.builtin import BUILTIN_ORIGIN
from ingest.sources import Source, SourceError, read_source
from services.files import write_atomically

if TYPE_CHECKING:  # pragma: no cover
    from services.store.base import VectorStore

log = logging.getLogger(__name__)


class SourceArchive:
    """The editions behind one alias, as the JSONL files that ``read_source`` reads back."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def for_store(cls, store: VectorStore, alias: str) -> SourceArchive | None:
        """The archive of ``alias`` inside ``store`` (the store's own folder), or None for a server."""
        root = getattr(store, "archive_root", None)
        return cls(root / alias) if root is not None else None

    def path(self, edition: str) -> Path:
        return self.folder / f"{edition}.jsonl"

    def save(self, source: Source) -> None:
        """Keep ``source``'s ayat (every text of each); an unchanged edition is not rewritten."""
        rows = (
            {
                "edition": a.edition,
                "surah": a.surah,
                "ayah": a.ayah,
                "text": a.text,
                "translation": a.translation,
                "arabic": a.arabic,
                "translation_2019": a.translation_2019,
                "transliteration": a.transliteration,
                "translation_en": a.translation_en,
            }
            for a in source.ayat
        )
        data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
        path = self.path(source.edition)
        if path.is_file() and path.read_bytes() == data:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomically(path, data)

    def record_path(self, edition: str) -> Path:
        return self.folder / f"{edition}.json"

    def record_run(self, source: Source, finished_at: str) -> None:
        """Note the edition's last successful run: its source (a file as an absolute path) and when it ended."""
        origin = source.origin if source.origin == BUILTIN_ORIGIN else str(Path(source.origin).resolve())
        record = {"edition": source.edition, "source": origin, "ingested_at": finished_at}
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomically(self.record_path(source.edition), (json.dumps(record, ensure_ascii=False) + "\n").encode())

    def last_run(self, edition: str) -> dict | None:
        """What :meth:`record_run` noted for ``edition``, or None (never recorded, or unreadable)."""
        try:
            record = json.loads(self.record_path(edition).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def remove(self, edition: str) -> list[Path]:
        """Forget ``edition``: its copy and its run record. Returns the files deleted."""
        removed = []
        for path in (self.path(edition), self.record_path(edition)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
        return removed

    def editions(self) -> list[str]:
        return sorted(p.stem for p in self.folder.glob("*.jsonl")) if self.folder.is_dir() else []

    def load(self, edition: str) -> Source | None:
        """The archived edition, or None (logged) when it is missing or unreadable."""
        try:
            return read_source(self.path(edition), edition)
        except SourceError as exc:
            log.warning("the archived copy of edition %r cannot be read: %s", edition, exc)
            return None
