"""What callers send, for every face: the bodies of ``POST /v1/retrieve`` and ``POST /v1/answer`` (the CLI's
``tafsir search`` validates through the same model), their bounds, and the one wording of their errors (the
HTTP 422 body, the CLI's message). The read path itself takes ``SearchOptions`` and plain arguments
(``retriever.search``, ``retriever.answer``): it knows nothing of bodies."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from retriever import answer
from retriever.search import MAX_K, MAX_NEIGHBORS, MAX_QUERY_CHARS, SearchOptions, TafsirFilter
from services.quran import SURAH_COUNT, SURAHS
from services.store.base import Mode

MAX_AYAT_IN_A_SURAH = max(s.ayat for s in SURAHS)  # 286, Al-Baqarah
MAX_EDITION_CHARS = 100
MAX_EDITIONS = 50
MAX_TURNS = 50  # earlier turns of a conversation a question may carry
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


def not_blank(value: str, name: str) -> str:
    if not value.strip():
        raise ValueError(f"the {name} is blank")
    return value


def search_options(k: int, mode: Mode, filter: TafsirFilter | None, **more: Any) -> SearchOptions:
    """A body's search fields as the read path takes them."""
    return SearchOptions(k=k, mode=mode, filter=filter.to_point_filter() if filter is not None else None, **more)


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

    _not_blank = field_validator("query")(lambda value: not_blank(value, "query"))

    def options(self) -> SearchOptions:
        return search_options(
            self.k, self.mode, self.filter, score_threshold=self.score_threshold, neighbors=self.neighbors
        )


class Turn(BaseModel):
    """An earlier message of the conversation."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: str = Field(max_length=MAX_TURN_CHARS, description="What was said (at most 8,000 characters).")


def history(turns: Sequence[Turn]) -> list[answer.Turn]:
    """The turns of a body as the answering core takes them."""
    return [answer.Turn(role=t.role, content=t.content) for t in turns]


class AnswerRequest(BaseModel):
    """A question to answer from the tafsir: the body of ``POST /v1/answer``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"question": "Siapa Thalut?", "k": 5},
                {
                    "question": "lalu apa hukumannya?",
                    "messages": [
                        {"role": "user", "content": "Apa yang dikatakan Al-Qur'an tentang pencuri?"},
                        {"role": "assistant", "content": "Tangan pencuri dipotong [1]."},
                    ],
                },
            ]
        },
    )

    question: str = Field(
        min_length=1,
        max_length=MAX_QUERY_CHARS,
        description="The question, in Indonesian (at most 2,000 characters).",
    )
    messages: Annotated[list[Turn], Field(max_length=MAX_TURNS)] = Field(
        default_factory=list, description="Earlier turns of the conversation, oldest first (a follow-up needs them)."
    )
    k: int = Field(5, ge=1, le=MAX_K, description="How many passages to answer from.")
    mode: Mode = Field(Mode.HYBRID, description="How passages are found: dense, sparse (BM25) or hybrid.")
    filter: RetrieveFilter | None = Field(None, description="Surah(s), ayah range, edition(s); all given must hold.")
    stream: bool = Field(False, description="Answer as Server-Sent Events: token deltas, then the sources.")

    _not_blank = field_validator("question")(lambda value: not_blank(value, "question"))

    def options(self) -> SearchOptions:
        return search_options(self.k, self.mode, self.filter)


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
