"""The read path: the search engine (``retriever.search``), the LangChain retriever over it
(``retriever.tafsir``) and the RAG helpers (``retriever.chain``).

``TafsirRetriever`` is imported on first use, so that the CLI and the HTTP API, which use the engine
alone, never pay for importing LangChain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from retriever.tafsir import TafsirRetriever

__all__ = ["TafsirRetriever"]


def __getattr__(name: str) -> Any:
    if name == "TafsirRetriever":
        from retriever.tafsir import TafsirRetriever

        return TafsirRetriever
    raise AttributeError(f"module 'retriever' has no attribute {name!r}")
