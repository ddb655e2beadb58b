"""Hypothesis fuzzing of the source readers and the HTTP API's request model (issue 7, part 2).

Every input ends in a typed error or a valid result: ``read_source`` returns a valid ``Source`` or raises
``SourceError`` naming the file; ``RetrieveRequest`` validates or raises pydantic's ``ValidationError``;
POST /v1/retrieve answers < 500 with a JSON body, and nothing stored changes.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, currently_in_test_context, given, settings
from hypothesis import event as _event
from hypothesis import strategies as st
from pydantic import ValidationError

from ingest.builtin import read_builtin
from ingest.pipeline import IngestPipeline
from ingest.sources import _EDITION_RE, Source, SourceError, read_source
from interfaces.http import create_app
from interfaces.requests import RetrieveRequest
from retriever.search import SearchEngine
from services.embedding import Embedder
from services.quran import check_ayah
from services.settings import Settings
from services.store import open_store

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
SUFFIXES = (".xml", ".jsonl", ".csv")
FIELDS = ("surah", "ayah", "text", "translation", "arabic", "edition")
ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1256")
EDITIONS = (None, "id.test", "Not An Edition!", "")


def event(name: str) -> None:
    if currently_in_test_context():  # check_read also serves plain tests
        _event(name)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def check_read(path: Path, edition: str | None) -> Source | None:
    """The readers' contract: a valid Source, or a SourceError naming the file; nothing else escapes."""
    try:
        source = read_source(path, edition)
    except SourceError as exc:
        event("SourceError")
        assert exc.problems
        assert str(path) in str(exc)
        return None
    event("valid Source")
    assert _EDITION_RE.fullmatch(source.edition)
    assert source.origin == str(path)
    keys = [(a.surah, a.ayah) for a in source.ayat]
    assert source.ayat and keys == sorted(set(keys))  # sorted, no duplicates
    for a in source.ayat:
        check_ayah(a.surah, a.ayah)
        assert a.edition == source.edition
        assert isinstance(a.text, str) and a.text.strip() and a.text == a.text.strip()
        for optional in (a.translation, a.arabic):
            assert optional is None or (isinstance(optional, str) and optional.strip())
    return source


# --- arbitrary bytes ---------------------------------------------------------------------------------------


@FUZZ
@given(suffix=st.sampled_from(SUFFIXES), data=st.binary(max_size=2048), edition=st.sampled_from(EDITIONS))
def test_arbitrary_bytes_give_a_source_or_a_source_error(workdir, suffix, data, edition):
    path = workdir / f"bytes{suffix}"
    path.write_bytes(data)
    check_read(path, edition)


# --- structurally plausible, mutated content ---------------------------------------------------------------

# Mostly valid numbers (every surah has at least 3 ayat), with the edge cases readers must refuse.
numbers = st.one_of(
    st.integers(1, 114),
    st.integers(1, 3),
    st.integers(-3, 300),
    st.integers(),
    st.integers(1, 114).map(str),
    st.sampled_from(["", " ", "1.0", "2.5", "1_0", "٢", "+1", " 7 ", "0x1", "1e2", "NaN", "9" * 5000]),
)
texts = st.one_of(st.text(max_size=40), st.sampled_from(["", "   ", "\n", "\u2028", "Allah", "الله", "a\x00b"]))
json_scalars = st.one_of(st.none(), st.booleans(), st.floats(), numbers, texts)
field_names = st.one_of(st.sampled_from(FIELDS), st.text(max_size=8))
# A row: usually the required fields, sometimes more, fewer or renamed.
rows = st.fixed_dictionaries(
    {"surah": numbers, "ayah": numbers, "text": texts},
    optional={"translation": texts, "arabic": texts, "edition": st.sampled_from(["id.test", "id.other", "X Y", 3])},
) | st.dictionaries(field_names, json_scalars, max_size=6)


