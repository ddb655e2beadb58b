"""The one search core behind the LangChain retriever, ``tafsir search``/``tafsir eval`` and the HTTP API.

Query → (dense embedding, BM25 query vector) → Qdrant (dense, sparse, or hybrid prefetch + RRF) →
passages with citations, optionally followed by their neighbouring ayat as context.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.embedding import Embedder, ModelMismatchError
from services.language import detect_language
from services.model_source import settings_for_collection
from services.models import Fusion
from services.quran import SURAH_COUNT, SURAHS, citation, shown_translation
from services.quran import surah as surah_info
from services.settings import Settings
from services.sparse import Bm25Settings, SparseEncoder
from services.store.base import (
    SPARSE,
    SPARSE_ARABIC,
    SPARSE_CONTEXT,
    SPARSE_TRANSLATION,
    Mode,
    PointFilter,
    SearchRequest,
    StoreError,
    VectorStore,
    languages_filter,
    recorded_model,
)


class TafsirFilter(BaseModel):
    """Which passages a query may return: surah(s), an ayah range, edition(s), language(s). All given conditions
    hold."""

    model_config = ConfigDict(extra="forbid")

    surah: int | list[int] | None = Field(None, description="A surah number 1-114, or several.")
    ayah_from: int | None = Field(None, ge=1, description="Lowest ayah number (inclusive).")
    ayah_to: int | None = Field(None, ge=1, description="Highest ayah number (inclusive).")
    edition: str | list[str] | None = Field(None, description="An edition id such as id.jalalayn, or several.")
    language: str | list[str] | None = Field(
        None, description="The language of the editions: the edition id before its first dot (id, en, ar), or several."
    )

    @field_validator("surah")
    @classmethod
    def _surah_exists(cls, value: int | list[int] | None) -> int | list[int] | None:
        for number in [value] if isinstance(value, int) else value or []:
            if not 1 <= number <= SURAH_COUNT:
                raise ValueError(f"surah {number} does not exist: surahs are numbered 1-{SURAH_COUNT}")
        return value

    @model_validator(mode="after")
    def _range_is_ordered(self) -> TafsirFilter:
        if self.ayah_from is not None and self.ayah_to is not None and self.ayah_from > self.ayah_to:
            raise ValueError(f"ayah_from {self.ayah_from} is above ayah_to {self.ayah_to}")
        return self

    def to_point_filter(self) -> PointFilter:
        def as_list(value):
            return None if value is None else [value] if isinstance(value, int | str) else list(value)

        return PointFilter(
            surahs=as_list(self.surah),
            ayah_min=self.ayah_from,
            ayah_max=self.ayah_to,
            editions=as_list(self.edition),
            languages=as_list(self.language),
        )


# --- what a caller may ask: the HTTP body and the CLI options validate through the same model --------------

MAX_K = 50
MAX_NEIGHBORS = 10
MAX_QUERY_CHARS = 2_000
MAX_AYAT_IN_A_SURAH = max(s.ayat for s in SURAHS)  # 286, Al-Baqarah
MAX_EDITION_CHARS = 100
MAX_EDITIONS = 50
MAX_TURNS = 50  # earlier turns of a conversation a question may carry (retriever/answer.py)
MAX_TURN_CHARS = 8_000

SurahNumber = Annotated[int, Field(ge=1, le=SURAH_COUNT)]
AyahNumber = Annotated[int, Field(ge=1, le=MAX_AYAT_IN_A_SURAH)]
EditionId = Annotated[str, Field(min_length=1, max_length=MAX_EDITION_CHARS)]
LanguageCode = Annotated[str, Field(min_length=1, max_length=MAX_EDITION_CHARS)]


class RetrieveFilter(TafsirFilter):
    """``TafsirFilter`` with the Quran's bounds in the schema, so clients (and generated tests) see them."""

    surah: SurahNumber | Annotated[list[SurahNumber], Field(max_length=SURAH_COUNT)] | None = Field(
        None, description="A surah number 1-114, or several."
    )
    ayah_from: AyahNumber | None = Field(None, description="Lowest ayah number (inclusive).")
    ayah_to: AyahNumber | None = Field(None, description="Highest ayah number (inclusive).")
    edition: EditionId | Annotated[list[EditionId], Field(max_length=MAX_EDITIONS)] | None = Field(
        None, description="An edition id such as id.jalalayn, or several."
    )
    language: LanguageCode | Annotated[list[LanguageCode], Field(max_length=MAX_EDITIONS)] | None = Field(
        None, description="The language of the editions: the edition id before its first dot (id, en, ar), or several."
    )


