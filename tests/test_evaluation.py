"""Ayah-level metrics checked against values computed by hand."""

from __future__ import annotations

import json
import math

import pytest

from services.evaluation import QueryFileError, evaluate, load_queries, score_query

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


def test_the_dev_sets_load():
    from pathlib import Path

    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    assert len(load_queries(shared / "dev_questions.jsonl")) == 40
    assert len(load_queries(shared / "dev_translation_queries.jsonl")) == 500
