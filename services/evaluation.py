"""Retrieval quality at ayah level: query files and metrics (pure functions, no I/O but reading the file).

A query file has one JSON object a line: ``{"qid", "query", "relevant": [[surah, ayah, grade], ...]}``
(grade 2 = answers the question, 1 = related). A retrieved chunk is a hit for its ayah; an ayah counts
once, at its best rank. Gains are graded: ``2**grade - 1``.

The project ships one such file, :data:`BUILTIN_QUERIES` (40 Indonesian questions labelled against the
built-in corpus; ``tests/test_evaluation.py`` checks every label), used when no file is given, and a larger
question set in two fixed parts, :data:`QUESTION_SET` (``dev``: tuning may read it; ``held``: no tuning reads
it, only the final figures; services/question_set/README.md says how it was built and checked).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from services.jsonl import json_lines
from services.quran import check_ayah

# Installed with the package (pyproject.toml, package-data), so `tafsir eval` finds it outside a clone too.
BUILTIN_QUERIES = Path(__file__).with_name("evaluation_questions.jsonl")
# 48 English questions labelled the same way (`tafsir eval --queries` this file; docs/BENCHMARKS.md, "English").
ENGLISH_QUERIES = Path(__file__).with_name("evaluation_questions_en.jsonl")
QUESTION_SET = {part: Path(__file__).with_name("question_set") / f"{part}.jsonl" for part in ("dev", "held")}
# What `tafsir eval --queries` takes by name instead of a path.
NAMED_QUERIES = {"builtin": BUILTIN_QUERIES, "english": ENGLISH_QUERIES, **QUESTION_SET}


def part_of(qid: str) -> str:
    """The part of the question set a question belongs to, fixed by its qid alone (SHA-256, first byte's parity)."""
    return "dev" if hashlib.sha256(qid.encode("utf-8")).digest()[0] % 2 == 0 else "held"


AyahKey = tuple[int, int]


@dataclass(frozen=True)
class LabelledQuery:
    qid: str
    query: str
    relevant: dict[AyahKey, int]  # (surah, ayah) -> grade > 0
    topic: str | None = None


class QueryFileError(ValueError):
    """A query file that cannot be used; names the file, line and field."""


def load_queries(path: str | Path) -> list[LabelledQuery]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise QueryFileError(f"{path}: cannot read the query file: {exc}") from exc
    queries = []
    seen: dict[str, int] = {}
    for line in json_lines(text):
        number, row, where = line.number, line.value, f"{path}:{line.number}"
        if line.error is not None:
            raise QueryFileError(f"{where}: malformed JSON: {line.error}")
        if not isinstance(row, dict):
            raise QueryFileError(f"{where}: expected an object with qid, query, relevant")
        for key, kind in (("qid", str), ("query", str), ("relevant", list)):
            if not isinstance(row.get(key), kind):
                raise QueryFileError(f"{where}: field '{key}' must be a {kind.__name__}")
        if row["qid"] in seen:
            raise QueryFileError(f"{where}: field 'qid': {row['qid']!r} repeats line {seen[row['qid']]}")
        seen[row["qid"]] = number
        relevant: dict[AyahKey, int] = {}
        for label in row["relevant"]:
            if (
                not isinstance(label, list)
                or len(label) != 3
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in label)
            ):
                raise QueryFileError(
                    f"{where}: field 'relevant': expected [surah, ayah, grade] integers, got {label!r}"
                )
            surah, ayah, grade = label
            try:
                check_ayah(surah, ayah)
            except ValueError as exc:
                raise QueryFileError(f"{where}: field 'relevant': {label!r}: {exc}") from None
            if grade > 0:
                relevant[surah, ayah] = max(grade, relevant.get((surah, ayah), 0))
        if not relevant:
            raise QueryFileError(f"{where}: field 'relevant': no ayah with a grade above 0")
        queries.append(LabelledQuery(row["qid"], row["query"], relevant, row.get("topic")))
    if not queries:
        raise QueryFileError(f"{path}: no queries")
    return queries


def distinct_ayat(ranked: Iterable[AyahKey]) -> list[AyahKey]:
    """Ranked chunks' ayat with repeats removed, each at its best rank."""
    seen: set[AyahKey] = set()
    result = []
    for key in ranked:
        if key not in seen:
            seen.add(key)
            result.append(key)
    return result


def dcg(gains: Sequence[float]) -> float:
    return sum(g / math.log2(rank + 2) for rank, g in enumerate(gains))


@dataclass(frozen=True)
class QueryScores:
    hit: float
    recall: float
    mrr: float
    ndcg: float
    recall_at_1: float


def score_query(ranked: Sequence[AyahKey], relevant: dict[AyahKey, int], k: int = 10) -> QueryScores:
    top = distinct_ayat(ranked)[:k]
    hits = [key for key in top if key in relevant]
    first = next((rank for rank, key in enumerate(top, start=1) if key in relevant), None)
    ideal = sorted((2**g - 1 for g in relevant.values()), reverse=True)[:k]
    return QueryScores(
        hit=1.0 if hits else 0.0,
        recall=len(hits) / len(relevant),
        mrr=1.0 / first if first else 0.0,
        ndcg=dcg([2 ** relevant.get(key, 0) - 1 for key in top]) / dcg(ideal),
        recall_at_1=(1.0 if top and top[0] in relevant else 0.0) / len(relevant),
    )


@dataclass
class EvalReport:
    k: int
    queries: int
    hit: float
    recall: float
    mrr: float
    ndcg: float
    recall_at_1: float
    missed: list[dict] = field(default_factory=list)  # queries with no relevant ayah in the top k
    per_query: list[dict] = field(default_factory=list)  # each query's scores, in the file's order

    def as_dict(self, per_query: bool = False) -> dict:
        return {
            "k": self.k,
            "queries": self.queries,
            f"hit@{self.k}": round(self.hit, 4),
            f"recall@{self.k}": round(self.recall, 4),
            f"mrr@{self.k}": round(self.mrr, 4),
            f"ndcg@{self.k}": round(self.ndcg, 4),
            "recall@1": round(self.recall_at_1, 4),
            "missed": self.missed,
            **({"per_query": self.per_query} if per_query else {}),
        }


def evaluate(queries: Sequence[LabelledQuery], rankings: Sequence[Sequence[AyahKey]], k: int = 10) -> EvalReport:
    """Mean scores over queries; ``rankings[i]`` are the ayat retrieved for ``queries[i]``, best first."""
    scores = [score_query(r, q.relevant, k) for q, r in zip(queries, rankings, strict=True)]
    n = len(scores)
    missed = [
        {"qid": q.qid, "query": q.query, "retrieved": [list(a) for a in distinct_ayat(r)[:3]]}
        for q, r, s in zip(queries, rankings, scores, strict=True)
        if not s.hit
    ]
    return EvalReport(
        k=k,
        queries=n,
        hit=sum(s.hit for s in scores) / n,
        recall=sum(s.recall for s in scores) / n,
        mrr=sum(s.mrr for s in scores) / n,
        ndcg=sum(s.ndcg for s in scores) / n,
        recall_at_1=sum(s.recall_at_1 for s in scores) / n,
        missed=missed,
        per_query=[
            {
                "qid": q.qid,
                f"ndcg@{k}": round(s.ndcg, 4),
                "first_relevant_rank": round(1 / s.mrr) if s.mrr else None,
                "recall@1": round(s.recall_at_1, 4),
            }
            for q, s in zip(queries, scores, strict=True)
        ],
    )
