"""The answering core (retriever/answer.py) over a real store, with a real OpenAI-compatible endpoint on loopback:
the scripted server of tests/llm_server.py, reached through langchain-openai exactly as a deployment would."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from bench.answers_fragments import check_answer, measure
from ingest.builtin import read_builtin
from retriever.answer import (
    EXCERPT_CHARS,
    Answerer,
    AnswerFailed,
    AnswerMode,
    Delta,
    Done,
    Failed,
    Quote,
    excerpt,
    quote_passage,
    sources_footer,
)
from retriever.search import SearchEngine, SearchOptions, TafsirFilter
from retriever.wording import EXTRACTIVE_HEADING, NOT_FOUND_TEXT, Turn, is_follow_up, standalone_by_rule
from services.models import MULTILINGUAL_E5_SMALL, profile_for
from services.settings import Settings
from tests.conftest import ingested_settings
from tests.llm_server import LlmServer, free_port

SURAHS = [1, 2, 5, 112, 113, 114]  # al-Baqarah and al-Ma'idah: theft, wine, and enough for every question below
QUESTION = "Katakanlah Dialah Allah Yang Maha Esa"


@pytest.fixture(scope="module")
def store_settings(tmp_path_factory, tiny_model) -> Settings:
    return ingested_settings(tmp_path_factory.mktemp("answer"), tiny_model, SURAHS)


@pytest.fixture(scope="module")
def engine(store_settings) -> Iterator[SearchEngine]:
    engine = SearchEngine(store_settings)
    yield engine
    engine.store.close()


@pytest.fixture(scope="module")
def llm(tmp_path_factory) -> Iterator[LlmServer]:
    server = LlmServer(tmp_path_factory.mktemp("llm") / "llm.log").wait()
    yield server
    server.stop()


def with_settings(engine: SearchEngine, **changes) -> SearchEngine:
    """The same store and model under other settings (LLM, threshold)."""
    settings = engine.settings.model_copy(update=changes)
    return SearchEngine(settings, store=engine.store, embedder=engine.embedder, sparse=engine.sparse)


def answerer(engine: SearchEngine, llm: LlmServer | None = None, **changes) -> Answerer:
    if llm is not None:
        changes = {"llm_base_url": llm.url, "llm_model": "scripted", "llm_timeout": 2, "llm_max_retries": 0, **changes}
    return Answerer(with_settings(engine, **changes))


def given_passages(engine: SearchEngine, query: str, k: int = 3):
    return engine.search(query, SearchOptions(k=k))


# --- extractive ---------------------------------------------------------------------------------------------


def test_without_a_language_model_the_answer_is_extractive_and_says_so(engine):
    answer = answerer(engine).answer(QUESTION, options=SearchOptions(k=4))
    assert answer.mode is AnswerMode.EXTRACTIVE
    assert answer.text.startswith(EXTRACTIVE_HEADING)
    assert answer.usage is None and answer.llm is None
    blocks = answer.text.split("\n\n")[1:]
    assert len(blocks) == 3 and answer.cited == (1, 2, 3)
    for number, block in zip(answer.cited, blocks, strict=True):
        passage = answer.passages[number - 1]
        assert block.startswith(f"[{number}] {passage.citation}")
    checked = check_answer(answer)  # bench/answers_fragments.py: each fragment verbatim, whole sentences
    assert checked["checked"] >= 3 and checked["cut"] == [] and checked["duplicated"] == []


def terms_of(engine: SearchEngine):
    return lambda text: set(engine.sparse.query(text).indices)


def test_an_excerpt_keeps_the_sentences_that_share_words_with_the_question(engine):
    terms = terms_of(engine)
    text = "Orang beriman berpuasa pada bulan Ramadan. Langit dan bumi milik Allah. Pencuri dipotong tangannya."
    assert excerpt(text, terms("hukuman bagi pencuri"), terms).text == "Pencuri dipotong tangannya."
    assert excerpt(text, terms("zzz qqq"), terms).text == "Orang beriman berpuasa pada bulan Ramadan."


def test_an_excerpt_quotes_a_long_sentence_whole_and_passes_over_one_too_long_to_quote(engine):
    terms = terms_of(engine)
    long = (
        "Jumlah mereka tiga ratus dan beberapa belas orang, " + "yakni yang hanya meneguk seteguk air, " * 10 + "lalu."
    )
    assert 400 < len(long) <= EXCERPT_CHARS
    text = f"Thalut berangkat. {long} Sisanya minum banyak."
    assert excerpt(text, terms("jumlah pasukan yang meneguk air"), terms).text == long  # never "… tiga …"
    too_long = "Pasukan mereka tiga ratus orang, " + "yakni yang meneguk seteguk air, " * 20 + "lalu."
    assert len(too_long) > EXCERPT_CHARS
    text = f"Thalut berangkat. {too_long} Pasukan itu sedikit."
    assert excerpt(text, terms("berapa orang pasukan yang meneguk air"), terms).text == "Pasukan itu sedikit."
    other = too_long.replace("Pasukan mereka", "Tentara Thalut")
    only_long = f"{too_long} {other}"  # every sentence too long: the best one, whole, alone
    assert excerpt(only_long, terms("tentara Thalut"), terms).text == other


def test_sentences_apart_are_joined_by_an_ellipsis_and_neighbours_as_the_text_spaces_them(engine):
    terms = terms_of(engine)
    between = "Kalimat yang amat panjang tanpa kata yang dicari, " * 12 + "selesai."
    text = f"Pencuri dipotong tangannya. {between} Ramadan bulan puasa.  Puasa itu wajib."
    apart = excerpt(text, terms("pencuri ramadan"), terms).text
    assert apart == "Pencuri dipotong tangannya. … Ramadan bulan puasa."
    together = excerpt(text, terms("ramadan wajib"), terms).text
    assert together == "Ramadan bulan puasa.  Puasa itu wajib."  # verbatim: the text's two spaces kept


def test_a_window_of_a_long_ayah_quotes_none_of_its_edge_sentences(engine):
    terms = terms_of(engine)
    text = "dan hukuman pencuri di tengah kalimat. Pencuri dipotong tangannya. Hukuman pencuri lain yang terpo"
    question = terms("hukuman pencuri")
    assert excerpt(text, question, terms, starts_whole=False, ends_whole=False).text == "Pencuri dipotong tangannya."


def test_the_ayah_s_translation_is_quoted_when_it_holds_more_of_the_question(engine):
    terms = terms_of(engine)
    ayah = next(a for a in read_builtin().ayat if (a.surah, a.ayah) == (5, 38))
    passage = dataclasses.replace(
        given_passages(engine, "pencuri", k=1)[0], text=ayah.text, translation=ayah.translation
    )
    # The translation says "perempuan", Jalalayn's tafsir "wanita".
    quote, of_translation = quote_passage(passage, terms("hukuman perempuan yang mencuri"), terms)
    assert of_translation and quote.text in ayah.translation and "perempuan" in quote.text
    quote, of_translation = quote_passage(passage, terms("dipotong tangan kanan dari pergelangan"), terms)
    assert not of_translation and "pergelangan" in quote.text and quote.text in ayah.text


def test_the_count_of_thalut_s_army_is_quoted_up_to_its_full_stop(engine):
    """Issue 23: '… Jumlah mereka tiga …' under QS Al-Baqarah [2]: 249, where the tafsir says three hundred and
    some: that sentence (401 characters) is quoted whole."""
    terms = terms_of(engine)
    ayah = next(a for a in read_builtin().ayat if (a.surah, a.ayah) == (2, 249))
    start = ayah.text.index("Jumlah mereka tiga ratus")
    sentence = ayah.text[start : ayah.text.index(".", start) + 1]
    passage = dataclasses.replace(
        given_passages(engine, "Thalut", k=1)[0], text=ayah.text, translation=ayah.translation
    )
    question = terms("berapa orang beriman yang melewati anak sungai bersama Thalut?")
    shared = len(question & terms(sentence))  # the question's terms (words and, stemmed, their roots) it holds
    assert shared >= 5
    assert quote_passage(passage, question, terms) == (Quote(sentence, shared), False)


def test_an_ayah_is_quoted_once_however_many_of_its_windows_are_found(engine):
    surah, ayah = 2, 102  # long: several windows
    options = SearchOptions(k=5, filter=TafsirFilter(surah=surah, ayah_from=ayah, ayah_to=ayah).to_point_filter())
    answer = answerer(engine).answer("sihir Harut dan Marut di Babil", options=options)
    assert sum(not p.is_context for p in answer.passages) >= 2  # the windows of one ayah were found
    assert len(answer.text.split("\n\n")[1:]) == 1 and len(answer.cited) == 1
    assert check_answer(answer)["cut"] == []


def test_extractive_answers_quote_only_whole_sentences(engine):
    """Over questions that reach long passages (every translation of al-Baqarah's first 60 ayat, and some asked
    as people ask): each quoted fragment is a run of whole sentences of its passage, and no ayah comes twice."""
    ayat = [a for a in read_builtin().ayat if a.surah == 2 and a.ayah <= 60]
    questions = [a.translation for a in ayat] + [
        "Siapa Thalut dan bagaimana pasukannya menang melawan Jalut?",
        "apa hukuman bagi pencuri?",
        "bagaimana hukum khamar dan judi?",
        "siapa yang pertama kali membunuh saudaranya?",
    ]
    report = measure(answerer(engine), questions)
    assert report["fragments checked"] >= len(questions)
    assert report["fragments cut"] == 0, report["cut examples"]
    assert report["answers with a duplicated ayah"] == 0


# --- generated, citations checked ---------------------------------------------------------------------------


def test_a_generated_answer_keeps_citations_of_given_passages_and_cuts_the_others(engine, llm):
    passages = given_passages(engine, QUESTION)
    first, second = passages[0], passages[1]
    llm.script(
        {
            "content": f"Allah itu Esa [1], sebagaimana {first.citation}. Juga {second.citation}. "
            "Khamar haram QS Al-Ma'idah [5]: 90, lihat [9]."
        }
    )
    answer = answerer(engine, llm).answer(QUESTION, options=SearchOptions(k=3))
    assert answer.mode is AnswerMode.GENERATED
    kept = f"Allah itu Esa [1], sebagaimana {first.citation}. Juga {second.citation}."
    assert answer.text == f"{kept} Khamar haram, lihat."
    assert [c.text for c in answer.invalid_citations] == ["QS Al-Ma'idah [5]: 90", "[9]"]
    assert answer.cited == (1, 2)
    assert answer.usage is not None and answer.usage.completion_tokens > 0
    # The model was given exactly these passages, numbered.
    prompt = llm.calls()[0]["messages"][-1]["content"]
    assert f"[1] {first.citation}" in prompt and f"[3] {passages[2].citation}" in prompt
    assert "[4]" not in prompt


def test_the_streamed_text_is_the_checked_text_and_ends_with_one_done(engine, llm):
    llm.script({"content": "Allah Maha Esa [1] dan bukan [42]. Selesai."})
    events = list(answerer(engine, llm).stream(QUESTION))
    deltas = [e.text for e in events if isinstance(e, Delta)]
    assert len(deltas) > 2 and all(isinstance(e, Delta) for e in events[:-1])
    assert isinstance(events[-1], Done)
    assert "".join(deltas) == events[-1].answer.text == "Allah Maha Esa [1] dan bukan. Selesai."
    assert llm.calls()[0]["stream"] is True


def test_any_langchain_chat_model_can_answer(engine):
    model = GenericFakeChatModel(messages=iter([AIMessage("Dialah Allah Yang Maha Esa [1].")]))
    answer = Answerer(engine, llm=model).answer(QUESTION)
    assert answer.mode is AnswerMode.GENERATED and answer.cited == (1,)
    assert answer.llm == "the chat model GenericFakeChatModel"


def test_the_sources_footer_lists_the_cited_passages(engine, llm):
    llm.script({"content": "Lihat [2]."})
    answer = answerer(engine, llm).answer(QUESTION)
    second = answer.passages[1]
    assert sources_footer(answer) == f"Sumber:\n[2] {second.citation} ({second.edition})"


# --- not found ----------------------------------------------------------------------------------------------


def test_below_the_threshold_the_answer_is_not_found_and_no_language_model_is_asked(engine, llm):
    _, similarity = engine.search_with_similarity(QUESTION, SearchOptions())
    llm.script({"content": "Jawaban yang tidak boleh diminta [1]."})
    answer = answerer(engine, llm, answer_min_similarity=similarity + 1e-4).answer(QUESTION)
    assert answer.mode is AnswerMode.NOT_FOUND
    assert answer.text == NOT_FOUND_TEXT and answer.passages == () and answer.usage is None
    assert llm.calls() == []
    # At the threshold itself, the passages are close enough: the model is asked.
    answer = answerer(engine, llm, answer_min_similarity=round(similarity, 6) - 1e-6).answer(QUESTION)
    assert answer.mode is AnswerMode.GENERATED and len(llm.calls()) == 1


def test_the_threshold_is_the_models_measured_one_unless_set():
    e5 = profile_for(MULTILINGUAL_E5_SMALL)
    assert e5.min_similarity == 0.825
    assert profile_for("some/unmeasured-model").min_similarity is None


def test_an_unmeasured_model_never_says_not_found_unless_a_threshold_is_set(engine):
    assert answerer(engine).min_similarity is None  # the tiny test model has no measured threshold
    assert answerer(engine, answer_min_similarity=0.5).min_similarity == 0.5


# --- follow-ups ---------------------------------------------------------------------------------------------

HISTORY = [
    Turn(role="user", content="Apa hukuman bagi pencuri menurut Al-Qur'an?"),
    Turn(role="assistant", content="Tangannya dipotong [1]."),
]


def test_a_follow_up_is_rewritten_by_the_language_model_before_the_search(engine, llm):
    llm.script({"content": "Apa hukuman bagi pencuri yang bertobat?"}, {"content": "Allah Maha Pengampun [1]."})
    answer = answerer(engine, llm).answer("lalu bagaimana jika ia bertobat?", HISTORY)
    assert answer.searched_query == "Apa hukuman bagi pencuri yang bertobat?"
    assert answer.passages == tuple(given_passages(engine, answer.searched_query, k=5))
    rewrite, generation = llm.calls()
    assert "lalu bagaimana jika ia bertobat?" in rewrite["messages"][-1]["content"]
    assert "Apa hukuman bagi pencuri menurut Al-Qur'an?" in rewrite["messages"][-1]["content"]
    # The answer is written with the conversation before it.
    assert [m["content"] for m in generation["messages"][1:3]] == [t.content for t in HISTORY]


def test_without_a_language_model_a_follow_up_is_searched_with_the_previous_question(engine):
    answer = answerer(engine).answer("lalu apa hukumannya?", HISTORY)
    assert answer.searched_query == "Apa hukuman bagi pencuri menurut Al-Qur'an? lalu apa hukumannya?"


@pytest.mark.parametrize(
    ("question", "follow_up"),
    [
        ("lalu apa hukumannya?", True),
        ("Bagaimana dengan wanita?", True),
        ("apa hukuman untuk itu", True),
        ("kenapa?", True),
        ("Apa hukum meminum khamar dalam Islam?", False),
    ],
)
def test_the_rule_that_spots_a_follow_up(question, follow_up):
    assert is_follow_up(question) is follow_up
    expected = f"{HISTORY[0].content} {question}" if follow_up else question
    assert standalone_by_rule(question, HISTORY) == expected


def test_a_question_without_earlier_turns_is_searched_as_it_is(engine, llm):
    llm.script({"content": "Esa [1]."})
    answer = answerer(engine, llm).answer("lalu apa hukumannya?")
    assert answer.searched_query == "lalu apa hukumannya?"
    assert len(llm.calls()) == 1  # no rewriting call


# --- the language model failing -----------------------------------------------------------------------------


def failure(engine: SearchEngine, llm: LlmServer | None, reply: dict | None = None, **changes) -> AnswerFailed:
    if reply is not None:
        llm.script(reply)
    with pytest.raises(AnswerFailed) as caught:
        answerer(engine, llm, **changes).answer(QUESTION)
    assert caught.value.answer.passages, "the passages found are returned with the error"
    assert "Traceback" not in caught.value.error.message
    return caught.value


def test_a_timeout_names_the_endpoint_and_the_timeout_setting(engine, llm):
    failed = failure(engine, llm, {"content": "terlambat", "delay": 3}, llm_timeout=0.5)
    assert failed.error.kind == "timeout" and failed.error.setting == "TAFSIR_LLM_TIMEOUT"
    assert llm.url in failed.error.message and "0.5 s" in failed.error.message


def test_an_unreachable_endpoint_names_its_url_setting(engine):
    url = f"http://127.0.0.1:{free_port()}/v1"
    failed = failure(engine, None, llm_base_url=url, llm_model="m", llm_max_retries=0)
    assert failed.error.kind == "unreachable" and failed.error.setting == "TAFSIR_LLM_BASE_URL"
    assert url in failed.error.message


def test_a_server_error_is_reported_with_its_status(engine, llm):
    failed = failure(engine, llm, {"status": 503})
    assert failed.error.kind == "status" and "HTTP 503" in failed.error.message


def test_a_rejected_key_names_the_key_setting(engine, llm):
    failed = failure(engine, llm, {"status": 401})
    assert failed.error.setting == "TAFSIR_LLM_API_KEY"


def test_a_malformed_reply_is_reported_as_not_a_chat_completion(engine, llm):
    failed = failure(engine, llm, {"malformed": True})
    assert failed.error.kind == "malformed" and "not an OpenAI chat completion" in failed.error.message


def test_a_failure_while_rewriting_still_searches_and_returns_the_passages(engine, llm):
    llm.script({"status": 500})
    with pytest.raises(AnswerFailed) as caught:
        answerer(engine, llm).answer("lalu apa hukumannya?", HISTORY)
    assert caught.value.answer.searched_query == standalone_by_rule("lalu apa hukumannya?", HISTORY)
    assert caught.value.answer.passages
    assert len(llm.calls()) == 1  # the model that just failed is not asked again


def test_a_failure_in_the_middle_of_a_stream_keeps_what_was_written(engine, llm):
    llm.script({"malformed": True})
    events = list(answerer(engine, llm).stream(QUESTION))
    assert isinstance(events[-1], Failed)
    assert events[-1].answer.passages


# --- settings -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"llm_base_url": "http://localhost:11434/v1"}, "TAFSIR_LLM_MODEL is not"),
        ({"llm_base_url": "localhost:11434", "llm_model": "m"}, "is not an http(s) URL"),
    ],
)
def test_an_incomplete_language_model_setting_is_refused_naming_what_is_missing(given, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=re.escape(message)):
        Settings(_env_file=None, **given)


def test_blank_language_model_settings_mean_none(engine):
    settings = Settings(_env_file=None, llm_base_url=" ", llm_model="", llm_api_key="")
    assert (settings.llm_base_url, settings.llm_model, settings.llm_api_key) == (None, None, None)
    assert Answerer(with_settings(engine, llm_base_url=settings.llm_base_url, llm_model=settings.llm_model)).llm is None
