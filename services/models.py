"""What the project knows about each embedding model, in one table: prompts, token limit, fusion.

A model is found by name (a hub id such as ``intfloat/multilingual-e5-small``); a folder trained by
``tafsir train`` names its base in ``tafsir_model.json`` and inherits the base's facts. Anything
unknown gets ``GENERIC``: no prompts, 512 tokens, and the fusion measured for a model that does not
read Indonesian (the BM25 lists carry the quality).

The fusion numbers are chosen with ``tafsir eval`` on the dev question files, never assumed
(docs/BENCHMARKS.md, "Fusion"); settings (TAFSIR_RRF_K, TAFSIR_WEIGHT_*, TAFSIR_PREFETCH_LIMIT)
override them one by one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

# Written by `tafsir train` into the model folder it produces: {"base": "<hub id of the base model>"}.
LINEAGE_FILE = "tafsir_model.json"


@dataclass(frozen=True)
class Fusion:
    """How the hybrid query merges its lists: Qdrant's weighted RRF over one prefetch per list."""

    rrf_k: int
    prefetch_limit: int
    dense: float
    bm25: float  # tafsir + translation + surah name
    bm25_ctx: float  # the same with neighbouring ayat as context
    bm25_tr: float  # the translation alone
    bm25_ar: float = 0.0  # the ayah's Arabic text (services/arabic.py): what an Arabic query is searched in
    dense_tr: float = 0.0  # the dense vector of the ayah's translation alone (the chunk vector is ``dense``)

    def overridden(self, overrides: dict[str, Any]) -> Fusion:
        """This fusion with every non-None value of ``overrides`` (keys are field names) in place."""
        names = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in overrides.items() if k in names and v is not None})


@dataclass(frozen=True)
class ModelProfile:
    name: str
    query_prefix: str = ""
    document_prefix: str = ""
    max_tokens: int = 512
    # The exported backends' weights (onnx, openvino) unless TAFSIR_EMBEDDING_QUANTIZATION says otherwise.
    quantization: Literal["none", "int8"] = "none"
    fusion: Fusion = field(
        # Measured with all-MiniLM-L6-v2 (English) on the dev questions: dense adds little (docs/BENCHMARKS.md).
        default_factory=lambda: Fusion(rrf_k=2, prefetch_limit=50, dense=0.5, bm25=1.0, bm25_ctx=4.0, bm25_tr=1.0)
    )
    # The cosine between a question and its closest passage below which the tafsir is taken not to answer it
    # (retriever/answer.py says so and asks no language model). Cosines sit on each model's own scale, so this
    # is measured per model (bench/not_found.py); None: not measured, every question gets an answer. A model with
    # a fitted not-found decision (retriever/not_found.json) is judged by that instead, unless
    # TAFSIR_ANSWER_MIN_SIMILARITY is set.
    min_similarity: float | None = None
    # The fusion for questions in another language, by the code services/language.py detects (``fusion_for``);
    # a language not named here (Indonesian, the corpus's own) gets ``fusion``.
    language_fusions: Mapping[str, Fusion] = field(default_factory=dict)

    def fusion_for(self, language: str) -> Fusion:
        """The fusion measured for questions in ``language`` (a code such as ``en``), else the model's own."""
        return self.language_fusions.get(language, self.fusion)


# Arabic queries (services/language.py tells them by their script), mostly an ayah quoted in part: its words are
# searched in bm25_ar alone, whatever the model (docs/BENCHMARKS.md, "Arabic queries", bench/answers_arabic.py).
ARABIC_QUERIES = Fusion(rrf_k=3, prefetch_limit=100, dense=0.0, bm25=0.0, bm25_ctx=0.0, bm25_tr=0.0, bm25_ar=1.0)

GENERIC = ModelProfile(name="", language_fusions={"ar": ARABIC_QUERIES})

MULTILINGUAL_E5_SMALL = "intfloat/multilingual-e5-small"
ALL_MINILM_L6_V2 = "sentence-transformers/all-MiniLM-L6-v2"

