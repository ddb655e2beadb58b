"""The answers' Indonesian wording: the fixed texts (not found, the extractive heading), the prompts, how a
passage and a conversation are laid out for the model, and the rule that makes a follow-up standalone without
one. Changing what an answer says in Indonesian changes this module only."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from retriever.search import MAX_QUERY_CHARS


@dataclass(frozen=True)
class Turn:
    """An earlier message of the conversation."""

    role: Literal["user", "assistant"]
    content: str


NOT_FOUND_TEXT = (
    "Maaf, jawaban atas pertanyaan ini tidak ditemukan dalam tafsir yang tersedia. "
    "Coba ajukan pertanyaan dengan kata lain atau lebih spesifik."
)
TRANSLATION_LABEL = "terjemahan"  # an extractive entry that quotes the ayah's translation says so after its citation
EXTRACTIVE_HEADING = (
    "Jawaban ekstraktif (tanpa model bahasa): kalimat utuh dari kutipan tafsir, atau dari terjemahan ayatnya, yang "
    "paling sesuai dengan pertanyaan, masing-masing dengan sumbernya."
)
SYSTEM_PROMPT = (
    "Anda adalah asisten yang menjawab pertanyaan tentang Al-Qur'an hanya berdasarkan kutipan tafsir yang "
    "diberikan. Jawablah dalam bahasa Indonesia, singkat dan jelas. Sebutkan sumber setiap pernyataan dengan "
    "nomor kutipannya, misalnya [1], atau dengan rujukannya persis seperti tertulis, misalnya "
    "QS Al-Baqarah [2]: 255. Jangan menyebut ayat atau sumber yang tidak ada dalam kutipan. Jika kutipan tidak "
    "memuat jawabannya, katakan bahwa Anda tidak menemukannya dalam tafsir."
)
REWRITE_PROMPT = (
    "Tugas Anda hanya menulis ulang pertanyaan terakhir pengguna menjadi satu pertanyaan mandiri dalam bahasa "
    "Indonesia yang dapat dipahami tanpa membaca percakapan sebelumnya. Jangan menjawabnya. Tulis pertanyaan "
    "itu saja, dalam satu baris."
)


def passage_block(
    number: int, citation: str, text: str, translation: str | None = None, context_for: str | None = None
) -> str:
    """One passage as a model sees it: number, citation, the ayah's translation, the tafsir (neighbouring ayat
    marked as context). The answering core and ``retriever.chain.format_docs`` both write passages so."""
    head = f"[{number}] {citation}"
    if context_for:
        head += f" (konteks untuk {context_for})"
    if translation:
        head += f"\nTerjemahan: {translation.strip()}"
    return f"{head}\n{text.strip()}"


# A follow-up that leans on what came before: it opens with a connective, or points back at something.
_CONNECTIVES = ("lalu", "terus", "trus", "kemudian", "lantas", "dan", "kalau", "bagaimana dengan", "selain itu")
_POINTERS = {"itu", "tersebut", "ini", "dia", "ia", "mereka", "beliau", "begitu", "demikian"}
_WORD = re.compile(r"\w+", re.UNICODE)


def is_follow_up(question: str) -> bool:
    words = [w.lower() for w in _WORD.findall(question)]
    if not words:
        return False
    opening = " ".join(words[:2])
    return (
        len(words) <= 3
        or any(opening == c or opening.startswith(c + " ") for c in _CONNECTIVES)
        or bool(_POINTERS.intersection(words))
    )


def standalone_by_rule(question: str, history: Sequence[Turn]) -> str:
    """Without a language model: a follow-up (``is_follow_up``) is searched together with the user's previous
    question ("Apa hukuman bagi pencuri?" + "lalu bagaimana jika ia bertobat?"); other questions as they are."""
    previous = next((t.content.strip() for t in reversed(history) if t.role == "user" and t.content.strip()), None)
    if previous is None or not is_follow_up(question):
        return question.strip()
    return f"{previous} {question.strip()}"[:MAX_QUERY_CHARS]


def speaker(turn: Turn) -> str:
    return "Pengguna" if turn.role == "user" else "Asisten"


def rewrite_request(history: Sequence[Turn], question: str) -> str:
    """What the model is asked, under ``REWRITE_PROMPT``, to make ``question`` standalone."""
    lines = [f"{speaker(t)}: {' '.join(t.content.split())}" for t in history]
    return "Percakapan:\n" + "\n".join(lines) + f"\n\nPertanyaan terakhir: {question}\n\nPertanyaan mandiri:"


def answer_request(context: str, question: str, searched_query: str) -> str:
    """What the model is asked, under ``SYSTEM_PROMPT``: the numbered passages, then the question (with what was
    searched for it, when a follow-up was made standalone)."""
    asked = question if searched_query == question else f"{question} ({searched_query})"
    return f"Kutipan tafsir:\n\n{context}\n\nPertanyaan: {asked}"


def extractive_entry(number: int, citation: str, quote: str, of_translation: bool) -> str:
    """One entry of an extractive answer: the passage's number and citation, then what it quotes."""
    label = f"{citation} ({TRANSLATION_LABEL})" if of_translation else citation
    return f"[{number}] {label} — {quote}"


def sources_lines(numbered: Sequence[tuple[int, str, Sequence[str]]]) -> str:
    """The sources put under an answer: each passage's number, citation and editions."""
    return "Sumber:\n" + "\n".join(f"[{n}] {citation} ({', '.join(editions)})" for n, citation, editions in numbered)
