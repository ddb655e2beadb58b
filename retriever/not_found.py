"""Whether the tafsir answers a question at all: a calibrated decision over the evidence the search returned.

One cosine cannot tell a recipe from a question about the Quran with E5 (its cosines sit between 0.78 and 0.98,
off-topic and answerable overlapping), so the decision weighs several signals, all read from what the search
already returned (``retriever.search.Probe``: no second embedding, no further store query):

- ``cosine``: the dense cosine of the passage nearest the question;
- ``topic``: where the question's embedding lies along a direction fitted on labelled questions (a ridge
  logistic regression over the embedding: questions about the Quran and its tafsir one way; recipes, sport,
  devices, politics and other religions' scriptures the other);
- ``overlap_first``: the share of the question's BM25 terms (stemmed, stopwords out) found in the first passage
  (its tafsir and translation; for an Arabic question, the Arabic words of its ayah): an off-topic question
  brings words the tafsir has not;
- the question's language (``services.language``), so that each gets its own intercept.

A logistic regression over them, fitted with numpy by ``training/not_found.py`` on a labelled set shipped in the
repository (``training/not_found_questions.jsonl``), gives the probability that the tafsir answers (the
``confidence`` of an answer); below the fitted threshold the answer is "not found". Coefficients live in
``retriever/not_found.json``, keyed by the model's identity, with the fingerprint of the data they were fitted on:
a model without an entry keeps the single cosine of ``services/models.py``.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from services import arabic
from services.language import QueryLanguage, detect_language

if TYPE_CHECKING:  # pragma: no cover
    from retriever.search import Probe
    from services.sparse import SparseEncoder

COEFFICIENTS = Path(__file__).with_name("not_found.json")


@dataclass(frozen=True)
class Evidence:
    """What the decision looks at, for one question."""

    language: QueryLanguage
    cosine: float  # the nearest passage's, by the dense vector alone
    overlap_first: float  # share of the question's terms found in the first passage
    terms: int  # the question's distinct terms
    vector: tuple[float, ...] = ()  # the question's embedding


# The features a fitted model may weigh, by name; "a*b" is the product of two. ``topic`` is the fitted model's
# own projection of the embedding (``NotFoundModel.topic``).
FEATURES: dict[str, Callable[[Evidence], float]] = {
    "cosine": lambda e: e.cosine,
    "overlap_first": lambda e: e.overlap_first,
    "log_terms": lambda e: math.log1p(e.terms),
    "english": lambda e: float(e.language == "en"),
    "arabic": lambda e: float(e.language == "ar"),
    "indonesian": lambda e: float(e.language == "id"),
}
TOPIC = "topic"


def feature_value(name: str, evidence: Evidence, topic: float = 0.0) -> float:
    value = 1.0
    for part in name.split("*"):
        value *= topic if part == TOPIC else FEATURES[part](evidence)
    return value


# --- evidence -----------------------------------------------------------------------------------------------


def arabic_words(text: str) -> set[str]:
    """Arabic as typed and as printed, compared as the search compares it (services/arabic.py: without marks,
    one form of alef, ya, ta marbuta and hamza, each spelling of a word with a small alef); one-letter words out."""
    return {w for w in arabic.terms(text, pairs=False) if len(w) > 1}


def gather(query: str, probe: Probe, sparse: SparseEncoder, language: QueryLanguage | None = None) -> Evidence:
    """The evidence for ``query`` in what its search returned."""
    language = language or detect_language(query)
    first = next((p for p in probe.passages if not p.is_context), None)
    if language == "ar":
        query_terms: set = arabic_words(query)
        found = query_terms & arabic_words(first.arabic or "") if first is not None else set()
    else:
        query_terms = set(sparse.query(query).indices)
        text = f"{first.translation or ''} {first.text}" if first is not None else ""
        found = query_terms & set(sparse.query(text).indices) if query_terms and text.strip() else set()
    return Evidence(
        language=language,
        cosine=probe.similarity,
        overlap_first=len(found) / (len(query_terms) or 1),
        terms=len(query_terms),
        vector=tuple(probe.vector),
    )


# --- the fitted decision ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    answers: bool
    confidence: float | None  # the probability that the tafsir answers; None: judged by the cosine alone


@dataclass(frozen=True)
class NotFoundModel:
    """A logistic regression over standardised features, and the probability below which it says not found.

    ``topic_weights``/``topic_intercept``: the embedding's projection that the feature ``topic`` reads."""

    model: str  # the embedding model's identity
    data: str  # sha256 of the labelled set it was fitted on
    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    intercept: float
    threshold: float
    topic_weights: tuple[float, ...] = ()
    topic_intercept: float = 0.0

    def topic(self, vector: Sequence[float]) -> float:
        if not self.topic_weights:
            return 0.0
        if len(vector) != len(self.topic_weights):
            raise ValueError(
                f"the not-found decision of {self.model} reads {len(self.topic_weights)}-d embeddings, "
                f"this query has {len(vector)}"
            )
        return float(self._topic_array @ np.asarray(vector, dtype=float)) + self.topic_intercept

    @functools.cached_property
    def _topic_array(self) -> np.ndarray:
        return np.asarray(self.topic_weights, dtype=float)

    def confidence(self, evidence: Evidence) -> float:
        topic = self.topic(evidence.vector) if TOPIC in self._parts else 0.0
        z = self.intercept
        for name, mean, scale, weight in zip(self.features, self.mean, self.scale, self.weights, strict=True):
            z += weight * (feature_value(name, evidence, topic) - mean) / scale
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    @functools.cached_property
    def _parts(self) -> frozenset[str]:
        return frozenset(part for name in self.features for part in name.split("*"))

    def judge(self, evidence: Evidence) -> Verdict:
        confidence = self.confidence(evidence)
        return Verdict(answers=confidence >= self.threshold, confidence=round(confidence, 6))

    def to_json(self) -> dict:
        return {
            "data": self.data,
            "features": list(self.features),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "weights": list(self.weights),
            "intercept": self.intercept,
            "threshold": self.threshold,
            "topic_intercept": self.topic_intercept,
            "topic_weights": list(self.topic_weights),
        }

    @classmethod
    def from_json(cls, model: str, entry: dict) -> NotFoundModel:
        features = tuple(entry["features"])
        unknown = [f for name in features for f in name.split("*") if f not in FEATURES and f != TOPIC]
        if unknown:
            raise ValueError(f"{COEFFICIENTS.name}: model {model} uses unknown features {unknown}")
        sizes = {len(entry[key]) for key in ("mean", "scale", "weights")}
        if sizes != {len(features)}:
            raise ValueError(f"{COEFFICIENTS.name}: model {model} has {len(features)} features but {sizes} values")
        return cls(
            model=model,
            data=entry["data"],
            features=features,
            mean=tuple(entry["mean"]),
            scale=tuple(entry["scale"]),
            weights=tuple(entry["weights"]),
            intercept=float(entry["intercept"]),
            threshold=float(entry["threshold"]),
            topic_weights=tuple(entry.get("topic_weights", ())),
            topic_intercept=float(entry.get("topic_intercept", 0.0)),
        )


def load_models(path: Path = COEFFICIENTS) -> dict[str, NotFoundModel]:
    """The fitted decisions, by model identity (none when the file is absent)."""
    if not path.is_file():
        return {}
    models = json.loads(path.read_text(encoding="utf-8")).get("models", {})
    return {identity: NotFoundModel.from_json(identity, entry) for identity, entry in models.items()}


@functools.cache
def _shipped() -> dict[str, NotFoundModel]:
    return load_models()


def model_for(identity: str) -> NotFoundModel | None:
    """The decision fitted for the embedding model ``identity``, if one was."""
    return _shipped().get(identity)


def by_cosine(similarity: float, threshold: float | None) -> Verdict:
    """The single cosine (TAFSIR_ANSWER_MIN_SIMILARITY, or the model's measured one): what a model without a
    fitted decision gets."""
    return Verdict(answers=threshold is None or similarity >= threshold, confidence=None)
