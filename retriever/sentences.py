"""Whole sentences of Indonesian tafsir text, as spans of the text itself, for answers that quote them verbatim.

A sentence ends at ``.``, ``!``, ``?`` or an ellipsis, with any closing quotes and brackets after it, where
whitespace follows and the next sentence opens (after any opening quotes and brackets) with a capital letter:

- ``Muhammad saw. beserta keluarganya``: no end, the next word is lowercase (so also ``"...bumi!") yakni``,
  where the ayah's words in Jalalayn's parentheses end and its commentary goes on);
- ``(mereka yang sesat.) Yang dimaksud``: an end after the bracket, so the sentence keeps its ``)``;
- ``durhaka. "Maka barang siapa``: an end before the quote, so the next sentence keeps its opening ``"``;
- ``(Q.S. Al-Mukmin 16)``, ``(H.R. Baihaqi)``, ``Dr. Quraish``: no end after an abbreviation that a name
  follows, nor after an initial; ``Allah swt. Kalimat ...`` is an end (an honorific that closes a sentence);
- ``2:255``, ``a.s.``: no whitespace after the inner marks, so no end there;
- Arabic has no capitals: after ``.``, ``!``, ``?`` or ``؟`` any Arabic letter opens a sentence.

Why not a library: on this text sentencex (Wikimedia, rules for Indonesian) splits ``saw. | beserta`` and
``QS. | Al-Baqarah``, ends a sentence with the next one's opening quote, and never ends one before a closing
bracket (``sesat.) Yang`` stays one sentence); pysbd has no Indonesian; NLTK's Punkt has no Indonesian model.
Missing an end only makes a quoted sentence longer; a false end cuts one, which these rules avoid.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# The end of a sentence: its marks (the Arabic question mark too), then closing quotes and brackets, then
# whitespace, then the next one's opening quotes and brackets and a capital letter, checked in code
# (`opens_sentence`): a letter of a script without case (Arabic) counts as one.
_END = re.compile(r"""(?:[.!?؟]+|…)["'”’)\]]*(?=\s+[("'“‘\[]*(\w))""")
# Abbreviations that a name or a number follows (casefolded, inner dots kept): never a sentence's end.
NAME_ABBREVIATIONS = frozenset(
    {"q.s", "qs", "h.r", "hr", "dr", "drs", "prof", "ir", "k.h", "kh", "no", "nomor", "hlm", "jl", "st", "sdr"}
    | {"mr", "mrs", "ms", "vs", "cf", "vol", "pp", "ch"}  # and in English editions
)
_OPENERS = "(\"'“‘["
_WORD_BEFORE = re.compile(r"\S*\Z")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``[start, end)`` of each sentence of ``text`` in order; the whitespace between sentences is in none."""
    spans, start = [], _skip_space(text, 0)
    for end in _ends(text):
        spans.append((start, end))
        start = _skip_space(text, end)
    tail = text[start:].rstrip()
    if tail:
        spans.append((start, start + len(tail)))
    return spans


def whole_sentences(text: str, starts_whole: bool = True, ends_whole: bool = True) -> list[tuple[int, int]]:
    """The spans of ``text``'s sentences known to be whole: a text that may begin inside a sentence (a window of
    a long ayah's tafsir that is not its first) loses its first span, one that may end inside a sentence its last."""
    spans = sentence_spans(text)
    if not starts_whole:
        spans = spans[1:]
    if not ends_whole:
        spans = spans[:-1]
    return spans


def _ends(text: str) -> Iterator[int]:
    for match in _END.finditer(text):
        if opens_sentence(match.group(1)) and not _after_abbreviation(text, match.start(), match.group()):
            yield match.end()


def opens_sentence(letter: str) -> bool:
    """A capital, or a letter of a script that has no capitals (Arabic): a lowercase letter goes on a sentence."""
    return letter.isupper() or (letter.isalpha() and not letter.islower())


def _after_abbreviation(text: str, mark: int, marks: str) -> bool:
    """Whether the ``.`` at ``mark`` closes an abbreviation that a name follows, or an initial ("A. Hassan")."""
    if not marks.startswith(".") or marks.startswith(".."):
        return False
    word = _WORD_BEFORE.search(text, max(0, mark - 20), mark).group().lstrip(_OPENERS).casefold()
    return word in NAME_ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position