PROFILES: dict[str, ModelProfile] = {
    # E5 was trained with these prefixes; without them its quality drops (model card, "FAQ").
    MULTILINGUAL_E5_SMALL: ModelProfile(
        name=MULTILINGUAL_E5_SMALL,
        query_prefix="query: ",
        document_prefix="passage: ",
        max_tokens=512,
        # int8 weights: the same vectors (cosine to torch fp32 >= 0.9998), the same document speed, faster queries,
        # and the 250k-token embedding at a quarter of its size: an ingest peaks at 1.3 GiB instead of 1.7
        # (docs/BENCHMARKS.md, "Backends for multilingual-e5-small").
        quantization="int8",
        # bench/fusion.py on the dev files with the default sparse layout (both wordings and the transliteration),
        # then `tafsir eval` (docs/BENCHMARKS.md, "Fusion" and "Sparse layout"): among fusions that keep R@1 >= 0.96
        # on the translation queries, the best nDCG@10 on the dev questions (0.637), on a plateau of neighbours
        # within 0.005 of it.
        # The translation's own vector joined later (issue 24, bench/levers.py, docs/BENCHMARKS.md "Levers"): its
        # weight chosen on the question set's development part with the rest fixed, 0.5 of {0.5, 1, 2, 4, 6}; on the
        # held-back part nDCG@10 +0.011 [+0.003, +0.020] against the fusion without it.
        fusion=Fusion(rrf_k=3, prefetch_limit=100, dense=4.0, bm25=0.5, bm25_ctx=6.0, bm25_tr=0.5, dense_tr=0.5),
        # bench/not_found.py (docs/BENCHMARKS.md, "Not found"): every one of the 540 dev questions and translation
        # queries has a passage at 0.8268 or closer; 35 of 50 off-topic questions have none at 0.825.
        min_similarity=0.825,
        language_fusions={
            # English questions (docs/BENCHMARKS.md, "English questions"): the two lists that read English, the dense
            # one (the model is multilingual) and bm25_tr (it holds the English translation), at equal weights; BM25
            # of English words over the Indonesian tafsir only adds noise. 48 English questions: hit@10 0.50 -> 0.88.
            "en": Fusion(rrf_k=3, prefetch_limit=100, dense=1.0, bm25=0.0, bm25_ctx=0.0, bm25_tr=1.0),
            "ar": ARABIC_QUERIES,
        },
    ),
    ALL_MINILM_L6_V2: ModelProfile(name=ALL_MINILM_L6_V2, language_fusions={"ar": ARABIC_QUERIES}),
}


def profile_for(name: str | None, folder: Path | None = None) -> ModelProfile:
    """The facts for model ``name``; a folder's lineage file or sentence-transformers prompts fill gaps."""
    if name in PROFILES:
        return PROFILES[name]
    if folder is not None:
        lineage = folder / LINEAGE_FILE
        if lineage.is_file():
            base = json.loads(lineage.read_text()).get("base")
            if base in PROFILES:
                # Training moves the cosines: a trained model's not-found threshold is measured again, not inherited.
                return replace(PROFILES[base], name=name or base, min_similarity=None)
        prompts = _folder_prompts(folder)
        if prompts:
            return replace(
                GENERIC,
                name=name or "",
                query_prefix=prompts.get("query", ""),
                document_prefix=prompts.get("document", prompts.get("passage", "")),
            )
    return replace(GENERIC, name=name or "")


def _folder_prompts(folder: Path) -> dict[str, str]:
    """The prompts a sentence-transformers folder declares (config_sentence_transformers.json)."""
    path = folder / "config_sentence_transformers.json"
    if not path.is_file():
        return {}
    try:
        prompts = json.loads(path.read_text()).get("prompts") or {}
    except ValueError:
        return {}
    return {key: value for key, value in prompts.items() if isinstance(value, str)}
