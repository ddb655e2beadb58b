"""RAG helpers: passages formatted with their citations, and an LCEL chain that answers with its sources."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.language_models import BaseLanguageModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough

SYSTEM_PROMPT = (
    "Anda adalah asisten yang menjawab pertanyaan tentang Al-Qur'an hanya berdasarkan kutipan tafsir di bawah. "
    "Sebutkan sumber setiap pernyataan dengan nomor kutipan dan rujukannya, misalnya [1] QS Al-Baqarah [2]: 255. "
    "Jika kutipan tidak memuat jawabannya, katakan bahwa Anda tidak menemukannya."
)

PROMPT = ChatPromptTemplate.from_messages(
    [("system", SYSTEM_PROMPT), ("human", "Kutipan tafsir:\n\n{context}\n\nPertanyaan: {question}")]
)


def format_docs(docs: Sequence[Document]) -> str:
    """Numbered passages, each headed by its citation and the ayah's translation (in the wording the
    retriever shows); neighbouring ayat are marked as context."""
    blocks = []
    for number, doc in enumerate(docs, start=1):
        meta = doc.metadata
        head = f"[{number}] {meta.get('citation', '')}"
        if meta.get("context_for"):
            head += f" (konteks untuk {meta['context_for']})"
        if meta.get("translation"):
            head += f"\nTerjemahan: {meta['translation'].strip()}"
        blocks.append(f"{head}\n{doc.page_content.strip()}")
    return "\n\n".join(blocks)


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
