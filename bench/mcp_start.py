"""How soon `tafsir mcp` answers a client started from an empty folder (issue 25: clients allow ~15 s).

Starts `tafsir mcp` over stdio with the MCP SDK's client, as a desktop assistant does: from a fresh empty
folder, with a fresh per-user data folder (XDG_DATA_HOME), no store set. Measures, per run, the wall seconds
from the spawn to the answer of `tools/list` (initialize included) and the CPU seconds the server spent until
then, then the wall seconds until the first `search_tafsir` call returns (the model loaded; the empty store
answers with a tool error). TAFSIR_MODEL_CACHE, if set, is kept (an exported model: a second start), and so is
TAFSIR_EMBEDDING_MODEL. Prints one JSON object with each run and the medians.

Usage: python bench/mcp_start.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
import psutil
from mcp import Client
from mcp.client.stdio import StdioServerParameters

ROOT = Path(__file__).resolve().parent.parent


def server_cpu_seconds() -> float:
    children = psutil.Process().children(recursive=True)
    return sum(sum(p.cpu_times()[:2]) for p in children if "interfaces.cli" in " ".join(p.cmdline()))


async def one_run() -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        folder, user_data = Path(scratch) / "client", Path(scratch) / "user-data"
        folder.mkdir()
        env = {k: v for k, v in os.environ.items() if k in ("TAFSIR_MODEL_CACHE", "TAFSIR_EMBEDDING_MODEL", "PATH")}
        env |= {"XDG_DATA_HOME": str(user_data), "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT))}
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "interfaces.cli", "mcp"], env=env, cwd=folder
        )
        started = time.monotonic()
        async with Client(params, read_timeout_seconds=600) as client:
            await client.list_tools()
            listed, cpu = time.monotonic() - started, server_cpu_seconds()
            await client.call_tool("search_tafsir", {"query": "Allah Yang Maha Esa"})
            searched = time.monotonic() - started
        return {
            "tools_list_s": round(listed, 2),
            "server_cpu_s_at_tools_list": round(cpu, 2),
            "first_search_s": round(searched, 2),
            "client_folder_empty": not any(folder.iterdir()),
            "per_user_store": (user_data / "tafsir-rag" / "qdrant").is_dir(),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = [anyio.run(one_run) for _ in range(args.runs)]
    medians = {key: statistics.median(r[key] for r in runs) for key in runs[0] if key.endswith("_s")}
    print(json.dumps({"runs": runs, "median": medians}))


if __name__ == "__main__":
    main()
