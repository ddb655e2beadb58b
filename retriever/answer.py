"""The answering core: a question (with the conversation so far) -> retrieved passages -> a grounded answer.

Every face that answers (``POST /v1/answer``, ``POST /v1/chat/completions``, the MCP tool ``answer``, the
playground page) calls ``Answerer``; none builds an answer itself.

1. **Follow-ups** become standalone questions before retrieval: with the language model when one is set,
   otherwise by a rule (``standalone_by_rule``). The query searched is part of every answer.
2. **Not found**: when the tafsir does not answer the question, the answer says so in Indonesian and no
   language model is asked. A model with a fitted decision (``retriever.not_found``: the cosines of the nearest
   passages, the overlap of the question's words with the first passages, its language, in a calibrated
   logistic regression) judges by the probability that the tafsir answers (the answer's ``confidence``); others,
   or ``TAFSIR_ANSWER_MIN_SIMILARITY`` when set, by the cosine of the closest passage alone.
3. **Generated** (``TAFSIR_LLM_BASE_URL`` and ``TAFSIR_LLM_MODEL``: any OpenAI-compatible chat endpoint through
   langchain-openai; or any LangChain chat model given to ``Answerer``): the model sees the numbered passages
   and the conversation; its citations are checked as it writes (``retriever.citations``): one that refers
   to no passage it was given is cut out and reported.
4. **Extractive** (no language model): one entry for each of the best ayat, each quoting whole sentences of
   its passage verbatim (``retriever.sentences``), or of the ayah's translation when those hold more of the
   question's words, with its citation; labelled as extractive.

A failing language model (unreachable, an error status, a timeout, a reply that is not a chat completion)
ends the answer with ``LlmError``, which names the endpoint and the setting to check; the passages found
are still part of the result (``AnswerFailed``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from retriever import not_found
from retriever.citations import CitationChecker, CitedPassage, InvalidCitation
from retriever.llm import LlmError, Usage, chat_model, describe_llm, llm_error, usage_of
from retriever.search import MAX_QUERY_CHARS, Passage, Probe, SearchEngine, SearchOptions
from retriever.sentences import whole_sentences
from retriever.wording import (
    EXTRACTIVE_HEADING,
    NOT_FOUND_TEXT,
    REWRITE_PROMPT,
    SYSTEM_PROMPT,
    Turn,
    answer_request,
    extractive_entry,
    passage_block,
    rewrite_request,
    sources_lines,
    standalone_by_rule,
)

if TYPE_CHECKING:  # pragma: no cover
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage

log = logging.getLogger("retriever.answer")

HISTORY_TURNS = 6  # earlier turns the model sees (the rewriting and the answer)
EXTRACTIVE_PASSAGES = 3  # ayat quoted, one entry each
EXTRACTIVE_SENTENCES = 2  # whole sentences quoted of each
EXCERPT_CHARS = 500  # at most this much quoted of each: a longer sentence is passed over, never cut


# --- results ------------------------------------------------------------------------------------------------


class AnswerMode(StrEnum):
    GENERATED = "generated"  # written by the language model from the passages
    EXTRACTIVE = "extractive"  # sentences of the passages, no language model
    NOT_FOUND = "not_found"  # the tafsir does not answer the question: no language model asked


@dataclass(frozen=True)
class Answer:
    text: str
    mode: AnswerMode
    passages: tuple[Passage, ...]  # numbered from 1, as the model saw them
    searched_query: str
    similarity: float | None  # cosine of the passage closest to the searched query
    confidence: float | None = None  # probability that the tafsir answers (None: judged by the cosine alone)
    cited: tuple[int, ...] = ()  # numbers of the passages the text cites, in the order first cited
    invalid_citations: tuple[InvalidCitation, ...] = ()
    usage: Usage | None = None  # None: no language model ran
    llm: str | None = None  # which language model wrote it
    took_ms: float = 0.0


@dataclass(frozen=True)
class Delta:
    """A piece of the answer's text, as it is written (checked: never a citation that is later cut)."""

    text: str


@dataclass(frozen=True)
class Done:
    answer: Answer


@dataclass(frozen=True)
class Failed:
    """The language model failed; ``answer`` holds what was found (passages, searched query) and written so far."""

    error: LlmError
    answer: Answer


AnswerEvent = Delta | Done | Failed


class AnswerFailed(Exception):
    def __init__(self, error: LlmError, answer: Answer) -> None:
        super().__init__(error.message)
        self.error, self.answer = error, answer


