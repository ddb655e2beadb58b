"""Indonesian BM25 sparse vectors: one normaliser and one encoder serve ingest (documents) and queries.

Qdrant's own BM25 (``qdrant_edge.Bm25``, the configuration a Qdrant server's ``qdrant/bm25``
inference takes) computes term-frequency weights client-side; every sparse vector in the collection
uses Qdrant's IDF modifier, which supplies the IDF half of BM25. Four sparse vectors per chunk,
fused with the dense one by Qdrant's RRF (choices measured on the dev sets, docs/BENCHMARKS.md).
Which texts of an ayah feed each of them is a ``SparseLayout``; the default
(``both-wordings+transliteration``, chosen on the dev files: docs/BENCHMARKS.md, "Sparse layout"):

- ``bm25``: the chunk's tafsir + the ayah's translation in both wordings + its transliteration + the surah name;
- ``bm25_ctx``: the same plus ``neighbour_weight`` x the neighbouring ayat's vectors, because a
  story or a ruling spans several ayat and a question names words from all of them;
- ``bm25_tr``: the translation alone (both wordings), so that a quoted translation finds its own ayah first;
- ``bm25_ar``: the ayah's Arabic text, normalised by services/arabic.py, so that a quoted span of an ayah (with
  diacritics or without, Uthmani or modern spelling) finds it first; Arabic queries are routed to it
  (services/models.py, ``language_fusions``).

A layout is chosen by name with ``TAFSIR_SPARSE_LAYOUT`` (``SPARSE_LAYOUTS`` below); a change rewrites
the stored sparse vectors at the next ``tafsir ingest`` (each point's ``sparse_hash``), embedding nothing.

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

from services import arabic
from services.store.base import SPARSE, SPARSE_ARABIC, SPARSE_CONTEXT, SPARSE_TRANSLATION, SparseVector

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


# --- layouts: which texts feed which sparse vector ----------------------------------------------------

# The texts of an ayah a sparse vector can index.
TAFSIR = "tafsir"  # the chunk's tafsir (a neighbouring ayah: its whole tafsir)
TRANSLATION_LEGACY = "translation_legacy"  # the translation as the source gives it (built-in: the older wording)
TRANSLATION_2019 = "translation_2019"  # the Ministry's 2019 wording
TRANSLITERATION = "transliteration"  # the Arabic in Latin letters
SURAH_NAME = "surah_name"
TRANSLATION_EN = "translation_en"  # an English translation (built-in: Pickthall's), for English questions
ARABIC = "arabic"  # the ayah in Arabic script (built-in: Tanzil's Uthmani text), read by services/arabic.py
TEXT_FIELDS = (TAFSIR, TRANSLATION_LEGACY, TRANSLATION_2019, TRANSLITERATION, SURAH_NAME, TRANSLATION_EN, ARABIC)

AyahTexts = Mapping[str, "str | None"]  # TEXT_FIELDS -> text (None or absent: the ayah has no such text)

# Mean length of each text over the built-in corpus in Bm25's own tokens (after stopwords), as
# ``measure_avg_len`` computes it; a test pins them. Lengths add up: a list's avg_len is the sum over its texts.
FIELD_AVG_LEN = {
    TAFSIR: 26.14,
    TRANSLATION_LEGACY: 10.70,
    TRANSLATION_2019: 10.33,
    TRANSLITERATION: 15.19,
    SURAH_NAME: 1.80,
    TRANSLATION_EN: 24.88,  # English read by the Indonesian analyser: no stopwords removed, hence longer
    ARABIC: 28.19,  # arabic.terms: each word (a word with a small alef in both spellings) and each adjacent pair
}


@dataclass(frozen=True)
class SparseList:
    """One sparse vector: the texts it indexes (joined into one BM25 document) and its BM25 parameters."""

    fields: tuple[str, ...]
    k: float
    b: float
    # Qdrant's analyser: None, Bm25Settings.language's; "arabic" for the Arabic text, whose words services/arabic.py
    # has normalised already (no stemmer, no stopwords: "لا" and "في" are half of a quote like "لا إكراه في الدين").
    language: str | None = None

    def __post_init__(self) -> None:
        unknown = [f for f in self.fields if f not in TEXT_FIELDS]
        if unknown or not self.fields:
            raise ValueError(f"a sparse list indexes some of {list(TEXT_FIELDS)}, got {list(self.fields)}")

    @property
    def avg_len(self) -> float:
        return round(sum(FIELD_AVG_LEN[f] for f in self.fields), 2)


@dataclass(frozen=True)
class SparseLayout:
    """What feeds each of the collection's sparse vectors. ``bm25_ctx`` also adds
    ``Bm25Settings.neighbour_weight`` x the neighbouring ayat's own ``bm25_ctx`` weights."""

    bm25: SparseList
    bm25_ctx: SparseList
    bm25_tr: SparseList
    bm25_ar: SparseList

    def lists(self) -> dict[str, SparseList]:
        return {
            SPARSE: self.bm25,
            SPARSE_CONTEXT: self.bm25_ctx,
            SPARSE_TRANSLATION: self.bm25_tr,
            SPARSE_ARABIC: self.bm25_ar,
        }


