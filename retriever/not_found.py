"""Whether the tafsir answers a question at all: a calibrated decision over the evidence the search returned.

One cosine cannot tell a recipe from a question about the Quran with E5 (its cosines sit between 0.78 and 0.98,
off-topic and answerable overlapping), so the decision weighs several signals, all read from what the search
already returned (``retriever.search.Probe``: no second embedding, no further store query):

- the dense cosines of the nearest passages (the nearest, and how far the tenth lies below it);
- whether the hybrid ranking's first passages are also the nearest by the dense vector;
- the overlap of content words: the share of the question's BM25 terms (stemmed, stopwords out) that the first
  passages contain (their tafsir and translation; for an Arabic question, the Arabic words of their ayat);
- the question's language (``services.language``), so that each language gets its own scale.

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
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from services.language import QueryLanguage, detect_language

if TYPE_CHECKING:  # pragma: no cover
    from retriever.search import Probe
    from services.sparse import SparseEncoder

COEFFICIENTS = Path(__file__).with_name("not_found.json")
EVIDENCE_PASSAGES = 3  # the first passages whose words are compared with the question's
GAP_RANK = 10  # the cosine gap runs from the nearest passage to this one (retriever.search.NEAREST)


@dataclass(frozen=True)
class Evidence:
    """What the decision looks at, for one question; every field a number (see ``FEATURES``)."""

    language: QueryLanguage
    cosine: float  # the nearest passage's, by the dense vector alone
    cosine_gap: float  # nearest minus the GAP_RANK-th nearest
    agreement: float  # share of the first passages (hybrid ranking) among the dense nearest
    overlap_first: float  # share of the question's terms found in the first passage
    overlap_any: float  # share found in any of the first EVIDENCE_PASSAGES passages
    terms: int  # the question's distinct terms


# The base features a fitted model may use, by name; "a*b" in a model's feature list is a product of two.
FEATURES: dict[str, Callable[[Evidence], float]] = {
    "cosine": lambda e: e.cosine,
    "cosine_gap": lambda e: e.cosine_gap,
    "agreement": lambda e: e.agreement,
    "overlap_first": lambda e: e.overlap_first,
    "overlap_any": lambda e: e.overlap_any,
    "log_terms": lambda e: math.log1p(e.terms),
    "english": lambda e: float(e.language == "en"),
    "arabic": lambda e: float(e.language == "ar"),
    "indonesian": lambda e: float(e.language == "id"),
}


def feature_value(name: str, evidence: Evidence) -> float:
    value = 1.0
    for part in name.split("*"):
        value *= FEATURES[part](evidence)
    return value


# --- evidence -----------------------------------------------------------------------------------------------

# Arabic as typed and as printed differ in marks (harakat, Quranic annotation signs, tatweel) and in the alef's
# forms; words are compared without them.
_ARABIC_MARKS = re.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed\u0640]")
_ALEFS = str.maketrans({"ٱ": "ا", "أ": "ا", "إ": "ا", "آ": "ا", "ى": "ي", "ة": "ه"})
_ARABIC_WORD = re.compile(r"[\u0621-\u064a\u0671]+")


def arabic_words(text: str) -> set[str]:
    bare = _ARABIC_MARKS.sub("", unicodedata.normalize("NFC", text)).translate(_ALEFS)
    return {w for w in _ARABIC_WORD.findall(bare) if len(w) > 1}


def gather(query: str, probe: Probe, sparse: SparseEncoder, language: QueryLanguage | None = None) -> Evidence:
    """The evidence for ``query`` in what its search returned."""
    language = language or detect_language(query)
    cosines = probe.cosines
    cosine = cosines[0] if cosines else -1.0
    tail = cosines[min(GAP_RANK, len(cosines)) - 1] if cosines else -1.0
    first = [p for p in probe.passages if not p.is_context][:EVIDENCE_PASSAGES]
    nearest = set(probe.nearest_ids)
    agreement = sum(p.id in nearest for p in first) / len(first) if first else 0.0

    terms_of: Callable[[str], set]
    if language == "ar":
        query_terms: set = arabic_words(query)
        texts = [p.arabic or "" for p in first]
        terms_of = arabic_words
    else:
        query_terms = set(sparse.query(query).indices)
        texts = [f"{p.translation or ''} {p.text}" for p in first]

        def terms_of(text: str) -> set:
            return set(sparse.query(text).indices)

    found = [query_terms & terms_of(text) for text in texts] if query_terms else []
    share = len(query_terms) or 1
    return Evidence(
        language=language,
        cosine=cosine,
        cosine_gap=cosine - tail,
        agreement=agreement,
        overlap_first=len(found[0]) / share if found else 0.0,
        overlap_any=len(set().union(*found)) / share if found else 0.0,
        terms=len(query_terms),
    )


# --- the fitted decision ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    answers: bool
    confidence: float | None  # the probability that the tafsir answers; None: judged by the cosine alone


@dataclass(frozen=True)
class NotFoundModel:
    """A logistic regression over standardised features, and the probability below which it says not found."""

    model: str  # the embedding model's identity
    data: str  # sha256 of the labelled set it was fitted on
    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    intercept: float
    threshold: float

    def confidence(self, evidence: Evidence) -> float:
        z = self.intercept
        for name, mean, scale, weight in zip(self.features, self.mean, self.scale, self.weights, strict=True):
            z += weight * (feature_value(name, evidence) - mean) / scale
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

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
        }

    @classmethod
    def from_json(cls, model: str, entry: dict) -> NotFoundModel:
        features = tuple(entry["features"])
        unknown = [f for name in features for f in name.split("*") if f not in FEATURES]
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