# Rows that are all valid, so that the success path is fuzzed too (unique by ayah within a file).
valid_rows = st.fixed_dictionaries(
    {
        "surah": st.integers(1, 114),
        "ayah": st.integers(1, 3),
        "text": st.text(min_size=1, max_size=30).filter(lambda t: t.strip() and "\x00" not in t),
    },
    optional={"translation": texts, "edition": st.just("id.test")},
)
valid_lists = st.lists(valid_rows, min_size=1, max_size=8, unique_by=lambda r: (r["surah"], r["ayah"]))


@st.composite
def mutated(draw, content: bytes) -> bytes:
    """The content as written, truncated, with bytes spliced in, or with a slice dropped."""
    how = draw(st.sampled_from(["as is", "as is", "truncate", "insert", "drop"]))
    if how == "as is" or not content:
        return content
    at = draw(st.integers(0, len(content)))
    if how == "truncate":
        return content[:at]
    if how == "insert":
        return content[:at] + draw(st.binary(min_size=1, max_size=8)) + content[at:]
    return content[:at] + content[at + draw(st.integers(1, 16)) :]


def encode(text: str, encoding: str) -> bytes:
    return text.encode(encoding, errors="replace")


@st.composite
def jsonl_files(draw) -> bytes:
    if draw(st.booleans()):  # clean
        return "\n".join(json.dumps(row, ensure_ascii=draw(st.booleans())) for row in draw(valid_lists)).encode()
    lines = []
    for row in draw(st.lists(rows, max_size=8)):
        kind = draw(st.sampled_from(["object", "object", "object", "array", "scalar", "deep", "blank"]))
        if kind == "object":
            lines.append(json.dumps(row, ensure_ascii=draw(st.booleans())))
        elif kind == "array":
            lines.append(json.dumps(list(row.values())))
        elif kind == "scalar":
            lines.append(json.dumps(draw(json_scalars)))
        elif kind == "deep":  # nesting deeper than the json module's recursion limit
            depth = draw(st.sampled_from([50, 5_000, 100_000]))
            lines.append("[" * depth + "]" * depth)
        else:
            lines.append(draw(st.sampled_from(["", "   ", "\t"])))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return draw(mutated(encode(newline.join(lines), draw(st.sampled_from(ENCODINGS)))))


@st.composite
def csv_files(draw) -> bytes:
    if draw(st.booleans()):  # clean; rows without an edition, so --edition decides
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["surah", "ayah", "text", "translation"])
        for row in draw(valid_lists):
            writer.writerow([row["surah"], row["ayah"], row["text"].replace("\r", " "), row.get("translation", "")])
        return out.getvalue().encode()
    header = draw(st.one_of(st.permutations(FIELDS[:3]), st.lists(field_names, max_size=6)))
    header = list(header) + draw(st.lists(st.sampled_from(FIELDS[3:]), max_size=3, unique=True))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    writer.writerow([draw(st.sampled_from([name, name.upper(), f" {name} "])) for name in header])
    for row in draw(st.lists(rows, max_size=8)):
        cells = ["" if row.get(name) is None else str(row.get(name)) for name in header]
        if draw(st.integers(0, 9)) == 0:  # a row with the wrong number of cells
            cells = cells[:-1] if cells else ["x"]
        writer.writerow(cells)
    text = out.getvalue()
    if draw(st.booleans()):
        text += draw(st.sampled_from(['1,1,"unterminated\n', '"a"b,1,2\n', "\n\n", "1,1," + "x" * 200_000 + "\n"]))
    return draw(mutated(encode(text, draw(st.sampled_from(ENCODINGS)))))