# Low k and b suit tafsir: long explanatory texts where repeating a word adds little. A translation is
# short and plain: BM25's usual parameters.
_TAFSIR_K, _TAFSIR_B = 0.9, 0.3
_TRANSLATION_K, _TRANSLATION_B = 1.2, 0.75
_BOTH_WORDINGS = (TRANSLATION_LEGACY, TRANSLATION_2019)
# The Arabic text of an ayah, searched mostly with a quote from it: the tafsir lists' low b, so that a span quoted
# from a long ayah is not outranked by a short one sharing a few of its words (bench/answers_arabic.py, 200 spans on
# each of three seeds: hit@3 0.97-0.975 with b 0.75, 0.98-0.985 with b 0.3, 0.97-0.98 with b 0).
ARABIC_LIST = SparseList((ARABIC,), 1.2, 0.3, language="arabic")


def _layout(combined: tuple[str, ...], translation: tuple[str, ...]) -> SparseLayout:
    main = SparseList(combined, _TAFSIR_K, _TAFSIR_B)
    return SparseLayout(main, main, SparseList(translation, _TRANSLATION_K, _TRANSLATION_B), ARABIC_LIST)


# Named layouts for TAFSIR_SPARSE_LAYOUT. To measure another, add it here, then
# `TAFSIR_SPARSE_LAYOUT=<name> tafsir ingest` (sparse vectors only) and `tafsir eval`.
SPARSE_LAYOUTS: dict[str, SparseLayout] = {
    # each list as before, with the translation in both wordings
    "both-wordings": _layout((TAFSIR, *_BOTH_WORDINGS, SURAH_NAME), _BOTH_WORDINGS),
    # the layout before the 2019 wording came in: the translation in the source's (older) wording only
    "older-wording": _layout((TAFSIR, TRANSLATION_LEGACY, SURAH_NAME), (TRANSLATION_LEGACY,)),
    # one list a field: bm25/bm25_ctx the tafsir (and the surah name), bm25_tr the translation
    "split-fields": _layout((TAFSIR, SURAH_NAME), _BOTH_WORDINGS),
    # both-wordings with the transliteration in the combined lists too
    "both-wordings+transliteration": _layout((TAFSIR, *_BOTH_WORDINGS, TRANSLITERATION, SURAH_NAME), _BOTH_WORDINGS),
    # the same with the English translation in bm25_tr, where English questions find their ayat (the route for
    # English in services/models.py gives bm25_tr and the dense list the weight; docs/BENCHMARKS.md, "English")
    "both-wordings+transliteration+english": _layout(
        (TAFSIR, *_BOTH_WORDINGS, TRANSLITERATION, SURAH_NAME), (*_BOTH_WORDINGS, TRANSLATION_EN)
    ),
}
DEFAULT_SPARSE_LAYOUT = "both-wordings+transliteration+english"  # also the default of TAFSIR_SPARSE_LAYOUT


