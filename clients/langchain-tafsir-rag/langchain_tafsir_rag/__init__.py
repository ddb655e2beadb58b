"""LangChain retriever for a running tafsir-rag service: Quran tafsir passages with exact citations."""

from langchain_tafsir_rag._version import __version__
from langchain_tafsir_rag.retrievers import Mode, TafsirFilter, TafsirRAGError, TafsirRAGRetriever

__all__ = ["Mode", "TafsirFilter", "TafsirRAGError", "TafsirRAGRetriever", "__version__"]
