"""The shipped question set (services/question_set/) passes its check, and the check catches bad labels."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from services.evaluation import QUESTION_SET, load_queries, part_of
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def checker():
    spec = importlib.util.spec_from_file_location("check_questions", ROOT / "bench" / "check_questions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shipped_question_set_passes_its_check(checker):
    result = checker.check(list(QUESTION_SET.values()))
    assert result["problems"] == []
    assert sum(f["questions"] for f in result["files"].values()) >= 300
    assert all(f["questions"] >= 120 for f in result["files"].values()), "both parts are large enough to measure"


def test_the_split_is_fixed_by_the_qid_alone():
    for part, path in QUESTION_SET.items():
        assert {part_of(q.qid) for q in load_queries(path)} == {part}
    assert part_of("n001") == part_of("n001") and {part_of(f"x{i}") for i in range(20)} == {"dev", "held"}


def write_part(folder: Path, part: str, rows: list[dict]) -> Path:
    path = folder / f"{part}.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def held_qid() -> str:
    return next(f"z{i}" for i in range(100) if part_of(f"z{i}") == "held")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # 2:255 (ayat kursi) is labelled by mistake for a question on the thief's punishment
        ({"relevant": [[5, 38, 2], [2, 255, 1]]}, "labels 2:255 (grade 1), which shares no content word"),
        ({"relevant": [[5, 38, 1]]}, "no ayah answers it (grade 2)"),
        ({"relevant": [[5, 38, 2]], "notes": {"5:38": "x"}}, "note '5:38' is not needed"),
        ({"relevant": [[5, 138, 2]]}, "[5, 138, 2]"),
        ({"kind": "gossip"}, "field 'kind' must be one of"),
    ],
)
def test_the_check_names_a_bad_label(checker, tmp_path, change, expected):
    row = {"qid": held_qid(), "query": "Apa hukuman bagi pencuri?", "relevant": [[5, 38, 2], [5, 39, 1]]}
    row |= {"topic": "hukum: potong tangan pencuri", "kind": "ruling"} | change
    problems = checker.check([write_part(tmp_path, "held", [row])])["problems"]
    assert any(expected in p for p in problems), problems


def test_a_passage_around_a_shared_word_passes_and_a_question_in_the_wrong_part_does_not(checker, tmp_path):
    qid = held_qid()
    # 5:40 shares no content word with the question, but it is two ayat from 5:38, which does
    row = {"qid": qid, "query": "Apa hukuman bagi pencuri?", "relevant": [[5, 38, 2], [5, 40, 1]]}
    row |= {"topic": "hukum: potong tangan pencuri", "kind": "ruling"}
    assert checker.check([write_part(tmp_path, "held", [row])])["problems"] == []
    problems = checker.check([write_part(tmp_path, "dev", [row])])["problems"]
    assert problems == [f"{tmp_path / 'dev.jsonl'}:1: {qid}: its qid's hash puts it in held.jsonl, not dev.jsonl"]


def test_the_paired_bootstrap_calls_a_difference_only_when_its_interval_excludes_zero():
    spec = importlib.util.spec_from_file_location("compare", ROOT / "bench" / "compare.py")
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)

    def report(ranks):
        rows = [{"qid": f"q{i}", "ndcg@10": 1 / r if r else 0.0, "first_relevant_rank": r} for i, r in enumerate(ranks)]
        return compare.per_query_metrics({"k": 10, "per_query": rows})

    base = report([1, 2, None, 4, 1, 3, None, 2] * 5)
    same = compare.compare(base, base, rounds=500, seed=1)["metrics"]["mrr@10"]
    assert (same["b-a"], same["ci95"], same["significant"]) == (0.0, [0.0, 0.0], False)
    better = compare.compare(base, report([1] * 40), rounds=500, seed=1)["metrics"]
    assert better["hit@1"]["significant"] and better["hit@1"]["ci95"][0] > 0
    assert better["hit@10"]["a"] == 0.75 and better["hit@10"]["b"] == 1.0
    # one question of forty changes: too little to tell from noise
    nearly = compare.compare(base, report([1, 2, None, 4, 1, 3, 1, 2] + [1, 2, None, 4, 1, 3, None, 2] * 4), 500, 1)
    assert not nearly["metrics"]["mrr@10"]["significant"]
