"""RAG helpers: passages formatted with their citations, and an LCEL chain that answers with its sources.

The chain is the LangChain-shaped way in (any retriever, any chat model, composable); it prompts as the
answering core does (``retriever.answer``: the same system prompt and passage layout), which adds what a chain
leaves to its caller: follow-ups, not found, the citation check and named failures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.language_models import BaseLanguageModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough

from retriever.wording import SYSTEM_PROMPT, passage_block

PROMPT = ChatPromptTemplate.from_messages(
    [("system", SYSTEM_PROMPT), ("human", "Kutipan tafsir:\n\n{context}\n\nPertanyaan: {question}")]
)


def format_docs(docs: Sequence[Document]) -> str:
    """Numbered passages, each headed by its citation and the ayah's translation (in the wording the
    retriever shows); neighbouring ayat are marked as context. The answering core writes them the same way."""
    return "\n\n".join(
        passage_block(
            number,
            doc.metadata.get("citation", ""),
            doc.page_content,
            doc.metadata.get("translation"),
            doc.metadata.get("context_for"),
        )
        for number, doc in enumerate(docs, start=1)
    )


def sources(docs: Sequence[Document]) -> list[dict[str, Any]]:
    """What a chatbot shows under the answer: number, citation, edition and point id of each passage."""
    return [
        {
            "number": number,
            "citation": doc.metadata.get("citation"),
            "edition": doc.metadata.get("edition"),
            "score": doc.metadata.get("score"),
            "context_for": doc.metadata.get("context_for"),
            "id": doc.id,
        }
        for number, doc in enumerate(docs, start=1)
    ]


def build_rag_chain(llm: BaseLanguageModel, retriever: BaseRetriever) -> Runnable:
    """``chain.invoke(question)`` → ``{"question", "answer", "sources", "documents"}``."""
    answer = (
        RunnableLambda(lambda x: {"context": format_docs(x["documents"]), "question": x["question"]})
        | PROMPT
        | llm
        | StrOutputParser()
    )
    return (
        {"documents": retriever, "question": RunnablePassthrough()}
        | RunnablePassthrough.assign(answer=answer)
        | RunnableLambda(lambda x: {**x, "sources": sources(x["documents"])})
    )