@st.composite
def xml_files(draw) -> bytes:
    if draw(st.booleans()):  # clean
        suras: dict[int, list[tuple[int, str]]] = {}
        for row in draw(valid_lists):
            suras.setdefault(row["surah"], []).append((row["ayah"], row["text"]))
        body = "".join(
            f'<sura index="{n}">' + "".join(f'<aya index="{a}" text={_xml_text(t)}/>' for a, t in ayat) + "</sura>"
            for n, ayat in suras.items()
        )
        return f"<!--\n#  ID: id.test\n-->\n<quran>{body}</quran>".encode()
    parts = ['<?xml version="1.0" encoding="utf-8" ?>\n']
    if draw(st.booleans()):
        parts.append(f"<!--\n#  ID: {draw(st.sampled_from(['id.test', 'id.other', 'Bad Id']))}\n-->\n")
    parts.append("<quran>\n")
    for _ in range(draw(st.integers(0, 3))):
        attrs = {"index": draw(numbers)} if draw(st.integers(0, 5)) else {}
        attrs.update(draw(st.dictionaries(st.sampled_from(["name", "x"]), texts, max_size=1)))
        parts.append(f"<{draw(st.sampled_from(['sura', 'sura', 'surah']))}{_attrs(attrs)}>\n")
        for row in draw(st.lists(rows, max_size=4)):
            aya = {"index": row["ayah"]} if "ayah" in row else {}
            aya.update({k: v for k, v in row.items() if k in ("text", "bismillah")})
            parts.append(f"  <aya{_attrs(aya)}/>\n")
        parts.append("</sura>\n")
    if draw(st.booleans()):
        parts.append(f"<aya index='1' text={quoteattr(draw(texts))}/>\n")  # outside a <sura>
    parts.append(draw(st.sampled_from(["</quran>\n", "", "</quran><quran/>", "&undefined;"])))
    return draw(mutated(encode("".join(parts), draw(st.sampled_from(ENCODINGS)))))


def _xml_text(text: str) -> str:
    # Characters XML forbids outright are replaced; whitespace in attributes is normalised by any XML parser.
    allowed = "".join(c if c in "\t\n\r" or (c >= " " and c not in "\ufffe\uffff") else "?" for c in text)
    return quoteattr(allowed)


def _attrs(values: dict) -> str:
    # Control characters are not allowed in XML even when escaped: they make the file malformed, as in life.
    return "".join(f" {escape(str(k))}={quoteattr(str(v))}" for k, v in values.items() if str(k).isidentifier())


@FUZZ
@given(
    fmt=st.sampled_from(SUFFIXES),
    data=st.data(),
    edition=st.sampled_from(EDITIONS),
)
def test_mutated_plausible_sources_give_a_source_or_a_source_error(workdir, fmt, data, edition):
    strategy = {".xml": xml_files(), ".jsonl": jsonl_files(), ".csv": csv_files()}[fmt]
    path = workdir / f"plausible{fmt}"
    path.write_bytes(data.draw(strategy))
    check_read(path, edition)


def test_the_generators_also_produce_valid_sources(workdir):
    """The structured strategies reach the success path too, not only errors (a fixed valid example each)."""
    row = {"surah": 112, "ayah": 1, "text": "Katakanlah", "edition": "id.test"}
    path = workdir / "valid.jsonl"
    path.write_text(json.dumps(row) + "\n")
    assert check_read(path, None) is not None
    path = workdir / "valid.csv"
    path.write_text("surah,ayah,text\n112,1,Katakanlah\n")
    assert check_read(path, "id.test") is not None
    path = workdir / "valid.xml"
    path.write_text('<quran><sura index="112"><aya index="1" text="Katakanlah"/></sura></quran>')
    assert check_read(path, "id.test") is not None


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("digits.jsonl", '{"surah": ' + "1" * 5000 + ', "ayah": 1, "text": "x", "edition": "id.t"}\n'),
        ("digits-str.jsonl", '{"surah": "' + "1" * 5000 + '", "ayah": 1, "text": "x", "edition": "id.t"}\n'),
        ("deep.jsonl", "[" * 100_000 + "\n"),
        ("digits.csv", "surah,ayah,text\n" + "1" * 5000 + ",1,x\n"),
        ("digits.xml", '<quran><sura index="' + "1" * 5000 + '"><aya index="1" text="x"/></sura></quran>'),
    ],
)
def test_found_by_fuzzing_huge_numbers_and_deep_nesting_are_source_errors(workdir, filename, content):
    """Regressions: these raised ValueError (int digit limit) and RecursionError before the fix."""
    path = workdir / filename
    path.write_text(content)
    with pytest.raises(SourceError) as caught:
        read_source(path, "id.t")
    assert str(path) in str(caught.value)


