"""The source archive: a copy of every edition inside the embedded store, read back for a rebuild."""

from __future__ import annotations

import dataclasses

from ingest.archive import SourceArchive
from ingest.builtin import read_builtin
from ingest.sources import Source


def short_source(edition: str = "t.archive", **changes) -> Source:
    ayat = tuple(dataclasses.replace(a, edition=edition, **changes) for a in read_builtin().ayat if a.surah == 112)
    return Source(edition, "test", ayat)


def test_an_archived_edition_reads_back_as_it_was_including_missing_fields(tmp_path):
    archive = SourceArchive(tmp_path / "sources")
    with_all = short_source()
    bare = short_source("t.bare", translation=None, arabic=None, translation_2019=None, transliteration=None)
    archive.save(with_all)
    archive.save(bare)
    assert archive.editions() == ["t.archive", "t.bare"]
    assert archive.load("t.archive").ayat == with_all.ayat
    assert archive.load("t.bare").ayat == bare.ayat


def test_an_unchanged_edition_is_not_rewritten_and_a_changed_one_is(tmp_path):
    archive = SourceArchive(tmp_path / "sources")
    archive.save(short_source())
    path = archive.path("t.archive")
    written = path.stat().st_ino
    archive.save(short_source())
    assert path.stat().st_ino == written
    edited = short_source(text="tafsir baru")
    archive.save(edited)
    assert path.stat().st_ino != written and archive.load("t.archive").ayat == edited.ayat


def test_a_missing_or_damaged_copy_is_skipped_not_fatal(tmp_path):
    archive = SourceArchive(tmp_path / "sources")
    assert archive.editions() == [] and archive.load("t.none") is None
    archive.folder.mkdir(parents=True)
    archive.path("t.cut").write_text('{"surah": 112, "ayah": 1, "text": ')
    assert archive.load("t.cut") is None


def test_the_archive_lives_in_the_embedded_stores_own_folder_one_per_alias_and_a_server_keeps_none(tmp_path):
    from qdrant_client import QdrantClient

    from services.store.edge import EdgeStore
    from services.store.server import ServerStore

    # The store's folder, not the settings' default path: a pipeline handed a store elsewhere archives there.
    edge = EdgeStore(tmp_path / "elsewhere")
    try:
        assert SourceArchive.for_store(edge, "tafsir").folder == tmp_path / "elsewhere" / "sources" / "tafsir"
    finally:
        edge.close()
    server = ServerStore(QdrantClient(":memory:"), ":memory:")
    assert SourceArchive.for_store(server, "tafsir") is None