# --- extractive answers -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quote:
    """Whole sentences of one text, verbatim, in the text's order; ``…`` stands between two that are not
    adjacent. ``shared``: how many of the question's terms they hold together."""

    text: str
    shared: int


def excerpt(
    text: str, question_terms: set[int], terms_of, *, starts_whole: bool = True, ends_whole: bool = True
) -> Quote:
    """The (at most two) whole sentences of ``text`` holding most of the question's terms, together at most
    ``EXCERPT_CHARS`` long, in the text's order (a second one only if it adds a term); the first whole sentence
    when none holds any. Terms are the BM25 analysis's (normalised, stemmed, stopwords out), so that "hukuman"
    meets "hukum". A sentence is never cut: one too long is passed over (all too long: the best one alone).
    ``starts_whole``/``ends_whole``: whether ``text`` begins and ends at a sentence's edge (a window of a long
    ayah may not); an edge sentence that may be a piece is never quoted. Empty: no whole sentence at all."""
    whole = whole_sentences(text, starts_whole, ends_whole)
    spans = [s for s in whole if s[1] - s[0] <= EXCERPT_CHARS]
    limit, budget = EXTRACTIVE_SENTENCES, EXCERPT_CHARS
    if not spans:  # every sentence is long: one of them, whole, rather than none
        spans, limit, budget = whole, 1, max((end - start for start, end in whole), default=0)
    if not spans:
        return Quote("", 0)
    held = [question_terms & terms_of(text[start:end]) for start, end in spans]
    # Most terms first, then the shorter sentence (the same terms, less else), then the earlier one.
    ranked = sorted(
        (i for i in range(len(spans)) if held[i]), key=lambda i: (-len(held[i]), spans[i][1] - spans[i][0], i)
    )
    chosen: list[int] = []
    for index in ranked:
        length = sum(spans[i][1] - spans[i][0] for i in chosen) + spans[index][1] - spans[index][0]
        if len(chosen) < limit and length <= budget and held[index] - _union(held, chosen):
            chosen.append(index)
    chosen = sorted(chosen) or [0]
    pieces: list[tuple[int, int]] = []  # sentences next to each other are quoted as one slice, spacing kept
    for index in chosen:
        start, end = spans[index]
        if pieces and not text[pieces[-1][1] : start].strip():
            pieces[-1] = (pieces[-1][0], end)
        else:
            pieces.append((start, end))
    return Quote(" … ".join(text[start:end] for start, end in pieces), len(_union(held, chosen)))


def _union(held: list[set[int]], chosen: list[int]) -> set[int]:
    return set().union(*(held[i] for i in chosen))


def quote_passage(passage: Passage, question_terms: set[int], terms_of) -> tuple[Quote, bool]:
    """What an extractive answer quotes of a passage: whole sentences of its tafsir, or of the ayah's own
    translation when those hold more of the question's terms (or the tafsir has no whole sentence, or only
    sentences longer than ``EXCERPT_CHARS`` where the translation's fit).
    Returns the quote and whether it is the translation's."""
    tafsir = excerpt(
        passage.text,
        question_terms,
        terms_of,
        starts_whole=passage.chunk == 0,
        ends_whole=passage.chunk >= passage.chunks - 1,
    )
    if passage.translation:
        translation = excerpt(passage.translation, question_terms, terms_of)
        if translation.text and (
            translation.shared > tafsir.shared
            or not tafsir.text
            or len(tafsir.text) > EXCERPT_CHARS >= len(translation.text)
        ):
            return translation, True
    return tafsir, False


# --- the core -----------------------------------------------------------------------------------------------


@dataclass
class _Run:
    """One answer in the making."""

    question: str
    history: Sequence[Turn]
    options: SearchOptions
    started: float = field(default_factory=time.perf_counter)
    searched_query: str = ""
    passages: tuple[Passage, ...] = ()
    similarity: float | None = None
    confidence: float | None = None
    usage: Usage = field(default_factory=Usage)
    llm_ran: bool = False

    def answer(self, text: str, mode: AnswerMode, llm: str | None = None, **fields: Any) -> Answer:
        return Answer(
            text=text,
            mode=mode,
            passages=self.passages,
            searched_query=self.searched_query,
            similarity=self.similarity,
            confidence=self.confidence,
            usage=self.usage if self.llm_ran else None,
            llm=llm,
            took_ms=round((time.perf_counter() - self.started) * 1000, 3),
            **fields,
        )


