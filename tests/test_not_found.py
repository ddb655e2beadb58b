"""The calibrated not-found decision (retriever/not_found.py, fitted by training/not_found.py): the answering core
refuses or answers as the fitted model says, over a real store and the real search; the shipped coefficients were
fitted on the shipped labelled set."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import numpy as np
import pytest

from retriever.answer import NOT_FOUND_TEXT, Answerer, AnswerMode
from retriever.not_found import Neighbours, NotFoundModel, arabic_words, gather, load_models, neighbour_margin, unit
from retriever.search import SearchEngine, SearchOptions
from services.model_source import BUNDLED_IDENTITIES
from tests.conftest import ingested_settings
from tests.llm_server import LlmServer
from training.not_found import QUESTIONS, fingerprint, fit, load_questions, write

SURAHS = [1, 2, 5, 112, 113, 114]
ANSWERABLE = [
    "hukum potong tangan bagi pencuri",
    "Katakanlah Dialah Allah Yang Maha Esa",
    "apakah minuman keras dan judi diharamkan?",
    "Allah tidak mengantuk dan tidak tidur",
    "berapa tahun Bani Israil tersesat di padang Tih",
    "Siapa Thalut dan bagaimana ia mengalahkan Jalut?",
    "perintah berwudu sebelum salat: membasuh muka dan tangan sampai siku",
    "makanan yang diharamkan: bangkai, darah, daging babi",
]
OFF_TOPIC = [
    "resep kue brownies cokelat yang lumer",
    "cara memasang Python di Windows 11",
    "jadwal pertandingan timnas sepak bola",
    "berapa kurs dolar terhadap rupiah hari ini",
    "cara mengganti oli motor matic",
    "rekomendasi laptop untuk desain grafis",
    "tips merawat kucing persia",
    "harga tiket kereta cepat ke Bandung",
]


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tiny_model) -> Iterator[SearchEngine]:
    engine = SearchEngine(ingested_settings(tmp_path_factory.mktemp("not-found"), tiny_model, SURAHS))
    yield engine
    engine.store.close()


@pytest.fixture(scope="module")
def decision(engine) -> NotFoundModel:
    """A decision fitted, as training/not_found.py fits one, on the evidence this store gives."""
    questions = ANSWERABLE + OFF_TOPIC
    evidence = [gather(q, engine.search_probed(q, SearchOptions(k=5)), engine.sparse) for q in questions]
    labels = ["answerable"] * len(ANSWERABLE) + ["off_topic"] * len(OFF_TOPIC)
    return fit(evidence, labels, model=engine.embedder.identity, data="test", features=("cosine", "overlap_first"))


@pytest.fixture(scope="module")
def llm(tmp_path_factory) -> Iterator[LlmServer]:
    server = LlmServer(tmp_path_factory.mktemp("llm") / "llm.log").wait()
    yield server
    server.stop()


def answerer(engine: SearchEngine, decision: NotFoundModel, **changes) -> Answerer:
    settings = engine.settings.model_copy(update=changes)
    same = SearchEngine(settings, store=engine.store, embedder=engine.embedder, sparse=engine.sparse)
    return Answerer(same, decisions={decision.model: decision})


@pytest.mark.parametrize("question", ANSWERABLE + OFF_TOPIC)
def test_the_answering_core_refuses_or_answers_as_the_fitted_decision_says(engine, decision, question):
    expected = decision.judge(gather(question, engine.search_probed(question), engine.sparse))
    answer = answerer(engine, decision).answer(question)
    assert answer.confidence == expected.confidence
    if expected.answers:
        assert answer.mode is AnswerMode.EXTRACTIVE and answer.passages
    else:
        assert answer.mode is AnswerMode.NOT_FOUND and answer.text == NOT_FOUND_TEXT and answer.passages == ()
    assert answer.similarity is not None  # the cosine stays part of every answer


def test_the_fitted_decision_refuses_off_topic_questions_and_answers_the_tafsirs(engine, decision):
    verdicts = {q: answerer(engine, decision).answer(q).mode for q in ANSWERABLE + OFF_TOPIC}
    refused = {q for q, mode in verdicts.items() if mode is AnswerMode.NOT_FOUND}
    # A toy decision over a tiny random model: the store's optimizer indexes in the background after the ingest,
    # which moves a cosine in the third decimal, and a question or two lie that close to the threshold.
    assert len(refused & set(OFF_TOPIC)) >= len(OFF_TOPIC) - 1, refused
    assert len(refused & set(ANSWERABLE)) <= 1, refused


def test_a_refused_question_asks_no_language_model(engine, decision, llm):
    llm.script({"content": "Jawaban yang tidak boleh diminta [1]."})
    settings = {"llm_base_url": llm.url, "llm_model": "scripted", "llm_timeout": 2, "llm_max_retries": 0}
    answer = answerer(engine, decision, **settings).answer(OFF_TOPIC[0])
    assert answer.mode is AnswerMode.NOT_FOUND and answer.usage is None and llm.calls() == []


def test_a_set_minimum_similarity_replaces_the_fitted_decision(engine, decision):
    answer = answerer(engine, decision, answer_min_similarity=-1).answer(OFF_TOPIC[0])
    assert answer.mode is AnswerMode.EXTRACTIVE and answer.confidence is None


def test_a_model_without_a_fitted_decision_keeps_the_single_cosine(engine):
    answer = Answerer(engine, decisions={}).answer(OFF_TOPIC[0])
    assert answer.confidence is None and answer.mode is AnswerMode.EXTRACTIVE  # the tiny model has no threshold


# --- the shipped decisions ----------------------------------------------------------------------------------


def test_every_shipped_decision_was_fitted_on_the_shipped_labelled_set():
    shipped = load_models()
    default = next(identity for identity, name in BUNDLED_IDENTITIES.items() if name == "multilingual-e5-small")
    assert default in shipped
    for identity, model in shipped.items():
        assert model.data == fingerprint(QUESTIONS), (
            f"{identity}: training/not_found_questions.jsonl changed since its decision was fitted: "
            "refit with python -m training.not_found"
        )


def test_the_labelled_set_holds_back_a_third_and_has_both_labels_in_each_language():
    questions = load_questions()
    held = [q for q in questions if q.held_back]
    assert 0.25 < len(held) / len(questions) < 0.4
    for language in ("id", "en"):
        for label in ("answerable", "off_topic"):
            assert any(q.language == language and q.label == label for q in held)
    assert sum(q.label == "off_topic" and q.language in ("id", "en") for q in questions) >= 150


def test_the_topic_is_read_from_the_query_embedding_of_the_models_size(engine, decision):
    question = OFF_TOPIC[0]
    evidence = gather(question, engine.search_probed(question), engine.sparse)
    assert evidence.vector == tuple(engine.embedder.encode_query(question))
    size = len(evidence.vector)
    length = sum(v * v for v in evidence.vector)
    toward = dataclasses.replace(decision, features=("topic",), mean=(0,), scale=(1,), weights=(1,), threshold=0.5)
    assert toward.topic(evidence.vector) == 0.0  # no projection fitted: the feature is 0
    # The projection of the query on itself is its squared length: half of it is above the intercept, twice not.
    leaning = dataclasses.replace(toward, topic_weights=evidence.vector, topic_intercept=-0.5 * length)
    assert leaning.judge(evidence).answers
    away = dataclasses.replace(leaning, topic_intercept=-2 * length)
    assert not away.judge(evidence).answers
    with pytest.raises(ValueError, match=f"reads {size + 1}-d embeddings, this query has {size}"):
        dataclasses.replace(leaning, topic_weights=(0.0,) * (size + 1)).judge(evidence)


def neighbours_only(engine: SearchEngine, k: int = 1) -> NotFoundModel:
    """A decision that weighs only the margin between the nearest labelled questions of each side."""
    vectors = np.array([engine.embedder.encode_query(q) for q in ANSWERABLE + OFF_TOPIC], dtype=np.float16)
    answerable = np.array([True] * len(ANSWERABLE) + [False] * len(OFF_TOPIC))
    return NotFoundModel(
        model=engine.embedder.identity,
        data="test",
        features=("neighbours",),
        mean=(0.0,),
        scale=(1.0,),
        weights=(50.0,),
        intercept=0.0,
        threshold=0.5,
        neighbours=Neighbours("not_found_test.npz", "", k, vectors, answerable),
    )


@pytest.mark.parametrize("question", ANSWERABLE + OFF_TOPIC)
def test_the_neighbours_margin_sides_with_the_nearest_labelled_questions(engine, question):
    """A labelled question's nearest labelled question is itself (cosine 1): with k=1 the margin is positive for
    the tafsir's questions and negative for the others, and the decision follows it."""
    decision = neighbours_only(engine)
    evidence = gather(question, engine.search_probed(question), engine.sparse)
    margin = decision.neighbour_margin(evidence.vector)
    assert (margin > 0) == (question in ANSWERABLE)
    assert decision.judge(evidence).answers == (question in ANSWERABLE)


