"""Indonesian BM25 sparse vectors: one normaliser and one encoder serve ingest (documents) and queries.

Qdrant's own BM25 (``qdrant_edge.Bm25``, the configuration a Qdrant server's ``qdrant/bm25``
inference takes) computes term-frequency weights client-side; every sparse vector in the collection
uses Qdrant's IDF modifier, which supplies the IDF half of BM25. Three sparse vectors per chunk,
fused with the dense one by Qdrant's RRF (choices measured on the dev sets, docs/BENCHMARKS.md):

- ``bm25``: the chunk's tafsir + the ayah's translation + the surah name;
- ``bm25_ctx``: the same plus ``neighbour_weight`` x the neighbouring ayat's vectors, because a
  story or a ruling spans several ayat and a question names words from all of them;
- ``bm25_tr``: the translation alone, so that a quoted translation finds its own ayah first.

Before Bm25, text is normalised toward the standard Indonesian (KBBI) spelling of Arabic loanwords,
so that the many transliterations of one word meet: Zakariyyâ / Zakaria, dzikir / zikir, shalat /
salat, Ka'bah / Kakbah. Rules are general for Indonesian transliteration; none names a word.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from functools import cached_property

from services.store.base import SPARSE, SPARSE_CONTEXT, SPARSE_TRANSLATION, SparseVector

# --- normaliser -------------------------------------------------------------------------------------

_APOSTROPHES = "'`\u2018\u2019\u02bf\u02be\u02bc\u00b4\u2032"  # ' ` ‘ ’ ʿ ʾ ʼ ´ ′
_APOSTROPHE_INSIDE = re.compile("(?<=\\w)[" + re.escape(_APOSTROPHES) + "]+(?=\\w)")  # Ka'bah -> Kabah
_APOSTROPHE = re.compile("[" + re.escape(_APOSTROPHES) + "]")
_REDUPLICATION = re.compile(r"\b(\w+)-\1\b")  # orang-orang -> orang
_WORD = re.compile(r"[a-z0-9]+")
_DOUBLED = re.compile(r"(.)\1+")
# Arabic digraphs and letters folded toward their KBBI spelling: shalat -> salat, hadits -> hadis,
# dzikir -> zikir, zhalim -> zalim, ridha -> rida, ghaib -> gaib, taqwa -> takwa.
_DIGRAPHS = (("sh", "s"), ("th", "t"), ("dh", "d"), ("dz", "z"), ("zh", "z"), ("ts", "s"), ("gh", "g"), ("q", "k"))


def _keeps_double(word: str, match: re.Match[str]) -> bool:
    """Doubled letters that Indonesian morphology makes, which must not collapse."""
    char, start, end = match.group(1), match.start(), match.end()
    if end - start != 2:
        return False
    rest = word[end:]
    return (
        (char == "g" and start > 0 and word[start - 1] == "n")  # tinggal, menggunakan
        or (char == "n" and rest in ("ya", "yalah", "yakah"))  # membangunnya
        or (char == "k" and rest in ("an", "anlah", "annya"))  # masukkan
        or (char == "a" and rest in ("n", "nya", "nlah"))  # keadaan, ketaatan
        or (char in "ie" and start == 1 and word[0] in "dk")  # diikuti, keempat
    )


@functools.lru_cache(maxsize=200_000)
def _fold_word(word: str) -> str:
    for digraph, letter in _DIGRAPHS:
        word = word.replace(digraph, letter)
    word = _DOUBLED.sub(lambda m: m.group(0) if _keeps_double(word, m) else m.group(1), word)  # zakariyya
    word = re.sub(r"(?<=[a-z])iy(?=[aiu])", "i", word)  # zakariya -> zakaria, qiyamah -> kiamah
    return re.sub(r"(?<=[a-z])uw(?=[aiu])", "u", word)


def normalise(text: str) -> str:
    """Lowercase, strip diacritics, drop apostrophes, undo reduplication, fold transliteration variants."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = _APOSTROPHE.sub(" ", _APOSTROPHE_INSIDE.sub("", text))
    text = _REDUPLICATION.sub(r"\1", text)
    return _WORD.sub(lambda m: _fold_word(m.group(0)), text)


