"""The commands that read: ``tafsir status``, ``search``, ``editions``, ``eval`` and ``model info``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from interfaces.cli.common import (
    EXIT_INPUT,
    ModeOption,
    engine_or_exit,
    fail,
    in_range,
    load_settings,
    open_store_or_exit,
    parse_mode,
    print_json,
    reading_the_alias,
    stdout,
)


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print as one JSON object.")] = False,
) -> None:
    """What the alias points at: collection, points, model, vector size, vectors, editions; and the built-in
    texts."""
    from ingest.builtin import BUILTIN_TEXTS
    from services.collection_model import model_settings

    with reading_the_alias() as (settings, store, name):
        info = store.collection_info(name) if name else None
        report = {
            "store": store.location,
            "alias": settings.collection,
            "collection": name,
            "points": info.points if info else 0,
            "model": info.spec.model if info and info.spec else None,
            "vector_size": info.spec.dense_size if info and info.spec else None,
            **_reader_model(model_settings(settings, store)),
            "editions": store.editions(name) if name else {},
        }
        report["languages"] = _languages(report["editions"])
        report |= _index(store, name, settings) if name else {}
        report["ayat"] = {edition: _ayat_present(store, name, edition) for edition in report["editions"]}
    report["builtin_texts"] = [text.as_dict() for text in BUILTIN_TEXTS]  # what `tafsir ingest` reads by default
    if as_json:
        print_json(report)
        return
    if name is None:
        stdout.print(f"alias {settings.collection!r} does not exist in {report['store']} yet: run `tafsir ingest`")
        raise typer.Exit(1)
    table = Table(show_header=False)
    for key, value in report.items():
        if isinstance(value, dict):
            table.add_row(
                key,
                ", ".join(f"{e}: {(', '.join(n) or 'none') if isinstance(n, list) else n}" for e, n in value.items()),
            )
        elif key == "builtin_texts":
            for text in value:
                where = f"{text['package']} {text['version']}, {text['files']}"
                table.add_row("built-in text", escape(f"{text['content']} — {where}; licence: {text['licence']}"))
        else:
            table.add_row(key, str(value))
    stdout.print(table)


def _index(store, name: str, settings) -> dict[str, Any]:
    """The live collection's index settings as recorded, and the settings that differ: they apply to the next
    collection, `tafsir ingest --rebuild` (docs/SCALING.md, "Index settings")."""
    from services.store import index_config
    from services.store.base import DENSE_VECTORS, SPARSE_VECTORS, recorded_index, recorded_vectors

    reported = store.index_settings(name)
    recorded = recorded_index(reported)
    wanted = index_config(settings).described()
    pending = sorted(key for key, value in recorded.items() if wanted[key] != value)
    # A vector added since the collection was made (bm25_ar, dense_tr) joins it at the next `tafsir ingest`.
    present = recorded_vectors(reported)
    missing = [name for name in (*DENSE_VECTORS, *SPARSE_VECTORS) if name not in present]
    return {
        "index": recorded,
        "index_at_rebuild": {key: wanted[key] for key in pending},
        "vectors": {"present": present, "added_by_next_ingest": missing},
    }


def _languages(editions: dict[str, int]) -> dict[str, list[str]]:
    """{language: its editions}, the language being an edition id's part before its first dot."""
    from services.store.base import edition_language

    languages: dict[str, list[str]] = {}
    for edition in sorted(editions):
        language = edition_language(edition)
        if language is not None:
            languages.setdefault(language, []).append(edition)
    return dict(sorted(languages.items()))


def _reader_model(settings) -> dict[str, Any]:
    """The model that queries run with: its source (bundle, folder, hub), fingerprint and backend."""
    from services.embedding import Embedder
    from services.model_source import EmbeddingModelError

    try:
        described = Embedder(settings).describe()
    except EmbeddingModelError as exc:
        return {"model_error": str(exc), "backend": settings.embedding_backend}
    return {
        "model_source": described["source"] + (f" ({described['package']})" if described["package"] else ""),
        "fingerprint": described["fingerprint"],
        "backend": described["backend"],
    }


