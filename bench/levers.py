"""Two dense-side levers of the question set's study, measured against today's defaults on the same store:

- ``translation_vector``: a second dense vector per ayah, its translation alone (the Ministry's 2019 wording, with
  the model's document prompt), searched beside the chunk vectors and fused as one more RRF list. Its weight is
  chosen on the development part (``--choose``), then reported on the held-back part.
- ``adapter``: a linear map on query vectors (as LlamaIndex's embedding adapter: identity at the start), trained
  on the development part plus each ayah's translation (as a query) -> its chunks, with a softmax over every
  chunk of the collection; the dense list is then searched with the mapped query. Its control is the same exact
  search with the query as it is (``exact_dense``), since this script searches the chunk vectors with numpy.

The defaults the levers were measured against (before the translation vector was adopted: ``weight_dense_tr=0``)
are rebuilt from the store's own lists (each list searched alone through the project's engine, then
``services/store/base.py``'s ``fuse``), so the baseline equals `tafsir eval` with TAFSIR_WEIGHT_DENSE_TR=0. A lever
adds or replaces one list and fuses again with the same formula; metrics are `tafsir eval`'s (ayah level), and each
lever is compared with the baseline by bench/compare.py's paired bootstrap. Prints one JSON object.

Usage: TAFSIR_QDRANT_PATH=<a copy of a store> python bench/levers.py [--choose dev] [--report held builtin]
       [--floor FILE] [--work FOLDER]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEPTH = 100  # candidates a list contributes (the default fusion's prefetch)
WEIGHTS = (0.5, 1.0, 2.0, 4.0, 6.0)  # grid of the translation list's weight


@dataclasses.dataclass
class Corpus:
    ids: list[str]  # point ids, in the order of ``chunks``
    ayat: list[tuple[int, int]]
    chunks: np.ndarray  # stored dense vectors, unit length
    translations: dict[tuple[int, int], str]


def read_corpus(store, collection: str) -> Corpus:
    ids, ayat, vectors, translations, offset = [], [], [], {}, None
    while True:
        points, offset = store.scroll_points(collection, offset)
        for point in points:
            key = (point.payload["surah"], point.payload["ayah"])
            ids.append(point.id)
            ayat.append(key)
            vectors.append(point.dense)
            translations[key] = point.payload.get("translation_2019") or point.payload.get("translation_legacy") or ""
        if offset is None:
            break
    matrix = np.asarray(vectors, dtype=np.float32)
    return Corpus(ids, ayat, matrix / np.linalg.norm(matrix, axis=1, keepdims=True), translations)


def encode_queries(embedder, texts: list[str]) -> np.ndarray:
    return np.asarray([embedder.encode_query(t) for t in texts], dtype=np.float32)


def top(scores: np.ndarray, n: int) -> np.ndarray:
    best = np.argpartition(-scores, n)[:n]
    return best[np.argsort(-scores[best], kind="stable")]


def rrf(lists: list[tuple[list[str], float]], k: float) -> list[str]:
    """Weighted RRF as services/store/base.py's ``fuse`` computes it (its ``weighted_rrf``); ties by id."""
    from services.store.base import weighted_rrf

    scores = weighted_rrf(((ranked[:DEPTH], weight) for ranked, weight in lists if weight > 0), k)
    return sorted(scores, key=lambda i: (-scores[i], i))