class RetrieveRequest(BaseModel):
    """A search as a caller asks for it: the body of ``POST /v1/retrieve`` and the options of ``tafsir search``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"query": "Siapa Thalut?", "k": 5, "mode": "hybrid", "filter": {"surah": 2}, "neighbors": 1}]
        },
    )

    query: str = Field(
        min_length=1, max_length=MAX_QUERY_CHARS, description="The question, in Indonesian (at most 2,000 characters)."
    )
    k: int = Field(5, ge=1, le=MAX_K, description="How many passages (before neighbouring ayat are added).")
    mode: Mode = Field(Mode.HYBRID, description="dense, sparse (BM25) or hybrid (both, fused by RRF).")
    filter: RetrieveFilter | None = Field(None, description="Surah(s), ayah range, edition(s); all given must hold.")
    neighbors: int = Field(
        0, ge=0, le=MAX_NEIGHBORS, description="Add up to n adjacent ayat of the same surah as context."
    )
    score_threshold: float | None = Field(
        None, allow_inf_nan=False, description="Drop passages scoring below this (scores depend on the mode)."
    )

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the query is blank")
        return value

    def options(self) -> SearchOptions:
        return SearchOptions(
            k=self.k,
            mode=self.mode,
            filter=self.filter.to_point_filter() if self.filter is not None else None,
            score_threshold=self.score_threshold,
            neighbors=self.neighbors,
        )


# What each bounded field must be, as a person would say it. Pydantic's own messages name one bound at a
# time and, for a field that takes a number or a list, report both alternatives with internal tags in the
# location ("constrained-int", "list[constrained-int]"); these replace them, for the HTTP 422 body and the CLI.
FIELD_RULES = {
    "surah": f"surah must be between 1 and {SURAH_COUNT}",
    "ayah": "ayah must be a whole number",
    "ayah_from": f"ayah_from must be between 1 and {MAX_AYAT_IN_A_SURAH}",
    "ayah_to": f"ayah_to must be between 1 and {MAX_AYAT_IN_A_SURAH}",
    "edition": f"edition must be an edition id of 1 to {MAX_EDITION_CHARS} characters",
    "language": f"language must be a language code of 1 to {MAX_EDITION_CHARS} characters",
    "k": f"k must be between 1 and {MAX_K}",
    "neighbors": f"neighbors must be between 0 and {MAX_NEIGHBORS}",
    "query": f"query must be between 1 and {MAX_QUERY_CHARS:,} characters",
    "question": f"question must be between 1 and {MAX_QUERY_CHARS:,} characters",
    "messages": f"messages must be a list of at most {MAX_TURNS} turns",
    "content": f"content must be text of at most {MAX_TURN_CHARS:,} characters",
    "role": "role must be user or assistant",
    "stream": "stream must be true or false",
    "mode": f"mode must be one of {', '.join(m.value for m in Mode)}",
    "score_threshold": "score_threshold must be a finite number",
}
# A filter field of the body also takes a list; in a URL path or query string it is one value.
LIST_RULES = {
    "surah": " (or a list of such numbers)",
    "edition": f" (or a list of at most {MAX_EDITIONS} of them)",
    "language": f" (or a list of at most {MAX_EDITIONS} of them)",
}
_ONE_VALUE = ("path", "query")
# Errors that mean "not what this field takes": a field's rule says what it takes instead.
_RULE_ERRORS = {
    "greater_than",
    "greater_than_equal",
    "less_than",
    "less_than_equal",
    "too_short",
    "too_long",
    "string_too_short",
    "string_too_long",
    "string_type",
    "int_type",
    "int_parsing",
    "int_from_float",
    "float_type",
    "float_parsing",
    "finite_number",
    "list_type",
    "bool_type",
    "bool_parsing",
    "enum",
    "literal_error",
}
_TYPE_MISMATCH = {"int_type", "string_type", "list_type", "float_type"}  # the other branch of a number-or-list


def _is_union_branch(part: object) -> bool:
    """Pydantic tags the alternatives of a union in the location: 'constrained-int', 'list[str]', 'int'."""
    return isinstance(part, str) and ("[" in part or part.startswith("constrained-") or part in ("int", "str"))


def humane_errors(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic's errors as people read them: ``{"loc", "msg", "type"}``, one per problem.

    ``loc`` and ``type`` stay machine-readable (pydantic's, without the union-branch tags); ``msg`` is
    rewritten: "surah must be between 1 and 114", "filter has no field 'juz'", "query is required".
    """
    result: list[dict[str, Any]] = []
    for error in errors:
        loc = [part for part in error.get("loc", ()) if not _is_union_branch(part)]
        names = [part for part in loc if isinstance(part, str) and part != "body"]
        name = names[-1] if names else "body"
        kind = str(error.get("type", ""))
        if kind in _RULE_ERRORS and name in FIELD_RULES:
            msg = FIELD_RULES[name] + ("" if loc[:1] and loc[0] in _ONE_VALUE else LIST_RULES.get(name, ""))
        elif kind == "missing":
            msg = f"{name} is required"
        elif kind == "extra_forbidden":
            owner = names[-2] if len(names) > 1 else "the request"
            msg = f"{owner} has no field {name!r}"
        elif kind == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "")
            msg = f"the body is not valid JSON{': ' + str(reason) if reason else ''}"
        elif kind in ("model_attributes_type", "model_type", "dict_type"):
            msg = f"{'the body' if name == 'body' else name} must be a JSON object"
        else:  # a message of ours (a ValueError in a validator) or one with no rule: pydantic's, without its prefix
            msg = str(error.get("msg", "")).removeprefix("Value error, ")
        same = next((r for r in result if r["msg"] == msg and r["loc"][: len(loc)] == loc[: len(r["loc"])]), None)
        if same is None:
            result.append({"loc": loc, "msg": msg, "type": kind})
        elif same["type"] in _TYPE_MISMATCH and kind not in _TYPE_MISMATCH:
            same.update(loc=loc, type=kind)  # of a number-or-list's two reports, keep the one about the value
    return result