def _ayat_present(store, collection: str, edition: str) -> int:
    """Distinct ayat with at least one stored chunk (6,236 for a complete edition)."""
    from services.store.base import PointFilter

    only = PointFilter(editions=[edition])
    hits = store.retrieve(collection, only, limit=store.count(collection, only))
    return len({(h.payload["surah"], h.payload["ayah"]) for h in hits})


def search(
    query: Annotated[str, typer.Argument(help="The question, in Indonesian.")],
    k: Annotated[int, typer.Option("-k", "--k", help="How many passages (1-50).")] = 5,
    mode: ModeOption = "hybrid",
    neighbors: Annotated[int, typer.Option(help="Add n adjacent ayat as context (0-10).")] = 0,
    edition: Annotated[
        list[str] | None,
        typer.Option("--edition", help="Only passages of this edition (repeatable); `tafsir editions` lists them."),
    ] = None,
    language: Annotated[
        list[str] | None,
        typer.Option(
            "--language", help="Only editions in this language: the edition id before its first dot (repeatable)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Find the tafsir passages that answer a question, with citations and editions."""
    from pydantic import ValidationError

    from interfaces.requests import RetrieveRequest, humane_errors
    from services.model_source import EmbeddingModelError

    settings = load_settings()
    # The HTTP API's request model: the same bounds and the same messages ("k must be between 1 and 50").
    asked: dict[str, Any] = {"query": query, "k": k, "mode": mode, "neighbors": neighbors}
    only = {key: value for key, value in (("edition", edition), ("language", language)) if value}
    if only:
        asked["filter"] = only
    try:
        options = RetrieveRequest.model_validate(asked).options()
    except ValidationError as exc:
        raise fail("; ".join(e["msg"] for e in humane_errors(exc.errors())), EXIT_INPUT) from None
    with open_store_or_exit(settings) as store:
        engine = engine_or_exit(settings, store)
        try:
            passages = engine.search(query, options)
        except EmbeddingModelError as exc:
            raise fail(str(exc), EXIT_INPUT) from None
        except ValueError as exc:
            raise fail(str(exc), EXIT_INPUT) from None
    if as_json:
        fields = ("citation", "score", "surah", "ayah", "chunk", "edition", "also_in", "text", "translation", "arabic")
        print_json([{f: getattr(p, f) for f in (*fields, "id", "context_for")} for p in passages])
        return
    for rank, p in enumerate(passages, start=1):
        label = f"(konteks untuk {p.context_for})" if p.is_context else f"score {p.score:.4f}"
        editions = p.edition + (f" (juga {', '.join(p.also_in)})" if p.also_in else "")
        lines = [f"{rank}. [bold]{p.citation}[/]  {label}  {escape(editions)}"]
        if p.translation:
            lines.append(f"   “{escape(_first_line(p.translation))}”")
        lines.append(f"   {escape(_first_line(p.text))}")
        stdout.print("\n".join(lines), highlight=False)


def _first_line(text: str, limit: int = 160) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 3] + "..."


def editions(
    as_json: Annotated[bool, typer.Option("--json", help="Print as a JSON list.")] = False,
) -> None:
    """The editions behind the alias: points, source, model and last ingest of each."""
    from ingest.archive import SourceArchive

    with reading_the_alias() as (settings, store, name):
        if name is None:
            raise fail(f"alias {settings.collection!r} does not exist in {store.location} yet: run `tafsir ingest`", 1)
        info = store.collection_info(name)
        archive = SourceArchive.for_store(store, settings.collection)
        rows = []
        for edition, points in sorted(store.editions(name).items()):
            last_run = archive.last_run(edition) if archive is not None else None
            rows.append(
                {
                    "edition": edition,
                    "points": points,
                    # A Qdrant server keeps no per-edition record: its source is unknown, and the last ingest
                    # is the newest point's, the last run that wrote (not merely checked) the edition.
                    "source": last_run.get("source") if last_run else None,
                    "model": info.spec.model if info is not None and info.spec is not None else None,
                    "last_ingest": last_run.get("ingested_at") if last_run else _newest_point(store, name, edition),
                }
            )
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"editions in {settings.collection} ({name})")
    for column in ("edition", "points", "source", "model", "last ingest"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row[key] if row[key] is not None else "—") for key in row))
    stdout.print(table)