class Study:
    """Each query's lists from the store, its dense vector, and what the levers add."""

    def __init__(self, engine, corpus: Corpus) -> None:
        from retriever.search import SearchOptions
        from services.store import base

        self.engine, self.corpus, self.base, self.options = engine, corpus, base, SearchOptions(k=10)
        self.position = {point_id: i for i, point_id in enumerate(corpus.ids)}
        self.chunks_of: dict[tuple[int, int], list[str]] = defaultdict(list)
        for point_id, key in zip(corpus.ids, corpus.ayat, strict=True):
            self.chunks_of[key].append(point_id)

    def lists(self, query: str) -> tuple[list[tuple[list[str], float]], float, np.ndarray]:
        """(each list of today's request with its weight, the RRF k, the query's dense vector)."""
        request = self.engine.request(query, dataclasses.replace(self.options, k=DEPTH))
        collection = self.engine.settings.collection
        found = []
        for (_, weight), part in zip(request.lists(), self.base.list_requests(request), strict=True):
            hits = self.base.rank_hits(self.engine.store.search(collection, part), part)
            found.append(([h.id for h in hits], weight))
        return found, request.rrf_k, np.asarray(request.dense, dtype=np.float32)

    def ayat(self, ranked: list[str]) -> list[tuple[int, int]]:
        return [self.corpus.ayat[self.position[i]] for i in ranked]

    def by_ayah(self, ayat_ranked: np.ndarray, keys: list[tuple[int, int]]) -> list[str]:
        """An ayah-level ranking as a list of point ids: every chunk of an ayah at the ayah's place."""
        return [point_id for i in ayat_ranked for point_id in self.chunks_of[keys[i]]]


def metrics(queries, rankings) -> tuple[dict, dict]:
    """(`tafsir eval`'s summary, bench/compare.py's per-question metrics) of ayah rankings."""
    from bench.compare import per_query_metrics
    from services.evaluation import evaluate

    report = evaluate(queries, rankings).as_dict(per_query=True)
    summary = {k: v for k, v in report.items() if isinstance(v, float)}
    return summary, per_query_metrics(report)