@dataclass(frozen=True)
class SearchOptions:
    k: int = 5
    mode: Mode = Mode.HYBRID
    filter: PointFilter | None = None
    score_threshold: float | None = None
    neighbors: int = 0  # add up to n adjacent ayat of the same surah (and edition) around each hit


@dataclass(frozen=True)
class Passage:
    id: str
    text: str
    score: float
    citation: str
    surah: int
    surah_name: str
    ayah: int
    chunk: int
    chunks: int
    edition: str
    translation: str | None  # in the wording TAFSIR_TRANSLATION chooses
    arabic: str | None
    context_for: str | None = None  # for a neighbour: the citation of the hit it surrounds
    also_in: tuple[str, ...] = ()  # other editions holding the same text for this ayah, merged into this passage
    payload: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def is_context(self) -> bool:
        return self.context_for is not None

    @classmethod
    def from_payload(
        cls,
        point_id: str,
        payload: dict[str, Any],
        score: float,
        context_for: str | None = None,
        *,
        translation: str = "2019",
    ) -> Passage:
        """The passage a point holds; ``translation`` is the wording shown (TAFSIR_TRANSLATION)."""
        return cls(
            id=point_id,
            text=payload["text"],
            score=score,
            citation=citation(payload["surah"], payload["ayah"]),
            surah=payload["surah"],
            surah_name=payload.get("surah_name", ""),
            ayah=payload["ayah"],
            chunk=payload.get("chunk", 0),
            chunks=payload.get("chunks", 1),
            edition=payload["edition"],
            translation=shown_translation(payload, translation),
            arabic=payload.get("arabic"),
            context_for=context_for,
            payload=payload,
        )


