"""LangChain retriever over the tafsir collection, and the RAG helpers (``retriever.chain``)."""

from retriever.tafsir import TafsirRetriever

__all__ = ["TafsirRetriever"]
