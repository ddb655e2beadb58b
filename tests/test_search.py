"""The search core's read path: editions merged where they say the same, and validation messages for people."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import ValidationError

from ingest.builtin import read_builtin
from ingest.pipeline import IngestPipeline
from ingest.sources import Source
from interfaces.requests import RetrieveRequest, humane_errors
from retriever.search import Passage, SearchEngine, SearchOptions, merge_editions
from services.embedding import Embedder
from services.settings import Settings
from services.store import open_store
from services.store.base import Mode, PointFilter
from tests.conftest import engine_over


def passage(edition: str, surah: int, ayah: int, text: str, score: float = 1.0) -> Passage:
    payload = {"text": text, "surah": surah, "ayah": ayah, "edition": edition}
    return Passage.from_payload(f"{edition}:{surah}:{ayah}", payload, score)


# --- merging editions -----------------------------------------------------------------------------------------


def test_the_same_text_of_one_ayah_from_two_editions_is_one_passage_naming_both():
    ranked = [
        passage("id.jalalayn", 112, 1, "Katakanlah: Dialah Allah", 0.9),
        passage("my.copy", 112, 1, "Katakanlah: Dialah Allah \n", 0.8),  # surrounding whitespace does not count
        passage("my.other", 112, 1, "Katakanlah: Dialah Allah", 0.7),
    ]
    merged = merge_editions(ranked)
    assert len(merged) == 1
    assert (merged[0].edition, merged[0].also_in, merged[0].score) == ("id.jalalayn", ("my.copy", "my.other"), 0.9)


def test_different_texts_or_different_ayat_stay_apart_in_their_order():
    ranked = [
        passage("id.jalalayn", 112, 1, "Katakanlah: Dialah Allah"),
        passage("my.edit", 112, 1, "Katakanlah (wahai Muhammad): Dialah Allah"),  # another wording
        passage("my.copy", 112, 2, "Katakanlah: Dialah Allah"),  # the same words for another ayah
    ]
    assert [(p.edition, p.ayah, p.also_in) for p in merge_editions(ranked)] == [
        ("id.jalalayn", 1, ()),
        ("my.edit", 1, ()),
        ("my.copy", 2, ()),
    ]


def edition(name: str, surahs) -> Source:
    ayat = tuple(dataclasses.replace(a, edition=name) for a in read_builtin().ayat if a.surah in surahs)
    return Source(name, "test", ayat)


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tiny_model):
    """One embedded store holding surahs 108-114 twice, as id.test and as its copy my.copy."""
    copies = edition("id.test", range(108, 115)), edition("my.copy", range(108, 115))
    with engine_over(tmp_path_factory.mktemp("merge"), tiny_model, *copies) as built:
        yield built


@pytest.mark.parametrize("mode", list(Mode))
def test_a_search_over_two_copies_returns_k_distinct_passages_each_naming_the_other_edition(engine, mode):
    passages = engine.search("Allah Yang Maha Esa", SearchOptions(k=5, mode=mode))
    assert len(passages) == 5  # the duplicates merged away are replaced by the next passages
    assert len({(p.surah, p.ayah, p.chunk) for p in passages}) == 5
    assert all({p.edition, *p.also_in} == {"id.test", "my.copy"} for p in passages)


@pytest.mark.parametrize("mode", list(Mode))
def test_every_passage_names_all_the_editions_holding_its_text_even_at_the_edge_of_the_ranking(engine, mode):
    for k in (1, 2, 3, 7):
        passages = engine.search("Allah Yang Maha Esa", SearchOptions(k=k, mode=mode))
        assert len(passages) == k
        assert all({p.edition, *p.also_in} == {"id.test", "my.copy"} for p in passages), (k, passages)


def test_a_search_limited_to_one_edition_merges_nothing(engine):
    only = SearchOptions(k=5, mode=Mode.SPARSE, filter=PointFilter(editions=["my.copy"]))
    passages = engine.search("Allah Yang Maha Esa", only)
    assert len(passages) == 5 and {(p.edition, p.also_in) for p in passages} == {("my.copy", ())}


# --- validation messages ---------------------------------------------------------------------------------------


def messages(body: dict) -> list[tuple[list, str, str]]:
    with pytest.raises(ValidationError) as info:
        RetrieveRequest.model_validate(body)
    return [(e["loc"], e["msg"], e["type"]) for e in humane_errors(info.value.errors())]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"filter": {"surah": 200}}, (["filter", "surah"], "surah must be between 1 and 114", "less_than_equal")),
        ({"filter": {"surah": 0}}, (["filter", "surah"], "surah must be between 1 and 114", "greater_than_equal")),
        ({"filter": {"ayah_from": 300}}, (["filter", "ayah_from"], "ayah_from must be between 1 and 286", None)),
        ({"filter": {"ayah_to": 0}}, (["filter", "ayah_to"], "ayah_to must be between 1 and 286", None)),
        ({"k": 0}, (["k"], "k must be between 1 and 50", "greater_than_equal")),
        ({"k": 51}, (["k"], "k must be between 1 and 50", "less_than_equal")),
        ({"k": "banyak"}, (["k"], "k must be between 1 and 50", "int_parsing")),
        ({"neighbors": 11}, (["neighbors"], "neighbors must be between 0 and 10", "less_than_equal")),
        ({"filter": {"edition": ""}}, (["filter", "edition"], "edition must be an edition id of 1 to 100", None)),
        ({"filter": {"juz": 30}}, (["filter", "juz"], "filter has no field 'juz'", "extra_forbidden")),
        ({"mode": "fuzzy"}, (["mode"], "mode must be one of dense, sparse, hybrid", "enum")),
    ],
    ids=str,
)
def test_an_out_of_range_field_gets_one_message_a_person_would_write(body, expected):
    (loc, msg, kind), *others = messages({"query": "Allah", **body})
    assert not others  # pydantic reports a number-or-list field twice, once per alternative
    assert loc == expected[0] and msg.startswith(expected[1])
    assert expected[2] is None or kind == expected[2]  # the machine-readable type stays pydantic's


def test_each_bad_surah_in_a_list_is_named_by_its_position():
    assert messages({"query": "Allah", "filter": {"surah": [1, 200, 300]}}) == [
        (["filter", "surah", 1], "surah must be between 1 and 114 (or a list of such numbers)", "less_than_equal"),
        (["filter", "surah", 2], "surah must be between 1 and 114 (or a list of such numbers)", "less_than_equal"),
    ]


def test_a_missing_query_and_a_blank_one_are_said_plainly():
    assert messages({"k": 3}) == [(["query"], "query is required", "missing")]
    assert messages({"query": "  "}) == [(["query"], "the query is blank", "value_error")]


def test_a_path_or_query_parameter_takes_one_value_and_its_message_says_no_more():
    errors = [
        {"loc": ("path", "surah"), "type": "int_parsing", "msg": "Input should be a valid integer"},
        {"loc": ("query", "edition"), "type": "string_too_long", "msg": "String should have at most 100 characters"},
    ]
    assert [e["msg"] for e in humane_errors(errors)] == [
        "surah must be between 1 and 114",
        "edition must be an edition id of 1 to 100 characters",
    ]


# --- the query's language chooses the fusion (services/models.py, language_fusions) ------------------------


@pytest.fixture(scope="module")
def e5_profiled_engine(tmp_path_factory, tiny_model):
    """Surahs 108-114 of the built-in corpus, searched with a model that inherits multilingual-e5-small's facts
    (a `tafsir train` folder names its base), so the fusions are e5's."""
    import json
    import shutil

    from services.models import LINEAGE_FILE, MULTILINGUAL_E5_SMALL

    folder = tmp_path_factory.mktemp("e5-like") / "model"
    shutil.copytree(tiny_model, folder)
    (folder / LINEAGE_FILE).write_text(json.dumps({"base": MULTILINGUAL_E5_SMALL}))
    settings = Settings(
        _env_file=None, qdrant_path=tmp_path_factory.mktemp("routing") / "qdrant", embedding_model=str(folder)
    )
    store = open_store(settings)
    embedder = Embedder(settings)
    try:
        IngestPipeline(settings, store, embedder).run(edition("id.test", range(108, 115)))
        yield SearchEngine(settings, store=store, embedder=embedder)
    finally:
        store.close()