def test_the_labelled_embeddings_are_written_beside_the_coefficients_and_checked_on_load(engine, tmp_path):
    decision = neighbours_only(engine, k=2)
    path = tmp_path / "not_found.json"
    write(decision, path)
    loaded = load_models(path)[decision.model]
    assert loaded.neighbours.k == 2 and (tmp_path / "not_found_test.npz").is_file()
    question = OFF_TOPIC[3]
    evidence = gather(question, engine.search_probed(question), engine.sparse)
    assert loaded.confidence(evidence) == pytest.approx(decision.confidence(evidence), abs=1e-3)
    with np.load(tmp_path / "not_found_test.npz") as arrays:
        vectors, answerable = arrays["vectors"], arrays["answerable"]
    np.savez_compressed(tmp_path / "not_found_test.npz", vectors=vectors, answerable=~answerable)
    with pytest.raises(ValueError, match=r"not_found_test.npz: its sha256 is .*refit with python -m training"):
        load_models(path)
    (tmp_path / "not_found_test.npz").unlink()
    with pytest.raises(ValueError, match=r"names .*not_found_test.npz, which is missing"):
        load_models(path)


def test_fitting_with_neighbours_seeks_each_questions_nearest_among_the_other_folds(engine):
    """Fitted on the margins of the questions themselves (each its own nearest, cosine 1), the neighbours would
    look perfect; out of fold they look as they will on a new question."""
    questions = ANSWERABLE + OFF_TOPIC
    evidence = [gather(q, engine.search_probed(q, SearchOptions(k=5)), engine.sparse) for q in questions]
    labels = ["answerable"] * len(ANSWERABLE) + ["off_topic"] * len(OFF_TOPIC)
    fitted = fit(evidence, labels, model="m@1", data="test", features=("neighbours",), neighbour_k=1)
    vectors = np.array([e.vector for e in evidence])
    assert fitted.neighbours is not None and fitted.neighbours.vectors.shape == vectors.shape
    answerable = np.array([label == "answerable" for label in labels])
    assert list(fitted.neighbours.answerable) == list(answerable)
    # Among all, each question's nearest is itself (cosine 1): margins far from 0, one sign per side. The margins
    # fitted on (their spread is ``scale``, the standardisation) are those of the other folds: much closer to 0.
    among_all = [neighbour_margin(unit(vectors), answerable, v, 1) for v in vectors]
    assert fitted.scale[0] < 0.5 * float(np.std(among_all)), (fitted.scale[0], float(np.std(among_all)))


