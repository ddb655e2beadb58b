"""The language of a query: Indonesian, English, Arabic or another, for routing and the not-found decision.

Arabic is told by its script (a query mostly of Arabic letters); the Latin-script rest by py3langid
(langid.py's model, shipped in the package: no download), restricted to the languages the project serves.
Malay is folded into Indonesian: the two share most of their vocabulary and py3langid confuses them on short
questions, while the search treats both the same.
"""

from __future__ import annotations

import functools
import unicodedata
from typing import Literal

QueryLanguage = Literal["id", "en", "ar"]
# The languages py3langid chooses among; a wider set only adds wrong answers on short questions.
_CANDIDATES = ("id", "ms", "en")
_FOLD = {"ms": "id"}


@functools.cache
def _identifier():
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True)
    identifier.set_languages(list(_CANDIDATES))
    return identifier


def arabic_share(text: str) -> float:
    """The share of the text's letters that are Arabic letters (0 for a text without letters)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    return sum(1 for c in letters if "ARABIC" in unicodedata.name(c, "")) / len(letters)


def detect_language(text: str) -> QueryLanguage:
    """``ar`` for a text mostly in Arabic script, else ``en`` or ``id`` (Indonesian, Malay folded in)."""
    if arabic_share(text) >= 0.5:
        return "ar"
    language, _ = _identifier().classify(text)
    return _FOLD.get(language, language)  # type: ignore[return-value]
