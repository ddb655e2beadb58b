"""Ingest benchmark: full ingest of the built-in corpus vs a bare ``encode`` of the same chunks, in one run.

Prints one JSON object. Measures, on a fresh embedded store in a temporary folder:
  - ``cli_first_s``: `tafsir ingest --json` in a new process (imports, model load, chunking, embedding,
    upserts, alias swap: what a user waits for);
  - ``cli_second_s``: the same command again on the unchanged corpus (must embed 0 chunks);
  - ``pipeline_s``: the pipeline in-process with the model already loaded (``--full`` into a new store),
    and ``encode_s``: a bare ``model.encode`` of exactly the chunks it produced, same model, same batch
    size, same process: ``ratio`` = pipeline_s / encode_s (the floor is 1.0).

Usage: python bench/ingest.py [--repeat N]   (medians over N rounds)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def cli_ingest(store: Path) -> tuple[float, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAFSIR_")}
    env.update(TAFSIR_QDRANT_PATH=str(store), HF_HUB_OFFLINE="1")
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "ingest", "--json"], env=env, capture_output=True, text=True, cwd=ROOT
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    return elapsed, json.loads(result.stdout)


def in_process(store: Path) -> dict:
    from ingest.pipeline import IngestPipeline
    from ingest.sources import read_builtin
    from services.embedding import Embedder
    from services.settings import Settings
    from services.store import open_store

    settings = Settings(_env_file=None, qdrant_path=store)
    embedder = Embedder(settings)
    embedder.warm_up()
    source = read_builtin()
    vector_store = open_store(settings)
    try:
        pipeline = IngestPipeline(settings, vector_store, embedder)
        started = time.perf_counter()
        summary = pipeline.run(source, full=True)
        pipeline_s = time.perf_counter() - started
    finally:
        vector_store.close()
    texts = [c.text for c in pipeline.chunk(source.ayat)]
    started = time.perf_counter()
    embedder.model.encode(texts, batch_size=settings.embed_batch_size, show_progress_bar=False)
    encode_s = time.perf_counter() - started
    return {"pipeline_s": pipeline_s, "encode_s": encode_s, "chunks": len(texts), "embedded": summary.embedded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    rounds = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            first_s, first = cli_ingest(Path(tmp) / "cli")
            second_s, second = cli_ingest(Path(tmp) / "cli")
            measured = in_process(Path(tmp) / "inproc")
        rounds.append(
            {
                "cli_first_s": first_s,
                "cli_second_s": second_s,
                "second_embedded": second["embedded"],
                "first_points": first["chunks"],
                **measured,
            }
        )
    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    report = {
        "rounds": len(rounds),
        "chunks": median["chunks"],
        "cli_first_s": round(median["cli_first_s"], 2),
        "cli_second_s": round(median["cli_second_s"], 2),
        "second_embedded": median["second_embedded"],
        "second_over_first": round(median["cli_second_s"] / median["cli_first_s"], 4),
        "pipeline_s": round(median["pipeline_s"], 2),
        "encode_s": round(median["encode_s"], 2),
        "ratio_pipeline_over_encode": round(median["pipeline_s"] / median["encode_s"], 3),
        "torch_threads": __import__("torch").get_num_threads(),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
