"""Thread count and batch size of the embedding backend, chosen by measurement.

Embeds a fixed random sample of the built-in corpus's chunks (sorted longest first, as the pipeline
feeds them) once per (threads, batch size) pair, in one process, and prints one JSON object with the
seconds of each pair and the fastest. Uses TAFSIR_EMBEDDING_BACKEND etc. from the environment.

Usage: python bench/tune.py [--sample 768] [--threads 1 2] [--batch-sizes 8 16 32 64]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=768)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32, 64])
    args = parser.parse_args()

    from ingest.builtin import read_builtin
    from ingest.chunking import ChunkingParams, chunk_ayat
    from services.embedding import Embedder
    from services.settings import Settings

    settings = Settings()
    probe = Embedder(settings)
    params = ChunkingParams(probe.max_tokens, settings.chunk_overlap, probe.reserved_tokens, translation_heading=True)
    chunks = chunk_ayat(read_builtin().ayat, probe.tokenizer, params)
    sample = sorted(random.Random(0).sample(chunks, min(args.sample, len(chunks))), key=lambda c: -c.tokens)
    texts = [c.model_text for c in sample]
    timings = []
    for threads in args.threads:
        embedder = Embedder(settings.model_copy(update={"embedding_threads": threads}))
        embedder.encode_documents(texts[-16:], 16)  # load and warm up outside the timing
        for batch_size in args.batch_sizes:
            started = time.perf_counter()
            embedder.encode_documents(texts, batch_size)
            timings.append({"threads": threads, "batch_size": batch_size, "s": round(time.perf_counter() - started, 2)})
    best = min(timings, key=lambda t: t["s"])
    report = {
        "backend": probe.describe_backend() if probe.loaded else settings.embedding_backend,
        "sample_chunks": len(texts),
        "sample_tokens": sum(c.tokens for c in sample),
        "timings": timings,
        "fastest": best,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
