"""Fit the not-found decision of the model a store records (``retriever/not_found.py``) on the labelled set
``training/not_found_questions.jsonl``, write it into ``retriever/not_found.json`` and print, as JSON, how it
decides on the held-back part.

The labelled set: questions the tafsir answers (the built-in evaluation questions, development questions and
translation queries, and more written for this: short keyword queries, misspellings, English questions about
Quranic topics, Arabic spans of ayat) and questions it does not (everyday life, tech, sport, food, politics,
other religions' scriptures, Islamic-sounding everyday questions such as prayer-time apps and halal
restaurants), in Indonesian, English and Arabic. A third of it, chosen by a hash of each ``qid``, is held back:
it is neither fitted on nor used to choose the threshold, and the figures are read on it.

Usage: TAFSIR_QDRANT_PATH=<store> python -m training.not_found [--questions FILE] [--output FILE] [--dry-run]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from retriever.not_found import (
    COEFFICIENTS,
    NEIGHBOURS,
    TOPIC,
    Evidence,
    Neighbours,
    NotFoundModel,
    feature_value,
    gather,
    neighbour_margin,
    unit,
)
from retriever.search import SearchEngine, SearchOptions

QUESTIONS = Path(__file__).with_name("not_found_questions.jsonl")
Label = Literal["answerable", "off_topic"]
LABELS = ("answerable", "off_topic")
LANGUAGES = ("id", "en", "ar")
HELD_BACK = 3  # one question in HELD_BACK is held back (by the hash of its qid)
K = 5  # passages searched, as the answering core's default
# The features the fitted model weighs (retriever/not_found.py says what each is).
FEATURES = ("topic", "neighbours", "cosine", "overlap_first", "english", "arabic")
# How many nearest labelled questions of each side ``neighbours`` averages: chosen among 1, 3, 5, 10 and 20 by the
# off-topic questions refused out of fold, on the fitted part, at the threshold below (docs/BENCHMARKS.md).
NEIGHBOUR_K = 3
# Ridge penalty on the embedding's weights (``topic``), chosen on the fitted part's folds: the set is small and
# the embedding has 384 dimensions.
TOPIC_L2 = 0.01
L2 = 1.0  # ridge penalty on the standardised weights: the set is small
# The threshold: the highest probability that refuses at most this share of the fitted answerable questions (the
# issue's bound for questions the tafsir answers), judged on out-of-fold probabilities, so that it is not chosen on
# the fit's own optimism.
ANSWERABLE_REFUSED = 0.02
FOLDS = 5


@dataclass(frozen=True)
class LabelledQuestion:
    qid: str
    query: str
    label: Label
    language: str

    @property
    def held_back(self) -> bool:
        return int(hashlib.sha256(self.qid.encode()).hexdigest(), 16) % HELD_BACK == 0


def fingerprint(path: Path = QUESTIONS) -> str:
    """The sha256 of the labelled set's bytes: a fitted decision records the data it was fitted on."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_questions(path: Path = QUESTIONS) -> list[LabelledQuestion]:
    questions, seen = [], set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{where}: not a JSON object ({exc})") from None
        for key in ("qid", "query", "label", "language"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise ValueError(f"{where}: field {key!r} must be a non-empty string")
        if row["label"] not in LABELS:
            raise ValueError(f"{where}: label must be one of {', '.join(LABELS)}, not {row['label']!r}")
        if row["language"] not in LANGUAGES:
            raise ValueError(f"{where}: language must be one of {', '.join(LANGUAGES)}, not {row['language']!r}")
        if row["qid"] in seen:
            raise ValueError(f"{where}: qid {row['qid']!r} appears twice")
        seen.add(row["qid"])
        questions.append(LabelledQuestion(row["qid"], row["query"], row["label"], row["language"]))
    return questions


def collect(engine: SearchEngine, questions: Sequence[LabelledQuestion]) -> list[Evidence]:
    """Each question's evidence, as the answering core gathers it."""
    return [gather(q.query, engine.search_probed(q.query, SearchOptions(k=K)), engine.sparse) for q in questions]


def matrix(evidence: Sequence[Evidence], features: Sequence[str], topic: np.ndarray, near: np.ndarray) -> np.ndarray:
    rows = zip(evidence, topic, near, strict=True)
    return np.array([[feature_value(name, e, t, n) for name in features] for e, t, n in rows])


def neighbours_file(model: str) -> str:
    """The file name of ``model``'s labelled embeddings, beside the coefficients."""
    return "not_found_" + re.sub(r"[^A-Za-z0-9]+", "-", model).strip("-") + ".npz"


def logistic_fit(x: np.ndarray, y: np.ndarray, l2: float = L2, iterations: int = 50) -> tuple[np.ndarray, float]:
    """Weights and intercept of a ridge logistic regression (Newton's method), classes weighed equally."""
    n, d = x.shape
    sample = np.where(y == 1, n / (2 * y.sum()), n / (2 * (n - y.sum())))
    design = np.hstack([x, np.ones((n, 1))])
    penalty = np.diag([l2] * d + [0.0])
    beta = np.zeros(d + 1)
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-design @ beta))
        gradient = design.T @ (sample * (p - y)) + penalty @ beta
        hessian = design.T @ (design * (sample * p * (1 - p))[:, None]) + penalty
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.abs(step).max() < 1e-9:
            break
    return beta[:d], float(beta[d])