def train_adapter(dev_queries, dev_vectors, corpus: Corpus, embedder, steps: int, seed: int) -> tuple[np.ndarray, dict]:
    """A 384x384 map W (identity at the start): softmax over every chunk, the labelled ones positive (grade 2
    when a question has them), plus each ayah's translation as a query of its own chunks; ||W - I||^2 keeps it
    near the identity."""
    import torch

    torch.manual_seed(seed)
    rows: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, key in enumerate(corpus.ayat):
        rows[key].append(i)
    keys = sorted(corpus.translations)
    started = time.perf_counter()
    translation_queries = encode_queries(embedder, [corpus.translations[k] for k in keys])
    encode_seconds = time.perf_counter() - started
    targets = []
    for q in dev_queries:
        best = max(q.relevant.values())
        targets.append([i for key, g in q.relevant.items() if g == best for i in rows.get(key, [])])
    targets += [rows[k] for k in keys]
    queries = np.concatenate([dev_vectors, translation_queries])
    # The dev questions count as much as all the translations together.
    weights = np.concatenate([np.full(len(dev_vectors), len(keys) / len(dev_vectors)), np.ones(len(keys))])
    mask = np.zeros((len(queries), len(corpus.ids)), dtype=bool)
    for row, columns in enumerate(targets):
        mask[row, columns] = True
    q = torch.tensor(queries)
    c = torch.tensor(corpus.chunks)
    positive = torch.tensor(mask)
    weight = torch.tensor(weights / weights.sum(), dtype=torch.float32)
    w = torch.nn.Parameter(torch.eye(q.shape[1]))
    optimizer = torch.optim.Adam([w], lr=1e-3)
    scale, keep_near = 50.0, 1.0
    started = time.perf_counter()
    for _ in range(steps):
        mapped = torch.nn.functional.normalize(q @ w.T, dim=1)
        logits = scale * mapped @ c.T
        loss = -(weight * (torch.logsumexp(logits.masked_fill(~positive, -1e9), 1) - torch.logsumexp(logits, 1))).sum()
        loss = loss + keep_near * ((w - torch.eye(q.shape[1])) ** 2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    info = {
        "steps": steps,
        "pairs": {"dev_questions": len(dev_vectors), "translations": len(keys)},
        "translation_encode_seconds": round(encode_seconds, 1),
        "train_seconds": round(time.perf_counter() - started, 1),
        "final_loss": round(float(loss), 4),
        "distance_from_identity": round(float(((w - torch.eye(q.shape[1])) ** 2).sum().sqrt()), 4),
    }
    return w.detach().numpy(), info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--choose", default="dev", help="the set the translation weight is chosen on")
    parser.add_argument("--report", nargs="+", default=["held", "builtin"], help="sets reported (held-back first)")
    parser.add_argument("--floor", type=Path, help="translation queries whose Recall@1 must stay at 0.96 or more")
    parser.add_argument("--steps", type=int, default=200, help="adapter training steps (full batch)")
    parser.add_argument("--seed", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=10_000)
    args = parser.parse_args()

    from bench.compare import compare
    from retriever.search import SearchEngine
    from services.evaluation import NAMED_QUERIES, load_queries
    from services.settings import Settings

    # The baseline is the fusion these levers were measured against: without the translation vector, since adopted
    # (a store holds it now, and the lever below computes the same list with numpy).
    engine = SearchEngine(Settings(weight_dense_tr=0.0))
    store, collection = engine.store, engine.settings.collection
    corpus = read_corpus(store, store.resolve_alias(collection))
    study = Study(engine, corpus)
    keys = sorted(corpus.translations)

    started = time.perf_counter()
    translation_vectors = engine.embedder.encode_documents([corpus.translations[k] for k in keys])
    translation_vectors /= np.linalg.norm(translation_vectors, axis=1, keepdims=True)
    ingest_cost = {"texts": len(keys), "seconds": round(time.perf_counter() - started, 1)}

    sets = {name: load_queries(NAMED_QUERIES.get(name, name)) for name in dict.fromkeys([args.choose, *args.report])}
    if args.floor:
        sets["floor"] = load_queries(args.floor)
    runs = {}
    for name, queries in sets.items():
        rows = []
        for q in queries:
            lists, k, dense = study.lists(q.query)
            rows.append((lists, k, dense))
        runs[name] = rows

    def rank_all(name: str, lever: str, weight: float = 0.0, adapter: np.ndarray | None = None) -> list:
        rankings = []
        for lists, k, dense in runs[name]:
            extra = list(lists)
            if lever == "translation_vector":
                ayat_ranked = top(translation_vectors @ dense, DEPTH)
                extra.append((study.by_ayah(ayat_ranked, keys), weight))
            elif lever in ("exact_dense", "adapter"):
                vector = dense if adapter is None else adapter @ dense
                vector = vector / np.linalg.norm(vector)
                extra[0] = ([corpus.ids[i] for i in top(corpus.chunks @ vector, DEPTH)], lists[0][1])
            rankings.append(study.ayat(rrf(extra, k)))
        return rankings

    result: dict = {"store": str(engine.settings.qdrant_path), "translation_vector_ingest_cost": ingest_cost}
    baseline = {name: metrics(sets[name], rank_all(name, "baseline")) for name in sets}
    result["baseline"] = {name: summary for name, (summary, _) in baseline.items()}

    grid = {w: metrics(sets[args.choose], rank_all(args.choose, "translation_vector", w))[0] for w in WEIGHTS}
    allowed = [
        w
        for w in WEIGHTS
        if not args.floor or metrics(sets["floor"], rank_all("floor", "translation_vector", w))[0]["recall@1"] >= 0.96
    ]
    chosen = max(allowed, key=lambda w: grid[w]["ndcg@10"]) if allowed else None
    result["translation_vector"] = {
        "grid_on_" + args.choose: {str(w): grid[w] for w in WEIGHTS},
        "chosen_weight": chosen,
    }

    dev_vectors = np.stack([dense for _, _, dense in runs[args.choose]])
    adapter, info = train_adapter(sets[args.choose], dev_vectors, corpus, engine.embedder, args.steps, args.seed)
    result["adapter"] = {"training": info}

    levers = {
        "translation_vector": lambda name: rank_all(name, "translation_vector", chosen or WEIGHTS[0]),
        "exact_dense": lambda name: rank_all(name, "exact_dense"),
        "adapter": lambda name: rank_all(name, "adapter", adapter=adapter),
    }
    started = time.perf_counter()
    for lever, rank in levers.items():
        for name in sets:
            summary, per_query = metrics(sets[name], rank(name))
            entry = result.setdefault("figures", {}).setdefault(lever, {})
            entry[name] = summary
            if name in args.report:
                entry[name + "_vs_baseline"] = compare(baseline[name][1], per_query, args.rounds, args.seed)["metrics"]
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
