"""Extractive answers quote whole sentences: how many quoted fragments are cut, and how many answers list an
ayah twice.

An extractive answer (no language model) is a heading, then one entry per quoted ayah,
``[n] QS Nama [s]: a — quote`` (``[n] QS Nama [s]: a (terjemahan) — quote`` when it quotes the ayah's
translation); a quote is one or more fragments joined by `` … ``. A fragment is **whole** when it occurs
verbatim in the text it quotes (passage n's tafsir, or the ayah's translation) and both its edges are sentence
edges of that text:

- it starts at the text's start (when the passage is its ayah's first window, or the translation), or right after
  the end of a sentence and the whitespace that follows it;
- it ends at the text's end (when the passage is its ayah's last window, or the translation), or at the end of a
  sentence;

where a sentence ends with ``.``, ``!``, ``?`` (or Arabic ``؟``) or ``…`` and any closing quotes or brackets,
followed by whitespace and then a capital letter or a letter of a script without case (Arabic), after any
opening quotes or brackets, and never with the period of an abbreviation that a name follows (``Q.S.``,
``H.R.``) nor of a one-letter initial. This is written here on its own, not imported from the answering core's
splitter (retriever/sentences.py), so that it checks the splitter instead of repeating it. Anything else is
**cut**: not verbatim, or an edge inside a sentence.

``measure(answerer, questions)`` answers each question with ``answerer`` and counts. Run as a script, it builds
an answerer without a language model over the store the settings name (TAFSIR_QDRANT_PATH: a copy of a complete
store, the embedded store admits one process) and prints one JSON object.

Usage: python bench/answers_fragments.py [--queries FILE] [--k 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEV_QUESTIONS = ROOT / "services" / "evaluation_questions.jsonl"  # the 40 natural questions shipped with the project

SEPARATOR = " … "
TRANSLATION_MARK = " (terjemahan)"
_MARKS = ".!?؟…"
_CLOSERS = "\"'”’)]"
_OPENERS = "(\"'“‘["
_NAME_ABBREVIATIONS = {"q.s", "qs", "h.r", "hr", "dr", "prof", "k.h", "no", "hlm", "mr", "mrs"}


def ends_sentence(text: str, end: int) -> bool:
    """Whether a sentence of ``text`` ends right before index ``end`` (and another follows)."""
    body = text[:end].rstrip(_CLOSERS)
    if not body or body[-1] not in _MARKS or not text[end : end + 1].isspace():
        return False
    following = text[end:].lstrip().lstrip(_OPENERS)
    first = following[:1]
    if not (first.isupper() or (first.isalpha() and not first.islower())):  # Arabic letters have no case
        return False
    if body.endswith(".") and not body.endswith(".."):
        words = body[:-1].split()
        word = words[-1].lstrip(_OPENERS).lower() if words else ""
        if word in _NAME_ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
            return False
    return True


def is_whole(fragment: str, text: str, text_starts_whole: bool = True, text_ends_whole: bool = True) -> bool:
    """Whether ``fragment`` occurs in ``text`` with both edges at sentence edges (any one occurrence)."""
    if not fragment or fragment != fragment.strip():
        return False
    position = text.find(fragment)
    while position >= 0:
        end = position + len(fragment)
        before = text[:position]
        starts = (position == 0 and text_starts_whole) or (
            before[-1:].isspace() and ends_sentence(text, len(before.rstrip()))
        )
        ends = (end == len(text) and text_ends_whole) or ends_sentence(text, end)
        if starts and ends:
            return True
        position = text.find(fragment, position + 1)
    return False


def check_answer(answer: Any) -> dict[str, Any]:
    """The fragments of one extractive answer: ``checked``, ``cut`` (each with why), and the ayat quoted twice."""
    entries = answer.text.split("\n\n")[1:]  # the heading first
    checked, cut, ayat, translations = 0, [], [], 0
    for entry in entries:
        number = int(entry[1 : entry.index("]")])
        passage = answer.passages[number - 1]
        rest = entry.removeprefix(f"[{number}] {passage.citation}")
        of_translation = rest.startswith(TRANSLATION_MARK)
        rest = rest.removeprefix(TRANSLATION_MARK)
        if not rest.startswith(" — "):
            raise ValueError(f"an entry of the answer is not '[n] citation — quote': {entry[:120]!r}")
        ayat.append((passage.surah, passage.ayah))
        if of_translation:
            translations += 1
            text, starts, ends = passage.translation or "", True, True
        else:
            text, starts, ends = passage.text, passage.chunk == 0, passage.chunk >= passage.chunks - 1
        for fragment in rest.removeprefix(" — ").split(SEPARATOR):
            checked += 1
            if fragment not in text:
                cut.append({"citation": passage.citation, "fragment": fragment, "why": "not verbatim"})
            elif not is_whole(fragment, text, starts, ends):
                cut.append({"citation": passage.citation, "fragment": fragment, "why": "an edge inside a sentence"})
    duplicated = sorted({a for a in ayat if ayat.count(a) > 1})
    return {
        "checked": checked,
        "cut": cut,
        "duplicated": duplicated,
        "entries": len(entries),
        "translations": translations,
    }


def _question(item: Any) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        return item["query"]
    return item.query


def measure(answerer: Any, questions: Iterable[Any]) -> dict[str, Any]:
    """Answer each question (a string, a ``{"query": ...}`` row or a query object) with ``answerer``
    (``retriever.answer.Answerer``) and count the fragments of its extractive answers."""
    report: dict[str, Any] = {
        "questions": 0,
        "extractive answers": 0,
        "entries": 0,
        "entries quoting the translation": 0,
        "fragments checked": 0,
        "fragments cut": 0,
        "answers with a duplicated ayah": 0,
        "cut examples": [],
    }
    took: list[float] = []
    for item in questions:
        report["questions"] += 1
        answer = answerer.answer(_question(item))
        if answer.mode != "extractive":
            continue
        result = check_answer(answer)
        took.append(answer.took_ms)
        report["extractive answers"] += 1
        report["entries"] += result["entries"]
        report["entries quoting the translation"] += result["translations"]
        report["fragments checked"] += result["checked"]
        report["fragments cut"] += len(result["cut"])
        report["answers with a duplicated ayah"] += bool(result["duplicated"])
        report["cut examples"].extend({"question": _question(item), **c} for c in result["cut"][:2])
    report["cut examples"] = report["cut examples"][:10]
    report["answer ms p50"] = round(statistics.median(took), 2) if took else None  # search included
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=Path, default=DEV_QUESTIONS, help="JSONL with a 'query' field a line")
    parser.add_argument("--k", type=int, default=5, help="passages an answer is made from (the API's default)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from retriever.answer import Answerer
    from retriever.search import SearchEngine, SearchOptions
    from services.settings import Settings

    questions = [json.loads(line) for line in args.queries.read_text(encoding="utf-8").splitlines() if line.strip()]
    settings = Settings(llm_base_url=None)  # extractive answers: no language model
    engine = SearchEngine(settings)
    try:
        answerer = Answerer(engine)
        options = SearchOptions(k=args.k)

        class WithK:  # the same answerer, asked with --k passages
            def answer(self, question: str):
                return answerer.answer(question, options=options)

        report = measure(WithK(), questions)
    finally:
        engine.store.close()
    print(json.dumps({"queries": str(args.queries), "k": args.k, **report}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