# --- the API's request model ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
modes = st.sampled_from(["dense", "sparse", "hybrid", "fuzzy", "", None, 1])
filters = (
    st.fixed_dictionaries(
        {},
        optional={
            "surah": st.one_of(st.integers(-1, 116), st.lists(st.integers(0, 115), max_size=5), json_values),
            "ayah_from": st.one_of(st.integers(-1, 300), json_values),
            "ayah_to": st.one_of(st.integers(-1, 300), json_values),
            "edition": st.one_of(st.text(max_size=12), st.lists(st.text(max_size=12), max_size=3), json_values),
        },
    )
    | json_values
)
# Near-valid bodies (so validation succeeds often and the search runs), and arbitrary JSON.
bodies = st.one_of(
    st.fixed_dictionaries(
        {"query": st.one_of(st.text(min_size=1, max_size=60), st.sampled_from(["Allah", " ", "a" * 2001]))},
        optional={
            "k": st.one_of(st.integers(-2, 60), json_values),
            "mode": modes,
            "filter": filters,
            "neighbors": st.one_of(st.integers(-1, 12), json_values),
            "score_threshold": st.one_of(st.floats(allow_nan=False, allow_infinity=False), json_values),
        },
    ),
    st.fixed_dictionaries({"query": st.text(min_size=1, max_size=20)}).flatmap(
        lambda base: st.dictionaries(st.text(max_size=10), json_values, max_size=3).map(lambda extra: extra | base)
    ),
    json_values,
)


@FUZZ
@given(body=bodies)
def test_the_request_model_validates_or_raises_validation_error(body):
    for validate in (RetrieveRequest.model_validate, lambda b: RetrieveRequest.model_validate_json(json.dumps(b))):
        try:
            request = validate(body)
        except ValidationError:
            event("ValidationError")
            continue
        event("valid request")
        # The bodies include k -2..60, neighbors -1..12, a blank and a 2,001-character query: these fail
        # as soon as a bound of the model is loosened.
        assert 1 <= request.k <= 50 and 0 <= request.neighbors <= 10
        assert 1 <= len(request.query) <= 2000 and request.query.strip()
        assert request.score_threshold is None or math.isfinite(request.score_threshold)
        if request.filter is not None:
            request.filter.to_point_filter()  # a validated filter always converts


@pytest.fixture(scope="module")
def api(tmp_path_factory, tiny_model) -> Iterator[tuple[TestClient, object, str]]:
    """The app in-process on an embedded store holding surahs 112-114 (15 ayat)."""
    app_settings = Settings(
        _env_file=None,
        qdrant_path=tmp_path_factory.mktemp("fuzz-api") / "qdrant",
        embedding_model=str(tiny_model),
        api_key=None,
        ingest_schedule=None,
    )
    ayat = tuple(dataclasses.replace(a, edition="id.test") for a in read_builtin().ayat if a.surah >= 112)
    store = open_store(app_settings)
    embedder = Embedder(app_settings)
    try:
        IngestPipeline(app_settings, store, embedder).run(Source("id.test", "test", ayat))
        engine = SearchEngine(app_settings, store=store, embedder=embedder)
        with TestClient(create_app(app_settings, engine), raise_server_exceptions=False) as client:
            yield client, store, app_settings.collection
    finally:
        store.close()


def stored(store, alias: str) -> tuple[list[str], int]:
    return sorted(store.list_collections()), store.count(alias)


@FUZZ
@given(body=bodies)
def test_arbitrary_json_to_retrieve_is_answered_below_500_in_json_and_changes_nothing(api, body):
    client, store, alias = api
    before = stored(store, alias)
    response = client.post("/v1/retrieve", json=body)
    event(f"status {response.status_code}")
    assert response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/json")
    answer = response.json()
    if response.status_code == 200:
        assert isinstance(answer["documents"], list)
    else:
        assert response.status_code == 422 and answer["error"] == "invalid_request", answer
    assert stored(store, alias) == before


def test_the_fuzzed_store_holds_what_was_ingested(api):
    client, store, alias = api
    assert store.count(alias) >= 15 and client.post("/v1/retrieve", json={"query": "Allah"}).status_code == 200