# --- encoder ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bm25Settings:
    """BM25 configuration, chosen by measurement on the dev sets (docs/BENCHMARKS.md)."""

    language: str = "indonesian"
    layout: SparseLayout = SPARSE_LAYOUTS[DEFAULT_SPARSE_LAYOUT]
    neighbour_weight: float = 0.4
    stemmer: str = "none"  # one of STEMMERS; the system's default is TAFSIR_SPARSE_STEMMER's (sastrawi)

    @classmethod
    def named(cls, layout: str, stemmer: str = "none") -> Bm25Settings:
        """The settings with the layout ``TAFSIR_SPARSE_LAYOUT`` names; ValueError lists the names."""
        if layout not in SPARSE_LAYOUTS:
            raise ValueError(f"unknown sparse layout {layout!r}: expected one of {', '.join(SPARSE_LAYOUTS)}")
        if stemmer not in STEMMERS:
            raise ValueError(f"unknown sparse stemmer {stemmer!r}: expected one of {', '.join(STEMMERS)}")
        return cls(layout=SPARSE_LAYOUTS[layout], stemmer=stemmer)

    @property
    def version(self) -> str:
        """Part of each point's sparse hash: a change here rewrites the sparse vectors, not the dense."""
        lists = {name: {**asdict(lst), "avg_len": lst.avg_len} for name, lst in self.layout.lists().items()}
        settings = {"language": self.language, "neighbour_weight": self.neighbour_weight, "lists": lists}
        if self.stemmer != "none":  # absent when off: the vectors stored before stemming keep their hash
            settings["stemmer"] = {"name": self.stemmer, "lists": [SPARSE, SPARSE_CONTEXT]}
        return "bm25-v3:" + json.dumps(settings, sort_keys=True)


# Qdrant's Bm25 has no Indonesian stemmer (its Snowball languages lack one): without one, "membunuh",
# "dibunuh" and "bunuh" are three terms. "sastrawi" reduces each normalised word to its root first
# (PySastrawi: Nazief-Adriani with the KBBI root list), measured in docs/BENCHMARKS.md ("Question set").
STEMMERS = ("none", "sastrawi")


@functools.cache
def _sastrawi():
    from Sastrawi.Stemmer.StemmerFactory import StemmerFactory  # lazy: only when TAFSIR_SPARSE_STEMMER asks

    return StemmerFactory().create_stemmer()


@functools.lru_cache(maxsize=200_000)
def _sastrawi_word(word: str) -> str:
    return _sastrawi().stem(word) or word


def stem(text: str, stemmer: str) -> str:
    """``text`` (normalised) with each word reduced to its root by ``stemmer``."""
    return text if stemmer == "none" else _WORD.sub(lambda m: _sastrawi_word(m.group(0)), text)


def _bm25(language: str, k: float = 1.2, b: float = 0.75, avg_len: float = 256.0):
    from qdrant_edge import Bm25, Bm25Config, DisabledStemmer, StopwordsSet  # lazy: a server needs only this class

    if language == "arabic":  # words normalised by services/arabic.py: each one counts, as written
        config = Bm25Config(
            language=language,
            stemmer=DisabledStemmer(),
            stopwords=StopwordsSet(languages=set(), custom=set()),
            k=k,
            b=b,
            avg_len=avg_len,
        )
        return Bm25(config)
    return Bm25(Bm25Config(language=language, ascii_folding=True, k=k, b=b, avg_len=avg_len))


def _to_vector(weights: Mapping[int, float]) -> SparseVector:
    indices = sorted(weights)
    return SparseVector(indices=indices, values=[float(weights[i]) for i in indices])


def document_text(texts: AyahTexts, fields: Iterable[str]) -> str:
    """The BM25 document of ``fields`` of one ayah: their texts in that order, normalised (the Arabic text by
    services/arabic.py, every spelling of its words; the others by ``normalise``)."""
    fields = tuple(fields)
    latin = normalise(" ".join(text for f in fields if f != ARABIC and (text := texts.get(f))))
    if ARABIC not in fields or not texts.get(ARABIC):
        return latin
    return " ".join(part for part in (latin, " ".join(arabic.terms(texts[ARABIC] or ""))) if part)