def probabilities(x: np.ndarray, weights: np.ndarray, intercept: float) -> np.ndarray:
    return 1 / (1 + np.exp(-(x @ weights + intercept)))


def threshold_for(p: np.ndarray, y: np.ndarray, refused: float = ANSWERABLE_REFUSED) -> float:
    """The highest probability threshold that refuses at most ``refused`` of the answerable questions."""
    answerable = np.sort(p[y == 1])
    allowed = int(np.floor(refused * len(answerable)))
    return float(answerable[allowed]) if allowed < len(answerable) else float(answerable[-1])


def fit(
    evidence: Sequence[Evidence],
    labels: Sequence[str],
    model: str,
    data: str,
    features: Sequence[str] = FEATURES,
    topic_l2: float = TOPIC_L2,
    refused: float = ANSWERABLE_REFUSED,
    neighbour_k: int = NEIGHBOUR_K,
) -> NotFoundModel:
    """The decision fitted on ``evidence`` (answerable: 1) with its threshold.

    Stacked: the embedding's projection (``topic``) is fitted first, and the outer regression learns how far to
    trust it from out-of-fold projections (a projection of the questions it was fitted on would look better than
    it is); so are the neighbours' margins (each question's nearest are sought in the other folds: among all of
    them it would find itself); the threshold is chosen on out-of-fold probabilities likewise."""
    y = np.array([label == "answerable" for label in labels], dtype=float)
    order = np.random.default_rng(0).permutation(len(y))  # folds that mix the sources
    fold = np.empty(len(y), dtype=int)
    fold[order] = np.arange(len(y)) % FOLDS
    parts = {part for name in features for part in name.split("*")}
    vectors = np.array([e.vector for e in evidence], dtype=float)
    topic_weights, topic_intercept = np.zeros(0), 0.0
    topic, near = np.zeros(len(y)), np.zeros(len(y))
    if TOPIC in parts:
        for f in range(FOLDS):
            w, b = logistic_fit(vectors[fold != f], y[fold != f], topic_l2)
            topic[fold == f] = vectors[fold == f] @ w + b
        topic_weights, topic_intercept = logistic_fit(vectors, y, topic_l2)
    neighbours = None
    if NEIGHBOURS in parts:
        answerable, normed = y == 1, unit(vectors)
        for i in range(len(y)):
            others = fold != fold[i]
            near[i] = neighbour_margin(normed[others], answerable[others], vectors[i], neighbour_k)
        stored = vectors.astype(np.float16)
        neighbours = Neighbours(neighbours_file(model), "", neighbour_k, stored, answerable)
    raw = matrix(evidence, features, topic, near)
    mean, scale = raw.mean(axis=0), raw.std(axis=0)
    scale[scale < 1e-12] = 1.0
    x = (raw - mean) / scale
    held_out = np.zeros(len(y))
    for f in range(FOLDS):
        w, b = logistic_fit(x[fold != f], y[fold != f])
        held_out[fold == f] = probabilities(x[fold == f], w, b)
    weights, intercept = logistic_fit(x, y)
    return NotFoundModel(
        model=model,
        data=data,
        features=tuple(features),
        mean=tuple(round(float(v), 8) for v in mean),
        scale=tuple(round(float(v), 8) for v in scale),
        weights=tuple(round(float(v), 8) for v in weights),
        intercept=round(intercept, 8),
        threshold=round(threshold_for(held_out, y, refused), 6),
        topic_weights=tuple(round(float(v), 8) for v in topic_weights),
        topic_intercept=round(topic_intercept, 8),
        neighbours=neighbours,
    )