def test_an_english_question_is_searched_with_the_lists_that_read_english(e5_profiled_engine):
    from services.models import MULTILINGUAL_E5_SMALL, PROFILES
    from services.store.base import SPARSE, SPARSE_ARABIC, SPARSE_CONTEXT, SPARSE_TRANSLATION

    english = e5_profiled_engine.request("What is the punishment for a thief?", SearchOptions(), dense=[0.0])
    assert english.dense_weight == 1.0
    assert english.sparse_weights == {SPARSE: 0.0, SPARSE_CONTEXT: 0.0, SPARSE_TRANSLATION: 1.0, SPARSE_ARABIC: 0.0}
    indonesian = e5_profiled_engine.request("Apa hukuman bagi pencuri?", SearchOptions(), dense=[0.0])
    default = PROFILES[MULTILINGUAL_E5_SMALL].fusion
    assert (indonesian.dense_weight, indonesian.sparse_weights[SPARSE_CONTEXT]) == (default.dense, default.bm25_ctx)
    # The translation's own vector: measured for Indonesian questions only (docs/BENCHMARKS.md, "Levers").
    assert (indonesian.dense_tr_weight, english.dense_tr_weight) == (0.5, 0.0)


def test_a_setting_sets_the_translation_vector_weight_and_the_search_uses_that_list(e5_profiled_engine):
    from services.store.base import DENSE, DENSE_TRANSLATION

    settings = e5_profiled_engine.settings.model_copy(update={"weight_dense_tr": 3.0})
    engine = SearchEngine(settings, store=e5_profiled_engine.store, embedder=e5_profiled_engine.embedder)
    request = engine.request("Apa hukuman bagi pencuri?", SearchOptions(), dense=[0.0])
    assert request.dense_tr_weight == 3.0
    assert [name for name, _ in request.lists()][:2] == [DENSE, DENSE_TRANSLATION]
    alone = settings.model_copy(
        update={
            "weight_dense": 0.0,
            "weight_bm25": 0.0,
            "weight_bm25_ctx": 0.0,
            "weight_bm25_tr": 0.0,
            "weight_bm25_ar": 0.0,
        }
    )
    only_translations = SearchEngine(alone, store=e5_profiled_engine.store, embedder=e5_profiled_engine.embedder)
    # "Katakanlah: Dialah Allah, Yang Maha Esa" is 112:1's translation: its own vector finds it first.
    found = only_translations.search("Katakanlah (Muhammad), Dialah Allah, Yang Maha Esa.", SearchOptions(k=3))
    assert (found[0].surah, found[0].ayah) == (112, 1)


def test_a_setting_overrides_the_english_fusion_too(e5_profiled_engine):
    settings = e5_profiled_engine.settings.model_copy(update={"weight_bm25_ctx": 2.0})
    engine = SearchEngine(settings, store=e5_profiled_engine.store, embedder=e5_profiled_engine.embedder)
    english = engine.request("What is the punishment for a thief?", SearchOptions(), dense=[0.0])
    assert (english.sparse_weights["bm25_ctx"], english.sparse_weights["bm25_tr"]) == (2.0, 1.0)


def test_an_english_question_finds_its_ayah_through_the_english_translation(e5_profiled_engine):
    """The built-in corpus carries Pickthall's English translation in bm25_tr, and an English question is searched
    there alone: English words over the Indonesian tafsir lists would rank Al-Lahab first here."""
    question = "seek refuge in the Lord of the Daybreak"
    passages = e5_profiled_engine.search(question, SearchOptions(k=3, mode=Mode.SPARSE))
    assert (passages[0].surah, passages[0].ayah) == (113, 1)