def test_a_coefficient_file_with_an_unknown_feature_is_refused_naming_it(tmp_path):
    path = tmp_path / "not_found.json"
    entry = {"data": "x", "features": ["cosine", "moon_phase"], "mean": [0, 0], "scale": [1, 1], "weights": [1, 1]}
    path.write_text(json.dumps({"models": {"m@1": {**entry, "intercept": 0, "threshold": 0.5}}}))
    with pytest.raises(ValueError, match="m@1 uses unknown features \\['moon_phase'\\]"):
        load_models(path)


def test_a_labelled_set_with_a_bad_label_is_refused_naming_the_line(tmp_path):
    path = tmp_path / "questions.jsonl"
    path.write_text(
        '{"qid": "a", "query": "sabar", "label": "answerable", "language": "id"}\n'
        '{"qid": "b", "query": "rendang", "label": "maybe", "language": "id"}\n'
    )
    with pytest.raises(ValueError, match=r"questions.jsonl:2: label must be one of answerable, off_topic"):
        load_questions(path)


def test_arabic_words_are_compared_without_marks_and_alef_forms():
    printed = "ٱللَّهُ لَآ إِلَـٰهَ إِلَّا هُوَ ٱلْحَىُّ ٱلْقَيُّومُ"
    typed = "الله لا اله الا هو الحي القيوم"
    assert arabic_words(typed) <= arabic_words(printed)  # the printed words hold each spelling of a small alef


def test_evidence_reads_what_the_search_returned(engine):
    probe = engine.search_probed("hukum potong tangan bagi pencuri", SearchOptions(k=5))
    evidence = gather("hukum potong tangan bagi pencuri", probe, engine.sparse)
    terms = set(engine.sparse.query("hukum potong tangan bagi pencuri").indices)  # "bagi" is a stopword
    assert evidence.language == "id" and evidence.cosine == probe.similarity and evidence.terms == len(terms) >= 4
    assert 0 < evidence.overlap_first <= 1
    off = gather(OFF_TOPIC[1], engine.search_probed(OFF_TOPIC[1], SearchOptions(k=5)), engine.sparse)
    assert off.overlap_first < evidence.overlap_first  # Python and Windows are nowhere in the tafsir
