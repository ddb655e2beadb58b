"""Ayah-level metrics checked against values computed by hand."""

from __future__ import annotations

import json
import math

import pytest

from services.evaluation import (
    BUILTIN_QUERIES,
    QUESTION_SET,
    LabelledQuery,
    QueryFileError,
    evaluate,
    load_queries,
    score_query,
)
from tests.conftest import ROOT

RELEVANT = {(2, 255): 2, (2, 256): 1, (3, 1): 1}


def test_scores_of_a_ranking_match_hand_computed_values():
    # ranks: 1 (2,1) miss, 2 (2,256) grade 1, 3 (2,255) grade 2, then a repeat of (2,256) that must not count
    ranked = [(2, 1), (2, 256), (2, 255), (2, 256), (9, 9)]
    s = score_query(ranked, RELEVANT, k=10)
    dcg = (2**1 - 1) / math.log2(3) + (2**2 - 1) / math.log2(4)  # 0.6309 + 1.5
    idcg = 3 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)  # 3 + 0.6309 + 0.5
    assert s.hit == 1.0
    assert s.recall == pytest.approx(2 / 3)
    assert s.mrr == pytest.approx(1 / 2)
    assert s.ndcg == pytest.approx(dcg / idcg)  # 0.5159
    assert s.ndcg == pytest.approx(0.5159, abs=1e-4)
    assert s.recall_at_1 == 0.0


def test_only_the_top_k_distinct_ayat_count():
    ranked = [(1, 1), (1, 1), (1, 2), (2, 255)]
    assert score_query(ranked, RELEVANT, k=2).hit == 0.0  # (2,255) is the third distinct ayah
    assert score_query(ranked, RELEVANT, k=3).hit == 1.0
    assert score_query(ranked, RELEVANT, k=3).mrr == pytest.approx(1 / 3)


def test_perfect_ranking_scores_one():
    s = score_query([(2, 255), (2, 256), (3, 1)], RELEVANT, k=10)
    assert (s.hit, s.recall, s.mrr, s.ndcg) == (1.0, 1.0, 1.0, pytest.approx(1.0))
    assert s.recall_at_1 == pytest.approx(1 / 3)


def test_evaluate_averages_and_lists_missed_queries(tmp_path):
    path = tmp_path / "q.jsonl"
    rows = [
        {"qid": "a", "query": "ayat kursi", "relevant": [[2, 255, 2]]},
        {"qid": "b", "query": "al-fatihah", "relevant": [[1, 1, 2], [1, 2, 0]]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    queries = load_queries(path)
    assert queries[1].relevant == {(1, 1): 2}  # grade 0 is not relevant
    report = evaluate(queries, [[(2, 255)], [(5, 5), (6, 6)]], k=10)
    assert (report.hit, report.mrr, report.recall_at_1) == (0.5, 0.5, 0.5)
    assert [m["qid"] for m in report.missed] == ["b"]
    assert report.as_dict()["ndcg@10"] == 0.5
    assert "per_query" not in report.as_dict()


def test_the_per_query_scores_say_how_each_query_fared():
    queries = [
        LabelledQuery("a", "ayat kursi", {(2, 255): 2}),
        LabelledQuery("b", "al-ikhlas", {(112, 1): 2, (112, 2): 1}),
        LabelledQuery("c", "qarun", {(28, 76): 2}),
    ]
    report = evaluate(queries, [[(2, 255)], [(1, 1), (112, 2), (112, 1)], [(5, 5)]], k=10)
    rows = report.as_dict(per_query=True)["per_query"]
    assert [(r["qid"], r["first_relevant_rank"], r["recall@1"]) for r in rows] == [
        ("a", 1, 1.0),
        ("b", 2, 0.0),
        ("c", None, 0.0),
    ]
    assert rows[0]["ndcg@10"] == 1.0 and rows[2]["ndcg@10"] == 0.0
    assert sum(r["ndcg@10"] for r in rows) / 3 == pytest.approx(report.ndcg, abs=1e-4)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("{not json", ":1: malformed JSON"),
        ('{"qid": "a", "query": "x"}', "field 'relevant'"),
        ('{"qid": "a", "query": "x", "relevant": [[2, "255", 1]]}', "expected [surah, ayah, grade]"),
        ('{"qid": "a", "query": "x", "relevant": [[2, 255, 0]]}', "no ayah with a grade above 0"),
    ],
)
def test_a_bad_query_file_names_line_and_field(tmp_path, line, expected):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(QueryFileError, match=None) as info:
        load_queries(path)
    assert expected in str(info.value) and "bad.jsonl" in str(info.value)


