"""Chunking: token-exact windows of the model's own tokenizer, cut from the original text."""

from __future__ import annotations

import itertools
import uuid

import pytest

from ingest.builtin import read_builtin
from ingest.chunking import ChunkingParams, chunk_ayat, join_chunks, point_id, windows
from ingest.sources import Ayah
from services.embedding import Embedder
from services.settings import Settings


@pytest.fixture(scope="module")
def default_embedder() -> Embedder:
    return Embedder(Settings(_env_file=None))


@pytest.fixture(scope="module")
def builtin_chunks(default_embedder):
    ayat = read_builtin().ayat
    params = ChunkingParams(default_embedder.max_tokens, 64, default_embedder.reserved_tokens)
    return ayat, chunk_ayat(ayat, default_embedder.tokenizer, params)


def test_default_model_limit_is_512_with_two_special_tokens_and_the_prompt(default_embedder):
    assert default_embedder.max_tokens == 512
    assert default_embedder.special_tokens == 2  # <s> ... </s>
    assert default_embedder.reserved_tokens == 4  # and E5's "passage:" (▁passage, :)


def test_no_builtin_chunk_exceeds_the_model_limit(default_embedder, builtin_chunks):
    _, chunks = builtin_chunks
    # What the model sees: the prompt, the chunk, the special tokens.
    counts = default_embedder.tokenizer.encode_batch(["passage: " + c.text for c in chunks])
    too_long = [(c.surah, c.ayah, c.chunk, len(e.ids)) for c, e in zip(chunks, counts, strict=True) if len(e.ids) > 512]
    assert too_long == []
    assert all(len(e.ids) == c.tokens for c, e in zip(chunks, counts, strict=True))


def test_chunks_of_each_builtin_ayah_cover_all_of_its_text(builtin_chunks):
    ayat, chunks = builtin_chunks
    by_ayah: dict[tuple[int, int], list] = {}
    for c in chunks:
        by_ayah.setdefault((c.surah, c.ayah), []).append(c)
    assert len(by_ayah) == 6236
    for ayah in ayat:
        covered = [False] * len(ayah.text)
        for c in by_ayah[ayah.surah, ayah.ayah]:
            assert ayah.text[c.char_start : c.char_end] == c.text
            for i in range(c.char_start, c.char_end):
                covered[i] = True
        missing = [ch for ch, ok in zip(ayah.text, covered, strict=True) if not ok and not ch.isspace()]
        assert missing == [], (ayah.surah, ayah.ayah)


def test_long_ayat_are_split_and_short_ones_are_whole(builtin_chunks):
    ayat, chunks = builtin_chunks
    multi = {(c.surah, c.ayah) for c in chunks if c.chunks > 1}
    assert 15 < len(multi) < 40  # 24 ayat exceed 512 tokens of multilingual-e5-small
    singles = [c for c in chunks if c.chunks == 1]
    texts = {(a.surah, a.ayah): a.text for a in ayat}
    assert all(c.text == texts[c.surah, c.ayah] for c in singles)


def test_windows_overlap_and_prefer_sentence_ends(default_embedder):
    sentence = "Lafal ini merupakan kalimat berita yang dimaksud sebagai pujian kepada Allah Taala. "
    text = (sentence * 60).strip()
    params = ChunkingParams(limit=128, overlap=16, reserved_tokens=2)
    encoding = default_embedder.tokenizer.encode(text, add_special_tokens=False)
    spans = windows(text, encoding.offsets, params)
    assert len(spans) > 3
    for (s1, e1), (s2, _) in itertools.pairwise(spans):
        assert e1 - s1 <= params.budget
        assert s2 < e1  # consecutive windows overlap
        assert e1 - s2 >= params.overlap
        assert text[encoding.offsets[e1 - 1][1] - 1] == "."  # cut after a full stop


def test_a_word_is_never_split_between_windows(default_embedder):
    text = " ".join(["perkataan", "menyembunyikannya", "ketidakadilan"] * 300)
    params = ChunkingParams(limit=64, overlap=8, reserved_tokens=2)
    ayah = Ayah("test", 2, 1, text)
    words = set(text.split())
    for chunk in chunk_ayat([ayah], default_embedder.tokenizer, params):
        assert chunk.tokens <= 64
        assert set(chunk.text.split()) <= words


def test_point_ids_are_uuid5_of_edition_surah_ayah_chunk():
    first = point_id("id.jalalayn", 2, 255, 0)
    assert first == point_id("id.jalalayn", 2, 255, 0)
    assert uuid.UUID(first).version == 5
    assert len({first, point_id("id.jalalayn", 2, 255, 1), point_id("other", 2, 255, 0)}) == 3


def test_join_chunks_rebuilds_the_ayah_text(default_embedder):
    text = " ".join(f"Kalimat nomor {i} menjelaskan tafsir ayat ini dengan panjang." for i in range(200))
    params = ChunkingParams(limit=100, overlap=20, reserved_tokens=2)
    chunks = chunk_ayat([Ayah("test", 2, 2, text)], default_embedder.tokenizer, params)
    assert len(chunks) > 5
    assert join_chunks([(c.char_start, c.char_end, c.text) for c in chunks]) == text


def test_limit_is_the_models_maximum_where_smaller(tmp_path, default_embedder):
    small = Embedder(Settings(_env_file=None, chunk_tokens=1024))
    assert small.max_tokens == 512  # position embeddings cap it
    assert Embedder(Settings(_env_file=None, chunk_tokens=256, chunk_overlap=32)).max_tokens == 256


def test_each_chunk_is_embedded_behind_its_ayahs_translation_and_still_fits(default_embedder):
    ayat = read_builtin().ayat
    params = ChunkingParams(default_embedder.max_tokens, 64, default_embedder.reserved_tokens, translation_heading=True)
    chunks = chunk_ayat(ayat, default_embedder.tokenizer, params)
    translations = {(a.surah, a.ayah): a.translation for a in ayat}
    whole = [c.heading == translations[c.surah, c.ayah].strip() for c in chunks]
    assert all(translations[c.surah, c.ayah].startswith(c.heading) for c in chunks)
    assert 0 < whole.count(False) < 50  # only the few translations over half the budget (254 tokens) are cut
    seen = default_embedder.tokenizer.encode_batch(["passage: " + c.model_text for c in chunks])
    assert [len(e.ids) for e in seen] == [c.tokens for c in chunks]
    assert max(c.tokens for c in chunks) <= 512


def test_a_translation_longer_than_half_the_budget_is_cut_in_the_heading_only(default_embedder):
    sentence = "Dan janganlah kamu mengikuti langkah-langkah setan, sesungguhnya setan itu musuh yang nyata. "
    ayah = Ayah("test.long", 2, 168, sentence * 12, translation=sentence * 40)
    params = ChunkingParams(256, 32, default_embedder.reserved_tokens, translation_heading=True)
    chunks = chunk_ayat([ayah], default_embedder.tokenizer, params)
    assert join_chunks([(c.char_start, c.char_end, c.text) for c in chunks]).strip() == ayah.text.strip()
    heading = chunks[0].heading
    assert ayah.translation.startswith(heading) and len(heading) < len(ayah.translation)
    assert not heading.endswith(" ")  # cut at a word boundary
    for chunk in chunks:
        assert len(default_embedder.tokenizer.encode("passage: " + chunk.model_text).ids) == chunk.tokens <= 256