class SparseEncoder:
    def __init__(self, settings: Bm25Settings | None = None) -> None:
        self.settings = settings or Bm25Settings()
        self._encoders: dict[tuple[float, float, float], object] = {}

    def _encoder(self, lst: SparseList):
        key = (lst.language or self.settings.language, lst.k, lst.b, lst.avg_len)
        if key not in self._encoders:
            self._encoders[key] = _bm25(*key)
        return self._encoders[key]

    @cached_property
    def _query(self):
        return _bm25(self.settings.language)

    @cached_property
    def _arabic_query(self):
        return _bm25("arabic")

    def _weights(self, lst: SparseList, texts: AyahTexts, stemmer: str = "none") -> dict[int, float]:
        text = stem(document_text(texts, lst.fields), stemmer)
        if not text.strip():
            return {}
        vector = self._encoder(lst).embed_document(text)
        return dict(zip(vector.indices, vector.values, strict=True))

    def neighbour_weights(self, texts: AyahTexts) -> dict[int, float]:
        """An ayah's own ``bm25_ctx`` weights, which its neighbours add a share of."""
        return self._weights(self.settings.layout.bm25_ctx, texts, self.settings.stemmer)

    def vectors(self, texts: AyahTexts, neighbours: Iterable[Mapping[int, float]] = ()) -> dict[str, SparseVector]:
        """The sparse vectors of one chunk; ``neighbours`` are the adjacent ayat's ``neighbour_weights``.

        A list whose texts the ayah lacks (a source without a translation) gets no vector.
        """
        own: dict[tuple[SparseList, str], dict[int, float]] = {}  # the same texts, parameters, stemmer: one
        vectors = {}
        for name, lst in self.settings.layout.lists().items():
            # The translation list keeps the words as written, so that a quoted translation finds its own
            # ayah first; the others are stemmed (when a stemmer is set) to meet a question's other forms.
            stemmer = "none" if name in (SPARSE_TRANSLATION, SPARSE_ARABIC) else self.settings.stemmer
            if (lst, stemmer) not in own:
                own[lst, stemmer] = self._weights(lst, texts, stemmer)
            weights = own[lst, stemmer]
            if name == SPARSE_CONTEXT:
                context = Counter(weights)
                for neighbour in neighbours:
                    for term, weight in neighbour.items():
                        context[term] += self.settings.neighbour_weight * weight
                weights = dict(context)
            if weights:
                vectors[name] = _to_vector(weights)
        return vectors

    def query(self, text: str) -> SparseVector:
        """The query's terms (weight 1 each), searched in every sparse vector: they share one tokenizer.

        With a stemmer, the terms as written and their roots: the roots meet the stemmed lists, the words
        as written the translation list (which is not stemmed).

        A query with Arabic letters also carries its Arabic words as ``bm25_ar`` indexes them (services/arabic.py):
        the lists share one index space, and the Latin lists hold no Arabic words, nor ``bm25_ar`` Latin ones."""
        original = text
        text = normalise(text)
        if self.settings.stemmer != "none":
            text = f"{text} {stem(text, self.settings.stemmer)}"
        vector = self._query.embed_query(text)
        weights = dict(zip(vector.indices, vector.values, strict=True))
        if arabic.has_arabic(original):
            words = self._arabic_query.embed_query(" ".join(arabic.terms(original)))
            weights.update(zip(words.indices, words.values, strict=True))
        return _to_vector(weights)


def measure_avg_len(texts: Iterable[str], language: str = "indonesian") -> float:
    """Mean length of ``texts`` in Bm25 tokens (after stopwords), recovered from b=0 term weights:
    with b=0 each weight is tf(k+1)/(tf+k), so tf = w k / (k + 1 - w)."""
    counter = _bm25(language, k=1.2, b=0.0)
    lengths = []
    for text in texts:
        values = counter.embed_document(text).values
        lengths.append(sum(w * 1.2 / (2.2 - w) for w in values))
    return sum(lengths) / len(lengths)