@dataclass(frozen=True)
class Probe:
    """A search's passages, how near the passage nearest the query by the dense vector alone lies, and the query's
    embedding: what the answering core decides "not found" on (retriever/not_found.py)."""

    passages: list[Passage]
    similarity: float  # cosine of the nearest passage by the dense vector (-1 when nothing matches the filter)
    vector: list[float]  # the query's embedding


class SearchEngine:
    """Holds the store, the model and the BM25 encoder; everything heavy is created on first use."""

    def __init__(
        self,
        settings: Settings,
        store: VectorStore | None = None,
        embedder: Embedder | None = None,
        sparse: SparseEncoder | None = None,
    ) -> None:
        self.settings = settings
        self._store = store
        self._embedder = embedder
        self.sparse = sparse or SparseEncoder(Bm25Settings.named(settings.sparse_layout, settings.sparse_stemmer))
        # Re-entrant: the first use of the embedder reads the store (which model the collection records).
        self._lock = threading.RLock()
        self._verified: set[str] = set()  # collections whose recorded model is this engine's

    @property
    def store(self) -> VectorStore:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    from services.store import open_store

                    self._store = open_store(self.settings)
        return self._store

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            with self._lock:
                if self._embedder is None:
                    self._embedder = Embedder(self._model_settings())
        return self._embedder

    def _recorded_model(self) -> tuple[str, str] | None:
        try:
            return recorded_model(self.store, self.settings.collection)
        except StoreError:
            return None  # the search itself reports the damage, naming the file and the repair

    def _model_settings(self) -> Settings:
        """A collection built by an earlier default (all-MiniLM-L6-v2) keeps answering until rebuilt."""
        recorded = self._recorded_model()
        return settings_for_collection(self.settings, recorded[1] if recorded else None)

    def check_model(self) -> None:
        """Refuse to query a collection with vectors of another model (or other weights of the same one).

        Once per physical collection: a query resolves the alias only, and reads the collection's record (an exact
        count on the embedded store) when the alias points somewhere new."""
        try:
            if self.store.resolve_alias(self.settings.collection) in self._verified:
                return
        except StoreError:
            return  # the search itself reports the damage, naming the file and the repair
        recorded = self._recorded_model()
        if recorded is None:
            return
        collection, model = recorded
        if model != self.embedder.identity:
            raise ModelMismatchError(collection, self.settings.collection, model, self.embedder)
        self._verified.add(collection)

    @property
    def fusion(self) -> Fusion:
        """The model's measured fusion (services/models.py) with the settings that override it."""
        return self.embedder.profile.fusion.overridden(self.settings.fusion_overrides())

    def fusion_for(self, query: str) -> Fusion:
        """The fusion measured for the query's language (services/models.py, ``language_fusions``: English
        questions lean on the lists that read English) with the settings that override it."""
        language = detect_language(query)
        return self.embedder.profile.fusion_for(language).overridden(self.settings.fusion_overrides())

    def request(self, query: str, options: SearchOptions, dense: list[float] | None = None) -> SearchRequest:
        """The store query for ``query``; ``dense`` is its embedding when the caller has it already."""
        mode = Mode(options.mode)
        fusion = self.fusion_for(query)
        if dense is None and mode in (Mode.DENSE, Mode.HYBRID):
            dense = self.embedder.encode_query(query)
        return SearchRequest(
            mode=mode,
            limit=options.k,
            dense=dense if mode in (Mode.DENSE, Mode.HYBRID) else None,
            sparse=self.sparse.query(query) if mode in (Mode.SPARSE, Mode.HYBRID) else None,
            filter=options.filter,
            prefetch_limit=max(fusion.prefetch_limit, options.k),
            rrf_k=fusion.rrf_k,
            dense_weight=fusion.dense,
            sparse_weights={
                SPARSE: fusion.bm25,
                SPARSE_CONTEXT: fusion.bm25_ctx,
                SPARSE_TRANSLATION: fusion.bm25_tr,
                SPARSE_ARABIC: fusion.bm25_ar,
            },
            score_threshold=options.score_threshold,
        )

    def search(self, query: str, options: SearchOptions | None = None) -> list[Passage]:
        """The ``k`` best passages, each ayah's same text shown once whatever the editions holding it."""
        options = options or SearchOptions()
        if not query.strip():
            raise ValueError("the query is empty")
        options = self._by_edition(options)
        if Mode(options.mode) is not Mode.SPARSE:
            self.check_model()
        return self._search(self.request(query, options), options)

    def search_with_similarity(self, query: str, options: SearchOptions | None = None) -> tuple[list[Passage], float]:
        """``search``, and the cosine between the query and the passage closest to it by the dense vector alone
        (within the filter; -1 when nothing matches the filter), whatever the mode."""
        probe = self.search_probed(query, options)
        return probe.passages, probe.similarity

    def search_probed(self, query: str, options: SearchOptions | None = None) -> Probe:
        """``search``, and the cosine between the query and the passage closest to it by the dense vector alone
        (within the filter), whatever the mode.

        A hybrid score is an RRF score: it says how a passage ranks, not how near it is, so whether the tafsir
        answers a question at all is judged on the cosine and the query's embedding (retriever/not_found.py). The
        query is embedded once."""
        options = options or SearchOptions()
        if not query.strip():
            raise ValueError("the query is empty")
        options = self._by_edition(options)
        self.check_model()
        dense = self.embedder.encode_query(query)
        # One nearest passage: each hit's payload is read back, so more would cost a millisecond or more.
        nearest = SearchRequest(mode=Mode.DENSE, limit=1, dense=dense, filter=options.filter)
        hits = self.store.search(self.settings.collection, nearest)
        return Probe(
            passages=self._search(self.request(query, options, dense=dense), options),
            similarity=hits[0].score if hits else -1.0,
            vector=dense,
        )

    def editions(self) -> dict[str, int]:
        """The editions behind the alias and their numbers of chunks (a facet over the payload index)."""
        return self.store.editions(self.settings.collection)

    def _by_edition(self, options: SearchOptions) -> SearchOptions:
        """``options`` with a filter by language turned into one by the editions in that language."""
        if options.filter is None or options.filter.languages is None:
            return options
        # Editions are few (a facet over the payload index); a language is a prefix of their ids.
        editions = self.store.editions(self.settings.collection)
        return dataclasses.replace(options, filter=languages_filter(options.filter, editions))

    def _search(self, request: SearchRequest, options: SearchOptions) -> list[Passage]:
        wording = self.settings.translation
        limit = 2 * options.k  # room for twins from other editions, merged below
        while True:
            hits = self.store.search(self.settings.collection, dataclasses.replace(request, limit=limit))
            passages = merge_editions(Passage.from_payload(h.id, h.payload, h.score, translation=wording) for h in hits)
            # Merged duplicates leave fewer than k: ask for more, unless the store has given all it has.
            if len(passages) >= options.k or len(hits) < limit or limit >= options.k * _MAX_EDITIONS_MERGED:
                break
            limit *= 2
        passages = passages[: options.k]
        if len({h.payload["edition"] for h in hits}) > 1:
            # A twin can rank just below the hits fetched (Qdrant orders equal scores inside a prefetch list its
            # own way): look the kept passages' ayat up in every edition, so also_in is whole.
            passages = self._with_every_twin(passages, options.filter)
        if options.neighbors > 0 and passages:
            passages = self._with_neighbors(passages, options.neighbors)
        return passages

    def _with_every_twin(self, passages: list[Passage], only: PointFilter | None) -> list[Passage]:
        """``passages`` with ``also_in`` naming every other edition (within ``only``'s) that holds the same text."""
        ayat = sorted({(p.surah, p.ayah) for p in passages})
        editions = only.editions if only is not None else None
        found = self.store.retrieve(self.settings.collection, PointFilter(editions=editions, ayat=ayat), limit=10_000)
        holders: dict[tuple[int, int, str], set[str]] = defaultdict(set)
        for hit in found:
            payload = hit.payload
            holders[payload["surah"], payload["ayah"], str(payload["text"]).strip()].add(payload["edition"])
        completed = []
        for p in passages:
            others = holders[p.surah, p.ayah, p.text.strip()] - {p.edition, *p.also_in}
            completed.append(dataclasses.replace(p, also_in=(*p.also_in, *sorted(others))) if others else p)
        return completed

    def _with_neighbors(self, hits: list[Passage], n: int) -> list[Passage]:
        """Each hit followed by up to ``n`` ayat before and after it in its surah, each fetched once."""
        wanted: dict[tuple[str, int, int], str] = {}
        present = {(p.edition, p.surah, p.ayah) for p in hits}
        for p in hits:
            last = surah_info(p.surah).ayat
            for ayah in range(max(1, p.ayah - n), min(last, p.ayah + n) + 1):
                key = (p.edition, p.surah, ayah)
                if key not in present and key not in wanted:
                    wanted[key] = p.citation
        if not wanted:
            return hits
        editions = sorted({e for e, _, _ in wanted})
        found = self.store.retrieve(
            self.settings.collection,
            PointFilter(editions=editions, ayat=sorted({(s, a) for _, s, a in wanted})),
            limit=len(wanted) * 8,
        )
        by_hit: dict[str, list[Passage]] = {}
        for h in found:
            key = (h.payload["edition"], h.payload["surah"], h.payload["ayah"])
            if key in wanted:
                passage = Passage.from_payload(h.id, h.payload, 0.0, wanted[key], translation=self.settings.translation)
                by_hit.setdefault(wanted[key], []).append(passage)
        result = []
        for p in hits:
            result.append(p)
            result.extend(by_hit.pop(p.citation, []))
        return result