# --- encoder ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bm25Settings:
    """BM25 parameters, chosen by measurement on the dev sets (docs/BENCHMARKS.md).

    ``avg_len`` is the mean document length in Bm25's own tokens (after stopwords) over the built-in
    corpus, as ``measure_avg_len`` computes it; the defaults are pinned by a test against it.
    Low k and b suit tafsir: long explanatory texts where repeating a word adds little.
    """

    language: str = "indonesian"
    k: float = 0.9
    b: float = 0.3
    avg_len: float = 38.6  # tafsir + translation + surah name
    translation_k: float = 1.2
    translation_b: float = 0.75
    translation_avg_len: float = 10.7
    neighbour_weight: float = 0.4

    @property
    def version(self) -> str:
        """Part of each point's sparse hash: a change here rewrites the sparse vectors, not the dense."""
        return "bm25-v2:" + json.dumps(asdict(self), sort_keys=True)


def _bm25(language: str, k: float = 1.2, b: float = 0.75, avg_len: float = 256.0):
    from qdrant_edge import Bm25, Bm25Config  # lazy: a server deployment needs only this class

    return Bm25(Bm25Config(language=language, ascii_folding=True, k=k, b=b, avg_len=avg_len))


def _to_vector(weights: Mapping[int, float]) -> SparseVector:
    indices = sorted(weights)
    return SparseVector(indices=indices, values=[float(weights[i]) for i in indices])


def document_text(tafsir: str, translation: str | None, surah_name: str) -> str:
    """What the main sparse vector indexes: tafsir, translation and surah name, normalised."""
    return normalise(f"{tafsir} {translation or ''} {surah_name}")


class SparseEncoder:
    def __init__(self, settings: Bm25Settings | None = None) -> None:
        self.settings = settings or Bm25Settings()

    @cached_property
    def _document(self):
        s = self.settings
        return _bm25(s.language, s.k, s.b, s.avg_len)

    @cached_property
    def _translation(self):
        s = self.settings
        return _bm25(s.language, s.translation_k, s.translation_b, s.translation_avg_len)

    def weights(self, text: str) -> dict[int, float]:
        """BM25 term weights of a document text made by ``document_text``."""
        vector = self._document.embed_document(text)
        return dict(zip(vector.indices, vector.values, strict=True))

    def vectors(
        self, chunk_text: str, translation: str | None, surah_name: str, neighbours: Iterable[Mapping[int, float]]
    ) -> dict[str, SparseVector]:
        """The three sparse vectors of one chunk; ``neighbours`` are the adjacent ayat's ``weights``."""
        own = self.weights(document_text(chunk_text, translation, surah_name))
        context = Counter(own)
        for neighbour in neighbours:
            for term, weight in neighbour.items():
                context[term] += self.settings.neighbour_weight * weight
        vectors = {SPARSE: _to_vector(own), SPARSE_CONTEXT: _to_vector(context)}
        if translation:
            vector = self._translation.embed_document(normalise(translation))
            vectors[SPARSE_TRANSLATION] = SparseVector(list(vector.indices), list(vector.values))
        return vectors

    def query(self, text: str) -> SparseVector:
        """The query's terms (weight 1 each), searched in every sparse vector: they share one tokenizer."""
        vector = self._document.embed_query(normalise(text))
        return SparseVector(indices=list(vector.indices), values=list(vector.values))


def measure_avg_len(texts: Iterable[str], language: str = "indonesian") -> float:
    """Mean length of ``texts`` in Bm25 tokens (after stopwords), recovered from b=0 term weights:
    with b=0 each weight is tf(k+1)/(tf+k), so tf = w k / (k + 1 - w)."""
    counter = _bm25(language, k=1.2, b=0.0)
    lengths = []
    for text in texts:
        values = counter.embed_document(text).values
        lengths.append(sum(w * 1.2 / (2.2 - w) for w in values))
    return sum(lengths) / len(lengths)
