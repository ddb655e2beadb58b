"""Arabic quotes: does a span copied from an ayah find that ayah, and is it answered rather than refused?

``make_spans(ayat, count, seed)`` draws spans of 4-7 consecutive words from the Arabic text of the built-in corpus's
ayat (Tanzil's Uthmani text, as stored in each point's payload ``arabic``), with a fixed seed, in three spellings
taken in turn:

- ``diacritics``: as printed, every mark kept;
- ``harakat_stripped``: vowel marks, shadda and sukun removed (U+064B-U+0652, what an Arabic keyboard user or
  pyarabic's ``strip_tashkeel`` leaves: the small alef and the Quranic signs stay);
- ``marks_stripped``: every combining mark removed (Unicode's, the small alef and the Quranic signs with them).

``measure(engine, spans, modes)`` searches each span with the engine as configured and returns hit@1 and hit@3 (the
span's own ayah among the first passages) per mode, per spelling, and the share of spans that the answering core's
not-found decision (retriever/not_found.py) would refuse. Modes (``MODES``):

- ``dense``, ``sparse``, ``hybrid``: the engine's modes, each with the fusion routed for the query's language
  (services/models.py, ``language_fusions``: Arabic -> bm25_ar);
- ``routed``: the default a face uses (hybrid, routed), the figure a README row quotes;
- ``indonesian_fusion``: hybrid with the model's own (Indonesian) fusion, what an Arabic query got before the route.

Point TAFSIR_QDRANT_PATH at a copy of a store ingested with ``bm25_ar`` (a `tafsir ingest` adds it). Prints one JSON
object. ``--dense-weight W`` (repeatable) adds ``routed_dense_W``: the Arabic route with a dense weight W beside
bm25_ar's 1, to measure whether the multilingual model adds anything.

Usage: python bench/answers_arabic.py [--spans 120] [--seed 23] [--mode routed ...] [--dense-weight 0.5 ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import re
import sys
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPELLINGS = ("diacritics", "harakat_stripped", "marks_stripped")
MODES = ("dense", "sparse", "hybrid", "routed", "indonesian_fusion")
_HARAKAT = re.compile("[\u064b-\u0652]")
_LETTER = re.compile("[\u0620-\u064a\u0671]")


@dataclass(frozen=True)
class Span:
    surah: int
    ayah: int
    text: str
    words: int
    spelling: str


def spelled(text: str, spelling: str) -> str:
    if spelling == "harakat_stripped":
        return _HARAKAT.sub("", text)
    if spelling == "marks_stripped":
        return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return text


def make_spans(ayat: Iterable, count: int = 120, seed: int = 23, shortest: int = 4, longest: int = 7) -> list[Span]:
    """``count`` spans of ``shortest``-``longest`` consecutive words (a pause mark between two words comes along, as
    it would in a copy), from ayat drawn with ``seed``; the spellings in turn."""
    rng = random.Random(seed)
    pool = [a for a in ayat if a.arabic and sum(1 for t in a.arabic.split() if _LETTER.search(t)) >= shortest]
    spans = []
    for i, ayah in enumerate(rng.sample(pool, count)):
        tokens = ayah.arabic.split()
        words = [j for j, token in enumerate(tokens) if _LETTER.search(token)]
        size = rng.randint(shortest, min(longest, len(words)))
        start = rng.randint(0, len(words) - size)
        text = " ".join(tokens[words[start] : words[start + size - 1] + 1])
        spelling = SPELLINGS[i % len(SPELLINGS)]
        spans.append(Span(ayah.surah, ayah.ayah, spelled(text, spelling), size, spelling))
    return spans


def _engine_for(engine, mode: str):
    """(engine, search mode) for a named mode: the same store and model, the fusion the mode asks for."""
    from retriever.search import SearchEngine
    from services.store.base import Mode

    if mode in ("dense", "sparse", "hybrid"):
        return engine, Mode(mode)
    if mode == "routed":
        return engine, Mode.HYBRID
    if mode == "indonesian_fusion":
        fusion = engine.embedder.profile.fusion.overridden(engine.settings.fusion_overrides())
        weights = {f"weight_{name}": getattr(fusion, name) for name in ("dense", "bm25", "bm25_ctx", "bm25_tr")}
        update = {**weights, "weight_bm25_ar": 0.0, "rrf_k": fusion.rrf_k, "prefetch_limit": fusion.prefetch_limit}
    elif mode.startswith("routed_dense_"):
        update = {"weight_dense": float(mode.removeprefix("routed_dense_"))}
    else:
        raise ValueError(f"unknown mode {mode!r}: expected one of {', '.join(MODES)} or routed_dense_<weight>")
    settings = engine.settings.model_copy(update=update)
    return SearchEngine(settings, store=engine.store, embedder=engine.embedder, sparse=engine.sparse), Mode.HYBRID


def _hits(engine, mode: str, spans: Sequence[Span]) -> list[int | None]:
    """The rank (1-based) of each span's ayah among the first 3 passages, None when it is not there."""
    from retriever.search import SearchOptions

    searcher, search_mode = _engine_for(engine, mode)
    options = SearchOptions(k=3, mode=search_mode)
    ranks = []
    for span in spans:
        ayat = [(p.surah, p.ayah) for p in searcher.search(span.text, options)]
        ranks.append(ayat.index((span.surah, span.ayah)) + 1 if (span.surah, span.ayah) in ayat else None)
    return ranks