# How far a search looks past k for passages that merged duplicates leave out: k x 8 results at most.
_MAX_EDITIONS_MERGED = 8


def merge_editions(ranked: Iterable[Passage]) -> list[Passage]:
    """Passages that cite the same ayah with the same text, from several editions, as one: the best-ranked
    is kept and names the other editions in ``also_in`` (a user edition that copies the built-in tafsir, say).
    Texts are compared without surrounding whitespace."""
    kept: list[Passage] = []
    index: dict[tuple[int, int, str], int] = {}
    for passage in ranked:
        key = (passage.surah, passage.ayah, passage.text.strip())
        at = index.get(key)
        if at is None:
            index[key] = len(kept)
            kept.append(passage)
            continue
        first = kept[at]
        if passage.edition != first.edition and passage.edition not in first.also_in:
            kept[at] = dataclasses.replace(first, also_in=(*first.also_in, passage.edition))
    return kept


_SHARED: dict[str, SearchEngine] = {}
_SHARED_LOCK = threading.Lock()


def shared_engine(settings: Settings) -> SearchEngine:
    """One engine per configuration in a process: the embedded store admits one opener, and the model
    is loaded once however many retrievers a program constructs."""
    key = settings.model_dump_json()
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = SearchEngine(settings)
        return _SHARED[key]