def confusion(
    decision: NotFoundModel, questions: Sequence[LabelledQuestion], evidence: Sequence[Evidence]
) -> dict[str, dict[str, int | float]]:
    """Per language (and all): answerable and off-topic questions refused or answered."""
    table: dict[str, dict[str, int | float]] = {}
    for language in (*LANGUAGES, "all"):
        cell = {"answerable_answered": 0, "answerable_refused": 0, "off_topic_answered": 0, "off_topic_refused": 0}
        for q, e in zip(questions, evidence, strict=True):
            if language in (q.language, "all"):
                refused = not decision.judge(e).answers
                cell[f"{q.label}_{'refused' if refused else 'answered'}"] += 1
        answerable = cell["answerable_answered"] + cell["answerable_refused"]
        off_topic = cell["off_topic_answered"] + cell["off_topic_refused"]
        if answerable + off_topic:
            table[language] = {
                **cell,
                "answerable_refused_share": round(cell["answerable_refused"] / answerable, 3) if answerable else None,
                "off_topic_refused_share": round(cell["off_topic_refused"] / off_topic, 3) if off_topic else None,
            }
    return table


def write(decision: NotFoundModel, path: Path = COEFFICIENTS) -> None:
    """``decision`` into the coefficient file, beside the other models' (replacing this model's), and its
    labelled embeddings into their file beside it."""
    if decision.neighbours is not None:
        decision = dataclasses.replace(decision, neighbours=decision.neighbours.save(path.parent))
    document = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    models = document.get("models", {})
    models[decision.model] = decision.to_json()
    document = {
        "about": "Not-found decisions by embedding model identity: fitted by training/not_found.py "
        "on training/not_found_questions.jsonl (its sha256 in 'data'). See retriever/not_found.py.",
        "models": dict(sorted(models.items())),
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, default=QUESTIONS)
    parser.add_argument("--output", type=Path, default=COEFFICIENTS)
    parser.add_argument("--dry-run", action="store_true", help="fit and report, write nothing")
    args = parser.parse_args(argv)

    from services.settings import Settings

    engine = SearchEngine(Settings())
    questions = load_questions(args.questions)
    evidence = collect(engine, questions)
    fitted = [i for i, q in enumerate(questions) if not q.held_back]
    held = [i for i, q in enumerate(questions) if q.held_back]
    decision = fit(
        [evidence[i] for i in fitted],
        [questions[i].label for i in fitted],
        model=engine.embedder.identity,
        data=fingerprint(args.questions),
    )
    if not args.dry_run:
        write(decision, args.output)
    report = {
        "model": decision.model,
        "data": decision.data,
        "fitted_on": len(fitted),
        "held_back": len(held),
        "threshold": decision.threshold,
        "weights": dict(zip(decision.features, decision.weights, strict=True)),
        "held_back_confusion": confusion(decision, [questions[i] for i in held], [evidence[i] for i in held]),
        "held_back_refusals": {
            "answerable": [
                questions[i].query
                for i in held
                if questions[i].label == "answerable" and not decision.judge(evidence[i]).answers
            ],
            "off_topic_answered": [
                questions[i].query
                for i in held
                if questions[i].label == "off_topic" and decision.judge(evidence[i]).answers
            ],
        },
        "written": None if args.dry_run else str(args.output),
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
