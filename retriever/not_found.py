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
- ``neighbours``: how much nearer the question lies to the labelled questions the tafsir answers than to those
  it does not (the mean cosine of the nearest few of each, shipped beside the coefficients): the ``topic``
  direction is one line through the embedding space, and the questions that lie next to the Quran without being
  about it (other scriptures, prayer-time apps, bank products with Arabic names) form pockets a line cannot cut
  off;
- the question's language (``services.language``), so that each gets its own intercept.

A logistic regression over them, fitted with numpy by ``training/not_found.py`` on a labelled set shipped in the
repository (``training/not_found_questions.jsonl``), gives the probability that the tafsir answers (the
``confidence`` of an answer); below the fitted threshold the answer is "not found". Coefficients live in
``retriever/not_found.json``, keyed by the model's identity, with the fingerprint of the data they were fitted on,
and the labelled questions' embeddings in a ``.npz`` file beside it (named in the entry, with its sha256): a model
without an entry keeps the single cosine of ``services/models.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
NEIGHBOURS = "neighbours"  # the fitted model's margin between its nearest labelled questions (``NotFoundModel``)


def feature_value(name: str, evidence: Evidence, topic: float = 0.0, neighbours: float = 0.0) -> float:
    value = 1.0
    for part in name.split("*"):
        value *= topic if part == TOPIC else neighbours if part == NEIGHBOURS else FEATURES[part](evidence)
    return value


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


def neighbour_margin(vectors: np.ndarray, answerable: np.ndarray, query: np.ndarray, k: int) -> float:
    """The mean cosine of the ``k`` labelled questions nearest ``query`` that the tafsir answers, less that of
    the ``k`` nearest it does not. ``vectors`` are unit length (``unit``); E5's embeddings are already."""
    similarity = vectors @ (query / (np.linalg.norm(query) or 1.0))
    means = []
    for side in (similarity[answerable], similarity[~answerable]):
        nearest = side if len(side) <= k else np.partition(side, len(side) - k)[-k:]
        means.append(float(nearest.mean()) if len(nearest) else 0.0)
    return means[0] - means[1]


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


@dataclass(frozen=True, eq=False)
class Neighbours:
    """The labelled questions' embeddings (float16: a cosine needs no more) and which the tafsir answers; ``k``
    nearest of each side are averaged. Stored as ``file`` (an ``.npz`` beside the coefficients), whose sha256 the
    coefficients record so that the two cannot drift apart."""

    file: str
    sha256: str
    k: int
    vectors: np.ndarray = field(repr=False)
    answerable: np.ndarray = field(repr=False)

    def margin(self, vector: Sequence[float], model: str) -> float:
        if len(vector) != self.vectors.shape[1]:
            raise ValueError(
                f"the not-found decision of {model} reads {self.vectors.shape[1]}-d embeddings, "
                f"this query has {len(vector)}"
            )
        return neighbour_margin(self._vectors, self.answerable, np.asarray(vector, dtype=np.float32), self.k)

    @functools.cached_property
    def _vectors(self) -> np.ndarray:
        return unit(self.vectors.astype(np.float32))

    def to_json(self) -> dict:
        return {"file": self.file, "sha256": self.sha256, "k": self.k}

    def save(self, folder: Path) -> Neighbours:
        """Writes the arrays to ``folder/file``; returns these neighbours with the written file's sha256."""
        path = folder / self.file
        with path.open("wb") as out:
            np.savez_compressed(out, vectors=self.vectors.astype(np.float16), answerable=self.answerable.astype(bool))
        return dataclasses.replace(self, sha256=hashlib.sha256(path.read_bytes()).hexdigest())

    @classmethod
    def from_json(cls, entry: dict, folder: Path) -> Neighbours:
        path = folder / entry["file"]
        if not path.is_file():
            raise ValueError(
                f"{COEFFICIENTS.name} names {path}, which is missing: refit with python -m training.not_found"
            )
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != entry["sha256"]:
            raise ValueError(
                f"{path}: its sha256 is {digest}, {COEFFICIENTS.name} expects {entry['sha256']}: "
                "refit with python -m training.not_found"
            )
        with np.load(path) as arrays:
            vectors, answerable = arrays["vectors"], arrays["answerable"].astype(bool)
        if vectors.ndim != 2 or len(vectors) != len(answerable):
            raise ValueError(
                f"{path}: expected vectors (n, d) and n labels, got {vectors.shape} and {answerable.shape}"
            )
        return cls(file=entry["file"], sha256=digest, k=int(entry["k"]), vectors=vectors, answerable=answerable)


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
    neighbours: Neighbours | None = None

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

    def neighbour_margin(self, vector: Sequence[float]) -> float:
        if self.neighbours is None:
            return 0.0
        return self.neighbours.margin(vector, self.model)

    def confidence(self, evidence: Evidence) -> float:
        topic = self.topic(evidence.vector) if TOPIC in self._parts else 0.0
        near = self.neighbour_margin(evidence.vector) if NEIGHBOURS in self._parts else 0.0
        z = self.intercept
        for name, mean, scale, weight in zip(self.features, self.mean, self.scale, self.weights, strict=True):
            z += weight * (feature_value(name, evidence, topic, near) - mean) / scale
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
            **({"neighbours": self.neighbours.to_json()} if self.neighbours is not None else {}),
        }

    @classmethod
    def from_json(cls, model: str, entry: dict, folder: Path = COEFFICIENTS.parent) -> NotFoundModel:
        features = tuple(entry["features"])
        known = {*FEATURES, TOPIC, NEIGHBOURS}
        unknown = [f for name in features for f in name.split("*") if f not in known]
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
            neighbours=Neighbours.from_json(entry["neighbours"], folder) if "neighbours" in entry else None,
        )


def load_models(path: Path = COEFFICIENTS) -> dict[str, NotFoundModel]:
    """The fitted decisions, by model identity (none when the file is absent)."""
    if not path.is_file():
        return {}
    models = json.loads(path.read_text(encoding="utf-8")).get("models", {})
    return {identity: NotFoundModel.from_json(identity, entry, path.parent) for identity, entry in models.items()}


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