class Answerer:
    """Answers questions from the tafsir; one per process, shared by every face (thread-safe).

    ``llm``: any LangChain chat model; by default the OpenAI-compatible endpoint the settings name
    (``chat_model``), or none: extractive answers. ``decisions``: the fitted not-found decisions by model identity;
    by default the shipped ones (``retriever/not_found.json``).
    """

    def __init__(
        self,
        engine: SearchEngine,
        llm: BaseChatModel | None = None,
        decisions: Mapping[str, not_found.NotFoundModel] | None = None,
    ) -> None:
        self.engine = engine
        self.decisions = decisions
        self.settings = engine.settings
        self.configured = llm is None and self.settings.llm_base_url is not None
        self.llm = llm if llm is not None else chat_model(self.settings)
        self.provider = describe_llm(self.llm, self.settings) if self.llm is not None else None

    @property
    def min_similarity(self) -> float | None:
        """Below this cosine the tafsir is taken not to answer: the setting, else the model's measured value."""
        if self.settings.answer_min_similarity is not None:
            return self.settings.answer_min_similarity
        return self.engine.embedder.profile.min_similarity

    @property
    def decision(self) -> not_found.NotFoundModel | None:
        """The model's fitted not-found decision; None when it has none, or TAFSIR_ANSWER_MIN_SIMILARITY is set."""
        if self.settings.answer_min_similarity is not None:
            return None
        identity = self.engine.embedder.identity
        return not_found.model_for(identity) if self.decisions is None else self.decisions.get(identity)

    def judge(self, query: str, probe: Probe) -> not_found.Verdict:
        """Whether the passages ``probe`` found answer ``query``."""
        decision = self.decision
        if decision is None or not probe.passages:
            return not_found.by_cosine(probe.similarity, self.min_similarity)
        return decision.judge(not_found.gather(query, probe, self.engine.sparse))

    def answer(self, question: str, history: Sequence[Turn] = (), options: SearchOptions | None = None) -> Answer:
        """The whole answer; ``AnswerFailed`` (with the passages found) when the language model fails."""
        for event in self.stream(question, history, options):
            if isinstance(event, Done):
                return event.answer
            if isinstance(event, Failed):
                raise AnswerFailed(event.error, event.answer)
        raise AssertionError("an answer stream ends with Done or Failed")  # pragma: no cover

    def stream(
        self, question: str, history: Sequence[Turn] = (), options: SearchOptions | None = None
    ) -> Iterator[AnswerEvent]:
        """``Delta`` events as the answer is written, then one ``Done`` (or ``Failed``).

        Retrieval happens before the first event, so that a store or model error raises from the first
        ``next()``, before anything has been sent."""
        run = _Run(question=question.strip(), history=list(history), options=options or SearchOptions())
        failure = self._find(run)
        if failure is not None:
            yield Failed(failure, run.answer("", AnswerMode.GENERATED, self.provider))
            return
        if not run.passages:
            yield Delta(NOT_FOUND_TEXT)
            yield Done(run.answer(NOT_FOUND_TEXT, AnswerMode.NOT_FOUND))
            return
        if self.llm is None:
            text, cited = self._extractive(run)
            yield Delta(text)
            yield Done(run.answer(text, AnswerMode.EXTRACTIVE, cited=cited))
            return
        yield from self._generate(run)

    # --- the steps ------------------------------------------------------------------------------------------

    def _find(self, run: _Run) -> LlmError | None:
        """Rewrite a follow-up, search, and keep the passages unless none is close enough. A failure of the
        language model while rewriting is returned (the rule rewrites instead, and the search goes on)."""
        failure = None
        run.searched_query = run.question
        if any(t.role == "user" for t in run.history):
            if self.llm is None:
                run.searched_query = standalone_by_rule(run.question, run.history)
            else:
                try:
                    run.searched_query = self._rewrite(run)
                except LlmError as exc:
                    failure = exc
                    run.searched_query = standalone_by_rule(run.question, run.history)
        probe = self.engine.search_probed(run.searched_query, run.options)
        run.similarity = round(probe.similarity, 6)
        verdict = self.judge(run.searched_query, probe)
        run.confidence = verdict.confidence
        if verdict.answers:
            run.passages = tuple(probe.passages)
        return failure

    def _rewrite(self, run: _Run) -> str:
        from langchain_core.messages import HumanMessage, SystemMessage

        prompt = rewrite_request(run.history[-HISTORY_TURNS:], run.question)
        reply = self._invoke([SystemMessage(REWRITE_PROMPT), HumanMessage(prompt)], run)
        rewritten = next((line.strip().strip("\"'“”") for line in reply.splitlines() if line.strip()), "")
        if not rewritten:  # nothing usable: fall back to the rule, quietly
            return standalone_by_rule(run.question, run.history)
        return rewritten[:MAX_QUERY_CHARS]

    def _invoke(self, messages: list[BaseMessage], run: _Run) -> str:
        try:
            reply = self.llm.invoke(messages)
        except Exception as exc:
            raise self._error(exc) from exc
        run.llm_ran = True
        run.usage += usage_of(reply)
        if not isinstance(reply.content, str):
            raise self._error(TypeError(f"content is {type(reply.content).__name__}, not text"))
        return reply.content

    def _error(self, exc: BaseException) -> LlmError:
        error = llm_error(exc, self.provider or "the language model", self.configured, self.settings.llm_timeout)
        log.warning("%s", error.message, exc_info=error.kind == "malformed")
        return error

    def _messages(self, run: _Run) -> list[BaseMessage]:
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

        context = "\n\n".join(
            passage_block(n, p.citation, p.text, p.translation, p.context_for) for n, p in enumerate(run.passages, 1)
        )
        earlier: list[BaseMessage] = [
            HumanMessage(t.content) if t.role == "user" else AIMessage(t.content) for t in run.history[-HISTORY_TURNS:]
        ]
        return [
            SystemMessage(SYSTEM_PROMPT),
            *earlier,
            HumanMessage(answer_request(context, run.question, run.searched_query)),
        ]

    def _generate(self, run: _Run) -> Iterator[AnswerEvent]:
        checker = CitationChecker(
            [CitedPassage(n, p.surah, p.ayah) for n, p in enumerate(run.passages, start=1) if not p.is_context]
        )

        def partial() -> Answer:
            return run.answer(checker.text, AnswerMode.GENERATED, self.provider)

        usage = None
        try:
            for chunk in self.llm.stream(self._messages(run)):
                run.llm_ran = True
                if getattr(chunk, "usage_metadata", None):
                    usage = usage_of(chunk)
                content = chunk.content
                if not isinstance(content, str):
                    raise TypeError(f"content is {type(content).__name__}, not text")
                shown = checker.feed(content)
                if shown:
                    yield Delta(shown)
        except Exception as exc:
            yield Failed(self._error(exc), partial())
            return
        shown = checker.finish()
        if shown:
            yield Delta(shown)
        if not checker.text.strip():
            yield Failed(self._error(ValueError("the reply has no text")), partial())
            return
        run.usage += usage or Usage()
        yield Done(
            replace(partial(), cited=tuple(checker.cited), invalid_citations=tuple(checker.invalid), usage=run.usage)
        )

    def _extractive(self, run: _Run) -> tuple[str, tuple[int, ...]]:
        sparse = self.engine.sparse

        def terms_of(text: str) -> set[int]:
            return set(sparse.query(text).indices)

        question_terms = terms_of(run.searched_query)
        lines, cited, quoted = [EXTRACTIVE_HEADING], [], set()
        for number, passage in enumerate(run.passages, start=1):
            if passage.is_context or (passage.surah, passage.ayah) in quoted:
                continue  # one entry per ayah: a second window of it, or another edition, says it again
            quote, of_translation = quote_passage(passage, question_terms, terms_of)
            if not quote.text:
                continue
            lines.append(extractive_entry(number, passage.citation, quote.text, of_translation))
            cited.append(number)
            quoted.add((passage.surah, passage.ayah))
            if len(cited) == EXTRACTIVE_PASSAGES:
                break
        return "\n\n".join(lines), tuple(cited)


def sources_footer(answer: Answer) -> str:
    """The sources an answer rests on, as text to put under it: the cited passages (all given, if it cites
    none); empty for not found."""
    if answer.mode is AnswerMode.NOT_FOUND or not answer.passages:
        return ""
    numbers = answer.cited or tuple(n for n, p in enumerate(answer.passages, start=1) if not p.is_context)
    return sources_lines([(n, answer.passages[n - 1].citation, answer.passages[n - 1].editions) for n in numbers])
