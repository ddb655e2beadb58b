"""Scale: build collections of 10k to 1M points with the project's schema and measure what they cost.

Per size and index configuration: upsert throughput, index build time, disk, the RSS of a serving
process, dense/sparse/hybrid latency (p50/p95/p99, k=10) with and without an edition filter, and the
recall@10 of the HNSW search against exact search (Qdrant's ``exact=True``) for each ``hnsw_ef``.

Points are made from real ones: the chunks of an existing store (``--corpus-store``, e.g. one that
``tafsir ingest`` built with the default model) are copied and read once; each synthetic point is a
random real chunk's dense vector plus Gaussian noise (``--noise``: the noise vector's expected norm),
renormalised, with that chunk's three BM25 vectors (each term kept with probability 0.8, its weight
scaled by a factor in [0.8, 1.2]) and its payload, under one of ``--editions`` edition ids. Queries:
the dev questions, embedded by the project's model and BM25 encoder, and the rest up to ``--queries``
made like points but with more noise and 3-6 of the chunk's heaviest BM25 terms.

Serving is measured in a fresh process per collection (``--serve``), so its RSS is what ``tafsir
serve`` would hold for the store: the collection loaded warm, without the embedding model.

Usage: python bench/scale.py --sizes 10000,100000 --corpus-store data/qdrant [--configs default,int8]
       [--ef 64,128] [--stores edge,server] [--work-dir /tmp/tafsir-scale]
Prints one JSON object. Collections are built under --work-dir and deleted afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_QUESTIONS = (
    ROOT / "services" / "evaluation_questions.jsonl"
)  # the 40 natural questions shipped with the project

K = 10
COLLECTION = "scale"
UPSERT_BATCH = 1024


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def recall_at_k(found: Sequence[str], exact: Sequence[str], k: int = K) -> float:
    """Share of the exact search's top ``k`` that the approximate search found in its top ``k``."""
    truth = list(exact)[:k]
    if not truth:
        return 1.0
    return len(set(list(found)[:k]) & set(truth)) / len(truth)


def configs() -> dict[str, Any]:
    """The index configurations the benchmark can build, by name (``--configs``)."""
    from services.store.base import IndexConfig, Quantization

    float32 = IndexConfig(quantization=Quantization.NONE, vectors_on_disk=False)  # Qdrant's own defaults
    return {
        "float32": float32,
        "m32": replace(float32, hnsw_m=32, hnsw_ef_construct=200),
        "int8": replace(float32, quantization=Quantization.INT8),
        "int8-disk": replace(float32, quantization=Quantization.INT8, vectors_on_disk=True),
        # the project's defaults:
        "int8-all-disk": replace(float32, quantization=Quantization.INT8, vectors_on_disk=True, sparse_on_disk=True),
    }


# --- the corpus and the synthetic points -----------------------------------------------------------------


@dataclass
class Corpus:
    dense: np.ndarray  # (chunks, dim), unit length
    sparse: list[dict[str, tuple[list[int], list[float]]]]
    payloads: list[dict[str, Any]]


def read_corpus(store_path: Path, work: Path) -> Corpus:
    """Every point of the live collection of the embedded store at ``store_path``, read from a copy (the
    store may be open in another process; its lock covers the folder, not a copy of one shard)."""
    import qdrant_edge as edge

    aliases = json.loads((store_path / "aliases.json").read_text(encoding="utf-8"))
    collection = aliases.get("tafsir") or next(iter(aliases.values()))
    copy = work / "corpus-shard"
    shutil.copytree(store_path / "collections" / collection / "shard", copy)
    shard = edge.EdgeShard.load(str(copy))
    dense, sparse, payloads = [], [], []
    offset = None
    while True:
        records, offset = shard.scroll(
            edge.ScrollRequest(offset=offset, limit=1000, with_payload=True, with_vector=True)
        )
        for record in records:
            vectors = record.vector
            dense.append(vectors["dense"])
            sparse.append(
                {
                    name: (list(vectors[name].indices), list(vectors[name].values))
                    for name in ("bm25", "bm25_ctx", "bm25_tr")
                    if name in vectors
                }
            )
            payloads.append(record.payload or {})
        if offset is None:
            break
    shard.close()
    shutil.rmtree(copy)
    matrix = np.asarray(dense, dtype=np.float32)
    return Corpus(matrix / np.linalg.norm(matrix, axis=1, keepdims=True), sparse, payloads)


