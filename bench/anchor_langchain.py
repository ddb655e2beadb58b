"""The anchor: the off-the-shelf LangChain pipeline on the built-in corpus, as a new user would write it.

RecursiveCharacterTextSplitter.from_huggingface_tokenizer (512 tokens, overlap 50) over each ayah's
tafsir, HuggingFaceEmbeddings with the same model (torch, its shipped max_seq_length, the model's document
prompt), and
QdrantVectorStore.from_documents into qdrant-client's local mode (a folder). Prints one JSON object:
the wall time of the whole script body (imports included, as `tafsir ingest` in a new process is timed),
the chunk count, and how many chunks the model silently truncates.

Its dependencies are the optional `bench` extra: pip install -c constraints.txt -e '.[bench]'
Usage: python bench/anchor_langchain.py [--store DIR]   (default: a temporary folder)
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the project's `ingest` package, not bench/ingest.py


def run(store: Path) -> dict:
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_qdrant import QdrantVectorStore
    from langchain_text_splitters import RecursiveCharacterTextSplitter
    from transformers import AutoTokenizer

    from ingest.builtin import read_builtin
    from services.model_source import resolve_model
    from services.models import profile_for
    from services.settings import Settings

    source = resolve_model("default", cache=Settings().model_cache)  # the same expanded folder ingest runs
    model = str(source.folder)
    ayat = read_builtin().ayat
    tokenizer = AutoTokenizer.from_pretrained(model)
    splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(tokenizer, chunk_size=512, chunk_overlap=50)
    documents = splitter.create_documents(
        [a.text for a in ayat], metadatas=[{"surah": a.surah, "ayah": a.ayah} for a in ayat]
    )
    # As the model card asks: E5 embeds documents behind "passage: " (sentence-transformers' prompt argument).
    prompt = profile_for(source.name, source.folder).document_prefix
    embeddings = HuggingFaceEmbeddings(
        model_name=model, model_kwargs={"device": "cpu"}, encode_kwargs={"prompt": prompt} if prompt else {}
    )
    QdrantVectorStore.from_documents(documents, embeddings, path=str(store), collection_name="anchor")
    elapsed = time.perf_counter() - STARTED
    limit = embeddings._client.max_seq_length
    truncated = sum(len(tokenizer(d.page_content)["input_ids"]) > limit for d in documents)
    return {"anchor_s": round(elapsed, 2), "chunks": len(documents), "max_seq_length": limit, "truncated": truncated}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="Folder of the local-mode store (default: temporary).")
    args = parser.parse_args()
    if args.store is not None:
        print(json.dumps(run(args.store)))
        return
    with tempfile.TemporaryDirectory(prefix="anchor-") as folder:
        print(json.dumps(run(Path(folder))))


if __name__ == "__main__":
    main()