def _rates(ranks: Sequence[int | None]) -> dict[str, float]:
    n = len(ranks) or 1
    return {
        "hit@1": round(sum(1 for r in ranks if r == 1) / n, 4),
        "hit@3": round(sum(1 for r in ranks if r is not None) / n, 4),
    }


def refused(engine, spans: Sequence[Span]) -> float:
    """The share of spans the answering core's not-found decision would refuse (retriever/not_found.py)."""
    from retriever.answer import Answerer

    answerer = Answerer(engine)
    refusals = sum(1 for span in spans if not answerer.judge(span.text, engine.search_probed(span.text)).answers)
    return round(refusals / (len(spans) or 1), 4)


def measure(engine, spans: Sequence[Span], modes: Sequence[str] = MODES) -> dict:
    """hit@1 and hit@3 per mode (overall and per spelling), the misses of the routed default, and the share refused."""
    result: dict = {"spans": len(spans), "by_spelling": dict(Counter(s.spelling for s in spans))}
    for mode in modes:
        started = time.perf_counter()
        ranks = _hits(engine, mode, spans)
        by_spelling: dict[str, list[int | None]] = defaultdict(list)
        for span, rank in zip(spans, ranks, strict=True):
            by_spelling[span.spelling].append(rank)
        result[mode] = {
            **_rates(ranks),
            **{spelling: _rates(r) for spelling, r in sorted(by_spelling.items())},
            "ms_per_query": round(1000 * (time.perf_counter() - started) / (len(spans) or 1), 1),
        }
        if mode == "routed":
            result["routed_misses"] = [
                dataclasses.asdict(span) for span, rank in zip(spans, ranks, strict=True) if rank is None
            ]
    result["refused"] = refused(engine, spans)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=120, help="How many spans (default 120).")
    parser.add_argument("--seed", type=int, default=23, help="The seed that draws them (default 23).")
    parser.add_argument("--mode", action="append", choices=MODES, help="A mode to measure (default: all).")
    parser.add_argument("--dense-weight", action="append", type=float, default=[], help="Also the route with this.")
    args = parser.parse_args()

    from ingest.builtin import read_builtin
    from retriever.search import shared_engine
    from services.settings import Settings

    engine = shared_engine(Settings())
    spans = make_spans(read_builtin().ayat, args.spans, args.seed)
    modes = [*(args.mode or MODES), *(f"routed_dense_{w:g}" for w in args.dense_weight)]
    report = {"model": engine.embedder.identity, "seed": args.seed, **measure(engine, spans, modes)}
    print(json.dumps(report, ensure_ascii=False))


if __name__ == "__main__":
    main()
