"""Training pairs: read them from a file, or derive them from a corpus (an ayah's translation → its tafsir).

A pairs file is the seed model's format: columns ``sentence_0`` (the question or ayah text) and
``sentence_1`` (the tafsir passage that answers it), as JSONL (one object a line) or CSV (a header
row). Other columns are ignored. The whole file is checked before training starts, and every problem
names the file, the line and the column.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.chunking import ChunkingParams, chunk_ayat
from services.evaluation import AyahKey, load_queries
from services.jsonl import json_lines

if TYPE_CHECKING:  # pragma: no cover
    from tokenizers import Tokenizer

    from ingest.sources import Ayah

COLUMNS = ("sentence_0", "sentence_1")
SUPPORTED_SUFFIXES = (".jsonl", ".csv")
_MAX_SHOWN = 20


@dataclass(frozen=True)
class TrainingPair:
    query: str  # sentence_0: a question, or an ayah's translation
    passage: str  # sentence_1: the tafsir text that answers it
    ayah: AyahKey | None = None  # the (surah, ayah) a corpus pair comes from; None for a pairs file


@dataclass(frozen=True)
class PairsProblem:
    line: int | None  # 1-based; None for the whole file
    column: int | str | None  # a character column (syntax errors) or a column name (field errors)
    message: str

    def render(self, path: str) -> str:
        if self.line is None:
            return f"{path}: {self.message}"
        if isinstance(self.column, int):
            return f"{path}:{self.line}:{self.column}: {self.message}"
        column = f" column '{self.column}':" if self.column else ""
        return f"{path}:{self.line}:{column} {self.message}"


class PairsFileError(ValueError):
    """Every problem found in one pairs file; str() lists them as ``path:line[:col]: ...`` lines."""

    def __init__(self, path: str, problems: Sequence[PairsProblem]) -> None:
        self.path = path
        self.problems = list(problems)
        super().__init__(path, self.problems)

    def __str__(self) -> str:
        lines = [p.render(self.path) for p in self.problems[:_MAX_SHOWN]]
        if len(self.problems) > _MAX_SHOWN:
            lines.append(f"... and {len(self.problems) - _MAX_SHOWN} more")
        return "\n".join(lines)


def read_pairs(path: str | Path) -> list[TrainingPair]:
    """Read and check a JSONL or CSV pairs file (by extension); raises PairsFileError listing every problem."""
    path = Path(path)
    shown = str(path)
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        got = f"'{path.suffix}'" if path.suffix else "no extension"
        raise PairsFileError(shown, [PairsProblem(None, None, f"unsupported file type ({got}): use .jsonl or .csv")])
    try:
        data = path.read_bytes()
    except OSError as exc:
        problem = PairsProblem(None, None, f"cannot read the file: {exc.strerror or exc}")
        raise PairsFileError(shown, [problem]) from None
    text = _decode(data, shown)
    pairs, problems = _parse_jsonl(text) if path.suffix.lower() == ".jsonl" else _parse_csv(text)
    if not problems and not pairs:
        problems = [PairsProblem(None, None, "no pairs found: expected rows with sentence_0 and sentence_1")]
    if problems:
        raise PairsFileError(shown, problems)
    return pairs


def _decode(data: bytes, shown: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        problem = PairsProblem(line, column, "bytes that are not UTF-8: save the file as UTF-8")
        raise PairsFileError(shown, [problem]) from None


def _field(row: dict, column: str, line: int, problems: list[PairsProblem]) -> str | None:
    value = row.get(column)
    if column not in row:
        problems.append(PairsProblem(line, column, "missing"))
    elif not isinstance(value, str):
        problems.append(PairsProblem(line, column, f"expected text, got {json.dumps(value, ensure_ascii=False)}"))
    elif not value.strip():
        problems.append(PairsProblem(line, column, "empty text"))
    else:
        return value
    return None


def _parse_jsonl(text: str) -> tuple[list[TrainingPair], list[PairsProblem]]:
    pairs, problems = [], []
    for line in json_lines(text):
        number, row = line.number, line.value
        if line.error is not None:
            problems.append(PairsProblem(number, line.column, f"malformed JSON: {line.error}"))
            continue
        if not isinstance(row, dict):
            expected = 'expected an object {"sentence_0": "...", "sentence_1": "..."}'
            problems.append(PairsProblem(number, 1, f"{expected}, got {type(row).__name__}"))
            continue
        query, passage = (_field(row, c, number, problems) for c in COLUMNS)
        if query is not None and passage is not None:
            pairs.append(TrainingPair(query, passage))
    return pairs, problems


def _parse_csv(text: str) -> tuple[list[TrainingPair], list[PairsProblem]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    pairs, problems = [], []
    try:
        header = next(reader, None)
        if header is None:
            return [], []
        names = [name.strip() for name in header]
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            found = ",".join(names)
            message = f"the header row must name the columns sentence_0,sentence_1; found {found!r}"
            return [], [PairsProblem(1, missing[0], message)]
        index = {c: names.index(c) for c in COLUMNS}
        line = reader.line_num + 1
        for row in reader:
            if any(cell.strip() for cell in row):
                if len(row) < len(names):
                    missing_column = names[len(row)]
                    message = f"missing: the row has {len(row)} fields, the header names {len(names)}"
                    problems.append(PairsProblem(line, missing_column, message))
                elif len(row) > len(names):
                    message = (
                        f"the row has {len(row)} fields, the header names {len(names)}: "
                        "quote fields that contain commas"
                    )
                    problems.append(PairsProblem(line, None, message))
                else:
                    values = {c: row[i] for c, i in index.items()}
                    query, passage = (_field(values, c, line, problems) for c in COLUMNS)
                    if query is not None and passage is not None:
                        pairs.append(TrainingPair(query, passage))
            line = reader.line_num + 1  # a quoted field may span lines
    except csv.Error as exc:
        problems.append(PairsProblem(reader.line_num, None, f"malformed CSV: {exc}"))
    return pairs, problems


def pairs_fingerprint(pairs: Iterable[TrainingPair]) -> str:
    """Identity of a pair list, recorded with a run so ``--resume`` can refuse different data."""
    digest = hashlib.sha256()
    for pair in pairs:
        digest.update(pair.query.encode())
        digest.update(b"\x1f")
        digest.update(pair.passage.encode())
        digest.update(b"\x1e")
    return digest.hexdigest()[:16]


# --- pairs from the corpus ------------------------------------------------------------------------


def held_out_ayat(query_files: Iterable[str | Path]) -> set[AyahKey]:
    """Every ayah labelled relevant in the query files: left out of training so evaluation stays honest."""
    held_out: set[AyahKey] = set()
    for path in query_files:
        for query in load_queries(path):
            held_out.update(query.relevant)
    return held_out


@dataclass(frozen=True)
class CorpusPairs:
    pairs: list[TrainingPair]
    ayat: int  # ayat that gave pairs
    held_out: int  # ayat of the corpus left out because a query file labels them
    without_translation: int  # ayat skipped because they carry no translation


def corpus_pairs(
    ayat: Sequence[Ayah], tokenizer: Tokenizer, params: ChunkingParams, held_out: Set[AyahKey] = frozenset()
) -> CorpusPairs:
    """One pair per tafsir chunk: (the ayah's translation, the chunk), chunked exactly as ingest chunks it.

    The chunks are the passages the model will embed at ingest, so it learns on the texts it will see.
    """
    kept = [a for a in ayat if (a.surah, a.ayah) not in held_out and a.translation]
    translations = {(a.edition, a.surah, a.ayah): a.translation for a in kept}
    chunks = chunk_ayat(kept, tokenizer, params)
    pairs = [TrainingPair(translations[c.edition, c.surah, c.ayah], c.text, (c.surah, c.ayah)) for c in chunks]
    return CorpusPairs(
        pairs=pairs,
        ayat=len(kept),
        held_out=sum(1 for a in ayat if (a.surah, a.ayah) in held_out),
        without_translation=sum(1 for a in ayat if (a.surah, a.ayah) not in held_out and not a.translation),
    )