def perturb(base: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """``base`` rows plus Gaussian noise of expected norm ``noise``, renormalised."""
    sigma = noise / np.sqrt(base.shape[1])
    moved = base + rng.normal(0.0, sigma, base.shape).astype(np.float32)
    return moved / np.linalg.norm(moved, axis=1, keepdims=True)


def resample_sparse(vector: tuple[list[int], list[float]], rng: np.random.Generator) -> tuple[list[int], list[float]]:
    indices, values = vector
    if not indices:
        return [], []
    keep = rng.random(len(indices)) < 0.8
    scale = rng.uniform(0.8, 1.2, len(indices))
    kept = [(i, float(v * s)) for i, v, s, k in zip(indices, values, scale, keep, strict=True) if k]
    if not kept:
        kept = [(indices[0], float(values[0]))]
    return [i for i, _ in kept], [v for _, v in kept]


def synthetic_points(corpus: Corpus, size: int, editions: int, noise: float, seed: int) -> Iterator[list]:
    """Batches of ``PointToStore``: see the module docstring."""
    from services.store.base import PointToStore, SparseVector

    rng = np.random.default_rng(seed)
    for start in range(0, size, UPSERT_BATCH):
        count = min(UPSERT_BATCH, size - start)
        bases = rng.integers(0, len(corpus.payloads), count)
        dense = perturb(corpus.dense[bases], noise, rng)
        batch = []
        for offset, (base, vector) in enumerate(zip(bases, dense, strict=True)):
            number = start + offset
            sparse = {name: SparseVector(*resample_sparse(value, rng)) for name, value in corpus.sparse[base].items()}
            payload = {**corpus.payloads[base], "edition": edition_id(number % editions)}
            batch.append(PointToStore(str(uuid.UUID(int=number + 1)), vector.tolist(), sparse, payload))
        yield batch


def edition_id(number: int) -> str:
    return f"id.edition{number:02d}"


def make_queries(corpus: Corpus, count: int, questions: Path | None, seed: int) -> list[dict[str, Any]]:
    """Query vectors (dense, BM25): the dev questions through the real model, the rest perturbed chunks."""
    queries: list[dict[str, Any]] = []
    if questions is not None and questions.exists():
        from services.embedding import Embedder
        from services.settings import Settings
        from services.sparse import Bm25Settings, SparseEncoder

        settings = Settings()
        embedder = Embedder(settings)
        encoder = SparseEncoder(Bm25Settings.named(settings.sparse_layout))
        for line in questions.read_text(encoding="utf-8").splitlines()[:count]:
            text = json.loads(line)["query"]
            sparse = encoder.query(text)
            queries.append({"dense": embedder.encode_query(text), "sparse": [sparse.indices, sparse.values]})
    rng = np.random.default_rng(seed + 1)
    while len(queries) < count:
        base = int(rng.integers(0, len(corpus.payloads)))
        dense = perturb(corpus.dense[[base]], 0.6, rng)[0]
        indices, values = corpus.sparse[base].get("bm25", ([], []))
        heaviest = sorted(zip(values, indices, strict=True), reverse=True)[: int(rng.integers(3, 7))]
        terms = sorted((i, 1.0) for _, i in heaviest)
        queries.append({"dense": dense.tolist(), "sparse": [[i for i, _ in terms], [v for _, v in terms]]})
    return queries


# --- building -----------------------------------------------------------------------------------------


def open_bench_store(kind: str, path: Path, index: Any) -> Any:
    if kind == "edge":
        from services.store.edge import EdgeStore

        return EdgeStore(path, index=index)
    from qdrant_client import QdrantClient

    from services.store.server import ServerStore

    return ServerStore(QdrantClient(path=str(path)), f"local:{path}", index=index)


def build(kind: str, path: Path, index: Any, corpus: Corpus, args: argparse.Namespace, size: int) -> dict:
    from rich.console import Console
    from rich.progress import Progress

    from services.store.base import CollectionSpec

    store = open_bench_store(kind, path, index)
    try:
        spec = CollectionSpec(dense_size=corpus.dense.shape[1], model="bench/scale", fingerprint="scale")
        store.create_collection(COLLECTION, spec)
        upserting = indexing = 0.0
        with Progress(console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task(f"{kind} {size:,}: upsert", total=size)
            done = 0
            for batch in synthetic_points(corpus, size, args.editions, args.noise, args.seed):
                started = time.perf_counter()
                store.upsert(COLLECTION, batch)
                upserting += time.perf_counter() - started
                done += len(batch)
                progress.advance(task, len(batch))
                if args.optimize_every and done % args.optimize_every < len(batch) and done < size:
                    # Edge has no background optimizer: index what is written so far, so the one appendable
                    # segment (its BM25 indexes in RAM) never holds the whole collection.
                    started = time.perf_counter()
                    store.optimize(COLLECTION)
                    indexing += time.perf_counter() - started
        print(f"{kind} {size:,}: building the index…", file=sys.stderr)
        started = time.perf_counter()
        store.optimize(COLLECTION)
        indexing += time.perf_counter() - started
        peak = rss_mb()
        settings = store.index_settings(COLLECTION)
    finally:
        store.close()
    return {
        "upsert_seconds": round(upserting, 1),
        "upsert_points_per_s": round(size / upserting),
        "index_seconds": round(indexing, 1),
        "builder_rss": peak,  # the building process (this one), at the end of the build
        "disk_mb": round(folder_bytes(path) / 2**20, 1),
        "segments": settings.get("segments"),
        "indexed_vectors": settings.get("indexed_vectors"),
        # what the store recorded: proof that the configuration reached it
        "recorded": {
            key: settings[key]
            for key in ("hnsw_config", "quantization_config", "optimizers", "optimizer_config")
            if key in settings
        },
    }


def folder_bytes(path: Path) -> int:
    """Bytes the folder occupies on disk, as `du` counts them (Qdrant preallocates sparse files)."""
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())


# --- serving (a fresh process) ---------------------------------------------------------------------------


def rss_mb() -> dict[str, float]:
    """This process's resident memory: all of it (VmRSS), its peak (VmHWM), and the split between anonymous
    memory (RssAnon: what must fit in RAM) and pages of memory-mapped files (RssFile: page cache that the
    kernel can drop and read again, which is what on-disk vectors and payload become)."""
    names = {"VmRSS": "rss_mb", "VmHWM": "peak_rss_mb", "RssAnon": "anon_mb", "RssFile": "file_mb"}
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in names:
            fields[names[key]] = round(int(value.split()[0]) / 1024, 1)
    return fields


def serve(args: argparse.Namespace) -> dict:
    """Open the built store, warm it, and measure latency and recall; runs in its own process."""
    from services.models import MULTILINGUAL_E5_SMALL, PROFILES
    from services.store.base import (
        SPARSE,
        SPARSE_CONTEXT,
        SPARSE_TRANSLATION,
        IndexConfig,
        Mode,
        PointFilter,
        Quantization,
        SearchRequest,
        SparseVector,
    )

    described = json.loads(args.index)
    index = IndexConfig(**{**described, "quantization": Quantization(described["quantization"])})
    queries = json.loads(Path(args.queries_file).read_text(encoding="utf-8"))
    if args.store_kind == "server":
        # qdrant-client's local mode is a pure-Python engine (numpy, no HNSW): it shows that the adapter builds and
        # answers the schema; its timings say nothing of a Qdrant server, so a few queries suffice.
        queries = queries[: args.server_queries]
    fusion = PROFILES[MULTILINGUAL_E5_SMALL].fusion
    editions = [edition_id(0)]
    report: dict[str, Any] = {}

    def request(query: dict, mode: Mode, filtered: bool, exact: bool = False) -> SearchRequest:
        return SearchRequest(
            mode=mode,
            limit=K,
            dense=query["dense"],
            sparse=SparseVector(*query["sparse"]),
            filter=PointFilter(editions=editions) if filtered else None,
            prefetch_limit=fusion.prefetch_limit,
            rrf_k=fusion.rrf_k,
            dense_weight=fusion.dense,
            sparse_weights={SPARSE: fusion.bm25, SPARSE_CONTEXT: fusion.bm25_ctx, SPARSE_TRANSLATION: fusion.bm25_tr},
            exact=exact,
        )

    started = time.perf_counter()
    store = open_bench_store(args.store_kind, Path(args.serve), replace(index, hnsw_ef=args.ef_values[0]))
    report["open_seconds"] = round(time.perf_counter() - started, 2)
    report["rss_after_open"] = rss_mb()
    exact: dict[tuple[str, bool], list[list[str]]] = {}
    for mode in (Mode.DENSE, Mode.HYBRID):
        for filtered in (False, True):
            exact[mode.value, filtered] = [
                [hit.id for hit in store.search(COLLECTION, request(q, mode, filtered, exact=True))] for q in queries
            ]
    store.close()
    for ef in args.ef_values:
        store = open_bench_store(args.store_kind, Path(args.serve), replace(index, hnsw_ef=ef))
        for query in queries[:20]:  # warm-up: the pages the searches touch are read once
            for mode in Mode:
                store.search(COLLECTION, request(query, mode, False))
        runs: dict[str, Any] = {}
        for mode in Mode:
            for filtered in (False, True):
                timings, recalls = [], []
                for number, query in enumerate(queries):
                    started = time.perf_counter()
                    hits = store.search(COLLECTION, request(query, mode, filtered))
                    timings.append((time.perf_counter() - started) * 1000)
                    if (mode.value, filtered) in exact:
                        recalls.append(recall_at_k([h.id for h in hits], exact[mode.value, filtered][number]))
                entry = {
                    "p50_ms": round(percentile(timings, 0.50), 2),
                    "p95_ms": round(percentile(timings, 0.95), 2),
                    "p99_ms": round(percentile(timings, 0.99), 2),
                }
                if recalls:
                    entry["recall_at_10"] = round(sum(recalls) / len(recalls), 4)
                runs[f"{mode.value}{'+edition' if filtered else ''}"] = entry
        runs["rss"] = rss_mb()
        report[f"ef={ef}"] = runs
        store.close()
    return report


# --- the run -------------------------------------------------------------------------------------------


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (as `uptime` prints them): the machine is shared."""
    return [float(value) for value in Path("/proc/loadavg").read_text().split()[:3]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000", help="comma-separated numbers of points")
    parser.add_argument("--configs", default="int8-all-disk", help=f"comma-separated, of: {', '.join(configs())}")
    parser.add_argument("--ef", default="64,128,256", help="comma-separated hnsw_ef values measured at query time")
    parser.add_argument("--stores", default="edge", help="edge, server (qdrant-client local mode), or both")
    parser.add_argument("--server-max", type=int, default=10_000, help="largest size run on the server adapter")
    parser.add_argument("--server-queries", type=int, default=20, help="queries run on the server adapter")
    parser.add_argument(
        "--optimize-every", type=int, default=200_000, help="points between index builds (0: one, at the end)"
    )
    parser.add_argument("--indexing-threshold-kb", type=int, help="override every configuration's threshold")
    parser.add_argument("--corpus-store", type=Path, default=Path("data/qdrant"), help="embedded store to sample")
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS, help="JSONL of questions, or none")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--editions", type=int, default=10)
    parser.add_argument("--noise", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the built collections")
    # internal: the serving process
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--store-kind", default="edge", help=argparse.SUPPRESS)
    parser.add_argument("--index", help=argparse.SUPPRESS)
    parser.add_argument("--queries-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.ef_values = [int(v) for v in args.ef.split(",")]

    if args.serve:
        print(json.dumps(serve(args)))
        return

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="tafsir-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    chosen = {name: configs()[name] for name in args.configs.split(",")}
    if args.indexing_threshold_kb is not None:
        chosen = {
            name: replace(index, indexing_threshold_kb=args.indexing_threshold_kb) for name, index in chosen.items()
        }
    corpus = read_corpus(args.corpus_store, work)
    questions = None if str(args.questions) == "none" else args.questions
    queries = make_queries(corpus, args.queries, questions, args.seed)
    queries_file = work / "queries.json"
    queries_file.write_text(json.dumps(queries), encoding="utf-8")
    report: dict[str, Any] = {
        "corpus_chunks": len(corpus.payloads),
        "dim": int(corpus.dense.shape[1]),
        "queries": len(queries),
        "editions": args.editions,
        "noise": args.noise,
        "cpu": cpu_name(),
        "runs": [],
    }
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            for kind in args.stores.split(","):
                if kind == "server" and size > args.server_max:
                    continue
                for name, index in chosen.items():
                    path = work / f"{kind}-{name}-{size}"
                    run: dict[str, Any] = {"size": size, "store": kind, "config": name, "index": index.described()}
                    run["load_before"] = load_average()
                    run["build"] = build(kind, path, index, corpus, args, size)
                    command = [
                        sys.executable,
                        __file__,
                        "--serve",
                        str(path),
                        "--store-kind",
                        kind,
                        "--index",
                        json.dumps(index.described()),
                        "--queries-file",
                        str(queries_file),
                        "--ef",
                        args.ef,
                        "--server-queries",
                        str(args.server_queries),
                    ]
                    print(f"{kind} {size:,} {name}: serving…", file=sys.stderr)
                    served = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
                    if served.returncode != 0:
                        raise SystemExit(f"the serving process failed:\n{served.stderr[-3000:]}")
                    run["serve"] = json.loads(served.stdout.strip().splitlines()[-1])
                    run["load_after"] = load_average()
                    report["runs"].append(run)
                    print(json.dumps(run), file=sys.stderr)
                    if not args.keep:
                        shutil.rmtree(path, ignore_errors=True)
    finally:
        if not args.keep and args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
