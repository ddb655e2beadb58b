"""Checks the shipped question set (services/question_set/): every label names an ayah that exists, every
question has an ayah that answers it (grade 2), every label shares a content word with its question (or its
topic, or its passage), each question sits in the part its qid's hash assigns, and no question repeats.
Prints one JSON object (the counts and every problem, each naming the file, line and qid); exit 1 on a problem.

A content word is a BM25 term of the project's own analysis (services/sparse.py: the normaliser, stemmer and
stopwords) that at most 10 % of the corpus's ayat contain, as tests/test_evaluation.py checks the built-in
questions. A label passes when its ayah's terms (tafsir + translation + surah name) include a content word
of the question or of its ``topic`` (the labeller's summary of what the labelled ayat say), or when it lies
within two ayat of a label that does (a story or a ruling runs on over its passage), or when ``notes`` says
why it answers: ``{"surah:ayah" or "surah:first-last": "..."}``.

Usage: python bench/check_questions.py [FILE ...]   (default: both parts of the shipped set)
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONTENT_WORD_MAX_SHARE = 0.10
PASSAGE_REACH = 2  # ayat either side of a label that shares a word
KINDS = ("ruling", "story", "creed", "ethics", "broad", "keyword")


def note_keys(key: str) -> list[tuple[int, int]]:
    """ "2:8" or "2:8-14" -> the ayat a note speaks for."""
    surah, _, verses = key.partition(":")
    first, _, last = verses.partition("-")
    return [(int(surah), ayah) for ayah in range(int(first), int(last or first) + 1)]


@functools.cache
def corpus_terms() -> tuple[dict[tuple[int, int], set[int]], set[int]]:
    """Each built-in ayah's BM25 terms, and the terms too common to count as content."""
    from ingest.builtin import read_builtin
    from services.quran import surah
    from services.sparse import SURAH_NAME, TAFSIR, TRANSLATION_LEGACY, SparseEncoder
    from services.store.base import SPARSE

    encoder = SparseEncoder()
    terms = {
        (a.surah, a.ayah): set(
            encoder.vectors({TAFSIR: a.text, TRANSLATION_LEGACY: a.translation, SURAH_NAME: surah(a.surah).name})[
                SPARSE
            ].indices
        )
        for a in read_builtin().ayat
    }
    frequency = Counter(term for ayah_terms in terms.values() for term in ayah_terms)
    common = {term for term, n in frequency.items() if n > CONTENT_WORD_MAX_SHARE * len(terms)}
    return terms, common


def check(paths: list[Path]) -> dict:
    from services.evaluation import QueryFileError, load_queries, part_of
    from services.sparse import SparseEncoder

    terms, common = corpus_terms()
    encoder = SparseEncoder()
    problems: list[str] = []
    counts: dict[str, dict] = {}
    seen_qids: dict[str, str] = {}
    seen_queries: dict[str, str] = {}
    for path in paths:
        try:
            load_queries(path)  # the format, and that every labelled ayah exists
        except QueryFileError as exc:
            problems.append(str(exc))
            continue
        kinds: Counter[str] = Counter()
        labels = 0
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            where = f"{path}:{number}: {row['qid']}"
            labels += len(row["relevant"])
            kinds[row.get("kind", "?")] += 1
            if row.get("kind") not in KINDS:
                problems.append(f"{where}: field 'kind' must be one of {', '.join(KINDS)}")
            if not isinstance(row.get("topic"), str) or not row["topic"].strip():
                problems.append(f"{where}: field 'topic' must say what the labelled ayat answer")
            if row["qid"] in seen_qids:
                problems.append(f"{where}: qid also in {seen_qids[row['qid']]}")
            seen_qids[row["qid"]] = where
            query_key = " ".join(row["query"].lower().split())
            if query_key in seen_queries:
                problems.append(f"{where}: the same question as {seen_queries[query_key]}")
            seen_queries[query_key] = where
            expected = part_of(row["qid"])
            if path.stem != expected:
                problems.append(f"{where}: its qid's hash puts it in {expected}.jsonl, not {path.name}")
            if 2 not in {grade for _, _, grade in row["relevant"]}:
                problems.append(f"{where}: no ayah answers it (grade 2)")
            problems += label_problems(where, row, terms, common, encoder)
        counts[path.name] = {"questions": sum(kinds.values()), "labels": labels, "kinds": dict(sorted(kinds.items()))}
    return {"files": counts, "problems": problems}


def label_problems(where: str, row: dict, terms, common, encoder) -> list[str]:
    words = (set(encoder.query(row["query"]).indices) | set(encoder.query(row.get("topic", "")).indices)) - common
    labelled = {(surah, ayah) for surah, ayah, _ in row["relevant"]}
    sharing = {key for key in labelled if terms[key] & words}
    notes = row.get("notes", {})
    noted = {key: note for note in notes for key in note_keys(note)}
    used_notes = set()
    problems = []
    for surah, ayah, grade in row["relevant"]:
        if (surah, ayah) in sharing:
            continue
        if any((surah, ayah + step) in sharing for step in range(-PASSAGE_REACH, PASSAGE_REACH + 1)):
            continue
        note = noted.get((surah, ayah))
        if note is None or not notes[note].strip():
            problems.append(
                f"{where} labels {surah}:{ayah} (grade {grade}), which shares no content word with its question or "
                f'topic nor lies in a passage that does: correct the label, or say why it answers in "notes"'
            )
        else:
            used_notes.add(note)
    for note in notes:
        if not set(note_keys(note)) <= labelled:
            problems.append(f"{where}: note {note!r} speaks for ayat that are not labelled")
        elif note not in used_notes:
            problems.append(f"{where}: note {note!r} is not needed: its ayat share a word with the question")
    return problems


def main() -> None:
    from services.evaluation import QUESTION_SET

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, default=list(QUESTION_SET.values()))
    result = check(parser.parse_args().files)
    print(json.dumps(result, indent=1, ensure_ascii=False))
    sys.exit(1 if result["problems"] else 0)


if __name__ == "__main__":
    main()