def _newest_point(store, collection: str, edition: str) -> str | None:
    from services.store.base import PointFilter

    only = PointFilter(editions=[edition])
    points = store.retrieve(collection, only, limit=store.count(collection, only))
    return max((stamp for h in points if (stamp := h.payload.get("ingested_at"))), default=None)


def evaluate(
    queries: Annotated[
        str | None,
        typer.Option(
            "--queries",
            help="JSONL: {qid, query, relevant: [[surah, ayah, grade]]}, or a shipped set by name: builtin (the 40 "
            "questions, the default), dev or held (the two parts of the question set; all are labelled against "
            "the built-in corpus).",
        ),
    ] = None,
    mode: ModeOption = "hybrid",
    k: Annotated[int, typer.Option("-k", "--k", help="Cut-off for the metrics (1-100).")] = 10,
    neighbors: Annotated[int, typer.Option(help="Add n adjacent ayat as context (0-10).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
    per_query: Annotated[
        bool, typer.Option("--per-query", help="With --json: each query's nDCG, first relevant rank and Recall@1.")
    ] = False,
) -> None:
    """Retrieval quality on labelled queries: hit@k, Recall@k, MRR@k, nDCG@k (ayah level) and the misses."""
    from retriever.search import SearchOptions
    from services.evaluation import NAMED_QUERIES, QueryFileError, evaluate, load_queries

    in_range("k", k, 1, 100)
    in_range("neighbors", neighbors, 0, 10)
    settings = load_settings()
    queries = queries or "builtin"
    # A name is a shipped set unless a file of that name exists here.
    queries = NAMED_QUERIES[queries] if queries in NAMED_QUERIES and not Path(queries).exists() else Path(queries)
    try:
        labelled = load_queries(queries)
    except QueryFileError as exc:
        raise fail(str(exc), EXIT_INPUT) from None
    options = SearchOptions(k=k, mode=parse_mode(mode), neighbors=neighbors)
    with open_store_or_exit(settings) as store:
        engine = engine_or_exit(settings, store)
        rankings = [[(p.surah, p.ayah) for p in engine.search(q.query, options)] for q in labelled]
    report = evaluate(labelled, rankings, k=k).as_dict(per_query=per_query)
    report.update(mode=options.mode.value, neighbors=neighbors, queries_file=str(queries))
    if as_json:
        print_json(report)
        return
    table = Table(title=f"{queries} — mode {options.mode.value}, k={k}, neighbors={neighbors}", show_header=False)
    for key, value in report.items():
        if key not in ("missed", "queries_file", "mode", "neighbors", "per_query"):
            table.add_row(key, str(value))
    stdout.print(table)
    for row in report.get("per_query", []):
        stdout.print(" ".join(f"{name} {value}" for name, value in row.items()), highlight=False)
    for miss in report["missed"]:
        stdout.print(f"missed {miss['qid']}: {miss['query']}", highlight=False)


model_app = typer.Typer(help="The embedding model: what it is and where its files are.", no_args_is_help=True)


@model_app.command("info")
def model_info(
    as_json: Annotated[bool, typer.Option("--json", help="Print as one JSON object.")] = False,
) -> None:
    """Name, source, backend, fingerprint and the local sentence-transformers folder of TAFSIR_EMBEDDING_MODEL
    (load that folder with sentence-transformers to get exactly the same weights)."""
    from services.embedding import Embedder
    from services.model_source import EmbeddingModelError

    settings = load_settings()
    try:
        described = Embedder(settings).describe()
    except EmbeddingModelError as exc:
        raise fail(str(exc), EXIT_INPUT) from None
    if as_json:
        print_json(described)
        return
    table = Table(show_header=False)
    for key, value in described.items():
        table.add_row(key, "" if value is None else str(value))
    stdout.print(table)
