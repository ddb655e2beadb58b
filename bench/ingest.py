"""Ingest benchmark: full ingest of the built-in corpus vs a bare ``encode`` of the same chunks, in one run.

Prints one JSON object. Measures, on a fresh embedded store in a temporary folder:
  - ``cli_first_s``: `tafsir ingest --json` in a new process (imports, model load, chunking, embedding,
    upserts, alias swap: what a user waits for);
  - ``cli_first_peak_rss_mb``: that process's peak resident memory (the export is cached by then);
  - ``cli_second_s``: the same command again on the unchanged corpus (must embed 0 chunks);
  - with ``--anchor``: ``anchor_s``, bench/anchor_langchain.py (the off-the-shelf LangChain pipeline, same
    model) in a new process, timed the same way, and ``speedup`` = anchor_s / cli_first_s;
  - ``pipeline_s``: the pipeline in-process with the model already loaded (``--full`` into a new store),
    and ``encode_s``: a bare encode of exactly the chunks it produced, same model, backend and batch
    size, same process: ``ratio`` = pipeline_s / encode_s; ``encode_translations_s``: a bare encode of the
    distinct translations the pipeline embeds for the ``dense_tr`` vector, and ``ratio_pipeline_over_encode_all``
    = pipeline_s / (encode_s + encode_translations_s) (the floor is 1.0).

TAFSIR_EMBEDDING_* and TAFSIR_MODEL_CACHE pass through to every run (the backend under test); the
export of an onnx/openvino model is made before the first timed run, as a one-time cost (reported).

Usage: python bench/ingest.py [--repeat N] [--anchor]   (medians over N rounds)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def cli_ingest(store: Path) -> tuple[float, dict]:
    return timed([sys.executable, "-m", "interfaces.cli", "ingest", "--json"], {"TAFSIR_QDRANT_PATH": str(store)})


def anchor_ingest(store: Path) -> tuple[float, dict]:
    return timed([sys.executable, str(ROOT / "bench" / "anchor_langchain.py"), "--store", str(store)], {})


def timed(command: list[str], extra: dict[str, str]) -> tuple[float, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAFSIR_") or k.startswith(PASSED_THROUGH)}
    env.update(extra, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    return elapsed, json.loads(result.stdout)


PASSED_THROUGH = ("TAFSIR_EMBEDDING_", "TAFSIR_MODEL_CACHE")


def in_process(store: Path) -> dict:
    from ingest.builtin import read_builtin
    from ingest.pipeline import IngestPipeline, translation_text
    from services.embedding import Embedder
    from services.settings import Settings
    from services.store import open_store

    settings = Settings(_env_file=None, qdrant_path=store)
    embedder = Embedder(settings)
    started = time.perf_counter()
    embedder.warm_up()  # exports the model for onnx/openvino if the cache lacks it
    load_s = time.perf_counter() - started
    source = read_builtin()
    vector_store = open_store(settings)
    try:
        pipeline = IngestPipeline(settings, vector_store, embedder)
        started = time.perf_counter()
        summary = pipeline.run(source, full=True)
        pipeline_s = time.perf_counter() - started
    finally:
        vector_store.close()
    texts = [c.model_text for c in pipeline.chunk(source.ayat)]
    started = time.perf_counter()
    embedder.encode_documents(sorted(texts, key=len, reverse=True), settings.embed_batch_size)
    encode_s = time.perf_counter() - started
    translations = sorted({t for a in source.ayat if (t := translation_text(a))}, key=len, reverse=True)
    started = time.perf_counter()
    embedder.encode_documents(translations, settings.embed_batch_size)
    encode_translations_s = time.perf_counter() - started
    return {
        "pipeline_s": pipeline_s,
        "encode_s": encode_s,
        "encode_translations_s": encode_translations_s,
        "translations": len(translations),
        "chunks": len(texts),
        "embedded": summary.embedded,
        "load_or_export_s": load_s,
        "backend": embedder.describe_backend(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--anchor", action="store_true", help="Also time bench/anchor_langchain.py in each round.")
    args = parser.parse_args()
    rounds = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            measured = in_process(Path(tmp) / "inproc")  # first: makes the export, if any, untimed below
            backend = measured.pop("backend")
            first_s, first = cli_ingest(Path(tmp) / "cli")
            # The children's peak so far is the first CLI run's (the in-process run is this process).
            first_peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            second_s, second = cli_ingest(Path(tmp) / "cli")
            anchor = anchor_ingest(Path(tmp) / "anchor") if args.anchor else None
        rounds.append(
            {
                "cli_first_s": first_s,
                "cli_first_peak_rss_mb": first_peak_mb,
                "cli_second_s": second_s,
                "second_embedded": second["embedded"],
                "first_points": first["chunks"],
                **measured,
                **({"anchor_s": anchor[0], "anchor_chunks": anchor[1]["chunks"]} if anchor else {}),
                **({"anchor_truncated": anchor[1]["truncated"]} if anchor else {}),
            }
        )
    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    report = {
        "rounds": len(rounds),
        "chunks": median["chunks"],
        "cli_first_s": round(median["cli_first_s"], 2),
        "cli_first_peak_rss_mb": round(median["cli_first_peak_rss_mb"], 1),
        "cli_second_s": round(median["cli_second_s"], 2),
        "second_embedded": median["second_embedded"],
        "second_over_first": round(median["cli_second_s"] / median["cli_first_s"], 4),
        "pipeline_s": round(median["pipeline_s"], 2),
        "encode_s": round(median["encode_s"], 2),
        "ratio_pipeline_over_encode": round(median["pipeline_s"] / median["encode_s"], 3),
        "translations": median["translations"],
        "encode_translations_s": round(median["encode_translations_s"], 2),
        "ratio_pipeline_over_encode_all": round(
            median["pipeline_s"] / (median["encode_s"] + median["encode_translations_s"]), 3
        ),
        "load_or_export_s": round(median["load_or_export_s"], 2),
        "backend": backend,
    }
    if args.anchor:
        report.update(
            anchor_s=round(median["anchor_s"], 2),
            anchor_chunks=median["anchor_chunks"],
            anchor_truncated=median["anchor_truncated"],
            speedup_vs_anchor=round(median["anchor_s"] / median["cli_first_s"], 2),
            speedup_vs_anchor_per_round=[round(r["anchor_s"] / r["cli_first_s"], 2) for r in rounds],
        )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