def test_a_label_naming_an_ayah_that_does_not_exist_is_refused(tmp_path):
    path = tmp_path / "q.jsonl"
    rows = [{"qid": "a", "query": "x", "relevant": [[2, 255, 2]]}, {"qid": "b", "query": "y", "relevant": [[1, 8, 2]]}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(QueryFileError) as info:
        load_queries(path)
    message = str(info.value)
    assert message.startswith(f"{path}:2: field 'relevant': [1, 8, 2]") and "its ayat are 1-7" in message


# --- the question file shipped with the project -------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus_terms() -> tuple[dict[tuple[int, int], set[int]], set[int]]:
    """Each built-in ayah's BM25 terms (tafsir + translation + surah name), and the terms too common to count as
    content (bench/check_questions.py, which checks the question set by the same measure)."""
    from bench.check_questions import corpus_terms as computed

    return computed()


def builtin_rows() -> list[tuple[int, dict]]:
    lines = BUILTIN_QUERIES.read_text(encoding="utf-8").splitlines()
    return [(number, json.loads(line)) for number, line in enumerate(lines, start=1) if line.strip()]


def note_keys(key: str) -> list[tuple[int, int]]:
    """ "2:8" or "2:8-14" -> the ayat a note speaks for."""
    surah, _, verses = key.partition(":")
    first, _, last = verses.partition("-")
    return [(int(surah), ayah) for ayah in range(int(first), int(last or first) + 1)]


def test_the_builtin_questions_load_and_each_has_an_answering_ayah():
    queries = load_queries(BUILTIN_QUERIES)  # the ayat exist: load_queries checks every label
    assert 30 <= len(queries) <= 40
    assert all(2 in q.relevant.values() for q in queries), "every question needs an ayah that answers it (grade 2)"
    assert BUILTIN_QUERIES.resolve().is_relative_to(ROOT), "the shipped file lives in the repository"


def test_every_builtin_label_shares_a_content_word_with_its_question_or_its_note_says_why(corpus_terms):
    from services.sparse import SparseEncoder

    terms, common = corpus_terms
    encoder = SparseEncoder()
    problems = []
    for number, row in builtin_rows():
        where = f"{BUILTIN_QUERIES}:{number}: {row['qid']}"
        question = set(encoder.query(row["query"]).indices) - common
        notes = row.get("notes", {})
        unexplained_by_note: dict[str, int] = dict.fromkeys(notes, 0)
        labelled = {(surah, ayah) for surah, ayah, _ in row["relevant"]}
        for surah, ayah, grade in row["relevant"]:
            if terms[surah, ayah] & question:
                continue
            note = next((key for key in notes if (surah, ayah) in note_keys(key)), None)
            if note is None or not notes[note].strip():
                problems.append(
                    f"{where} labels {surah}:{ayah} (grade {grade}), whose tafsir and translation share no content "
                    f'word with {row["query"]!r}: correct the label, or say why it answers in "notes": '
                    f'{{"{surah}:{ayah}": "..."}}'
                )
            else:
                unexplained_by_note[note] += 1
        for key in notes:
            if not set(note_keys(key)) <= labelled:
                problems.append(f"{where}: note {key!r} speaks for ayat that are not labelled")
            elif unexplained_by_note[key] == 0:
                problems.append(f"{where}: note {key!r} is not needed: its ayat share a word with the question")
    assert not problems, "\n".join(problems)


def test_the_question_file_is_installed_with_the_package(tmp_path):
    """`tafsir eval` without --queries must find the file in an installed package, not only in a clone."""
    import shutil
    import subprocess
    import sys
    import zipfile

    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("services", "ingest", "retriever", "training"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    build = "import sys, setuptools.build_meta as backend; print(backend.build_wheel(sys.argv[1]))"
    result = subprocess.run(
        [sys.executable, "-c", build, str(tmp_path / "dist")], cwd=source, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    wheel = tmp_path / "dist" / result.stdout.split()[-1]
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("services/evaluation_questions.jsonl")
        parts = {part: archive.read(f"services/question_set/{part}.jsonl") for part in QUESTION_SET}
    assert shipped == BUILTIN_QUERIES.read_bytes()
    assert parts == {part: path.read_bytes() for part, path in QUESTION_SET.items()}


def test_the_english_questions_load_each_with_an_answering_ayah_and_read_as_english():
    from services.evaluation import ENGLISH_QUERIES
    from services.language import detect_language

    queries = load_queries(ENGLISH_QUERIES)  # the ayat exist: load_queries checks every label
    assert len(queries) >= 40
    assert all(2 in q.relevant.values() for q in queries), "every question needs an ayah that answers it (grade 2)"
    assert [q.qid for q in queries if detect_language(q.query) != "en"] == []
    assert ENGLISH_QUERIES.resolve().is_relative_to(ROOT), "the shipped file lives in the repository"
