"""Checking a generated answer's citations against the passages the model was given.

A model may cite a passage by its number (``[2]``) or by the ayah (``QS Al-Baqarah [2]: 255``, a range
``QS Al-Baqarah [2]: 255-256``, ``QS 2:255``, or ``[2]: 255`` after a surah's name). A citation counts only if
it refers to what the model was given: a number among the passages, an ayah (every ayah of a range) among
theirs, and a surah name, when one is written, that is the name of the numbered surah. Others are cut out of
the text and reported.

The checker reads text as it streams: ``feed`` returns what is safe to show now, holding back a tail that
may still become a citation ("QS Al-Baqarah [2]: 25" may go on with "5"), and ``finish`` the rest; the text
shown while streaming is, piece by piece, exactly the checked text. Partial matching comes from the
``regex`` package (``partial=True``), which ``re`` lacks.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field

import regex

from services.quran import SURAH_COUNT, citation
from services.quran import surah as surah_info

_NAME = r"[^\W\d_][\w'’‘`\-]*(?:[ \-][^\W\d_][\w'’‘`\-]*){0,3}"
_RANGE = r"(?:\s*[-–]\s*(?P<last>\d{1,3}))?"
# Tried left to right at each position: an ayah citation before a bare passage number, so that the "[2]" of
# "QS Al-Baqarah [2]: 255" is read as the surah, not as passage 2.
CITATION = regex.compile(
    rf"QS\.?\s*(?:(?P<name>{_NAME})\s*)?\[(?P<surah>\d{{1,3}})\]\s*:\s*(?P<ayah>\d{{1,3}}){_RANGE}"
    rf"|QS\.?\s*(?P<surah>\d{{1,3}})\s*:\s*(?P<ayah>\d{{1,3}}){_RANGE}"
    rf"|\[(?P<surah>\d{{1,3}})\]\s*:\s*(?P<ayah>\d{{1,3}}){_RANGE}"
    r"|\[(?P<number>\d{1,3})\]",
    regex.UNICODE,
)
# The longest text a citation can span; a tail longer than this cannot still become one.
_LONGEST = 96


@dataclass(frozen=True)
class CitedPassage:
    """What a citation may refer to: a passage's number in the prompt and its ayah."""

    number: int
    surah: int
    ayah: int


@dataclass(frozen=True)
class InvalidCitation:
    text: str
    reason: str


@dataclass
class CitationChecker:
    """Feed it an answer's text (whole, or delta by delta as it streams) and show what it returns."""

    passages: Sequence[CitedPassage]
    invalid: list[InvalidCitation] = field(default_factory=list)
    cited: list[int] = field(default_factory=list)  # passage numbers, in the order first cited
    _buffer: str = ""
    _done: int = 0  # characters of the buffer already read (returned, or cut out)
    _shown: list[str] = field(default_factory=list)

    def feed(self, delta: str) -> str:
        self._buffer += delta
        return self._show(self._drain(final=False))

    def finish(self) -> str:
        return self._show(self._drain(final=True))

    @property
    def text(self) -> str:
        """Everything returned so far."""
        return "".join(self._shown)

    def _show(self, text: str) -> str:
        self._shown.append(text)
        return text

    def check(self, text: str) -> str:
        """The whole of ``text``, checked."""
        return self.feed(text) + self.finish()

    # --- internals ----------------------------------------------------------------------------------------

    def _drain(self, final: bool) -> str:
        out: list[str] = []
        while True:
            match = CITATION.search(self._buffer, self._done)
            # While streaming, nothing from where a citation may still be forming is shown yet.
            pending = len(self._buffer) if final else self._pending_start()
            if match is not None and not final and match.end() + 2 > len(self._buffer):
                pending = min(pending, self._back_over_spacing(match.start()))  # _cut looks two characters on
            if match is None or match.start() >= pending:
                out.append(self._buffer[self._done : pending])
                self._done = pending
                return "".join(out)
            reason = self._reason(match)
            if reason is None:
                out.append(self._buffer[self._done : match.end()])
                self._done = match.end()
            else:
                self.invalid.append(InvalidCitation(text=match.group(0), reason=reason))
                out.append(self._cut(match, final))

    def _pending_start(self) -> int:
        """The first place from which the unread text may still be, or grow into, a citation; else its end."""
        start = max(self._done, len(self._buffer) - _LONGEST)
        pending = len(self._buffer)
        for at in range(start, len(self._buffer)):
            if self._buffer[at] in "Q[" and CITATION.fullmatch(self._buffer, at, partial=True) is not None:
                pending = at
                break
        return self._back_over_spacing(pending)

    def _back_over_spacing(self, at: int) -> int:
        """``at``, moved back over the spaces and bracket before it: an invalid citation is cut out with them."""
        while at > self._done and self._buffer[at - 1] in " (":
            at -= 1
        return at

    def _cut(self, match: regex.Match, final: bool) -> str:
        """The text before an invalid citation, which is dropped with the space or empty brackets around it."""
        before = self._buffer[self._done : match.start()]
        end = match.end()
        after = self._buffer[end : end + 1]
        if before.endswith("(") and after == ")":
            before, end = before[:-1], end + 1
            after = self._buffer[end : end + 1]
        if before.endswith(" ") and (after in (" ", ".", ",", ";", ":", ")") or (final and not after)):
            before = before[:-1]
        self._done = end
        return before

    def _reason(self, match: regex.Match) -> str | None:
        """None for a citation of what the model was given; else why not."""
        if match.group("number") is not None:
            number = int(match.group("number"))
            if any(p.number == number for p in self.passages):
                self._cite(number)
                return None
            return f"there is no passage [{number}]: the answer was given {len(self.passages)}"
        surah = int(match.group("surah"))
        first = int(match.group("ayah"))
        last = int(match.group("last")) if match.group("last") is not None else first
        if not 1 <= surah <= SURAH_COUNT:
            return f"there is no surah {surah}"
        name = match.group("name")
        if name is not None and not _same_surah_name(name, surah_info(surah).name):
            return f"surah {surah} is {surah_info(surah).name}, not {name}"
        if last < first:
            return f"the range {first}-{last} is reversed"
        numbers = []
        for ayah in range(first, last + 1):
            given = [p.number for p in self.passages if (p.surah, p.ayah) == (surah, ayah)]
            if not given:
                return f"{citation(surah, ayah)} is not among the passages given"
            numbers.extend(given)
        for number in numbers:
            self._cite(number)
        return None

    def _cite(self, number: int) -> None:
        if number not in self.cited:
            self.cited.append(number)


def _letters(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalpha())


def _same_surah_name(written: str, actual: str) -> bool:
    """Transliterations vary (Al-Baqarah, Al Baqoroh, Ali 'Imran / Ali Imron): letters alone, closely alike."""
    a, b = _letters(written), _letters(actual)
    return a == b or difflib.SequenceMatcher(None, a, b).ratio() >= 0.75
