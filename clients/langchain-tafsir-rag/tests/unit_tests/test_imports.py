from langchain_tafsir_rag import __all__

EXPECTED_ALL = ["Mode", "TafsirFilter", "TafsirRAGError", "TafsirRAGRetriever", "__version__"]


def test_all_imports() -> None:
    assert sorted(EXPECTED_ALL) == sorted(__all__)
