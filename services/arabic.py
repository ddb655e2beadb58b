"""Arabic text as the search compares it: one spelling for the many ways an ayah is written and typed.

An ayah is stored as the Tanzil Uthmani text: full diacritics, Quranic annotation marks, alef wasla, small
(dagger) alef, tatweel. A person quotes it with all of that, with some of it (a copy stripped of harakat keeps
the small alef; one stripped of every combining mark drops it) or in plain modern spelling ("لا إكراه في الدين").
``normalise`` brings each to one form:

- harakat, shadda, sukun, tanwin, maddah and hamza marks, Quranic annotation marks (U+06D6-U+06ED: small high
  ligatures, pause marks, small waw/yeh, sajdah), tatweel: removed;
- alef wasla and hamzated alefs (ٱ أ إ آ) -> ا; alef maqsura ى -> ي; ta marbuta ة -> ه;
  hamza on a seat (ؤ ئ) -> its seat (و ي); a bare hamza ء is dropped (Uthmani ءامنوا, modern آمنوا -> امنوا);
- the small alef, which Uthmani writes where modern spelling has a full alef (ٱلْعَـٰلَمِينَ, العالمين) or none
  (ٱلرَّحْمَـٰنِ, الرحمن): a word holding one yields both spellings (``terms``), so every copy meets it.

``terms`` adds each pair of adjacent words as a term: a quote finds the ayah it was copied from by its word order,
not only by its words.

Hand-written rather than taken from pyarabic (araby.strip_tashkeel, normalize_hamza): pyarabic is GPL-3.0, which
would bind this MIT project's distribution, and the rules above are a table and three regular expressions.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata

SMALL_ALEF = "\u0670"  # ARABIC LETTER SUPERSCRIPT ALEF (dagger alef)
ALEF = "\u0627"
TATWEEL = "\u0640"
PAIR_JOINER = TATWEEL  # between the two words of a pair term (``terms``)
# Combining marks and Quranic signs that carry no letter: Arabic signs above (U+0610-U+061A), harakat to
# wavy hamza below (U+064B-U+065F), Quranic annotation marks (U+06D6-U+06ED), extended Arabic marks (U+08D3-U+08FF).
_MARKS = re.compile("[\u0610-\u061a\u064b-\u065f\u06d6-\u06ed\u08d3-\u08ff" + TATWEEL + "]")
_LETTERS = str.maketrans(
    {
        "\u0671": ALEF,  # ٱ alef wasla
        "\u0622": ALEF,  # آ alef with madda
        "\u0623": ALEF,  # أ alef with hamza above
        "\u0625": ALEF,  # إ alef with hamza below
        "\u0672": ALEF,  # ٲ alef with wavy hamza above
        "\u0673": ALEF,  # ٳ alef with wavy hamza below
        "\u0649": "\u064a",  # ى alef maqsura -> ي
        "\u06cc": "\u064a",  # ی Farsi yeh -> ي
        "\u06a9": "\u0643",  # ک keheh -> ك
        "\u0629": "\u0647",  # ة ta marbuta -> ه
        "\u0624": "\u0648",  # ؤ -> و
        "\u0626": "\u064a",  # ئ -> ي
        "\u0621": None,  # ء bare hamza: dropped
    }
)
# A word: a run of Arabic letters (U+0620-U+064A, U+066E-U+06D3 and the small alef), after the marks are gone.
_WORD = re.compile("[\u0620-\u064a\u066e-\u06d3" + SMALL_ALEF + "]+")
_ARABIC_LETTER = re.compile("[\u0620-\u064a\u066e-\u06d3]")


def has_arabic(text: str) -> bool:
    """Whether ``text`` holds at least one Arabic letter."""
    return _ARABIC_LETTER.search(text) is not None


def _fold(word: str, small_alef: str) -> str:
    return word.replace(SMALL_ALEF, small_alef).translate(_LETTERS)


@functools.lru_cache(maxsize=100_000)
def spellings(word: str) -> tuple[str, ...]:
    """The normalised spellings of one word (marks already removed): one, or two when it holds a small alef
    (read as a full alef, and left out)."""
    forms = [_fold(word, ALEF)]
    if SMALL_ALEF in word:
        forms.append(_fold(word, ""))
    return tuple(dict.fromkeys(form for form in forms if form))


def _raw_words(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", text)  # presentation forms (ﻻ) to letters
    return _WORD.findall(_MARKS.sub("", text))


def words(text: str) -> list[str]:
    """The words of ``text`` in one normalised spelling each (a small alef read as a full alef)."""
    return [forms[0] for w in _raw_words(text) if (forms := spellings(w))]


def normalise(text: str) -> str:
    """``text``'s Arabic words, normalised, joined by single spaces (anything not Arabic is left out)."""
    return " ".join(words(text))


def terms(text: str, pairs: bool = True) -> list[str]:
    """What the Arabic sparse vector indexes of ``text``: every spelling of each word, in order, then each pair of
    adjacent words (every pairing of their spellings) as one term, so that a quote's word order counts: a span
    copied from an ayah shares its pairs with that ayah alone far more often than its words. A pair is joined by a
    tatweel, which normalisation removes from words: no pair can equal a word."""
    forms = [spellings(w) for w in _raw_words(text)]
    single = [form for word in forms for form in word]
    if not pairs:
        return single
    pairs_of = itertools.pairwise(forms)
    return single + [f"{a}{PAIR_JOINER}{b}" for first, second in pairs_of for a in first for b in second]
